"""The README's "Postfix as the relay's client": a private Postfix relays by sender to the relay with SASL."""
from __future__ import annotations

import os
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import PASSWORD, free_port
from test_operations import UPSTREAM_QID, QueueIdHandler
from conftest import Sink

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
pytestmark = pytest.mark.skipif(not (os.path.exists(POSTFIX) and os.geteuid() == 0),
                                reason="needs Postfix and root (scripts/test installs it)")

MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


class PrivatePostfix:
    """`postfix -c DIR start` with its own queue and data directories on a free loopback port."""

    def __init__(self, settings: dict[str, str]) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="relay-ops-postfix-"))  # not under pytest's 0700 tmp
        os.chmod(self.root, 0o755)
        self.config_dir, self.queue_dir, self.data_dir = (self.root / n for n in ("etc", "queue", "data"))
        for d in (self.config_dir, self.queue_dir, self.data_dir):
            d.mkdir()
        shutil.chown(self.data_dir, "postfix", "postfix")
        self.log_file = self.root / "maillog"
        main = {
            "compatibility_level": "3.6", "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir), "myhostname": "postfix.test", "mydomain": "postfix.test",
            "mydestination": "", "inet_interfaces": "127.0.0.1", "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8", "local_transport": "error:no local delivery",
            "maillog_file": str(self.log_file), "maillog_file_prefixes": str(self.root),
            "syslog_name": f"postfix-ops-{self.port}", "alias_maps": "", "alias_database": "",
            "smtpd_recipient_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtp_dns_support_level": "disabled", "smtp_host_lookup": "native",
            "queue_run_delay": "1s", "minimal_backoff_time": "1s", "maximal_backoff_time": "2s",
            "shlib_directory": "/usr/lib/postfix", **settings,
        }
        (self.config_dir / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        (self.config_dir / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))

    def _postfix(self, *args: str) -> subprocess.CompletedProcess:
        # Postfix writes its errors to a terminal or syslog only: script(1) gives it a terminal
        command = " ".join([POSTFIX, "-c", str(self.config_dir), *args])
        return subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    def start(self) -> "PrivatePostfix":
        result = self._postfix("start")
        if result.returncode != 0:
            self.stop()
            raise RuntimeError(f"postfix start failed: {result.stdout.strip()} {result.stderr.strip()}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"220"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"postfix did not greet: {self.log()[-2000:]}")

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        pid_file = self.queue_dir / "pid" / "master.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            pid = None
        self._postfix("stop")
        deadline = time.monotonic() + 10
        while pid is not None and time.monotonic() < deadline:  # the master exits a moment after "stop"
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)


def test_postfix_relays_a_clients_mail_through_the_relay_with_sasl(relay_factory):
    upstream = Sink()
    upstream.handler = QueueIdHandler()
    upstream.start()
    relay = relay_factory(upstream=f"smtp://127.0.0.1:{upstream.port}")
    at = f"[127.0.0.1]:{relay.port}"
    # the README's main.cf lines, with the test relay's port and the test client's password
    postfix = PrivatePostfix({
        "relayhost": "",
        "sender_dependent_relayhost_maps": f"inline:{{ {{@acme.example = {at}}} }}",
        "smtp_sasl_auth_enable": "yes",
        "smtp_sasl_password_maps": f"inline:{{ {{{at} = acme:{PASSWORD}}} }}",
        "smtp_sasl_security_options": "noanonymous",
        "smtp_tls_security_level": "may",
    }).start()
    try:
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=15) as s:
            s.sendmail("news@acme.example", ["alice@example.org"],
                       b"From: news@acme.example\r\nTo: alice@example.org\r\nSubject: via Postfix\r\n\r\nHello\r\n")
        (got,) = upstream.wait_for(1, timeout=20) or [None]
        assert got is not None, postfix.log()[-3000:]
        assert got.data.startswith(b"DKIM-Signature:") and b"Subject: via Postfix" in got.data
        # through the relay, which took it only after AUTH (client acme has no `networks`); Postfix
        # logs the delivery once the relay's 250 reaches it, which can be after the upstream has it
        sent = f"relay=127.0.0.1[127.0.0.1]:{relay.port}"
        deadline = time.monotonic() + 10
        while sent not in postfix.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sent in postfix.log(), postfix.log()[-3000:]
        relay.flush()
        rows = [r for r in relay.store.audit_rows("acme") if r.verdict == "deliver" and r.recipient == "alice@example.org"]
        assert rows and rows[-1].upstream_queue_id == UPSTREAM_QID
    finally:
        postfix.stop()
        upstream.stop()
