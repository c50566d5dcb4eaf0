"""Stage content, HTML parts (filters/content/textview_html.py): real HTML in, the visible text, hidden text and links out."""
from __future__ import annotations

import random
import time

import pytest

from filters.content import textview as tv


def words(text: str) -> str:
    """The text as the content rules read it: white space of any kind and amount is one space."""
    return " ".join(text.split())


def view(html: str | bytes) -> tv.TextView:
    result = tv.TextView()
    tv.html_to_text(html, result)
    return result


def visible(html: str | bytes) -> str:
    return words(" ".join(view(html).visible))


def hidden(html: str | bytes) -> str:
    return words(" ".join(view(html).hidden))


def links(html: str | bytes) -> list[tuple[str, str, str]]:
    return [tuple(link) for link in view(html).links]


# ------------------------------------------------------------------------------------------------
# words: inline tags join, blocks separate

@pytest.mark.parametrize("html", [
    "vi<b></b>agra", "v<b>iagra</b>", "vi<!-- x -->agra", "vi<span>ag</span>ra", "vi<x-tag>ag</x-tag>ra",
    "vi<o:p>ag</o:p>ra",
    "vi<wbr>agra", "vi<img src=x.png>agra", "vi<script>x</script>agra", "<font color=red>vi</font><i>agra</i>",
    "vi<?php x ?>agra", "vi</ x>agra", "vi<a>ag</a>ra",
])
def test_inline_tags_join_the_word(html):
    assert visible(html) == "viagra"


@pytest.mark.parametrize("html, text", [
    ("<p>online</p><p>casino</p>", "online casino"),
    ("online<br>casino", "online casino"),
    ("online<hr>casino", "online casino"),
    ("<table><tr><td>online</td><td>casino</td></tr></table>", "online casino"),
    ("<ul><li>online</li><li>casino</li></ul>", "online casino"),
    ("online<div>casino</div>now", "online casino now"),
    ("<h1>online</h1>casino", "online casino"),
    ("online<p></p>casino", "online casino"),
])
def test_block_elements_separate_words(html, text):
    assert visible(html) == text


def test_entities_are_decoded():
    text = " ".join(view("caf&eacute; &amp; &lt;b&gt; 5&nbsp;&euro; &#8364;&#x20AC; &notanentity;").visible)
    assert text == "caf\u00e9 & <b> 5\xa0\u20ac \u20ac\u20ac \u00acanentity;"


@pytest.mark.parametrize("tag", ["script", "style", "title", "template", "noscript", "svg", "xml"])
def test_content_no_reader_sees_is_dropped(tag):
    assert visible(f"before <{tag}>buy viagra</{tag}> after") == "before after"
    assert hidden(f"before <{tag}>buy viagra</{tag}> after") == ""


def test_the_head_is_dropped_where_a_browser_has_one():
    html = ("<html><head><meta charset=utf-8><title>buy viagra</title><style>p {}</style></head>"
            "<body>Hello</body></html>")
    assert visible(html) == "Hello"
    assert visible("<p>Hello</p><head>buy viagra</head>") == "Hello buy viagra"  # a <head> tag in the body is ignored


def test_images_give_their_alt_text_also_in_links():
    html = ('<p>Hello <img src="x.png" alt="payday loans today"> and '
            '<a href="https://demo.example/"><img alt="Shop"></a></p>')
    assert visible(html) == "Hello payday loans today and Shop"
    assert links(html) == [("https://demo.example/", "Shop", "html")]
    assert visible('<img src="x.png">') == ""


# ------------------------------------------------------------------------------------------------
# hidden text

@pytest.mark.parametrize("style", [
    "display:none", "DISPLAY : NONE", "visibility:hidden", "font-size:0", "font-size:0px", "font-size: 0.5em;",
    "font-size:1px", "height:0;overflow:hidden", "max-height:0px; overflow : hidden", "overflow:hidden;height:0",
    "opacity:0", "opacity:0.0;", "mso-hide:all", "color:red;display:none !important", "d&#105;splay:n&#111;ne",
])
def test_hiding_styles_move_the_text_to_hidden(style):
    html = f'<p>Hello</p><div style="{style}">cheap viagra <b>today</b></div><p>Bye</p>'
    assert visible(html) == "Hello Bye"
    assert hidden(html) == "cheap viagra today"


@pytest.mark.parametrize("style", ["font-size:10px", "font-size:1.5em", "opacity:0.5", "height:0", "display:block",
                                   "overflow:hidden", "dısplay:none", "font-size:\xa00"])
def test_styles_that_show_the_text_leave_it_visible(style):
    # "dısplay" and a no-break space are no CSS either: a browser shows the text
    html = f'<p>Hello</p><div style="{style}">cheap viagra</div>'
    assert visible(html) == "Hello cheap viagra"
    assert hidden(html) == ""


def test_hidden_attribute_and_nested_hidden_elements():
    html = '<p>Hi</p><section hidden><p>cheap</p><span style="display:none">viagra</span> pills</section>'
    assert visible(html) == "Hi"
    assert hidden(html) == "cheap viagra pills"
    assert view(html).hidden == ["cheap\nviagra pills"]  # one chunk per hidden element, nested content included


def test_hidden_text_cut_out_does_not_split_a_word():
    assert visible('<p>online ca<span style="display:none">zz</span>sino</p>') == "online casino"
    assert visible("ca<div hidden>zz</div>sino") == "casino"  # a hidden block takes no room either
    assert visible("<p>a</p><p hidden>b</p><p>c</p>") == "a c"


