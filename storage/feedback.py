"""Feedback storage: events (bounces, complaints, unsubscribes), their effects in one transaction, the webhook outbox."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Index, Text, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from storage.counters import counter_upsert
from storage.models import AuditEntry, Suppression, UTCDateTime

_audit = AuditEntry.__table__
_supp = Suppression.__table__


class FeedbackEvent(SQLModel, table=True):
    """Something that happened to a delivered copy: a bounce, a complaint, an unsubscribe."""

    __tablename__ = "feedback_event"
    __table_args__ = (Index("ix_feedback_event_client_id", "client", "id"),
                      Index("ix_feedback_event_soft", "client", "recipient", "category", "at"))

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime)
    client: str
    list_key: str = ""
    recipient: str = ""  # suppression key (local part folded); "" when the report named none we trust
    kind: str  # bounce / complaint / unsubscribe / feedback (an ARF report of another type)
    category: str  # hard / soft / sender / complaint / unsubscribe / other
    status: str = ""  # RFC 3463 enhanced status, or the ARF Feedback-Type
    detail: str = ""  # diagnostic or reason, one line
    queue_id: str = ""
    source: str = ""  # how it reached us: bounce-address / postmaster / fbl / abuse / upstream / cli ...
    dedupe: str = Field(unique=True)  # the same report twice (an MTA retrying) counts once


class WebhookDelivery(SQLModel, table=True):
    """An event waiting to be POSTed to a client's webhook (durable outbox)."""

    __tablename__ = "webhook_outbox"

    id: int | None = Field(default=None, primary_key=True)
    client: str
    event_id: int
    payload: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_type=UTCDateTime)
    next_attempt_at: datetime = Field(sa_type=UTCDateTime, index=True)
    attempts: int = 0
    last_error: str = ""
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    failed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # given up after the last retry


_event = FeedbackEvent.__table__
_outbox = WebhookDelivery.__table__


@dataclass(frozen=True)
class FeedbackRecord:
    """One event and what it must do, decided by relay.feedback; stored with its effects atomically."""

    at: datetime
    client: str
    list_key: str
    recipient: str  # suppression key, or ""
    kind: str
    category: str
    status: str
    detail: str
    queue_id: str
    source: str
    dedupe: str
    counter: str | None = None  # which client_counter field to increment
    suppress: str | None = None  # suppression reason (client scope) to add at once
    soft_limit: tuple[int, int] | None = None  # (count, days): that many soft bounces → suppressed (inactive)
    webhook: bool = False  # the client has a webhook: queue the event for it


@dataclass(frozen=True)
class FeedbackResult:
    new: bool  # False: the same report was already recorded, nothing was done again
    event_id: int | None
    suppressed: bool  # a suppression was added by this event


def event_payload(row: dict[str, Any], suppressed: bool) -> dict[str, Any]:
    """The JSON clients get for an event, over the API and in webhooks alike."""
    return {"id": row["id"], "type": row["kind"], "category": row["category"], "list": row["list_key"],
            "recipient": row["recipient"], "status": row["status"], "detail": row["detail"],
            "queue_id": row["queue_id"], "at": row["at"].isoformat(), "suppressed": suppressed}


class _Duplicate(Exception):
    pass


def _insert_ignore(conn: Any, table: Any, row: dict[str, Any]) -> bool:
    """Insert unless a unique index already holds it; True when a row was added."""
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    # RETURNING, not rowcount: psycopg's rowcount for ON CONFLICT DO NOTHING was not 1 for an added row
    stmt = dialect_insert(table).values(**row).on_conflict_do_nothing().returning(table.c.id)
    return conn.execute(stmt).first() is not None


