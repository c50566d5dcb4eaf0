"""HTML parts as a reader sees them, read with lexbor (an HTML5 parser in C): visible text, hidden text, links."""
from __future__ import annotations

import itertools
import operator
import re
from typing import NamedTuple

from selectolax.lexbor import LexborHTMLParser, LexborNode

from filters.content.textview_css import hidden_selectors

try:  # the C helpers (filters/content/_wordscan.c); without them, or built before these, the Python paths
    from filters.content import _wordscan
except ImportError:  # pragma: no cover  (built without a C compiler)
    _wordscan = None  # type: ignore[assignment]

# `html_text(source)` parses the document as a browser engine does (implied and misnested tags,
# comments, raw-text elements, character references, text moved out of tables: all by the HTML5
# rules), then turns the tree into text with a fixed number of lexbor calls plus one Python call
# per element that needs one (never a Python walk over the text):
#   - script, style, head, title, template, noscript, svg, xml and comments are cut out;
#   - elements hidden by the `hidden` attribute or a hiding style (HIDING_STYLE: display:none,
#     visibility:hidden, font-size 0 or 1px, opacity 0, mso-hide:all, height 0 with overflow
#     hidden) are cut out with their content, and their text is the hidden text;
#   - images become their alt text (between spaces), in links too;
#   - every element that is not a block (_BLOCKS) is unwrapped and adjacent text nodes merged, so
#     inline tags join (vi<b></b>agra and v<b>iagra</b> read "viagra"), and the text nodes left
#     are apart only where a block element starts or ends: text(separator="\n") puts a line
#     break exactly there. A hidden element leaves no break (ca<div hidden>zz</div>sino is
#     "casino": a hidden block takes no room in a browser either);
#   - links: each <a> href with the anchor's visible text, then each <area> href with its alt
#     text; anchors inside hidden elements count too.


class HtmlText(NamedTuple):
    visible: str                    # the text a reader sees
    hidden: str                     # the text of hidden elements, a line each
    anchors: list[tuple[str, str]]  # (href, visible text) of each <a>, then (href, alt) of each <area>
    unlinked: str | None            # the visible text outside anchors when it may hold a URL, else None
    image_only: bool = False        # images without alt text and next to no text (IMAGE_ONLY_WORDS)


# ASCII rules, as CSS has them: "dısplay:none" or "font-size:\xa00" hide nothing in a browser either
HIDING_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|mso-hide\s*:\s*all|opacity\s*:\s*0(?:\.0*)?\s*(?:;|$|!)"
    r"|font-size\s*:\s*0(?:\.\d+)?(?:px|pt|em|rem|%)?\s*(?:;|$|!)|font-size\s*:\s*1px"
    r"|(?:max-)?height\s*:\s*0(?:px)?\s*(?:;|$|!).*overflow\s*:\s*hidden"
    r"|overflow\s*:\s*hidden.*(?:max-)?height\s*:\s*0(?:px)?\s*(?:;|$|!)", re.I | re.S | re.A)
# what each alternative of HIDING_STYLE needs, in lowercased text (a word first: a cheap test;
# each pattern starts with a literal, so the regex engine skips ahead to it in C)
_NEEDS = [(word, re.compile(pattern, re.A)) for word, pattern in (
    ("none", r"display\s*:\s*none"), ("visibility", r"visibility\s*:\s*hidden"), ("overflow", r"overflow\s*:\s*hidden"),
    ("mso-hide", r"mso-hide\s*:\s*all"), ("opacity", r"opacity\s*:\s*0"),
    ("font-size", r"font-size\s*:\s*(?:0|1px)"))]


_TAG_IDS = LexborHTMLParser("")
# elements whose boundaries separate words; every other element is unwrapped (its content joins
# the text around it: vi<b>agra</b> is "viagra")
_BLOCKS = frozenset(_TAG_IDS.create_node(name).tag_id for name in (
    "p", "div", "br", "tr", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "table", "tbody", "thead",
    "tfoot", "blockquote", "section", "article", "header", "footer", "hr", "center", "pre", "dd", "dt", "dl",
    "body", "html", "main", "nav", "aside", "figure", "figcaption", "form", "option", "caption", "td", "th"))
