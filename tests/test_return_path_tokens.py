"""The return-path token codec (relay/feedback/verp.py): the relay's queue ids and an MTA's, both within 64 octets."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from relay.crypto.tokens import TokenError
from relay.feedback.verp import ReturnPaths, recipient_digest

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc)
KEYS = [bytes(range(32)), bytes(range(1, 33))]


def paths(keys: list[bytes] = KEYS) -> ReturnPaths:
    return ReturnPaths(keys, "Relay.Test", timedelta(days=90))


def local_part(address: str) -> str:
    return address.rpartition("@")[0]


def test_the_relays_own_queue_id_keeps_the_47_octet_form():
    address = paths().address("0A1B2C3D4E5F", "Fan@Example.org", NOW)
    assert len(local_part(address)) == 47 and address.endswith("@relay.test")
    ref = paths().verify(paths().token_of(address), NOW)
    assert (ref.queue_id, ref.digest) == ("0A1B2C3D4E5F", recipient_digest("fan@example.org"))


@pytest.mark.parametrize("queue_id", [
    "3F2A1B4C5D6",  # Postfix, short ids: microseconds and inode in hex
    "4XQUEUEID1",
    "3Pt2mN2VXxznjll",  # Postfix, enable_long_queue_ids
    "1hRxTz-0001Ab-Cd",  # Exim
    "n3JHGxR9012345",  # Sendmail
    "0a1b2c3d4e5f",  # hex, but not as the relay writes it: kept as given
    "0", "z" * 21,
])
def test_an_mta_queue_id_comes_back_exactly_within_64_octets(queue_id: str):
    address = paths().address(queue_id, "fan@example.org", NOW)
    assert len(local_part(address)) == 63
    token = paths().token_of(address.upper())  # a mail system may case-fold it
    assert paths().tokens_in(f"Return-Path: <{address}>\r\n") == [token]
    ref = paths().verify(token, NOW)
    assert (ref.queue_id, ref.digest) == (queue_id, recipient_digest("fan@example.org"))
    # any key of the ring verifies; a key it does not hold does not
    assert paths(KEYS[::-1]).verify(token, NOW).queue_id == queue_id
    with pytest.raises(TokenError):
        paths([bytes(32)]).verify(token, NOW)


def test_a_changed_character_or_an_old_token_does_not_verify():
    token = paths().token("3F2A1B4C5D6", "fan@example.org", NOW)
    for i in (0, 10, 30, 55):
        tampered = token[:i] + ("a" if token[i] != "a" else "b") + token[i + 1:]
        with pytest.raises(TokenError):
            paths().verify(tampered, NOW)
    with pytest.raises(TokenError):
        paths().verify(token, NOW + timedelta(days=92))


@pytest.mark.parametrize("queue_id", ["", "a" * 22, "ab_c", "A1.B2", "é1"])
def test_a_queue_id_no_token_can_carry_is_a_value_error(queue_id: str):
    with pytest.raises(ValueError):
        paths().token(queue_id, "fan@example.org", NOW)
