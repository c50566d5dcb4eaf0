"""What a style sheet does to the elements around the footer: its rules, their declarations, and which of them can hide it.

The footer-guard check (`filters.footer_visibility`) asks this module, with a tree, and so does the
check without one (`filters.footer_balanced`): both read a sheet the same way, and a sheet is read
once per process (`_sheet`).
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

# style sheets that only declare web fonts: loading them cannot hide anything
FONT_HOSTS = frozenset({"fonts.googleapis.com", "use.typekit.net", "fonts.bunny.net", "use.fontawesome.com"})
_COMMENT = re.compile(r"/\*.*?(?:\*/|$)", re.S)
_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})[ \t\r\n\f]?|(.))", re.S)
_PSEUDO_ELEMENT = re.compile(r"::?(?:before|after|first-line|first-letter|marker|placeholder|selection|backdrop)\b"
                             r"|::[a-zA-Z-]+(?:\([^)]*\))?", re.I)
# properties that, on an element around the footer, can hide it whatever the footer's own styles
_RELEVANT = frozenset({
    "display", "opacity", "transform", "translate", "scale", "rotate", "zoom", "clip-path", "clip", "mask",
    "mask-image", "-webkit-mask", "-webkit-mask-image", "filter", "content-visibility", "animation",
    "animation-name", "overflow", "overflow-x", "overflow-y", "overflow-block", "overflow-inline", "contain",
    "height", "max-height", "width", "max-width", "block-size", "max-block-size", "left", "top", "right",
    "bottom", "inset", "margin", "margin-left", "margin-top", "margin-right", "margin-bottom",
    "inset-inline-start", "inset-block-start"})


def _unescape(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1):
            code = int(m.group(1), 16)
            return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"
        return m.group(2)
    return _ESCAPE.sub(one, text) if "\\" in text else text


def _split_top(text: str, sep: str) -> list[str]:
    """`text` split at `sep` outside parentheses, brackets and quotes."""
    out, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return out


def rules(css: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(selector list, declaration block) of every style rule, @media/@supports/@layer/@container
    blocks entered; and the URLs of @import rules. Never raises."""
    css = _COMMENT.sub(" ", css)
    found: list[tuple[str, str]] = []
    imports: list[str] = []
    _rules_into(css, found, imports)
    return found, imports


