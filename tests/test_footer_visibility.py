"""The visibility check on its own (no relay): what it closes, what it refuses and why."""
from __future__ import annotations

import pytest

from filters.footer import FooterValues, reason_for, render_footer
from filters.footer_visibility import FooterHidden, declarations, place, rules

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
