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
    marker = re.compile(rb"(?:^|\r\n)--" + re.escape(boundary.encode("utf-8", "replace")) + rb"(--)?[ \t]*(?=\r\n|$)")
    parts: list[bytes] = []
    start = None
    for m in marker.finditer(body):
        if start is not None:
            parts.append(body[start:m.start()])
        if m.group(1):  # the closing delimiter
            return parts
        start = m.end() + 2 if body[m.end():m.end() + 2] == b"\r\n" else m.end()
    if start is not None:  # no closing delimiter: the last part runs to the end
        parts.append(body[start:])
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
_TAG = re.compile(r"<(?:(!--)|(/?)([A-Za-z][A-Za-z0-9:-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>|!|\?)")
_ATTR = re.compile(r"([A-Za-z_:][-A-Za-z0-9_:.]*)\s*(?:=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+))?")
_SKIP_CONTENT = frozenset({"script", "style", "head", "template", "noscript", "title", "xml", "svg"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "param", "source", "track", "wbr"})
_BLOCK = frozenset({"p", "div", "br", "tr", "td", "th", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5",
                    "h6", "table", "tbody", "thead", "tfoot", "blockquote", "section", "article",
                    "header", "footer", "hr", "center", "pre", "dd", "dt", "dl", "body", "html",
                    "main", "nav", "aside", "figure", "figcaption", "form", "option", "caption"})
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


def html_to_text(source: str, view: TextView) -> None:
    """Add the visible text, hidden text and links of an HTML document to `view`."""
    visible: list[str] = []
    hidden: list[str] = []
    unlinked: list[str] = []              # visible text outside anchors, for URLs written as text
    hidden_stack: list[str] = []          # open elements since a hiding element began
    anchor: tuple[str, list[str]] | None = None
    lower = None
    pos = 0
    n = len(source)
    while pos < n:
        m = _TAG.search(source, pos)
        end = m.start() if m else n
        if end > pos:
            chunk = source[pos:end]
            (hidden if hidden_stack else visible).append(chunk)
            if anchor is not None and not hidden_stack:
                anchor[1].append(chunk)
            elif not hidden_stack:
                unlinked.append(chunk)
        if m is None:
            break
        if m.group(1):  # a comment: removed without a trace (so it can split no word)
            close = source.find("-->", m.end())
            pos = n if close < 0 else close + 3
            continue
        name = (m.group(3) or "").lower()
        if not name:  # <!DOCTYPE ...>, <?xml ...?>, or a stray "<"
            close = source.find(">", m.end())
            pos = n if close < 0 else close + 1
            continue
        closing, rest = m.group(2), m.group(4) or ""
        pos = m.end()
        out = hidden if hidden_stack else visible
        if not closing and name in _SKIP_CONTENT:
            if lower is None:
                lower = source.lower()
            close = lower.find("</" + name, pos)
            if close < 0:
                pos = n
            else:
                gt = source.find(">", close)
                pos = n if gt < 0 else gt + 1
            continue
        if name in _BLOCK:
            out.append("\n")
        elif name == "td" or name == "th":
            out.append(" ")
        if closing:
            if hidden_stack:
                if name in hidden_stack:
                    while hidden_stack and hidden_stack.pop() != name:
                        pass
                    if not hidden_stack:
                        hidden.append("\n")
            elif name == "a" and anchor is not None:
                view.links.append(Link(anchor[0], html.unescape("".join(anchor[1])).strip(), "html"))
                anchor = None
            continue
        if name == "img":
            attrs = _attrs(rest)
            alt = attrs.get("alt", "")
            if alt:
                alt = " " + alt + " "
                (hidden if hidden_stack or _hides(name, rest) else visible).append(alt)
                if anchor is not None and not hidden_stack:
                    anchor[1].append(alt)
            continue
        if name in ("a", "area"):
            attrs = _attrs(rest)
            href = attrs.get("href", "").strip()
            if name == "area":
                if href:
                    view.links.append(Link(href, attrs.get("alt", ""), "html"))
                continue
            if anchor is not None:  # an unclosed <a>: finish it
                view.links.append(Link(anchor[0], html.unescape("".join(anchor[1])).strip(), "html"))
                anchor = None
            if href:
                anchor = (href, [])
        if name in _VOID or rest.rstrip().endswith("/"):
            continue
        if hidden_stack:
            hidden_stack.append(name)
        elif _hides(name, rest):
            hidden_stack.append(name)
    if anchor is not None:
        view.links.append(Link(anchor[0], html.unescape("".join(anchor[1])).strip(), "html"))
    text = html.unescape("".join(visible))
    view.add(text)
    if hidden:
        view.add(html.unescape("".join(hidden)), hidden=True)
    for m in _TEXT_URL.finditer(html.unescape(" ".join(unlinked))):
        view.links.append(Link(m.group(0).rstrip(".,;:!?)]}>'\""), "", "text"))
