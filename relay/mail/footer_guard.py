"""The HTML footer made hard to hide: inline `!important` styles, a wrapper, and an insertion point no open element swallows.

Three parts, each used once per message or once per template, never per copy:

* `GuardExtension`, a Jinja extension, adds `GUARD_STYLE` (every property that can hide text,
  with `!important`) to each start tag of an HTML footer template when the template is compiled.
  An inline `!important` declaration wins over every author style sheet rule, `!important`
  ones and CSS animations included (CSS Cascade 4 §6.1: element-attached styles beat style
  sheets of the same origin and importance), so `<style>a{display:none!important}</style>`,
  `div[style*='border-top']{...}` or `:has()` selectors cannot hide the footer's own elements.
* `WRAPPER_OPEN` / `WRAPPER_CLOSE`: every HTML footer sits in one guarded `<div>` that the
  visibility check (`filters.footer_visibility`) finds by its `data-relay-footer` attribute.
* `insertion(text)`: where the footer goes (`relay.footer_html.insertion_point`: before the last
  `</body>` a browser reads as a tag) and what must be written before it so that nothing the
  sender left open swallows it: an unclosed comment gets `-->`, an unclosed raw-text element
  (style, script, textarea, title, xmp, iframe, noembed, noframes, noscript) its end tag. Elements
  still open there (an unclosed `<div style="display:none">`, `<template>`, `<a>`, `<table>`)
  are closed by `closers_for`, from the ancestors the HTML5 parser gives the footer.
"""
from __future__ import annotations

import re

from jinja2.ext import Extension

from relay.mail.footer_html import _RAW_END, _RUN, _SPECIAL, insertion_point
from relay.base.offload import BIG

# what a footer template may use: the guard knows how each of them is displayed
BLOCK_TAGS = frozenset({"div", "p"})
INLINE_TAGS = frozenset({"a", "span", "b", "strong", "em", "i", "small"})
VOID_TAGS = frozenset({"br"})
ALLOWED_TAGS = BLOCK_TAGS | INLINE_TAGS | VOID_TAGS

# Every property that can make text unseen, set to a value that shows it (fonts: a generic family,
# which no @font-face can redefine; colours: dark on white, so no colour equals the background)
_COMMON = (
    "display:block", "visibility:visible", "opacity:1", "font-size:13px", "line-height:1.5",
    "font-family:sans-serif", "letter-spacing:normal", "word-spacing:normal", "text-indent:0",
    "color:#333333", "-webkit-text-fill-color:#333333", "background:transparent", "text-shadow:none",
    "box-shadow:none", "outline:none", "border:0", "padding:0", "margin:0", "position:static",
    "transform:none", "translate:none",
    "scale:none", "rotate:none", "zoom:1", "clip-path:none", "mask:none", "-webkit-mask:none",
    "filter:none", "mix-blend-mode:normal", "height:auto", "max-height:none", "width:auto",
    "max-width:none", "overflow:visible", "content-visibility:visible", "direction:ltr",
    "unicode-bidi:normal", "writing-mode:horizontal-tb", "vertical-align:baseline",
)
# (animations need no reset: an !important declaration wins over any CSS animation; offsets and
# clip do nothing to a static element: only the wrapper, which is relative, resets them)


def _style(*declarations: str, base: tuple[str, ...] = _COMMON) -> str:
    by_name = {d.split(":", 1)[0]: d for d in base}
    for d in declarations:
        by_name[d.split(":", 1)[0]] = d
    # lines of at most ~200 characters: a 7bit or 8bit part may not hold lines over 998 (RFC 5322)
    lines, line = [], ""
    for d in by_name.values():
        item = f"{d}!important;"
        if line and len(line) + len(item) > 200:
            lines.append(line)
            line = ""
        line += item
    lines.append(line.rstrip(";"))
    return "\n".join(lines)


GUARD_STYLE = {
    "block": _style("display:block", "margin:0 0 6px"),
    "inline": _style("display:inline", "margin:0"),
    "a": _style("display:inline", "margin:0", "color:#1a4b8c", "-webkit-text-fill-color:#1a4b8c",
                "text-decoration:underline"),
}
# the wrapper: its own stacking context above the sender's positioned elements, on white
WRAPPER_STYLE = _style("display:block", "position:relative", "left:auto", "top:auto", "right:auto", "bottom:auto",
                       "z-index:2147483647", "clear:both",
                       "margin:24px 0 0", "padding:12px", "background:#ffffff",
                       "border:0", "border-top:1px solid #dddddd")
WRAPPER_ATTR = "data-relay-footer"
WRAPPER_OPEN = f'<div {WRAPPER_ATTR}=""\nstyle="{WRAPPER_STYLE}">'
WRAPPER_CLOSE = "</div>"


class TemplateMarkupError(ValueError):
    """A footer template uses markup the guard cannot make visible."""


