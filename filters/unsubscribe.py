"""Stage unsubscribe: every copy carries our List-Unsubscribe (https + mailto) and RFC 8058 one-click."""
from __future__ import annotations

from filters.context import CopyContext
from filters.links import unsubscribe_links

NAME = "unsubscribe"
DESCRIPTION = "replace List-Unsubscribe / List-Unsubscribe-Post with the relay's own one-click links"
PHASE = "copy"


async def apply(ctx: CopyContext) -> None:
    if ctx.list is not None and ctx.list.transactional:
        return  # SPEC §2: transactional lists have no consent or unsubscribe stages
    links = unsubscribe_links(ctx)
    # the client's own versions are replaced: only links the relay honours may be offered
    ctx.copy.replace("List-Unsubscribe", f"<{links.url}>, <mailto:{links.mailto}>")
    ctx.copy.replace("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
