"""The text a reader of a message sees: MIME walked, transfer encodings and charsets undone, HTML made text.

`reader_view(raw)` returns a `TextView`: the Subject, the visible text of every text part
(HTML turned to text with image alt text and link text kept), the text an HTML part hides
(display:none, visibility:hidden, font-size:0 ...), and every link (anchor href with its
visible text, and URLs written in plain text).

It is read-only and never raises on malformed input: bad base64, unknown charsets, a missing
boundary or deep nesting give the best text that can be had. It is built for speed (the content
stage must cost less than one `email` parse): a light MIME walker on the raw bytes instead of the
`email` package, regex passes over HTML instead of `html.parser`, and per-element Python work only
where an element can matter (anchors, images, the few tags that can hide text).

Limits: at most `text_limit` characters of text are collected in total (256 KiB by default),
each part is cut to its first `part_limit` decoded bytes (1 MiB), attachments
(`Content-Disposition: attachment`) and non-text parts are not read, and MIME nesting deeper
than 100 or more than 500 parts is not followed.
"""
from __future__ import annotations

import binascii
import codecs
import functools
import html
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from relay.message import field_name, field_value, split_header_block

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
            self.view.links += _text_links(text)


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

# `\b(?:https?://|www\.)`, case-insensitive, written to start with a character class so the regex
# engine skips ahead to the next h or w instead of trying every position: the \b becomes a
# look-behind after the first letter.
_TEXT_URL = re.compile(r"[hHwW](?<!\w.)(?:(?<=[hH])(?i:ttps?://)|(?<=[wW])(?i:ww\.))[^\s<>\"'\x00-\x1f]+")
_URL_END = ".,;:!?)]}>'\""
_ATTR = re.compile(r"([A-Za-z_:][-A-Za-z0-9_:.]*)\s*(?:=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+))?")
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "param", "source", "track", "wbr"})
_HIDING_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|mso-hide\s*:\s*all|opacity\s*:\s*0(?:\.0*)?\s*(?:;|$|!)"
    r"|font-size\s*:\s*0(?:\.\d+)?(?:px|pt|em|rem|%)?\s*(?:;|$|!)|font-size\s*:\s*1px"
    r"|(?:max-)?height\s*:\s*0(?:px)?\s*(?:;|$|!).*overflow\s*:\s*hidden"
    r"|overflow\s*:\s*hidden.*(?:max-)?height\s*:\s*0(?:px)?\s*(?:;|$|!)", re.I | re.S)
# html.unescape's entity pattern: unescape() below decodes each distinct entity once
_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
_ENTITIES: dict[str, str] = {}
_new_link = functools.partial(tuple.__new__, Link)  # Link(*fields) without the Python-level __new__


def _text_links(text: str) -> list[Link]:
    """The URLs written in `text` (what `_TEXT_URL.findall` finds), tried only where one can start."""
    low = text.encode("ascii", "replace").lower()  # one byte per character: the same positions
    starts = []
    for mark in (b"http", b"www."):  # a URL starts so, in any case (h t p w have no other cases)
        at = low.find(mark)
        while at >= 0:
            starts.append(at)
            at = low.find(mark, at + 4)
    links: list[Link] = []
    end = 0
    for at in sorted(starts):
        if at < end:
            continue  # inside the URL before
        m = _TEXT_URL.match(text, at)
        if m is not None:
            links.append(_new_link((m.group().rstrip(_URL_END), "", "text")))
            end = m.end()
    return links


def unescape(text: str) -> str:
    """`html.unescape(text)`, without a Python call per entity (newsletters hold hundreds of &nbsp;)."""
    if "&" not in text:
        return text
    if text.count("&") == text.count("&amp;"):  # tracked links: each '&' starts an "&amp;"
        return text.replace("&amp;", "&")
    parts = _CHARREF.split(text)  # text, entity, text, entity, ..., text
    refs = parts[1::2]
    cache = _ENTITIES
    known = {ref: cache.get(ref) for ref in set(refs)}  # a few distinct entities, used many times
    for ref, decoded in known.items():
        if decoded is None:
            known[ref] = decoded = html.unescape("&" + ref)  # the same match on its own: the same result
            if len(cache) < 4096:
                cache[ref] = decoded
    parts[1::2] = map(known.__getitem__, refs)
    return "".join(parts)


