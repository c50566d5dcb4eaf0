"""A private Postfix for a test module: its own config, queue and data directories, free ports, a log file."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

# the daemons this setup uses, none chrooted (a chroot would need copies of /etc files in the queue)
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
local     unix  - n n - - local
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postfix_available() -> bool:
    return os.path.exists(POSTFIX) and os.geteuid() == 0


class PostfixInstance:
    """`postfix -c DIR start` with its own queue_directory and data_directory; relays all mail to
    `relayhost` (an aiosmtpd sink) and listens on a free loopback port. Settings can be given as
    main.cf parameters; `stop()` stops it and removes its directory."""

    def __init__(self, relayhost_port: int | None, settings: dict[str, str] | None = None, port: int | None = None):
        self.port = port or free_port()
        # not under pytest's 0700 tmp directories: Postfix's daemons run as the postfix user
        self.root = Path(tempfile.mkdtemp(prefix="postfix-test-"))
        os.chmod(self.root, 0o755)
        self.config_dir, self.queue_dir, self.data_dir = (self.root / n for n in ("etc", "queue", "data"))
        for d in (self.config_dir, self.queue_dir, self.data_dir):
            d.mkdir()
        shutil.chown(self.data_dir, "postfix", "postfix")
        self.log_file = self.root / "maillog"
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "myhostname": "postfix.test",
            "mydomain": "postfix.test",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": f"[127.0.0.1]:{relayhost_port}" if relayhost_port else "",
            "local_transport": "error:no local delivery",
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.root),
            "syslog_name": f"postfix-test-{self.port}",
            "smtpd_recipient_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "alias_maps": "", "alias_database": "",
            # quick test turnaround: the queue manager retries deferred mail within seconds
            "queue_run_delay": "1s", "minimal_backoff_time": "1s", "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "5s",
            "disable_mime_output_conversion": "yes",  # a DKIM-signed body leaves as signed
            "shlib_directory": "/usr/lib/postfix",
        }
        main.update(settings or {})
        (self.config_dir / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        (self.config_dir / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        # Postfix writes its errors to a terminal or syslog only: script(1) gives it a terminal
        command = " ".join([POSTFIX, "-c", str(self.config_dir), *args])
        return subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True,
                              timeout=60, check=check, stdin=subprocess.DEVNULL)

    def start(self) -> "PostfixInstance":
        result = self._postfix("start", check=False)
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
        raise RuntimeError(f"postfix on port {self.port} did not greet: {self.log()[-2000:]}")

    def stop(self) -> None:
        pid_file = self.queue_dir / "pid" / "master.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            pid = None
        self._postfix("stop", check=False)
        # the master exits a moment after "stop" (its pid file stays): wait for the process itself
        deadline = time.monotonic() + 10
        while pid is not None and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)

    def reload(self, **settings: str) -> None:
        for name, value in settings.items():
            subprocess.run(["postconf", "-c", str(self.config_dir), f"{name}={value}"], check=True)
        self._postfix("reload")

    def flush(self) -> None:
        """Ask the queue manager to try deferred mail now."""
        self._postfix("flush", check=False)

    def queue_size(self) -> int:
        count = 0
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            count += sum(len(files) for _, _, files in os.walk(self.queue_dir / sub))
        return count

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> "PostfixInstance":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