# dropped with their content: a reader never sees them ("xml", an unknown element, has no fixed id)
_SKIPPED = frozenset(_TAG_IDS.create_node(name).tag_id
                     for name in ("script", "style", "head", "title", "template", "noscript", "svg"))
_A = _TAG_IDS.create_node("a").tag_id
_IMG = _TAG_IDS.create_node("img").tag_id
_AREA = _TAG_IDS.create_node("area").tag_id
# lexbor numbers the elements it knows from a table; a name it does not know (<xml>, <o:p>) gets
# an id past them: without one in the document there is no <xml> to look for
_LAST_KNOWN = max(_TAG_IDS.create_node(name).tag_id for name in (
    "a", "abbr", "address", "area", "article", "aside", "audio", "b", "base", "bdi", "bdo", "big", "blockquote",
    "body", "br", "button", "canvas", "caption", "center", "cite", "code", "col", "colgroup", "data", "datalist",
    "dd", "del", "details", "dfn", "dialog", "div", "dl", "dt", "em", "embed", "fieldset", "figcaption", "figure",
    "font", "footer", "form", "frame", "frameset", "h1", "head", "header", "hgroup", "hr", "html", "i", "iframe",
    "image", "img", "input", "ins", "kbd", "label", "legend", "li", "link", "main", "map", "mark", "marquee",
    "math", "menu", "meta", "meter", "nav", "nobr", "noembed", "noframes", "noscript", "object", "ol", "optgroup",
    "option", "output", "p", "param", "picture", "plaintext", "pre", "progress", "q", "rp", "rt", "ruby", "s",
    "samp", "script", "search", "section", "select", "slot", "small", "source", "span", "strike", "strong",
    "style", "sub", "summary", "sup", "svg", "table", "tbody", "td", "template", "textarea", "tfoot", "th",
    "thead", "time", "title", "tr", "track", "tt", "u", "ul", "var", "video", "wbr", "xmp"))
_XML_HAS_OWN_ID = _TAG_IDS.create_node("xml").tag_id <= _LAST_KNOWN  # (a lexbor that knows it: look always)
_COMMENT = LexborHTMLParser("<p><!---->").css_first("p").first_child.tag_id
del _TAG_IDS
# kept in the first pass: blocks, anchors (unwrapped once their text is read), comments (removed)
_KEPT = _BLOCKS | {_A, _COMMENT}
_TAG_ID = operator.attrgetter("tag_id")
_MEM_ID = operator.attrgetter("mem_id")
_ATTRS = operator.attrgetter("attrs")
_HREF = operator.itemgetter("href")
_SPACED_TEXT = operator.methodcaller("text", True, " ")  # text(deep=True, separator=" ")

# The HTML5 tree builder walks the stack of open elements for many tags (scope checks), so its
# cost grows with tags times nesting depth: 100,000 nested <div> take a minute. A document with
# more than SAFE_TAGS '<' has its nesting estimated first (linear); past WORK_LIMIT it is read in
# pieces of PIECE_TAGS tags, each parsed on its own, which bounds the cost (legitimate mail nests
# a few dozen levels deep and never gets there).
SAFE_TAGS = 4000
WORK_LIMIT = 4_000_000
PIECE_TAGS = 1000
_TAG = re.compile(rb"<(/?)([A-Za-z][^\s/>]*)")
# void elements, and elements the parser closes when the next of their kind (or a block) starts
_UNNESTED = frozenset(b"""area base br col embed hr img input link meta param source track wbr p li td th tr
option dd dt tbody thead tfoot colgroup rt rp optgroup html head body""".split())


def html_text(source: str | bytes) -> HtmlText:
    """The visible text, hidden text and links of an HTML document (str, or UTF-8 bytes); never
    raises on malformed input (bytes that are not UTF-8 read as U+FFFD)."""
    if isinstance(source, str):
        try:
            data = source.encode()
        except UnicodeEncodeError:  # a lone surrogate: the parser reads it as U+FFFD
            data = source.encode("utf-8", "surrogatepass")
    else:
        data = source
    if _count_tags(data) > SAFE_TAGS and nesting_work(data) > WORK_LIMIT:
        return _in_pieces(data)
    return _convert(data)


