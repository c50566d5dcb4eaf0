"""Suppressed addresses stored with the local part case-folded, so a suppression holds in any case.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from datetime import datetime, timezone
from typing import Any, Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BATCH = 500  # IN lists of this many stay under every SQLite build's parameter limit

# Table stubs with just the columns used, not storage.models: migrations must not change when
# application code does.
_supp = sa.table(
    "suppression",
    sa.column("id", sa.Integer()), sa.column("scope", sa.String()), sa.column("client", sa.String()),
    sa.column("list_key", sa.String()), sa.column("address", sa.String()), sa.column("domain", sa.String()),
    sa.column("reason", sa.String()), sa.column("source", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
_audit = sa.table(
    "audit_log",
    sa.column("at", sa.DateTime(timezone=True)), sa.column("client", sa.String()),
    sa.column("list_key", sa.String()), sa.column("recipient", sa.String()), sa.column("stage", sa.String()),
    sa.column("rule", sa.String()), sa.column("verdict", sa.String()), sa.column("code", sa.Integer()),
    sa.column("status", sa.String()), sa.column("reason", sa.String()), sa.column("message_id", sa.String()),
    sa.column("queue_id", sa.String()),
)


def _fold(address: str) -> str:
    # relay.addresses.suppression_key as of this revision (copied for the reason above). Folded in
    # Python, not with SQL lower(): SQLite's folds ASCII only, PostgreSQL's follows the locale.
    local, at, domain = address.rpartition("@")
    return f"{local.casefold()}@{domain.lower()}" if at else address.casefold()


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]


def upgrade() -> None:
    conn = op.get_bind()
    # 1. which rows are not folded yet: every address is read once, only those are kept
    unfolded: dict[int, str] = {}
    scan = sa.select(_supp.c.id, _supp.c.address).where(_supp.c.address != "").execution_options(yield_per=10000)
    for row_id, address in conn.execute(scan):
        if _fold(address) != address:
            unfolded[row_id] = _fold(address)
    if not unfolded:
        return
    # 2. those rows, and every row already stored under one of their folded forms
    rows: dict[int, Any] = {}
    for ids in _chunks(list(unfolded)):
        rows.update((r.id, r) for r in conn.execute(sa.select(_supp).where(_supp.c.id.in_(ids))))
    for keys in _chunks(sorted(set(unfolded.values()))):
        rows.update((r.id, r) for r in conn.execute(sa.select(_supp).where(_supp.c.address.in_(keys))))
    groups: dict[tuple[str, str, str, str, str], list[Any]] = {}
    for r in rows.values():
        groups.setdefault((r.scope, r.client, r.list_key, _fold(r.address), r.domain), []).append(r)
    # 3. one row per group under ux_suppression_target: the oldest (in force the longest) stays and
    # takes the folded address; the others go, each with an audit row keeping its reason and source
    now = datetime.now(timezone.utc)
    drop: list[int] = []
    renames: list[dict[str, Any]] = []
    merged: list[dict[str, Any]] = []
    for (scope, client, list_key, key, _), members in groups.items():
        keep, *others = sorted(members, key=lambda r: (r.created_at, r.id))
        if keep.address != key:
            renames.append({"row_id": keep.id, "folded": key})
        for r in others:
            drop.append(r.id)
            where = scope + (f":{client}" if client else "") + (f"/{list_key}" if list_key else "")
            merged.append({
                "at": now, "client": client or "*", "list_key": list_key or None, "recipient": r.address,
                "stage": "admin", "rule": f"suppression.{scope}", "verdict": "merge", "code": None,
                "status": None, "message_id": None, "queue_id": "",
                "reason": f"{r.reason} ({where}) via {r.source or 'cli'}: merged into {key} "
                          f"(suppressions match the local part in any case)"})
    # deletes first: a renamed row must not meet the duplicate it replaces in the unique index
    for ids in _chunks(drop):
        conn.execute(sa.delete(_supp).where(_supp.c.id.in_(ids)))
    if renames:
        conn.execute(sa.update(_supp).where(_supp.c.id == sa.bindparam("row_id"))
                     .values(address=sa.bindparam("folded")), renames)
    if merged:
        conn.execute(sa.insert(_audit), merged)


def downgrade() -> None:
    # Nothing to undo: folded rows are valid for the older code too (it just matches them in one
    # case only), and the original spelling of a folded address is not kept.
    pass
