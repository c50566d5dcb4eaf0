"""SQLModel table models; every timestamp is a timezone-aware UTC datetime."""

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import DateTime, Dialect, Index, LargeBinary
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """DateTime that stores UTC and always reads back tz-aware UTC.

    SQLite keeps no offset (it returns naive values) and PostgreSQL returns the
    session time zone, so both directions are normalised here, once, for every
    query including WHERE comparisons.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive time is ambiguous; refusing it beats storing local time as UTC.
            raise ValueError(f"naive datetime {value!r}; pass a tz-aware datetime")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class AuditEntry(SQLModel, table=True):
    """One decision about one recipient of one message."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_client_at", "client", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    client: str
    list_key: str | None = None
    recipient: str
    stage: str
    rule: str
    verdict: str  # accept / reject / tempfail / deliver / spool / bounce ...
    code: int | None = None
    status: str | None = None  # enhanced status code, e.g. "5.7.1"
    reason: str = ""
    message_id: str | None = None
    queue_id: str = Field(index=True)


class SpooledCopy(SQLModel, table=True):
    """A per-recipient copy waiting for (re)delivery upstream."""

    __tablename__ = "spool"

    id: int | None = Field(default=None, primary_key=True)
    queue_id: str
    client: str
    mail_from: str
    recipient: str
    data: bytes = Field(sa_type=LargeBinary)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    attempts: int = 0
    last_error: str = ""
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