def _attrs(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in _ATTR.findall(text):
        if value[:1] in ("'", '"'):
            value = value[1:-1]
        found.setdefault(name.lower(), unescape(value))
    return found


def _attr_pattern(wanted: str) -> re.Pattern[str]:
    """The first `wanted` attribute as `_ATTR.findall` reads attributes, in one match: skip what
    cannot start a name, take every other attribute whole, stop at the wanted one."""
    name = "".join(f"[{c}{c.upper()}]" if c.isalpha() else re.escape(c) for c in wanted) + r"(?![-A-Za-z0-9_:.])"
    value = r"(?:\"[^\"]*\"|'[^']*'|[^\s>]+)"
    return re.compile(rf"(?:[^A-Za-z_:]|(?!{name})(?>[A-Za-z_:][-A-Za-z0-9_:.]*\s*(?:=\s*{value})?))*+"
                      rf"(?>{name}\s*(?:=\s*({value}))?)")


_ATTR_PATTERNS = {name: _attr_pattern(name) for name in ("href", "alt")}


def _attr(text: str, wanted: str) -> str:
    """`_attrs(text).get(wanted, "")` without a Python step per attribute."""
    m = _ATTR_PATTERNS[wanted].match(text)
    if m is None or not m.group(1):
        return ""
    value = m.group(1)
    return unescape(value[1:-1] if value[:1] in ("'", '"') else value)


def _hides(name: str, rest: str) -> bool:
    low = rest.lower()
    if "style" not in low and "hidden" not in low:
        return False
    attrs = _attrs(rest)
    return "hidden" in attrs or bool(_HIDING_STYLE.search(attrs.get("style", "")))


# attribute lists are written unrolled ([^>"']* between quoted values): the same language as
# (?:[^>"']|"[^"]*"|'[^']*')*, without an alternation per character
_TAG_ATTRS = r"([^>\"']*(?:(?:\"[^\"]*\"|'[^']*')[^>\"']*)*)"
_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.S)
_SKIPPED = re.compile(r"<(script|style|head|template|noscript|title|xml|svg)\b[^>]*>.*?(?:</\1\s*>|$)", re.S | re.I)
_HIDING_TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9]*)\b([^>]*?(?:style|hidden)[^>]*)>", re.I)
# an anchor's content runs to the first </a>, <a or the end ($: the end or before a final newline);
# spelled as "characters that cannot start one of those" instead of a lazy .*? tried at each step
_ANCHOR = re.compile(r"<a\b" + _TAG_ATTRS + r">([^<\n]*(?:(?:<(?!/a\s*>|a\b)|\n(?!\Z))[^<\n]*)*)"
                     r"(?:</a\s*>|(?=<a\b)|$)", re.S | re.I)
_AREA = re.compile(r"<area\b" + _TAG_ATTRS + ">", re.I)
_IMG = re.compile(r"<img\b" + _TAG_ATTRS + ">", re.I)
_BLOCK_NAMES = (r"p|div|br|tr|li|ul|ol|h[1-6]|table|tbody|thead|tfoot|blockquote|section|article|header|footer|hr|"
                r"center|pre|dd|dt|dl|body|html|main|nav|aside|figure|figcaption|form|option|caption|t[dh]")
_BLOCK_TAG = re.compile(r"</?(?:" + _BLOCK_NAMES + r")\b[^>]*>", re.I)
_ANY_TAG = re.compile(r"<[a-zA-Z/!?][^>]*>")
# both in one pass, for HTML whose every '<' is closed before the next and where no character
# outside ASCII can stand for a letter of a tag name: split() yields the name of each tag (the
# whole run of word characters after "<" or "</"), a set lookup tells block from inline
_TAGS = re.compile(r"<(?=[a-zA-Z/!?])/?(\w*)[^>]*>")
_BLOCK_SET = frozenset(["p", "div", "br", "tr", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "table",
                        "tbody", "thead", "tfoot", "blockquote", "section", "article", "header", "footer", "hr",
                        "center", "pre", "dd", "dt", "dl", "body", "html", "main", "nav", "aside", "figure",
                        "figcaption", "form", "option", "caption", "td", "th"])
_TAG_TEXT = ("", "\n")
_NOT_MARKS = bytes(c for c in range(256) if c not in b"<>")
_OPEN_ENTITY = re.compile(r"&[a-zA-Z0-9]*+<")    # an unterminated entity name right before a tag


def _alt(attrs: str, alts: dict[str, str] | None = None) -> str:
    """What an <img> with these attributes adds to the text: its alt text between spaces, or ""."""
    if alts is not None and attrs in alts:
        return alts[attrs]  # the same image in an anchor and in the text around it
    alt = _attr(attrs, "alt") if "alt" in attrs.lower() else ""
    text = f" {alt} " if alt else ""
    if alts is not None:
        alts[attrs] = text
    return text


