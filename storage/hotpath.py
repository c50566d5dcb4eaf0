"""The per-message queries in plain driver SQL: SQLAlchemy's execution machinery was most of their cost."""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from storage.writelock import queue_for

# Each message runs a suppression probe at RCPT, a list lookup after DATA and its share of a group
# commit. Through SQLAlchemy Core each call cost 60-150 µs of Python on SQLite against 10-20 µs
# in the driver, a fifth of the relay's CPU under load. These stay in step with storage.models
# (tests/test_storage.py and tests/test_consent_suppression.py hold them to it); everything else keeps Core.

# How long a read on the event loop's own SQLite connection may wait for a lock before it gives up
# and goes to a store thread (which waits the full busy timeout). In WAL mode readers do not wait
# for the writer, so this is only reached in rare cases (an exclusive-locking connection, recovery).
LOOP_READ_BUSY_MS = 20

AUDIT_COLUMNS = ("at", "client", "list_key", "recipient", "stage", "rule", "verdict", "code", "status",
                 "reason", "message_id", "queue_id", "upstream_queue_id")
_AUDIT_DEFAULTS = {"list_key": None, "code": None, "status": None, "reason": "", "message_id": None,
                   "upstream_queue_id": None}


def aware(value: Any) -> Any:
    """A time as PostgreSQL takes it; a naive datetime is refused, as storage.models.UTCDateTime does."""
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}; pass a tz-aware datetime")
    return value


def sqlite_time(value: Any) -> Any:
    """The text form SQLAlchemy's SQLite DateTime writes (UTC, no offset), so reads and comparisons match."""
    if isinstance(value, datetime):
        aware(value)
        if value.tzinfo is not timezone.utc:
            value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")
    return value


