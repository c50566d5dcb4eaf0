"""A real `relay serve --workers 2`: host-wide /metrics, JSON log lines, SIGHUP reload, a killed worker restarted."""
from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import Sink, free_port
from test_cli_and_demo import RELAY, demo_config, run_relay, wait_port
from test_operations import UPSTREAM_QID, QueueIdHandler, sample


# a started relay holds some 170,000 objects the collector tracks (the content rules and scorer
# among them); without the freeze the gauge stays 0
FROZEN_AT_LEAST = 50_000


def admin(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def wait_until(check, timeout: float = 15.0, what: str = "") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def send_one(port: int, password: str, subject: str = "Hi") -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as s:
        s.login("demo", password)
        return s.sendmail("news@demo.example", ["alice@example.org"],
                          f"From: news@demo.example\nTo: alice@example.org\nSubject: {subject}\n\nHello\n") or (250, b"")


@pytest.fixture()
def upstream():
    sink = Sink()
    sink.handler = QueueIdHandler()
    sink.start()
    yield sink
    sink.stop()


def test_two_workers_one_host(tmp_path, upstream, fresh_database_url):
    smtp_port, http_port, admin_port = free_port(), free_port(), free_port()
    db_url = fresh_database_url() if os.environ.get("RELAY_TEST_DATABASE_URL") else None
    config = demo_config(tmp_path, smtp_port, http_port, db_url=db_url, admin_port=admin_port)
    text = config.read_text().replace('url = "maildir:outbox"', f'url = "smtp://127.0.0.1:{upstream.port}"')
    config.write_text(text + '\n[log]\nformat = "json"\n')
    log_path = tmp_path / "relay.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([*RELAY, "--config", "relay.toml", "serve", "--workers", "2"], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_port(smtp_port, proc)
        wait_port(admin_port, proc)
        wait_until(lambda: len(children(proc.pid)) == 2, what="two workers")
        assert run_relay("--config", "relay.toml", "consent", "add", "alice@example.org", "--client", "demo",
                         "--list", "news", "--source", "test", cwd=tmp_path).returncode == 0
        password = (tmp_path / "secrets" / "demo.password").read_text().strip()
        for i in range(6):  # a connection each: the kernel spreads them over both workers
            send_one(smtp_port, password, f"m{i}")
        upstream.wait_for(6)

        # 1. one scrape is the whole host, whichever worker's turn it is
        for _ in range(6):
            status, metrics = admin(admin_port, "/metrics")
            assert status == 200
            assert sample(metrics, 'relay_messages_total{result="accepted"}') == 6, metrics
            assert sample(metrics, 'relay_client_messages_total{client="demo",result="accepted"}') == 6
        assert sample(metrics, "relay_upstream_up") == 1
        assert admin(admin_port, "/healthz")[0] == 200
        # every worker froze its start-up heap (rules, scorer, modules) before serving (the least of the workers)
        assert sample(metrics, "relay_gc_frozen_objects") > FROZEN_AT_LEAST, metrics

        # 2. one JSON line per decision and per delivery attempt, with the upstream's queue id
        wait_until(lambda: log_path.read_text().count('"event": "deliver"') >= 6, what="the lines (written every 0.1 s)")
        lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
        decisions = [x for x in lines if x.get("event") == "decision" and x.get("rcpt") == "alice@example.org"]
        deliveries = [x for x in lines if x.get("event") == "deliver"]
        assert len(decisions) == 6 and len(deliveries) == 6
        assert all(d["upstream_qid"] == UPSTREAM_QID and d["reply"].startswith("250") and d["client"] == "demo"
                   and d["list"] == "news" and re.fullmatch(r"[0-9A-F]{12}", d["qid"]) for d in deliveries)

        # 3. SIGHUP: a bad file is refused in one line, the old configuration goes on serving
        session = smtplib.SMTP("127.0.0.1", smtp_port, timeout=15)
        session.login("demo", password)
        good = config.read_text()
        config.write_text(good.replace("[clients.demo]", "[clients.demo]\nnot_a_key = 1"))
        os.kill(proc.pid, signal.SIGHUP)
        wait_until(lambda: "reload refused" in log_path.read_text(), what="the refusal")
        time.sleep(0.5)
        refused = [x for x in log_path.read_text().splitlines() if "reload refused" in x]
        assert len(refused) == 1 and "not_a_key" in refused[0], refused
        send_one(smtp_port, password, "after the bad file")
        # a good file reaches every worker; the open session is not dropped
        config.write_text(good.replace('company = "Demo Shop Ltd"', 'company = "Reloaded Shop Ltd"'))
        os.kill(proc.pid, signal.SIGHUP)
        wait_until(lambda: log_path.read_text().count("configuration reloaded") == 2, what="both workers reloaded")
        upstream.clear()
        session.sendmail("news@demo.example", ["alice@example.org"],
                         "From: news@demo.example\nTo: alice@example.org\nSubject: kept\n\nHello\n")
        session.quit()
        for i in range(4):
            send_one(smtp_port, password, f"reloaded {i}")
        assert all(b"Reloaded Shop Ltd" in m.data for m in upstream.wait_for(5)), "a worker kept the old file"

        # 4. a worker killed with SIGKILL is restarted, and the parent says why it died
        victim = children(proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: "killed by SIGKILL" in log_path.read_text(), what="the parent's line")
        wait_until(lambda: len(children(proc.pid)) == 2 and victim not in children(proc.pid), what="a new worker")
        assert proc.poll() is None
        wait_port(admin_port, proc)  # the admin listener is the first worker's: back with it
        for i in range(4):
            send_one(smtp_port, password, f"after the restart {i}")
        # the dead worker's counts stay in the host's total
        _, metrics = admin(admin_port, "/metrics")
        assert sample(metrics, 'relay_messages_total{result="accepted"}') == 6 + 1 + 1 + 4 + 4

        # 5. upstream down: /healthz is 503 and says so
        upstream.stop()
        time.sleep(2.2)  # the probe result is kept for 2 s
        status, text = admin(admin_port, "/healthz")
        assert status == 503 and "upstream: down" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, log_path.read_text()[-2000:]
