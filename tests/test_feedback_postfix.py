"""The production path: a real Postfix as the relay's upstream accepts a copy, bounces it later, and mails
its DSN to the copy's VERP return path, which its transport map routes back to the relay's SMTP port."""
from __future__ import annotations

import time
from datetime import date

import pytest

from postfix_instance import PostfixInstance, free_port, postfix_available
from test_feedback_intake import SUPPRESSED, message, send

# counters summed over every day: a test that runs across midnight UTC still sees its own counts
EVER = date(2000, 1, 1)

pytestmark = pytest.mark.skipif(not postfix_available(), reason="needs Postfix and root")


@pytest.fixture(scope="module")
def postfix_and_relay(relay_factory):
    # nowhere.example is Postfix's own domain with no such users; accepting every recipient there
    # (empty local_recipient_maps) makes the failure asynchronous: local(8) bounces after the 250
    port = free_port()
    relay = relay_factory(upstream=f"smtp://127.0.0.1:{port}", stages='["suppression", "sender-identity"]')
    postfix = PostfixInstance(None, port=port, settings={
        "mydestination": "nowhere.example", "local_recipient_maps": "", "local_transport": "local",
        "smtp_dns_support_level": "disabled",
        # the DSN to bounce+TOKEN@relay.test goes back to the relay's SMTP port
        "transport_maps": f"inline:{{relay.test=smtp:[127.0.0.1]:{relay.port}}}"})
    postfix.start()
    try:
        yield postfix, relay
    finally:
        postfix.stop()


def test_asynchronous_postfix_bounce_comes_back_and_suppresses(postfix_and_relay):
    postfix, relay = postfix_and_relay
    rcpt = "nobody-here@nowhere.example"
    before = relay.store.totals("acme", EVER)
    code, text = send(relay.port, rcpt, message(rcpt))
    assert code == 250, text  # Postfix took the copy: the failure comes later, by mail
    deadline = time.monotonic() + 30
    rows: list = []
    while time.monotonic() < deadline and not rows:
        rows = [r for r in relay.store.suppressions(client="acme") if r.address == rcpt]
        time.sleep(0.2)
    assert rows, postfix.log()[-3000:]
    assert (rows[0].scope, rows[0].reason, rows[0].source) == ("client", "bounce", "feedback:bounce")
    after = relay.store.totals("acme", EVER)
    assert after.hard_bounces == before.hard_bounces + 1
    assert after.delivered >= before.delivered + 1
    (event,) = [e for e in relay.store.feedback_events("acme") if e["recipient"] == rcpt]
    assert (event["kind"], event["category"], event["status"], event["source"]) == ("bounce", "hard", "5.1.1", "bounce")
    code, text = send(relay.port, rcpt, message(rcpt, "Again"))
    assert (code, text.split()[0]) == SUPPRESSED