def _count_tags(data: bytes) -> int:
    """data.count(b"<"), eight bytes at a time when the C helpers are built."""
    count_byte = getattr(_wordscan, "count_byte", None)
    return data.count(b"<") if count_byte is None else count_byte(data, 0x3C)


def nesting_work(data: bytes) -> int:
    """An estimate of the tree builder's stack walks: the depth of the open elements, summed over tags."""
    stack: list[bytes] = []
    open_count: dict[bytes, int] = {}
    work = 0
    for slash, name in _TAG.findall(data):
        name = name.lower()
        if slash:
            if open_count.get(name):
                while True:  # an end tag closes its element and everything opened inside it
                    top = stack.pop()
                    open_count[top] -= 1
                    if top == name:
                        break
        elif name not in _UNNESTED:
            stack.append(name)
            open_count[name] = open_count.get(name, 0) + 1
        work += len(stack)
    return work


def _in_pieces(data: bytes) -> HtmlText:
    """`_convert` on pieces of PIECE_TAGS tags each, joined as if the cuts were inline tags."""
    chunks = data.split(b"<")
    pieces = [chunks[0]] + [b"<" + b"<".join(chunks[i:i + PIECE_TAGS]) for i in range(1, len(chunks), PIECE_TAGS)]
    results = [_convert(piece, always_unlinked=True) for piece in pieces]
    return HtmlText("".join(r.visible for r in results), "\n".join(r.hidden for r in results if r.hidden),
                    [anchor for r in results for anchor in r.anchors],
                    "".join(r.unlinked or "" for r in results))  # (a part this large is no image-only mail)


def hides(node: LexborNode, style: str | None = None) -> bool:
    """The element is hidden from the reader by the `hidden` attribute or its style."""
    attrs = node.attrs
    if "hidden" in attrs:
        return True
    if style is None:
        style = attrs.get("style")
    return bool(style) and HIDING_STYLE.search(style) is not None


def _hiding_styles_py(styles: list[str]) -> list[int]:
    """The indices of the styles in which what a way of hiding needs is written (`_NEEDS`: a superset
    of what `hides` finds), in order: the styles joined and searched in C (`_hiding_styles`: the C
    version when built, one pass over each style)."""
    lowered = "\x00".join(styles).lower()  # attribute values hold no NUL (the parser replaces it)
    found = {m.start() for word, needs in _NEEDS if word in lowered for m in needs.finditer(lowered)}
    picked: set[int] = set()
    index = previous = 0
    for at in sorted(found):  # the index of the style holding each: the separators before it
        index += lowered.count("\x00", previous, at)
        previous = at
        picked.add(index)
    return sorted(picked)


_hiding_styles = getattr(_wordscan, "hiding_styles", _hiding_styles_py)


def _hidden_roots(tree: LexborHTMLParser, selectors: tuple[str, ...] = ()) -> list[LexborNode]:
    """The hidden elements that are not inside another hidden element, in document order.

    Newsletters style hundreds of elements and hide one or two: the styles are read once and
    searched in C for what each way of hiding needs; only the elements found get `hides`.
    `selectors` are those a stylesheet hides (filters/content/textview_css.py): their elements are hidden too.
    """
    flagged = tree.css("[hidden]")
    if selectors:
        try:
            classed = tree.css(", ".join(selectors))
        except Exception:  # a selector lexbor refuses: no stylesheet hiding rather than no text
            classed = []
        flagged = flagged + classed
    query = "[style], [hidden]" if flagged else "[style]"
    if selectors and flagged:
        query += ", " + ", ".join(selectors)
    nodes = tree.css(query)
    if not nodes:
        return []
    # (each attributes object let go as soon as read: hundreds alive at once start a collection)
    styles = [attrs.get("style") or "" for attrs in map(_ATTRS, nodes)] if flagged else \
        [attrs["style"] or "" for attrs in map(_ATTRS, nodes)]
    picked = set(_hiding_styles(styles))
    if not picked and not flagged:
        return []
    ids: set[int] = set()
    if flagged:
        ids = {node.mem_id for node in flagged}
        picked.update(i for i, node in enumerate(nodes) if node.mem_id in ids)
    roots: list[LexborNode] = []
    inside: set[int] = set()
    for i in sorted(picked):
        node = nodes[i]
        if node.mem_id in inside or not (node.mem_id in ids and selectors or hides(node, styles[i])):
            continue
        roots.append(node)
        inside.update(map(_MEM_ID, node.traverse()))  # the node itself among them
    return roots


