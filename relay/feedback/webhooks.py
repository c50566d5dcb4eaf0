"""Client webhooks: POST each feedback event from the durable outbox, signed, retried with back-off, off the mail path."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from relay.runtime import Runtime

log = logging.getLogger("relay.feedback.webhooks")

SIGNATURE_HEADER = "X-Consent-Relay-Signature"
EVENT_HEADER = "X-Consent-Relay-Event"
BATCH = 50
PARALLEL = 4


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=UNIX,v1=HEX`: HMAC-SHA256 over "t." + body, so a receiver can refuse replays of old bodies."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, tolerance: float = 300.0) -> bool:
    """What a receiver does (documented, and used by the tests)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)


class WebhookRunner:
    """One per process; any process (or host) may send any entry: leases keep each POST to one sender."""

    def __init__(self, rt: "Runtime"):
        self.rt = rt
        self.settings = rt.config.feedback
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    def wake(self) -> None:
        """New entries: send them now instead of at the next poll."""
        self._wake.set()

    @property
    def enabled(self) -> bool:
        return any(c.webhook_url for c in self.rt.config.clients.values())

    def delay(self, attempts: int) -> float:
        return min(self.settings.webhook_retry_delay * (2 ** attempts), 3600.0)

    async def run_forever(self, interval: float = 5.0) -> None:
        if not self.enabled:
            return
        try:
            while True:
                try:
                    while await self.send_due() >= BATCH:
                        pass
                except Exception:
                    log.exception("webhook pass failed; trying again in %.0fs", interval)
                try:
                    async with asyncio.timeout(interval):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._wake.clear()
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None

    async def send_due(self) -> int:
        store = self.rt.store
        lease = max(60.0, 3 * self.settings.webhook_timeout)
        rows = await store.run(store.outbox_claim, self.rt.services.clock(), BATCH, lease)
        if not rows:
            return 0
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout))
        slots = asyncio.Semaphore(PARALLEL)

        async def one(row: dict[str, Any]) -> None:
            async with slots:
                await self._send(row)

        await asyncio.gather(*(one(r) for r in rows))
        return len(rows)

    async def _send(self, row: dict[str, Any]) -> None:
        store = self.rt.store
        client = self.rt.config.clients.get(row["client"])
        now = self.rt.services.clock()
        if client is None or not client.webhook_url or not client.webhook_secret:
            await store.run(store.outbox_retry, row["id"], None, "client has no webhook any more", now)
            return
        body = ('{"client": "%s", "event": %s}' % (client.name, row["payload"])).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "consent-relay",
                   SIGNATURE_HEADER: signature(client.webhook_secret, int(time.time()), body),
                   EVENT_HEADER: str(row["event_id"])}
        assert self._session is not None
        try:
            async with self._session.post(client.webhook_url, data=body, headers=headers) as response:
                await response.read()
                error = None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:200] or type(exc).__name__
        if error is None:
            await store.run(store.outbox_done, row["id"])
            self.rt.metrics.webhook_result("delivered")
            return
        attempts = row["attempts"] + 1
        give_up = attempts >= self.settings.webhook_max_attempts
        next_at = None if give_up else now + timedelta(seconds=self.delay(row["attempts"]))
        await store.run(store.outbox_retry, row["id"], next_at, error, now)
        self.rt.metrics.webhook_result("failed" if give_up else "retry")
        log.info("webhook of client %s: event %s: %s (%s)", client.name, row["event_id"], error,
                 "given up" if give_up else f"attempt {attempts}, retrying")
