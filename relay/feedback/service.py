"""Feedback for one relay process: the relay's own addresses, attribution, effects, copies' return paths."""
from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from relay import replies
from storage.consent import suppression_key
from relay.feedback.classify import HARD, NONE, SENDER, SOFT, classify
from relay.feedback.parse import ARF, DSN, Report, parse_report
from relay.feedback.verp import ReturnPaths, recipient_digest, stamp_headers
from relay.keys import read_token_keys
from relay.base.offload import cpu_bound
from relay.crypto.tokens import TokenError
from storage.feedback import FeedbackRecord, FeedbackResult

if TYPE_CHECKING:
    from relay.config import ClientConfig
    from relay.mail.message import Message
    from relay.runtime import Runtime

log = logging.getLogger("relay.feedback")

INTAKE_LOCALS = ("fbl", "postmaster", "abuse")
PARSE_LIMIT = 1 << 20
_COUNTER = {HARD: "hard_bounces", SOFT: "soft_bounces", SENDER: "sender_faults"}
_RANK = {HARD: 3, SENDER: 2, SOFT: 1, NONE: 0}
_OUR_RECEIVED = re.compile(r"\(consent-relay\)\s+with\s+\S+\s+id\s+([0-9A-F]{12})\s+for\s+<([^<>\s]+)>")


def _clean(text: str, limit: int = 500) -> str:
    """One line any database takes: no NUL (PostgreSQL refuses it), no lone surrogates, bounded."""
    text = " ".join(text.replace("\x00", " ").split())[:limit]
    return text.encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True)
class Copy:
    """The delivered copy a report is about."""

    client: str
    list_key: str
    recipient: str
    queue_id: str


@dataclass(frozen=True)
class Outcome:
    """What one report did, for the SMTP reply, the CLI line and the tests."""

    kind: str  # dsn / arf / auto-reply / other
    category: str  # hard / soft / sender / complaint / other / none
    status: str
    copy: Copy | None
    forged: bool = False
    result: FeedbackResult | None = None

    def line(self) -> str:
        what = f"{self.kind} {self.category}" + (f" {self.status}" if self.status else "")
        if self.forged:
            return f"{what}: token does not verify; nothing changed"
        if self.copy is None:
            return f"{what}: names no copy this relay sent; nothing changed" if self.kind in (DSN, ARF) else \
                f"{what}: not a bounce or complaint; nothing changed"
        target = f"{self.copy.client}/{self.copy.list_key or '-'} {self.copy.recipient}"
        if self.result is None:
            return f"{what}: {target}: nothing to do"
        if not self.result.new:
            return f"{what}: {target}: already recorded"
        return f"{what}: {target}: recorded" + (", suppressed" if self.result.suppressed else "")


