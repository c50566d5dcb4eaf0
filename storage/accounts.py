"""Client accounts in storage: states and their history, volume counters, campaigns, the repeat guard.

Everything here is shared state: every worker and every host on one database sees the same rows,
and each check-and-count is one transaction, so two workers can never both take the last slot.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import BigInteger, Column, Date, Index, Integer, String, select
from sqlmodel import Field, SQLModel

from storage.hotpath import utc
from storage.models import UTCDateTime

STATES = ("active", "warned", "frozen", "suspended", "terminated")


class AccountClock(SQLModel, table=True):
    """One row: bumped by every state change, so a worker polls one integer to know it must reload."""

    __tablename__ = "account_clock"

    id: int = Field(primary_key=True)
    version: int = 0


class AccountState(SQLModel, table=True):
    """A client's state; without a row, the `state` of relay.toml (the starting state) holds."""

    __tablename__ = "account_state"

    client: str = Field(primary_key=True)
    state: str
    version: int
    changed_at: datetime = Field(sa_type=UTCDateTime)


class AccountEvent(SQLModel, table=True):
    """The audit of one state change: who, why, and the evidence."""

    __tablename__ = "account_event"
    __table_args__ = (Index("ix_account_event_client_at", "client", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime)
    client: str
    old_state: str
    new_state: str
    actor: str  # "operator:NAME" from the CLI, "rule:reputation" from the automatic rules
    reason: str
    evidence: str = ""


class RateCounter(SQLModel, table=True):
    """Copies sent by a client (scope "client") or on one list ("list:KEY") in one time bucket."""

    __tablename__ = "rate_counter"

    client: str = Field(primary_key=True)
    scope: str = Field(primary_key=True)
    span: str = Field(primary_key=True)  # minute / hour / day
    bucket: int = Field(sa_column=Column(BigInteger, primary_key=True))  # unix time // span seconds
    n: int = 0


class Campaign(SQLModel, table=True):
    """The mail of one client and list with one body fingerprint or X-Campaign-ID."""

    __tablename__ = "campaign"
    __table_args__ = (Index("ix_campaign_client_started", "client", "started_at"),
                      Index("ix_campaign_state_hold", "state", "hold_until"))

    id: str = Field(primary_key=True)
    client: str
    list_key: str
    label: str  # the X-Campaign-ID, or "fingerprint:HEX"
    subject: str = ""
    declared_size: int | None = None
    seen: int = 0      # recipients offered so far (retries of held ones included)
    sent: int = 0      # recipients let through while the campaign was counted (the canary)
    held: int = 0      # deferrals given
    state: str = "counting"  # counting / open (under threshold) / holding / released / declined
    started_at: datetime = Field(sa_type=UTCDateTime)
    hold_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by: str = ""
    reason: str = ""


class CanaryRecipient(SQLModel, table=True):
    """A recipient of a campaign's canary (folded like suppressions), for judging the campaign."""

    __tablename__ = "canary_recipient"

    campaign_id: str = Field(primary_key=True)
    recipient: str = Field(primary_key=True)


class RecentCopy(SQLModel, table=True):
    """A copy with this body fingerprint went to this recipient on this day (the repeat guard)."""

    __tablename__ = "recent_copy"
    __table_args__ = (Index("ix_recent_copy_day", "day"),)

    client: str = Field(primary_key=True)
    fingerprint: str = Field(primary_key=True)
    recipient: str = Field(primary_key=True)
    day: date = Field(sa_column=Column(Date, primary_key=True))
    queue_id: str = ""


# ---------------------------------------------------------------------------------------------
# the per-message step

@dataclass(frozen=True)
class LimitKey:
    scope: str    # "client" or "list:KEY"
    span: str     # minute / hour / day
    bucket: int
    limit: int


@dataclass(frozen=True)
class CampaignAsk:
    id: str
    list_key: str
    label: str
    subject: str
    declared_size: int | None
    threshold: int
    first: int           # how many go out before the hold (the canary), given the declared size
    hold_seconds: float


@dataclass(frozen=True)
class StepAsk:
    """One message's step: see AccountQueries.account_steps."""

    client: str
    recipients: list[str]
    folded: list[str]          # the recipients as suppressions store them (local part case-folded)
    now: datetime
    limits: list[LimitKey]
    fingerprint: str | None    # for the repeat guard; None: off
    ask: CampaignAsk | None
    queue_id: str


@dataclass
class StepResult:
    over: LimitKey | None = None               # a volume limit that refuses the whole message
    count: int = 0                             # the counter's value that went over
    repeats: list[str] = field(default_factory=list)     # recipients already sent this body today
    held: list[str] = field(default_factory=list)        # campaign: deferred during the hold
    declined: list[str] = field(default_factory=list)    # campaign: declined
    campaign: dict[str, Any] | None = None               # the campaign row after the step


_COUNT_ROW = "(?, ?, ?, ?, ?)"
_COUNT = ("INSERT INTO rate_counter (client, scope, span, bucket, n) VALUES {rows} "
          "ON CONFLICT (client, scope, span, bucket) DO UPDATE SET n = rate_counter.n + excluded.n "
          "RETURNING scope, span, n")
_REPEATS = ("SELECT recipient FROM recent_copy WHERE client = ? AND fingerprint = ? AND day = ? "
            "AND recipient IN ?")
_REMEMBER = ("INSERT INTO recent_copy (client, fingerprint, recipient, day, queue_id) VALUES (?, ?, ?, ?, ?) "
             "ON CONFLICT DO NOTHING")
_CAMPAIGN_COLUMNS = ("id", "client", "list_key", "label", "subject", "declared_size", "seen", "sent", "held",
                     "state", "started_at", "hold_until", "decided_at", "decided_by", "reason")
# creates the campaign or counts the recipients offered, and returns the row with them counted (the
# row lock on PostgreSQL, the write lock on SQLite, holds until the step commits)
_CAMPAIGN_SEEN = ("INSERT INTO campaign (id, client, list_key, label, subject, declared_size, seen, sent, held, "
                  "state, started_at, hold_until, decided_at, decided_by, reason) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 'counting', ?, NULL, NULL, '', '') "
                  "ON CONFLICT (id) DO UPDATE SET seen = campaign.seen + excluded.seen "
                  f"RETURNING {', '.join(_CAMPAIGN_COLUMNS)}")
_CAMPAIGN_GET = f"SELECT {', '.join(_CAMPAIGN_COLUMNS)} FROM campaign WHERE id = ?"
_CANARY_KNOWN = "SELECT recipient FROM canary_recipient WHERE campaign_id = ? AND recipient IN ?"
_CANARY_ADD = "INSERT INTO canary_recipient (campaign_id, recipient) VALUES (?, ?) ON CONFLICT DO NOTHING"
_CAMPAIGN_SET = ("UPDATE campaign SET sent = sent + ?, held = held + ?, state = ?, "
                 "hold_until = ?, declared_size = COALESCE(declared_size, ?) WHERE id = ?")


def _row(values: Iterable[Any]) -> dict[str, Any]:
    row = dict(zip(_CAMPAIGN_COLUMNS, values))
    for key in ("started_at", "hold_until", "decided_at"):
        row[key] = utc(row[key])
    return row


class AccountQueries:
    """Mixed into storage.Store (needs `self.engine` and `self.sql`, a storage.hotpath.DriverSql)."""

    engine: Any
    sql: Any

    # -- one transaction on a raw DBAPI connection, in the driver's paramstyle ----------------

    def _tx(self, body: Any, durable: bool = True) -> Any:
        """Run body(run) in one transaction; run(sql, *params) executes and returns the rows.

        durable=False (SQLite): the commit skips the fsync (synchronous=NORMAL for this transaction):
        a counter lost to a power cut makes a limit briefly lenient, and costs no disk flush a message.
        """
        with self.sql.writers.turn():
            return self._tx_now(body, durable)

    def _tx_now(self, body: Any, durable: bool) -> Any:
        conn = self.engine.raw_connection()
        sqlite = not self.sql.postgres
        try:
            cur = conn.cursor()
            if sqlite:
                if not durable:
                    cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("BEGIN IMMEDIATE")  # take the write lock now: read-then-write stays atomic

            def run(sql: str, *params: Any) -> list[tuple[Any, ...]]:
                flat, lens = self.sql._params(params)
                text = self.sql._text(sql, lens)
                for listener in self.sql.listeners:
                    listener(text)
                cur.execute(text, flat)
                return cur.fetchall() if cur.description else []

            try:
                result = body(run)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                if sqlite and not durable:
                    try:
                        cur.execute("PRAGMA synchronous=FULL")
                    except sqlite3.Error:
                        pass
                cur.close()
            return result
        finally:
            conn.close()

    def _t(self, value: Any) -> Any:
        return self.sql.time(value)

    def _d(self, day: date) -> Any:
        return day if self.sql.postgres else day.isoformat()

    # -- states --------------------------------------------------------------------------------

    def account_version(self) -> int:
        rows = self.sql.fetch("SELECT version FROM account_clock WHERE id = 1")
        return int(rows[0][0]) if rows else 0

    def account_states(self) -> dict[str, str]:
        return {client: state for client, state in self.sql.fetch("SELECT client, state FROM account_state")}

    def change_account_state(self, client: str, new: str, start: str, actor: str, reason: str,
                             evidence: str, at: datetime, only_from: tuple[str, ...] | None = None
                             ) -> tuple[str, str] | None:
        """Set a client's state and audit it; (old, new), or None when nothing changed.

        `start` is the state a client has with no row yet (relay.toml's `state`); with `only_from`
        the change happens only from one of those states (the automatic rules never undo an
        operator's decision, nor lift a state)."""
        if new not in STATES:
            raise ValueError(f"unknown state {new!r}")

        def body(run: Any) -> tuple[str, str] | None:
            # the clock row is the lock: state changes from every host are serialised on it
            version = run("UPDATE account_clock SET version = version + 1 WHERE id = 1 RETURNING version")[0][0]
            rows = run("SELECT state FROM account_state WHERE client = ?", client)
            old = rows[0][0] if rows else start
            if old == new or (only_from is not None and old not in only_from):
                raise _NoChange()
            run("INSERT INTO account_state (client, state, version, changed_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (client) DO UPDATE SET state = excluded.state, version = excluded.version, "
                "changed_at = excluded.changed_at", client, new, version, self._t(at))
            run("INSERT INTO account_event (at, client, old_state, new_state, actor, reason, evidence) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", self._t(at), client, old, new, actor, reason, evidence)
            return old, new

        try:
            return self._tx(body)
        except _NoChange:
            return None

    def account_events(self, client: str, limit: int = 50) -> list[AccountEvent]:
        rows = self.sql.fetch("SELECT id, at, client, old_state, new_state, actor, reason, evidence "
                              "FROM account_event WHERE client = ? ORDER BY id DESC LIMIT ?", client, limit)
        return [AccountEvent(id=r[0], at=utc(r[1]), client=r[2], old_state=r[3], new_state=r[4], actor=r[5],
                             reason=r[6], evidence=r[7]) for r in reversed(rows)]

    def rate_counts(self, client: str, keys: list[tuple[str, str, int]]) -> dict[tuple[str, str], int]:
        """Current values of some counters: {(scope, span): n}."""
        out = {}
        for scope, span, bucket in keys:
            rows = self.sql.fetch("SELECT n FROM rate_counter WHERE client = ? AND scope = ? AND span = ? "
                                  "AND bucket = ?", client, scope, span, bucket)
            out[(scope, span)] = int(rows[0][0]) if rows else 0
        return out

    # -- the per-message step: limits, repeats, campaign, in one transaction ------------------

    def account_steps(self, asks: list[StepAsk]) -> list[StepResult]:
        """Decide messages' volume limits, repeats and campaign shares, and count them, atomically.

        Several concurrent messages share one transaction (one thread hop, one commit), each in a
        savepoint of its own: a limit that would be exceeded rolls back that message's step only,
        so nothing is counted for a deferred message and its canary places are given back.
        """
        # one lock order in every transaction (PostgreSQL row locks): by client, then campaign
        order = sorted(range(len(asks)), key=lambda i: (asks[i].client, asks[i].ask.id if asks[i].ask else ""))

        def body(run: Any) -> list[StepResult]:
            out: list[StepResult] = [StepResult()] * len(asks)
            for i in order:
                run("SAVEPOINT step")
                try:
                    out[i] = self._step(run, asks[i])
                except _Rollback as over:
                    run("ROLLBACK TO SAVEPOINT step")
                    out[i] = over.result
                run("RELEASE SAVEPOINT step")
            return out

        return self._tx(body, durable=False)

    def _step(self, run: Any, a: StepAsk) -> StepResult:
        day, client, recipients = a.now.date(), a.client, a.recipients
        result = StepResult()
        open_rcpts = list(recipients)
        if a.fingerprint is not None:
            seen = {r for (r,) in run(_REPEATS, client, a.fingerprint, self._d(day), list(recipients))}
            result.repeats = [r for r in recipients if r in seen]
            open_rcpts = [r for r in recipients if r not in seen]
        admitted = open_rcpts
        if a.ask is not None and open_rcpts:
            admitted = self._campaign(run, client, a.ask, open_rcpts, dict(zip(recipients, a.folded)), a.now, result)
        if admitted and a.limits:
            # only copies that would go out count; every bucket in one statement
            params = [p for key in a.limits for p in (client, key.scope, key.span, key.bucket, len(admitted))]
            counted = {(scope, span): n for scope, span, n in
                       run(_COUNT.format(rows=", ".join([_COUNT_ROW] * len(a.limits))), *params)}
            for key in a.limits:
                n = counted[(key.scope, key.span)]
                if n > key.limit:
                    raise _Rollback(StepResult(over=key, count=n - len(admitted), repeats=result.repeats))
        if a.fingerprint is not None:
            for r in admitted:
                run(_REMEMBER, client, a.fingerprint, r, self._d(day), a.queue_id)
        return result

    def _campaign(self, run: Any, client: str, ask: CampaignAsk, rcpts: list[str], fold: dict[str, str],
                  now: datetime, result: StepResult) -> list[str]:
        row = _row(run(_CAMPAIGN_SEEN, ask.id, client, ask.list_key, ask.label, ask.subject[:200],
                       ask.declared_size, len(rcpts), self._t(now))[0])
        row["seen"] -= len(rcpts)  # RETURNING gives the row after the update: as it was before this message
        state, sent, hold_until = row["state"], row["sent"], row["hold_until"]
        size = row["declared_size"] if row["declared_size"] is not None else ask.declared_size
        admitted: list[str] = []
        held: list[str] = []
        if state == "declined":
            result.declined = list(rcpts)
        elif state in ("released", "open"):
            admitted = list(rcpts)
        elif size is not None and size <= ask.threshold and state == "counting":
            state, admitted = "open", list(rcpts)  # a declared size under the threshold: no canary
        else:
            # counting or holding: canary recipients (and their retries) go, the rest wait
            known = {r for (r,) in run(_CANARY_KNOWN, ask.id, [fold[r] for r in rcpts])}
            first = ask.first
            if size is None and row["seen"] + len(rcpts) <= ask.threshold and state == "counting":
                first = max(first, row["seen"] + len(rcpts))  # not over the threshold yet
            slots = max(0, first - sent)
            for r in rcpts:
                if fold[r] in known:
                    admitted.append(r)
                elif slots > 0 and state == "counting":
                    admitted.append(r)
                    slots -= 1
                    run(_CANARY_ADD, ask.id, fold[r])
                    sent += 1
                else:
                    held.append(r)
            if held and state == "counting":
                state, hold_until = "holding", now + timedelta(seconds=ask.hold_seconds)
        new_sent = sent - row["sent"]
        if new_sent or held or state != row["state"] or (ask.declared_size is not None and row["declared_size"] is None):
            run(_CAMPAIGN_SET, new_sent, len(held), state,
                self._t(hold_until) if hold_until else None, ask.declared_size, ask.id)
        result.held = held
        row.update(state=state, sent=sent, held=row["held"] + len(held), seen=row["seen"] + len(rcpts),
                   hold_until=hold_until)
        result.campaign = row
        return admitted

    def account_step_undo(self, client: str, limits: list[LimitKey], count: int, queue_id: str) -> None:
        """A message that ended in a 4xx after its step (upstream down): its retry is no repeat and
        must not count twice. Canary places stay taken: the retry of a canary recipient goes out."""
        def body(run: Any) -> None:
            for key in limits:
                run("UPDATE rate_counter SET n = n - ? WHERE client = ? AND scope = ? AND span = ? AND bucket = ?",
                    count, client, key.scope, key.span, key.bucket)
            run("DELETE FROM recent_copy WHERE client = ? AND queue_id = ?", client, queue_id)

        self._tx(body, durable=False)

    def account_prune(self, now: datetime) -> None:
        """Drop counters and repeat records nobody can ask about any more."""
        day_bucket = int(now.timestamp()) // 86400

        def body(run: Any) -> None:
            run("DELETE FROM recent_copy WHERE day < ?", self._d(now.date() - timedelta(days=1)))
            run("DELETE FROM rate_counter WHERE span = 'minute' AND bucket < ?", day_bucket * 1440 - 5)
            run("DELETE FROM rate_counter WHERE span = 'hour' AND bucket < ?", day_bucket * 24 - 2)
            run("DELETE FROM rate_counter WHERE span = 'day' AND bucket < ?", day_bucket - 2)

        self._tx(body, durable=False)

    # -- campaigns -----------------------------------------------------------------------------

    def campaigns(self, client: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(_CAMPAIGN_COLUMNS)} FROM campaign"
        params: tuple[Any, ...] = ()
        if client is not None:
            sql += " WHERE client = ?"
            params = (client,)
        rows = self.sql.fetch(sql + " ORDER BY started_at DESC LIMIT ?", *params, limit)
        return [_row(r) for r in rows]

    def campaign(self, id: str) -> dict[str, Any] | None:
        rows = self.sql.fetch(_CAMPAIGN_GET, id)
        return _row(rows[0]) if rows else None

    def campaigns_due(self, now: datetime) -> list[dict[str, Any]]:
        rows = self.sql.fetch(f"SELECT {', '.join(_CAMPAIGN_COLUMNS)} FROM campaign "
                              f"WHERE state = 'holding' AND hold_until <= ?", self._t(now))
        return [_row(r) for r in rows]

    def decide_campaign(self, id: str, state: str, by: str, reason: str, at: datetime,
                        only_from: tuple[str, ...] = ("counting", "holding")) -> bool:
        """Release or decline; False when another worker (or operator) already decided."""
        states = list(only_from)

        def body(run: Any) -> bool:
            done = run("UPDATE campaign SET state = ?, decided_at = ?, decided_by = ?, reason = ? "
                       "WHERE id = ? AND state IN ? RETURNING id", state, self._t(at), by, reason, id, states)
            return bool(done)

        return self._tx(body)

    def campaign_feedback(self, id: str) -> dict[str, int]:
        """The canary's recipients, and how many of them bounced, unsubscribed or complained since
        the campaign began (suppressions of this client, its list, or global)."""
        camp = self.campaign(id)
        if camp is None:
            raise KeyError(id)
        canary = self.sql.fetch("SELECT COUNT(*) FROM canary_recipient WHERE campaign_id = ?", id)[0][0]
        rows = self.sql.fetch(
            "SELECT s.reason, COUNT(DISTINCT c.recipient) FROM canary_recipient c JOIN suppression s "
            "ON s.address = c.recipient WHERE c.campaign_id = ? AND s.created_at >= ? "
            "AND s.reason IN ? AND (s.scope = 'global' OR (s.client = ? AND (s.scope = 'client' "
            "OR s.list_key = ?))) GROUP BY s.reason",
            id, self._t(camp["started_at"]), ["bounce", "unsubscribe", "complaint"], camp["client"],
            camp["list_key"])
        found = {reason: int(n) for reason, n in rows}
        return {"canary": int(canary), "bounce": found.get("bounce", 0),
                "unsubscribe": found.get("unsubscribe", 0), "complaint": found.get("complaint", 0)}


class _NoChange(Exception):
    pass


class _Rollback(Exception):
    def __init__(self, result: StepResult):
        super().__init__()
        self.result = result
