"""The text a reader of a message sees: MIME walked, transfer encodings and charsets undone, HTML made text.

`reader_view(raw)` returns a `TextView`: the Subject, the visible text of every text part
(HTML turned to text with image alt text and link text kept), the text an HTML part hides
(display:none, visibility:hidden, font-size:0 ...), and every link (anchor href with its
visible text, and URLs written in plain text).

It is read-only and never raises on malformed input: bad base64, unknown charsets, a missing
boundary or deep nesting give the best text that can be had. It is built for speed (the content
stage must cost less than one `email` parse): a light MIME walker on the raw bytes instead of the
`email` package, and HTML parsed by lexbor, an HTML5 parser in C, whose tree is worked on with
CSS selectors and C-level text extraction (filters/content/textview_html.py), so it is read the way a
mail client's browser engine reads it.

Limits: at most `text_limit` characters of text are collected in total (256 KiB by default),
each part is cut to its first `part_limit` decoded bytes (1 MiB), attachments
(`Content-Disposition: attachment`) and non-text parts are not read, and MIME nesting deeper
than 100 or more than 500 parts is not followed.
"""
from __future__ import annotations

import binascii
import codecs
import functools
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from relay.mail.message import field_name, field_value, split_header_block

try:  # the C helpers (filters/content/_wordscan.c); without them, or built before these, the Python paths
    from filters.content import _wordscan
except ImportError:  # pragma: no cover  (built without a C compiler)
    _wordscan = None  # type: ignore[assignment]
from filters.content.textview_html import html_text
from relay.base.offload import copy_range

TEXT_LIMIT = 256 * 1024
PART_LIMIT = 1024 * 1024
MAX_DEPTH = 100
MAX_PARTS = 500


class Link(NamedTuple):  # a tuple: a newsletter has hundreds, and tuples are the cheapest to build
    url: str
    text: str      # the anchor's visible text; "" for a URL written in plain text
    source: str    # "html" (an <a>/<area> href) or "text" (a URL in the text)


@dataclass
class TextView:
    subject: str = ""
    visible: list[str] = field(default_factory=list)   # chunks of text the reader sees
    hidden: list[str] = field(default_factory=list)    # text an HTML part hides from the reader
    links: list[Link] = field(default_factory=list)
    truncated: bool = False                             # a limit cut something off
    image_only: bool = False                            # an HTML part shows images and next to no text
    _size: int = 0

    @property
    def text(self) -> str:
        return "\n".join(self.visible)

    def add(self, chunk: str, hidden: bool = False) -> None:
        if not chunk:
            return
        room = TEXT_LIMIT - self._size
        if room <= 0:
            self.truncated = True
            return
        if len(chunk) > room:
            chunk = chunk[:room]
            self.truncated = True
        self._size += len(chunk)
        (self.hidden if hidden else self.visible).append(chunk)


# ---------------------------------------------------------------------------------------------
# MIME

_PARAM = re.compile(r';\s*([A-Za-z0-9*_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')
_QUOTED_PAIR = re.compile(r"\\(.)")
_LEGACY_CHARSETS = {"unknown-8bit": "latin-1", "x-unknown": "latin-1", "x-user-defined": "latin-1",
                    "default": "latin-1", "us-ascii": "cp1252", "ascii": "cp1252",
                    "iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252"}


def _content_type(value: str | None) -> tuple[str, dict[str, str]]:
    if not value:
        return "text/plain", {}
    ctype = value.split(";", 1)[0].strip().lower() or "text/plain"
    params: dict[str, str] = {}
    for name, raw in _PARAM.findall(value):
        if raw.startswith('"'):
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1]) if "\\" in raw else raw[1:-1]
        name = name.lower()
        if name.endswith("*"):  # RFC 2231: charset'lang'value
            name = name.rstrip("*")
            raw = raw.split("'", 2)[-1]
        params.setdefault(name, raw)
    return ctype, params


