"""Put a footer into every part of a message a reader sees, on raw bytes, MIME-correct.

The work is split so that a fan-out to many recipients pays for MIME only once:

* `plan_footer(headers, body)` runs once per message. It scans the MIME structure on the raw
  bytes (its own boundary scanner, one linear pass; the `email` package is not used because it
  does not give byte offsets and does not round-trip bytes), chooses the parts that get a footer,
  decodes each of them once and precomputes everything that does not depend on the recipient.
* `FooterPlan.apply(text_footer, html_footer)` runs per copy: it encodes the two footers in each
  chosen part's charset and transfer encoding and splices bytes. Every byte outside the chosen
  parts' payloads (attachments, other parts, boundaries, preamble and epilogue, the headers of
  untouched parts) is copied unchanged.

Which parts get a footer (the parts a reader sees as "the message"):

* text/plain and text/html that are not attachments (`Content-Disposition: inline`, with a file
  name or not; else no `Content-Disposition: attachment` and no file name in `filename=` or `name=`);
* multipart/alternative: every alternative (both sides stay in step); other alternatives such
  as text/calendar are left alone;
* multipart/related: its root (the `start` part, else the first part);
* multipart/mixed and every other multipart: the first body part (not an attachment) that has a
  text part to carry the footer; later parts are attachments or trailing inline parts;
* message/rfc822 (a forwarded message) is never entered: it is the sender's attachment.

HTML gets the footer before the last `</body>` tag (any case), else before the last `</html>`
tag, else at the end, read as a browser reads markup (`relay.footer_html`): one inside a comment,
a script, a style or an attribute value is no tag. Plain text gets a blank line, a `-- ` separator line and the footer at the end.

Charsets and transfer encodings are kept: the payload is decoded with its transfer encoding
(7bit, 8bit, binary, quoted-printable, base64) and charset, the footer is added, and the result is
encoded again with the same charset and transfer encoding. Characters the part's charset cannot
hold are written as numeric character references (`&#233;`) in HTML, and as an ASCII
transliteration in plain text (accents dropped, typographic quotes and dashes made plain, `?`
for anything else): a reader of a legacy-charset text part sees a readable footer and no
mojibake. A 7bit part whose footer needs 8-bit bytes (a UTF-8 part, say) is switched to
quoted-printable and its Content-Transfer-Encoding header updated; a top-level part reports the
new encoding to the caller, which updates the copy's header.

What cannot get a footer (`plan_footer` returns None, and `plan_footer_explained` says why; the
footer-guard stage, `filters/footer_guard.py`, then refuses the message 554 5.6.0 naming it, SPEC §8):

* `multipart/signed`, `multipart/encrypted`, `application/(x-)pkcs7-mime` where the footer
  would have to go: changing them breaks the signature or cannot be done;
* malformed MIME: a multipart without a boundary, unterminated, or with a base64 or
  quoted-printable transfer encoding; a part without a header/body separator; a chosen text part
  with bad base64, an unknown or non-ASCII-compatible charset (UTF-16, UTF-7) or an unknown
  transfer encoding; an HTML part that ends inside a tag or attribute value, or holds
  `<plaintext>`, with no `</body>` or `</html>` tag before (a comment or raw text element left open
  at the end is closed instead: `relay.footer_guard.insertion`); nesting deeper than `MAX_DEPTH`;
  more than `MAX_PARTS` parts; a message with no text part a reader sees. Guessing at a broken
  structure risks corrupting what the recipient sees (the relay core refuses nesting deeper than
  100 with `554 5.6.0` using `mime_structure` (its depth) before any of this runs).

Nothing in this module raises on bad input: the planner turns every problem into None.
"""
from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Sequence

from relay.mail.footer_guard import Unplaceable, insertion
from relay.base.offload import BIG, copy_range, slices

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


# -- charsets ------------------------------------------------------------------------

