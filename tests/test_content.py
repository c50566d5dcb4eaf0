"""Stage content: the labelled corpus, evasion handling, settings, and the stage through real SMTP and `relay check`."""
from __future__ import annotations

import asyncio
import importlib.util
import email
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSWORD
from filters import content
from filters.registry import all_stages
from relay.replies import one_line, verdict_reply

CORPUS = Path(__file__).resolve().parent / "corpus" / "content"
ROOT = Path(__file__).resolve().parent.parent


def _load_report():
    spec = importlib.util.spec_from_file_location("content_corpus_report", CORPUS / "report.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


report = _load_report()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo configuration (relay/demo.toml with stage content), loaded by relay.config."""
    return report.demo_config(tmp_path_factory.mktemp("content-demo"))


def run_check(config, raw: bytes, client: str = "demo"):
    ctx = report.context(config, config.clients[client], raw)
    verdict = asyncio.run(content.check(ctx))
    return verdict, ctx.facts


def eml(text: str, subject: str = "News", frm: str = "Demo Shop <news@demo.example>", html: str | None = None,
        **headers: str) -> bytes:
    from email.message import EmailMessage
    from email import policy

    msg = EmailMessage()
    msg["From"] = frm
    msg["To"] = "reader@example.org"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = "<t1@demo.example>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    if html is None:
        msg.set_content(text)
    else:
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes(policy=policy.SMTP)


# ------------------------------------------------------------------------------------------------
# (a) the labelled corpus

def test_corpus_every_label(demo):
    settings, labels = report.load_labels()
    assert len(labels) >= 150
    languages = {"-en-", "-de-", "-fr-", "-es-", "-ja-"}
    assert all(any(lang in name for name in labels) for lang in languages)
    rows = report.evaluate(report.with_content(demo, settings))
    print("\n" + report.table(rows))
    wrong = [f"{r['file']}: expected {r['expect']} {r['expect_rule']}, got {r['predicted']} {r['rule']} ({r['reason']})"
             for r in rows
             if r["expect"] != r["predicted"] or (r["expect_rule"] and r["expect_rule"] != r["rule"])]
    assert not wrong, "\n".join(wrong)
    legit_refused = [r["file"] for r in rows if r["expect"] == "legit" and r["predicted"] != "legit"]
    assert legit_refused == []


def test_corpus_files_are_crlf_and_generated_reproducibly(tmp_path):
    for path in CORPUS.glob("*.eml"):
        data = path.read_bytes()
        assert b"\n" not in data.replace(b"\r\n", b""), path.name
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    assert make.toml_labels(make.write_all(tmp_path)) == (CORPUS / "labels.toml").read_text("utf-8")
    for path in tmp_path.glob("*.eml"):
        assert path.read_bytes() == (CORPUS / path.name).read_bytes(), path.name


# ------------------------------------------------------------------------------------------------
# evasion and false positives

@pytest.mark.parametrize("text", [
    "Scunthorpe United won 2-0 in Essex and Middlesex.", "A cocktail analysis by our therapist.",
    "Grape harvest and a new skill course.", "Wine pairing: a late-harvest Riesling with the apple cake.",
    "Hot glue gun and wine glasses on sale.", "Order hash browns now.", "Free spin class on Monday.",
    "Casino Royale on the big screen.", "Adult tickets 12 pounds.", "Stock up on flour.",
    "Sussex assassin classic, cockpit shiitake.", "Buy weed killer today.",
])
def test_ordinary_words_pass(demo, text):
    verdict, _ = run_check(demo, eml(text))
    assert not verdict.refuses, verdict.reason


@pytest.mark.parametrize("text, rule", [
    ("Buy v1agra online", "pharmacy.drug-sales"),
    ("c a s i n o bonus today", "gambling.casino"),
    ("v.i.a.g.r.a cheap", "pharmacy.drug-sales"),
    ("online\u200b ca\u200bsino", "gambling.casino"),
    ("buy сhеap viаgrа", "pharmacy.drug-sales"),          # Cyrillic homoglyphs
    ("ＯＮＬＩＮＥ ＣＡＳＩＮＯ", "gambling.casino"),          # fullwidth
    ("0nline ph4rmacy", "pharmacy.online-pharmacy"),
    ("Earn $500 a day from home!", "get-rich.work-from-home"),
    ("オンラインカジノで遊ぼう", "gambling.casino"),
])
def test_disguised_text_is_caught(demo, text, rule):
    verdict, _ = run_check(demo, eml(text))
    assert verdict.refuses and verdict.rule == "content." + rule, verdict


def test_hidden_html_split_and_hidden_text_and_alt(demo):
    split = eml("See the HTML.", html='<p>online ca<span style="display:none">zz</span>sino</p>')
    assert run_check(demo, split)[0].rule == "content.gambling.casino"
    hidden = eml("Hi", html='<p>Hello</p><div style="font-size:0px">cheap viagra</div>')
    verdict = run_check(demo, hidden)[0]
    assert verdict.rule == "content.pharmacy.drug-sales" and "hidden text" in verdict.reason
    alt = eml("Hi", html='<p>Hello <img src="x.png" alt="payday loans today"></p>')
    assert run_check(demo, alt)[0].rule == "content.debt.payday"


def test_reply_is_one_ascii_line_naming_rule_and_category(demo):
    verdict, _ = run_check(demo, eml("Buy viagra online\r\nnow", subject="Offer"))
    reply = verdict_reply(verdict)
    assert reply.startswith('550 5.7.1 content rule pharmacy.drug-sales (prescription drugs and online pharmacy): "')
    assert reply == one_line(reply) and reply.isascii() and "\n" not in reply
    japanese = verdict_reply(run_check(demo, eml("出会い系サイトで今すぐ"))[0])
    assert japanese.isascii() and "dating.hookup (dating and escort)" in japanese


# ------------------------------------------------------------------------------------------------
# links and headers

@pytest.mark.parametrize("html, rule", [
    ('<a href="https://bit.ly/abc">Shop</a>', "links.shortener"),
    ('<a href="http://192.0.2.1/x">Shop</a>', "links.ip-host"),
    ('<a href="http://paypal.com@evil.example/">Shop</a>', "links.userinfo"),
    ('<a href="http://evil.example/">https://paypal.com/login</a>', "links.mismatched-anchor"),
])
def test_link_rules(demo, html, rule):
    assert run_check(demo, eml("Hi", html=f"<p>{html}</p>"))[0].rule == "content." + rule


def test_own_links_and_youtube_pass(demo):
    html = ('<p><a href="https://click.demo.example/t/1">www.partner.example</a> '
            '<a href="https://youtu.be/x">video</a> <a href="https://demo.example/a">demo.example/a</a></p>')
    assert not run_check(demo, eml("Hi", html=html))[0].refuses


def test_deceptive_headers(demo):
    assert run_check(demo, eml("Hi", subject="Re: your order"))[0].rule == "content.headers.deceptive-subject"
    assert not run_check(demo, eml("Hi", subject="Re: your order", In_Reply_To="<a@b.example>"))[0].refuses
    fake = eml("Hi", frm="paypal.com Security <news@demo.example>")
    assert run_check(demo, fake)[0].rule == "content.headers.display-name"
    assert not run_check(demo, eml("Hi", frm="PayPal Security <news@demo.example>"))[0].refuses


# ------------------------------------------------------------------------------------------------
# settings: tag, off, per client, extra rules, branded links

def test_tag_records_facts_and_header_fields(demo):
    config = report.with_content(demo, {"categories": {"gambling": "tag"}})
    verdict, facts = run_check(config, eml("Online casino night"))
    assert verdict.action.value == "continue"
    assert facts[content.FACTS_KEY] == [("gambling.casino", "gambling")]
    assert content.tag_header_fields(facts) == [
        ("X-Consent-Relay-Content", "rule=gambling.casino; category=gambling")]


def test_off_and_per_client_override(demo):
    config = report.with_content(demo, {"categories": {"alcohol": "off"}},
                                 {"demo": {"categories": {"alcohol": "reject", "gambling": "off"}}})
    assert run_check(config, eml("Cheap vodka delivered tonight"))[0].rule == "content.alcohol.sales"
    assert not run_check(config, eml("Online casino night"))[0].refuses
    off = report.with_content(demo, {"default": "off"})
    assert not run_check(off, eml("buy viagra online"))[0].refuses


def test_branded_links_only_and_allow_list(demo):
    config = report.with_content(demo, {}, {"demo": {"branded_links_only": True, "link_allow": ["youtube.com"]}})
    html = '<p><a href="https://www.youtube.com/watch?v=1">video</a> <a href="https://shop.demo.example/">shop</a></p>'
    assert not run_check(config, eml("Hi", html=html))[0].refuses
    other = '<p><a href="https://elsewhere.example/">elsewhere</a></p>'
    assert run_check(config, eml("Hi", html=other))[0].rule == "content.links.off-brand"


def test_extra_rules_file(demo, tmp_path):
    (tmp_path / "extra.toml").write_text(
        '[category]\nid = "crypto-mining"\ntitle = "cloud mining offers"\n'
        '[[rules]]\nid = "cloud"\nphrases = ["cloud mining ~2 contract|contracts|plan"]\n')
    config = report.with_content(demo, {}, {"demo": {"extra_rules": str(tmp_path / "extra.toml")}})
    verdict, _ = run_check(config, eml("Our cloud mining contracts pay daily."))
    assert verdict.rule == "content.crypto-mining.cloud" and "cloud mining offers" in verdict.reason


def test_bad_settings_and_rules_are_named():
    with pytest.raises(content.RuleError, match=r"policy.content.categories.gambling"):
        content.validate_table({"categories": {"gambling": "maybe"}}, "policy.content")
    with pytest.raises(content.RuleError, match=r"unknown key"):
        content.validate_table({"branded_links_only": True}, "policy.content")
    with pytest.raises(content.RuleError, match="is not one word"):
        content._compile_phrase("buy e-liquid|vape", {}, "x.toml")


def test_stage_is_registered_and_rules_compile_once():
    stage = all_stages()["content"]
    assert stage.phase == "message" and not stage.transforms
    assert content.ruleset_for() is content.ruleset_for()
    assert len(content.ruleset_for().rules) >= 25


# ------------------------------------------------------------------------------------------------
# (b) through real SMTP

def test_real_smtp_refuses_violations_and_delivers_newsletter(relay_factory, sink):
    sink.clear()
    relay = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages='["sender-identity", "content"]')

    def send(data: bytes) -> tuple[int, bytes]:
        data = data.replace(b"demo.example", b"acme.example")
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
            s.ehlo("client.test")
            s.login("acme", PASSWORD)
            s.mail("bounce@acme.example")
            assert s.rcpt("alice@example.org")[0] == 250
            return s.data(data)

    code, text = send(eml("Buy viagra online, discreet shipping."))
    assert code == 550 and text.startswith(b"5.7.1 content rule pharmacy.drug-sales "
                                           b"(prescription drugs and online pharmacy)"), text
    disguised = (CORPUS / next(n for n in report.load_labels()[1] if "gambling-casino-hidden-split" in n)).read_bytes()
    code, text = send(disguised)
    assert code == 550 and b"gambling.casino (gambling and sweepstakes)" in text, text
    newsletter = (CORPUS / next(n for n in report.load_labels()[1] if "legit-en-bakery-html" in n)).read_bytes()
    code, text = send(newsletter)
    assert code == 250, text
    received = sink.wait_for(1)
    assert len(received) == 1 and b"grape and walnut" in received[0].data.replace(b"=\r\n", b"")


@pytest.mark.parametrize("charset", [b"idna", b"punycode", b"undefined", b"x\xe9"])
def test_real_smtp_part_in_a_codec_no_mail_is_written_in_is_read_as_utf8(relay_factory, sink, charset):
    # idna, punycode and undefined are Python codecs that refuse errors="replace" (or ASCII input),
    # an 8-bit charset name made codecs.lookup raise UnicodeEncodeError; each was 451 4.3.0
    sink.clear()
    relay = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages='["sender-identity", "content"]')
    for ctype, body in ((b"text/plain", b"Hello K\xf6ln, buy viagra online"),
                        (b"text/html", b"<p>Hello K\xf6ln, buy viagra online</p>")):
        data = (b"From: news@acme.example\r\nTo: alice@example.org\r\nSubject: =?" + charset + b"?Q?News?=\r\n"
                b"MIME-Version: 1.0\r\nContent-Type: " + ctype + b"; charset=" + charset + b"\r\n\r\n" + body + b"\r\n")
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
            s.ehlo("client.test")
            s.login("acme", PASSWORD)
            s.mail("bounce@acme.example", ["BODY=8BITMIME"])
            assert s.rcpt("alice@example.org")[0] == 250
            code, text = s.data(data)
        # read with the documented fallback (UTF-8, then cp1252), so the offer is still seen
        assert code == 550 and b"pharmacy.drug-sales" in text, (ctype, code, text)
    relay.stop()


def test_tag_delivers_with_the_relays_header_and_strips_a_forged_one(relay_factory, sink, keys_dir):
    from test_relay_smtp import verify_dkim

    sink.clear()
    relay = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages='["sender-identity", "content"]',
                          extra='\n[policy.content]\ncategories = { gambling = "tag" }\n')
    casino = (CORPUS / "132-gambling-casino-plain.eml").read_bytes().replace(b"demo.example", b"acme.example")
    forged = b"X-Consent-Relay-Content: rule=none; category=none\r\n" + casino
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
        s.ehlo("client.test")
        s.login("acme", PASSWORD)
        s.mail("bounce@acme.example")
        s.rcpt("alice@example.org")
        code, text = s.data(forged)
    assert code == 250, text
    (got,) = sink.wait_for(1)
    tags = email.message_from_bytes(got.data).get_all("X-Consent-Relay-Content")
    assert tags == ["rule=gambling.casino; category=gambling"]
    assert verify_dkim(got.data, keys_dir)


# ------------------------------------------------------------------------------------------------
# (c) relay check

def test_relay_check_prints_the_rule(tmp_path):
    from relay.keys import ensure_token_key

    ensure_token_key(report.demo_config(tmp_path))  # tmp_path/relay.toml with stage content, and its token key
    violating = CORPUS / next(n for n in report.load_labels()[1] if "pharmacy-buy-plain" in n)
    result = subprocess.run(
        [sys.executable, "-m", "relay", "--config", str(tmp_path / "relay.toml"), "check", str(violating),
         "--client", "demo", "--rcpt", "x@example.org"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "content.pharmacy.drug-sales" in result.stdout
    assert "prescription drugs and online pharmacy" in result.stdout