def utc(value: Any) -> Any:
    """A stored time as an aware UTC datetime, whichever form the driver returns it in."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return value


class DriverSql:
    """Runs hand-written SQL on a pooled DBAPI connection of the engine, in the driver's paramstyle.

    SQL is written with `?` placeholders and `IN ?` for a list; for psycopg they become `%s` and
    `= ANY(%s)` (one array parameter, so the statement text stays the same for any list length).
    Lists in one statement may differ in length (addresses and their domains).
    """

    def __init__(self, engine: Any):
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self._texts: dict[tuple[str, int], str] = {}
        self.time = aware if self.postgres else sqlite_time
        # called with each statement's text before it runs (tests count queries per message)
        self.listeners: list[Callable[[str], None]] = []
        self._loop_conn: sqlite3.Connection | None = None
        self._loop_thread: int | None = None
        # the hot path's write transactions take turns here first (storage.writelock)
        self.writers = queue_for(engine)

    def open_loop_reader(self) -> bool:
        """SQLite file database: give the calling (event-loop) thread its own read-only connection.

        Under load a hot-path read sent to a store thread cost about 0.1 ms of hops and GIL
        hand-offs for an index probe of 5-10 µs (1,000,000 consent rows): 12 % of one process's
        throughput for the two reads a message makes. A read from this thread then runs right here, waiting at most LOOP_READ_BUSY_MS
        for a lock (sqlite3.OperationalError: the caller retries on a thread). False: not SQLite
        on a file, every read stays on the threads.
        """
        url = self.engine.url
        if self.postgres or url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return False
        # autocommit: no read snapshot outlives its query, so none holds back a WAL checkpoint
        conn = sqlite3.connect(url.database, check_same_thread=True, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={LOOP_READ_BUSY_MS}")
        conn.execute("PRAGMA query_only=1")
        self.close_loop_reader()
        self._loop_conn, self._loop_thread = conn, threading.get_ident()
        return True

    def close_loop_reader(self) -> None:
        conn, owner = self._loop_conn, self._loop_thread
        self._loop_conn = self._loop_thread = None
        if conn is not None and owner == threading.get_ident():  # sqlite3 closes only on its own thread
            conn.close()

    @property
    def loop_reads(self) -> bool:
        """Reads from the calling thread run on its own connection (see open_loop_reader)."""
        return self._loop_conn is not None and threading.get_ident() == self._loop_thread

    def _text(self, sql: str, list_lens: tuple[int, ...]) -> str:
        """The statement in the driver's paramstyle; on SQLite each `IN ?` gets its own list's length."""
        key = (sql, () if self.postgres else list_lens)
        text = self._texts.get(key)
        if text is None:
            if self.postgres:
                text = sql.replace("IN ?", "= ANY(?)").replace("?", "%s")
            else:
                pieces = sql.split("IN ?")
                if len(pieces) - 1 != len(list_lens):
                    raise ValueError(f"{len(pieces) - 1} `IN ?` in the statement, {len(list_lens)} lists given")
                text = pieces[0] + "".join(
                    "IN (" + ",".join("?" * n) + ")" + rest for n, rest in zip(list_lens, pieces[1:]))
            if len(self._texts) < 4096:  # SQLite texts vary with the list lengths; bound the cache
                self._texts[key] = text
        return text

    def _params(self, params: Iterable[Any]) -> tuple[tuple[Any, ...], tuple[int, ...]]:
        # SQLite spreads a list over one placeholder each; psycopg takes it as one array
        flat: list[Any] = []
        list_lens: list[int] = []
        for p in params:
            if isinstance(p, list):
                list_lens.append(len(p))
                if self.postgres:
                    flat.append(p)
                else:
                    flat.extend(p)
            else:
                flat.append(p)
        return tuple(flat), tuple(list_lens)

    def fetch(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """One read; each list among the parameters fills one `IN ?`, in order."""
        flat, list_lens = self._params(params)
        text = self._text(sql, list_lens)
        for listener in self.listeners:
            listener(text)
        if self.loop_reads:
            return self._loop_conn.execute(text, flat).fetchall()  # type: ignore[union-attr]
        conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            cur.execute(text, flat)
            rows = cur.fetchall()
            cur.close()
        finally:
            conn.close()  # back to the pool, which rolls back the read transaction
        return rows

    @contextmanager
    def begin(self) -> Iterator[Any]:
        """`engine.begin()` in the write turn: every Store write that goes through SQLAlchemy."""
        with self.writers.turn(), self.engine.begin() as conn:
            yield conn

    def write(self, steps: Iterable[tuple[str, Any, bool]]) -> None:
        """Statements in one transaction: (sql, parameters, many); committed, or rolled back and raised."""
        with self.writers.turn():
            self._write(steps)

    def _write(self, steps: Iterable[tuple[str, Any, bool]]) -> None:
        conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            for sql, params, many in steps:
                if many:
                    text = self._text(sql, ())
                else:
                    params, list_lens = self._params(params)
                    text = self._text(sql, list_lens)
                for listener in self.listeners:
                    listener(text)
                (cur.executemany if many else cur.execute)(text, params)
            cur.close()
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()


def audit_tuples(rows: Iterable[Mapping[str, Any]], at: datetime, time: Callable[[Any], Any]) -> list[tuple[Any, ...]]:
    """Audit rows as driver tuples in AUDIT_COLUMNS order; `at` stands in for a row without one, and
    `time` (DriverSql.time) puts each row's time in the database's form. An unknown key is an error."""
    out = []
    for row in rows:
        full = {"at": at, **_AUDIT_DEFAULTS, **row}
        if len(full) != len(AUDIT_COLUMNS):
            unknown = set(full) - set(AUDIT_COLUMNS)
            raise KeyError(f"audit row: unknown {sorted(unknown)} or missing {sorted(set(AUDIT_COLUMNS) - set(full))}")
        full["at"] = time(full["at"])
        out.append(tuple(full[c] for c in AUDIT_COLUMNS))
    return out


INSERT_AUDIT = f"INSERT INTO audit_log ({', '.join(AUDIT_COLUMNS)}) VALUES ({', '.join('?' * len(AUDIT_COLUMNS))})"
TOUCH_LAST_CONTACT = "UPDATE consent SET last_contact_at = ? WHERE client = ? AND list_key = ? AND address IN ?"
# suppression.address holds relay.addresses.suppression_key (local part case-folded); callers fold
# the address they ask about, so this probe and LIST_LOOKUP's suppression half stay index lookups
SUPPRESSION_PROBE = (
    "SELECT scope, client, reason, created_at, address, domain FROM suppression WHERE address = ? "
    "UNION ALL "
    "SELECT scope, client, reason, created_at, address, domain FROM suppression WHERE domain IN ?")
# After DATA, one statement for a message's recipients: their consent records on the list, and
# every suppression of their addresses (folded) or domains (and parent domains), whatever its
# scope. The scope is filtered in Python (a WHERE on scope would walk the scope index, see above);
# rereading global and client-wide entries catches those added while the client sent DATA, and lets
# a client-wide or global `unsubscribe` be decided once the list's kind is known.
# Columns: kind, address, status|reason, method|scope, source|client, signed_up_at|created_at,
# confirmed_at, last_contact_at, revoked_at, list_key, domain.
LIST_LOOKUP = (
    "SELECT 'c', address, status, method, source, signed_up_at, confirmed_at, last_contact_at, revoked_at, "
    "NULL, NULL FROM consent WHERE client = ? AND list_key = ? AND address IN ? "
    "UNION ALL "
    "SELECT 's', address, reason, scope, client, created_at, NULL, NULL, NULL, list_key, domain "
    "FROM suppression WHERE address IN ? "
    "UNION ALL "
    "SELECT 's', address, reason, scope, client, created_at, NULL, NULL, NULL, list_key, domain "
    "FROM suppression WHERE domain IN ?")
