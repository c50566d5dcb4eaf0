"""Is the HTML footer visible text of the copy? Checked after insertion, once per message, with the text view's hidden-text logic.

`place(prefix, suffix, lead, footer)` parses the HTML part with the footer in it, as the content
stage's text view does (lexbor, an HTML5 parser: `relay.textview_html`), and then:

1. finds the footer's wrapper (`relay.footer_guard.WRAPPER_ATTR`). When the parser put it inside
   something the sender left open (an unclosed `<div>`, `<a>`, `<table>`, `<template>` ...), the
   end tags of those elements are added before the footer and the part is parsed again; when the
   wrapper is nowhere in the document (swallowed by template content or a select), the end tags of
   every element that can swallow it are tried. After that the footer must be a child of <body>;
2. refuses when an element around it is one the text view drops (script, style, head, title,
   template, noscript, svg) or hides (`textview_html.hides`: the `hidden` attribute, display:none,
   visibility:hidden, opacity 0, font-size 0 ...), or when an element of the footer itself does;
3. refuses when a style sheet rule (in any `<style>`, with `!important` or without, `:has()`
   included, media queries ignored: the rule may apply) or the inline style of <body>/<html> hides
   what holds the footer in a way the footer's own `!important` styles cannot undo: display:none,
   opacity under 0.5, a transform, clip-path, mask, filter or zoom, an animation, a height with
   overflow hidden, a negative offset or margin. Rules on the footer's own elements need no look:
   its inline `!important` styles win over every style sheet (see `relay.footer_guard`);
4. refuses a style sheet it cannot see (`<link rel=stylesheet>` or `@import` of anything but a
   web-font service).

The answer holds for every copy of the message: copies differ only in escaped text and URLs.
Balanced HTML (every element closed in order before the footer: most newsletters) is answered
without the parse, from one pass of the tokenizer (`filters.footer_balanced`), where that gives the
same answer; what style sheets declare is read by `filters.footer_css`.
"""
from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

from relay.mail.footer_guard import SWALLOWERS, WRAPPER_ATTR, closers_for
from filters.content.textview_html import _SKIPPED, SAFE_TAGS, WORK_LIMIT, hides, nesting_work
from filters.footer_balanced import visible_without_tree
from filters.html_scan import markup
from filters.footer_css import (_PSEUDO_ELEMENT, _RELEVANT, _external, _hiding, _sheet, _without_has, declarations,
                                may_select_root, unreadable_import)

_SELECTOR = f"div[{WRAPPER_ATTR}]"
_SKIPPED_NAMES = frozenset({"script", "style", "head", "title", "template", "noscript", "svg"})


class FooterHidden(ValueError):
    """The footer would not be visible text of the copy; the message says why."""


def place(prefix: str, suffix: str, lead: str, footer: str, shape: bytes | None = None) -> str:
    """The lead (end tags put before the footer) that makes the footer a visible child of <body>;
    FooterHidden when there is none. `shape`: the footer's tags with its URLs blanked, when the
    caller has them (`filters.footer_guard.footer_shape`)."""
    if placed_without_tree(prefix, suffix, lead, footer, shape):
        return lead
    return place_in_tree(prefix, suffix, lead, footer)


def place_in_tree(prefix: str, suffix: str, lead: str, footer: str) -> str:
    """`place` by parsing the part with the footer in it (for a part `placed_without_tree` could not tell)."""
    if WRAPPER_ATTR in prefix or WRAPPER_ATTR in suffix:
        raise FooterHidden(f"the HTML part already holds the relay's footer marker ({WRAPPER_ATTR})")
    return _place_in_tree(prefix, suffix, lead, footer)


def placed_without_tree(prefix: str, suffix: str, lead: str, footer: str, shape: bytes | None = None) -> bool:
    """True when `place` would return `lead` as it is, told without parsing the part
    (`filters.footer_balanced`: balanced HTML, without the relay's footer marker); False: parse and see."""
    return not lead and _alone_in_body(footer, shape) and visible_without_tree(prefix, suffix, footer)


