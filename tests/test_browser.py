"""A real browser (Debian's headless Chromium) on the pages recipients see."""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import Sink
from test_consent_suppression import consent
from test_unsubscribe import STAGES, deliver, links_of

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="Debian chromium and chromium-driver not installed (scripts/setup test installs them)")
PHONE = (390, 844)


def heading(browser, expected: str) -> str:
    """Wait (bounded) for the page after a click to show its heading."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    # read in one script: finding the <h1> and then asking for its text raced the navigation
    # ("Node with given id does not belong to the document" when the old page went in between)
    def seen(driver):  # noqa: ANN001
        return driver.execute_script("const h = document.querySelector('h1'); return h ? h.innerText : null;") \
            == expected

    # a script run while the page is swapped can fail too: try again until the bound
    WebDriverWait(browser, 10, ignored_exceptions=(WebDriverException,)).until(seen)
    return expected


@pytest.fixture(scope="module")
def relay(relay_factory, sink: Sink):
    r = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages=STAGES)
    r.store.consent_import("acme", "news", [consent("gina@example.org")], datetime.now(timezone.utc), "test")
    return r


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium fetch a driver: Debian's is used
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}", f"--window-size={PHONE[0]},{PHONE[1]}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(15)
    yield driver
    driver.quit()


def test_unsubscribe_page_in_a_browser(relay, clean_sink, browser, tmp_path):
    from selenium.webdriver.common.by import By

    _, _, got = deliver(relay, clean_sink, "gina@example.org")
    https, _ = links_of(got.data)
    browser.get(https)
    assert browser.title == "Unsubscribe from Acme News"
    assert "gina@example.org" not in browser.page_source
    button = browser.find_element(By.TAG_NAME, "button")
    assert button.is_displayed() and button.text == "Unsubscribe"
    # decent on a phone: no sideways scrolling, a button big enough to tap
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert button.size["height"] >= 44
    shots = Path(os.environ.get("RELAY_SCREENSHOT_DIR") or tmp_path)  # set it to look at the page
    shots.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shots / "unsubscribe.png"))
    # loading the page (as a link scanner would) changed nothing
    assert deliver(relay, clean_sink, "gina@example.org")[0] == 250
    button.click()
    heading(browser, "You are unsubscribed")
    assert browser.find_element(By.TAG_NAME, "h1").get_attribute("role") == "status"
    assert deliver(relay, clean_sink, "gina@example.org")[0] == 550
    assert [s.source for s in relay.store.suppressions(scope="list", client="acme")
            if s.address == "gina@example.org"] == ["page"]
    browser.save_screenshot(str(shots / "unsubscribed.png"))


def test_signup_form_to_confirmed_subscriber_in_a_browser(relay, clean_sink, browser, tmp_path):
    """From the hosted form to a delivered newsletter, entirely through the relay."""
    from selenium.webdriver.common.by import By

    from test_optin import confirmation_links, newsletter

    browser.get(relay.http + "/s/acme/vip")
    assert browser.title == "Subscribe to Acme VIP"
    honeypot = browser.find_element(By.NAME, "website")
    assert not honeypot.is_displayed()  # people never see the trap field
    browser.find_element(By.ID, "email").send_keys("lena@example.org")
    browser.find_element(By.TAG_NAME, "button").click()
    heading(browser, "Check your inbox")
    clean_sink.wait_for(1)
    (link,) = confirmation_links(clean_sink, "lena@example.org")
    browser.get(link)
    heading(browser, "Confirm your subscription")
    assert newsletter(relay, "lena@example.org") == 550  # opening the link confirmed nothing
    browser.find_element(By.TAG_NAME, "button").click()
    heading(browser, "Subscription confirmed")
    assert newsletter(relay, "lena@example.org") == 250
    (record, events), = relay.store.consent_records("acme", "lena@example.org")
    assert [e.event for e in events] == ["created", "confirmed"]
    assert "HeadlessChrome" in events[0].detail and "HeadlessChrome" in events[1].detail
