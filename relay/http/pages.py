"""What every public page shares: the runtime key, the page renderer, and address masking."""
from __future__ import annotations

import functools

import jinja2
from aiohttp import web

RUNTIME = web.AppKey("runtime", object)


@functools.cache
def _pages() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("footer_templates", "."), autoescape=True)


def page(status: int, template: str, **values: str) -> web.Response:
    body = _pages().get_template(template).render(**values)
    # no caching and no cookies: each page reflects the state now, for anyone holding the link
    return web.Response(status=status, text=body, content_type="text/html",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def plain_page(status: int, title: str, text: str) -> web.Response:
    """A small page for errors: no stack trace, ever."""
    return page(status, "page_message.html.j2", title=title, text=text)


def masked(address: str) -> str:
    """a***@example.org: pages never show the whole address to whoever holds the link."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"
