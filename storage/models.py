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
    upstream_queue_id: str | None = None  # the upstream's own id from its 250 reply (migration 0006)


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
    held: bool = False  # `relay queue hold`: never retried, never expired, until released (0006)


class Consent(SQLModel, table=True):
    """One address's permission to receive one client's list, with its provenance."""

    __tablename__ = "consent"
    __table_args__ = (Index("ux_consent_client_list_address", "client", "list_key", "address", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    client: str
    list_key: str
    address: str  # normalised: local part as given, domain lower-case IDNA
    status: str  # pending / confirmed / revoked
    method: str  # single / double
    source: str
    signed_up_at: datetime = Field(sa_type=UTCDateTime)
    ip: str | None = None
    disclosure: str = ""
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_contact_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    extra: str = ""  # JSON of extra columns kept from an import
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    user_agent: str = ""  # of the sign-up, when it came through the web
    confirm_sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # first mail of the window
    confirm_sends: int = 0  # confirmation mails sent in that window (at most 2: request + reminder)


class ConsentEvent(SQLModel, table=True):
    """The history of a consent record: every change, with when, how and from where."""

    __tablename__ = "consent_event"
    __table_args__ = (Index("ix_consent_event_lookup", "client", "address"),
                      Index("ix_consent_event_client_at", "client", "at"))

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime)
    client: str
    list_key: str
    address: str
    event: str  # created / confirmed / revoked / reminded / refreshed ...
    status: str  # the status after the event
    channel: str  # import / admin / api / form / one-click / page / mailto ...
    ip: str | None = None
    detail: str = ""


class Suppression(SQLModel, table=True):
    """Never send: to an address or a whole domain, globally, for a client, or for one list."""

    __tablename__ = "suppression"
    __table_args__ = (
        Index("ux_suppression_target", "scope", "client", "list_key", "address", "domain", unique=True),
        Index("ix_suppression_address", "address"),
        Index("ix_suppression_domain", "domain"),
        Index("ix_suppression_client_at", "client", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    scope: str  # global / client / list
    client: str = ""  # "" for global (NULLs would defeat the unique index)
    list_key: str = ""  # "" unless scope is list
    address: str = ""  # normalised, local part case-folded (relay.addresses.suppression_key); "" for a domain
    domain: str = ""  # set for a whole-domain entry ("@domain"), else ""
    reason: str  # unsubscribe / complaint / bounce / do-not-contact / manual
    source: str = ""  # channel or who: one-click, page, mailto, cli, import:FILE ...
    created_at: datetime = Field(sa_type=UTCDateTime)
