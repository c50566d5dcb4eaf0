"""Footer-removal attempts (tests/corpus/footer_attacks) through a real relay, the copies rendered by headless Chromium.

For every attempt the relay either refuses the message `554 5.6.0` naming why, or delivers a copy
whose HTML part, rendered by a real browser, shows the footer: its unsubscribe link is displayed
with a non-zero size and the postal address is in `document.body.innerText`. One browser session
serves every case.
"""
from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest

from conftest import Sink
from test_browser import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401 - the one browser session
from test_consent_suppression import consent
from test_relay_smtp import login
from test_unsubscribe import NOW, STAGES

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="Debian chromium and chromium-driver not installed (scripts/setup test installs them)")
CORPUS = Path(__file__).parent / "corpus" / "footer_attacks"
CASES = sorted(p.name for p in CORPUS.glob("*.eml"))
READER = "reader@example.org"
POSTAL = "Acme Inc, 1 Main St, Springfield, IL 62701, USA"
REFUSED = (554, "5.6.0")
# outcomes that are not a matter of taste (by the name after the number): these must go out, with
# a visible footer ...
MUST_DELIVER = {"malformed-inline-with-filename", "ok-plain-newsletter", "ok-mobile-media-query", "ok-alternative",
                "ok-common-resets",
                "unclosed-hidden-div", "malformed-unclosed-comment", "style-border-top", "unclosed-template",
                "unclosed-noscript", "has-selector-footer", "white-on-white", "zero-size-fonts"}
# ... and these can carry no footer anyone sees: refused, the reason naming this
MUST_REFUSE = {"malformed-bad-base64": "bad base64", "malformed-unknown-charset": "charset",
               "fake-multipart-signed": "multipart/signed", "plaintext": "plaintext",
               "has-selector-body": "style sheet rule", "has-selector-token": "style sheet rule",
               "body-inline-hidden": "hidden", "external-style-sheet": "style sheet"}


def slug(name: str) -> str:
    return name.split("-", 1)[1].removesuffix(".eml")


@pytest.fixture(scope="module")
def relay(relay_factory, sink: Sink):
    r = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages=STAGES)
    r.store.consent_import("acme", "news", [consent(READER)], NOW, "test")
    return r


def send(relay, raw: bytes) -> tuple[int, str]:
    with login(relay.port) as s:
        s.mail("bounce@acme.example")
        assert s.rcpt(READER)[0] == 250
        code, text = s.data(raw)
    return code, text.decode()


def html_of(data: bytes) -> str:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    part = msg.get_body(preferencelist=("html",))
    assert part is not None, "the copy has no HTML part"
    return part.get_content()


def test_corpus_is_there():
    assert len(CASES) >= 30
    assert MUST_DELIVER | set(MUST_REFUSE) <= {slug(name) for name in CASES}


@pytest.mark.parametrize("name", CASES)
def test_footer_attack_is_refused_or_shows_the_footer(name, relay, clean_sink, browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    code, text = send(relay, (CORPUS / name).read_bytes())
    if (code, text.split()[0]) == REFUSED:
        assert slug(name) not in MUST_DELIVER, text
        assert "No visible footer" in text and MUST_REFUSE.get(slug(name), "") in text, text
        assert clean_sink.messages == []
        return
    assert code == 250, text
    assert slug(name) not in MUST_REFUSE, f"{name} went out: {text}"
    (got,) = clean_sink.wait_for(1)
    url = re.search(r"<(http[^>]+)>", email.message_from_bytes(got.data)["List-Unsubscribe"]).group(1)
    page = tmp_path / "copy.html"
    page.write_text(html_of(got.data), encoding="utf-8")
    browser.get(page.as_uri())
    links = browser.find_elements(By.CSS_SELECTOR, f'a[href="{url}"]')
    assert links, f"{name}: no unsubscribe link in the rendered copy"
    link = links[-1]
    assert link.is_displayed(), f"{name}: the unsubscribe link is not displayed"
    assert link.size["width"] > 0 and link.size["height"] > 0, f"{name}: the unsubscribe link has no size"
    # white on white is displayed for Selenium: the link's text colour must differ from what is behind it
    colours = browser.execute_script("""
        const a = arguments[0], s = getComputedStyle(a);
        let n = a, bg = 'rgba(0, 0, 0, 0)';
        while (n && (bg === 'rgba(0, 0, 0, 0)' || bg === 'transparent')) {
            bg = getComputedStyle(n).backgroundColor; n = n.parentElement; }
        return [s.webkitTextFillColor || s.color, bg];""", link)
    assert colours[0] != colours[1], f"{name}: the unsubscribe link is {colours[0]} on {colours[1]}"
    shown = browser.execute_script("return document.body.innerText")
    assert POSTAL in " ".join(shown.split()), f"{name}: the postal address is not visible text"
    if slug(name).startswith("ok-"):  # the sender's own content is still there
        assert "our spring offers are here" in shown


def test_a_refused_fan_out_sends_nothing_and_audits_the_rule(relay, clean_sink):
    """Every recipient of a message whose footer would be hidden is refused, with the rule in the audit log."""
    relay.store.consent_import("acme", "news", [consent("second@example.org")], NOW, "test")
    raw = next(CORPUS.glob("*-has-selector-token.eml")).read_bytes()
    with login(relay.port) as s:
        s.mail("bounce@acme.example")
        for rcpt in (READER, "second@example.org"):
            assert s.rcpt(rcpt)[0] == 250
        code, text = s.data(raw)
    assert (code, text.decode().split()[0]) == REFUSED, text
    assert clean_sink.messages == []
    rows = [r for r in relay.store.audit_rows(client="acme") if r.rule == "footer.not-visible"]
    assert {r.recipient for r in rows} >= {READER, "second@example.org"}
    assert all(r.code == 554 and r.status == "5.6.0" for r in rows)
