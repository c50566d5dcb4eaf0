"""Consent and suppression queries: one round trip per stage per message, bulk writes for imports."""
from __future__ import annotations

import json
from functools import lru_cache
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from sqlmodel import select as model_select

from storage import hotpath
from storage.hotpath import DriverSql
from storage.hotpath import sqlite_time as _sqlite_time
from storage.hotpath import utc as _utc
from storage.models import AuditEntry, Consent, ConsentEvent, Suppression

_consent = Consent.__table__
_event = ConsentEvent.__table__
_supp = Suppression.__table__
_audit = AuditEntry.__table__
IMPORT_BATCH = 20000


def suppression_key(address: str) -> str:
    """A normalised address as suppressions store and match it: the local part case-folded as well.

    A suppression must hold however the sender spells the mailbox (Carol@ after carol@ complained),
    and practically every receiving domain ignores local-part case, as ESPs' suppression lists do.
    Consent records keep the exact local part: there a mismatch finds no consent and refuses.
    """
    local, at, domain = address.rpartition("@")
    return f"{local.casefold()}@{domain.lower()}" if at else address.casefold()


@dataclass(frozen=True)
class ConsentView:
    """What the consent stage and the footer need to know about one recipient."""

    status: str
    method: str
    source: str
    signed_up_at: datetime
    confirmed_at: datetime | None
    last_contact_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class SuppressionHit:
    scope: str
    reason: str
    created_at: datetime
    target: str  # the address or @domain that matched


@dataclass
class ListLookup:
    consents: dict[str, ConsentView]
    unsubscribed: dict[str, SuppressionHit]  # list-scoped suppressions on this list
    # global and this client's client-wide suppressions (address or domain), widest first
    wide: dict[str, list[SuppressionHit]] = field(default_factory=dict)


