"""The MIME structure of a message on raw bytes: one linear boundary scan, byte offsets kept.

`mime_structure` (the core's depth check, once per message) and the footer planner
(`relay/mail/mime_footer.py`) read it. The `email` package is not used because it does not give
byte offsets and does not round-trip bytes. Nothing here raises on bad input: a problem is
recorded as malformed, and the planner turns it into "no footer" with the reason.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence



MAX_DEPTH = 100       # SPEC §8: deeper nesting is refused by the core (554 5.6.0)
MAX_PARTS = 10_000    # more parts than this is a MIME bomb, not a newsletter
_UNTOUCHABLE = frozenset({"multipart/signed", "multipart/encrypted", "application/pkcs7-mime",
                          "application/x-pkcs7-mime", "application/pgp-encrypted"})
_IDENTITY_CTES = frozenset({"7bit", "8bit", "binary"})
_KNOWN_CTES = _IDENTITY_CTES | {"quoted-printable", "base64"}
_B64_LINE = 57  # bytes per 76-character base64 line
_FIELD_NAME = re.compile(rb"^[!-9;-~]+[ \t]*:")
_PARAM = re.compile(r'([^\s=;"]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')
# every ASCII character a footer uses must encode to itself in the part's charset
_ASCII_PROBE = "<>/=-:.,@()'\"&;#!?_+% \tabcxyzABCXYZ0189\r\n"


class _Malformed(Exception):
    """Internal: the structure or a chosen part cannot be handled; the plan is None."""


class _Untouchable(Exception):
    """Internal: the footer would go into a signed or encrypted body."""


# -- headers ---------------------------------------------------------------------------

def _split_fields(block: bytes) -> list[bytes]:
    """Header fields (with folds) of a part's header block."""
    fields: list[bytes] = []
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _field(fields: Sequence[bytes], lname: bytes) -> str | None:
    """The unfolded value of the first field of this (lower-case) name, as latin-1 text."""
    for f in fields:
        colon = f.find(b":")
        if colon > 0 and f[:colon].rstrip(b" \t").lower() == lname:
            return f[colon + 1:].replace(b"\r", b"").replace(b"\n", b"").decode("latin-1").strip()
    return None


def _params(value: str) -> tuple[str, dict[str, str]]:
    """`type/subtype; a=b; c="d"` → ("type/subtype", {"a": "b", "c": "d"}); names lower-case."""
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for m in _PARAM.finditer(rest):
        name, raw = m.group(1).lower(), m.group(2).strip()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(name, raw)
    return main.strip().lower(), params


class _Entity:
    """One MIME entity: offsets into the top-level body and its parsed header fields."""

    __slots__ = ("fields", "hstart", "hend", "bstart", "bend", "ctype", "params", "boundary",
                 "children", "current", "depth", "in_message", "closed")

    def __init__(self, fields: Sequence[bytes], hstart: int, hend: int, bstart: int, depth: int,
                 in_message: bool) -> None:
        self.fields, self.hstart, self.hend, self.bstart = fields, hstart, hend, bstart
        self.bend: int | None = None
        self.depth, self.in_message = depth, in_message
        self.boundary: bytes | None = None
        self.children: list[_Entity] = []
        self.current: _Entity | None = None
        self.closed = False
        ct = _field(fields, b"content-type")
        if ct is None:
            self.ctype, self.params = "text/plain", {}  # RFC 2045 §5.2 default
        else:
            self.ctype, self.params = _params(ct)

    @property
    def valid_type(self) -> bool:
        top, slash, sub = self.ctype.partition("/")
        return bool(top and slash and sub) and " " not in self.ctype

    @property
    def cte(self) -> str:
        value = _field(self.fields, b"content-transfer-encoding")
        return value.lower() if value else "7bit"

    @property
    def is_attachment(self) -> bool:
        disposition = _field(self.fields, b"content-disposition")
        if disposition is not None:
            kind, dparams = _params(disposition)
            if kind == "inline":
                return False  # shown in the message, file name or not: it gets the footer
            if kind == "attachment" or any(k.startswith("filename") for k in dparams):
                return True
        return any(k == "name" or k.startswith("name*") for k in self.params)


def _part_at(body: bytes, s: int, depth: int, in_message: bool) -> tuple[_Entity, bool]:
    """The entity whose header block starts at s; False when it has no header/body separator."""
    if body.startswith(b"\r\n", s):
        return _Entity((), s, s, s + 2, depth, in_message), True
    nxt = body.find(b"\r\n--", s)
    limit = len(body) if nxt < 0 else nxt + 2
    e = body.find(b"\r\n\r\n", s, limit)
    if e < 0:
        # headers only (or garbage): treat all of it as headers and the body as empty
        end = len(body) if nxt < 0 else nxt
        return _Entity(_split_fields(body[s:end]), s, end, end, depth, in_message), False
    return _Entity(_split_fields(body[s:e + 2]), s, e + 2, e + 4, depth, in_message), True


@dataclass
class _Scan:
    root: _Entity
    depth: int
    malformed: str | None
    parts: int


