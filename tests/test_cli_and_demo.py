"""The `relay` command as a user runs it: config errors in one line, and the README's demo end to end."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dkim
import pytest

from conftest import free_port
from relay.dkim import dns_txt_record, load_private_key

RELAY = [sys.executable, "-m", "relay"]
DEMO = Path(__file__).resolve().parent.parent / "relay" / "demo.toml"


def run_relay(*args: str, cwd: Path, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*RELAY, *args], cwd=cwd, input=input, capture_output=True, text=True, timeout=60)


def demo_config(tmp: Path, smtp_port: int, http_port: int, db_url: str | None = None) -> Path:
    text = DEMO.read_text()
    text = text.replace("127.0.0.1:2525", f"127.0.0.1:{smtp_port}").replace("127.0.0.1:8025", f"127.0.0.1:{http_port}")
    if db_url:
        text = text.replace('url = "sqlite:///relay.db"', f'url = "{db_url}"')
    path = tmp / "relay.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("edit, key", [
    (lambda t: t.replace('listen = "127.0.0.1:2525"', 'listen = "nowhere"'), "relay.listen"),
    (lambda t: t.replace("[relay]\n", "[relay]\nlisten_port = 25\n"), "relay.listen_port"),
    (lambda t: t.replace('stages = ["suppression",', 'stages = ["magic", "suppression",'), "policy.stages"),
    (lambda t: t.replace('contact_email = "hello@demo.example"\n', ""), "clients.demo.contact_email"),
    (lambda t: t.replace('default_list = "news"', 'default_list = "nope"'), "clients.demo.default_list"),
    (lambda t: t.replace('default_list = "news"', 'default_list = "news"\nnetworks = ["0.0.0.0/0"]'),
     "clients.demo.networks"),
    (lambda t: t.replace('kind = "transactional"', 'kind = "bulk"'), "clients.demo.lists.receipts.kind"),
    (lambda t: t.replace("max_recipients = 1000", "max_recipients = true"), "relay.max_recipients"),
    (lambda t: t.replace('url = "maildir:outbox"', 'url = "ftp://x"'), "upstream.url"),
    (lambda t: t.replace("[http]", "[http"), "not valid TOML"),
])
def test_bad_config_gives_one_line_naming_the_key(tmp_path, edit, key):
    (tmp_path / "relay.toml").write_text(edit(DEMO.read_text()))
    result = run_relay("--config", "relay.toml", "config-check", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_hash_password_output_is_accepted_by_config(tmp_path):
    hashed = run_relay("client", "hash-password", cwd=tmp_path, input="s3cret-pass\n").stdout.strip()
    text = DEMO.read_text().replace('password_file = "secrets/demo.password"', f'password_hash = "{hashed}"')
    (tmp_path / "relay.toml").write_text(text)
    assert run_relay("--config", "relay.toml", "config-check", cwd=tmp_path).returncode == 0


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"relay exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("relay did not start listening")


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed (apt-get install swaks)")
def test_demo_first_message_with_swaks_lands_signed_in_outbox(tmp_path, fresh_database_url):
    """The README path: serve the demo config, send with swaks, find a verified copy in outbox/."""
    smtp_port, http_port = free_port(), free_port()
    demo_config(tmp_path, smtp_port, http_port,
                db_url=fresh_database_url() if os.environ.get("RELAY_TEST_DATABASE_URL") else None)
    proc = subprocess.Popen([*RELAY, "--config", "relay.toml", "serve"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(smtp_port, proc)
        added = run_relay("--config", "relay.toml", "consent", "add", "alice@example.org", "--client", "demo",
                          "--list", "news", "--source", "README demo", cwd=tmp_path)
        assert added.returncode == 0 and "confirmed on demo/news" in added.stdout, added.stderr
        password = (tmp_path / "secrets" / "demo.password").read_text().strip()
        swaks = subprocess.run(
            ["swaks", "--server", f"127.0.0.1:{smtp_port}", "--auth", "PLAIN", "--auth-user", "demo",
             "--auth-password", password, "--from", "news@demo.example", "--to", "alice@example.org",
             "--header", "Subject: First message", "--body", "Hello from the demo"],
            capture_output=True, text=True, timeout=30)
        assert swaks.returncode == 0, swaks.stdout + swaks.stderr
        assert re.search(r"<[-~]  250 2\.0\.0 OK queued as", swaks.stdout), swaks.stdout
        delivered = list((tmp_path / "outbox" / "new").iterdir())
        assert len(delivered) == 1
        data = delivered[0].read_bytes()
        assert b"Hello from the demo" in data and b"Delivered-To: alice@example.org" in data
        assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in data
        record = dns_txt_record(load_private_key(tmp_path / "keys" / "demo.example.s1.pem")).encode()
        assert dkim.verify(data, dnsfunc=lambda name, timeout=5: record
                           if name == b"s1._domainkey.demo.example." else b"")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert password not in out + err  # secrets never in logs


def test_embedded_demo_config_is_used_without_relay_toml(tmp_path):
    result = run_relay("config-check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "demo.toml: ok" in result.stdout
    assert not (tmp_path / "secrets").exists()  # config-check creates nothing


def test_serve_reports_unreachable_database_in_one_line(tmp_path):
    config = demo_config(tmp_path, free_port(), free_port(), db_url="postgresql+psycopg://nobody@127.0.0.1:1/x")
    result = run_relay("--config", config.name, "serve", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: storage.url: cannot open the database")