def domain_and_parents(domain: str) -> list[str]:
    """sub.example.com → [sub.example.com, example.com]: a do-not-contact domain covers its subdomains."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]




class ConsentQueries:
    """Mixed into storage.Store; every method is one short transaction."""

    engine: Any
    sql: Any  # storage.hotpath.DriverSql (the Store's)
    sql: DriverSql

    # -- the send path -----------------------------------------------------------

    def suppression_for(self, client: str, address: str, domain: str,
                        skip_reasons: tuple[str, ...] = ()) -> SuppressionHit | None:
        """Global or client-wide suppression of this address or its domain (RCPT time).

        Two index probes (address, domain) joined by UNION ALL: a WHERE on scope lets SQLite
        pick the scope index and walk every global entry instead. Suppressions are stored under
        suppression_key, so the address is folded here, not the column in SQL (that would
        defeat the index). Entries whose reason is in `skip_reasons` are not considered.
        """
        rows = self.sql.fetch(hotpath.SUPPRESSION_PROBE, suppression_key(address), domain_and_parents(domain))
        # (scope, client, reason, created_at, address, domain)
        hits = [r for r in rows if (r[0] == "global" or (r[0] == "client" and r[1] == client))
                and r[2] not in skip_reasons]
        if not hits:
            return None
        scope, _, reason, created_at, hit_address, hit_domain = min(hits, key=lambda r: r[0] != "global")
        return SuppressionHit(scope, reason, _utc(created_at), hit_address or f"@{hit_domain}")  # wider wins

    def list_lookup(self, client: str, list_key: str, addresses: list[str]) -> ListLookup:
        """Consent records and every suppression that concerns a message's recipients, in one query.

        Consent matches the exact local part; suppressions match its case-folded form
        (suppression_key) or the recipient's domain and its parents. List-scoped entries of this
        list go to `unsubscribed`, global and this client's client-wide ones to `wide`.
        """
        result = ListLookup({}, {})
        if not addresses:
            return result
        keys = [suppression_key(a) for a in addresses]
        by_key: dict[str, list[str]] = {}
        by_domain: dict[str, list[str]] = {}
        for asked, key in zip(addresses, keys):  # Carol@ and carol@ in one message: both
            by_key.setdefault(key, []).append(asked)
            for domain in domain_and_parents(asked.rpartition("@")[2]):
                by_domain.setdefault(domain, []).append(asked)
        rows = self.sql.fetch(hotpath.LIST_LOOKUP, client, list_key, addresses, list(by_key), list(by_domain))
        for (kind, address, status, method, source, signed_up_at, confirmed_at, last_contact_at, revoked_at,
             hit_list, hit_domain) in rows:
            if kind == "c":
                result.consents[address] = ConsentView(
                    status, method, source, _utc(signed_up_at), _utc(confirmed_at), _utc(last_contact_at),
                    _utc(revoked_at))
                continue
            # a suppression: reason, scope, client and time sit in the status..signed_up_at columns
            reason, scope, hit_client, created_at = status, method, source, signed_up_at
            if scope == "list":
                if hit_client != client or hit_list != list_key or not address:
                    continue
                hit = SuppressionHit("list", reason, _utc(created_at), address)
                for asked in by_key.get(address, ()):
                    result.unsubscribed[asked] = hit
            elif scope == "global" or (scope == "client" and hit_client == client):
                hit = SuppressionHit(scope, reason, _utc(created_at), address or f"@{hit_domain}")
                for asked in by_key.get(address, ()) if address else by_domain.get(hit_domain, ()):
                    result.wide.setdefault(asked, []).append(hit)
        for hits in result.wide.values():
            hits.sort(key=lambda h: h.scope != "global")  # the wider entry is the one to name
        return result

    def touch_last_contact(self, client: str, list_key: str, addresses: list[str], at: datetime) -> None:
        self.sql.write(self.touch_last_contact_steps([(client, list_key, addresses, at)]))

    def touch_last_contact_steps(self, contacts: list[tuple[str, str, list[str], datetime]]) -> list[tuple]:
        """One UPDATE per (client, list) however many messages a group commit carries.

        The group's latest time stands for all of them: they were delivered milliseconds apart.
        """
        groups: dict[tuple[str, str], tuple[datetime, set[str]]] = {}
        for client, list_key, addresses, at in contacts:
            if addresses:
                latest, seen = groups.setdefault((client, list_key), (at, set()))
                seen.update(addresses)
                if at > latest:
                    groups[(client, list_key)] = (at, seen)
        steps = []
        for (client, list_key), (at, addresses) in groups.items():
            ordered = sorted(addresses)  # one lock order for concurrent writers (PostgreSQL row locks)
            for start in range(0, len(ordered), IMPORT_BATCH):
                steps.append((hotpath.TOUCH_LAST_CONTACT,
                              (self.sql.time(at), client, list_key, ordered[start:start + IMPORT_BATCH]), False))
        return steps

    # -- consent records ---------------------------------------------------------

    def consent_import(self, client: str, list_key: str, rows: list[dict[str, Any]], at: datetime,
                       channel: str, bulk: bool = False) -> tuple[list[str], list[str]]:
        """Insert records that do not exist yet, each with a 'created' event.

        Returns (added, already on file). An existing record is never overwritten: it is the
        proof of how that person subscribed, and re-importing a file must change nothing.
        """
        postgres = self.engine.dialect.name == "postgresql"
        at_value = at if postgres else _sqlite_time(at)
        return self.consent_import_prepared(
            client, list_key, [prepare_import_row(client, list_key, r, at_value, channel, postgres) for r in rows],
            bulk)

    def consent_import_prepared(self, client: str, list_key: str, prepared: list[PreparedRow],
                                bulk: bool = False) -> tuple[list[str], list[str]]:
        """consent_import of rows already in the driver's form (prepare_import_row, run by import workers).

        Rows go to the driver directly (executemany on SQLite, COPY on PostgreSQL): a million-row
        import spent most of its time in per-row ORM parameter handling.
        """
        added: list[str] = []
        existing: list[str] = []
        # bulk=True (a file import in several calls): SQLite commits without an fsync each (WAL
        # stays consistent) and consent_import_finish() makes everything durable once, at the end
        relaxed = bulk and self.engine.dialect.name == "sqlite"
        unique: dict[str, PreparedRow] = {}
        repeated: list[str] = []  # the first of repeated addresses counts, as in a file import
        for p in prepared:
            if p[0] in unique:
                repeated.append(p[0])
            else:
                unique[p[0]] = p
        rows = list(unique.values())
        for start in range(0, len(rows), IMPORT_BATCH):
            batch = rows[start:start + IMPORT_BATCH]
            if self.engine.dialect.name == "postgresql":
                with self.sql.begin() as conn:
                    fresh = _pg_import_batch(conn, batch)
            else:
                with self.sql.begin() as conn:
                    if relaxed:
                        conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
                    known = _known(conn, client, list_key, [p[0] for p in batch])
                    fresh = [p for p in batch if p[0] not in known]
                    if fresh:
                        _bulk_insert(conn, "consent", _CONSENT_COLUMNS, [row for _, row, _ in fresh])
                        _bulk_insert(conn, "consent_event", _EVENT_COLUMNS, [event for _, _, event in fresh])
            fresh_set = {p[0] for p in fresh}
            existing += [p[0] for p in batch if p[0] not in fresh_set]
            added += [p[0] for p in fresh]
        existing += repeated
        if not bulk:
            self.consent_import_finish()
        return added, existing

    def consent_import_finish(self) -> None:
        """After an import: everything durable on disk, and fresh planner statistics (without them
        PostgreSQL treats a million-row list as tiny and scans it for every lookup)."""
        with self.sql.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA synchronous=FULL")
                conn.exec_driver_sql("PRAGMA wal_checkpoint(FULL)")  # fsyncs what NORMAL commits left
            conn.exec_driver_sql("ANALYZE consent")

    def consent_records(self, client: str, address: str) -> list[tuple[Consent, list[ConsentEvent]]]:
        """Every record this client holds for the address, each with its history, oldest first."""
        with Session(self.engine) as session:
            records = session.exec(model_select(Consent).where(
                Consent.client == client, Consent.address == address).order_by(Consent.list_key)).all()
            events = session.exec(model_select(ConsentEvent).where(
                ConsentEvent.client == client, ConsentEvent.address == address).order_by(ConsentEvent.id)).all()
        return [(r, [e for e in events if e.list_key == r.list_key]) for r in records]

    def consent_events(self, client: str, since: datetime | None = None) -> list[ConsentEvent]:
        stmt = model_select(ConsentEvent).where(ConsentEvent.client == client)
        if since is not None:
            stmt = stmt.where(ConsentEvent.at >= since)
        with Session(self.engine) as session:
            return list(session.exec(stmt.order_by(ConsentEvent.id)).all())

    def consent_revoke(self, client: str, list_key: str, address: str, at: datetime, channel: str,
                       ip: str | None = None) -> bool:
        """Unsubscribe: revoke consent and suppress the address on that list. True if it changed anything."""
        with self.sql.begin() as conn:
            changed = conn.execute(update(_consent).where(
                _consent.c.client == client, _consent.c.list_key == list_key, _consent.c.address == address,
                _consent.c.status != "revoked").values(status="revoked", revoked_at=at, updated_at=at)).rowcount
            if changed:
                conn.execute(insert(_event), [{"at": at, "client": client, "list_key": list_key,
                                               "address": address, "event": "revoked", "status": "revoked",
                                               "channel": channel, "ip": ip, "detail": ""}])
        added = self.suppress_add("list", client, list_key, address, "", "unsubscribe", channel, at)
        return bool(changed) or added

    # -- suppressions ------------------------------------------------------------

    def suppress_add(self, scope: str, client: str, list_key: str, address: str, domain: str,
                     reason: str, source: str, at: datetime) -> bool:
        """Add one suppression; False when it was already there. The change is audited.

        The address is stored as its suppression_key, as in every suppression method here.
        """
        row = {"scope": scope, "client": client, "list_key": list_key, "address": suppression_key(address),
               "domain": domain, "reason": reason, "source": source, "created_at": at}
        try:
            with self.sql.begin() as conn:
                conn.execute(insert(_supp), [row])
                conn.execute(insert(_audit), [_suppression_audit(row, "suppress", at)])
        except IntegrityError:
            return False
        return True

    def suppress_import(self, rows: list[dict[str, Any]], at: datetime) -> tuple[int, int]:
        """Bulk add; returns (added, already there), where a repeat within `rows` counts as already there."""
        unique: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
        for r in rows:
            r = dict(r, address=suppression_key(r["address"]))
            # the first of entries equal after folding (Carol@, carol@): one row under the unique index
            unique.setdefault((r["scope"], r["client"], r["list_key"], r["address"], r["domain"]), r)
        added, existing = 0, len(rows) - len(unique)
        folded = list(unique.values())
        for start in range(0, len(folded), IMPORT_BATCH):
            batch = folded[start:start + IMPORT_BATCH]
            with self.sql.begin() as conn:
                have = {(r.scope, r.client, r.list_key, r.address, r.domain) for r in conn.execute(
                    select(_supp.c.scope, _supp.c.client, _supp.c.list_key, _supp.c.address, _supp.c.domain)
                    .where(or_(_supp.c.address.in_([r["address"] for r in batch if r["address"]]),
                               _supp.c.domain.in_([r["domain"] for r in batch if r["domain"]]))))}
                fresh = [dict(r, created_at=at) for r in batch
                         if (r["scope"], r["client"], r["list_key"], r["address"], r["domain"]) not in have]
                existing += len(batch) - len(fresh)
                if fresh:
                    conn.execute(insert(_supp), fresh)
                    conn.execute(insert(_audit), [_suppression_audit(r, "suppress", at) for r in fresh])
                    added += len(fresh)
        return added, existing

    def suppress_remove(self, scope: str, client: str, list_key: str, address: str, domain: str,
                        source: str, at: datetime) -> bool:
        """Lift one suppression in exactly that scope; the address in any case (suppression_key)."""
        address = suppression_key(address)
        with self.sql.begin() as conn:
            removed = conn.execute(delete(_supp).where(
                _supp.c.scope == scope, _supp.c.client == client, _supp.c.list_key == list_key,
                _supp.c.address == address, _supp.c.domain == domain)).rowcount
            if removed:
                conn.execute(insert(_audit), [_suppression_audit(
                    {"scope": scope, "client": client, "list_key": list_key, "address": address,
                     "domain": domain, "reason": "removed", "source": source}, "unsuppress", at)])
        return bool(removed)

    def suppressions(self, scope: str | None = None, client: str | None = None, list_key: str | None = None,
                     since: datetime | None = None) -> list[Suppression]:
        stmt = model_select(Suppression)
        for column, value in ((Suppression.scope, scope), (Suppression.client, client),
                              (Suppression.list_key, list_key)):
            if value is not None:
                stmt = stmt.where(column == value)
        if since is not None:
            stmt = stmt.where(Suppression.created_at >= since)
        with Session(self.engine) as session:
            return list(session.exec(stmt.order_by(Suppression.id)).all())


_CONSENT_COLUMNS = ("client", "list_key", "address", "status", "method", "source", "signed_up_at", "ip",
                    "disclosure", "confirmed_at", "last_contact_at", "revoked_at", "extra", "updated_at",
                    "user_agent", "confirm_sent_at", "confirm_sends")
_EVENT_COLUMNS = ("at", "client", "list_key", "address", "event", "status", "channel", "ip", "detail")


# (address, consent row, its 'created' event row): driver tuples for SQLite, COPY text for PostgreSQL
PreparedRow = tuple[str, Any, Any]


def prepare_import_row(client: str, list_key: str, r: dict[str, Any], at: Any, channel: str,
                       postgres: bool) -> PreparedRow:
    """One imported record as driver rows; `at` is already in the database's form (sqlite_time on SQLite).

    A module function so import workers can run it: building rows was half the writer's time.
    """
    ts = _same if postgres else _sqlite_time
    extra = r.get("extra")
    signed_up_at, confirmed_at = r["signed_up_at"], r.get("confirmed_at")
    consent = (client, list_key, r["address"], r["status"], r["method"], r["source"], ts(signed_up_at),
               r.get("ip"), r.get("disclosure") or "", ts(confirmed_at), ts(r.get("last_contact_at")),
               ts(r.get("revoked_at")),
               json.dumps(extra) if extra else "{}", at, r.get("user_agent") or "", None, 0)
    # the same text json.dumps gives for this dict, built from cached pieces: a million-row import
    # repeats the same source, method and disclosure on every line
    detail = ('{"source": %s, "method": %s, "signed_up_at": %s, "confirmed_at": %s, "disclosure": %s}' % (
        _json(r.get("source")), _json(r.get("method")), _json_time(signed_up_at), _json_time(confirmed_at),
        _json(r.get("disclosure"))))
    event = (at, client, list_key, r["address"], "created", r["status"], channel, r.get("ip"), detail)
    if postgres:
        return r["address"], copy_text(consent), copy_text(event)
    return r["address"], consent, event


@lru_cache(maxsize=8192)
def _json(value: Any) -> str:
    return json.dumps(value)


def _json_time(value: Any) -> str:
    if isinstance(value, datetime):
        return f'"{value.isoformat()}"'  # json.dumps(value.isoformat()): an ISO time holds nothing to escape
    return json.dumps(value)


def _same(value: Any) -> Any:
    return value


def _known(conn: Any, client: str, list_key: str, addresses: list[str]) -> set[str]:
    """SQLite: which of these addresses already have a record on this list (plain driver SQL:
    SQLAlchemy expanded thousands of IN parameters in Python)."""
    return {row[0] for row in conn.exec_driver_sql(
        "SELECT address FROM consent WHERE client = ? AND list_key = ? AND address IN ("
        + ",".join("?" * len(addresses)) + ")", (client, list_key, *addresses))}


def _pg_import_batch(conn: Any, batch: list[PreparedRow]) -> list[PreparedRow]:
    """PostgreSQL: COPY into a staging table, insert what is not on file yet, and the events of those; the rows added.

    ON CONFLICT lets the unique index decide what is new: a check by `address = ANY(array)`
    first was planned as a scan of the list (statistics lag behind during an import).
    """
    conn.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS consent_stage (LIKE consent INCLUDING DEFAULTS) "
                         "ON COMMIT DELETE ROWS")
    _copy_lines(conn, "consent_stage", _CONSENT_COLUMNS, [row for _, row, _ in batch])
    columns = ", ".join(_CONSENT_COLUMNS)
    added = {row[0] for row in conn.exec_driver_sql(
        f"INSERT INTO consent ({columns}) SELECT {columns} FROM consent_stage "
        "ON CONFLICT (client, list_key, address) DO NOTHING RETURNING address")}
    fresh = [p for p in batch if p[0] in added]
    _copy_lines(conn, "consent_event", _EVENT_COLUMNS, [event for _, _, event in fresh])
    return fresh


def copy_text(values: tuple[Any, ...]) -> str:
    """One row in PostgreSQL's COPY text format: a tab between fields, \\N for NULL, escapes for the rest.

    Import workers build these, so the writer only joins and sends them (psycopg's write_row
    was a quarter of its time).
    """
    fields = []
    for v in values:
        if v is None:
            fields.append("\\N")
            continue
        text = v if isinstance(v, str) else v.isoformat() if isinstance(v, datetime) else str(v)
        if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
            text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        fields.append(text)
    return "\t".join(fields) + "\n"


def _copy_lines(conn: Any, table: str, columns: tuple[str, ...], lines: list[str]) -> None:
    if lines:
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            copy.write("".join(lines))


def _bulk_insert(conn: Any, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """SQLite: many rows through the driver's executemany; same result as an ORM insert, a fraction of the cost."""
    placeholders = ", ".join("?" for _ in columns)
    conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", rows)


def _suppression_audit(row: dict[str, Any], verdict: str, at: datetime) -> dict[str, Any]:
    target = row["address"] or f"@{row['domain']}"
    scope = row["scope"] + (f":{row['client']}" if row["client"] else "") + (
        f"/{row['list_key']}" if row["list_key"] else "")
    return {"at": at, "client": row["client"] or "*", "list_key": row["list_key"] or None, "recipient": target,
            "stage": "admin", "rule": f"suppression.{row['scope']}", "verdict": verdict, "code": None,
            "status": None, "reason": f"{row['reason']} ({scope}) via {row.get('source') or 'cli'}",
            "message_id": None, "queue_id": ""}


