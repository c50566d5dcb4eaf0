"""The footer through a real relay: every corpus message, every copy parsed, DKIM-checked and
compared part by part with what was sent (SPEC §5, §8)."""
from __future__ import annotations

import email
import email.message
import re
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dkim
import pytest

from conftest import PASSWORD_HASH, Sink
from filters.footer import ConsentFacts, FooterValues, render_footer
from relay.mail.dkim import dns_txt_record, load_private_key
from relay.mail.message import Message, split_header_block
from relay.mail.mime_footer import MAX_DEPTH, mime_depth, plan_footer, plan_footer_explained
from relay.mail.footer_lang import phrase
from test_relay_smtp import login, verify_dkim

CORPUS = Path(__file__).parent / "corpus" / "footer"
NOW = datetime.now(timezone.utc)
# "footer" not named: sender-identity and unsubscribe bring it (SPEC §2's list has no footer, §5
# puts one on every copy), so every footer test below also shows that they do
STAGES = '["suppression", "sender-identity", "consent", "unsubscribe"]'
POSTAL = "1 Main St, Springfield, IL 62701, USA"  # marks the footer (the corpus never says it)
FAN, KOELN, BUYER = "fan@example.org", "koeln@example.org", "buyer@example.org"

# how many reader-visible (text/plain, text/html) parts get the footer; None: no visible footer can be
# added (signed, encrypted, malformed), so the message is refused 554 5.6.0 (SPEC §8)
EXPECTED: dict[str, tuple[int, int] | None] = {
    "01_plain_7bit.eml": (1, 0),
    "02_plain_utf8_8bit.eml": (1, 0),
    "03_plain_qp.eml": (1, 0),
    "04_plain_base64.eml": (1, 0),
    "05_latin1_qp.eml": (1, 0),
    "06_cp1252_8bit.eml": (1, 0),
    "07_shiftjis_base64.eml": (1, 0),
    "08_html_only_qp.eml": (0, 1),
    "09_html_no_body_tag.eml": (0, 1),
    "10_html_uppercase_body.eml": (0, 1),
    "11_alternative_qp.eml": (1, 1),
    "12_alternative_base64.eml": (1, 1),
    "13_mixed_pdf_attachment.eml": (1, 1),
    "14_related_inline_image.eml": (0, 1),
    "15_nested_mixed_alt_related.eml": (1, 1),
    "16_forwarded_rfc822.eml": (1, 0),       # the forwarded message keeps its text untouched
    "17_calendar.eml": (1, 1),               # text/calendar untouched
    "18_multipart_signed.eml": None,
    "19_pkcs7_mime.eml": None,
    "20_malformed_missing_boundary.eml": None,
    "21_malformed_bad_base64.eml": None,
    "22_malformed_unknown_charset.eml": None,
    "23_deep_nesting.eml": None,
    "24_no_mime_headers.eml": (1, 0),
    "25_utf8_declared_7bit.eml": (1, 0),     # footer needs 8-bit: the part becomes quoted-printable
    "26_malformed_unterminated.eml": None,
    "27_iso2022jp_7bit.eml": (1, 0),
    "28_mixed_text_attachment.eml": (1, 0),  # the attached notes.txt and page.html stay as they are
}
CORPUS_FILES = sorted(p.name for p in CORPUS.glob("*.eml"))


def consent_row(address: str, source: str, method: str, confirmed: bool) -> dict:
    return {"address": address, "status": "confirmed", "method": method, "source": source,
            "signed_up_at": NOW - timedelta(days=30), "ip": "192.0.2.7", "disclosure": "Weekly news",
            "confirmed_at": NOW - timedelta(days=29) if confirmed else None}


@pytest.fixture(scope="module")
def override_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("gamma-templates")
    # only the text template is overridden: the HTML one must come from the defaults
    (d / "footer.txt.j2").write_text("GAMMA OVERRIDE for {{ company }} <{{ contact_email }}>\n{{ postal_address }}\n{{ reason }}\n")
    return d


