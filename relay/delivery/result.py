"""What a delivery attempt comes to: delivered, temporary or permanent, with the upstream's reply."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Status = Literal["delivered", "temporary", "permanent"]

# Codes used when the upstream never said anything itself (connect failure, timeout, local
# I/O error). They are ordinary SMTP codes of the right class, not 0, because callers put
# `f"{code} {reply}"` into replies, audit rows and DSNs; the reply text says it was local.
LOCAL_TEMPFAIL = 451
LOCAL_BAD_ADDRESS = 553


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of handing one copy to the upstream.

    `code`/`reply` are the upstream's own reply when it gave one (reply without the
    code, multi-line replies joined by spaces); for local failures they are a
    synthetic code of the right class and a short description ("connection refused
    by …", "timeout after 2s …"), never a traceback.
    """

    status: Status
    code: int
    reply: str


class Upstream(Protocol):
    """What the pipeline delivers through; one call per recipient copy."""

    async def deliver(self, mail_from: str, recipient: str, data: bytes) -> DeliveryResult: ...

    async def close(self) -> None: ...


def _classify(code: int) -> Status:
    # Anything that is not a clear 2xx or 5xx (4xx, 3xx where 2xx was due, garbage) is
    # retried: losing a message to a confused server is worse than a retry.
    if 200 <= code < 300:
        return "delivered"
    if 500 <= code < 600:
        return "permanent"
    return "temporary"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _temporary(reply: str, code: int = LOCAL_TEMPFAIL) -> DeliveryResult:
    return DeliveryResult("temporary", code, _one_line(reply))