def _block_end(css: str, start: int) -> int:
    """Index just after the '}' closing the block whose '{' is at start - 1 (end of text if none)."""
    depth, quote, i, n = 1, "", start, len(css)
    while i < n:
        ch = css[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _rules_into(css: str, found: list[tuple[str, str]], imports: list[str], depth: int = 0) -> None:
    pos, n = 0, len(css)
    while pos < n:
        brace = css.find("{", pos)
        semi = css.find(";", pos)
        head_end = brace if brace >= 0 else n
        if css[pos:head_end].lstrip().startswith("@") and 0 <= semi < head_end:
            statement = css[pos:semi].strip()  # @import, @charset, @namespace, @layer a, b;
            if statement.lower().startswith("@import"):
                imports.append(statement[7:].strip())
            pos = semi + 1
            continue
        if brace < 0:
            return
        head = css[pos:brace].strip()
        end = _block_end(css, brace + 1)
        inner = css[brace + 1:end - 1] if end <= n and css[end - 1:end] == "}" else css[brace + 1:end]
        if head.startswith("@"):
            word = head[1:].split(None, 1)[0].lower() if len(head) > 1 else ""
            if word in ("media", "supports", "layer", "container", "document", "-moz-document", "scope",
                        "starting-style") and depth < 20:
                _rules_into(inner, found, imports, depth + 1)
            # @font-face, @keyframes, @page ...: no rule of them selects an element
        elif head:
            found.append((head.lstrip("};"), inner))
        pos = end


def declarations(block: str) -> dict[str, str]:
    """property → value (lower case, `!important` and escapes removed; the last one wins)."""
    out: dict[str, str] = {}
    for item in _split_top(_unescape(block), ";"):
        name, colon, value = item.partition(":")
        if not colon:
            continue
        name = name.strip().lower()
        value = re.sub(r"!\s*important\s*$", "", value.strip(), flags=re.I).strip().lower()
        if name:
            out[name] = value
    return out


_NEGATIVE = re.compile(r"(?:^|[\s(,*/])-\s*(?:0*[1-9]|0*\.\d*[1-9])")  # a negative length, not -0
_NUMBER = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(%|[a-z]*)$")


def _number(value: str) -> tuple[float, str] | None:
    m = _NUMBER.match(value.strip())
    return (float(m.group(1)), m.group(2)) if m else None


def _hiding(props: dict[str, str]) -> str | None:
    """Why these declarations, on an element around the footer, would hide it; None if they cannot."""
    if not props:  # <body> and <html> mostly: nothing to look through
        return None
    get = props.get
    if get("display", "").startswith("none"):
        return "display:none"
    opacity = _number(get("opacity", "1"))
    if opacity is not None and opacity[0] / (100 if opacity[1] == "%" else 1) < 0.5:
        return f"opacity:{get('opacity')}"
    for name in ("transform", "translate", "scale", "rotate", "clip-path", "mask", "mask-image", "-webkit-mask",
                 "-webkit-mask-image", "filter", "animation", "animation-name"):
        value = get(name)
        if value is not None and value not in ("none", "initial", "unset", "revert", "inherit", "auto", "0", "1",
                                               "normal", "") and not (name == "clip-path" and value == "none"):
            return f"{name}:{value}"
    clip = get("clip")
    if clip is not None and clip not in ("auto", "initial", "unset", "revert", "inherit"):
        return f"clip:{clip}"
    if get("content-visibility") == "hidden":
        return "content-visibility:hidden"
    zoom = _number(get("zoom", "1"))
    if zoom is not None and zoom[0] / (100 if zoom[1] == "%" else 1) < 0.5:
        return f"zoom:{get('zoom')}"
    # clipping: the footer comes last, below the sender's content, so any height limit with the
    # overflow hidden cuts it off; a width limit only when it leaves no room to read (a newsletter's
    # `body{width:100%;overflow-x:hidden}` is common and harmless)
    clipping = [n for n in ("overflow", "overflow-x", "overflow-y", "overflow-block", "overflow-inline")
                if any(w in ("hidden", "clip") for w in get(n, "").split())]
    contain = get("contain", "")
    if contain and any(w in ("paint", "strict", "content", "size") for w in contain.split()):
        clipping.append("contain")
    if clipping:
        vertical = [n for n in clipping if n not in ("overflow-x", "overflow-inline")] or \
            [n for n in clipping if any(w in ("hidden", "clip") for w in get(n, "").split()[1:2])]
        names = ("width", "max-width") + (("height", "max-height", "block-size", "max-block-size")
                                          if vertical or "overflow" in clipping else ())
        for name in names:
            value = get(name)
            if value is None or value in ("auto", "none", "initial", "unset", "revert", "inherit",
                                          "fit-content", "max-content", "min-content"):
                continue
            if name in ("width", "max-width"):
                size = _number(value)
                if size is None or size[1] == "%" and size[0] >= 50 or size[1] in ("px", "pt") and size[0] >= 100 \
                        or size[1] in ("em", "rem", "vw", "ch") and size[0] >= 10:
                    continue  # room enough to read the footer (or a calc() we do not judge)
            return f"{clipping[0]}:{get(clipping[0], contain)} with {name}:{value}"
    for name in ("left", "top", "right", "bottom", "inset", "margin", "margin-left", "margin-top",
                 "margin-right", "margin-bottom", "inset-inline-start", "inset-block-start"):
        value = get(name, "")
        if _NEGATIVE.search(value):
            return f"{name}:{value}"
    return None


def _external(href: str) -> bool:
    """A style sheet URL that is not a web-font service's."""
    href = href.strip().strip("\"'")
    if href.lower().startswith("url("):
        href = href[4:].rstrip(")").strip().strip("\"'")
    host = (urlsplit(href if "//" in href else "//" + href).hostname or "").lower()
    return host not in FONT_HOSTS


def _without_has(selector: str) -> str:
    """The selector with every `:has(...)` taken as true (removed). `:has()` is the one condition on
    <body> or <html> that looks at the footer, whose URLs differ per copy (`a[href$="q"]` matches
    one copy in 32): assuming it holds makes the answer the same for every copy, on the safe side."""
    while True:
        at = selector.lower().find(":has(")
        if at < 0:
            return selector
        depth, i = 0, at + 4
        while i < len(selector):
            if selector[i] == "(":
                depth += 1
            elif selector[i] == ")":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        selector = selector[:at] + selector[i + 1:]


# A client's newsletters share their style sheet even when every body is personalised: what a
# sheet declares is read once per process (bounded), and only its selectors are matched per message.
_Rule = tuple[list[tuple[str, "tuple[frozenset[str], frozenset[str]] | None"]], dict[str, str], "str | None"]
_SHEETS: dict[str, tuple[list[_Rule], list[str]]] = {}
SHEET_CACHE = 256


def _sheet(css: str) -> tuple[list[_Rule], list[str]]:
    """The rules of a style sheet that could hide what holds the footer, alone or together with
    others: ((selector, what <body> or <html> needs to be selected: `_root_needs`) ..., their declarations,
    why they hide or None); and its @import URLs."""
    known = _SHEETS.get(css)
    if known is not None:
        return known
    found, imports = rules(css)
    relevant = []
    for selectors, block in found:
        props = {k: v for k, v in declarations(block).items() if k in _RELEVANT}
        why = _hiding(props) if props else None
        if not props or why is None and not _may_combine(props):
            continue
        names = [(one.strip(), _root_needs(one.strip())) for one in _split_top(selectors, ",") if one.strip()]
        if names:
            relevant.append((names, props, why))
    if len(_SHEETS) >= SHEET_CACHE:
        _SHEETS.pop(next(iter(_SHEETS)))
    _SHEETS[css] = (relevant, imports)
    return relevant, imports


_TYPE = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*")
_NAMED = re.compile(r"([.#])([a-zA-Z0-9_-]+)")
_ANY: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())


