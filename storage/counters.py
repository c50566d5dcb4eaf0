"""Per-client, per-list, per-day delivery and feedback counters: a rate over a window is one indexed sum."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import Date, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel

COUNTER_FIELDS = ("delivered", "hard_bounces", "soft_bounces", "complaints", "sender_faults", "unsubscribes")


class ClientCounter(SQLModel, table=True):
    """How one client's list fared on one (UTC) day; rows are only ever incremented."""

    __tablename__ = "client_counter"

    client: str = Field(primary_key=True)
    list_name: str = Field(primary_key=True)
    day: date = Field(sa_type=Date, primary_key=True)
    delivered: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    sender_faults: int = 0
    unsubscribes: int = 0


_counter = ClientCounter.__table__


@dataclass(frozen=True)
class Counts:
    """Sums of the counters over a window."""

    delivered: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    sender_faults: int = 0
    unsubscribes: int = 0


def _check(deltas: dict[str, int]) -> dict[str, int]:
    unknown = set(deltas) - set(COUNTER_FIELDS)
    if unknown:
        raise ValueError(f"unknown counter {sorted(unknown)[0]!r}; counters are {', '.join(COUNTER_FIELDS)}")
    return {k: int(v) for k, v in deltas.items() if v}


def counter_upsert(conn: Any, client: str, list_name: str, day: date, deltas: dict[str, int]) -> None:
    """Add `deltas` to one row inside the caller's transaction, creating it at zero first.

    INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n is one atomic statement on both
    SQLite (3.24+) and PostgreSQL: concurrent workers and hosts never lose an increment, and no
    read-modify-write race exists to lock against.
    """
    deltas = _check(deltas)
    if not deltas:
        return
    dialect = conn.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(_counter).values(client=client, list_name=list_name, day=day,
                                   **{f: deltas.get(f, 0) for f in COUNTER_FIELDS})
    stmt = stmt.on_conflict_do_update(
        index_elements=["client", "list_name", "day"],
        set_={f: _counter.c[f] + stmt.excluded[f] for f in deltas})
    conn.execute(stmt)


# The group commit's share (storage.Store.write_batch): each copy the upstream accepted is one
# `deliver` audit row; their count per client, list and day goes into the same transaction, so the
# counter is exactly as durable as the audit log and costs one statement per commit, not per copy.
DELIVERED_UPSERT = (
    "INSERT INTO client_counter (client, list_name, day, delivered, hard_bounces, soft_bounces, complaints, "
    "sender_faults, unsubscribes) VALUES (?, ?, ?, ?, 0, 0, 0, 0, 0) ON CONFLICT (client, list_name, day) "
    "DO UPDATE SET delivered = client_counter.delivered + excluded.delivered")


def delivered_tuples(audit_rows: list[dict[str, Any]], postgres: bool) -> list[tuple[Any, ...]]:
    """(client, list, day, n) for the `deliver` rows among a batch of audit rows."""
    counts: dict[tuple[str, str, date], int] = {}
    for row in audit_rows:
        if row.get("verdict") == "deliver" and row.get("stage") == "delivery":
            at = row.get("at") or datetime.now(timezone.utc)
            key = (row["client"], row.get("list_key") or "", at.astimezone(timezone.utc).date())
            counts[key] = counts.get(key, 0) + 1
    return [(c, lk, day if postgres else day.isoformat(), n) for (c, lk, day), n in counts.items()]


class CounterQueries:
    """Mixed into storage.Store; every method is one short transaction."""

    engine: Any
    sql: Any  # storage.hotpath.DriverSql (the Store's)

    def add(self, client: str, list_name: str, day: date, **deltas: int) -> None:
        """Atomically add to the day's counters of one client's list (an upsert-increment)."""
        with self.sql.begin() as conn:
            counter_upsert(conn, client, list_name, day, deltas)

    def add_many(self, items: list[tuple[str, str, date, dict[str, int]]]) -> None:
        """Several (client, list, day, deltas) increments in one transaction."""
        if not items:
            return
        with self.sql.begin() as conn:
            for client, list_name, day, deltas in items:
                counter_upsert(conn, client, list_name, day, deltas)

    def totals(self, client: str, since: date, list_name: str | None = None) -> Counts:
        """Sums from `since` (inclusive) to today: one range scan of the primary key."""
        stmt = select(*(func.coalesce(func.sum(_counter.c[f]), 0) for f in COUNTER_FIELDS)).where(
            _counter.c.client == client, _counter.c.day >= since)
        if list_name is not None:
            stmt = stmt.where(_counter.c.list_name == list_name)
        with self.engine.connect() as conn:
            row = conn.execute(stmt).one()
        return Counts(*(int(v) for v in row))
