"""Per-client delivery and feedback counters by list and day (the bounce-and-complaint issue's table)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Field, SQLModel

COUNT_FIELDS = ("delivered", "hard_bounces", "soft_bounces", "complaints", "sender_faults", "unsubscribes")


class ClientCounter(SQLModel, table=True):
    """How much one client sent on one list on one day, and what came back."""

    __tablename__ = "client_counter"

    client: str = Field(primary_key=True)
    list_name: str = Field(primary_key=True)
    day: date = Field(primary_key=True)
    delivered: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    sender_faults: int = 0
    unsubscribes: int = 0


@dataclass(frozen=True)
class Counts:
    delivered: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    sender_faults: int = 0
    unsubscribes: int = 0


_counter = ClientCounter.__table__


class CounterQueries:
    """Mixed into storage.Store (needs `self.engine`)."""

    engine: object

    def add(self, client: str, list_name: str, day: date, **deltas: int) -> None:
        """Add to one day's counters, creating the row: one atomic upsert, safe from any worker or host."""
        unknown = set(deltas) - set(COUNT_FIELDS)
        if unknown:
            raise KeyError(f"unknown counter {sorted(unknown)[0]!r}")
        deltas = {k: int(v) for k, v in deltas.items() if v}
        if not deltas:
            return
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert  # type: ignore[attr-defined]
        stmt = insert(_counter).values(client=client, list_name=list_name, day=day, **deltas)
        stmt = stmt.on_conflict_do_update(
            index_elements=["client", "list_name", "day"],
            set_={k: _counter.c[k] + stmt.excluded[k] for k in deltas})
        with self.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(stmt)

    def totals(self, client: str, since: date, list_name: str | None = None) -> Counts:
        """The sums from `since` (inclusive) on, over every list or one."""
        cols = [func.coalesce(func.sum(_counter.c[k]), 0) for k in COUNT_FIELDS]
        stmt = select(*cols).where(_counter.c.client == client, _counter.c.day >= since)
        if list_name is not None:
            stmt = stmt.where(_counter.c.list_name == list_name)
        with self.engine.connect() as conn:  # type: ignore[attr-defined]
            row = conn.execute(stmt).one()
        return Counts(*(int(v) for v in row))
