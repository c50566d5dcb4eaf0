"""Operations (SPEC §8 bare LF, §12): through SMTP, the admin HTTP listener and the `relay` CLI."""
from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from conftest import Sink, SinkHandler, free_port, relay_toml
from relay.config import load_config
from relay.keys import ensure_token_key
from relay.runtime import Runtime
from storage import Store, upgrade
from storage.queue import list_copies
from smtp_client import RawSMTP
from test_relay_smtp import code_of, login, send, message, verify_dkim

RELAY = [sys.executable, "-m", "relay"]
ACCEPTED = 250
SMUGGLED = (550, "5.5.2")
UPSTREAM_QID = "4QX7Z1A2B3"
DEFERRED = "451 4.3.0 Try again later"


class QueueIdHandler(SinkHandler):
    """An upstream answering as Postfix does (`queued as ID`), counting the connections it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.ehlos = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001
        self.ehlos += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        await super().handle_DATA(server, session, envelope)
        return f"250 2.0.0 Ok: queued as {UPSTREAM_QID}"


@pytest.fixture(scope="module")
def qsink():
    sink = Sink()
    sink.handler = QueueIdHandler()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture()
def upstream(qsink: Sink) -> Sink:
    qsink.clear()
    qsink.handler.ehlos = 0
    return qsink


@pytest.fixture(scope="module")
def relay(relay_factory, qsink: Sink):
    return relay_factory(upstream=f"smtp://127.0.0.1:{qsink.port}")


def admin_get(relay, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{relay.running.admin_port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(metrics: str, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)} (\S+)$", metrics, re.M)
    return float(match.group(1)) if match else None


def relay_cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RELAY, "--config", str(config), *args], capture_output=True, text=True, timeout=60,
                          cwd=config.parent)


# -- SPEC §8: bare LF is a CRLF; look-alikes, bare CR and NUL are still refused -------------------

def lf_message(body: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "news@acme.example", "alice@example.org", "LF only"
    msg.set_content(body)
    return msg.as_bytes()  # the README's old example: LF line ends, as smtplib then sends them


def test_lf_only_mail_from_smtplib_is_taken_and_goes_out_as_crlf(relay, upstream, keys_dir):
    data = lf_message("first line\n.a line that starts with a dot\nlast line\n")
    assert b"\r" not in data
    with login(relay.port) as s:
        s.sendmail("bounce@acme.example", ["alice@example.org"], data)  # raises unless 250
    (got,) = upstream.wait_for(1)
    assert not re.search(rb"(?<!\r)\n|\r(?!\n)", got.data), "only CRLF line ends reach the upstream"
    # smtplib doubled the dot at the start of the LF line; the relay took one away, as on a CRLF line
    assert b"\r\n.a line that starts with a dot\r\n" in got.data
    assert b"\r\n..a line" not in got.data
    assert verify_dkim(got.data, keys_dir)


@pytest.mark.parametrize("trap", [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r", b"\x00"])
def test_lf_only_mail_with_an_end_of_data_lookalike_bare_cr_or_nul_is_still_refused(relay, upstream, trap):
    with RawSMTP(relay.port) as c:
        import base64

        from conftest import PASSWORD

        c.cmd("EHLO client.test")
        assert c.cmd("AUTH PLAIN " + base64.b64encode(f"\0acme\0{PASSWORD}".encode()).decode()).startswith("235")
        c.cmd("MAIL FROM:<bounce@acme.example>")
        c.cmd("RCPT TO:<alice@example.org>")
        assert c.cmd("DATA").startswith("354")
        c.send(b"From: news@acme.example\nTo: alice@example.org\nSubject: x\n\nbody" + trap
               + b"MAIL FROM:<x@acme.example>\n" + b"\r\n.\r\n")
        assert code_of(c.reply()) == SMUGGLED
    assert upstream.messages == []


# -- SPEC §12: the upstream's queue id in the audit, the admin listener ---------------------------

def test_upstream_queue_id_is_kept_in_the_audit_log(relay, upstream):
    assert send(relay.port, message(), ["alice@example.org"])[0] == ACCEPTED
    relay.flush()
    rows = [r for r in relay.store.audit_rows("acme") if r.verdict == "deliver" and r.recipient == "alice@example.org"]
    assert rows and rows[-1].upstream_queue_id == UPSTREAM_QID
    out = relay_cli(relay.config_path, "audit", "export", "--client", "acme", "--format", "jsonl")
    assert out.returncode == 0, out.stderr
    assert any(json.loads(line).get("upstream_queue_id") == UPSTREAM_QID for line in out.stdout.splitlines())


def test_metrics_and_healthz_are_on_the_admin_listener_only(relay, upstream):
    assert send(relay.port, message(), ["alice@example.org"])[0] == ACCEPTED
    for path in ("/metrics", "/healthz"):
        try:
            urllib.request.urlopen(relay.http + path, timeout=5)
            raise AssertionError(f"{path} answered on the public listener")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
    status, text = admin_get(relay, "/metrics")
    assert status == 200
    assert sample(text, 'relay_client_messages_total{client="acme",result="accepted"}') >= 1
    assert sample(text, 'relay_client_copies_total{client="acme",outcome="delivered"}') >= 1
    assert sample(text, "relay_upstream_up") == 1 and sample(text, "relay_storage_up") == 1
    assert sample(text, "relay_retry_queue_copies") is not None
    status, text = admin_get(relay, "/healthz")
    assert (status, text.splitlines()[0]) == (200, "ok")


def test_healthz_is_503_naming_the_upstream_when_it_is_down(relay_factory, fresh_database_url):
    # its own database, and stopped at the end: on the module's database its retry loop took the
    # next test's spooled copies, failed them against the dead upstream and pushed them back
    dead = relay_factory(upstream=f"smtp://127.0.0.1:{free_port()}", db_url=fresh_database_url())
    try:
        status, text = admin_get(dead, "/healthz")
        assert status == 503 and "upstream: down" in text and "storage: ok" in text
        status, text = admin_get(dead, "/metrics")
        assert sample(text, "relay_upstream_up") == 0
    finally:
        dead.stop()


# -- `relay queue` ------------------------------------------------------------------------------

def test_queue_list_hold_release_delete_and_the_queue_depth_gauge(relay, upstream):
    upstream.handler.reply_for = lambda rcpt: DEFERRED if rcpt.startswith("later") else None
    code, text = send(relay.port, message(), ["alice@example.org", "later1@example.org"])
    assert code == ACCEPTED and b"1 queued for retry" in text
    code, _ = send(relay.port, message(), ["alice@example.org", "later2@example.org"])
    held = relay_cli(relay.config_path, "queue", "hold", "--all")
    assert held.returncode == 0 and held.stdout.startswith("2 copies held"), held.stdout + held.stderr
    listed = relay_cli(relay.config_path, "queue", "list", "--json")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(r["to"] for r in rows) == ["later1@example.org", "later2@example.org"]
    assert all(r["next_attempt"] == "held" for r in rows)
    attempts = {r["id"]: r["attempts"] for r in rows}
    _, metrics = admin_get(relay, "/metrics")
    assert sample(metrics, "relay_retry_queue_copies") == 2 and sample(metrics, "relay_retry_queue_held") == 2
    time.sleep(1.0)  # the relay retries every 0.2 s here: a held copy is left alone
    rows = [json.loads(line) for line in relay_cli(relay.config_path, "queue", "list", "--json").stdout.splitlines()]
    assert {r["id"]: r["attempts"] for r in rows} == attempts
    shown = relay_cli(relay.config_path, "queue", "show", str(rows[0]["id"]), "--body")
    assert shown.returncode == 0 and "DKIM-Signature:" in shown.stdout and "to:" in shown.stdout
    later2 = next(r for r in rows if r["to"] == "later2@example.org")
    deleted = relay_cli(relay.config_path, "queue", "delete", str(later2["id"]))
    assert deleted.returncode == 0 and deleted.stdout.strip() == "deleted 1 copy"
    upstream.handler.reply_for = lambda rcpt: None
    released = relay_cli(relay.config_path, "queue", "release", "--all")
    assert released.returncode == 0 and released.stdout.startswith("1 copy released")
    deadline = time.monotonic() + 10
    while not upstream.for_rcpt("later1@example.org") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.for_rcpt("later1@example.org") and not upstream.for_rcpt("later2@example.org")
    relay.flush()
    assert relay_cli(relay.config_path, "queue", "list").stdout.strip() == "the retry spool is empty"
    audit = relay.store.audit_rows("acme")
    assert any(r.recipient == "later2@example.org" and r.verdict == "delete" for r in audit)
    missing = relay_cli(relay.config_path, "queue", "delete", "999999")
    assert missing.returncode == 1 and missing.stderr.startswith("Error: no spooled copy")



class StoreFailingOnce(Store):
    """A real store whose first `spool_retry` fails, as SQLite does when an admin command holds the lock."""

    failures = 1

    def spool_retry(self, *args: Any, **kwargs: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("database is locked")
        super().spool_retry(*args, **kwargs)


def test_a_store_error_mid_retry_pass_hands_the_leases_back(tmp_path, keys_dir, fresh_database_url, upstream):
    """The retry loop survives a failed pass; the copies it claimed are due again at once, not in 300 s."""
    url = fresh_database_url()
    upgrade(url)
    path = tmp_path / "relay.toml"
    path.write_text(relay_toml(smtp_port=0, http_port=free_port(), db_url=url,
                               upstream=f"smtp://127.0.0.1:{upstream.port}", keys=keys_dir))
    config = load_config(path)
    ensure_token_key(config)
    store = StoreFailingOnce(url)
    store.spool_add([{"queue_id": "Q1", "client": "acme", "mail_from": "", "recipient": r, "data": b"x\r\n"}
                     for r in ("later1@example.org", "later2@example.org")])
    upstream.handler.reply_for = lambda rcpt: DEFERRED

    async def one_pass() -> None:
        runtime = Runtime(config, store)
        try:
            with pytest.raises(RuntimeError, match="database is locked"):
                await runtime.retry_due()
            assert [r["lease_until"] for r in list_copies(store.engine)] == [None, None]
            assert await runtime.retry_due() == 2  # both claimable again by the next pass
        finally:
            await runtime.upstream.close()

    try:
        asyncio.run(one_pass())
        assert {r["attempts"] for r in list_copies(store.engine)} == {1}
    finally:
        store.close()


# -- pooled upstream connections retire ---------------------------------------------------------

@pytest.mark.parametrize("limit, pause, connections", [
    ("max_connection_messages = 2\n", 0.0, 3),   # 5 copies, 2 per connection
    ("max_connection_age = 0.3\n", 0.4, 5),      # each copy after the connection has aged
])
def test_pooled_upstream_connections_retire_by_count_and_age(relay_factory, fresh_database_url, upstream, limit,
                                                            pause, connections):
    # (its own database, and stopped at the end: no other test's spooled copies, no retry loop left behind)
    r = relay_factory(upstream=f"smtp://127.0.0.1:{upstream.port}", upstream_extra=limit, db_url=fresh_database_url())
    try:
        for _ in range(5):
            assert send(r.port, message(), ["alice@example.org"])[0] == ACCEPTED
            time.sleep(pause)
        assert upstream.handler.ehlos == connections
    finally:
        r.stop()


# -- CLI: no silent demo, --version, 0600 ------------------------------------------------------

def test_admin_commands_without_a_configuration_say_so_and_create_nothing(tmp_path):
    for args in (["consent", "add", "a@example.org", "--client", "demo", "--list", "news", "--source", "x"],
                 ["suppress", "add", "a@example.org"], ["audit", "export", "--client", "demo"],
                 ["queue", "list"]):
        result = subprocess.run([*RELAY, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("Error: no configuration") and "--demo" in line
    assert list(tmp_path.iterdir()) == []  # no relay.db, no secrets
    demo = subprocess.run([*RELAY, "--demo", "config-check"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert demo.returncode == 0 and "demo.toml: ok" in demo.stdout


def test_version():
    result = subprocess.run([*RELAY, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and re.fullmatch(r"relay \d+\.\d+\.\d+\S*\n", result.stdout)


def test_dkim_record_prints_the_record_of_an_existing_key(tmp_path):
    key = tmp_path / "keys" / "shop.example.s2.pem"
    made = subprocess.run([*RELAY, "dkim", "keygen", "shop.example", "--selector", "s2", "--out", str(key)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    printed = subprocess.run([*RELAY, "dkim", "record", str(key)], capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("s2._domainkey.shop.example.") and printed.stdout.strip() in made.stdout


def test_relay_db_is_private_and_consent_add_says_queued_when_the_upstream_defers(tmp_path):
    from test_cli_and_demo import demo_config

    config = demo_config(tmp_path, free_port(), free_port())
    config.write_text(config.read_text().replace('url = "maildir:outbox"', f'url = "smtp://127.0.0.1:{free_port()}"'))
    from relay.config import load_config
    from relay.keys import ensure_demo_secrets, ensure_token_key

    loaded = load_config(config)
    ensure_token_key(loaded)
    ensure_demo_secrets(loaded)  # what `relay serve` makes on its first run
    added = relay_cli(config, "consent", "add", "pat@example.org", "--client", "demo", "--list", "members",
                      "--source", "test")
    assert added.returncode == 0, added.stderr
    assert "confirmation mail: queued for retry" in added.stdout, added.stdout
    # the attempt is a log line (text by default): `… INFO relay.mail: event=notice … rule=temporary reply="451 …"`
    (line,) = [x for x in added.stderr.splitlines() if " INFO relay.mail: event=notice " in x]
    assert "rcpt=pat@example.org" in line and "rule=temporary" in line and 'reply="451 ' in line, line
    for name in ("relay.db", "relay.db-wal", "relay.db-shm"):
        if (tmp_path / name).exists():
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


def test_a_used_unsubscribe_or_confirm_link_says_already_done(relay, upstream):
    import datetime as dt

    from conftest import API_TOKEN

    now = dt.datetime.now(dt.timezone.utc)
    link = f"{relay.http}/u/" + relay.runtime.tokens.issue("unsubscribe", "acme", "news", "used@example.org", now)
    with urllib.request.urlopen(link, timeout=10) as r:
        assert b"<button" in r.read()
    urllib.request.urlopen(urllib.request.Request(link, data=b"List-Unsubscribe=One-Click", method="POST"), timeout=10)
    with urllib.request.urlopen(link, timeout=10) as r:
        page = r.read().decode()
    assert "Already done" in page and "<button" not in page

    api = urllib.request.Request(f"{relay.http}/api/v1/subscribers", method="POST", headers={
        "Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"},
        data=json.dumps({"email": "joiner@example.org", "list": "vip", "source": "test"}).encode())
    with urllib.request.urlopen(api, timeout=10) as r:
        assert json.loads(r.read())["confirmation_mail"] == "sent"
    (mail,) = upstream.wait_for(1)
    confirm = re.search(rb"(http://127\.0\.0\.1:\d+/c/[a-z0-9]+)", mail.data).group(1).decode()
    with urllib.request.urlopen(confirm, timeout=10) as r:
        assert b"<button" in r.read()
    urllib.request.urlopen(urllib.request.Request(confirm, data=b"confirm=yes", method="POST"), timeout=10)
    with urllib.request.urlopen(confirm, timeout=10) as r:
        page = r.read().decode()
    assert "Already done" in page and "<button" not in page


class TcpProxy:
    """A loopback TCP proxy that can be cut: the database becomes unreachable for whoever uses it."""

    def __init__(self, host: str, port: int) -> None:
        import socket
        import threading

        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                self.threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b) -> None:  # noqa: ANN001
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def stop(self) -> None:
        import socket

        try:  # wakes the accepting thread: close() alone leaves the port accepting while accept() waits
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.mark.skipif(not os.environ.get("RELAY_TEST_DATABASE_URL"), reason="PostgreSQL behind a proxy that can be cut")
def test_healthz_is_503_naming_storage_when_the_database_is_unreachable(relay_factory, fresh_database_url, qsink):
    from sqlalchemy import make_url

    url = make_url(fresh_database_url())
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    r = relay_factory(upstream=f"smtp://127.0.0.1:{qsink.port}",
                      db_url=url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    assert admin_get(r, "/healthz")[0] == 200
    proxy.stop()
    status, text = admin_get(r, "/healthz")
    assert status == 503 and "storage: down" in text and "upstream: ok" in text, text
    _, metrics = admin_get(r, "/metrics")
    assert sample(metrics, "relay_storage_up") == 0
    r.stop()


def test_line_end_normalisation_is_the_same_whatever_the_pieces():
    """DATA arrives in pieces split anywhere (a CRLF may straddle two): same answer as for the whole."""
    import random

    from relay.smtp.data import normalize_line_ends

    rng = random.Random(17)
    for _ in range(2000):
        data = bytes(rng.choice(b"ab\r\n.\x00") if rng.random() < 0.3 else rng.choice(b"xyz")
                     for _ in range(rng.randint(0, 40)))
        cuts = sorted(rng.sample(range(len(data) + 1), k=min(len(data) + 1, rng.randint(0, 4))))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        whole = normalize_line_ends([data])
        split = normalize_line_ends(pieces)
        assert (None if whole is None else b"".join(whole)) == (None if split is None else b"".join(split)), pieces
        if whole is not None:
            out = b"".join(whole)
            assert b"\x00" not in out and out.count(b"\r") == out.count(b"\n") == out.count(b"\r\n")
