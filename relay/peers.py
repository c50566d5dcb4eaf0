"""Connections in total and per peer address, and recent AUTH failures per address: shared by every SMTP session."""
from __future__ import annotations

from collections import defaultdict

from relay import replies
from relay.base.windows import SlidingWindows, peer_key


class PeerLimits:
    """Connections in total and per peer address, and recent AUTH failures per address (IPv6: per /64)."""

    def __init__(self, total: int, per_ip: int):
        self.total, self.per_ip = total, per_ip
        self.open_total = 0
        self.open_by_ip: dict[str, int] = defaultdict(int)
        self.auth_failures = SlidingWindows(600.0)

    def admit(self, ip: str) -> str | None:
        """Count the connection in, or return the 421 reply that refuses it."""
        if self.open_total >= self.total:
            return replies.TOO_MANY_CONNECTIONS
        if self.open_by_ip[ip] >= self.per_ip:
            return replies.TOO_MANY_CONNECTIONS_FROM_IP
        self.open_total += 1
        self.open_by_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.open_total -= 1
        self.open_by_ip[ip] -= 1
        if self.open_by_ip[ip] <= 0:
            del self.open_by_ip[ip]

    def recent_failures(self, ip: str) -> int:
        return self.auth_failures.count(peer_key(ip))

    def note_failure(self, ip: str) -> None:
        self.auth_failures.add(peer_key(ip))
