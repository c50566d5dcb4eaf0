"""`relay consent add / export / repermission`: the proof, re-permission that refreshes, and what they refuse."""
from __future__ import annotations

import email
import json
import re
import signal
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from conftest import free_port
from relay.config import load_config
from relay.keys import ensure_demo_secrets
from storage import Store
from storage.migrate import upgrade
from test_cli_and_demo import RELAY, demo_config, run_relay, wait_port
from test_unsubscribe import http


def outbox_mails(tmp_path, rcpt: str) -> list[email.message.Message]:
    found = []
    for path in sorted((tmp_path / "outbox" / "new").iterdir()):
        mail = email.message_from_bytes(path.read_bytes())
        if mail["Delivered-To"] == rcpt:
            found.append(mail)
    return found


def link_in(mail: email.message.Message) -> str:
    text = [p for p in mail.walk() if p.get_content_type() == "text/plain"][0].get_payload(decode=True).decode()
    (link,) = re.findall(r"(http://\S+/c/[a-z0-9]+)", text)
    return link


@pytest.fixture
def running_demo(tmp_path, fresh_database_url):
    smtp_port, http_port = free_port(), free_port()
    url = fresh_database_url()
    demo_config(tmp_path, smtp_port, http_port, db_url=url)
    proc = subprocess.Popen([*RELAY, "--config", "relay.toml", "serve", "--workers", "1"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(smtp_port, proc)
        yield tmp_path, url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_add_export_and_repermission(running_demo):
    tmp_path, url = running_demo
    cli = lambda *args: run_relay("--config", "relay.toml", *args, cwd=tmp_path)  # noqa: E731

    added = cli("consent", "add", "bob@example.org", "--client", "demo", "--list", "members",
                "--source", "phone call", "--ip", "203.0.113.5")
    assert added.returncode == 0 and "pending on demo/members; confirmation mail: sent" in added.stdout
    (request,) = outbox_mails(tmp_path, "bob@example.org")
    assert request["Subject"].startswith("Please confirm") and request["From"].endswith("<hello@demo.example>")
    assert http("POST", link_in(request), b"confirm=yes")[0] == 200

    refused = cli("consent", "add", "postmaster@example.org", "--client", "demo", "--list", "members", "--source", "x")
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1

    exported = cli("consent", "export", "--client", "demo", "--list", "members", "--format", "jsonl")
    (record,) = [json.loads(line) for line in exported.stdout.splitlines()]
    assert record["address"] == "bob@example.org" and record["status"] == "confirmed" and record["ip"] == "203.0.113.5"
    assert [h["event"] for h in record["history"]] == ["created", "confirmed"]
    assert record["history"][1]["channel"] == "confirm-link"

    # an old subscriber on `news` (max_consent_age_days 730) is stale: ask again, and confirm
    upgrade(url)
    store = Store(url)
    long_ago = datetime.now(timezone.utc) - timedelta(days=800)
    store.consent_import("demo", "news", [{"address": "old@example.org", "status": "confirmed", "method": "single",
                                           "source": "2024 fair", "signed_up_at": long_ago, "ip": None,
                                           "disclosure": "news", "confirmed_at": None}], long_ago, "import")
    store.consent_import("demo", "news", [{"address": "fresh@example.org", "status": "confirmed", "method": "single",
                                           "source": "web", "signed_up_at": datetime.now(timezone.utc), "ip": None,
                                           "disclosure": "news", "confirmed_at": None}], long_ago, "import")
    repermission = cli("consent", "repermission", "--client", "demo", "--list", "news")
    assert repermission.returncode == 0, repermission.stderr
    assert "1 subscriber(s) with consent older than 730 days; 1 re-permission request(s) sent" in repermission.stdout
    assert outbox_mails(tmp_path, "fresh@example.org") == []
    (ask,) = outbox_mails(tmp_path, "old@example.org")
    assert "still want" in ask["Subject"]
    assert http("POST", link_in(ask), b"confirm=yes")[0] == 200
    (refreshed, events), = store.consent_records("demo", "old@example.org")
    store.close()
    assert refreshed.confirmed_at is not None and refreshed.confirmed_at > long_ago + timedelta(days=799)
    assert [e.event for e in events] == ["created", "repermission-requested", "refreshed"]


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode != 0, (result.args, result.stdout)
    (line,) = result.stderr.strip().splitlines()
    assert all(needle in line for needle in needles), line
    return line


def consent_records(url: str, address: str) -> list:
    """Client demo's consent records for `address`, read straight from the database."""
    upgrade(url)
    store = Store(url)
    try:
        return store.consent_records("demo", address)
    finally:
        store.close()


def test_add_refuses_a_bad_ip_and_a_suspended_client(tmp_path, fresh_database_url):
    """Refused before anything is recorded or mailed; no relay needs to run for that."""
    url = fresh_database_url()
    config = demo_config(tmp_path, free_port(), free_port(), db_url=url)
    ensure_demo_secrets(load_config(config))  # what `relay serve` would have made on its first run
    cli = lambda *args: run_relay("--config", "relay.toml", *args, cwd=tmp_path)  # noqa: E731
    for bad in ("999.1.1.1", "not-ip"):
        one_line_error(cli("consent", "add", "cy@example.org", "--client", "demo", "--list", "members",
                           "--source", "phone call", "--ip", bad), f"ip {bad!r} is not an IP address")

    text = config.read_text()
    assert text.count('default_list = "news"\n') == 1
    config.write_text(text.replace('default_list = "news"\n', 'default_list = "news"\nstate = "suspended"\n'))
    one_line_error(cli("consent", "add", "cy@example.org", "--client", "demo", "--list", "news", "--source", "x"),
                   "client demo is suspended")
    one_line_error(cli("consent", "add", "cy@example.org", "--client", "demo", "--list", "members", "--source", "x"),
                   "client demo is suspended")
    one_line_error(cli("consent", "repermission", "--client", "demo", "--list", "news"), "client demo is suspended")

    assert consent_records(url, "cy@example.org") == []
    outbox = tmp_path / "outbox" / "new"
    assert not outbox.exists() or list(outbox.iterdir()) == []


def test_add_refuses_a_record_without_a_source(tmp_path, fresh_database_url):
    """--source is the opt-in proof's provenance; an empty one was recorded (the import refuses it)."""
    url = fresh_database_url()
    config = demo_config(tmp_path, free_port(), free_port(), db_url=url)
    ensure_demo_secrets(load_config(config))
    cli = lambda *args: run_relay("--config", "relay.toml", *args, cwd=tmp_path)  # noqa: E731
    for empty in ("", "   "):
        one_line_error(cli("consent", "add", "cy@example.org", "--client", "demo", "--list", "news",
                           "--source", empty), "--source")
    assert consent_records(url, "cy@example.org") == []