def _root_needs(selector: str) -> tuple[frozenset[str], frozenset[str]] | None:
    """What <body> or <html> must have for the selector to select it: (classes, ids) its subject
    (last compound) names outside brackets; None when its subject names another element type. By
    the time the style sheets are read the footer is a child of <body>, so only rules on <body> and
    <html> can hide it, and a newsletter's `td.x > a` or `.button` rules need no query per message.
    Nothing is ruled out when it cannot tell, as with an escape (`b\\6f dy` is `body`)."""
    if "\\" in selector:
        return _ANY
    depth, last, flat = 0, 0, []
    for i, ch in enumerate(selector):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        elif depth == 0:
            if ch in " >+~\t\n\r\f":
                last, flat = i + 1, []
            else:
                flat.append(ch)
    found = _TYPE.match(selector[last:])
    if found is not None and found.group(0).lower() not in ("body", "html"):
        return None
    # lower case: in quirks mode (HTML without a doctype, as much mail is) `.Promo` selects class="promo"
    named = _NAMED.findall("".join(flat).lower())
    return (frozenset(n for kind, n in named if kind == "."), frozenset(n for kind, n in named if kind == "#"))


def _may_combine(props: dict[str, str]) -> bool:
    """Declarations that hide only together with others (overflow with a height) on one element."""
    return any(k.startswith(("overflow", "contain", "height", "max-height", "width", "max-width", "block-size",
                             "max-block-size")) for k in props)


def unreadable_import(imports: list[str]) -> str | None:
    """The first @import of a style sheet the relay cannot check (not a web-font service's), if any."""
    for url in imports:
        if _external(url.split()[0] if url.split() else url):
            return url
    return None


def may_select_root(needs: tuple[frozenset[str], frozenset[str]] | None, classes: set[str], ids: set[str]) -> bool:
    """Whether a selector with these `_root_needs` can select <body> or <html>, whose classes and ids
    (lower case) are these."""
    return needs is not None and needs[0] <= classes and needs[1] <= ids
