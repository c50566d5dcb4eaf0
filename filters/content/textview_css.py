"""Stylesheet hiding for the reader view: the class and id selectors a `<style>` block hides.

A spammer splits a word with filler and hides the filler through a class (`.x{display:none}` in a
`<style>` block, `ca<span class="x">zz</span>sino`), or stuffs keywords into such an element. The
reader view (filters/content/textview_html.py) treats an element matched by one of these selectors as hidden,
as it treats an inline `style="display:none"`. Only rules that always apply count: a rule inside
`@media` (or any other at-rule) hides only on some screens and is left alone. Only selectors made of
tag names, classes and ids (descendant or child combinators allowed) whose last part names a class
or id are used: `body div {display:none}` is not taken to hide a message. Stylesheets recur from
one newsletter to the next, so the answer is cached per stylesheet text.
"""
from __future__ import annotations

import re

_CSS_COMMENT = re.compile(r"/\*.*?(?:\*/|\Z)", re.S)
_BRACE = re.compile(r"[{}]")
_RULE = re.compile(r"([^{}]*)\{([^{}]*)\}")
_COMPOUND = re.compile(r"[a-z][a-z0-9-]*|(?:[a-z][a-z0-9-]*)?(?:[.#][a-z_][\w-]*)+", re.I)
_COMBINATOR = re.compile(r"\s*>\s*|\s+")
_CACHE: dict[bytes, tuple[str, ...]] = {}
# where a <style> element may start: the regex engine skips to each "<" (bytes.find(b"<style") tests
# at every "e", four times slower on HTML), the C helper memchr()s to it; the second pattern is for a
# document without "<style"
_OPEN = re.compile(rb"<style")
_OPEN_UPPER = re.compile(rb"<(?:STYLE|Style)")

try:  # the C helpers (filters/content/_wordscan.c); without them, or built before this one, the regex
    from filters.content._wordscan import find_bytes as _find_bytes
except ImportError:  # pragma: no cover  (built without a C compiler)
    _find_bytes = None


def _style_at(data: bytes, start: int) -> int:
    """data.find(b"<style", start), the fast way there is."""
    if _find_bytes is not None:
        return _find_bytes(data, b"<style", start)
    found = _OPEN.search(data, start)
    return -1 if found is None else found.start()


def hidden_selectors(data: bytes, hiding: re.Pattern[str]) -> tuple[str, ...]:
    """The selectors whose elements the document's stylesheets always hide (usually none); `hiding`
    finds a declaration that hides (filters/content/textview_html.py HIDING_STYLE)."""
    lowered = data
    start = _style_at(data, 0)
    if start < 0:
        if _OPEN_UPPER.search(data) is None:
            return ()
        lowered = data.lower()  # (upper or mixed case: rare, then one copy)
        start = _style_at(lowered, 0)
    blocks = []
    while start >= 0:  # C speed, where a case-blind regex would try every position
        open_end = lowered.find(b">", start)
        if open_end < 0:
            break
        close = lowered.find(b"</style", open_end)
        blocks.append(data[open_end + 1:close if close >= 0 else len(data)])
        if close < 0:
            break
        start = _style_at(lowered, close)
    sheets = b"\n".join(blocks)
    if not sheets.strip():
        return ()
    found = _CACHE.get(sheets)
    if found is None:
        found = _selectors(sheets.decode("utf-8", "replace"), hiding)
        if len(_CACHE) >= 256:
            _CACHE.clear()
        _CACHE[sheets] = found
    return found


def _drop_at_rules(css: str) -> str:
    """The stylesheet without its at-rules (@media, @supports, @font-face ... with their blocks)."""
    out: list[str] = []
    pos = 0
    while True:
        at = css.find("@", pos)
        if at < 0:
            out.append(css[pos:])
            return "".join(out)
        out.append(css[pos:at])
        brace, semi = css.find("{", at), css.find(";", at)
        if brace < 0:
            return "".join(out)
        if 0 <= semi < brace:  # @import ...; @charset ...;
            pos = semi + 1
            continue
        depth = 0
        for m in _BRACE.finditer(css, brace):
            depth += 1 if m.group() == "{" else -1
            if depth == 0:
                pos = m.end()
                break
        else:
            return "".join(out)


def _usable(selector: str) -> bool:
    parts = [p for p in _COMBINATOR.split(selector.strip()) if p]
    return bool(parts) and all(_COMPOUND.fullmatch(p) for p in parts) and any(c in parts[-1] for c in ".#")


def _selectors(css: str, hiding: re.Pattern[str]) -> tuple[str, ...]:
    css = _drop_at_rules(_CSS_COMMENT.sub(" ", css))
    out: list[str] = []
    for m in _RULE.finditer(css):
        if hiding.search(m.group(2)):
            out += [s.strip() for s in m.group(1).split(",") if _usable(s)]
    return tuple(dict.fromkeys(out))