def _convert(data: bytes, always_unlinked: bool = False) -> HtmlText:
    """Text from the tree: inline elements unwrapped and adjacent text merged, so the text nodes
    left are separated by block boundaries only, and `text(separator="\n")` puts a line break
    exactly there (all in C but for one call per inline element)."""
    tree = LexborHTMLParser(data)
    root = tree.root
    if root is None:
        return HtmlText("", "", [], None)
    nodes = list(root.traverse())  # elements and comments, in document order
    tags = list(map(_TAG_ID, nodes))
    skipped = list(itertools.compress(nodes, map(_SKIPPED.__contains__, tags)))
    comments = list(itertools.compress(nodes, map(_COMMENT.__eq__, tags))) if _COMMENT in tags else []
    inline = list(itertools.compress(nodes, map(operator.not_, map(_KEPT.__contains__, tags))))
    # only these are kept: hundreds of node objects alive at once start a garbage collection
    del nodes
    if _XML_HAS_OWN_ID or max(tags) > _LAST_KNOWN:
        skipped += tree.css("xml")
    for node in skipped:
        node.decompose(recursive=False)  # cut from the tree; the text walk never reaches it
    del skipped
    hidden_roots = _hidden_roots(tree, hidden_selectors(data, HIDING_STYLE))
    hidden_ids = {node.mem_id for node in hidden_roots}
    # one selector walk for the three (each query also sets up the selector engine's memory anew)
    found = tree.css("img[alt], a[href], area[href]")
    kinds = list(map(_TAG_ID, found))
    alt_words = 0
    for img in itertools.compress(found, map(_IMG.__eq__, kinds)):
        alt = img.attrs["alt"]
        if alt and not (hidden_ids and img.mem_id in hidden_ids):
            alt_words += len(alt.split())
            img.replace_with(f" {alt} ")
    anchors = list(itertools.compress(found, map(_A.__eq__, kinds)))
    areas = list(itertools.compress(found, map(_AREA.__eq__, kinds))) if _AREA in tags else []
    del found
    for node in comments:
        node.decompose(recursive=False)  # it would keep the text on either side apart
    for node in inline:
        if not (hidden_ids and node.mem_id in hidden_ids):
            node.unwrap(delete_empty=True)
    del inline
    root.merge_text_nodes()
    texts: dict[int, str] = {}  # link texts read early: anchors in hidden elements
    # (the node itself among them, as css("a") has it; a walk costs less than a query on a small subtree)
    inner = [anchor for node in hidden_roots for anchor in node.traverse() if anchor.tag_id == _A]
    if inner:
        # an anchor in a hidden element keeps all its text; then it is unwrapped like any inline
        # element, so that it does not split the hidden text (a hidden <a> itself stays, to be cut)
        texts = dict(zip(map(_MEM_ID, inner), _link_texts(inner)))
        for anchor in inner:
            if anchor.mem_id not in hidden_ids:
                anchor.unwrap(delete_empty=True)
        root.merge_text_nodes()
    hidden: list[str] = []
    for node in hidden_roots:
        if node.tag_id == _IMG:
            alt = node.attrs.get("alt")
            hidden.append(f" {alt} " if alt else "")
        else:
            hidden.append(node.text(separator="\n"))
        if node.mem_id == root.mem_id:
            return HtmlText("", hidden[-1], _links(anchors, areas, texts), None)
        node.decompose(recursive=False)
    if hidden_roots:
        root.merge_text_nodes()  # the text on either side of a hidden element joins
    links = _links(anchors, areas, texts)
    marked = always_unlinked or _may_hold_url(root.text())
    if marked:  # mark where each anchor's text starts and ends, to cut it from the text searched for URLs
        for anchor in tree.css("a"):
            anchor.insert_before(_OPEN)
            anchor.insert_after(_CLOSE)
    root.unwrap_tags(["a"], delete_empty=True)
    root.merge_text_nodes()
    visible = root.text(separator="\n")
    image_only = _IMG in tags and _image_only(visible, data, alt_words)
    if not marked:
        return HtmlText(visible, "\n".join(hidden), links, None, image_only)
    unlinked = visible
    while True:  # innermost anchors first (the parser can nest them: <a><table><a>)
        unlinked, cut = _ANCHOR_TEXT.subn(" ", unlinked)
        if not cut:
            break
    return HtmlText(visible.replace(_OPEN, "").replace(_CLOSE, ""), "\n".join(hidden), links,
                    unlinked.replace(_OPEN, " ").replace(_CLOSE, " "), image_only)