class FeedbackQueries:
    """Mixed into storage.Store; every method is one short transaction."""

    engine: Any
    sql: Any  # storage.hotpath.DriverSql (the Store's)

    def record_feedback(self, rec: FeedbackRecord) -> FeedbackResult:
        """The event, its counter, its suppression, audit rows and webhook entry: all or nothing."""
        row = {"at": rec.at, "client": rec.client, "list_key": rec.list_key, "recipient": rec.recipient,
               "kind": rec.kind, "category": rec.category, "status": rec.status[:64], "detail": rec.detail[:500],
               "queue_id": rec.queue_id, "source": rec.source, "dedupe": rec.dedupe[:255]}
        try:
            with self.sql.begin() as conn:
                try:
                    event_id = conn.execute(insert(_event).values(**row).returning(_event.c.id)).scalar_one()
                except IntegrityError:
                    raise _Duplicate() from None
                if rec.counter:
                    counter_upsert(conn, rec.client, rec.list_key, rec.at.date(), {rec.counter: 1})
                reason = rec.suppress
                source = f"feedback:{rec.kind}"
                if reason is None and rec.soft_limit and rec.recipient and rec.category == "soft":
                    limit, days = rec.soft_limit
                    soft = conn.execute(select(func.count()).select_from(_event).where(
                        _event.c.client == rec.client, _event.c.recipient == rec.recipient,
                        _event.c.category == "soft", _event.c.at > rec.at - timedelta(days=days))).scalar_one()
                    if soft >= limit:
                        reason, source = "bounce", "feedback:inactive"
                suppressed = False
                if reason and rec.recipient:
                    supp = {"scope": "client", "client": rec.client, "list_key": "", "address": rec.recipient,
                            "domain": "", "reason": reason, "source": source, "created_at": rec.at}
                    suppressed = _insert_ignore(conn, _supp, supp)
                audit = [_audit_row(rec, event_id)]
                if suppressed:
                    audit.append(_audit_row(rec, event_id, suppressed_as=(reason, source)))
                conn.execute(insert(_audit), audit)
                if rec.webhook:
                    payload = event_payload(dict(row, id=event_id), suppressed)
                    conn.execute(insert(_outbox).values(
                        client=rec.client, event_id=event_id, payload=json.dumps(payload, sort_keys=True),
                        created_at=rec.at, next_attempt_at=rec.at, attempts=0, last_error=""))
        except _Duplicate:
            return FeedbackResult(False, None, False)
        return FeedbackResult(True, event_id, suppressed)

    def copies_of(self, queue_id: str) -> list[tuple[str, str, str]]:
        """(client, list, recipient) of every copy of one message the relay accepted: the decision rows,
        committed before any copy left, so a report about any of them finds its copy."""
        stmt = (select(_audit.c.client, _audit.c.list_key, _audit.c.recipient).distinct()
                .where(_audit.c.queue_id == queue_id, _audit.c.verdict.in_(("accept", "deliver", "spool"))))
        with self.engine.connect() as conn:
            return [(c, lk or "", r) for c, lk, r in conn.execute(stmt).all()]

    # -- what clients read (the HTTP API) -----------------------------------------

    def feedback_events(self, client: str, since: datetime | None = None, after_id: int = 0,
                        limit: int = 100) -> list[dict[str, Any]]:
        stmt = select(_event).where(_event.c.client == client, _event.c.id > after_id)
        if since is not None:
            stmt = stmt.where(_event.c.at >= since)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(_event.c.id).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def client_suppressions(self, client: str, since: datetime | None = None, after_id: int = 0,
                            limit: int = 100) -> list[dict[str, Any]]:
        """This client's own suppressions (client-wide and its lists'), never global or other clients' rows."""
        stmt = select(_supp).where(_supp.c.client == client, _supp.c.scope.in_(("client", "list")),
                                   _supp.c.id > after_id)
        if since is not None:
            stmt = stmt.where(_supp.c.created_at >= since)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(_supp.c.id).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    # -- the webhook outbox -------------------------------------------------------

    def outbox_claim(self, now: datetime, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
        """Lease up to `limit` due entries (as the retry spool does: skip-locked on PostgreSQL)."""
        free = or_(_outbox.c.lease_until.is_(None), _outbox.c.lease_until < now)
        due = (select(_outbox.c.id).where(_outbox.c.next_attempt_at <= now, _outbox.c.failed_at.is_(None), free)
               .order_by(_outbox.c.next_attempt_at, _outbox.c.id).limit(limit).with_for_update(skip_locked=True))
        claim = (update(_outbox).where(_outbox.c.id.in_(due), free)
                 .values(lease_until=now + timedelta(seconds=lease_seconds)).returning(*_outbox.c))
        with self.sql.begin() as conn:
            rows = conn.execute(claim).mappings().all()
        return sorted((dict(r) for r in rows), key=lambda r: r["id"])

    def outbox_done(self, id: int) -> None:
        with self.sql.begin() as conn:
            conn.execute(delete(_outbox).where(_outbox.c.id == id))

    def outbox_retry(self, id: int, next_attempt_at: datetime | None, error: str, at: datetime) -> None:
        """A failed POST: try again at `next_attempt_at`, or give up (None) and keep the row as failed."""
        values: dict[str, Any] = {"attempts": _outbox.c.attempts + 1, "last_error": error[:500], "lease_until": None}
        if next_attempt_at is None:
            values["failed_at"] = at
        else:
            values["next_attempt_at"] = next_attempt_at
        with self.sql.begin() as conn:
            conn.execute(update(_outbox).where(_outbox.c.id == id).values(**values))

    def outbox_rows(self, client: str | None = None) -> list[dict[str, Any]]:
        stmt = select(_outbox).order_by(_outbox.c.id)
        if client is not None:
            stmt = stmt.where(_outbox.c.client == client)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings().all()]


def _audit_row(rec: FeedbackRecord, event_id: int,
               suppressed_as: tuple[str, str] | None = None) -> dict[str, Any]:
    """Feedback in the audit log: stage `feedback`; a suppression it caused is an `admin` row as any other."""
    if suppressed_as is not None:
        reason, source = suppressed_as
        return {"at": rec.at, "client": rec.client, "list_key": None, "recipient": rec.recipient,
                "stage": "admin", "rule": "suppression.client", "verdict": "suppress", "code": None, "status": None,
                "reason": f"{reason} (client:{rec.client}) via {source}", "message_id": None,
                "queue_id": rec.queue_id}
    return {"at": rec.at, "client": rec.client, "list_key": rec.list_key or None, "recipient": rec.recipient or "-",
            "stage": "feedback", "rule": f"feedback.{rec.kind}.{rec.category}", "verdict": rec.kind,
            "code": None, "status": rec.status[:32] or None, "reason": f"#{event_id} via {rec.source}: {rec.detail}"[:500],
            "message_id": None, "queue_id": rec.queue_id}
