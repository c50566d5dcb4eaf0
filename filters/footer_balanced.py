"""The footer-guard check without a tree, for HTML whose elements are balanced: what the tree would say, at a tenth of the cost.

`filters.footer_visibility.place` parses an HTML part with the footer in it (lexbor) and looks at
what holds the footer. When the part before the footer closes every element it opens, in order
(`filters.html_scan`), the HTML5 tree builder leaves nothing open there: the footer is a child of
<body>, with no end tags needed before it, and what can hide it is what the tree check looks at
for that case — the `hidden` attribute and inline style of <body> and <html>, a style sheet the
relay cannot read, and style sheet rules that select <body> or <html>. This module answers from the
tag scan and the style sheets (read as `filters.footer_css` reads them), and says "parse and see"
(False) whenever a rule might select <body> or <html> in a way it cannot tell without the tree
(`.promo` when <body> has class="promo"), or anything else is unusual. True means the tree check
would return no end tags and no refusal: tests/test_footer_balanced.py holds that against lexbor
on generated parts and the footer-removal corpus.
"""
from __future__ import annotations

from filters.content.textview_html import HIDING_STYLE
from filters.footer_css import (_PSEUDO_ELEMENT, _RELEVANT, _external, _hiding, _sheet, _without_has, declarations,
                                may_select_root, unreadable_import)
from filters.html_scan import Attr, Noted, scan
from relay.mail.footer_guard import WRAPPER_ATTR

_MARKER = WRAPPER_ATTR.encode()


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # (as lexbor is given it: lone surrogates read as U+FFFD)


def _attributes(data: bytes, found: list[Attr]) -> dict[str, str] | None:
    """name → value as the tree holds them (first one wins); None when a value holds a character
    reference, which the tree would decode (`display&#58;none`)."""
    out: dict[str, str] = {}
    for ns, ne, vs, ve in found:
        value = data[vs:ve] if vs >= 0 else b""
        if b"&" in value:
            return None
        name = data[ns:ne].lower().decode("utf-8", "replace")
        if name not in out:
            out[name] = value.decode("utf-8", "replace")
    return out


_EMPTY: dict[str, str] = {}


def _read(parts: tuple[tuple[bytes, list[Noted]], ...]) -> tuple[dict[bytes, dict[str, str]], list[str]] | None:
    """The attributes of <html> and <body> and the style sheets' text; None when they cannot be
    read here (a second <body> or <html> adds its attributes to the first; a linked style sheet)."""
    roots: dict[bytes, dict[str, str]] = {}
    sheets: list[str] = []
    for data, found in parts:
        for name, attrs, start, end in found:
            if attrs is None:  # <style>
                css = data[start:end].decode("utf-8", "replace")
                sheets.append(css.replace("\r\n", "\n") if "\r" in css else css)
                continue
            values = _attributes(data, attrs) if attrs else _EMPTY
            if values is None:
                return None
            if name == b"link":
                if "stylesheet" in values.get("rel", "").lower().split() and _external(values.get("href", "")):
                    return None
            elif name in roots:
                return None
            else:
                roots[name] = values
    return roots, sheets


def visible_without_tree(prefix: str, suffix: str, footer: str) -> bool:
    """True: the footer put between `prefix` and `suffix` (with no end tags before it) is a visible
    child of <body>, as `place` would find with a tree. False: parse and see (and when the part holds
the relay's footer marker)."""
    before, after = _utf8(prefix), _utf8(suffix)
    # (with the relay's footer marker in it, a forged footer, scan says None: the tree check refuses it)
    head = scan(before, True, _MARKER)
    if head is None:
        return False
    tail = scan(after, False, _MARKER)
    if tail is None:
        return False
    read = _read(((before, head), (after, tail)))
    if read is None:
        return False
    roots, sheets = read
    html, body = roots.get(b"html", _EMPTY), roots.get(b"body", _EMPTY)
    if not sheets and not html and not body:
        return True  # (most mail: nothing below can hide it)
    for attrs in (body, html):
        if "hidden" in attrs or HIDING_STYLE.search(attrs.get("style", "")) is not None:
            return False
    collected = {name: {k: v for k, v in declarations(attrs["style"]).items() if k in _RELEVANT}
                 for name, attrs in (("body", body), ("html", html)) if attrs.get("style")}
    classes = {c for attrs in (body, html) for c in attrs.get("class", "").lower().split()}
    ids = {attrs.get("id", "").strip().lower() for attrs in (body, html)}
    for css in sheets:
        if not css.strip():
            continue
        relevant, imports = _sheet(css)
        if unreadable_import(imports) is not None:
            return False
        for selectors, props, why in relevant:
            for selector, needs in selectors:
                if not may_select_root(needs, classes, ids):
                    continue  # it cannot select <body> or <html>
                plain = _without_has(_PSEUDO_ELEMENT.sub("", selector)).strip().lower()
                targets = ("body", "html") if plain in ("", "*") else (plain,) if plain in ("body", "html") else None
                if targets is None or why is not None:
                    return False  # it may select them (the tree tells), or it hides them
                for target in targets:
                    collected.setdefault(target, {}).update(props)
    return all(_hiding(props) is None for props in collected.values())
