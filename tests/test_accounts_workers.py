"""`relay serve --workers 2` in a subprocess: volume limits shared by the workers, a state change
that bites in both within 2 s without a restart."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from conftest import free_port, relay_toml
from relay.cli.main import main as relay_cli
from relay.config import load_config
from relay.keys import ensure_token_key
from test_accounts import mail_reply, message, send, status

FROZEN = (451, "4.7.1")


@pytest.fixture
def two_workers(tmp_path, keys_dir, sink, fresh_database_url):
    port = free_port()
    path = tmp_path / "relay.toml"
    path.write_text(relay_toml(smtp_port=port, http_port=free_port(), db_url=fresh_database_url(),
                               upstream=f"smtp://127.0.0.1:{sink.port}", keys=keys_dir,
                               stages='["sender-identity", "limits"]',
                               extra="\n[policy.limits]\nper_minute = 6\n"))
    ensure_token_key(load_config(path))
    proc = subprocess.Popen([sys.executable, "-m", "relay", "--config", str(path), "serve", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "relay did not start"
            time.sleep(0.1)
    time.sleep(0.5)  # the second worker binds just after the first
    try:
        yield path, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_limits_are_shared_and_states_bite_in_every_worker(two_workers, sink):
    path, port = two_workers
    sink.clear()
    # each message on its own connection: the kernel spreads them over both workers
    codes = [send(port, message(f"Note {i}", f"Text {i}."), [f"w{i}@example.org"])[0] for i in range(10)]
    assert codes.count(250) == 6 and codes.count(451) == 4, codes
    result = CliRunner().invoke(relay_cli, ["--config", str(path), "client", "state", "acme", "frozen",
                                            "--reason", "test freeze"])
    assert result.exit_code == 0, result.output
    changed = time.monotonic()
    while True:
        replies = [status(mail_reply(port)) for _ in range(8)]  # several connections: both workers
        if all(r == FROZEN for r in replies):
            break
        assert time.monotonic() - changed < 2.0, replies
        time.sleep(0.05)
