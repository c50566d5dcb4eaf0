"""Store: short synchronous transactions, plus a helper to run them from asyncio."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine, delete, func, insert, or_, select, text, update
from sqlmodel import Session
from sqlmodel import select as model_select  # yields model instances via Session.exec

from storage.threads import thread_pool
from storage import hotpath
from storage.accounts import AccountQueries
from storage.consent import ConsentQueries
from storage.counters import DELIVERED_UPSERT, CounterQueries, delivered_tuples
from storage.feedback import FeedbackQueries
from storage.hotpath import DriverSql
from storage.optin import OptinQueries
from storage.engine import make_engine
from storage.models import AuditEntry, SpooledCopy, utcnow

T = TypeVar("T")
log = logging.getLogger("relay.store")
CALL_TIMEOUT = 15.0

_spool = SpooledCopy.__table__


def _complete(rows: Iterable[Mapping[str, Any]], defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
    # executemany compiles one statement from the first row's keys, so every row
    # must carry the same keys; unknown keys still fail loudly in SQLAlchemy.
    return [{**defaults, **row} for row in rows]


class Store(ConsentQueries, OptinQueries, AccountQueries, CounterQueries, FeedbackQueries):
    """All database access of the relay; each method is one short transaction."""

    def __init__(self, url_or_engine: str | Engine, *, workers: int = 4, background_checkpoint: bool = False) -> None:
        """background_checkpoint (SQLite): commits leave WAL checkpoints to `checkpoint()`, which the
        relay calls every second; else SQLite runs one inside whichever commit fills the WAL."""
        self.engine = (make_engine(url_or_engine, autocheckpoint=not background_checkpoint)
                       if isinstance(url_or_engine, str) else url_or_engine)
        # A dedicated pool keeps slow DB calls from starving the loop's default executor.
        self._executor = thread_pool(workers, "store")
        self.sql = DriverSql(self.engine)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking Store method off the event loop; give up after CALL_TIMEOUT seconds.

        The caller then answers 451 4.3.0: a client waiting minutes on a stuck database is worse
        than one told to retry. (The thread itself is freed by the driver's own timeouts.)
        """
        loop = asyncio.get_running_loop()
        # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the call's result when a
        # cancellation arrives just as the call completes, swallowing the cancellation. That is
        # why `Runtime.retry_forever` sometimes went on running after RunningRelay.stop()
        # cancelled it (the 5 s shutdown stall seen in tests).
        async with asyncio.timeout(CALL_TIMEOUT):
            return await loop.run_in_executor(self._executor, fn, *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """A hot-path read (`suppression_for`, `list_lookup`): on the event loop's own connection
        when `open_loop_reader()` gave it one (SQLite), else, or when that meets a lock, as `run`."""
        if self.sql.loop_reads:
            try:
                return fn(*args)
            except sqlite3.OperationalError as error:
                log.debug("read on the event loop's connection failed (%s); retrying on a store thread", error)
        return await self.run(fn, *args)

    def open_loop_reader(self) -> bool:
        """Call from the event loop's thread; see DriverSql.open_loop_reader."""
        return self.sql.open_loop_reader()

    def close_loop_reader(self) -> None:
        self.sql.close_loop_reader()

    @property
    def counters(self) -> CounterQueries:
        """The client counters (CounterQueries.add / totals), also mixed into the Store itself."""
        return self

    def close(self) -> None:
        self.sql.close_loop_reader()
        self._executor.shutdown(wait=True)
        self.sql.writers.close()
        self.engine.dispose()

    def checkpoint(self) -> None:
        """Copy committed WAL pages into the SQLite database file (PASSIVE: never waits for a lock,
        never blocks a writer); nothing on PostgreSQL."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # -- audit log -------------------------------------------------------------

    def record_decisions(self, rows: list[dict[str, Any]]) -> None:
        """Insert one message's per-recipient audit rows in a single executemany."""
        self.write_batch(rows, [])

    def audit_rows(self, client: str | None = None, since: datetime | None = None) -> list[AuditEntry]:
        stmt = model_select(AuditEntry).order_by(AuditEntry.id)  # type: ignore[arg-type]
        if client is not None:
            stmt = stmt.where(AuditEntry.client == client)
        if since is not None:
            stmt = stmt.where(AuditEntry.at >= since)
        # Loaded attributes stay readable after the session closes.
        with Session(self.engine) as session:
            return list(session.exec(stmt).all())

    # -- spool -----------------------------------------------------------------

    def spool_add(self, rows: list[dict[str, Any]]) -> None:
        """Persist copies for later delivery; durable once this returns."""
        if not rows:
            return
        now = utcnow()
        defaults = {"created_at": now, "next_attempt_at": now, "attempts": 0,
                    "last_error": "", "lease_until": None}
        with self.sql.begin() as conn:
            conn.execute(insert(_spool), _complete(rows, defaults))

    def spool_claim_due(self, now: datetime, limit: int, lease_seconds: float) -> list[SpooledCopy]:
        """Lease up to `limit` due copies; a leased copy is never handed to anyone else."""
        free = or_(_spool.c.lease_until.is_(None), _spool.c.lease_until < now)
        due = (
            select(_spool.c.id)
            .where(_spool.c.next_attempt_at <= now, free, _spool.c.held.is_(False))
            .order_by(_spool.c.next_attempt_at, _spool.c.id)
            .limit(limit)
            # PostgreSQL: concurrent claimers skip each other's rows instead of
            # queueing behind them. SQLite renders no FOR UPDATE; there the single
            # UPDATE runs under the database write lock, so the second claimer
            # picks its rows only after the first one's lease is committed.
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(_spool)
            .where(_spool.c.id.in_(due), free)  # guard repeated: re-checked on the locked row
            .values(lease_until=now + timedelta(seconds=lease_seconds))
            .returning(*_spool.c)
        )
        with self.sql.begin() as conn:
            rows = conn.execute(claim).mappings().all()
        copies = [SpooledCopy(**row) for row in rows]
        # RETURNING order is unspecified; hand them out oldest-due first.
        return sorted(copies, key=lambda c: (c.next_attempt_at, c.id or 0))

    def spool_renew(self, id: int, held: datetime | None, until: datetime) -> bool:
        """Extend the lease `held` on one copy to `until`; False if another claimer took it meanwhile.

        A batch claim leases every copy at once, but they are sent one after the other: with a slow
        upstream the last ones' leases run out before their turn, and another worker may claim them.
        Renewing (compare-and-set on the lease we were given) just before sending lets exactly one of
        the two go on.
        """
        with self.sql.begin() as conn:
            done = conn.execute(
                update(_spool)
                .where(_spool.c.id == id, _spool.c.lease_until == held)
                .values(lease_until=until)
            )
        return done.rowcount == 1

    def spool_release(self, held: list[tuple[int, list[datetime]]]) -> None:
        """Give back leases (copy id, the leases we may hold on it) so the copies are due again at once.

        More than one lease when a renewal was under way as the relay stopped: it may or may not have
        been written, and a copy whose lease is someone else's is left alone either way.
        """
        if not held:
            return
        with self.sql.begin() as conn:
            for id, leases in held:
                conn.execute(update(_spool).where(_spool.c.id == id, _spool.c.lease_until.in_(leases))
                             .values(lease_until=None))

    def spool_done(self, id: int) -> None:
        with self.sql.begin() as conn:
            conn.execute(delete(_spool).where(_spool.c.id == id))

    def spool_retry(self, id: int, next_attempt_at: datetime, error: str, held: datetime | None = None) -> None:
        """Record a failed attempt and release the lease until `next_attempt_at`.

        With `held`, only while that lease is still ours: a copy another worker has claimed since
        is that worker's to schedule, not ours to reset.
        """
        guard = [_spool.c.id == id] + ([_spool.c.lease_until == held] if held is not None else [])
        with self.sql.begin() as conn:
            conn.execute(
                update(_spool)
                .where(*guard)
                .values(attempts=_spool.c.attempts + 1, last_error=error,
                        next_attempt_at=next_attempt_at, lease_until=None)
            )

    def spool_count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(_spool)).scalar_one()

    def write_batch(self, audit_rows: list[dict[str, Any]],
                    contacts: list[tuple[str, str, list[str], datetime]]) -> None:
        """Many messages' audit rows and last-contact updates in one transaction (group commit)."""
        steps = self.touch_last_contact_steps(contacts)
        if audit_rows:
            steps.insert(0, (hotpath.INSERT_AUDIT, hotpath.audit_tuples(audit_rows, utcnow(), self.sql.time), True))
            delivered = delivered_tuples(audit_rows, self.sql.postgres)
            if delivered:  # client_counter.delivered, in the same commit as the copies' audit rows
                steps.append((DELIVERED_UPSERT, delivered, True))
        if steps:
            self.sql.write(steps)
