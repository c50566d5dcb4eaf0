"""The text a reader of a message sees: MIME walked, transfer encodings and charsets undone, HTML made text.

`reader_view(raw)` returns a `TextView`: the Subject, the visible text of every text part
(HTML turned to text with image alt text and link text kept), the text an HTML part hides
(display:none, visibility:hidden, font-size:0 ...), and every link (anchor href with its
visible text, and URLs written in plain text).

It is read-only and never raises on malformed input: bad base64, unknown charsets, a missing
boundary or deep nesting give the best text that can be had. It is built for speed (the content
stage runs it on the event loop): a light MIME walker on the raw bytes instead of the `email`
package, and one regex-driven pass over HTML instead of `html.parser`.

Limits: at most `text_limit` characters of text are collected in total (256 KiB by default),
each part is cut to its first `part_limit` decoded bytes (1 MiB), attachments
(`Content-Disposition: attachment`) and non-text parts are not read, and MIME nesting deeper
than 100 or more than 500 parts is not followed.
"""
from __future__ import annotations

import binascii
import codecs
import html
import re
from dataclasses import dataclass, field

from relay.message import field_name, field_value, split_header_block

TEXT_LIMIT = 256 * 1024
PART_LIMIT = 1024 * 1024
MAX_DEPTH = 100
MAX_PARTS = 500


@dataclass(frozen=True)
class Link:
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
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
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
            return binascii.a2b_qp(data)
        except binascii.Error:
            return data
    return data


def decode_charset(data: bytes, charset: str | None) -> str:
    """Bytes to text with the declared charset; unknown or missing charsets fall back safely."""
    if charset:
        name = _LEGACY_CHARSETS.get(charset.strip().lower(), charset.strip())
        try:
            codecs.lookup(name)
        except LookupError:
            name = ""
        if name:
            return data.decode(name, "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _headers(fields: list[bytes]) -> dict[str, str]:
    found: dict[str, str] = {}
    for f in fields:
        name = field_name(f)
        if name in ("content-type", "content-transfer-encoding", "content-disposition") and name not in found:
            found[name] = field_value(f)
    return found


def _split_multipart(body: bytes, boundary: str) -> list[bytes]:
    """The body parts between `--boundary` lines (bytes.find: this runs at C speed)."""
    data = b"\r\n" + body
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
                parts.append(data[start:pos])
            if closing:
                return parts
            start = line_end + 2
        pos = data.find(marker, after)
    if start is not None:  # no closing delimiter: the last part runs to the end
        parts.append(data[start:])
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
                if field_name(f) == "subject":
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
        text = decode_charset(data, charset)
        if ctype == "text/html":
            html_to_text(text, self.view)
        else:
            self.view.add(text)
            for m in _TEXT_URL.finditer(text):
                self.view.links.append(Link(m.group(0).rstrip(".,;:!?)]}>'\""), "", "text"))


def reader_view(raw: bytes) -> TextView:
    """The reader-visible text, hidden HTML text and links of a raw RFC 5322 message."""
    if b"\r\n" not in raw and b"\n" in raw:
        raw = raw.replace(b"\n", b"\r\n")
    fields, body = split_header_block(raw)
    view = TextView()
    for f in fields:
        if field_name(f) == "subject":
            view.subject = field_value(f)
            break
    _Walker(view).entity(fields, body, 0)
    return view


# ---------------------------------------------------------------------------------------------
# HTML

_TEXT_URL = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"'\x00-\x1f]+")
_ATTR = re.compile(r"([A-Za-z_:][-A-Za-z0-9_:.]*)\s*(?:=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+))?")
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "param", "source", "track", "wbr"})
_HIDING_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|mso-hide\s*:\s*all|opacity\s*:\s*0(?:\.0*)?\s*(?:;|$|!)"
    r"|font-size\s*:\s*0(?:\.\d+)?(?:px|pt|em|rem|%)?\s*(?:;|$|!)|font-size\s*:\s*1px"
    r"|(?:max-)?height\s*:\s*0(?:px)?\s*(?:;|$|!).*overflow\s*:\s*hidden"
    r"|overflow\s*:\s*hidden.*(?:max-)?height\s*:\s*0(?:px)?\s*(?:;|$|!)", re.I | re.S)


