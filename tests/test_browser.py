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
    heading = browser.find_element(By.TAG_NAME, "h1")
    assert heading.text == "You are unsubscribed"
    assert heading.get_attribute("role") == "status"
    assert deliver(relay, clean_sink, "gina@example.org")[0] == 550
    assert [s.source for s in relay.store.suppressions(scope="list", client="acme")
            if s.address == "gina@example.org"] == ["page"]
    browser.save_screenshot(str(shots / "unsubscribed.png"))