def _fragment_text(fragment: str, odd_images: list[bool] | None = None, clean: bool = False,
                   alts: dict[str, str] | None = None) -> str:
    """Tags out, image alt text in, block elements as line breaks, entities decoded.

    Inline tags leave nothing behind, so a tag (or a hidden span, cut out before) inside a word
    gives the word the reader sees: vi<b></b>agra is "viagra". `odd_images` (when given) gets an
    entry for an <img> tag that holds a quoted '>' or whose alt text holds a '<'. `clean`: every
    '<' in the fragment is closed by a '>' before the next '<'. `alts`: alt texts already read.
    """
    if "<" not in fragment:
        return unescape(fragment)
    odd: list[bool] = [] if odd_images is None else odd_images
    if "<img" in fragment or "<IMG" in fragment:
        def alt(m: re.Match[str]) -> str:
            text = _alt(m.group(1), alts)
            if ">" in m.group(1) or "<" in text:
                odd.append(True)
            return text
        fragment = _IMG.sub(alt, fragment)
    if clean and not odd and not any(ch in fragment for ch in _CASE_SPECIALS):
        # each tag is then one stretch from a '<' to the next '>', so the block pass followed by
        # the tag pass gives what this single pass gives
        parts = _TAGS.split(fragment)
        names = map(_BLOCK_SET.__contains__, map(str.lower, parts[1::2]))
        parts[1::2] = map(_TAG_TEXT.__getitem__, names)
        fragment = "".join(parts)
    else:
        fragment = _BLOCK_TAG.sub("\n", fragment)
        fragment = _ANY_TAG.sub("", fragment)
    return unescape(fragment)


def _anchor_text(content: str, alts: dict[str, str]) -> str:
    """`" ".join(_fragment_text(content).split())`, with shortcuts for plain text and a lone image."""
    if "<" not in content:
        return " ".join(unescape(content).split())
    image = content.strip()
    if image.startswith(("<img", "<IMG")):
        m = _IMG.fullmatch(image)
        if m is not None:
            alt = _alt(m.group(1), alts)
            if "<" not in alt:  # else the tag passes would read the alt text
                return " ".join(unescape(alt).split())
    return " ".join(_fragment_text(content, alts=alts).split())


# ---------------------------------------------------------------------------------------------
# hidden elements

# characters outside ASCII that `re.I` (İ ı ſ) or str.lower() (K) equate with an ASCII letter
_CASE_SPECIALS = ("\u0130", "\u0131", "\u017f", "\u212a")
_SP = rb"[\s\x1c-\x1f?]*+"  # str \s in ASCII, or '?' (a character outside ASCII, maybe a space)
# In a tag whose style has no entity, each way of hiding needs one of these in the raw tag text;
# a style with an entity is found by the last pattern. The tags around these hints are the only
# ones that can hide, so only they are looked at (a newsletter styles hundreds of tags).
_HIDE_WORDS = (b"hidden", b"mso-hide", b"opacity")
_HIDE_HINTS = [re.compile(p.replace(b"_", _SP)) for p in (
    rb"display_:_none", rb"font-size_:_(?:0|1px)", rb"style[^>&]*+&")]
_FONT_01 = re.compile(r"font-size\s*:\s*[01]", re.I)
_HEIGHT_0 = re.compile(r"height\s*:\s*0", re.I)
_FONT_01_HINT = re.compile(rb"font-size_:_[01]".replace(b"_", _SP))
_HEIGHT_0_HINT = re.compile(rb"height_:_0".replace(b"_", _SP))
_CLOSERS: dict[str, re.Pattern[str]] = {}


def _ascii_lower(source: str) -> bytes | None:
    """`source.lower()` as bytes, one per character ('?' outside ASCII), so positions match; None
    when a character outside ASCII can stand for an ASCII letter (then only str.lower() is exact)."""
    if source.isascii():
        return source.encode("ascii").lower()
    if any(ch in source for ch in _CASE_SPECIALS):
        return None
    return source.encode("ascii", "replace").lower()


def _found_at(hint: re.Pattern[bytes], exact: re.Pattern[str], low: bytes, source: str) -> bool:
    """`exact` (case-insensitive) matches somewhere in source; `hint` finds every place it can."""
    return any(exact.match(source, m.start()) for m in hint.finditer(low))


def _may_hide(source: str, low: bytes | None) -> bool:
    """The cheap test for "can anything be hidden here" (on source.lower(); low may stand for it)."""
    if low is None:
        text = source.lower()
        return ("none" in text or "hidden" in text or "opacity" in text or "mso-hide" in text
                or ("font-size" in text and re.search(r"font-size\s*:\s*[01]", text) is not None)
                or ("height" in text and re.search(r"height\s*:\s*0", text) is not None))
    return (b"none" in low or b"hidden" in low or b"opacity" in low or b"mso-hide" in low
            or (b"font-size" in low and _found_at(_FONT_01_HINT, _FONT_01, low, source))
            or (b"height" in low and _found_at(_HEIGHT_0_HINT, _HEIGHT_0, low, source)))