def _attrs(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in _ATTR.findall(text):
        if value[:1] in ("'", '"'):
            value = value[1:-1]
        found.setdefault(name.lower(), html.unescape(value))
    return found


def _hides(name: str, rest: str) -> bool:
    low = rest.lower()
    if "style" not in low and "hidden" not in low:
        return False
    attrs = _attrs(rest)
    return "hidden" in attrs or bool(_HIDING_STYLE.search(attrs.get("style", "")))


_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.S)
_SKIPPED = re.compile(r"<(script|style|head|template|noscript|title|xml|svg)\b[^>]*>.*?(?:</\1\s*>|$)", re.S | re.I)
_HIDING_TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9]*)\b([^>]*?(?:style|hidden)[^>]*)>", re.I)
_ANCHOR = re.compile(r"<a\b((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>(.*?)(?:</a\s*>|(?=<a\b)|$)", re.S | re.I)
_AREA = re.compile(r"<area\b((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>", re.I)
_IMG = re.compile(r"<img\b((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>", re.I)
_BLOCK_TAG = re.compile(r"</?(?:p|div|br|tr|li|ul|ol|h[1-6]|table|tbody|thead|tfoot|blockquote|section|article|"
                        r"header|footer|hr|center|pre|dd|dt|dl|body|html|main|nav|aside|figure|figcaption|form|"
                        r"option|caption|t[dh])\b[^>]*>", re.I)
_ANY_TAG = re.compile(r"<[a-zA-Z/!?][^>]*>")


def _alt(m: re.Match[str]) -> str:
    low = m.group(1).lower()
    if "alt" not in low:
        return ""
    alt = _attrs(m.group(1)).get("alt", "")
    return f" {alt} " if alt else ""


def _fragment_text(fragment: str) -> str:
    """Tags out, image alt text in, block elements as line breaks, entities decoded.

    Inline tags leave nothing behind, so a tag (or a hidden span, cut out before) inside a word
    gives the word the reader sees: vi<b></b>agra is "viagra".
    """
    if "<" not in fragment:
        return html.unescape(fragment) if "&" in fragment else fragment
    if "<img" in fragment or "<IMG" in fragment:
        fragment = _IMG.sub(_alt, fragment)
    fragment = _BLOCK_TAG.sub("\n", fragment)
    fragment = _ANY_TAG.sub("", fragment)
    return html.unescape(fragment)


def _hidden_ranges(source: str) -> list[tuple[int, int]]:
    """Spans of elements styled or marked invisible, each with its nested content."""
    ranges: list[tuple[int, int]] = []
    end_of_last = 0
    for m in _HIDING_TAG.finditer(source):
        if m.start() < end_of_last:
            continue  # inside a hidden element already cut out
        name = m.group(1).lower()
        if not _hides(name, m.group(2)):
            continue
        if name in _VOID or m.group(2).rstrip().endswith("/"):
            ranges.append((m.start(), m.end()))
            end_of_last = m.end()
            continue
        depth = 1
        end = len(source)
        for t in re.finditer(r"<(/?)" + re.escape(name) + r"\b[^>]*>", source[m.end():], re.I):
            depth += -1 if t.group(1) else 1
            if depth == 0:
                end = m.end() + t.end()
                break
        ranges.append((m.start(), end))
        end_of_last = end
    return ranges


def html_to_text(source: str, view: TextView) -> None:
    """Add the visible text, hidden text and links of an HTML document to `view`."""
    source = _COMMENT.sub("", source)
    source = _SKIPPED.sub("", source)
    for m in _ANCHOR.finditer(source):
        href = _attrs(m.group(1)).get("href", "").strip()
        if href:
            view.links.append(Link(href, " ".join(_fragment_text(m.group(2)).split()), "html"))
    for m in _AREA.finditer(source):
        attrs = _attrs(m.group(1))
        if attrs.get("href"):
            view.links.append(Link(attrs["href"].strip(), attrs.get("alt", ""), "html"))
    visible, hidden = source, []
    low = source.lower()
    if ("none" in low or "hidden" in low or "opacity" in low or "mso-hide" in low
            or ("font-size" in low and re.search(r"font-size\s*:\s*[01]", low))
            or ("height" in low and re.search(r"height\s*:\s*0", low))):
        ranges = _hidden_ranges(source)
        if ranges:
            pieces, pos = [], 0
            for start, end in ranges:
                pieces.append(source[pos:start])
                hidden.append(source[start:end])
                pos = end
            pieces.append(source[pos:])
            visible = "".join(pieces)
    view.add(_fragment_text(visible))
    if hidden:
        view.add("\n".join(_fragment_text(h) for h in hidden), hidden=True)
    unlinked = html.unescape(_ANY_TAG.sub(" ", _ANCHOR.sub(" ", visible)))
    for m in _TEXT_URL.finditer(unlinked):
        view.links.append(Link(m.group(0).rstrip(".,;:!?)]}>'\""), "", "text"))
