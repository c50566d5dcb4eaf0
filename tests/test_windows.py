"""Per-key sliding windows (sign-up and AUTH-failure limits): counting, ageing out, bounded memory, IPv6 /64 keys."""
from __future__ import annotations

import pytest

from relay.base.windows import SWEEP_AT_LEAST, SlidingWindows, peer_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allow_counts_up_to_the_limit_then_the_window_frees_it():
    clock = FakeClock()
    windows = SlidingWindows(60.0, clock)
    assert [windows.allow("a", 2) for _ in range(3)] == [True, True, False]
    assert windows.allow("b", 2)  # keys count apart
    clock.now += 61
    assert windows.count("a") == 0 and windows.allow("a", 2)


def test_a_flood_of_new_keys_keeps_one_window_of_them():
    """Without the sweep every address ever seen kept an entry: memory grew with the flood."""
    clock = FakeClock()
    windows = SlidingWindows(60.0, clock)
    for i in range(100_000):
        windows.add(f"198.51.{i // 256 % 256}.{i % 256}-{i}")
        clock.now += 0.01  # 100 new keys a second: 6,000 in any window
    assert len(windows.events) <= 2 * 6_000 + SWEEP_AT_LEAST
    assert windows.count(f"198.51.{99_999 // 256 % 256}.{99_999 % 256}-99999") == 1  # the recent stay


@pytest.mark.parametrize("ip, key", [
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2::ffff", "2001:db8:1:2::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"),  # an IPv4 client on a dual-stack socket
    ("not-an-ip", "not-an-ip"),
])
def test_peer_key(ip, key):
    assert peer_key(ip) == key
