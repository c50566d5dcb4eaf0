"""The footer guard's tag scan (filters/html_scan.py and its C version): what it reads as balanced, and the two versions agree."""
from __future__ import annotations

import random

import pytest

from filters import html_scan
from filters.html_scan import scan_py

# pieces of HTML, the tricky ones of the HTML5 tokenizer among them
PIECES = ["<div>", "</div>", "<p>", "</p>", "<b>", "</b>", "<a href='x>y'>", "</a>", "<table>", "</table>", "<tr>",
          "<td>", "</td>", "</tr>", "<!-- c -->", "<!-->", "<!--->", "<!-- --!>", "<!--", "-->", "<!DOCTYPE html>",
          "<?xml x?>", "</>", "</ x>", "<br/>", "<img src=a>", "<style>body{color:red}</style>", "<style>", "</style>",
          "<style>a</stylex></style >", "<title>x</title>", "<textarea><div></textarea>", "<html lang=en>",
          '<body style="margin:0" class=x>', "</body>", "</html>", "<head>", "</head>", "<link rel=stylesheet href=x>",
          "<svg>", "<script>", "text", " ", "<", ">", '"', "'", "=", "/", "<BODY STYLE='a'>", "<Div>", "</DIV>",
          "<a b c=d e = 'f' g=\"h\"/>", "<span/>", "<o:p>", "</o:p>", "<div\n class=y\n>", "<p =x>", "< p>", "<3",
          "</3>", "&amp;", "<!x>", "<![CDATA[x]]>", "<\x00>", "<select>", "<template>", "<p title='<!--'>"]


def test_the_extension_is_built():
    # `pip install` builds it (setup.py); without a compiler the Python path answers, slower
    assert html_scan.scan is not scan_py


def test_the_c_version_answers_as_the_python_version():
    r = random.Random(11)
    for _ in range(20000):
        data = "".join(r.choice(PIECES) for _ in range(r.randint(0, 14))).encode()
        for balanced in (True, False):
            for marker in (b"", b"<p>"):
                assert html_scan.scan(data, balanced, marker) == scan_py(data, balanced, marker), (data, balanced)


@pytest.mark.parametrize("scan", [html_scan.scan, scan_py])
def test_what_is_noted(scan):
    data = (b'<!DOCTYPE html><HTML lang="en"><head><link rel="stylesheet" href="f.css"><style>body{x:y}</style>'
            b'<title>a <div> b</title></head><body class=\'a>b\' hidden><p>x<br/></p><!-- <div> -->')
    found = scan(data, True, b"")
    assert [name for name, _, _, _ in found] == [b"html", b"link", b"style", b"body"]
    _, attrs, start, end = found[2]
    assert attrs is None and data[start:end] == b"body{x:y}"
    attrs = {data[ns:ne]: data[vs:ve] if vs >= 0 else None for ns, ne, vs, ve in found[3][1]}
    assert attrs == {b"class": b"a>b", b"hidden": None}


@pytest.mark.parametrize("scan", [html_scan.scan, scan_py])
@pytest.mark.parametrize("data, balanced", [
    (b"<div><p>x</p></div>", True),
    (b"<table><tr><td>x</td></tr></table><!---->", True),
    (b"<p>x</p><!--><div><!---></div>", True),  # both comments end at once
    (b"<textarea></div></textarea><title><b></title>", True),
    (b"</body></html><p>", False),
])
def test_balanced_parts(scan, data, balanced):
    assert scan(data, balanced, b"") is not None
    assert scan(data + b"data-relay-footer", balanced, b"data-relay-footer") is None  # the footer marker


@pytest.mark.parametrize("scan", [html_scan.scan, scan_py])
@pytest.mark.parametrize("data", [
    b"<div>",                       # left open
    b"<p><b>x</p></b>",             # closed out of order
    b"<div></body>",                # </body> while <div> is open: it stays open
    b'<div class="x>',              # a tag that never ends
    b"<!-- x",                      # a comment that never ends
    b"<style>body{}",               # raw text that never ends
    b"<svg></svg>",                 # foreign content
    b"<select></select>",           # parsed by context
    b"<template></template>",
    b"<p>\x00</p>",
    b"<div>" * 513 + b"</div>" * 513,
])
def test_what_it_cannot_tell(scan, data):
    assert scan(data, True, b"") is None


def test_markup_is_the_tags_joined():
    r = random.Random(3)
    for _ in range(3000):
        data = "".join(r.choice(PIECES) for _ in range(r.randint(0, 10))).encode()
        assert html_scan.markup(data) == html_scan.markup_py(data), data
    assert html_scan.markup(b'x <a href="u">link</a> <b') == b'<a href="u"></a>'
