"""Unsubscribe links for a copy, and the one way an unsubscribe takes effect (HTTP or mail)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from relay.tokens import Token, TokenError

if TYPE_CHECKING:
    from filters.context import CopyContext
    from relay.runtime import Runtime

log = logging.getLogger("relay.unsubscribe")
CHANNELS = ("one-click", "page", "mailto")


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


async def unsubscribe(rt: "Runtime", token: str, channel: str, ip: str | None = None) -> Token:
    """Verify the token and suppress the recipient on that list at once; idempotent.

    Raises TokenError for a bad, tampered or expired token (the caller answers 400 / 550).
    """
    assert channel in CHANNELS
    now = rt.services.clock()
    parsed = rt.tokens.verify(token, "unsubscribe", now)
    client = rt.config.clients.get(parsed.client)
    if client is None or parsed.list_key not in client.lists:
        raise TokenError("the list of this token no longer exists")
    changed = await rt.store.run(rt.store.consent_revoke, parsed.client, parsed.list_key, parsed.recipient,
                                 now, channel, ip)
    if changed:
        rt.metrics.unsubscribes.labels(channel).inc()
        log.info("unsubscribed a recipient from %s/%s via %s", parsed.client, parsed.list_key, channel)
        # the client learns of it (events API, webhook) and its counters see it (never raises)
        await rt.feedback.note_unsubscribe(parsed.client, parsed.list_key, parsed.recipient, channel)
    return parsed
