"""The public HTTP side: unsubscribe and confirmation pages, the hosted form, the subscriber API (aiohttp)."""