@pytest.fixture(scope="module")
def relay(relay_factory, sink: Sink, keys_dir: Path, override_dir: Path):
    gamma = textwrap.dedent(f"""
        [clients.gamma]
        password_hash = "{PASSWORD_HASH}"
        sender_domains = ["gamma.example"]
        company = "Gamma Ltd"
        contact_email = "help@gamma.example"
        postal_address = "Gamma Ltd, 9 Quay St, Leeds LS1 1AA, UK"
        dkim = {{ selector = "g1", key_file = "{keys_dir / 'acme.example.pem'}" }}
        default_list = "notices"
        footer_templates = "{override_dir}"

        [clients.gamma.lists.notices]
        name = "Gamma notices"
        kind = "transactional"
        """)
    r = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages=STAGES, extra=gamma)
    r.store.consent_import("acme", "news", [
        consent_row(FAN, "signup form", "double", True),
        consent_row(KOELN, "Anmeldeformular Köln", "single", False),
    ], NOW, "test")
    return r


def deliver(port: int, data: bytes, rcpts: list[str], user: str = "acme", frm: str = "bounce@acme.example") -> tuple[int, str]:
    with login(port, user) as s:
        s.mail(frm, ["BODY=8BITMIME"])
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, (r, code, text)
        code, text = s.data(data)
    return code, text.decode()


def body_of(raw: bytes) -> bytes:
    return split_header_block(raw)[1]


def text_of(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True) or b""
    charset = part.get_content_charset() or "us-ascii"
    return payload.decode(charset, "surrogateescape")


def leaves(msg: email.message.Message) -> list[email.message.Message]:
    return [p for p in msg.walk() if not p.is_multipart()]


def check_footer_part(orig: email.message.Message, out: email.message.Message, unsubscribe_url: str | None,
                      rcpt: str) -> None:
    before, after = text_of(orig), text_of(out)
    if orig.get_content_type() == "text/plain":
        assert after.startswith(before), "the original text must come first, unchanged"
        added = after[len(before):]
        assert "\n-- \r\n" in added or "\n-- \n" in added
    else:
        cut = max((m.start() for m in re.finditer(r"</body\s*>", before, re.I)), default=None)
        if cut is None:
            cut = max((m.start() for m in re.finditer(r"</html\s*>", before, re.I)), default=len(before))
        head, tail = before[:cut], before[cut:]
        assert after.startswith(head) and after.endswith(tail)
        added = after[len(head):len(after) - len(tail)]
        if re.search(r"</body\s*>", before, re.I):
            assert re.match(r"\s*</body\s*>", tail, re.I), "the footer sits right before </body>"
        assert "<div" in added and "hello@acme.example" in added
    assert POSTAL in added and "Acme Inc" in added and "hello@acme.example" in added
    # the footer speaks the message's language (the German corpus messages get a German one)
    lang = "de" if "Gesendet von" in added else "en"
    if unsubscribe_url is None:
        assert "/u/" not in added
        assert phrase(lang, "transactional", company="Acme Inc") in added.replace("&#x27;", "'"), added
    else:
        assert unsubscribe_url in added
        day = (NOW - timedelta(days=30)).date().isoformat()
        if rcpt == FAN:
            assert phrase(lang, "consent", list_name="Acme News", date=day, source="signup form",
                          how=phrase(lang, "double")) in added
        else:
            # the part's charset decides: Köln, K&#246;ln, or the ASCII fallback Koln
            how = re.escape(phrase(lang, "single"))
            assert re.search(rf"Anmeldeformular K(ö|&#246;|o)ln.*\({how}\)", added), added
    assert "\r" not in added.replace("\r\n", "")


