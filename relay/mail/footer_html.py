"""Where the footer goes in an HTML part: before the last `</body>` a browser reads as a tag.

A plain text search for `</body>` also finds one inside a comment, a `<script>` string, an
attribute value or a `<textarea>`; a footer put there is hidden or breaks the page. This is a
small HTML5-style tokenizer that only tells markup from what is not: comments, doctype and bogus
comments, tags with quoted attribute values, and the raw text elements whose content is never
markup. Runs of ordinary text and tags are skipped by one regex in C; Python only sees the raw
text elements and the `</body>` / `</html>` end tags.
"""
from __future__ import annotations

import re

from relay.base.offload import BIG

_WS = r"\t\n\f\r "
# raw text and RCDATA elements: everything up to their own end tag is text, never markup
_RAW = ("script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "plaintext")
_RAW_ALT = "|".join(_RAW)
# the rest of a tag after '<': a quote opens a value only right after '=', and an unclosed one
# makes no match (possessive throughout, so a failing tag costs one pass, never a backtrack)
_TAG_REST = (rf"""[^>"'=]*+(?:(?:=[{_WS}]*+(?:"[^"]*+"|'[^']*+')|=(?![{_WS}]*+["'])|["'])"""
             rf"""[^>"'=]*+)*+>""")
_ORDINARY = (
    rf"<(?!(?i:{_RAW_ALT})[{_WS}/>])[a-zA-Z]{_TAG_REST}"      # start tag, not raw text
    rf"|</(?!(?i:body|html)[{_WS}/>])[a-zA-Z]{_TAG_REST}"     # end tag, not body/html
    r"|<!--(?:-?>|(?s:.*?)--!?>)"                             # comment (<!--> and <!---> are empty)
    r"|<!(?!--)[^>]*+>|<\?[^>]*+>"                            # doctype, bogus comments
    r"|</>|</[^a-zA-Z>][^>]*+>"                               # '</>' is dropped; '</ x>' a bogus comment
    r"|<(?=[^a-zA-Z/!?])"                                     # a lone '<' is text
)
# text and ordinary markup, unrolled (text, then any number of markup-then-text): the fast path
_RUN = re.compile(rf"[^<]*+(?:(?:{_ORDINARY})[^<]*+)*+")
_SPECIAL = re.compile(rf"<(/?)([a-zA-Z][^{_WS}/>]*+){_TAG_REST}")


def _raw_end(name: str) -> re.Pattern[str]:
    return re.compile(rf"</{name}(?=[{_WS}/>])", re.IGNORECASE)


_RAW_END = {name: _raw_end(name) for name in _RAW if name != "plaintext"}


def insertion_point(text: str) -> int | None:
    """Index of the last `</body>` tag, else the last `</html>` tag, else the end of the text.

    When the text ends inside a comment, a tag or a raw text element, the end is no place for a
    footer (it would not be seen): then only a `</body>` or `</html>` tag before that counts, and
    without one the answer is None."""
    body = html = None
    pos, n, window = 0, len(text), BIG
    while pos < n:
        # the skip runs a window at a time: one C call never holds the GIL over a whole big part
        end = min(n, pos + window)
        stop = _RUN.match(text, pos, end).end()
        if stop == end < n and stop > pos:
            pos, window = stop, BIG
            continue
        if stop == n:
            break
        m = _SPECIAL.match(text, stop, end)
        if m is None:
            if end < n:  # a token longer than the window, or cut by it: look further
                pos, window = stop, window * 2
                continue
            if text[stop:] in ("<", "</"):
                break  # a browser shows a '<' at the very end as text
            return body if body is not None else html  # an unclosed comment, tag or attribute value
        name = m.group(2).lower()
        if m.group(1):
            if name == "body":
                body = stop
            elif name == "html":
                html = stop
            pos = m.end()
        elif name in _RAW_END:
            close = _RAW_END[name].search(text, m.end())
            tag = None if close is None else _SPECIAL.match(text, close.start())
            if tag is None:
                return body if body is not None else html  # the rest of the part is script, style ...
            pos = tag.end()
        else:
            return body if body is not None else html  # <plaintext>: the rest is shown as markup text
        window = BIG
    if body is not None:
        return body
    return html if html is not None else n