class Feedback:
    """Built once per Runtime; every method that writes goes through the Store's one-transaction calls."""

    def __init__(self, rt: "Runtime"):
        self.rt = rt
        config = rt.config
        self.hostname = config.relay.hostname.lower()
        self.paths = ReturnPaths(read_token_keys(config), self.hostname, timedelta(days=config.token_max_age_days))
        self.settings = config.feedback
        # our own unsubscribe links only (the page URL and the mailto): another sender's /u/ link in a
        # report is none of ours, and must neither attribute nor look like a forgery
        self._unsub_in_text = re.compile(
            rf"{re.escape(config.http.public_url)}/u/([a-z2-7]{{16,512}})|"
            rf"unsubscribe\+([a-z2-7]{{16,512}})@{re.escape(self.hostname)}", re.IGNORECASE)

    # --- the relay's own addresses (RCPT without AUTH) ---
    def address_kind(self, address: str) -> str | None:
        """bounce / fbl / postmaster / abuse for the relay's own intake addresses, else None."""
        local, _, domain = address.strip().strip("<>").rpartition("@")
        if domain.lower().rstrip(".") != self.hostname and domain:
            return None
        if not domain and address.strip().strip("<>").lower() != "postmaster":
            return None  # RFC 5321 §4.1.1.3: bare <postmaster> is the local postmaster
        local = local.lower() or "postmaster"
        if local.startswith("bounce+"):
            return "bounce"
        return local if local in INTAKE_LOCALS else None

    def rcpt_refusal(self, address: str) -> str | None:
        """The RCPT reply for a bounce+TOKEN address whose token does not verify (550 5.1.1), else None."""
        token = self.paths.token_of(address)
        if token is None:
            return None
        try:
            self.paths.verify(token, self.rt.services.clock())
        except TokenError:
            return replies.BAD_RETURN_PATH
        return None

    # --- each copy ---
    def envelope_sender(self, queue_id: str, recipient: str, at: datetime, client_sender: str) -> str:
        """bounce+TOKEN@HOSTNAME; the client's own sender with `[feedback] verp = false`."""
        return self.paths.address(queue_id, recipient, at) if self.settings.verp else client_sender

    def stamp(self, headers: list[bytes], message: "Message", client: "ClientConfig", list_key: str,
              fingerprint: str | None = None) -> list[bytes]:
        """Feedback-ID: CAMPAIGN:LIST:CLIENT:HOSTNAME on the copy, replacing the client's (DKIM signs it)."""
        if not self.settings.verp:
            return headers
        return stamp_headers(headers, message.first("x-campaign-id"), message.body, list_key, client.name,
                             self.hostname, fingerprint)

    # --- intake ---
    async def intake(self, recipients: list[str], data: bytes, source: str = "smtp") -> str:
        """Mail to the relay's own addresses; the SMTP reply."""
        tokens = [t for t in (self.paths.token_of(r) for r in recipients) if t]
        kinds = {self.address_kind(r) for r in recipients} - {None}
        outcomes = await self.ingest(data, "+".join(sorted(kinds)) or source, tokens)
        first = outcomes[0]
        if first.forged:
            return replies.FEEDBACK_FORGED
        return replies.one_line(f"{replies.FEEDBACK_RECEIVED}: " + "; ".join(o.line() for o in outcomes))[:400]

    async def ingest(self, data: bytes, source: str, envelope_tokens: list[str] | None = None) -> list[Outcome]:
        """Read one report and apply what it says; the same path for SMTP intake and `relay feedback ingest`."""
        # a report's facts sit in its first parts; past PARSE_LIMIT is a returned message's body, which an
        # unauthenticated sender could make 25 MB of MIME for the parser to chew on
        data = data[:PARSE_LIMIT]
        report = await cpu_bound(len(data), parse_report, data)
        self.rt.metrics.feedback_report(report.kind)
        if report.kind not in (DSN, ARF):
            return [Outcome(report.kind, "none", "", None)]
        text = report.original or data.decode("utf-8", "replace")
        try:
            copy = await self.attribute(report, text, envelope_tokens or [])
        except TokenError:
            self.rt.metrics.feedback_outcome(report.kind, "forged")
            log.warning("a %s report carried a token that does not verify; nothing changed", report.kind)
            await self._note(report.kind, "none", "", "forged", source, "a token in the report does not verify")
            return [Outcome(report.kind, "none", "", None, forged=True)]
        if report.kind == ARF:
            category = "complaint" if report.feedback_type == "abuse" else "other"
            outcome = Outcome(ARF, category, report.feedback_type, copy)
            if copy is not None:
                outcome = await self._record_complaint(outcome, copy, report, source)
            else:
                await self._note(ARF, category, report.feedback_type, "unattributed", source,
                                 ", ".join(report.reported_recipients) or "names no copy of this relay")
            self.rt.metrics.feedback_outcome(ARF, category if copy else "unattributed")
            return [outcome]
        judged = [(classify(f.status, f.diagnostic, f.action), f) for f in report.failures]
        judged = [(c, f) for c, f in judged if c[0] != NONE]
        if not judged:
            return [Outcome(DSN, "none", "", copy)]
        # one copy per return path: the worst line decides (a hard failure beats a deferral)
        (category, status), failure = max(judged, key=lambda j: _RANK[j[0][0]])
        outcome = Outcome(DSN, category, status, copy)
        if copy is not None:
            outcome = await self._record_bounce(outcome, copy, status, failure.diagnostic, source)
        else:
            await self._note(DSN, category, status, "unattributed", source,
                             f"{failure.recipient or '-'}: {failure.diagnostic}")
        self.rt.metrics.feedback_outcome(DSN, category if copy else "unattributed")
        return [outcome]

    async def attribute(self, report: Report, text: str, envelope_tokens: list[str]) -> Copy | None:
        """The copy a report is about; TokenError when the token it carries is forged or tampered with.

        In order: the return-path token (envelope, or quoted in the report), the unsubscribe token of
        the reported copy's List-Unsubscribe, our Received field's queue id and recipient. A report
        that carries a token that does not verify changes nothing, whatever else it says.
        """
        now = self.rt.services.clock()
        store = self.rt.store
        tokens = list(dict.fromkeys(envelope_tokens + self.paths.tokens_in(text)))
        for token in tokens:
            ref = self.paths.verify(token, now)  # raises TokenError: forged
            for client, list_key, recipient in await store.run(store.copies_of, ref.queue_id):
                if recipient_digest(recipient) == ref.digest:
                    return Copy(client, list_key, suppression_key(recipient), ref.queue_id)
        if tokens:
            return None  # a genuine token of a copy whose record is gone
        for token in dict.fromkeys((m.group(1) or m.group(2)).lower() for m in self._unsub_in_text.finditer(text)):
            parsed = self.rt.tokens.verify(token, "unsubscribe", now)
            return Copy(parsed.client, parsed.list_key, suppression_key(parsed.recipient), "")
        for match in _OUR_RECEIVED.finditer(text):
            qid, recipient = match.group(1), match.group(2)
            for client, list_key, known in await store.run(store.copies_of, qid):
                if suppression_key(known) == suppression_key(recipient):
                    return Copy(client, list_key, suppression_key(known), qid)
        return None

    async def _note(self, kind: str, category: str, status: str, verdict: str, source: str, detail: str) -> None:
        """A report that changes nothing (forged, or about no copy of ours) still goes into the audit log."""
        row = {"at": self.rt.services.clock(), "client": "*", "list_key": None, "recipient": "-",
               "stage": "feedback", "rule": f"feedback.{kind}.{category}", "verdict": verdict, "code": None,
               "status": _clean(status, 32) or None, "reason": _clean(f"via {source}: {detail}"),
               "message_id": None, "queue_id": ""}
        await self.rt.store.run(self.rt.store.record_decisions, [row])

    async def _record(self, rec: FeedbackRecord) -> FeedbackResult:
        result = await self.rt.store.run(self.rt.store.record_feedback, rec)
        if result.suppressed:
            self.rt.metrics.feedback_suppressed(rec.kind)
        if result.new and rec.webhook:
            self.rt.webhooks.wake()
        return result

    def _webhook(self, client: str) -> bool:
        cfg = self.rt.config.clients.get(client)
        return bool(cfg and cfg.webhook_url)

    async def _record_bounce(self, outcome: Outcome, copy: Copy, status: str, diagnostic: str,
                             source: str) -> Outcome:
        category = outcome.category
        rec = FeedbackRecord(
            at=self.rt.services.clock(), client=copy.client, list_key=copy.list_key, recipient=copy.recipient,
            kind="bounce", category=category, status=_clean(status, 32), detail=_clean(diagnostic),
            queue_id=copy.queue_id, source=source,
            dedupe=f"bounce:{copy.queue_id or secrets.token_hex(6)}:{copy.recipient}:{category}",
            counter=_COUNTER.get(category), suppress="bounce" if category == HARD else None,
            soft_limit=(self.settings.soft_bounce_limit, self.settings.soft_bounce_days) if category == SOFT else None,
            webhook=self._webhook(copy.client))
        return Outcome(outcome.kind, category, status, copy, result=await self._record(rec))

    async def _record_complaint(self, outcome: Outcome, copy: Copy, report: Report, source: str) -> Outcome:
        complaint = outcome.category == "complaint"
        rec = FeedbackRecord(
            at=self.rt.services.clock(), client=copy.client, list_key=copy.list_key, recipient=copy.recipient,
            kind="complaint" if complaint else "feedback", category=outcome.category,
            status=_clean(report.feedback_type or "abuse", 64),
            detail=_clean(f"ARF {report.feedback_type or 'abuse'} report"),
            queue_id=copy.queue_id, source=source,
            dedupe=f"arf:{_clean(report.feedback_type, 64)}:{copy.queue_id or secrets.token_hex(6)}:{copy.recipient}",
            counter="complaints" if complaint else None, suppress="complaint" if complaint else None,
            webhook=self._webhook(copy.client))
        return Outcome(outcome.kind, outcome.category, outcome.status, copy, result=await self._record(rec))

    # --- what the relay learns itself ---
    async def upstream_refused(self, client: str, list_key: str, queue_id: str, recipient: str, code: int,
                               reply: str) -> None:
        """A synchronous 5xx from the upstream: the same classifier as a DSN (never raises)."""
        try:
            if not list_key and queue_id:  # a spooled copy: its list is in the message's decision rows
                store = self.rt.store
                list_key = next((lk for c, lk, r in await store.run(store.copies_of, queue_id)
                                 if c == client and suppression_key(r) == suppression_key(recipient)), "")
            category, status = classify("", f"{code} {reply}", "failed")
            copy = Copy(client, list_key, suppression_key(recipient), queue_id)
            await self._record_bounce(Outcome(DSN, category, status, copy), copy, status, f"{code} {reply}",
                                      "upstream")
            self.rt.metrics.feedback_outcome("upstream", category)
        except Exception:
            log.error("queue %s: could not record the upstream refusal as feedback", queue_id)

    async def note_unsubscribe(self, client: str, list_key: str, recipient: str, channel: str) -> None:
        """An unsubscribe as an event for the client (API, webhook) and a counter; never raises."""
        try:
            rec = FeedbackRecord(
                at=self.rt.services.clock(), client=client, list_key=list_key,
                recipient=suppression_key(recipient), kind="unsubscribe", category="unsubscribe",
                status="", detail=f"unsubscribed via {channel}", queue_id="", source=channel,
                dedupe=f"unsubscribe:{secrets.token_hex(8)}", counter="unsubscribes",
                webhook=self._webhook(client))
            await self._record(rec)
        except Exception:
            log.error("could not record an unsubscribe of %s/%s as a feedback event", client, list_key)

