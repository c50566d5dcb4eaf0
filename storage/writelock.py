"""Writers of one SQLite file wait their turn in the kernel (flock), not in SQLite's busy handler."""
from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

# Why: SQLite makes a writer that finds the file locked poll, sleeping 1, 2, 5, 10, 15, 20, 25,
# 25, ... ms between tries (sqliteDefaultBusyCallback). With `--workers 2` on one file the two
# group commits meet at almost every message, and a writer that just missed the lock slept on
# past its release: under load strace counted 1,244 such sleeps, 4.5 s in all, in 2,000 messages,
# while the worker's messages waited for that commit and its core idled. A blocking flock wakes
# the next writer the moment the holder lets go. It only orders our own hot-path writers: any
# other writer (the CLI, SQLAlchemy Core paths) still meets SQLite's lock and busy timeout, so
# correctness never depends on it.


class WriteQueue:
    """One turn at a time for the write transactions of every relay process on one SQLite file.

    A lock file beside the database (`<database>-writers`, mode 0600 as the database) is held
    with flock(LOCK_EX) around each transaction. flock belongs to the open file, which a fork
    shares: a forked child drops the parent's and opens its own, and a threading.Lock orders the threads
    of one process, which would share it. `path=None` (PostgreSQL, in-memory SQLite): no-op.
    """

    def __init__(self, path: str | None):
        self.path = path
        self._fd = -1
        self._threads = threading.Lock()
        _QUEUES.add(self)

    def _forget(self) -> None:
        """In a forked child: the parent's open file (and any turn it held) stays the parent's."""
        self._threads = threading.Lock()
        if self._fd >= 0:
            try:
                os.close(self._fd)  # the parent still has it open: its lock, if any, stays held
            except OSError:
                pass
        self._fd = -1

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the write turn for the body. The holder is a short transaction whose own waits are
        bounded (SQLite's busy timeout), so the wait here is bounded by those."""
        if self.path is None:
            yield
            return
        with self._threads:
            try:
                if self._fd < 0:
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fd = self._fd
            except OSError:
                yield  # a read-only directory: the writers fall back to SQLite's own waiting
                return
            fcntl.flock(fd, fcntl.LOCK_EX)  # releases the GIL while it waits
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)


_QUEUES: "weakref.WeakSet[WriteQueue]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for queue in list(_QUEUES):
        queue._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)


def queue_for(engine: object) -> WriteQueue:
    """The write queue of an engine: a SQLite file database has one, anything else a no-op one."""
    url = engine.url  # type: ignore[attr-defined]
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return WriteQueue(None)
    return WriteQueue(os.path.abspath(database) + "-writers")
