"""The visibility check on its own (no relay): what it closes, what it refuses and why."""
from __future__ import annotations

import pytest

from filters.footer import FooterValues, reason_for, render_footer
from filters.footer_css import declarations, rules
from filters.footer_visibility import FooterHidden, place

VALUES = FooterValues("Acme Inc", "hello@acme.example", "Acme Inc, 1 Main St, Springfield, IL 62701, USA", "Acme News",
                      False, reason_for("Acme News", "Acme Inc", False, None), "https://r.example/u/T0KEN",
                      "unsubscribe+T0KEN@r.example")
FOOTER = render_footer(VALUES)[1]
HEAD = "<html><head>{}</head><body><p>Spring offers</p>"


def check(head: str = "", body: str = "") -> str:
    return place(HEAD.format(head) + body, "</body></html>", "", FOOTER)


@pytest.mark.parametrize("head, body, closer", [
    ("", "", ""),
    ("", '<div style="display:none"><p>x', "</div>"),  # (the footer's <div> closes the <p> itself)
    ("", "<table><tr><td>x", "</td></tr></tbody></table>"),
    ('<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">', "", ""),
    ("<style>@media (max-width:600px){.m{display:none!important}} a{color:red!important}</style>", "", ""),
])
def test_footer_placed_visible(head, body, closer):
    assert check(head, body) == closer


@pytest.mark.parametrize("head, body, why", [
    ("<style>@import url(https://cdn.example/x.css);</style>", "", "imports"),
    ("<style>:is(html, body){display:none}</style>", "", "display:none"),
    ("<style>@supports (display:grid){@media screen{body{opacity:.1}}}</style>", "", "opacity"),
    ("<style>body{max-height:100px}</style><style>html body{overflow:clip}</style>", "", "<body>"),
    ("<style>body:hover:unknown-pseudo{transform:scale(0)}</style>", "", "transform"),
    ("<style>/* a comment { */ body{mask-image:linear-gradient(transparent,transparent)}</style>", "", "mask-image"),
    ("", "<div>" * 30000, "too deeply"),
])
def test_footer_refused(head, body, why):
    with pytest.raises(FooterHidden, match=why.replace("(", r"\(")):
        check(head, body)


def test_css_reader():
    found, imports = rules("@charset 'x'; @import 'a.css'; @font-face{font-family:X} a{b:c} @media x{p{d:e}}")
    assert found == [("a", "b:c"), ("p", "d:e")] and imports == ["'a.css'"]
    assert declarations("D\\69 splay : NONE !important; color:red") == {"display": "none", "color": "red"}


@pytest.mark.parametrize("document, why", [
    # class and id selectors match case-insensitively in quirks mode (no doctype), as much mail is
    ('<html><head><style>.PROMO{display:none}</style></head><body class="promo">', "display:none"),
    ('<html><head><style>#Wrap.x{opacity:0}</style></head><body id="wrap" class="X">', "opacity"),
    (r'<html><head><style>b\6f dy{display:none}</style></head><body>', "display:none"),
    ('<html class="m"><head><style>td.x > a, .m{transform:scale(0)}</style></head><body>', "transform"),
])
def test_style_sheet_rules_on_body_or_html_refused_however_written(document, why):
    for _ in range(2):  # the second time the sheet is read from the per-process cache
        with pytest.raises(FooterHidden, match=why):
            place(document + "<p>Spring offers</p>", "</body></html>", "", FOOTER)


def test_rules_that_cannot_select_body_or_html_leave_the_footer_visible():
    """A newsletter template's own rules (on cells, links, classes <body> does not have) hide
    nothing of the footer, which sits at body level with its own !important styles."""
    sheet = "".join(f"td.c{i} > a, .hide{i}, div#x{i}{{display:none;overflow:hidden;height:0}}" for i in range(50))
    document = f'<html><head><style>{sheet}</style></head><body class="main"><table><tr><td class="c1">x'
    for _ in range(2):
        assert place(document, "</td></tr></table></body></html>", "", FOOTER) == "</td></tr></tbody></table>"