def _transfer_decode(data: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "base64":
        cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        cleaned = cleaned[: len(cleaned) - len(cleaned) % 4]
        try:
            return binascii.a2b_base64(cleaned)
        except binascii.Error:
            return b""
    if encoding == "quoted-printable":
        try:
            return _qp_decode(data)
        except binascii.Error:
            return data
    return data


# binascii.a2b_qp, or the same in runs (_wordscan.qp_decode: 61 -> 15 us for a 100 KB newsletter)
_qp_decode = getattr(_wordscan, "qp_decode", binascii.a2b_qp)
_ASCII_READS_ASCII = frozenset({"", "ascii", "cp1252", "iso8859-1", "iso8859-15"})  # ("": none declared)


def _codec(charset: str | None) -> str:
    """The text codec for a declared charset; "" when none is declared or it names no text codec."""
    if not charset:
        return ""
    name = _LEGACY_CHARSETS.get(charset.strip().lower(), charset.strip())
    try:
        info = codecs.lookup(name)
    except (LookupError, UnicodeError, ValueError):  # 8-bit or NUL bytes in the name name no codec
        return ""
    # "base64", "rot13", "zlib" ... are codecs too, but bytes.decode refuses them
    return info.name if getattr(info, "_is_text_encoding", True) else ""


def decode_charset(data: bytes, charset: str | None) -> str:
    """Bytes to text with the declared charset; unknown or missing charsets fall back safely."""
    name = _codec(charset)
    if name:
        try:
            return data.decode(name, "replace")
        except (UnicodeError, LookupError, ValueError, TypeError):
            pass  # "idna", "punycode", "undefined": codecs of text that no mail part is written in
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _headers(fields: list[bytes]) -> dict[str, str]:
    found: dict[str, str] = {}
    for f in fields:
        if f.lstrip()[:8].lower() != b"content-":
            continue  # (a name test on the first bytes: field_name decodes and lowercases the name)
        name = field_name(f)
        if name in ("content-type", "content-transfer-encoding", "content-disposition") and name not in found:
            found[name] = field_value(f)
    return found


def _split_multipart(body: bytes, boundary: str) -> list[bytes]:
    """The body parts between `--boundary` lines (bytes.find: this runs at C speed)."""
    data = b"".join((b"\r\n", body))  # join, not +: a big copy then runs without the GIL
    marker = b"\r\n--" + boundary.encode("utf-8", "replace")
    parts: list[bytes] = []
    start = None
    pos = data.find(marker)
    while pos >= 0:
        after = pos + len(marker)
        line_end = data.find(b"\r\n", after)
        line_end = len(data) if line_end < 0 else line_end
        rest = data[after:line_end]
        closing = rest.startswith(b"--")
        if rest.strip(b" \t-") == b"":  # a delimiter line, not a longer boundary that starts alike
            if start is not None:
                parts.append(copy_range(data, start, pos))
            if closing:
                return parts
            start = line_end + 2
        pos = data.find(marker, after)
    if start is not None:  # no closing delimiter: the last part runs to the end
        parts.append(copy_range(data, start))
    return parts


class _Walker:
    def __init__(self, view: TextView) -> None:
        self.view = view
        self.parts = 0

    def entity(self, fields: list[bytes], body: bytes, depth: int, default_type: str = "text/plain") -> None:
        self.parts += 1
        if depth > MAX_DEPTH or self.parts > MAX_PARTS:
            self.view.truncated = True
            return
        headers = _headers(fields)
        ctype, params = _content_type(headers.get("content-type") or default_type)
        if ctype.startswith("multipart/"):
            boundary = params.get("boundary")
            if not boundary:  # a multipart without boundary: read the body as text
                self.text_part(body, "text/plain", params.get("charset"), headers)
                return
            child_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
            for part in _split_multipart(body, boundary):
                sub_fields, sub_body = split_header_block(part)
                self.entity(sub_fields, sub_body, depth + 1, child_default)
            return
        if headers.get("content-disposition", "").lower().startswith("attachment"):
            return
        if ctype == "message/rfc822":
            sub_fields, sub_body = split_header_block(_transfer_decode(body, headers.get("content-transfer-encoding", "")))
            for f in sub_fields:
                if f.lstrip()[:7].lower() == b"subject" and field_name(f) == "subject":
                    self.view.add(field_value(f))
            self.entity(sub_fields, sub_body, depth + 1)
            return
        if ctype in ("text/plain", "text/html", "text/enriched", "text/markdown") or ctype == "text":
            self.text_part(body, ctype, params.get("charset"), headers)

    def text_part(self, body: bytes, ctype: str, charset: str | None, headers: dict[str, str]) -> None:
        data = _transfer_decode(body, headers.get("content-transfer-encoding", ""))
        if len(data) > PART_LIMIT:
            data = data[:PART_LIMIT]
            self.view.truncated = True
        if ctype == "text/html":
            # the parser reads UTF-8 (bad sequences as U+FFFD, as decode(.., "replace") does):
            # UTF-8 parts, and ASCII in a charset that reads ASCII as ASCII, go to it undecoded
            codec = _codec(charset)
            if codec == "utf-8" or (codec in _ASCII_READS_ASCII and data.isascii()):
                html_to_text(data, self.view)
            else:
                html_to_text(decode_charset(data, charset), self.view)
        else:
            text = decode_charset(data, charset)
            self.view.add(text)
            self.view.links += _text_links(text)


def reader_view(raw: bytes) -> TextView:
    """The reader-visible text, hidden HTML text and links of a raw RFC 5322 message."""
    if b"\r\n" not in raw and b"\n" in raw:
        raw = raw.replace(b"\n", b"\r\n")
    return reader_view_of(*split_header_block(raw))


def reader_view_of(fields: list[bytes], body: bytes) -> TextView:
    """`reader_view` of a message already split into header fields and body."""
    if b"\r\n" not in body and b"\n" in body:  # a file with Unix line ends (SMTP gives CRLF)
        body = body.replace(b"\n", b"\r\n")
    view = TextView()
    for f in fields:
        if f.lstrip()[:7].lower() == b"subject" and field_name(f) == "subject":  # (the first bytes first)
            view.subject = field_value(f)
            break
    _Walker(view).entity(fields, body, 0)
    return view


# ---------------------------------------------------------------------------------------------
# URLs in text, and HTML

# `\b(?:https?://|www\.)`, case-insensitive, written to start with a character class so the regex
# engine skips ahead to the next h or w instead of trying every position: the \b becomes a
# look-behind after the first letter. The URL runs to white space, a control, < > " or ': the
# class names the 29 characters \s matches (str.isspace) instead of saying \s, so it is one table
# lookup a character, not a set of tests (tests/test_content_fastpaths.py holds the two equal)
_URL_CHARS = "[^\\x00-\\x20\"'<>\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
_TEXT_URL = re.compile(r"[hHwW](?<!\w.)(?:(?<=[hH])(?i:ttps?://)|(?<=[wW])(?i:ww\.))" + _URL_CHARS + "+")
_URL_END = ".,;:!?)]}>'\""
_new_link = functools.partial(tuple.__new__, Link)  # Link(*fields) without the Python-level __new__


def _url_starts(text: str) -> list[int]:
    """Where "http" or "www." starts in `text`, in any case (h t p w have no other cases), in order."""
    low = text.encode("ascii", "replace").lower()  # one byte per character: the same positions
    starts = []
    for mark in (b"http", b"www."):
        at = low.find(mark)
        while at >= 0:
            starts.append(at)
            at = low.find(mark, at + 4)
    return sorted(starts)


_text_urls = getattr(_wordscan, "text_urls", None)


def _text_links(text: str) -> list[Link]:
    """The URLs written in `text` (what `_TEXT_URL.findall` finds), tried only where one can start
    (`_wordscan.text_urls`, when built, finds them so in one C pass)."""
    if _text_urls is not None:
        return [_new_link((url, "", "text")) for url in _text_urls(text)]
    return _text_links_py(text)


def _text_links_py(text: str) -> list[Link]:
    """`_text_links` with the regex (the tests hold the two equal)."""
    links: list[Link] = []
    end = 0
    for at in _url_starts(text):
        if at < end:
            continue  # inside the URL before
        m = _TEXT_URL.match(text, at)
        if m is not None:
            links.append(_new_link((m.group().rstrip(_URL_END), "", "text")))
            end = m.end()
    return links


def html_to_text(source: str | bytes, view: TextView) -> None:
    """Add the visible text, hidden text and links of an HTML document (str, or UTF-8 bytes) to
    `view` (see filters/content/textview_html.py)."""
    html = html_text(source)
    view.image_only = view.image_only or html.image_only
    view.add(html.visible)
    if html.hidden:
        view.add(html.hidden, hidden=True)
    view.links += [_new_link((href, text, "html")) for href, text in html.anchors]
    if html.unlinked is not None:
        view.links += _text_links(html.unlinked)
