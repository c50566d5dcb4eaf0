"""The one way an unsubscribe takes effect, whether it came by HTTP or by mail."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from relay.crypto.tokens import Token, TokenError

if TYPE_CHECKING:
    from relay.runtime import Runtime

log = logging.getLogger("relay.unsubscribe")
CHANNELS = ("one-click", "page", "mailto")


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
