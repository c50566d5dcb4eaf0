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
# outcomes that are not a matter of taste: these must go out (with a visible footer) ...
MUST_DELIVER = {"04-malformed-inline-with-filename.eml", "34-ok-plain-newsletter.eml",
                "35-ok-mobile-media-query.eml", "36-ok-alternative.eml", "07-unclosed-hidden-div.eml",
                "01-malformed-unclosed-comment.eml", "06-style-border-top.eml", "17-unclosed-template.eml",
                "18-unclosed-noscript.eml"}
# ... and these can carry no footer anyone sees
MUST_REFUSE = {"02-malformed-bad-base64.eml": "bad base64", "03-malformed-unknown-charset.eml": "charset",
               "05-fake-multipart-signed.eml": "multipart/signed", "20-plaintext.eml": "plaintext",
               "10-has-selector-body.eml": "style sheet rule", "30-body-inline-hidden.eml": "hidden",
               "31-external-style-sheet.eml": "style sheet"}


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
    assert MUST_DELIVER | set(MUST_REFUSE) <= set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_footer_attack_is_refused_or_shows_the_footer(name, relay, clean_sink, browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    code, text = send(relay, (CORPUS / name).read_bytes())
    if (code, text.split()[0]) == REFUSED:
        assert name not in MUST_DELIVER, text
        assert "No visible footer" in text and MUST_REFUSE.get(name, "") in text, text
        assert clean_sink.messages == []
        return
    assert code == 250, text
    assert name not in MUST_REFUSE, f"{name} went out: {text}"
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
    if name.startswith(("34-", "35-", "36-")):  # the sender's own content is still there
        assert "our spring offers are here" in shown