# an HTML part is image-only when it shows images (not 1-pixel trackers) without alt text, describes
# them in fewer than IMAGE_ALT_WORDS words of alt text, and has fewer than IMAGE_ONLY_WORDS words
# of its own: the message is a picture of text
IMAGE_ONLY_WORDS = 12
IMAGE_ALT_WORDS = 4
_IMG_TAG = re.compile(rb"<img\b[^>]*>", re.I)
_PIXEL = re.compile(rb"""\b(?:width|height)\s*=\s*["']?\s*[012](?:px)?\b|\b(?:width|height)\s*:\s*[012]px""", re.I)
_ALT = re.compile(rb"""\balt\s*=\s*(?:"\s*[^"\s]|'\s*[^'\s]|[^\s"'>])""", re.I)


def _image_only(visible: str, data: bytes, alt_words: int) -> bool:
    if alt_words >= IMAGE_ALT_WORDS or len(visible) > 20 * IMAGE_ONLY_WORDS:
        return False
    words = len(visible.replace(_OPEN, " ").replace(_CLOSE, " ").split()) - alt_words
    if words >= IMAGE_ONLY_WORDS:
        return False
    return any(not _PIXEL.search(tag) and not _ALT.search(tag) for tag in _IMG_TAG.findall(data))


# the parser turns NUL in text into U+FFFD: no text holds one, so these marks are unambiguous
_OPEN, _CLOSE = "\x00(", "\x00)"
_ANCHOR_TEXT = re.compile("\x00\\([^\x00]*\x00\\)")


def _may_hold_url_py(text: str) -> bool:
    """`text` may hold a URL as relay.textview finds them (http:// or https:// or www., in any case)
    (`_may_hold_url`: the C version when built, one pass over the str)."""
    lowered = text.encode().lower()  # ASCII letters only: t p w have no other cases
    return b"://" in lowered or b"ww." in lowered


_may_hold_url = getattr(_wordscan, "may_hold_url", _may_hold_url_py)


def _links(anchors: list[LexborNode], areas: list[LexborNode], known: dict[int, str]) -> list[tuple[str, str]]:
    """(href, text) of each anchor with an href, then (href, alt) of each area with one; `known`
    holds the texts already read (by mem_id)."""
    hrefs = list(map(_HREF, map(_ATTRS, anchors)))
    if known:
        texts = [known[anchor.mem_id] if anchor.mem_id in known else _link_texts([anchor])[0] for anchor in anchors]
    else:
        texts = _link_texts(anchors)
    links = [(href.strip(), text) for href, text in zip(hrefs, texts) if href and not href.isspace()]
    for area in areas:
        attrs = area.attrs
        href = attrs["href"]
        if href and not href.isspace():
            links.append((href.strip(), attrs.get("alt") or ""))
    return links


def _link_texts(anchors: list[LexborNode]) -> list[str]:
    """Each anchor's text, white space collapsed: " ".join(text.split()), for all of them at once,
    on the texts joined by NUL (no text holds one), the NULs then cleared of spaces around them.

    Inline elements in the anchors are unwrapped by now, so their text nodes are apart only where
    a block starts or ends, or where an anchor the parser nested in them (<a><table><a>) does.
    """
    texts = " ".join("\x00".join(map(_SPACED_TEXT, anchors)).split())
    return texts.replace(" \x00", "\x00").replace("\x00 ", "\x00").split("\x00")
