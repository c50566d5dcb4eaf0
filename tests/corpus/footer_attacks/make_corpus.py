"""Writes the .eml files beside it: one footer-removal attempt each (tests/test_footer_browser.py). Run: python make_corpus.py"""
import base64
from pathlib import Path

OUT = Path(__file__).parent
HEAD = ("From: Acme News <news@acme.example>\nTo: Subscribers <subscribers@acme.example>\n"
        "Subject: {subject}\nDate: Mon, 23 Nov 2026 10:00:00 +0000\nMessage-ID: <attack-{n}@acme.example>\n"
        "List-Id: Acme News <news.acme.example>\nMIME-Version: 1.0\n")
CONTENT = "<h1>Spring offers</h1>\n<p>Dear reader, our spring offers are here: seeds, tools and more.</p>\n"


def page(head_extra="", body_end="", before="", body_attrs=""):
    return (f"<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>Spring offers</title>\n{head_extra}</head>\n"
            f"<body{body_attrs}>\n{before}{CONTENT}{body_end}</body>\n</html>\n")


def html_only(html, ctype="text/html; charset=utf-8", extra=""):
    return f"Content-Type: {ctype}\n{extra}\n{html}"


CASES = {
    # --- the cases
    "malformed-unclosed-comment": ("Unclosed comment", html_only(
        "<html><body>\n" + CONTENT + "<!-- tracking pixel, never closed\n</body></html>\n")),
    "malformed-bad-base64": ("Bad base64", html_only(
        "PGh0bWw+PGJvZHk+PHA+SGk8L3A+PC9ib2R5PjwvaHRtbD4=!!!not*base64###\n",
        extra="Content-Transfer-Encoding: base64\n")),
    "malformed-unknown-charset": ("Unknown charset", html_only(page(), ctype="text/html; charset=x-no-such-charset")),
    "malformed-inline-with-filename": ("Inline part with a filename", html_only(
        page(), extra='Content-Disposition: inline; filename="news.html"\n')),
    "fake-multipart-signed": ("Fake signed", 'Content-Type: multipart/signed; protocol="application/pgp-signature"; '
        'micalg=pgp-sha256; boundary="s1"\n\n--s1\nContent-Type: text/html; charset=utf-8\n\n' + page()
        + '\n--s1\nContent-Type: application/pgp-signature\n\nnot really a signature\n--s1--\n'),
    "style-border-top": ("Hide by border-top", html_only(page(
        head_extra="<style>div[style*='border-top']{display:none}</style>\n"))),
    "unclosed-hidden-div": ("Unclosed hidden div", html_only(
        "<html><body>\n" + CONTENT + '<div style="display:none">\n<p>see you</p>\n</body></html>\n')),
    # --- our own
    "head-css-important": ("CSS in head", html_only(page(head_extra=(
        "<style>\ndiv, p, a, span { display: none !important; visibility: hidden !important }\n"
        "body > div:last-of-type { opacity: 0 !important }\n</style>\n")))),
    "important-everything": ("!important on the footer's tags", html_only(page(head_extra=(
        "<style>\n@media screen { div:last-of-type, div:last-of-type * { display:none!important; "
        "max-height:0!important; overflow:hidden!important; font-size:0!important; color:transparent!important;"
        " position:absolute!important; left:-10000px!important } }\n</style>\n")))),
    "has-selector-body": ("body:has()", html_only(page(head_extra=(
        "<style>body:has(a[href*=\"/u/\"]) { display: none }</style>\n")))),
    "has-selector-token": ("body:has() on one copy in 32", html_only(page(head_extra=(
        "<style>body:has(a[href$=\"q\"]) { display: none }</style>\n")))),
    "has-selector-footer": ("div:has()", html_only(page(head_extra=(
        "<style>div:has(> a[href*=\"/u/\"]), div:has(a[href^=mailto]) { display: none !important }</style>\n")))),
    "zero-size-fonts": ("Zero-size fonts", html_only(page(head_extra=(
        "<style>body { font-size: 0 !important; line-height: 0 !important } * { font-size: 0px !important }</style>\n")))),
    "white-on-white": ("White on white", html_only(page(body_attrs=' style="background:#ffffff"', head_extra=(
        "<style>div, a, p, span { color: #ffffff !important; background-color: #ffffff !important; "
        "-webkit-text-fill-color: #ffffff !important }</style>\n")))),
    "absolute-positioning": ("Absolute positioning", html_only(page(head_extra=(
        "<style>div:last-child { position: absolute !important; left: -9999px !important; top: -9999px !important }"
        "</style>\n")))),
    "absolute-positioned-wrapper": ("Absolutely positioned wrapper left open", html_only(
        "<html><body>\n" + CONTENT + '<div style="position:absolute;left:-9999px;top:0">\n<p>bye</p>\n')),
    "body-offscreen": ("Body moved off-screen", html_only(page(head_extra=(
        "<style>body { position: relative; left: -10000px }</style>\n")))),
    "unclosed-template": ("Unclosed template", html_only("<html><body>\n" + CONTENT + "<template>\n<p>later</p>\n")),
    "unclosed-noscript": ("Unclosed noscript", html_only("<html><body>\n" + CONTENT + "<noscript>\n<p>no js</p>\n")),
    "unclosed-comment-before-body-end": ("Unclosed comment swallowing </body>", html_only(
        "<html><body>\n" + CONTENT + "<!-- </body></html>\n")),
    "plaintext": ("plaintext element", html_only("<html><body>\n" + CONTENT + "<plaintext>\n</body></html>\n")),
    "unclosed-anchor": ("Unclosed link", html_only("<html><body>\n" + CONTENT + '<a href="https://acme.example/shop" '
        'style="font-size:0;color:#fff">\n</body></html>\n')),
    "unclosed-table": ("Unclosed table", html_only("<html><body>\n<table><tr><td style=\"display:none\">\n" + CONTENT)),
    "unclosed-select": ("Unclosed select", html_only("<html><body>\n" + CONTENT + "<select><option>a\n")),
    "unclosed-textarea": ("Unclosed textarea", html_only("<html><body>\n" + CONTENT + "<textarea>\n")),
    "unclosed-svg": ("Unclosed svg", html_only("<html><body>\n" + CONTENT + '<svg width="0" height="0"><text>\n')),
    "unclosed-style": ("Unclosed style", html_only("<html><body>\n" + CONTENT + "<style>\np { color: #333 }\n")),
    "body-height-overflow": ("Body clipped", html_only(page(head_extra=(
        "<style>html, body { max-height: 200px; overflow: hidden }</style>\n")))),
    "body-transform": ("Body scaled away", html_only(page(head_extra=(
        "<style>@media all { html { transform: scale(0.0001) } }</style>\n")))),
    "body-animation": ("Body faded by an animation", html_only(page(head_extra=(
        "<style>@keyframes gone { to { opacity: 0 } } body { animation: gone 0s forwards }</style>\n")))),
    "body-inline-hidden": ("Body hidden inline", html_only(page(body_attrs=' style="display:none"'))),
    "external-style-sheet": ("External style sheet", html_only(page(head_extra=(
        '<link rel="stylesheet" href="https://cdn.acme.example/mail.css">\n')))),
    "css-escapes": ("CSS escapes", html_only(page(head_extra=(
        "<style>bo\\64 y { d\\69splay: n\\6f ne }</style>\n")))),
    "marker-forged": ("Forged footer marker", html_only(page(
        body_end='<div data-relay-footer="" style="display:none"></div>\n'))),
    # --- what must still go out, with the footer
    "ok-plain-newsletter": ("A plain newsletter", html_only(page())),
    "ok-mobile-media-query": ("A newsletter with mobile-only blocks", html_only(page(head_extra=(
        "<style>\n.mobile-only { display: none }\n@media only screen and (max-width: 600px) {\n"
        "  .mobile-only { display: block !important } .desktop-only { display: none !important }\n}\n"
        "body { margin: 0; padding: 0; background: #f4f4f4 } a { color: #0066cc }\n</style>\n"),
        before='<div class="mobile-only">Mobile view</div>\n<div class="desktop-only">Desktop view</div>\n'))),
    "ok-common-resets": ("A newsletter with the usual resets", html_only(page(head_extra=(
        "<style>\nhtml, body { margin: 0 auto !important; padding: 0 !important; height: 100% !important;"
        " width: 100% !important }\nbody { overflow-x: hidden; -webkit-text-size-adjust: 100%; }\n"
        "u + .body .gmail-hide, .preheader { display: none !important; max-height: 0; overflow: hidden }\n"
        "*[x-apple-data-detectors] { color: inherit !important }\n</style>\n"),
        before='<div class="preheader" style="display:none;max-height:0;overflow:hidden">Spring offers inside</div>\n'))),
    "ok-alternative": ("Alternative with text and HTML", 'Content-Type: multipart/alternative; boundary="alt"\n\n'
        "--alt\nContent-Type: text/plain; charset=utf-8\n\nDear reader, our spring offers are here.\n"
        "--alt\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(page().encode()).decode() + "--alt--\n"),
}

for i, (name, (subject, body)) in enumerate(CASES.items(), 1):
    raw = HEAD.format(subject=subject, n=i) + body
    (OUT / f"{i:02d}-{name}.eml").write_bytes(raw.replace("\r\n", "\n").replace("\n", "\r\n").encode())
print(len(CASES))