_START_TAG = re.compile(r"<([A-Za-z][A-Za-z0-9]*)((?:[^>\"'{]|\"[^\"]*\"|'[^']*'|\{[{%#].*?[}%#]\})*)(/?)>", re.S)
_STYLE_ATTR = re.compile(r"""(\sstyle\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.I)
_OTHER_TAGS = re.compile(r"<(?:!--|!|\?|/?(?![A-Za-z]))")


def guard_markup(source: str) -> str:
    """The template source with GUARD_STYLE on every start tag; TemplateMarkupError for a tag
    outside ALLOWED_TAGS (the guard would not know how to show it)."""
    def add(m: re.Match[str]) -> str:
        name, attrs, slash = m.group(1).lower(), m.group(2), m.group(3)
        if name not in ALLOWED_TAGS:
            raise TemplateMarkupError(f"uses <{name}>; a footer template may use only "
                                      f"{', '.join(sorted(ALLOWED_TAGS))}")
        if name in VOID_TAGS:
            return m.group(0)
        guard = GUARD_STYLE["a" if name == "a" else "block" if name in BLOCK_TAGS else "inline"]
        found = _STYLE_ATTR.search(attrs)
        if found is None:
            return f'<{m.group(1)}{attrs} style="{guard}"{slash}>'
        own = found.group(2) if found.group(2) is not None else found.group(3)
        # the template's own declarations first: the guard's !important ones come last and win
        merged = f'{found.group(1)}"{own.rstrip().rstrip(";")};{guard}"' if own.strip() else \
            f'{found.group(1)}"{guard}"'
        return f"<{m.group(1)}{attrs[:found.start()]}{merged}{attrs[found.end():]}{slash}>"

    return _START_TAG.sub(add, source)


class GuardExtension(Extension):
    """Jinja: guard the markup of HTML footer templates (`*.html.j2`) as they are compiled."""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        if name is not None and name.endswith(".html.j2"):
            return guard_markup(source)
        return source


def wrap(html_footer: str) -> str:
    return f"{WRAPPER_OPEN}\n{html_footer}\n{WRAPPER_CLOSE}"


# -- where the footer goes -------------------------------------------------------------------

# raw text a sender may leave open at the end: the end tag that closes it (noscript is raw text in
# a browser that runs scripts, an element in one that does not: its end tag closes either)
_RAW_CLOSERS = {name: f"</{name}>" for name in _RAW_END} | {"noscript": "</noscript>"}
_NOSCRIPT_END = re.compile(r"</noscript(?=[\t\n\f\r /> ])", re.I)
# elements whose end tag, when they are not open, a browser ignores: the ones that can swallow a footer
SWALLOWERS = ("template", "noscript", "select", "textarea", "title", "xmp", "iframe", "noembed",
              "noframes", "style", "script", "object", "svg", "math", "a", "table")


class Unplaceable(ValueError):
    """No place in this HTML part where a footer would be seen."""


def insertion(text: str) -> tuple[int, str]:
    """(index, closer): the footer goes at `index`, after `closer` (what closes a comment or raw
    text element the part leaves open at its end). Unplaceable when the part ends inside a tag, or
    holds `<plaintext>` (everything after it is shown as markup text) with no `</body>` before."""
    found = insertion_point(text)
    if found is not None:
        return found, ""
    state = _end_state(text)
    if state == "plaintext":
        raise Unplaceable("the HTML part holds <plaintext>, which shows everything after it as raw markup")
    if state == "tag":
        raise Unplaceable("the HTML part ends inside a tag or an attribute value")
    return len(text), state


def _end_state(text: str) -> str:
    """What is open at the end of `text` when insertion_point found no place: the closer of an
    open comment or raw text element, "plaintext", or "tag" (a tag or attribute value)."""
    pos, n, window = 0, len(text), BIG
    while pos < n:
        end = min(n, pos + window)
        stop = _RUN.match(text, pos, end).end()
        if stop == end < n and stop > pos:
            pos, window = stop, BIG
            continue
        if stop == n:
            return ""
        m = _SPECIAL.match(text, stop, end)
        if m is None:
            if end < n:
                pos, window = stop, window * 2
                continue
            if text.startswith("<!--", stop):
                return "-->"
            return "tag"
        name = m.group(2).lower()
        if m.group(1) or name not in _RAW_CLOSERS:
            if name == "plaintext" and not m.group(1):
                return "plaintext"
            pos = m.end()
        else:
            closing = (_NOSCRIPT_END if name == "noscript" else _RAW_END[name]).search(text, m.end())
            if closing is None:
                return _RAW_CLOSERS[name]
            tag = _SPECIAL.match(text, closing.start())
            if tag is None:
                return _RAW_CLOSERS[name]
            pos = tag.end()
        window = BIG
    return ""


def closers_for(ancestors: list[str]) -> str:
    """End tags for the elements (innermost first) the parser had open around the footer, up to
    the body: after them the footer is a child of <body>."""
    return "".join(f"</{name}>" for name in ancestors if name not in ("body", "html"))
