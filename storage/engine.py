"""Engine construction: SQLite (WAL, durable commits) by default, PostgreSQL by URL."""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url

BUSY_TIMEOUT_MS = 5000


def _enable_wal(cur: sqlite3.Cursor) -> None:
    # Switching a new file to WAL needs an exclusive lock and SQLite does not run
    # the busy handler for it, so relays starting together would fail with
    # "database is locked". Retry until the timeout; the mode is persistent, so
    # usually another connection has already done it.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _no_autocheckpoint(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # WAL lets readers run alongside the single writer.
        _enable_wal(cur)
        # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power
        # loss, and the relay answers 250 only after a commit.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


def sqlite_file(database: str | None) -> bool:
    """A SQLite URL's database names a plain file (not in-memory, not a `file:` URI)."""
    return bool(database) and database != ":memory:" and not database.startswith("file:")  # type: ignore[union-attr]


def _create_private(database: str | None) -> None:
    """Create a new SQLite file readable by its owner only: it holds consent records (personal data) and
    spooled mail. SQLite gives its -wal and -shm files the database file's mode."""
    if not sqlite_file(database):
        return
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError:
        pass  # a directory that does not exist: SQLite's own error says so


def make_engine(url: str, autocheckpoint: bool = True) -> Engine:
    """Create an Engine for a sqlite:/// or postgresql+psycopg:// URL.

    autocheckpoint=False (SQLite): commits never run a WAL checkpoint; the owner checkpoints
    in the background (`Store.checkpoint`), so a commit costs one WAL fsync and no more.
    """
    if make_url(url).get_backend_name() == "sqlite":
        _create_private(make_url(url).database)
        # Store methods run on a thread pool, so connections move between threads.
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        if not autocheckpoint:
            event.listen(engine, "connect", _no_autocheckpoint)
        return engine
    # pre_ping survives server restarts; a small pool matches the small executor.
    # A partitioned network must fail in seconds (the relay answers 451 4.3.0), not hang
    # until TCP gives up: bound connecting, unacknowledged sends and idle silence.
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args={
        "connect_timeout": 5, "tcp_user_timeout": 8000,
        "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 2,
    })
