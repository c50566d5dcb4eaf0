"""One pass of the HTML5 tokenizer over a part: are its elements balanced, and where are its <html>, <body>, <link> and <style>.

The footer-guard check (`filters.footer_visibility`) parses every HTML part with the footer in it.
Most newsletters are written by tools that close what they open; for them the answer can be
read without building a tree: after a prefix whose every start tag is closed by the matching end
tag, in order, the footer is a child of <body>, and only <body>, <html> and the style sheets can
hide it. `scan(data, balanced, marker)` reads the tags as the HTML5 tokenizer does (attributes,
quotes, comments, doctype, raw text of <style>, <title> and <textarea>) and answers:

- None: cannot tell. `marker` occurs in data (the footer guard's: a forged footer), a tag or comment
  runs to the end, an element is closed out of order or left open (with `balanced`), a NUL, more
  than 4,000 tags or 512 levels, or an element whose parsing depends on context (<svg>, <math>, <template>, <script>, <noscript>, <select>, <form>, <plaintext> ...);
- else the noted elements in document order: (name, attributes, content start, content end), where
  name is b"html", b"body", b"link" or b"style"; attributes a list of (name start, name end, value
  start, value end) offsets into data (value -1, -1 when it has none) for the first three, None for
  <style>, whose content (its CSS) is data[start:end].

Without `balanced` (the part after the footer) nothing needs closing. `markup(data)`: its tags
alone, joined (the footer guard's key for a footer: the same for every copy of a template). `_html_scan.c` is the same in
C (the Python version is the reference and the fallback when the extension is not built).
"""
from __future__ import annotations

import re
from typing import Optional

MAX_DEPTH = 512
MAX_TAGS = 4000
MAX_ATTRS = 64
_WS = b" \t\n\r\f"
VOID = frozenset(b"area base br col embed hr img input link meta param source track wbr keygen basefont bgsound "
                 b"frame".split())
UNFOLLOWED = frozenset(b"svg math template plaintext script noscript iframe noembed noframes xmp select frameset "
                       b"image isindex form".split())
RAW = frozenset((b"style", b"title", b"textarea"))
NOTED = frozenset((b"html", b"body", b"link"))
ROOTS = frozenset((b"html", b"body", b"head"))

Attr = tuple[int, int, int, int]
Noted = tuple[bytes, Optional[list[Attr]], int, int]


def _is_alpha(c: int) -> bool:
    return 97 <= (c | 0x20) <= 122


def _tag_rest(d: bytes, i: int, n: int) -> tuple[int, list[Attr]]:
    """From just after a tag's name: (index after its '>', its attributes); (-1, ...) if it never ends."""
    attrs: list[Attr] = []
    while True:
        while i < n and d[i] in _WS:
            i += 1
        if i >= n:
            return -1, attrs
        c = d[i]
        if c == 0x3E:  # '>'
            return i + 1, attrs
        if c == 0x2F:  # '/': the self-closing state; anything but '>' is read again as a name
            i += 1
            if i < n and d[i] == 0x3E:
                return i + 1, attrs
            continue
        ns = i
        i += 1
        while i < n and d[i] not in _WS and d[i] not in b"/>=":
            i += 1
        ne, vs, ve = i, -1, -1
        while i < n and d[i] in _WS:
            i += 1
        if i >= n:
            return -1, attrs
        if d[i] == 0x3D:  # '='
            i += 1
            while i < n and d[i] in _WS:
                i += 1
            if i >= n:
                return -1, attrs
            if d[i] in b"\"'":
                quote = d[i]
                i += 1
                vs = i
                while i < n and d[i] != quote:
                    i += 1
                if i >= n:
                    return -1, attrs
                ve = i
                i += 1
            elif d[i] == 0x3E:
                vs = ve = i
            else:
                vs = i
                while i < n and d[i] not in _WS and d[i] != 0x3E:
                    i += 1
                ve = i
        if len(attrs) < MAX_ATTRS:
            attrs.append((ns, ne, vs, ve))


def _to_gt(d: bytes, i: int) -> int:
    at = d.find(b">", i)
    return at + 1 if at >= 0 else -1


def _comment_end(d: bytes, i: int, n: int) -> int:
    if d[i:i + 1] == b">":
        return i + 1
    if d[i:i + 2] == b"->":
        return i + 2
    j = i
    while True:
        j = d.find(b"--", j)
        if j < 0 or j + 2 >= n:
            return -1
        if d[j + 2] == 0x3E:
            return j + 3
        if d[j + 2:j + 4] == b"!>":
            return j + 4
        j += 1


def _raw_end(d: bytes, i: int, n: int, name: bytes) -> int:
    while True:
        j = d.find(b"<", i)
        if j < 0:
            return -1
        k = j + 2 + len(name)
        if k < n and d[j + 1] == 0x2F and d[j + 2:k].lower() == name and (d[k] in _WS or d[k] in b"/>"):
            return j
        i = j + 1


def scan_py(data: bytes, balanced: bool, marker: bytes = b"") -> Optional[list[Noted]]:
    """The module doc's `scan`, in Python."""
    d, n, i = data, len(data), 0
    stack: list[bytes] = []
    tags = 0
    found: list[Noted] = []
    if b"\x00" in d or marker and marker in d:
        return None
    while i < n:
        lt = d.find(b"<", i)
        if lt < 0:
            break
        i = lt + 1
        if i >= n:
            break
        c = d[i]
        if c == 0x21:  # '!'
            i = _comment_end(d, i + 3, n) if d[i + 1:i + 3] == b"--" else _to_gt(d, i + 1)
            if i < 0:
                return None
            continue
        if c == 0x3F:  # '?'
            i = _to_gt(d, i + 1)
            if i < 0:
                return None
            continue
        end = False
        if c == 0x2F:  # '/'
            if i + 1 >= n:
                break
            if d[i + 1] == 0x3E:
                i += 2
                continue
            if not _is_alpha(d[i + 1]):
                i = _to_gt(d, i + 1)
                if i < 0:
                    return None
                continue
            end = True
            i += 1
        elif not _is_alpha(c):
            continue
        start = i
        while i < n and d[i] not in _WS and d[i] not in b"/>":
            i += 1
        name = d[start:i].lower()
        i, attrs = _tag_rest(d, i, n)
        tags += 1
        if i < 0 or tags > MAX_TAGS or name in UNFOLLOWED:
            return None
        if end:
            if name in ROOTS:
                if balanced and stack:
                    return None
                continue
            if not balanced:
                continue
            if not stack or stack[-1] != name:
                return None
            stack.pop()
            continue
        if name in NOTED:
            found.append((name[:15], attrs, -1, -1))
        if name in ROOTS or name in VOID:
            continue
        if name in RAW:
            stop = _raw_end(d, i, n, name)
            if stop < 0:
                return None
            if name == b"style":
                found.append((name, None, i, stop))
            i = stop
        if balanced:
            if len(stack) >= MAX_DEPTH:
                return None
            stack.append(name)
    if balanced and stack:
        return None
    return found


_TAGS = re.compile(rb"<[^>]*>")


def markup_py(data: bytes) -> bytes:
    """The tags of `data` (each '<' to the next '>'), joined: what a template wrote, without its text."""
    return b"".join(_TAGS.findall(data))


try:
    from filters._html_scan import markup, scan
except ImportError:  # built without a C compiler: the same answers, slower
    markup, scan = markup_py, scan_py
