"""Clients get their feedback: the events and suppressions API over real HTTP, and signed webhooks to a real
aiohttp receiver that fails once (the outbox retries) — while mail keeps flowing."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp import web

from conftest import API_TOKEN, PASSWORD_HASH, Sink, free_port
from relay.feedback.webhooks import EVENT_HEADER, SIGNATURE_HEADER, verify_signature
from relay.crypto.passwords import hash_password
from test_feedback_intake import SUPPRESSED, message, send

# counters summed over every day: a test that runs across midnight UTC still sees its own counts
EVER = date(2000, 1, 1)

GAMMA_TOKEN = "gamma-api-token-9876543210"
GAMMA_SECRET = "gamma-webhook-secret-0123456789"

UNAUTHORIZED = 401
UNPROCESSABLE = 422


class Receiver:
    """A client's webhook endpoint: records every POST; answers 500 to the first `fail_first` of them."""

    def __init__(self, fail_first: int = 1) -> None:
        self.port = free_port()
        self.fail_first = fail_first
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts.append((dict(request.headers), body))
        if len(self.posts) <= self.fail_first:
            return web.Response(status=500, text="not now")
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def gamma_client(receiver_port: int) -> str:
    return f"""
[feedback]
webhook_retry_delay = 0.2

[clients.gamma]
password_hash = "{PASSWORD_HASH}"
api_token_hash = "{hash_password(GAMMA_TOKEN)}"
sender_domains = ["gamma.example"]
company = "Gamma AB"
contact_email = "hej@gamma.example"
postal_address = "Gamma AB, Storgatan 1, 111 22 Stockholm, Sweden"
dkim = {{ selector = "g1", key_file = "KEYS/beta.example.pem" }}
default_list = "news"
webhook_url = "http://127.0.0.1:{receiver_port}/hook"
webhook_secret = "{GAMMA_SECRET}"

[clients.gamma.lists.news]
name = "Gamma News"
"""


@pytest.fixture(scope="module")
def setup(relay_factory, sink: Sink, keys_dir):
    receiver = Receiver()
    relay = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages='["suppression", "sender-identity"]',
                          extra=gamma_client(receiver.port).replace("KEYS", str(keys_dir)))
    relay.loop.run(receiver.start())
    yield relay, receiver
    relay.loop.run(receiver.stop())


def get(relay: Any, path: str, token: str | None) -> tuple[int, Any]:
    request = urllib.request.Request(relay.http + path)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def gamma_send(port: int, rcpt: str, subject: str = "News") -> tuple[int, str]:
    import smtplib

    data = message(rcpt, subject).replace(b"news@acme.example", b"news@gamma.example")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.login("gamma", "correct horse battery staple")
        try:
            s.sendmail("news@gamma.example", [rcpt], data)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients[rcpt]
            return code, text.decode()
        except smtplib.SMTPResponseException as exc:
            return exc.smtp_code, exc.smtp_error.decode()
    return 250, ""


def test_webhook_is_signed_retried_and_mail_never_waits(setup, clean_sink):
    relay, receiver = setup
    clean_sink.handler.reply_for = lambda rcpt: "550 5.1.1 no such user" if rcpt == "gone@example.org" else None
    code, _ = gamma_send(relay.port, "gone@example.org")
    assert code == 550
    # mail keeps flowing while the webhook is failing and being retried
    assert gamma_send(relay.port, "fine@example.org")[0] == 250
    deadline = time.monotonic() + 15
    while len(receiver.posts) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(receiver.posts) >= 2, relay.store.outbox_rows()
    first, second = receiver.posts[0], receiver.posts[1]
    assert first[1] == second[1]  # the same event, retried after the 500
    headers, body = second
    assert verify_signature(GAMMA_SECRET, headers[SIGNATURE_HEADER], body)
    assert not verify_signature("another-secret-0000000000", headers[SIGNATURE_HEADER], body)
    payload = json.loads(body)
    assert payload["client"] == "gamma"
    event = payload["event"]
    assert (event["type"], event["category"], event["recipient"], event["suppressed"]) == \
        ("bounce", "hard", "gone@example.org", True)
    assert headers[EVENT_HEADER] == str(event["id"])
    deadline = time.monotonic() + 5
    while relay.store.outbox_rows("gamma") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert relay.store.outbox_rows("gamma") == []  # delivered entries leave the outbox
    code, text = gamma_send(relay.port, "gone@example.org", "Again")
    assert (code, text.split()[0]) == SUPPRESSED


def test_events_and_suppressions_api_paged_and_only_the_clients_own(setup, clean_sink):
    relay, _ = setup
    clean_sink.handler.reply_for = lambda rcpt: "550 5.1.1 no such user" if rcpt.startswith("dead") else None
    for rcpt in ("dead1@example.org", "dead2@example.org", "dead3@example.org"):
        assert gamma_send(relay.port, rcpt)[0] == 550
    assert send(relay.port, "dead9@example.org", message("dead9@example.org"))[0] == 550  # acme's
    # an unsubscribe is an event too, counted
    token = relay.runtime.tokens.issue("unsubscribe", "gamma", "news", "leaver@example.org",
                                       datetime.now(timezone.utc))
    urllib.request.urlopen(urllib.request.Request(relay.http + f"/u/{token}", data=b"List-Unsubscribe=One-Click",
                                                  method="POST"), timeout=10).read()
    assert get(relay, "/api/v1/events", None)[0] == UNAUTHORIZED
    assert get(relay, "/api/v1/events", "wrong-token-000000")[0] == UNAUTHORIZED
    status, body = get(relay, "/api/v1/events?since=yesterday", GAMMA_TOKEN)
    assert status == UNPROCESSABLE and body["field"] == "since"
    since = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    seen, path = [], f"/api/v1/events?since={since}&limit=2"
    while path:
        status, body = get(relay, path, GAMMA_TOKEN)
        assert status == 200 and len(body["data"]) <= 2
        seen += body["data"]
        path = body["next"]
    recipients = {e["recipient"] for e in seen}
    assert {"dead1@example.org", "dead2@example.org", "dead3@example.org", "leaver@example.org"} <= recipients
    assert "dead9@example.org" not in recipients  # acme's bounce is not gamma's business
    assert {e["type"] for e in seen} == {"bounce", "unsubscribe"}
    status, body = get(relay, "/api/v1/suppressions?limit=1000", GAMMA_TOKEN)
    rows = {(s["address"], s["reason"], s["scope"]) for s in body["data"]}
    assert ("dead1@example.org", "bounce", "client") in rows
    assert ("leaver@example.org", "unsubscribe", "list") in rows
    assert all(s["address"] != "dead9@example.org" for s in body["data"])
    status, body = get(relay, "/api/v1/suppressions", API_TOKEN)
    assert ("dead9@example.org", "bounce") in {(s["address"], s["reason"]) for s in body["data"]}
    status, body = get(relay, f"/api/v1/events?since={datetime.now(timezone.utc) + timedelta(days=1):%Y-%m-%d}",
                       GAMMA_TOKEN)
    assert status == 200 and body["data"] == [] and body["next"] is None
    counts = relay.store.totals("gamma", EVER)
    assert counts.unsubscribes == 1 and counts.hard_bounces >= 4 and counts.delivered >= 1