# Whether the footer, alone in a document, is a visible child of <body> needing no end tags: what
# the check without a tree (filters.footer_balanced) takes as given about the footer's own
# elements. By the footer's tags with its URLs left out (they differ per copy); per process, bounded.
# (The two kinds of key, the caller's shape and the one made here, are kept apart by a prefix.)
_ALONE: dict[bytes, bool] = {}
_HREF = re.compile(rb"""(href\s*=\s*)("[^"]*"|'[^']*')""", re.I)


def _alone_in_body(footer: str, shape: bytes | None) -> bool:
    key = b"s" + shape if shape is not None else b"h" + _HREF.sub(rb"\1", markup(footer.encode("utf-8", "surrogatepass")))
    known = _ALONE.get(key)
    if known is None:
        try:
            known = _place_in_tree("", "", "", footer) == ""
        except FooterHidden:
            known = False
        if len(_ALONE) < 256:
            _ALONE[key] = known
    return known


def _place_in_tree(prefix: str, suffix: str, lead: str, footer: str) -> str:
    """`place`, by parsing the part with the footer in it."""
    tree, wrapper = _parse(prefix, suffix, lead, footer)
    if wrapper is None:
        lead += closers_for(list(SWALLOWERS))
        tree, wrapper = _parse(prefix, suffix, lead, footer)
        if wrapper is None:
            raise FooterHidden("the HTML part swallows the footer (it is not part of the document a reader sees)")
    around = _ancestors(wrapper)
    if len(around) > 2:  # more than body and html: close what the sender left open
        lead += closers_for([n.tag for n in around])
        tree, wrapper = _parse(prefix, suffix, lead, footer)
        if wrapper is None:
            raise FooterHidden("the HTML part swallows the footer")
        around = _ancestors(wrapper)
        if len(around) > 2:
            raise FooterHidden(f"the footer cannot be taken out of <{around[0].tag}>, which the HTML part leaves open")
    if _foreign(wrapper):
        # the parser re-opened formatting elements the sender left open (<a>, <font>, <b> ...)
        # inside the footer: close them before it as well
        lead += FORMATTING_CLOSERS
        tree, wrapper = _parse(prefix, suffix, lead, footer)
        if wrapper is None:
            raise FooterHidden("the HTML part swallows the footer")
        around = _ancestors(wrapper)
    check(tree, wrapper, around)
    return lead


# end tags of the formatting elements, which the HTML5 parser re-opens in later blocks until closed
FORMATTING_CLOSERS = "".join(f"</{name}>" for name in (
    "a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong", "tt", "u"))


def _foreign(wrapper: LexborNode) -> bool:
    """An element in the footer that the footer's template did not write (every one it writes is
    guarded, but <br>)."""
    for node in wrapper.traverse():
        if node is wrapper or node.mem_id == wrapper.mem_id:
            continue
        tag = node.tag or ""
        if tag.startswith(("-", "#")) or tag == "br":
            continue
        if "!important" not in (node.attrs.get("style") or ""):
            return True
    return False


def _parse(prefix: str, suffix: str, lead: str, footer: str) -> tuple[LexborHTMLParser, LexborNode | None]:
    text = "".join((prefix, "\n", lead, footer, "\n", suffix))
    try:
        data = text.encode()
    except UnicodeEncodeError:  # lone surrogates (undecodable bytes kept): the parser reads U+FFFD
        data = text.encode("utf-8", "surrogatepass")
    if data.count(b"<") > SAFE_TAGS and nesting_work(data) > WORK_LIMIT:
        # the tree builder's cost grows with tags times depth (100,000 nested <div> take a minute);
        # the text view reads such a part in pieces, which cannot say where the footer lands
        raise FooterHidden("the HTML part nests elements too deeply to check where the footer would be")
    tree = LexborHTMLParser(data)
    # where it belongs, the wrapper is among the last children of <body>: look there before
    # walking the whole document (`place` made sure the part holds no other wrapper)
    node = tree.body.last_child if tree.body is not None else None
    for _ in range(4):
        if node is None:
            break
        if node.tag == "div" and WRAPPER_ATTR in node.attrs:
            return tree, node
        node = node.prev
    found = tree.css(_SELECTOR)
    return tree, (found[-1] if found else None)


