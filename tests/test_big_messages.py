"""Big-message code paths (copies without the GIL, line-aligned pieces) agree with the one-piece forms."""
from __future__ import annotations

import codecs
import random

import pytest

from relay.delivery.upstream import _stuff
from relay.mail.message import Message, split_header_block
from relay.mail.mime_footer import _last_character, plan_footer
from relay.base.offload import BIG, copy_range
from relay.smtp.session import has_bare_line_ending_or_nul, pieces_have_bare_line_ending_or_nul
from filters.content.textview import reader_view


def _one_piece_stuff(data: bytes) -> bytes:
    if not data:
        return b".\r\n"
    stuffed = (b"." if data[:1] == b"." else b"") + data.replace(b"\r\n.", b"\r\n..")
    return stuffed + (b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n")


def test_copy_range_is_a_slice_on_both_sides_of_the_threshold():
    data = bytes(range(256)) * (BIG // 128)
    assert len(data) > BIG
    for start, end in [(0, None), (1, None), (7, len(data) - 9), (len(data) - 5, None), (0, len(data) + 10),
                       (BIG - 1, None), (10, 300), (0, BIG + 1)]:
        assert copy_range(data, start, end) == data[start:end], (start, end)


def test_split_header_block_of_a_big_message():
    body = b"line of text\r\n" * (BIG // 10)
    fields, got = split_header_block(b"Subject: big\r\nFrom: a@example.org\r\n\r\n" + body)
    assert fields == [b"Subject: big\r\n", b"From: a@example.org\r\n"] and got == body


def _cut(rng: random.Random, data: bytes, most: int = 6) -> list[bytes]:
    cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randrange(0, most))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


@pytest.mark.parametrize("raw", [
    b"Subject: s\r\n\r\nbody\r\n", b"Subject: s\r\nnot a field\r\n\r\nbody", b"Subject: s\r\n", b"\r\nbody",
    b"", b"Subject: s\r\n\r\n" + b"x" * (2 * BIG), b"X-Long: " + b"y" * (BIG + 100) + b"\r\n\r\nbody",
    b"Subject: s\r\n folded\r\n\r\n\r\nbody after an empty line"])
def test_message_from_pieces_is_the_message_from_the_whole(raw):
    rng = random.Random(len(raw))
    for _ in range(40):  # the header/body boundary falls anywhere among the pieces
        pieces = _cut(rng, raw)
        got, whole = Message.from_pieces(pieces), Message(raw)
        assert (got.headers, got.body, got.size) == (whole.headers, whole.body, len(raw)), pieces
        assert got == whole


def test_smuggling_check_over_pieces_agrees_with_the_whole():
    rng = random.Random(7)
    tokens = [b"a", b"\r\n", b"\r", b"\n", b"\x00", b".", b"text"]
    for _ in range(3000):
        data = b"".join(rng.choice(tokens) for _ in range(rng.randrange(0, 12)))
        pieces = _cut(rng, data)  # a CRLF split between two pieces is still a pair
        assert pieces_have_bare_line_ending_or_nul(pieces) == has_bare_line_ending_or_nul(data), pieces


@pytest.mark.parametrize("seed", range(4))
def test_stuffing_in_pieces_equals_stuffing_at_once(seed):
    rng = random.Random(seed)
    tokens = [b"a", b".", b"..", b"\r\n", b"\r\n.", b"\r\n..", b"text " * 3]
    for _ in range(400):
        data = b"".join(rng.choice(tokens) for _ in range(rng.randrange(0, 60)))
        whole = _one_piece_stuff(data)
        for chunk in (1, 2, 5, 16, 1 << 20):  # every place a piece boundary can fall
            assert b"".join(_stuff(data, chunk)) == whole, (data, chunk)


def test_stuffing_a_big_message_goes_out_in_line_aligned_pieces():
    data = b".dot line\r\nplain\r\n" * 200_000
    pieces = _stuff(data, 1 << 20)
    assert len(pieces) > 3 and b"".join(pieces) == _one_piece_stuff(data)
    assert all(p.endswith(b"\r\n") for p in pieces)


@pytest.mark.parametrize("charset,text", [("utf-8", "Grüße, 東京 ✓\r\n"), ("iso-8859-1", "café\r\n"),
                                          ("utf-8", "no newline at the end é"), ("us-ascii", "")])
def test_last_character_decodes_in_pieces_like_a_whole_decode(charset, text):
    codec = codecs.lookup(charset)
    content = (text * (BIG // max(1, len(text)) + 3)).encode(charset) if text else b""
    # a multi-byte character split between pieces must decode as in one piece
    assert _last_character(codec, content) == codec.decode(content, "surrogateescape")[0][-1:]
    assert _last_character(codec, b"\xff\xfe bad bytes") == codec.decode(b"\xff\xfe bad bytes", "surrogateescape")[0][-1:]


@pytest.mark.parametrize("ending", [b"\r\n", b"", b"\r\n\r\n"])
def test_footer_on_a_big_plain_part_is_the_footer_on_a_small_one(ending):
    headers = [b"Content-Type: text/plain; charset=utf-8\r\n"]
    small, big = "caf\u00e9 ".encode() * 10 + ending, "caf\u00e9 ".encode() * (BIG // 5) + ending
    assert len(big) > BIG
    small_out = plan_footer(headers, small).apply("Sent by Example Ltd", "").body
    big_out = plan_footer(headers, big).apply("Sent by Example Ltd", "").body
    assert big_out[len(big):] == small_out[len(small):] and big_out[:len(big)] == big


def test_reader_view_of_a_big_multipart_message():
    filler = b"Z" * 120 + b"\r\n"
    raw = (b"Subject: big one\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\n"
           b"Content-Type: text/plain\r\n\r\nHello reader, visit https://shop.example/sale\r\n--b1\r\n"
           b"Content-Type: application/octet-stream\r\n\r\n" + filler * (2 * BIG // len(filler)) + b"--b1--\r\n")
    view = reader_view(raw)
    assert view.subject == "big one" and view.visible[0].startswith("Hello reader")
    assert [link.url for link in view.links] == ["https://shop.example/sale"]