def test_hidden_image_alt_and_whole_document_hidden():
    assert hidden('x<img style="display:none" alt="cheap pills">y') == "cheap pills"
    assert visible('x<img style="display:none" alt="cheap pills">y') == "xy"
    assert visible("<html hidden><p>buy viagra</p></html>") == ""
    assert hidden("<html hidden><p>buy viagra</p></html>") == "buy viagra"


# ------------------------------------------------------------------------------------------------
# links

def test_anchor_href_with_its_visible_text_and_areas():
    html = ('<a href=" https://x.example/?a=1&amp;b=2 ">Shop <b>now</b></a> '
            '<a href="https://y.example/">Sho<span hidden>zz</span>p</a> '
            '<a href="https://z.example/"><div>Shop</div><div>again</div></a> '
            '<a href="">empty</a> <a name=x>no href</a>'
            '<map><area href="http://a.example/" alt="Area"><area alt="no href"></map>')
    assert links(html) == [("https://x.example/?a=1&b=2", "Shop now", "html"), ("https://y.example/", "Shop", "html"),
                           ("https://z.example/", "Shop again", "html"), ("http://a.example/", "Area", "html")]


def test_links_in_hidden_elements_count():
    html = '<div style="display:none"><a href="https://bit.ly/x">secret <b>offer</b></a> more</div>'
    assert links(html) == [("https://bit.ly/x", "secret offer", "html")]
    assert hidden(html) == "secret offer more"


def test_urls_written_in_the_text_outside_anchors():
    html = ('<p>Visit www.shop.example or HTTPS://Other.example/x, or '
            '<a href="https://click.example/1">www.in-anchor.example</a>.</p><p>http://a.example/<b>joined</b></p>')
    assert [(link.url, link.source) for link in view(html).links] == [
        ("https://click.example/1", "html"), ("www.shop.example", "text"), ("HTTPS://Other.example/x", "text"),
        ("http://a.example/joined", "text")]


# ------------------------------------------------------------------------------------------------
# the document as a browser builds it

def test_html5_tree_building():
    assert visible("<head><title>t</title><p>body text") == "body text"   # no </head>: the body is still read
    assert visible("<p>x</p><!-->buy viagra<!-- -->") == "x buy viagra"   # "<!-->" is a whole comment
    assert visible('<a title="a>b" href="https://x.example/">Shop</a>') == "Shop"  # '>' in a quoted value
    assert visible("<table>before<tr><td>cell</td></tr></table>") == "before cell"  # text moved out of the table
    assert visible("<td>on</td>line") == "online"  # a cell outside a table is no cell
    assert visible("online<b") == "online"  # an unfinished tag at the end is dropped


def test_malformed_html_never_raises():
    r = random.Random(11)
    pieces = ["<", ">", "</", "<!--", "-->", "<!", "<?", "&", "&#0;", "&#x110000;", "\x00", "\ud800", "é", "a",
              "<a href=x>", "</a>", "<p>", "<div hidden>", "<span style='display:none'>", "<img alt='x'>", "<table>",
              "<td>", "<html hidden>", "<body hidden>", "<svg>", "<math>", "<template>", "<xml>", "<script>",
              "<area href=y>", "<select><option>", "<plaintext>", "<frameset>", "www.x", " ", "\n", "<o:p>"]
    for _ in range(3000):
        source = "".join(r.choice(pieces) for _ in range(r.randint(0, 40)))
        view(source)
        view(source.encode("utf-8", "surrogatepass"))
    for _ in range(300):
        view(bytes(r.randrange(256) for _ in range(r.randint(0, 200))))


def test_bytes_are_read_as_utf8_as_text_is():
    html = '<p>Caf\u00e9 <a href="https://x.example/">\u2192 shop</a></p>'
    assert links(html.encode()) == links(html)
    assert visible(html.encode()) == visible(html) == "Café → shop"
    assert visible(b"<p>bad \xff byte</p>") == "bad \ufffd byte"


def test_deep_nesting_costs_bounded_time():
    start = time.perf_counter()
    assert visible("<div>" * 50000 + "buy viagra") == "buy viagra"
    assert time.perf_counter() - start < 10


# ------------------------------------------------------------------------------------------------
# through the MIME walker

def _message(html: bytes, charset: str, cte: str = "8bit") -> bytes:
    return (b"Subject: s\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=" + charset.encode() +
            b"\r\nContent-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n" + html)


@pytest.mark.parametrize("charset, encoded", [
    ("utf-8", "<p>Caf\u00e9 \u2013 online casino</p>".encode()),
    ("iso-8859-1", "<p>Caf\u00e9 online casino</p>".encode("latin-1")),
    ("us-ascii", b"<p>Cafe online casino</p>"),
    ("iso-2022-jp", "<p>\u30aa\u30f3\u30e9\u30a4\u30f3\u30ab\u30b8\u30ce online casino</p>".encode("iso-2022-jp")),
])
def test_html_parts_in_any_charset(charset, encoded):
    text = words(" ".join(tv.reader_view(_message(encoded, charset)).visible))
    assert text.endswith("online casino")
    if charset == "iso-2022-jp":  # ASCII bytes, but not ASCII text: decoded, not read as UTF-8
        assert text.startswith("\u30aa\u30f3\u30e9\u30a4\u30f3")


def test_a_charset_that_names_no_text_codec_does_not_raise():
    for charset in ("base64", "rot13", "zlib", "nonsense"):
        assert words(" ".join(tv.reader_view(_message(b"<p>online casino</p>", charset)).visible)) == "online casino"
        plain = _message(b"online casino", charset).replace(b"text/html", b"text/plain")
        assert tv.reader_view(plain).visible == ["online casino"]