def _ancestors(node: LexborNode) -> list[LexborNode]:
    """The elements around `node`, innermost first, up to and with <html>."""
    out = []
    parent = node.parent
    while parent is not None and parent.tag not in ("-document", "#document", None):
        out.append(parent)
        if parent.tag == "html":
            break
        parent = parent.parent
    return out


def check(tree: LexborHTMLParser, wrapper: LexborNode, around: list[LexborNode]) -> None:
    """FooterHidden when the footer in `tree` is not visible text (see the module doc)."""
    for node in around:
        if node.tag_id in _SKIPPED or node.tag in _SKIPPED_NAMES:
            raise FooterHidden(f"the footer would be inside <{node.tag}>, which a reader never sees")
        if hides(node):
            raise FooterHidden(f"<{node.tag}> around the footer is hidden by its attributes")
    for node in wrapper.traverse():
        if node.tag and not node.tag.startswith(("-", "#")) and _hides_cached(node):
            raise FooterHidden(f"an element of the footer is hidden (<{node.tag}>): fix the footer template")
    _style_sheets(tree, around)


_HIDES: dict[str, bool] = {}


def _hides_cached(node: LexborNode) -> bool:
    """`hides(node)` for the footer's own elements: their styles are the template's and the guard's,
    the same in every message, and HIDING_STYLE is slow on a long style (its `.*` alternatives)."""
    attrs = node.attrs
    if "hidden" in attrs:
        return True
    style = attrs.get("style") or ""
    found = _HIDES.get(style)
    if found is None:
        found = hides(node, style)
        if len(_HIDES) < 256:
            _HIDES[style] = found
    return found


# -- style sheets (what they declare: filters.footer_css) ----------------------------------

def _matched(tree: LexborHTMLParser, ids: set[int], selector: str) -> set[int]:
    """Which of the elements `ids` (mem_ids) the selector selects. (selectolax's css_matches is
    true when any descendant matches, so the document is queried and the answer intersected.)"""
    plain = _without_has(_PSEUDO_ELEMENT.sub("", selector)).strip()
    if not plain:
        return set(ids)
    try:
        return {node.mem_id for node in tree.css(plain)} & ids
    except (SelectolaxError, ValueError, TypeError):
        return set(ids)  # a selector the parser cannot read may select them: the safe side


def _style_sheets(tree: LexborHTMLParser, around: list[LexborNode]) -> None:
    # one walk of the document finds both the linked and the inline style sheets
    sheets = tree.css("link[rel], style")
    for link in sheets:
        if link.tag != "link":
            continue
        attrs = link.attrs
        if "stylesheet" in (attrs.get("rel") or "").lower().split() and _external(attrs.get("href") or ""):
            raise FooterHidden(f"the HTML part loads a style sheet the relay cannot check ({attrs.get('href')})")
    collected: dict[int, dict[str, str]] = {}
    ids = {node.mem_id for node in around}
    roots_only = all(node.tag in ("body", "html") for node in around)
    root_classes = {c for node in around for c in (node.attrs.get("class") or "").lower().split()}
    root_ids = {(node.attrs.get("id") or "").strip().lower() for node in around}
    for node in around:  # the inline styles of <body> and <html> count too
        style = node.attrs.get("style")
        if style:
            collected[node.mem_id] = {k: v for k, v in declarations(style).items() if k in _RELEVANT}
    for sheet in sheets:
        if sheet.tag != "style":
            continue
        css = sheet.text(deep=True)
        if not css or not css.strip():
            continue
        relevant, imports = _sheet(css)
        url = unreadable_import(imports)
        if url is not None:
            raise FooterHidden(f"a style sheet imports one the relay cannot check ({url[:80]})")
        for selectors, props, why in relevant:
            for selector, needs in selectors:
                if roots_only and not may_select_root(needs, root_classes, root_ids):
                    continue  # it cannot select <body> or <html>: no query
                for mem_id in _matched(tree, ids, selector):
                    collected.setdefault(mem_id, {}).update(props)
                    if why is not None:
                        raise FooterHidden(f"a style sheet rule hides what holds the footer: "
                                           f"{' '.join(selector.split())[:80]} {{{why}}}")
    for node in around:
        why = _hiding(collected.get(node.mem_id, {}))
        if why is not None:
            raise FooterHidden(f"the styles of <{node.tag}> hide the footer ({why})")
