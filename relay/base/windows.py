"""Per-key counts of recent events (sign-ups, wrong tokens, AUTH failures) whose memory stays bounded."""
from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable

SWEEP_AT_LEAST = 1024  # keys held before the first sweep; later sweeps come when the count doubles


class SlidingWindows:
    """Events per key over the last `window` seconds; in memory, per process (each worker counts its own).

    A key whose events have all aged out is dropped by a sweep that runs whenever the number of
    keys has doubled since the last one: a flood from ever-new addresses costs memory for one
    window's worth of them, not for every address ever seen, and the sweeps cost O(1) per event.
    """

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic):
        self.window, self.clock = window, clock
        self.events: dict[str, deque[float]] = {}
        self._sweep_at = SWEEP_AT_LEAST

    def count(self, key: str) -> int:
        """The events of `key` within the window."""
        events = self.events.get(key)
        if events is None:
            return 0
        self._expire(events, self.clock())
        if not events:
            del self.events[key]
        return len(events)

    def add(self, key: str) -> None:
        self.events.setdefault(key, deque()).append(self.clock())
        if len(self.events) >= self._sweep_at:
            self._sweep()

    def allow(self, key: str, limit: int) -> bool:
        """Count an event for `key` unless it already has `limit` in the window (then False)."""
        if self.count(key) >= limit:
            return False
        self.add(key)
        return True

    def _expire(self, events: deque[float], now: float) -> None:
        while events and now - events[0] > self.window:
            events.popleft()

    def _sweep(self) -> None:
        now = self.clock()
        for key in [k for k, events in self.events.items() if now - events[-1] > self.window]:
            del self.events[key]
        self._sweep_at = max(SWEEP_AT_LEAST, 2 * len(self.events))


def peer_key(ip: str) -> str:
    """The unit a per-address limit counts: the address for IPv4, its /64 for IPv6 (one host's
    interface usually holds a whole /64, so counting single IPv6 addresses would limit nothing)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # an IPv4 client on a dual-stack socket
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