_TRANSLIT = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2026": "...", "\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u00b7": ".", "\u2022": "*",
    "\u20ac": "EUR", "\u00a3": "GBP", "\u00a5": "JPY", "\u00a9": "(c)", "\u00ae": "(R)", "\u2122": "(TM)",
    "\u00df": "ss", "\u00e6": "ae", "\u00c6": "AE", "\u0153": "oe", "\u0152": "OE", "\u00f8": "o",
    "\u00d8": "O", "\u0142": "l", "\u0141": "L", "\u0111": "d", "\u0110": "D", "\u00fe": "th", "\u00de": "Th",
}


def _ascii_fallback(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler for plain-text footers: a readable ASCII stand-in for what the
    charset cannot hold (é → e, ’ → ', € → EUR, anything else → ?)."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = []
    for ch in exc.object[exc.start:exc.end]:
        if ch in _TRANSLIT:
            out.append(_TRANSLIT[ch])
            continue
        plain = "".join(c for c in unicodedata.normalize("NFKD", ch) if c.isascii() and not unicodedata.combining(c))
        out.append(plain if plain and plain.isprintable() else "?")
    return "".join(out), exc.end


FOOTER_TEXT_ERRORS = "relay-footer-ascii"
codecs.register_error(FOOTER_TEXT_ERRORS, _ascii_fallback)
_CODECS: dict[str, codecs.CodecInfo | None] = {}


def _codec(charset: str) -> codecs.CodecInfo | None:
    """The Python codec for a MIME charset, if it is known and ASCII-compatible."""
    name = charset.strip().lower()
    if name in _CODECS:
        return _CODECS[name]
    info: codecs.CodecInfo | None
    try:
        info = codecs.lookup(name)
        if not getattr(info, "_is_text_encoding", True) or info.encode(_ASCII_PROBE)[0] != _ASCII_PROBE.encode():
            info = None
    except (LookupError, TypeError, ValueError, UnicodeError):
        info = None
    if len(_CODECS) < 512:
        _CODECS[name] = info
    return info


# -- transfer encodings ----------------------------------------------------------------

_BARE_LF = re.compile(rb"(?<!\r)\n")


def _qp(data: bytes) -> bytes:
    """Quoted-printable with CRLF line breaks (binascii uses LF for data without a CRLF)."""
    out = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    # (two counts in C: the regex, which runs per copy on the footer, only when a bare LF is there)
    return _BARE_LF.sub(b"\r\n", out) if out.count(b"\n") != out.count(b"\r\n") else out


def _b64lines(data: bytes) -> bytes:
    """Base64 in CRLF-ended lines of 76 characters (base64.encodebytes, without its Python call per
    57 bytes: the guarded HTML footer is a few KB and is encoded per copy)."""
    if not data:
        return b""
    encoded = base64.b64encode(data)
    return b"\r\n".join([encoded[i:i + 76] for i in range(0, len(encoded), 76)] + [b""])


def _strict_b64decode(raw: bytes) -> bytes:
    compact = raw.translate(None, b" \t\r\n")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Malformed(f"bad base64 in a text part: {exc}") from None


def _open_end(chunk: bytes) -> bytes:
    """A quoted-printable chunk made to end at the start of a line: a chunk that ends mid-line
    gets a soft line break (inserted earlier when the '=' would make the line over 76)."""
    if not chunk or chunk.endswith(b"\r\n"):
        return chunk
    if chunk.endswith(b"="):
        return chunk + b"\r\n"  # a dangling soft break: complete it
    last_break = chunk.rfind(b"\r\n")
    line_start = 0 if last_break < 0 else last_break + 2
    if len(chunk) - line_start >= 76:
        cut = line_start + 73
        while cut > line_start and b"=" in chunk[cut - 2:cut]:
            cut -= 1  # never inside an =XX escape
        chunk = chunk[:cut] + b"=\r\n" + chunk[cut:]
    return chunk + b"=\r\n"


def _trailed(chunk: bytes, trailing_crlf: bool) -> bytes:
    """The last chunk of a payload: ends with CRLF exactly when the sender's payload did."""
    if not trailing_crlf and chunk.endswith(b"\r\n"):
        return chunk[:-2]
    if trailing_crlf and not chunk.endswith(b"\r\n"):
        return chunk + b"\r\n"
    return chunk


# -- the plan ----------------------------------------------------------------------------

@dataclass(eq=False)
class _Slot:
    """One part that gets a footer: where its payload is and how to rebuild it."""

    kind: str                 # "plain" | "html"
    start: int                # payload region in the top-level body
    end: int
    cte: str                  # 7bit | 8bit | binary | quoted-printable | base64
    codec: codecs.CodecInfo
    nl: str                   # the part's line break in decoded text
    lead: str                 # text put before the footer (plain: blank line and "-- ")
    prefix: bytes             # encoded payload before the footer (for base64: whole lines only)
    suffix: bytes             # encoded payload after the footer (base64: decoded bytes)
    content_prefix: bytes     # decoded bytes before / after the footer (for a 7bit → QP switch)
    content_suffix: bytes
    b64_tail: bytes = b""     # base64: decoded bytes after `prefix`'s whole lines, before the footer
    trailing_crlf: bool = True
    top: bool = False         # the top-level entity: its header is the copy's header
    hstart: int = 0           # header block of a part (for a CTE change)
    hend: int = 0
    fields: Sequence[bytes] = ()
    _qp_cache: tuple[bytes, bytes] | None = field(default=None, repr=False)

    def qp_header(self) -> bytes:
        kept = [f for f in self.fields
                if f.split(b":", 1)[0].rstrip(b" \t").lower() != b"content-transfer-encoding"]
        return b"".join(kept) + b"Content-Transfer-Encoding: quoted-printable\r\n"

    def payload(self, footer: bytes) -> tuple[list[bytes], bool]:
        """The new payload as chunks, with the encoded footer; True when the part switched to
        quoted-printable. Large chunks are the precomputed ones, never copied here."""
        if self.cte in _IDENTITY_CTES:
            if self.cte == "7bit" and not footer.isascii():
                if self._qp_cache is None:
                    # once per message, on the first copy that needs it
                    head, tail = _qp(self.content_prefix), _qp(self.content_suffix)
                    self._qp_cache = (_open_end(head), _trailed(tail, self.trailing_crlf) if tail else b"")
                return self._qp_chunks(self._qp_cache[0], footer, self._qp_cache[1]), True
            return [self.prefix, footer, self.suffix], False
        if self.cte == "quoted-printable":
            return self._qp_chunks(self.prefix, footer, self.suffix), False
        return [self.prefix, _trailed(_b64lines(self.b64_tail + footer + self.suffix), self.trailing_crlf)], False

    def _qp_chunks(self, head: bytes, footer: bytes, tail: bytes) -> list[bytes]:
        encoded = _qp(footer)
        if tail:
            return [head, _open_end(encoded), tail]
        return [head, _trailed(encoded, self.trailing_crlf)]


@dataclass
class FooterResult:
    body: bytes
    top_level_cte: str | None  # set when the top-level part's Content-Transfer-Encoding changed


@dataclass
class FooterPlan:
    """Where and how the footer goes into one message; built once, applied per copy."""

    body: bytes
    slots: list[_Slot]

    @property
    def needs_text(self) -> bool:
        return any(s.kind == "plain" for s in self.slots)

    @property
    def needs_html(self) -> bool:
        return any(s.kind == "html" for s in self.slots)

    def apply(self, text_footer: str, html_footer: str) -> FooterResult:
        """The body with the footers in (text_footer and html_footer are lines joined by '\\n';
        the HTML is already escaped). Per copy: encode and splice, nothing else."""
        body = self.body
        pieces: list[bytes] = []
        pos = 0
        top_cte = None
        encoded: dict[tuple[str, str, str], bytes] = {}
        for slot in self.slots:
            key = (slot.kind, slot.codec.name, slot.nl + slot.lead)
            footer = encoded.get(key)
            if footer is None:
                if slot.kind == "html":
                    text = slot.nl + slot.lead + html_footer.replace("\n", slot.nl) + slot.nl
                    footer = text.encode(slot.codec.name, "xmlcharrefreplace")
                else:
                    text = slot.lead + text_footer.replace("\n", slot.nl) + slot.nl
                    footer = text.encode(slot.codec.name, FOOTER_TEXT_ERRORS)
                encoded[key] = footer
            payload, switched = slot.payload(footer)
            if switched:
                if slot.top:
                    top_cte = "quoted-printable"
                else:
                    pieces += slices(body, pos, slot.hstart)
                    pieces.append(slot.qp_header())
                    pos = slot.hend
            pieces += slices(body, pos, slot.start)  # the join below copies them without the GIL
            pieces.extend(payload)
            pos = slot.end
        pieces += slices(body, pos)
        return FooterResult(b"".join(pieces), top_cte)


def _targets(ent: _Entity) -> list[_Entity]:
    """The entities under ent that a reader sees as the message text (see module doc)."""
    if ent.ctype in _UNTOUCHABLE:
        raise _Untouchable(ent.ctype)
    if ent.is_attachment:
        return []
    if ent.ctype in ("text/plain", "text/html"):
        return [ent]
    if not ent.ctype.startswith("multipart/"):
        return []
    if ent.ctype == "multipart/alternative":
        found: list[_Entity] = []
        for child in ent.children:
            found.extend(_targets(child))
        return found
    if ent.ctype == "multipart/related":
        if not ent.children:
            return []
        start = ent.params.get("start", "").strip()
        root = ent.children[0]
        if start:
            for child in ent.children:
                cid = _field(child.fields, b"content-id")
                if cid is not None and cid.strip() == start:
                    root = child
                    break
        return _targets(root)
    for child in ent.children:  # mixed, report, and anything else: the first body part
        if child.is_attachment:
            continue
        found = _targets(child)
        if found:
            return found
    return []


def _slot(ent: _Entity, body: bytes, top: bool) -> _Slot:
    cte = ent.cte
    if cte not in _KNOWN_CTES:
        raise _Malformed(f"unknown transfer encoding {cte!r} in a text part")
    charset = ent.params.get("charset") or "us-ascii"
    codec = _codec(charset)
    if codec is None:
        raise _Malformed(f"unknown or unsupported charset {charset!r}")
    assert ent.bend is not None
    raw = body if (ent.bstart, ent.bend) == (0, len(body)) else copy_range(body, ent.bstart, ent.bend)
    if cte == "base64":
        content = _strict_b64decode(raw)
    elif cte == "quoted-printable":
        content = binascii.a2b_qp(raw)
    else:
        content = raw
    kind = "html" if ent.ctype == "text/html" else "plain"
    try:
        if kind == "plain" and cte != "base64" and len(content) > BIG:
            # only its validity and its last character matter here: decoded a piece at a time,
            # since one decode of a 25 MB part holds the GIL (and the event loop) for long
            text = _last_character(codec, content)
        else:
            text = codec.decode(content, "surrogateescape")[0]
    except (UnicodeError, ValueError, TypeError) as exc:
        raise _Malformed(f"text part does not decode as {charset}: {exc}") from None
    nl = "\r\n" if cte != "base64" or "\r\n" in text or "\n" not in text else "\n"
    idx = len(text)  # plain: the footer goes at the end (text may be only the last character)
    closer = ""
    if kind == "html":
        # a `</body>` in a comment, script or attribute value is not one: a footer there is unseen;
        # a comment or raw text element left open at the end is closed first (relay.footer_guard)
        try:
            idx, closer = insertion(text)
        except Unplaceable as exc:
            raise _Malformed(str(exc)) from None
    if idx == len(text):
        cpre, csuf = content, b""
    else:
        try:
            cpre = codec.encode(text[:idx], "surrogateescape")[0]
            csuf = codec.encode(text[idx:], "surrogateescape")[0]
        except (UnicodeError, ValueError) as exc:
            raise _Malformed(f"text part does not round-trip through {charset}: {exc}") from None
        if cpre + csuf != content:
            # a stateful charset (ISO-2022-JP) re-encoded slightly differently: still the same text
            content = cpre + csuf
    # a sender's bytes may end shifted into two-byte mode (ISO-2022-JP without its closing ESC ( B):
    # the footer's ASCII would then read as kanji, so the reader is shifted back first
    back = _shift_back(codec.name, cpre)
    if back:
        cpre += back
    lead = closer  # html: end tags written before the footer (the footer-guard stage may add some)
    if kind == "plain":
        lead = ("" if not text or text.endswith("\n") else nl) + nl + "-- " + nl
    slot = _Slot(kind=kind, start=ent.bstart, end=ent.bend, cte=cte, codec=codec, nl=nl, lead=lead,
                 prefix=b"", suffix=b"", content_prefix=cpre, content_suffix=csuf,
                 trailing_crlf=raw.endswith(b"\r\n") or not raw, top=top,
                 hstart=ent.hstart, hend=ent.hend, fields=ent.fields)
    if cte in _IDENTITY_CTES:
        slot.prefix, slot.suffix = cpre, csuf
    elif cte == "quoted-printable":
        head, tail = _qp_split(raw, cpre, csuf)
        slot.prefix, slot.suffix = _open_end(head), _trailed(tail, slot.trailing_crlf) if tail else b""
    else:
        whole = len(cpre) - len(cpre) % _B64_LINE
        slot.prefix, slot.b64_tail, slot.suffix = _b64lines(cpre[:whole]), cpre[whole:], csuf
    return slot


def _shift_back(codec_name: str, data: bytes) -> bytes:
    """The bytes that return a stateful 7-bit charset to ASCII after `data`; b"" when it is there."""
    if codec_name.startswith("iso2022_jp"):
        esc = data.rfind(b"\x1b")
        return b"" if esc < 0 or data[esc:esc + 3] in (b"\x1b(B", b"\x1b(J") else b"\x1b(B"
    if codec_name == "hz":
        return b"~}" if data.rfind(b"~{") > data.rfind(b"~}") else b""
    return b""


def _last_character(codec: codecs.CodecInfo, content: bytes) -> str:
    """The last character of `content` decoded ("" when empty), checking every byte as
    `codec.decode(content, "surrogateescape")` does, a BIG piece per call."""
    if codec.incrementaldecoder is None:
        return codec.decode(content, "surrogateescape")[0][-1:]
    decoder = codec.incrementaldecoder("surrogateescape")
    last = ""
    for start in range(0, len(content), BIG):
        piece = decoder.decode(content[start:start + BIG], start + BIG >= len(content))
        last = piece[-1:] or last
    return last


def _qp_split(raw: bytes, cpre: bytes, csuf: bytes) -> tuple[bytes, bytes]:
    """Encoded QP before and after the insertion point, keeping the sender's bytes when the
    insertion point can be found in them, else re-encoding the two halves."""
    if not csuf:
        return raw, b""
    for m in reversed(list(re.finditer(rb"</(?:body|html)", raw, re.IGNORECASE))):
        if binascii.a2b_qp(raw[:m.start()]) == cpre and binascii.a2b_qp(raw[m.start():]) == csuf:
            return raw[:m.start()], raw[m.start():]
    return _qp(cpre), _qp(csuf)


def plan_footer_explained(headers: Sequence[bytes], body: bytes,
                          scan: _Scan | None = None) -> tuple[FooterPlan | None, str]:
    """The plan, or None and why there is no footer (for the log). Never raises.

    `scan`: this message's `mime_structure(headers, body)` when already made."""
    try:
        if scan is None:
            scan = _scan(headers, body)
        if scan.malformed:
            return None, f"malformed MIME: {scan.malformed}"
        if scan.depth > MAX_DEPTH:
            return None, f"MIME nesting depth {scan.depth} is over {MAX_DEPTH}"
        try:
            targets = _targets(scan.root)
        except _Untouchable as exc:
            return None, f"{exc} body is never modified"
        if not targets:
            return None, "no text part a reader sees"
        slots = [_slot(ent, body, ent is scan.root) for ent in targets]
        slots.sort(key=lambda s: s.start)
        return FooterPlan(body, slots), ""
    except _Malformed as exc:
        return None, f"malformed MIME: {exc}"
    except Exception as exc:  # noqa: BLE001 - malformed input must never crash a transaction
        return None, f"MIME not understood ({type(exc).__name__})"


def plan_footer(headers: Sequence[bytes], body: bytes) -> FooterPlan | None:
    """Plan the footer for a message (`Message.headers`, `Message.body`); None: no footer."""
    return plan_footer_explained(headers, body)[0]
