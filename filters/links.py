"""The unsubscribe links of one copy, shared by the footer and the List-Unsubscribe headers (not a stage)."""
from __future__ import annotations

from dataclasses import dataclass

from filters.context import CopyContext


@dataclass(frozen=True)
class UnsubscribeLinks:
    token: str
    url: str        # https://…/u/TOKEN (the page; POST there is one-click)
    mailto: str     # unsubscribe+TOKEN@HOSTNAME


def unsubscribe_links(ctx: "CopyContext") -> UnsubscribeLinks:
    """The same links for the footer and the headers of one copy (computed once, kept in facts)."""
    cache = ctx.facts.setdefault("unsubscribe_links", {})
    links = cache.get(ctx.recipient)
    if links is None:
        list_key = ctx.list.key if ctx.list else ""
        token = ctx.services.tokens.issue("unsubscribe", ctx.client.name, list_key, ctx.recipient,
                                          ctx.services.clock())
        links = UnsubscribeLinks(token, f"{ctx.config.http.public_url}/u/{token}",
                                 f"unsubscribe+{token}@{ctx.config.relay.hostname}")
        cache[ctx.recipient] = links
    return links
