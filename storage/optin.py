"""Confirmed opt-in state changes: a pending sign-up, its confirmation mails, its confirmation."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update

from storage.models import Consent, ConsentEvent

_consent = Consent.__table__
_event = ConsentEvent.__table__


@dataclass(frozen=True)
class SignupOutcome:
    state: str          # "pending" (new or still waiting), "confirmed" (nothing to do), "revoked-renewed"
    send_mail: bool     # a confirmation mail may go out now (within the per-window allowance)
    reminder: bool      # that mail is the reminder (the second of its window)


@dataclass(frozen=True)
class ConfirmOutcome:
    state: str          # "confirmed", "already", "expired", "missing", "revoked"


class OptinQueries:
    """Mixed into storage.Store; each method is one transaction."""

    engine: Any
    sql: Any  # storage.hotpath.DriverSql (the Store's)

    def signup(self, client: str, list_key: str, address: str, *, source: str, ip: str | None,
               user_agent: str, disclosure: str, channel: str, at: datetime, double: bool,
               window: timedelta, max_sends: int = 2) -> SignupOutcome:
        """Record a sign-up; for double opt-in, say whether a confirmation mail may be sent now.

        An existing confirmed record is left alone (its proof stays as it was). A pending one
        counts mails per window: the request and one reminder, then nothing until the window ends.
        """
        where = (_consent.c.client == client, _consent.c.list_key == list_key, _consent.c.address == address)
        with self.sql.begin() as conn:
            row = conn.execute(select(_consent).where(*where)).mappings().first()
            if row is not None and row["status"] == "confirmed":
                return SignupOutcome("confirmed", False, False)
            status = "pending" if double else "confirmed"
            fields = {"status": status, "method": "double" if double else "single", "source": source,
                      "signed_up_at": at, "ip": ip, "disclosure": disclosure, "user_agent": user_agent,
                      "confirmed_at": None, "revoked_at": None, "updated_at": at}
            if row is None:
                conn.execute(insert(_consent), [{"client": client, "list_key": list_key, "address": address,
                                                 "last_contact_at": None, "extra": "{}", **fields,
                                                 "confirm_sent_at": None, "confirm_sends": 0}])
                event = "created"
            elif row["status"] == "revoked":
                conn.execute(update(_consent).where(*where).values(**fields, confirm_sent_at=None, confirm_sends=0))
                event = "renewed"
            else:
                event = "requested-again"  # still pending: keep the original sign-up as it was
            send = reminder = False
            if double:
                current = conn.execute(select(_consent.c.confirm_sent_at, _consent.c.confirm_sends)
                                       .where(*where)).first()
                sent_at, sends = current if current else (None, 0)
                if sent_at is not None and sent_at.tzinfo is None:
                    sent_at = sent_at.replace(tzinfo=at.tzinfo)
                if sent_at is None or at - sent_at >= window:
                    send, sends, sent_at = True, 1, at
                elif sends < max_sends:
                    send, reminder, sends = True, True, sends + 1
                if send:
                    conn.execute(update(_consent).where(*where).values(confirm_sent_at=sent_at, confirm_sends=sends))
            conn.execute(insert(_event), [{
                "at": at, "client": client, "list_key": list_key, "address": address, "event": event,
                "status": status, "channel": channel, "ip": ip,
                "detail": json.dumps({"source": source, "user_agent": user_agent, "disclosure": disclosure,
                                      "confirmation_mail": ("reminder" if reminder else "sent") if send
                                      else ("not needed" if not double else "limit reached")}),
            }])
        return SignupOutcome("pending" if double else "confirmed", send, reminder)

    def confirm(self, client: str, list_key: str, address: str, *, token_issued_at: datetime, at: datetime,
                ip: str | None, user_agent: str, channel: str, expiry: timedelta) -> ConfirmOutcome:
        """Confirm a pending record (or refresh a confirmed one on re-permission); idempotent."""
        where = (_consent.c.client == client, _consent.c.list_key == list_key, _consent.c.address == address)
        with self.sql.begin() as conn:
            row = conn.execute(select(_consent).where(*where)).mappings().first()
            if row is None:
                return ConfirmOutcome("missing")
            if row["status"] == "revoked":
                return ConfirmOutcome("revoked")
            confirmed_at = row["confirmed_at"]
            if confirmed_at is not None and confirmed_at.tzinfo is None:
                confirmed_at = confirmed_at.replace(tzinfo=at.tzinfo)
            if row["status"] == "confirmed" and confirmed_at is not None and confirmed_at >= token_issued_at:
                return ConfirmOutcome("already")
            if row["status"] == "pending" and at - token_issued_at > expiry:
                return ConfirmOutcome("expired")  # pending records expire: an old link confirms nothing
            event = "confirmed" if row["status"] == "pending" else "refreshed"
            conn.execute(update(_consent).where(*where).values(
                status="confirmed", method="double", confirmed_at=at, updated_at=at))
            conn.execute(insert(_event), [{
                "at": at, "client": client, "list_key": list_key, "address": address, "event": event,
                "status": "confirmed", "channel": channel, "ip": ip,
                "detail": json.dumps({"user_agent": user_agent}),
            }])
        return ConfirmOutcome("confirmed")

    def stale_consents(self, client: str, list_key: str, before: datetime) -> list[str]:
        """Confirmed records whose later of confirmation/sign-up and last contact is before `before`."""
        basis = func.coalesce(_consent.c.confirmed_at, _consent.c.signed_up_at)
        with self.engine.connect() as conn:
            return list(conn.execute(
                select(_consent.c.address).where(
                    _consent.c.client == client, _consent.c.list_key == list_key, _consent.c.status == "confirmed",
                    basis < before,
                    or_(_consent.c.last_contact_at.is_(None), _consent.c.last_contact_at < before))
                .order_by(_consent.c.address)).scalars())

    def note_event(self, client: str, list_key: str, addresses: list[str], event: str, channel: str,
                   at: datetime, detail: str = "") -> None:
        """Add a history line to each record (e.g. a re-permission request was sent)."""
        if not addresses:
            return
        with self.sql.begin() as conn:
            statuses = dict(conn.execute(select(_consent.c.address, _consent.c.status).where(
                _consent.c.client == client, _consent.c.list_key == list_key,
                _consent.c.address.in_(addresses))).all())
            conn.execute(insert(_event), [{
                "at": at, "client": client, "list_key": list_key, "address": a, "event": event,
                "status": statuses.get(a, "missing"), "channel": channel, "ip": None, "detail": detail,
            } for a in addresses])

    def list_proof(self, client: str, list_key: str) -> list[tuple[Consent, list[ConsentEvent]]]:
        """Every record of a list with its history: what a client hands over when a complaint is appealed."""
        from sqlmodel import Session
        from sqlmodel import select as model_select

        with Session(self.engine) as session:
            records = session.exec(model_select(Consent).where(
                Consent.client == client, Consent.list_key == list_key).order_by(Consent.address)).all()
            events = session.exec(model_select(ConsentEvent).where(
                ConsentEvent.client == client, ConsentEvent.list_key == list_key).order_by(ConsentEvent.id)).all()
        by_address: dict[str, list[ConsentEvent]] = {}
        for e in events:
            by_address.setdefault(e.address, []).append(e)
        return [(r, by_address.get(r.address, [])) for r in records]
