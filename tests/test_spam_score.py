"""Stage spam-score against a real SpamAssassin spamd: thresholds per client, tags, and a slow or absent scorer."""
from __future__ import annotations

import asyncio
import dataclasses
import email
import os
import re
import shutil
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PASSWORD, free_port
from filters import spam_score
from filters.registry import all_stages
from relay.config import DEFAULT_STAGES, ConfigError, load_config

SPAMD = Path("/usr/sbin/spamd")
# SpamAssassin's test string: any spamd scores it 1000 (rule GTUBE), whatever its rules or network
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
TAG_HEADER = "X-Consent-Relay-Content"


@pytest.fixture(scope="module")
def spamd(tmp_path_factory):
    """Our own spamd on a free port: local tests only (-L), no user preferences, a temporary home."""
    if not SPAMD.exists():
        pytest.skip("SpamAssassin's spamd is not installed (Debian package spamd)")
    home = tmp_path_factory.mktemp("spamd")
    user: list[str] = []
    if os.geteuid() == 0:  # spamd will not run its children as root
        shutil.chown(home, "nobody")
        user = ["-u", "nobody"]
    port = free_port()
    log = (home / "spamd.log").open("wb")
    proc = subprocess.Popen(
        [str(SPAMD), "-L", "-x", "--listen", f"127.0.0.1:{port}", "--allowed-ips=127.0.0.1", "--min-children=1",
         "--max-children=2", "-H", str(home), *user, "--syslog=stderr", "--pidfile", str(home / "pid")],
        stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 60
    while True:  # spamd reads its rules before it listens: seconds
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING SPAMC/1.5\r\n\r\n")
                if b"PONG" in s.recv(100):
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            log.close()
            pytest.fail("spamd did not start: " + (home / "spamd.log").read_text(errors="replace")[-2000:])
        time.sleep(0.2)
    yield port
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def _send(relay, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=20) as s:
        s.ehlo("client.test")
        s.login("acme", PASSWORD)
        s.mail("bounce@acme.example")
        assert s.rcpt("alice@example.org")[0] == 250
        return s.data(data)


def _message(text: str) -> bytes:
    return (f"From: Acme <news@acme.example>\r\nTo: alice@example.org\r\nSubject: Our autumn news\r\n"
            f"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <s1@acme.example>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n").encode()


def test_stage_is_registered_and_off_by_default():
    assert "spam-score" in all_stages() and all_stages()["spam-score"].phase == "message"
    assert "spam-score" not in DEFAULT_STAGES


def test_real_spamd_refuses_by_the_clients_threshold_and_tags_below_it(relay_factory, sink, spamd):
    sink.clear()
    # the operator would let GTUBE (1000) through; the client's own reject threshold refuses it, and
    # its tag threshold (below any score) tags the ordinary newsletter
    relay = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages='["sender-identity", "spam-score"]',
                          extra=f"\n[policy.spam_score]\nport = {spamd}\ntimeout = 20\ntag = 900\nreject = 2000\n"
                                f"\n[clients.acme.spam_score]\ntag = -100\nreject = 50\n")
    code, text = _send(relay, _message(f"Hello,\r\n\r\n{GTUBE}\r\n"))
    assert code == 550 and re.match(rb"5\.7\.1 spam score 10\d\d\.\d at or above 50\.0 \(.*GTUBE", text), text
    code, text = _send(relay, _message("Our plum tart is back this week. The shop opens at 8 on Saturday."))
    assert code == 250, text
    (got,) = sink.wait_for(1)
    assert email.message_from_bytes(got.data).get_all(TAG_HEADER) == ["rule=spam-score.tag; category=spam-score"]


def test_real_spamd_below_both_thresholds_passes_untagged(relay_factory, sink, spamd):
    sink.clear()
    relay = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages='["sender-identity", "spam-score"]',
                          extra=f"\n[policy.spam_score]\nport = {spamd}\ntimeout = 20\n")
    code, text = _send(relay, _message("Our plum tart is back this week. The shop opens at 8 on Saturday."))
    assert code == 250, text
    (got,) = sink.wait_for(1)
    assert email.message_from_bytes(got.data).get_all(TAG_HEADER) is None


def test_absent_scorer_tempfails_or_passes_by_config(relay_factory, sink):
    sink.clear()
    closed = free_port()  # nothing listens there
    relay = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages='["sender-identity", "spam-score"]',
                          extra=f"\n[policy.spam_score]\nport = {closed}\ntimeout = 2\n")
    code, text = _send(relay, _message("Hello"))
    assert (code, text) == (451, b"4.7.1 spam scorer unavailable, please try again later")
    relay.stop()
    relay = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages='["sender-identity", "spam-score"]',
                          extra=f"\n[policy.spam_score]\nport = {closed}\ntimeout = 2\non_error = \"pass\"\n")
    code, text = _send(relay, _message("Hello"))
    assert code == 250, text


def test_slow_scorer_is_cut_off_by_the_timeout_without_blocking_the_loop(tmp_path):
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent / "corpus" / "content"))
    import report

    config = report.demo_config(tmp_path)
    client = config.clients["demo"]

    async def run() -> tuple[object, int, float, dict]:
        release = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1 << 16)  # reads the request and says nothing until the test is over
            await release.wait()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        slow = dataclasses.replace(config, spam_score={"port": port, "timeout": 0.5})
        ctx = report.context(slow, client, _message("Hello").replace(b"acme", b"demo"))
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beat = asyncio.ensure_future(ticker())
        started = time.monotonic()
        verdict = await spam_score.check(ctx)
        elapsed = time.monotonic() - started
        beat.cancel()
        release.set()
        server.close()
        await asyncio.sleep(0.1)  # the silent handler closes its side
        await server.wait_closed()
        return verdict, ticks, elapsed, ctx.facts

    verdict, ticks, elapsed, facts = asyncio.run(run())
    assert verdict.code == 451 and verdict.rule == "spam-score.unavailable"
    assert 0.4 < elapsed < 3 and ticks >= 5  # the loop kept running while spamd said nothing
    assert "error" in facts[spam_score.FACTS_KEY]


def test_bad_settings_are_one_line_config_errors(tmp_path):
    from conftest import relay_toml

    def load(extra: str):
        path = tmp_path / "relay.toml"
        path.write_text(relay_toml(smtp_port=1, http_port=2, db_url="sqlite:///x.db", upstream="smtp://127.0.0.1:3",
                                   keys=tmp_path, extra=extra))
        return load_config(path)

    with pytest.raises(ConfigError, match=r"policy.spam_score.on_error: must be \"tempfail\" or \"pass\""):
        load('\n[policy.spam_score]\non_error = "drop"\n')
    with pytest.raises(ConfigError, match=r"clients.acme.spam_score.host: unknown key"):
        load('\n[clients.acme.spam_score]\nhost = "x"\n')
    with pytest.raises(ConfigError, match=r"policy.spam_score.timeout: must be between 0 and 120"):
        load('\n[policy.spam_score]\ntimeout = 0\n')
    config = load('\n[policy.spam_score]\nreject = 12\n[clients.acme.spam_score]\nreject = 7.5\n')
    settings = spam_score.settings_for(config, config.clients["acme"])
    assert (settings.tag, settings.reject, settings.on_error) == (5.0, 7.5, "tempfail")