def _scan(headers: Sequence[bytes], body: bytes) -> _Scan:
    """One pass over the body: every multipart's delimiter lines, each part's header block.

    A stack of open multiparts is kept; a delimiter line of an outer boundary closes every inner
    multipart still open (that is an unterminated inner multipart: malformed, unless it is inside
    a forwarded message, which is never modified). Linear in the body size.
    """
    root = _Entity(tuple(headers), 0, 0, 0, 1, False)
    root.bend = len(body)
    state = {"malformed": None, "depth": 1, "parts": 0}
    stack: list[_Entity] = []
    active: dict[bytes, int] = {}

    def bad(ent: _Entity, why: str) -> None:
        if not ent.in_message and state["malformed"] is None:
            state["malformed"] = why

    def open_entity(ent: _Entity) -> int:
        """Push a multipart, descend into a forwarded message; returns where scanning resumes."""
        while True:
            state["depth"] = max(state["depth"], ent.depth)
            if not ent.valid_type:
                bad(ent, f"bad Content-Type {ent.ctype!r}")
                return ent.bstart
            if ent.ctype.startswith("multipart/"):
                boundary = ent.params.get("boundary", "")
                if not boundary or "\r" in boundary or "\n" in boundary:
                    bad(ent, f"{ent.ctype} without a boundary")
                    return ent.bstart
                if ent.cte not in _IDENTITY_CTES:
                    bad(ent, f"{ent.ctype} with transfer encoding {ent.cte}")
                    return ent.bstart
                ent.boundary = boundary.encode("latin-1")
                stack.append(ent)
                active[ent.boundary] = active.get(ent.boundary, 0) + 1
                return ent.bstart
            if ent.ctype in ("message/rfc822", "message/global") and ent.cte in _IDENTITY_CTES:
                inner, ok = _part_at(body, ent.bstart, ent.depth + 1, True)
                ent.children.append(inner)
                ent.current = inner
                ent = inner
                continue
            return ent.bstart

    def close_chain(ent: _Entity | None, end: int) -> None:
        while ent is not None and ent.bend is None:
            ent.bend = max(end, ent.bstart)
            ent = ent.current

    def pop_to(k: int) -> None:
        """Drop stack entries above index k (exclusive of k)."""
        while len(stack) > k + 1:
            gone = stack.pop()
            active[gone.boundary] -= 1
            if not active[gone.boundary]:
                del active[gone.boundary]
            if not gone.closed:
                bad(gone, f"unterminated {gone.ctype}")

    def delimiter(p: int) -> int:
        """Handle a line starting with '--' at p; returns the position to search on from."""
        line_end = body.find(b"\r\n", p)
        if line_end < 0:
            line_end = len(body)
        if not stack:
            return line_end
        text = body[p + 2:line_end].rstrip(b" \t")
        closing = False
        if text not in active:
            if text.endswith(b"--") and text[:-2] in active:
                text, closing = text[:-2], True
            else:
                return line_end
        k = len(stack) - 1
        while stack[k].boundary != text:
            k -= 1
        owner = stack[k]
        end = p - 2 if p >= 2 else 0
        close_chain(owner.current, end)
        owner.current = None
        pop_to(k)
        if closing:
            owner.closed = True
            pop_to(k - 1)
            return line_end
        state["parts"] += 1
        if state["parts"] > MAX_PARTS:
            raise _Malformed(f"more than {MAX_PARTS} MIME parts")
        if line_end >= len(body):
            return line_end  # a delimiter as the last line: unterminated, reported at the end
        part, ok = _part_at(body, line_end + 2, owner.depth + 1, owner.in_message)
        if not ok:
            bad(part, "a MIME part without a blank line after its header")
        owner.children.append(part)
        owner.current = part
        return open_entity(part) - 2

    try:
        open_entity(root)
        if stack:
            pos = 0
            if body.startswith(b"--"):
                pos = delimiter(0)
            while True:
                i = body.find(b"\r\n--", pos)
                if i < 0:
                    break
                pos = max(delimiter(i + 2), i + 2)
            close_chain(stack[0].current if stack else None, len(body))
            for ent in stack:
                close_chain(ent.current, len(body))
            pop_to(-1)
    except _Malformed as exc:
        state["malformed"] = str(exc)
    return _Scan(root, state["depth"], state["malformed"], state["parts"])


# ctx.facts key of the message's structure scan, made once per message by the relay core (for the
# MIME depth limit) and planned from by the footer stage: one scan instead of two
STRUCTURE_FACT = "mime_structure"


def mime_structure(headers: Sequence[bytes], body: bytes) -> _Scan | None:
    """The structure scan of a message (its depth, parts and any malformation); None if it failed."""
    try:
        return _scan(headers, body)
    except Exception:  # noqa: BLE001 - a probe must never take the relay down
        return None


def mime_depth(message: bytes | tuple[Sequence[bytes], bytes]) -> int:
    """MIME nesting depth of a message: 1 for a single-part message, +1 for each level of
    multipart or message/rfc822 nesting (so `multipart/mixed` holding a text part is 2).

    `message` is the raw message (header, blank line, body) or `(header_fields, body)` as held by
    `relay.message.Message` (`(msg.headers, msg.body)`). `mime_structure(...).depth`: one linear
    pass over the body; never raises, also on malformed MIME (it counts the structure it can see).
    The relay core refuses a message whose depth is greater than 100 with `554 5.6.0`.
    """
    try:
        if isinstance(message, (bytes, bytearray, memoryview)):
            from relay.mail.message import split_header_block

            headers, body = split_header_block(bytes(message))
        else:
            headers, body = message
    except Exception:  # noqa: BLE001 - a depth probe must never take the relay down
        return 1
    structure = mime_structure(headers, body)
    return structure.depth if structure is not None else 1
