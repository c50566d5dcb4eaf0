"""A Maildir as the upstream (demos, tests, hand-off to a local delivery agent): fsync'd before the 250."""
from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from pathlib import Path

from relay.delivery.result import LOCAL_BAD_ADDRESS, DeliveryResult, _temporary

_counter = itertools.count()


class MaildirUpstream:
    """Deliver into a Maildir (demos, tests, hand-off to a local delivery agent)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        for sub in ("tmp", "new", "cur"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        # Maildir names may not hold "/" or ":"; escape them as the Maildir specification says.
        self._host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")

    def _unique(self) -> str:
        # time.MusecPpidQcounter.host (the modern Maildir convention): unique per
        # host, process and delivery even within the same microsecond.
        now = time.time()
        sec, usec = int(now), int((now % 1) * 1_000_000)
        return f"{sec}.M{usec}P{os.getpid()}Q{next(_counter)}.{self._host}"

    async def deliver(self, mail_from: str, recipient: str, data: bytes) -> DeliveryResult:
        if any(c in addr for addr in (mail_from, recipient) for c in "\r\n\0"):
            # These would forge extra header lines in the trace block.
            return DeliveryResult("permanent", LOCAL_BAD_ADDRESS,
                                  "5.1.3 address contains control characters; not stored")
        trace = (f"Return-Path: <{mail_from}>\r\nDelivered-To: {recipient}\r\n").encode("utf-8")
        try:
            # Disk I/O and fsync block for milliseconds to seconds: keep them off the loop.
            name = await asyncio.to_thread(self._write, trace, data)
        except OSError as exc:
            return _temporary(f"4.3.0 maildir {self.directory}: {exc.strerror or type(exc).__name__}")
        return DeliveryResult("delivered", 250, f"2.0.0 stored in maildir as new/{name}")

    def _write(self, trace: bytes, data: bytes) -> str:
        name = self._unique()
        tmp = self.directory / "tmp" / name
        new_dir = self.directory / "new"
        # O_EXCL: never overwrite another delivery's file, whatever happens to names.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(trace)
                fh.write(data)
                fh.flush()
                # The relay answers 250 on the strength of this: the bytes must be on disk.
                os.fsync(fh.fileno())
            os.rename(tmp, new_dir / name)
        except BaseException:
            # A half-written file in tmp/ is garbage; readers never look there, but disks fill.
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        # The rename is only durable once the directory entry itself is on disk.
        dfd = os.open(new_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return name

    async def close(self) -> None:
        return None
