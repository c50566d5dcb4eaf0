"""`relay milter` / `relay policy` as commands: they start, listen where configured, stop on SIGTERM."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

from conftest import free_port, relay_toml

RELAY = [sys.executable, "-m", "relay"]


def write_config(tmp_path: Path, keys_dir: Path, extra: str) -> Path:
    path = tmp_path / "relay.toml"
    path.write_text(relay_toml(smtp_port=0, http_port=free_port(), db_url=f"sqlite:///{tmp_path}/relay.db",
                               upstream="smtp://127.0.0.1:1", keys=keys_dir) + extra)
    return path


def test_relay_milter_with_policy_listens_and_stops_on_sigterm(tmp_path: Path, keys_dir: Path):
    milter_port = free_port()
    path = write_config(tmp_path, keys_dir, f'\n[milter]\nlisten = "127.0.0.1:{milter_port}"\n'
                                            f'\n[policy_service]\nlisten = "unix:{tmp_path}/policy.sock"\n')
    proc = subprocess.Popen([*RELAY, "--config", str(path), "milter", "--policy", "--no-http"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"milter 127.0.0.1:{milter_port}" in line and f"policy unix:{tmp_path}/policy.sock" in line, line
        socket.create_connection(("127.0.0.1", milter_port), timeout=5).close()
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(tmp_path / "policy.sock"))
            s.sendall(b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.9\n"
                      b"recipient=a@example.org\n\n")
            assert s.recv(100) == b"action=DUNNO\n\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, errors = proc.communicate(timeout=30)
    assert proc.returncode == 0, errors


def test_bad_listen_value_is_one_line(tmp_path: Path, keys_dir: Path):
    path = write_config(tmp_path, keys_dir, '\n[milter]\nlisten = "unix:relative/milter.sock"\n')
    result = subprocess.run([*RELAY, "--config", str(path), "milter"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == ("Error: relay.toml: milter.listen: must be host:port or unix:/absolute/path, "
                             "got 'unix:relative/milter.sock'\n")
