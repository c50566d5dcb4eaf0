"""Reading an SMTP DATA section in large pieces instead of aiosmtpd's one await per line."""
from __future__ import annotations

import asyncio
import re

from relay import replies
from relay.base.offload import BIG

# aiosmtpd reads DATA a line at a time from a StreamReader whose limit is its line length (1001
# bytes), so the socket is paused and resumed every 2 KB and a 10 KB message costs some 130
# awaits: a tenth of the relay's CPU under load. Here the reader's buffer may grow to READ_LIMIT
# while DATA lasts and each await returns everything up to the next ".\r\n".
READ_LIMIT = 64 * 1024
TERMINATOR = b".\r\n"
LINE_TOO_LONG = "500 5.5.2 Line too long (see RFC 5321 4.5.3.1.6)"
# RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with its CRLF, counted once the client's
# dot-stuffing is taken away (aiosmtpd's 1001 counts the line as sent, so a 999-character line passed)
TEXT_LINE_LIMIT = 1000
# SPEC §8: a "." line next to a bare LF (`\n.\n`, `\n.\r\n`, `\r\n.\n`) ends DATA for some
# servers and not for others: refused, while any other bare LF is a CRLF (Postfix's
# `smtpd_forbid_bare_newline = normalize`). Looked for in the bytes as sent, before unstuffing.
_LOOKALIKE = re.compile(rb"(?<!\r)\n\.\r?\n|\r\n\.\n")


def has_lookalike(data: bytes) -> bool:
    """`_LOOKALIKE.search(data) is not None`, looking only where "\n." is (C-speed finds).

    A regex pass over a 10 KB piece cost 180 µs, and quoted-printable mail has "\n." wherever a
    soft line break falls before a dot: most newsletters paid it on every message."""
    at = data.find(b"\n.")
    while at >= 0:
        after = data[at + 2:at + 4]
        if after[:1] == b"\n" or (after == b"\r\n" and (at == 0 or data[at - 1] != 13)):
            return True
        at = data.find(b"\n.", at + 1)
    return False


class _LineLengths:
    """The longest line seen across pieces, its CRLF counted (RFC 5321 counts it)."""

    def __init__(self) -> None:
        self.longest = 0
        self.open_line = 0  # length of the unfinished line at the end of the last piece

    def feed(self, piece: bytes) -> None:
        first_end = piece.find(b"\n")
        if first_end < 0:
            self.open_line += len(piece)
            return
        self.longest = max(self.longest, self.open_line + first_end + 1)
        last_end = piece.rfind(b"\n")
        if last_end > first_end:
            self.longest = max(self.longest, max(map(len, piece[first_end + 1:last_end].split(b"\n"))) + 1)
        self.open_line = len(piece) - last_end - 1


async def read_data(reader: asyncio.StreamReader, size_limit: int | None,
                    line_limit: int = TEXT_LINE_LIMIT) -> tuple[list[bytes], str | None]:
    """Read up to the lone "." line; return the content (dot-unstuffed) and None, or [] and the error reply.

    The content comes as the pieces it was read in, never joined into one whole: the message is
    split into header and body from them (`Message.from_pieces`), so a 25 MB message is not
    held twice (whole and body) and no whole-message copy holds the GIL.

    Like aiosmtpd, an oversized message or line is read to its end before the error is given
    (RFC 5321 §4.2.5), and nothing past the limit is kept in memory.
    """
    pieces: list[bytes] = []
    lookalike = False
    carry = b"\r\n"  # the last raw bytes before this piece, for a look-alike split between pieces
    size = 0
    lines = _LineLengths()
    tail = b"\r\n"  # the last two bytes read; the data itself begins a line
    old_limit = getattr(reader, "_limit", None)
    if old_limit is not None:
        reader._limit = max(old_limit, READ_LIMIT)  # type: ignore[attr-defined]
    try:
        while True:
            try:
                piece = await reader.readuntil(TERMINATOR)
            except asyncio.LimitOverrunError as error:
                # no ".\r\n" within the limit: take what is buffered, but not a possible start of one
                piece = await reader.readexactly(error.consumed)
            # the end is ".\r\n" on a line of its own: the two bytes before it are CRLF
            found = piece.endswith(TERMINATOR) and (tail + piece[-5:-3])[-2:] == b"\r\n"
            before, tail = tail, piece[-2:] if len(piece) >= 2 else (tail + piece)[-2:]
            body = piece[:-3] if found else piece
            raw = piece if not found else piece[:-1]  # keep the terminator's CR: `\n.\r` must not match
            if not lookalike and (b"\n." in carry + raw[:4] or b"\n." in raw):
                lookalike = has_lookalike(carry + raw)
            carry = (carry + raw[-4:])[-4:]
            size += len(body)
            if size_limit and size > size_limit:
                pieces = []  # keep reading to the end, keep nothing
            elif body:
                body = _unstuff(body, before)
                lines.feed(body)
                pieces.append(body)
            if found:
                break
            if size > BIG:
                # pieces already buffered are returned without suspending: let other sessions run
                await asyncio.sleep(0)
    finally:
        if old_limit is not None:
            reader._limit = old_limit  # type: ignore[attr-defined]
    if size_limit and size > size_limit:
        return [], replies.MESSAGE_TOO_BIG
    if lines.longest > line_limit:
        return [], LINE_TOO_LONG
    if lookalike:
        return [], replies.SMUGGLING
    return pieces, None


def _unstuff(piece: bytes, before: bytes) -> bytes:
    """RFC 5321 §4.5.2: the client doubled each line's leading dot; take one away.

    Piece by piece (a whole-message replace would hold a third copy of a big message); `before`
    is the two bytes read before this piece, so a line start split between pieces is seen.
    """
    if piece[:1] == b"." and before[-1:] == b"\n":
        piece = piece[1:]
    # a line ending in a bare LF is a line too (normalized later): its leading dot is stuffing as well
    return piece.replace(b"\n.", b"\n")


def normalize_line_ends(pieces: list[bytes]) -> list[bytes] | None:
    """Pieces with every bare LF made CRLF; None when the data holds a bare CR or NUL (SPEC §8).

    The end-of-data look-alikes were already refused by `read_data`. Mail that is all CRLF (the
    common case) comes back as the same piece objects after three C-speed counts per piece.
    """
    out: list[bytes] = []
    open_cr = b""  # a CR ending the previous piece: it belongs with this piece's first byte
    for piece in pieces:
        if open_cr:
            piece, open_cr = open_cr + piece, b""
        if piece.endswith(b"\r"):
            piece, open_cr = piece[:-1], b"\r"
        if b"\x00" in piece:
            return None
        pairs = piece.count(b"\r\n")
        if piece.count(b"\r") != pairs:
            return None
        if piece.count(b"\n") != pairs:
            # every CR here is in a CRLF (a bare one was refused above): two C passes, not a regex
            piece = piece.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if piece:
            out.append(piece)
    return None if open_cr else out
