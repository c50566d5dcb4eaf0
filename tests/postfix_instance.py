"""A private Postfix for tests: its own config, queue and data directories, on free loopback ports."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

# No chroot (the private queue directory is no chroot jail), loopback only; postlogd writes maillog_file.
MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostfixInstance:
    """`postfix -c DIR start` with everything under one temporary directory; stop() removes the processes.

    `overrides` are main.cf settings (they win over the defaults below); `transports` become a
    transport map (domain → "smtp:[127.0.0.1]:PORT" and the like).
    """

    def __init__(self, root: Path | None = None, overrides: dict[str, str] | None = None,
                 transports: dict[str, str] | None = None, port: int | None = None) -> None:
        # Postfix's daemons run as the postfix user and must reach their directories: pytest's tmp_path
        # sits under a 0700 directory, so by default the instance gets its own directory in /tmp
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="relay-postfix-")) if root is None else Path(root)
        self.port = port or free_port()
        self.config_dir = self.root / "etc"
        self.queue_dir = self.root / "queue"
        self.data_dir = self.root / "data"
        self.log_file = self.root / "maillog"
        self.overrides = overrides or {}
        self.transports = transports or {}
        self.started = False

    @staticmethod
    def available() -> bool:
        return os.path.exists(POSTFIX) and os.geteuid() == 0

    def main_cf(self) -> dict[str, str]:
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "postfix.test",
            "mydomain": "postfix.test",
            "myorigin": "$myhostname",
            "mydestination": "$myhostname, localhost",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "smtputf8_enable": "yes",
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.root),
            "biff": "no",
            "smtpd_banner": "$myhostname ESMTP",
            # quick turns: the tests wait on the queue, not on timers
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "delay_warning_time": "0",
            "shlib_directory": "/usr/lib/postfix",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "meta_directory": "/etc/postfix",
        }
        if self.transports:
            settings["transport_maps"] = f"inline:{{{', '.join(f'{k}={v}' for k, v in self.transports.items())}}}"
        settings.update(self.overrides)
        return settings

    def write_config(self) -> None:
        for d in (self.config_dir, self.queue_dir, self.data_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # Postfix's daemons run as the postfix user and must reach their directories
        lines = [f"{k} = {v}" for k, v in self.main_cf().items()]
        (self.config_dir / "main.cf").write_text("\n".join(lines) + "\n")
        (self.config_dir / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        shutil.chown(self.data_dir, "postfix")

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([POSTFIX, "-c", str(self.config_dir), *args], capture_output=True, text=True,
                              timeout=60)

    def start(self, timeout: float = 20.0) -> "PostfixInstance":
        self.write_config()
        done = self._postfix("start")
        if done.returncode != 0:
            raise RuntimeError(f"postfix start failed: {(done.stderr or done.stdout).strip()} {self.log()[-1000:]}")
        self.started = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"220"):
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"postfix did not answer on port {self.port}: {self.log()[-2000:]}")

    def flush(self) -> None:
        """Deliver the queue now."""
        self._postfix("flush")

    def log(self) -> str:
        try:
            return self.log_file.read_text("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.started:
            self.started = False
            done = self._postfix("stop")
            if done.returncode != 0:  # stop it the hard way: the master's pid, never by name
                pid_file = self.queue_dir / "pid" / "master.pid"
                try:
                    os.kill(int(pid_file.read_text().split()[0]), 9)
                except (OSError, ValueError):
                    pass
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PostfixInstance":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