def check_copy(name: str, sent: bytes, got: bytes, keys_dir: Path, rcpt: str, marketing: bool) -> None:
    assert not re.search(rb"(?<!\r)\n|\r(?!\n)|\x00", got), f"{name}: bare CR/LF in the copy"
    out = email.message_from_bytes(got)
    orig = email.message_from_bytes(sent)
    assert verify_dkim(got, keys_dir), name
    if marketing:
        assert out["List-Unsubscribe"] and out["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe_url = re.search(r"<(http[^>]+)>", out["List-Unsubscribe"]).group(1)
    else:
        assert out["List-Unsubscribe"] is None
        unsubscribe_url = None
    assert out.get_all("MIME-Version") == orig.get_all("MIME-Version")
    expected = EXPECTED[name]
    if expected is None:
        assert body_of(got) == body_of(sent), f"{name}: body must be left byte for byte"
        assert out.get("Content-Transfer-Encoding") == orig.get("Content-Transfer-Encoding")
        return
    got_body = body_of(got)
    o_leaves, n_leaves = leaves(orig), leaves(out)
    assert [p.get_content_type() for p in o_leaves] == [p.get_content_type() for p in n_leaves], name
    counts = {"text/plain": 0, "text/html": 0}
    for o, n in zip(o_leaves, n_leaves):
        if o.get_content_type() in counts and text_of(o) != text_of(n):
            counts[o.get_content_type()] += 1
            check_footer_part(o, n, unsubscribe_url, rcpt)
            if o.get("Content-Transfer-Encoding") != n.get("Content-Transfer-Encoding"):
                assert (o.get("Content-Transfer-Encoding") or "7bit").lower() == "7bit"
                assert n["Content-Transfer-Encoding"] == "quoted-printable"
        else:
            # untouched: same headers, same decoded payload, same raw bytes
            assert o.items() == n.items(), name
            assert o.get_payload(decode=True) == n.get_payload(decode=True), name
            raw = o.get_payload()
            assert isinstance(raw, str) and raw == n.get_payload()
            assert raw.encode("ascii", "surrogateescape") in got_body
    assert (counts["text/plain"], counts["text/html"]) == expected, name
    # preamble and epilogue survive
    if orig.preamble:
        assert out.preamble == orig.preamble
    if orig.epilogue:
        assert out.epilogue == orig.epilogue


def test_corpus_is_complete():
    assert len(CORPUS_FILES) >= 20
    assert set(CORPUS_FILES) == set(EXPECTED)
    for name in CORPUS_FILES:
        raw = (CORPUS / name).read_bytes()
        assert b"From: Acme News <news@acme.example>\r\n" in raw
        assert not re.search(rb"(?<!\r)\n|\r(?!\n)|\x00", raw), f"{name} needs CRLF line endings"


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_message_through_the_relay(name, relay, clean_sink, keys_dir):
    sent = (CORPUS / name).read_bytes()
    code, text = deliver(relay.port, sent, [FAN, KOELN])
    if EXPECTED[name] is None:
        # the core refuses nesting deeper than 100; the footer-guard stage everything else that
        # cannot carry a visible footer, naming why
        assert (code, text.split()[0]) == (554, "5.6.0"), text
        assert name == "23_deep_nesting.eml" or "No visible footer" in text, text
        assert clean_sink.messages == []
        return
    assert code == 250, text
    got = clean_sink.wait_for(2)
    assert sorted(r for m in got for r in m.rcpt_tos) == [FAN, KOELN]
    for m in got:
        check_copy(name, sent, m.data, keys_dir, m.rcpt_tos[0], marketing=True)


@pytest.mark.parametrize("name", ["11_alternative_qp.eml", "13_mixed_pdf_attachment.eml", "07_shiftjis_base64.eml",
                                  "18_multipart_signed.eml"])
def test_transactional_copy_has_a_footer_without_unsubscribe(name, relay, clean_sink, keys_dir):
    sent = (CORPUS / name).read_bytes().replace(b"List-Id: Acme News <news.acme.example>",
                                                 b"List-Id: Acme receipts <receipts.acme.example>")
    code, text = deliver(relay.port, sent, [BUYER])
    if EXPECTED[name] is None:  # the sender's identity lines follow the same rule
        assert (code, text.split()[0]) == (554, "5.6.0"), text
        return
    assert code == 250, text
    (got,) = clean_sink.wait_for(1)
    check_copy(name, sent, got.data, keys_dir, BUYER, marketing=False)


def test_client_dkim_signature_is_removed_from_the_copy(relay, clean_sink, keys_dir):
    # the footer and our List-Unsubscribe break any signature the client made; only ours remain
    sent = (CORPUS / "01_plain_7bit.eml").read_bytes()
    client_sig = (b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=acme.example; s=client;\r\n"
                  b" h=from:to:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
                  b" b=dGVzdHRlc3R0ZXN0dGVzdA==\r\n")
    code, text = deliver(relay.port, client_sig + sent, [FAN])
    assert code == 250, text
    (got,) = clean_sink.wait_for(1)
    out = email.message_from_bytes(got.data)
    sigs = out.get_all("DKIM-Signature")
    assert len(sigs) == 1 and "s=s1;" in sigs[0] and "s=client" not in got.data.decode()
    assert verify_dkim(got.data, keys_dir)


def test_each_copy_gets_its_own_unsubscribe_link(relay, clean_sink):
    sent = (CORPUS / "12_alternative_base64.eml").read_bytes()
    assert deliver(relay.port, sent, [FAN, KOELN])[0] == 250
    urls = set()
    for m in clean_sink.wait_for(2):
        out = email.message_from_bytes(m.data)
        url = re.search(r"<(http[^>]+)>", out["List-Unsubscribe"]).group(1)
        for part in leaves(out):
            assert url in text_of(part)
        urls.add(url)
    assert len(urls) == 2


def test_client_override_template_wins(relay, clean_sink, keys_dir):
    sent = (CORPUS / "11_alternative_qp.eml").read_bytes()
    # (the corpus text is German: Content-Language says English, so the English override applies;
    # a German footer would come from footer.de.*.j2, which gamma does not override)
    sent = sent.replace(b"news@acme.example", b"news@gamma.example").replace(
        b"List-Id: Acme News <news.acme.example>\r\n", b"Content-Language: en\r\n")
    code, text = deliver(relay.port, sent, [BUYER], user="gamma", frm="bounce@gamma.example")
    assert code == 250, text
    (got,) = clean_sink.wait_for(1)
    record = dns_txt_record(load_private_key(keys_dir / "acme.example.pem")).encode()
    assert dkim.verify(got.data, dnsfunc=lambda name, timeout=5: record
                       if name == b"g1._domainkey.gamma.example." else b"")
    plain, html = (text_of(p) for p in leaves(email.message_from_bytes(got.data)))
    assert "GAMMA OVERRIDE for Gamma Ltd" in plain and "9 Quay St" in plain
    assert "GAMMA OVERRIDE" not in html and "help@gamma.example" in html  # default HTML template
    assert "/u/" not in plain + html  # transactional: no unsubscribe link


# a `</body>` a browser does not read as a tag (in a comment, a script string, an attribute value,
# a textarea): the footer went there and was hidden, or shown as raw markup
HIDING_PLACES = {
    "comment then the real one": "<html><body><p>Hi</p><!-- </body> --></body></html>",
    "only in a comment": "<html><body><p>Hi</p><!-- </body> -->",
    "script string": "<html><body><p>Hi</p><script>var a = '</body>';</script>",
    "script after the real one": "<html><body><p>Hi</p></body></html><script>x = '</body>'</script>",
    "attribute value": "<html><body><p title='</body>'>Hi</p></html>",
    "textarea": "<html><body><p>Hi</p><textarea></body></textarea></html>",
    "unclosed comment after the real one": "<html><body><p>Hi</p></body></html><!-- trailing",
}
# the part ends inside a comment or style with no real `</body>` before: the comment or style is
# closed and the footer follows it
CLOSED_FIRST = {
    "unclosed comment": "<html><body><p>Hi</p><!-- never closed </body></html>",
    "unclosed style": "<html><body><p>Hi</p><style>p { color: red }\r\n</body></html>",
}
# ... but inside a tag nothing can be closed: refused 554 5.6.0
NOWHERE_TO_SEE = {
    "unclosed attribute value": '<html><body><p>Hi</p><a href="x></body></html>',
}


def html_message(html: str) -> bytes:
    return (b"From: Acme News <news@acme.example>\r\nTo: fan@example.org\r\nSubject: News\r\n"
            b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <html-footer@acme.example>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html.encode() + b"\r\n")


@pytest.mark.parametrize("case", sorted(HIDING_PLACES) + sorted(CLOSED_FIRST))
def test_html_footer_goes_where_a_browser_shows_it(case, relay, clean_sink, keys_dir):
    from selectolax.lexbor import LexborHTMLParser

    code, text = deliver(relay.port, html_message({**HIDING_PLACES, **CLOSED_FIRST}[case]), [FAN])
    assert code == 250, text
    (got,) = clean_sink.wait_for(1)
    assert verify_dkim(got.data, keys_dir)
    html = text_of(email.message_from_bytes(got.data))
    tree = LexborHTMLParser(html)
    links = [a.attributes.get("href") or "" for a in tree.css("a")]
    tree.strip_tags(["script", "style", "textarea", "template", "title"])
    assert "Hi" in tree.body.text() and POSTAL in tree.body.text(), html
    assert any("/u/" in href for href in links), html  # the unsubscribe link is a link, not text


@pytest.mark.parametrize("case", sorted(NOWHERE_TO_SEE))
def test_html_ending_inside_a_tag_is_refused(case, relay, clean_sink):
    code, text = deliver(relay.port, html_message(NOWHERE_TO_SEE[case]), [FAN])
    assert (code, text.split()[0]) == (554, "5.6.0"), text
    assert "ends inside a tag" in text
    assert clean_sink.messages == []


def test_iso2022jp_text_left_in_two_byte_mode_gets_a_readable_footer(relay, clean_sink, keys_dir):
    # the sender's last line ends shifted into JIS X 0208 (no ESC ( B): appended as is, the footer's
    # ASCII bytes were read as kanji pairs
    sent = (b"From: Acme News <news@acme.example>\r\nTo: fan@example.org\r\nSubject: News\r\n"
            b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <jis-footer@acme.example>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n\r\n"
            b"\x1b$B$3$s$K$A$O\x1b(B news \x1b$B$3$s\r\n")
    code, text = deliver(relay.port, sent, [FAN])
    assert code == 250, text
    (got,) = clean_sink.wait_for(1)
    assert verify_dkim(got.data, keys_dir)
    decoded = email.message_from_bytes(got.data).get_payload(decode=True).decode("iso-2022-jp", "replace")
    assert decoded.startswith("\u3053\u3093\u306b\u3061\u306f news \u3053\u3093")
    assert POSTAL in decoded and "Unsubscribe" in decoded


# -- the pieces on their own -----------------------------------------------------------------

def test_values_cannot_carry_line_breaks_into_the_footer():
    values = FooterValues(
        company="Evil Corp\r\nBcc: victim@example.org", contact_email="hello@acme.example\nX-A: 1",
        postal_address="1 Main St\r\n\r\n<script>alert(1)</script>", list_name="News\u2028X-B: 2",
        transactional=False, reason="because\rX-C: 3", unsubscribe_url="https://r.example/u/T\r\nX-D: 4",
        consent=ConsentFacts("2026-03-01", "form\nX-E: 5", "double", True, "2026-03-02"))
    text, html = render_footer(values)
    for out in (text, html):
        assert "\r" not in out
        for line in out.split("\n"):
            assert not re.match(r"\s*(Bcc|X-[A-E]):", line), line
    assert "Evil Corp Bcc: victim@example.org" in text
    assert "<script>" not in html and "&lt;script&gt;" in html  # autoescaped
    assert "https://r.example/u/T X-D: 4" in text


def test_transactional_wording_and_no_consent_record():
    base = dict(company="Acme Inc", contact_email="hello@acme.example", postal_address=POSTAL, list_name="Acme News")
    from filters.footer import reason_for

    text, html = render_footer(FooterValues(**base, transactional=True,
                                            reason=reason_for("Acme receipts", "Acme Inc", True, None)))
    assert "about your account or an order with Acme Inc" in text and "Unsubscribe" not in text + html
    assert "because this address is subscribed" in reason_for("Acme News", "Acme Inc", False, None)


def test_mime_depth():
    deep = (CORPUS / "23_deep_nesting.eml").read_bytes()
    assert mime_depth(deep) == 121 > MAX_DEPTH
    msg = Message(deep)
    assert mime_depth((msg.headers, msg.body)) == 121
    assert plan_footer(msg.headers, msg.body) is None
    assert mime_depth((CORPUS / "01_plain_7bit.eml").read_bytes()) == 1
    assert mime_depth((CORPUS / "13_mixed_pdf_attachment.eml").read_bytes()) == 3
    assert mime_depth((CORPUS / "16_forwarded_rfc822.eml").read_bytes()) == 4  # counts the forwarded message
    for junk in (b"", b"\r\n", b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n--x\r\n" * 3,
                 b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\nbody"):
        assert isinstance(mime_depth(junk), int)


@pytest.mark.parametrize("name, why", [
    ("18_multipart_signed.eml", "multipart/signed"), ("19_pkcs7_mime.eml", "pkcs7-mime"),
    ("20_malformed_missing_boundary.eml", "without a boundary"), ("21_malformed_bad_base64.eml", "bad base64"),
    ("22_malformed_unknown_charset.eml", "x-unknown"), ("23_deep_nesting.eml", "depth 121"),
    ("26_malformed_unterminated.eml", "unterminated"),
])
def test_no_footer_and_why(name, why):
    msg = Message((CORPUS / name).read_bytes())
    plan, reason = plan_footer_explained(msg.headers, msg.body)
    assert plan is None and why in reason


@pytest.mark.parametrize("html, rest", [
    ("<p>a < b</p>", ""), ("<p>x</p><", ""), ("<p>x</p><!-->y</body>", "</body>"),
    ('<p class=a"b>x</p></body>', "</body>"), ('<p a= "x>y">x</p></body>', "</body>"),
    ("<script>a</SCRIPT >b</BODY\r\n>", "</BODY\r\n>"), ("<a href=</body>x", ""),
    ("<p>x</p></body><style>a", "</body><style>a"), ("<style>a</style", None), ("<xmp>x</body>", None),
    # a comment, an attribute value and a script longer than the scanner's window (BIG)
    ("<p>" + "x" * 600_000 + "<!-- " + "y" * 400_000 + " --></body>z", "</body>z"),
    ("<p>" + "x" * 300_000 + "<a title='" + "</body>" * 60_000 + "'>q</a></body>z", "</body>z"),
    ("<p>" + "x" * 300_000 + "<script>" + "</body>" * 60_000 + "</script>z", ""),
])
def test_html_insertion_point(html, rest):
    from relay.mail.footer_html import insertion_point

    found = insertion_point(html)
    assert (None if found is None else html[found:]) == rest


def test_qp_html_with_the_body_tag_split_by_a_soft_break():
    html = b"<html><body><p>" + b"x" * 60 + b"</p></bo=\r\ndy></html>\r\n"
    headers = [b"Content-Type: text/html; charset=utf-8\r\n", b"Content-Transfer-Encoding: quoted-printable\r\n"]
    plan = plan_footer(headers, html)
    out = plan.apply("t", "<div>F\u00fc</div>").body
    decoded = email.message_from_bytes(b"".join(headers) + b"\r\n" + out).get_payload(decode=True).decode()
    assert decoded == "<html><body><p>" + "x" * 60 + "</p>\r\n<div>F\u00fc</div>\r\n</body></html>\r\n"
    assert b"\n" not in out.replace(b"\r\n", b"")
    assert all(len(line) <= 76 for line in out.split(b"\r\n"))


def test_plan_is_reused_and_splices_only_the_text_parts():
    raw = (CORPUS / "13_mixed_pdf_attachment.eml").read_bytes()
    msg = Message(raw)
    plan = plan_footer(msg.headers, msg.body)
    first, second = plan.apply("one", "<p>one</p>").body, plan.apply("two", "<p>two</p>").body
    start = msg.body.index(b"--mix13\r\nContent-Type: application/pdf")
    for out in (first, second):
        assert out.endswith(msg.body[start:])  # the attachment, boundaries and epilogue, byte for byte
        assert out.startswith(msg.body[:msg.body.index(b"Hallo")])
    assert b"one" in first and b"two" in second and b"one" not in second
