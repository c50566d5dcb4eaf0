"""The `relay` command as a user runs it: config errors in one line, and the README's demo end to end."""
from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import dkim
import pytest

from conftest import free_port
from relay.mail.dkim import dns_txt_record, load_private_key

RELAY = [sys.executable, "-m", "relay"]
DEMO = Path(__file__).resolve().parent.parent / "relay" / "demo.toml"


def run_relay(*args: str, cwd: Path, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*RELAY, *args], cwd=cwd, input=input, capture_output=True, text=True, timeout=60)


def demo_config(tmp: Path, smtp_port: int, http_port: int, db_url: str | None = None,
                admin_port: int | None = None) -> Path:
    text = DEMO.read_text()
    text = text.replace("127.0.0.1:2525", f"127.0.0.1:{smtp_port}").replace("127.0.0.1:8025", f"127.0.0.1:{http_port}")
    text = text.replace("127.0.0.1:8026", f"127.0.0.1:{admin_port or free_port()}")
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
    (lambda t: t.replace('default_list = "news"', 'default_list = "news"\nnetworks = ["0.0.0.0/1", "128.0.0.0/1"]'),
     "clients.demo.networks"),
    (lambda t: t.replace('kind = "transactional"', 'kind = "bulk"'), "clients.demo.lists.receipts.kind"),
    (lambda t: t.replace('create_missing = true', 'create_missing = false'), "clients.demo.password_file"),
    (lambda t: t.replace('# tls_cert = "certs/relay.pem"', 'tls_cert = "certs/relay.pem"')
     .replace('# tls_key = "certs/relay.key"', 'tls_key = "certs/relay.key"'), "relay.tls_cert"),
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
    # -v: even at debug level no credential reaches the log
    proc = subprocess.Popen([*RELAY, "--config", "relay.toml", "-v", "serve"], cwd=tmp_path,
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
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as s:  # AUTH LOGIN sends the password alone
            s.ehlo()
            s.user, s.password = "demo", password
            assert s.auth("LOGIN", s.auth_login)[0] == 235
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert " DEBUG " in err  # the debug level was on
    # no --workers: one process per usable CPU, at most 2 on SQLite (each worker prints its line)
    from relay.base.cpus import SQLITE_AUTO_WORKERS, usable_cpus

    expected = usable_cpus() if os.environ.get("RELAY_TEST_DATABASE_URL") else min(usable_cpus(), SQLITE_AUTO_WORKERS)
    assert len(re.findall(r"^relay: SMTP .*\(pid \d+\)$", out, re.M)) == expected, out
    for secret in (password, base64.b64encode(password.encode()).decode()):
        assert secret not in out + err  # secrets never in logs (SPEC §8)


def test_embedded_demo_config_is_used_without_relay_toml_with_demo(tmp_path):
    result = run_relay("--demo", "config-check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "demo.toml: ok" in result.stdout
    assert not (tmp_path / "secrets").exists()  # config-check creates nothing


def test_serve_reports_unreachable_database_in_one_line(tmp_path):
    config = demo_config(tmp_path, free_port(), free_port(), db_url="postgresql+psycopg://nobody@127.0.0.1:1/x")
    result = run_relay("--config", config.name, "serve", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: storage.url: cannot open the database")


def _with_policy(text: str, policy: str) -> str:
    start, end = text.index("[policy]"), text.index("[clients.demo]")
    return text[:start] + policy + "\n" + text[end:]


# (the footer brings its rule half, footer-guard: a copy without a visible footer is refused)
@pytest.mark.parametrize("policy, stages, left_out", [
    ("", "account-state, suppression, sender-identity, consent, content, promo-guard, limits, canary, unsubscribe, "
         "footer, footer-guard", None),
    ('[policy]\nstages = ["suppression", "consent", "content", "sender-identity", "unsubscribe"]\n',
     "suppression, consent, content, sender-identity, unsubscribe, footer, footer-guard", None),
    ('[policy]\nstages = ["sender-identity"]\n', "sender-identity, footer, footer-guard",
     "policy.stages leaves out suppression, consent, content, unsubscribe"),
    ('[policy]\nstages = ["footer", "suppression", "consent", "content", "sender-identity", "unsubscribe"]\n',
     "footer, suppression, consent, content, sender-identity, unsubscribe, footer-guard", None),
])
def test_policy_stages_default_to_all_and_the_spec_names_bring_the_footer(tmp_path, policy, stages, left_out):
    """No [policy] means every stage; SPEC §2's list (no `footer`) still footers every copy (§5);
    a list that leaves a policy stage out is allowed, and config-check says so."""
    (tmp_path / "relay.toml").write_text(_with_policy(DEMO.read_text(), policy))
    result = run_relay("--config", "relay.toml", "config-check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"stages: {stages}\n" in result.stdout
    assert ("leaves out" in result.stdout) == (left_out is not None)
    if left_out:
        assert left_out in result.stdout


@pytest.mark.parametrize("workers", ["1", "2", "auto"])
def test_serve_on_a_taken_port_says_so_in_one_line(tmp_path, workers):
    """A second relay (or anything) on the port: exit 1 and one line, also with workers, whose
    SO_REUSEPORT a lone relay does not set, so it cannot silently share a port with another."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        demo_config(tmp_path, taken, free_port())
        result = run_relay("--config", "relay.toml", "serve", "--workers", workers, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: relay.listen: cannot listen on 127.0.0.1:") and "in use" in last, last
    assert f":{taken}:" in last  # the port, named


def test_usage_errors_are_one_line(tmp_path):
    for args in (["check"], ["no-such-command"], ["serve", "--workers", "0"], ["serve", "--workers", "many"]):
        result = run_relay(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and "--help" in lines[0], (args, lines)


def test_check_says_each_stage_verdict_and_prints_the_copy_the_relay_would_send(tmp_path, fresh_database_url):
    """`relay check` (SPEC §3): a line per stage and recipient, passes included; the copy carries
    what a delivered one does (Date, Message-ID, unsubscribe headers, footer) and verifies."""
    from relay.config import load_config
    from relay.keys import ensure_demo_secrets, ensure_token_key

    config = load_config(demo_config(tmp_path, free_port(), free_port(),
                                     db_url=fresh_database_url() if os.environ.get("RELAY_TEST_DATABASE_URL") else None))
    ensure_token_key(config)
    ensure_demo_secrets(config)
    added = run_relay("--config", "relay.toml", "consent", "add", "alice@example.org", "--client", "demo",
                      "--list", "news", "--source", "check test", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    (tmp_path / "m.eml").write_text("From: news@demo.example\nTo: alice@example.org\nSubject: Hi\n\nHello there\n")
    result = run_relay("--config", "relay.toml", "check", "m.eml", "--client", "demo", "--rcpt", "alice@example.org",
                       "--rcpt", "bob@example.org", "--rcpt", "info@example.org", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for pattern in (r"suppression +alice@example\.org +continue", r"suppression +info@example\.org +reject 550 5\.7\.1 .*role",
                    r"sender-identity +alice@example\.org +continue", r"consent +alice@example\.org +continue",
                    r"consent +bob@example\.org +reject 550 5\.7\.1 no consent", r"content +alice@example\.org +continue",
                    r"unsubscribe +alice@example\.org +applied: set List-Unsubscribe, List-Unsubscribe-Post",
                    r"footer +alice@example\.org +applied: body \d+ -> \d+ bytes", r"dkim +alice@example\.org +signed d=demo\.example",
                    r"result: accepted for 1 of 3 recipient"):
        assert re.search(rf"(?m)^{pattern}", out), (pattern, out)
    assert not re.search(r"(?m)^\S+ +bob@example\.org +.*\n(?:content|footer) +bob", out)  # refused: no later stage
    copy = out.split("copy for alice@example.org:\n", 1)[1].encode().replace(b"\n", b"\r\n")
    for header in (b"\r\nDate: ", b"\r\nMessage-ID: ", b"\r\nList-Unsubscribe: ", b"Demo Shop Ltd, 1 Example Street"):
        assert header in copy, header
    assert re.search(rb"\r\nReceived: from relay-check \(local\) by \S+ \(consent-relay\) with LOCAL id CHECK\s+"
                     rb"for <alice@example\.org>;", copy), copy
    record = dns_txt_record(load_private_key(tmp_path / "keys" / "demo.example.s1.pem")).encode()
    assert dkim.verify(copy, dnsfunc=lambda name, timeout=5: record if name == b"s1._domainkey.demo.example." else b"")
    new_mail = tmp_path / "outbox" / "new"
    assert not new_mail.exists() or not any(new_mail.iterdir())  # nothing sent


@pytest.mark.parametrize("module", ["relay.cli.main", "relay.cli.consent", "relay.cli.suppress", "relay.cli.audit",
                                    "relay.cli.keys", "relay.cli.optin", "relay.cli.storage"])
def test_each_cli_module_imports_first(module):
    """Any of them may be the first a script or a test imports: none may depend on import order."""
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_config_check_warns_of_demo_settings_once_listening_beyond_loopback(tmp_path):
    """The demo's loopback links, Maildir upstream and made-up secrets are right on 127.0.0.1 and
    wrong on a public address: config-check (and serve) say so then, and only then."""
    path = demo_config(tmp_path, free_port(), free_port())
    loopback = run_relay("--config", "relay.toml", "config-check", cwd=tmp_path)
    assert loopback.returncode == 0 and "public_url" not in loopback.stdout and "Maildir" not in loopback.stdout
    path.write_text(path.read_text().replace('listen = "127.0.0.1:', 'listen = "0.0.0.0:', 1)
                    .replace('hostname = "relay.example.net"', 'hostname = "localhost"'))
    public = run_relay("--config", "relay.toml", "config-check", cwd=tmp_path)
    assert public.returncode == 0, public.stderr
    for pattern in (r"note: http\.public_url is http://127\.0\.0\.1:\d+: the unsubscribe and confirmation links",
                    r"note: relay\.hostname is localhost: the mailto unsubscribe address",
                    r"note: upstream\.url is maildir:\S+: copies are written to a Maildir, not sent",
                    r"note: secrets\.create_missing is on"):
        assert re.search(pattern, public.stdout), (pattern, public.stdout)


def test_an_option_given_twice_is_refused_not_silently_the_last(tmp_path):
    """click keeps the last of a repeated option: `consent add … --list news --list members` subscribed
    to members without a word. Now a usage error naming it; --rcpt (repeatable) still repeats."""
    for args, name in ((["consent", "add", "a@example.org", "--client", "demo", "--list", "news", "--list", "members",
                         "--source", "s"], "--list"),
                       (["suppress", "add", "a@example.org", "--client", "demo", "--client=other"], "--client"),
                       (["audit", "export", "--client", "demo", "--format", "csv", "--format", "jsonl"], "--format"),
                       (["dkim", "keygen", "example.com", "-s", "s1", "--selector", "s2"], "--selector"),
                       (["serve", "--workers", "1", "--workers", "2"], "--workers")):
        result = run_relay(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        (line,) = result.stderr.strip().splitlines()
        assert f"{name} given twice" in line, (args, line)
    assert not (tmp_path / "keys").exists() and not (tmp_path / "relay.db").exists()  # nothing done
    eml = tmp_path / "m.eml"
    eml.write_text("From: news@demo.example\nTo: a@example.org\nSubject: hi\n\nhello\n")
    result = run_relay("check", "m.eml", "--client", "demo", "--rcpt", "a@example.org", "--rcpt", "b@example.org",
                       cwd=tmp_path)
    assert "given twice" not in result.stderr, result.stderr  # (it stops later: no token key in tmp_path)
