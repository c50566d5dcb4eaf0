"""The DATA reader's look-alike test (SPEC §8) agrees with the regex that defines it."""
from __future__ import annotations

import random

import pytest

from relay.smtp.data import _LOOKALIKE, has_lookalike


@pytest.mark.parametrize("data, found", [
    (b"a\r\n.\r\nb", False),     # a real end of data is no look-alike (it never reaches here whole)
    (b"a\n.\nb", True), (b"a\n.\r\nb", True), (b"a\r\n.\nb", True), (b"\n.\r\n", True),
    (b"a=\r\n.com and more", False),  # quoted-printable: a soft break before a dot
    (b"a\r\n..\r\n", False), (b"a\n.", False), (b"a\n.\r", False),
])
def test_known_cases(data: bytes, found: bool) -> None:
    assert has_lookalike(data) is found


def test_agrees_with_the_regex_on_every_short_mix_of_cr_lf_and_dots() -> None:
    rnd = random.Random(7)
    alphabet = [b"\r", b"\n", b".", b"a"]
    for _ in range(30000):
        data = b"".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
        assert has_lookalike(data) == (_LOOKALIKE.search(data) is not None), data