def _closer(name: str) -> re.Pattern[str]:
    pattern = _CLOSERS.get(name)
    if pattern is None:
        pattern = re.compile(r"<(/?)" + re.escape(name) + r"\b[^>]*>", re.I)
        if len(_CLOSERS) < 256:
            _CLOSERS[name] = pattern
    return pattern


def _hints(low: bytes) -> list[int]:
    found = {m.start() for hint in _HIDE_HINTS for m in hint.finditer(low)}
    for word in _HIDE_WORDS:
        at = low.find(word)
        while at >= 0:
            found.add(at)
            at = low.find(word, at + 1)
    return sorted(found)


def _hiding_tags(source: str, low: bytes | None) -> list[re.Match[str]]:
    """The `_HIDING_TAG` matches that can hide, in order: all of them, or only those around a hint.

    A match is one tag and ends at its first '>', so each stretch between two '>' holds at most
    one, and `_HIDING_TAG.search` in the stretch around a hint finds exactly the one a scan of the
    whole source would.
    """
    if low is None:
        return list(_HIDING_TAG.finditer(source))
    found: list[re.Match[str]] = []
    last = -1
    for pos in _hints(low):
        if pos < last:
            continue
        start = source.rfind(">", 0, pos) + 1
        end = source.find(">", pos)
        if end < 0:
            break  # no '>' after: no tag can end here
        last = end + 1
        m = _HIDING_TAG.search(source, start, end + 1)
        if m is not None:
            found.append(m)
    return found


def _hidden_ranges(source: str, low: bytes | None = None) -> list[tuple[int, int]]:
    """Spans of elements styled or marked invisible, each with its nested content."""
    ranges: list[tuple[int, int]] = []
    end_of_last = 0
    for m in _hiding_tags(source, low):
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
        for t in _closer(name).finditer(source, m.end()):
            depth += -1 if t.group(1) else 1
            if depth == 0:
                end = t.end()
                break
        ranges.append((m.start(), end))
        end_of_last = end
    return ranges


# ---------------------------------------------------------------------------------------------
# HTML to text

def html_to_text(source: str, view: TextView) -> None:
    """Add the visible text, hidden text and links of an HTML document to `view`."""
    if "<!--" in source:
        source = _COMMENT.sub("", source)
    source = _SKIPPED.sub("", source)
    low = _ascii_lower(source)
    links = view.links
    alts: dict[str, str] = {}
    for attrs, content in _ANCHOR.findall(source):
        href = _attr(attrs, "href").strip()
        if href:
            links.append(_new_link((href, _anchor_text(content, alts), "html")))
    if low is None or b"<area" in low:
        for m in _AREA.finditer(source):
            attrs = _attrs(m.group(1))
            if attrs.get("href"):
                links.append(Link(attrs["href"].strip(), attrs.get("alt", ""), "html"))
    visible, hidden = source, []
    if _may_hide(source, low):
        ranges = _hidden_ranges(source, low)
        if ranges:
            pieces, pos = [], 0
            for start, end in ranges:
                pieces.append(source[pos:start])
                hidden.append(source[start:end])
                pos = end
            pieces.append(source[pos:])
            visible = "".join(pieces)
    # every '<' closed by a '>' before the next '<': in the sequence of its '<' and '>', no "<<"
    marks = visible.encode("utf-8", "surrogatepass").translate(None, _NOT_MARKS)
    clean = b"<<" not in marks
    odd_images: list[bool] = []
    text = _fragment_text(visible, odd_images, clean, alts)
    view.add(text)
    if hidden:
        view.add("\n".join(_fragment_text(h) for h in hidden), hidden=True)
    # URLs written as text, outside anchors. When every '<' is closed by a '>' before the next '<',
    # no entity runs into a tag and no image is odd, the visible text holds every character of that
    # text (tags and anchors only take characters away), so without "http" or "www." there is none.
    lowered = text.encode("utf-8", "surrogatepass").lower()  # ASCII letters only: h t p w have no others
    if (clean and not odd_images and b"http" not in lowered and b"www." not in lowered
            and _OPEN_ENTITY.search(visible) is None):
        return
    unlinked = unescape(_ANY_TAG.sub(" ", _ANCHOR.sub(" ", visible)))
    links += _text_links(unlinked)
