"""A submitted message as raw header fields plus body, and the per-recipient Copy built from it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from email.errors import MessageError
from email.header import decode_header, make_header
from email.utils import getaddresses

from relay.base.offload import BIG, copy_range

_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
_CRLF_IN_VALUE = re.compile(r"[\r\n\x00]")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def split_header_block(raw: bytes) -> tuple[list[bytes], bytes]:
    """Split raw RFC 5322 bytes into header fields (each with folds and CRLF) and the body.

    A line that is neither a field nor a continuation ends the header (as if a blank
    line were there), so a malformed header never swallows the body.
    """
    end = raw.find(b"\r\n\r\n")
    if raw.startswith(b"\r\n"):
        return [], raw[2:]
    head, body = (raw, b"") if end < 0 else (raw[:end + 2], copy_range(raw, end + 4))
    fields: list[bytes] = []
    pos = 0
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        elif named := _FIELD_NAME.match(line):
            if named.end() != len(named.group(1)) + 1:
                # obsolete "Name : value" (RFC 5322 §4.5): strict readers end the header at it, and
                # would take every field after it, ours included, for body; it means "Name: value"
                line = named.group(1) + b":" + line[named.end():]
            fields.append(line)
        else:
            rest = head[pos:]
            return fields, b"".join((rest, b"\r\n", body) if end >= 0 else (rest,))
        pos += len(line)
    return fields, body


def field_name(raw_field: bytes) -> str:
    return raw_field.split(b":", 1)[0].strip().decode("ascii", "replace").lower()


def raw_field_value(raw_field: bytes) -> str:
    """The unfolded value as written, RFC 2047 words left encoded (they are never address syntax)."""
    value = raw_field.split(b":", 1)[1].decode("utf-8", "surrogateescape")
    if "\n" in value.rstrip():  # folded (most fields are one line: no regex for them)
        value = _FOLD.sub("", value)
    return value.strip()


def field_value(raw_field: bytes) -> str:
    """The unfolded value with RFC 2047 words decoded; raw UTF-8 (SMTPUTF8) kept."""
    value = raw_field_value(raw_field)
    if "=?" in value:
        try:
            value = str(make_header(decode_header(value)))
        except (ValueError, LookupError, UnicodeError, MessageError):
            pass  # undecodable words stay as written (CharsetError: an 8-bit charset name)
    return value


def make_field(name: str, value: str) -> bytes:
    """Build a header field; refuses CR/LF/NUL so no value can inject a header."""
    if _CRLF_IN_VALUE.search(value) or _CRLF_IN_VALUE.search(name):
        raise ValueError(f"header {name} would carry CR/LF")
    return f"{name}: {value}\r\n".encode("utf-8")


def clean_line(value: str) -> str:
    """Collapse CR/LF/NUL (and other controls) so a value is safe in a header or one line of text."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", value).strip()


@dataclass(init=False)
class Message:
    """The message as the client submitted it, as header fields and body; never modified (copies are).

    Only the parts are kept, not the submitted bytes as well: for a 25 MB message that is 25 MB
    less, and no stage needs the whole again.
    """

    headers: list[bytes]
    body: bytes
    size: int  # of the message as submitted

    def __init__(self, raw: bytes) -> None:
        self._set(*split_header_block(raw), len(raw))

    def _set(self, headers: list[bytes], body: bytes, size: int) -> None:
        self.headers, self.body, self.size = headers, body, size

    @classmethod
    def from_pieces(cls, pieces: list[bytes]) -> Message:
        """`Message(b"".join(pieces))` without the whole: the body is joined from the pieces.

        The header is split from the leading pieces (up to BIG bytes, where the blank line
        must be); the rest of the pieces join the body, in one copy that runs without the GIL.
        """
        size = sum(map(len, pieces))
        lead, taken = 0, 0
        while taken < len(pieces) and lead <= BIG:
            lead += len(pieces[taken])
            taken += 1
        head = b"".join(pieces[:taken])
        message = cls.__new__(cls)
        if taken < len(pieces) and b"\r\n\r\n" not in head and not head.startswith(b"\r\n"):
            message._set(*split_header_block(b"".join(pieces)), size)  # a header over BIG: rare
            return message
        headers, body = split_header_block(head)
        message._set(headers, b"".join([body, *pieces[taken:]]), size)
        return message

    def values(self, name: str) -> list[str]:
        name = name.lower()
        return [field_value(f) for f in self.headers if field_name(f) == name]

    def first(self, name: str) -> str | None:
        found = self.values(name)
        return found[0] if found else None

    def has(self, name: str) -> bool:
        name = name.lower()
        return any(field_name(f) == name for f in self.headers)

    def from_addresses(self) -> list[str]:
        """Every address in every From: field (more than one is a policy problem)."""
        addrs: list[str] = []
        # parsed before RFC 2047 decoding (RFC 2047 §5): a decoded `"` or `<` in the display name
        # could otherwise hide the address a mail reader shows, e.g. `=?utf-8?q?=22?= <x@evil>
        # =?utf-8?q?=22?= <news@own>` read as the one aligned address news@own
        for value in (raw_field_value(f) for f in self.headers if field_name(f) == "from"):
            plain = _PLAIN_FROM.match(value)
            if plain:  # what getaddresses gives for this simple form, at a fraction of its cost
                addrs.append(plain.group(1) or plain.group(2))
                continue
            found = [addr for _, addr in getaddresses([value]) if addr]
            addrs.extend(found or [""])  # a From: with no usable address still counts
        return addrs


# `local@domain` or `Display Name <local@domain>` with nothing in the name a parser could read
# another way (no quotes, comments, commas, brackets or @)
_PLAIN_FROM = re.compile(r"\s*(?:([A-Za-z0-9._+-]+@[A-Za-z0-9.-]+)|(?:[A-Za-z0-9 ._'-]*\s)?<([A-Za-z0-9._+-]+@[A-Za-z0-9.-]+)>)\s*\Z")


@dataclass
class Copy:
    """One recipient's copy: header fields and body that stages may transform."""

    recipient: str
    headers: list[bytes]
    body: bytes

    def remove(self, name: str) -> None:
        name = name.lower()
        self.headers = [f for f in self.headers if field_name(f) != name]

    def prepend(self, name: str, value: str) -> None:
        self.headers.insert(0, make_field(name, value))

    def replace(self, name: str, value: str) -> None:
        """Drop every field of this name and add ours, at the place of the first if any."""
        lname = name.lower()
        position = next((i for i, f in enumerate(self.headers) if field_name(f) == lname), None)
        self.remove(name)
        if position is None:
            self.headers.append(make_field(name, value))
        else:
            self.headers.insert(min(position, len(self.headers)), make_field(name, value))

    def has(self, name: str) -> bool:
        name = name.lower()
        return any(field_name(f) == name for f in self.headers)

    def as_bytes(self) -> bytes:
        return b"".join(self.headers) + b"\r\n" + self.body
