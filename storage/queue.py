"""The retry spool as an operator sees it (`relay queue`, the admin metrics): list, show, flush, delete, hold."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, delete, false, func, or_, select, true, update

from storage.models import SpooledCopy

_spool = SpooledCopy.__table__
_LISTED = [c for c in _spool.c if c.name != "data"]


def _match(ids: list[str]) -> Any:
    """A spool row id (a number) or a relay queue id (every copy of that message)."""
    numbers = [int(x) for x in ids if x.isdigit()]
    names = [v for x in ids if not x.isdigit() for v in {x, x.upper()}]  # relay ids are upper-case hex
    return or_(_spool.c.id.in_(numbers), _spool.c.queue_id.in_(names))


def stats(engine: Engine, now: datetime) -> dict[str, Any]:
    """Depth of the spool: copies in all, held, due now, and the oldest copy's creation time."""
    with engine.connect() as conn:
        total, held, oldest = conn.execute(select(
            func.count(), func.count().filter(_spool.c.held.is_(True)), func.min(_spool.c.created_at))).one()
        due = conn.execute(select(func.count()).where(_spool.c.held.is_(False),
                                                      _spool.c.next_attempt_at <= now)).scalar_one()
    return {"total": total, "held": held, "due": due, "oldest": oldest}


def list_copies(engine: Engine, ids: list[str] | None = None) -> list[dict[str, Any]]:
    stmt = select(*_LISTED, func.length(_spool.c.data).label("size")).order_by(_spool.c.id)
    if ids:
        stmt = stmt.where(_match(ids))
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]


def copy_data(engine: Engine, row_id: int) -> bytes | None:
    with engine.connect() as conn:
        return conn.execute(select(_spool.c.data).where(_spool.c.id == row_id)).scalar_one_or_none()


def flush(engine: Engine, ids: list[str] | None, now: datetime) -> int:
    """Make copies due now (held ones stay held); a running relay sends them on its next pass.
    A copy a worker is sending right now (leased) keeps its lease, so it is never sent twice."""
    where = [_spool.c.held.is_(False), or_(_spool.c.lease_until.is_(None), _spool.c.lease_until < now)]
    if ids:
        where.append(_match(ids))
    with engine.begin() as conn:
        return conn.execute(update(_spool).where(and_(*where)).values(next_attempt_at=now, lease_until=None)).rowcount


def remove(engine: Engine, ids: list[str]) -> list[dict[str, Any]]:
    """Delete copies; returns what was deleted (for the audit and the answer)."""
    with engine.begin() as conn:
        rows = [dict(r) for r in conn.execute(select(*_LISTED).where(_match(ids))).mappings()]
        conn.execute(delete(_spool).where(_spool.c.id.in_([r["id"] for r in rows])))
    return rows


def hold(engine: Engine, ids: list[str] | None, held: bool, now: datetime) -> int:
    """Hold copies (never retried nor expired while held) or release them (due at once)."""
    where = [_spool.c.held.is_(not held)]
    if ids:
        where.append(_match(ids))
    values: dict[str, Any] = {"held": true() if held else false()}
    if not held:
        values["next_attempt_at"] = now
    with engine.begin() as conn:
        return conn.execute(update(_spool).where(and_(*where)).values(**values)).rowcount
