"""Writers of one SQLite file take turns on a lock file (flock), before SQLite's busy handler would make them sleep."""
from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from storage.engine import BUSY_TIMEOUT_MS, sqlite_file

log = logging.getLogger("relay.storage")

# Why: SQLite makes a writer that finds the file locked poll, sleeping 1, 2, 5, 10, 15, 20, 25,
# 25, 25, 50, 50, 100 ms between tries (sqliteDefaultBusyCallback). With `--workers 2` on one
# file the two group commits met at almost every message, and a writer that just missed the lock
# slept on well past its release: under load strace counted 1,244 such sleeps, 4.5 s in all, in
# 2,000 messages, while the worker's messages waited for that commit (with turns: none, and 5,192
# tries of 0.37 ms on average, 1.9 s, in the same run). Here a writer that finds the
# turn taken retries every POLL_S, so it starts at most that long after the holder is done. It
# orders only the writers that use it: SQLite's own lock still guards the file, so a writer that
# does not (`relay queue`'s commands, a process that could not open the lock file) stays correct.

# a turn is tried again this often while another process has it: a transaction is 0.1-2 ms
POLL_S = 0.0002
# Past this, write without the turn (SQLite's lock and its busy timeout still apply): a hung or
# stopped holder never stalls the other workers' writes for longer, and the two waits together
# (10 s) stay under the store's 15 s call bound, so a write the relay gave up on never commits later.
WAIT_S = BUSY_TIMEOUT_MS / 1000


class WriteQueue:
    """One turn at a time for the write transactions of every relay process on one SQLite file.

    A lock file beside the database (`<database>-writers`, empty, mode 0600 and owned as the
    database) is held with flock(LOCK_EX) around each transaction. flock belongs to the open
    file, which a fork shares: a forked child drops the parent's and opens its own. The threads of
    one process share it too, so a threading.Lock orders them; a thread that already has the turn
    (a write inside a write) just goes on. `path=None` (PostgreSQL, in-memory SQLite): no-op.
    """

    def __init__(self, path: str | None, owner_of: str | None = None, wait: float = WAIT_S):
        self.path = path
        self.wait = wait
        self.owner_of = owner_of  # the database: a lock file created as root is given to its owner
        self._fd = -1
        self._broken = False  # the lock file cannot be used here: writes go on without turns
        self._threads = threading.Lock()
        self._mine = threading.local()
        _QUEUES.add(self)

    def _forget(self) -> None:
        """In a forked child: the parent's open file (and any turn it held) stays the parent's."""
        self._threads = threading.Lock()
        self._mine = threading.local()
        self.close()

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            try:
                os.close(fd)  # a parent that still has it open keeps its lock
            except OSError:
                pass

    def _open(self) -> int:
        if self._fd < 0:
            assert self.path is not None
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            if os.geteuid() == 0 and self.owner_of:  # as SQLite does for its -wal and -shm files
                try:
                    st = os.stat(self.owner_of)
                    os.fchown(fd, st.st_uid, st.st_gid)
                except OSError:
                    pass
            self._fd = fd
        return self._fd

    def _give_up(self, exc: OSError) -> None:
        self._broken = True
        log.warning("SQLite writers' lock file %s unusable (%s); writers wait in SQLite's busy handler instead",
                    self.path, exc.strerror or exc)

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the write turn for the body; waits at most `wait` (WAIT_S), then goes on without it."""
        if self.path is None or self._broken or getattr(self._mine, "depth", 0):
            yield
            return
        deadline = time.monotonic() + self.wait
        if not self._threads.acquire(timeout=self.wait):
            yield  # another thread of this process held it all along: SQLite's lock decides
            return
        locked = False
        try:
            try:
                fd = self._open()
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        locked = True
                        break
                    except BlockingIOError:
                        now = time.monotonic()
                        if now >= deadline:
                            break  # a stuck holder: write without the turn
                        # every POLL_S while a transaction may still be ending, then less often
                        time.sleep(POLL_S if now < deadline - self.wait + 0.02 else 0.002)
            except OSError as exc:  # cannot open (permissions) or lock (ENOLCK on some network mounts)
                self._give_up(exc)
            self._mine.depth = 1
            try:
                yield
            finally:
                self._mine.depth = 0
                if locked:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                    except OSError:
                        pass
        finally:
            self._threads.release()


_QUEUES: "weakref.WeakSet[WriteQueue]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for queue in list(_QUEUES):
        queue._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)


def queue_for(engine: Any) -> WriteQueue:
    """The write queue of an engine: a SQLite file database has one, anything else a no-op one."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not sqlite_file(url.database):
        return WriteQueue(None)
    real = os.path.realpath(url.database)
    return WriteQueue(real + "-writers", owner_of=real)
