"""One accepted DATA: decide per recipient, build and sign each copy, deliver, and say 250 only when safe."""
from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING

from filters.context import CopyContext, MessageContext
from filters.verdict import Verdict
from relay import replies
from relay.delivery.upstream import DeliveryResult
from relay.mail.dkim_fanout import FanoutSigning
from relay.mail.dsn import FailedRecipient, build_dsn, upstream_failure
from relay.base.offload import cpu_bound
from relay.mail.message import Copy, Message, field_name, make_field
from relay.mail.mime_footer import MAX_DEPTH, STRUCTURE_FACT, mime_structure
from relay.mail.headers_check import repeated_field
from relay.accounts import STEP_FACT
from relay.base.maillog import mail_line, upstream_queue_id
from filters.content import TAG_HEADER, tag_header_fields
from relay.pipeline import Decision, MessageDecision

if TYPE_CHECKING:
    from relay.config import ClientConfig, ListConfig
    from relay.mail.dkim import DkimSigner
    from relay.runtime import Runtime

log = logging.getLogger("relay.transaction")

BIG_MESSAGE = 1 << 20  # above this, copies are built one at a time to bound memory
_LIST_ID = re.compile(r"<([^<>\s]+)>\s*$")
_DROPPED_CLIENT_FIELDS = frozenset({TAG_HEADER.lower(), "dkim-signature"})  # never copied from the client


def new_queue_id() -> str:
    return secrets.token_hex(6).upper()


def resolve_list(client: "ClientConfig", message: Message) -> "ListConfig | str":
    """The list a message names (List-Id, RFC 2919) or the client's default; else a 550 reply."""
    list_id = message.first("list-id")
    if list_id is None:
        if client.default_list is None:
            return replies.NO_LIST.format(client=client.name)
        return client.lists[client.default_list]
    match = _LIST_ID.search(list_id)
    ident = (match.group(1) if match else list_id).strip().lower().rstrip(".")
    key = ident
    for domain in client.sender_domains:
        if ident.endswith("." + domain):
            key = ident[: -len(domain) - 1]
            break
    found = client.lists.get(key)
    if found is None:
        return replies.one_line(replies.UNKNOWN_LIST.format(list=ident, client=client.name))
    return found


def copy_headers(message: Message, client: "ClientConfig", now: datetime, qid: str, facts: dict) -> list[bytes]:
    """The client's header, plus Date and Message-ID when missing (RFC 6409 §8.2-8.3) and the
    content tags; done once per message, each copy starts from it."""
    # only the relay may say which content rule a message tripped; a client's DKIM-Signature is
    # dropped: the footer and our List-Unsubscribe break it, and a failing signature counts
    # against the copy at some receivers (Rspamd R_DKIM_REJECT), while ours is aligned and valid
    headers = [make_field(name, value) for name, value in tag_header_fields(facts)]
    headers += [f for f in message.headers if field_name(f) not in _DROPPED_CLIENT_FIELDS]
    if not message.has("date"):
        headers.append(make_field("Date", format_datetime(now)))
    if not message.has("message-id"):
        headers.append(make_field("Message-ID", make_msgid(idstring=qid, domain=client.signing_domain)))
    return headers


@dataclass
class Outcome:
    delivered: list[str] = field(default_factory=list)
    upstream_ids: dict[str, str] = field(default_factory=dict)  # recipient -> the upstream's queue id
    temporary: dict[str, tuple[bytes, DeliveryResult]] = field(default_factory=dict)
    permanent: dict[str, DeliveryResult] = field(default_factory=dict)


def received_parts(source: str, hostname: str, protocol: str, qid: str, now: datetime) -> tuple[str, str]:
    """The Received field's value on either side of the recipient's address (RFC 5321 §4.4)."""
    return (f"from {source} by {hostname} (consent-relay) with {protocol} id {qid} for <",
            f">; {format_datetime(now)}")


def storable(text: str | None) -> str | None:
    """Text every database takes: undecodable header bytes (lone surrogates) and NUL become U+FFFD."""
    if text is None or (text.isascii() and "\x00" not in text):
        return text
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def audit_row(at: datetime, client: str, list_key: str | None, qid: str, message_id: str | None,
              recipient: str, stage: str, verdict: Verdict | None, outcome: str,
              code: int | None = None, status: str | None = None, reason: str = "",
              upstream_qid: str | None = None) -> dict:
    return {
        "at": at, "client": client, "list_key": list_key, "recipient": recipient,
        "stage": stage or "pipeline", "rule": (verdict.rule if verdict else "") or stage or "pipeline",
        "verdict": outcome, "code": code if code is not None else (verdict.code if verdict else None),
        "status": status if status is not None else (verdict.status if verdict else None),
        # header values keep undecodable bytes as surrogates; one such row would fail the whole
        # group commit, and every message waiting on it, with 451 4.3.0
        "reason": storable(reason or (verdict.reason if verdict else "")), "message_id": storable(message_id),
        "queue_id": qid, "upstream_queue_id": upstream_qid,
    }


def _refusal_reply(decision: MessageDecision, list_cfg: "ListConfig") -> str:
    """No recipient is left: one reply that a person can act on."""
    refused = decision.refused
    temporary = [d for d in refused if d.verdict.code < 500]
    first = (temporary or refused)[0]
    if len({(d.verdict.code, d.verdict.reason) for d in refused}) == 1:
        return replies.verdict_reply(first.verdict)
    if temporary:
        return replies.verdict_reply(first.verdict)
    return replies.one_line(
        f"550 5.7.1 No recipient may receive this message on list {list_cfg.key}: "
        f"{first.recipient}: {first.verdict.reason}"
        + (f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""))


class Transaction:
    """The work for one message from one client; `run` returns the SMTP reply."""

    def __init__(self, rt: "Runtime", client: "ClientConfig", mail_from: str, recipients: list[str],
                 data: bytes | Message, peer: str, helo: str, authenticated: bool, tls: bool):
        self.rt, self.client, self.mail_from, self.recipients = rt, client, mail_from, recipients
        self.message = data if isinstance(data, Message) else Message(data)
        self.peer, self.helo, self.authenticated, self.tls = peer, helo, authenticated, tls
        self.qid = new_queue_id()
        self.now = rt.services.clock()
        self.contacts: list[tuple[str, str, list[str], datetime]] = []
        self._received: tuple[str, str] | None = None  # the Received field around the recipient

    async def run(self) -> str:
        decided = await self.decide()
        if isinstance(decided, str):
            return decided
        ctx, list_cfg, decision = decided
        accepted = decision.accepted
        if not accepted:
            return _refusal_reply(decision, list_cfg)
        outcome = await self.deliver_copies(ctx, list_cfg, accepted)
        if not outcome.delivered and outcome.temporary:  # the client retries it: not a repeat, not counted
            self.rt.spawn(self.rt.accounts.undo(self.client, ctx.facts, self.qid))
        # a delivered copy keeps consent current (max_consent_age_days counts from it)
        if "consent" in ctx.facts and outcome.delivered:
            self.contacts.append((self.client.name, list_cfg.key, outcome.delivered, self.now))
        return await self.settle(decision.refused, outcome, list_cfg, message_id=self.message.first("message-id"))

    async def decide(self) -> "tuple[MessageContext, ListConfig, MessageDecision] | str":
        """The message-phase stages for every recipient, on record before anything leaves; a
        reply instead when the message itself is refused (shared with the milter, relay/milter)."""
        rt = self.rt
        repeated = repeated_field(self.message.headers)
        if repeated is not None:  # before any stage: each reads one occurrence, a reader may show the other
            rt.metrics.refused("headers", "headers.repeated")
            return replies.REPEATED_FIELD.format(field=repeated)
        structure = mime_structure(self.message.headers, self.message.body)
        if (structure.depth if structure is not None else 1) > MAX_DEPTH:
            rt.metrics.refused("mime", "mime.depth")
            self.log_refusal("mime", "mime.depth", replies.MIME_TOO_DEEP)
            return replies.MIME_TOO_DEEP
        list_cfg = resolve_list(self.client, self.message)
        if isinstance(list_cfg, str):
            rt.metrics.refused("list", "list.unknown")
            self.log_refusal("list", "list.unknown", list_cfg)
            return list_cfg
        ctx = MessageContext(rt.config, self.client, list_cfg, self.mail_from, tuple(self.recipients),
                             self.message, rt.services, self.qid)
        ctx.facts[STRUCTURE_FACT] = structure  # the footer plans from it: the body is scanned once
        decision = await rt.pipeline.check_message(ctx)
        message_id = self.message.first("message-id")
        rows = [audit_row(self.now, self.client.name, list_cfg.key, self.qid, message_id, d.recipient,
                          d.stage, d.verdict, "accept" if d.accepted else d.verdict.action.value)
                for d in decision.decisions.values()]
        # the decision is evidence: it is committed before anything leaves
        await rt.writer.write(rows)
        for d in decision.decisions.values():
            mail_line(event="decision", qid=self.qid, client=self.client.name, peer=self.peer, list=list_cfg.key,
                      rcpt=d.recipient, stage=d.stage or "pipeline", rule=d.verdict.rule,
                      reply="accept" if d.accepted else replies.verdict_reply(d.verdict))
        for d in decision.refused:
            rt.metrics.refused(d.stage, d.verdict.rule)
        return ctx, list_cfg, decision

    def refusal_reply(self, decision: MessageDecision, list_cfg: "ListConfig") -> str:
        return _refusal_reply(decision, list_cfg)

    def log_refusal(self, stage: str, rule: str, reply: str) -> None:
        """A whole-message refusal before any recipient decision: one line per recipient."""
        for rcpt in self.recipients:
            mail_line(event="decision", qid=self.qid, client=self.client.name, peer=self.peer, rcpt=rcpt,
                      stage=stage, rule=rule, reply=reply)

    def base_headers(self, facts: dict) -> list[bytes]:
        return copy_headers(self.message, self.client, self.now, self.qid, facts)

    def received_field(self, recipient: str) -> str:
        if self._received is None:  # all but the recipient is the same for every copy
            protocol = "ESMTP" + ("S" if self.tls else "") + ("A" if self.authenticated else "")
            helo = replies.one_line(self.helo)[:200] or "unknown"
            self._received = received_parts(f"{helo} ([{self.peer}])", self.rt.config.relay.hostname, protocol,
                                            self.qid, self.now)
        return recipient.join(self._received)

    def stamped_headers(self, ctx: MessageContext, list_cfg: "ListConfig") -> list[bytes]:
        """Every copy's starting header: the client's with ours added and the relay's Feedback-ID
        (shared with the milter, so both paths' copies carry the same one)."""
        # Feedback-ID names the campaign the accounts step counted this message in (when it did), so
        # a mailbox provider's report and `relay campaign show` speak of the same campaign
        step = ctx.facts.get(STEP_FACT)
        campaign_id = step.campaign["id"] if step is not None and step.campaign else None
        return self.rt.feedback.stamp(self.base_headers(ctx.facts), self.message, self.client, list_cfg.key,
                                      fingerprint=campaign_id)

    async def deliver_copies(self, ctx: MessageContext, list_cfg: "ListConfig", accepted: list[str]) -> Outcome:
        rt = self.rt
        headers = self.stamped_headers(ctx, list_cfg)
        signer = rt.signer_for(self.client, self.message)
        # what every copy's signature shares (body runs, header values) is worked out once
        signing = FanoutSigning(signer, self.message.body) if len(accepted) > 1 else signer
        outcome = Outcome()
        pending = iter(accepted)
        now_ts = int(self.now.timestamp())

        async def worker() -> None:
            for recipient in pending:
                signatures, copy = await self.build_copy(ctx, list_cfg, recipient, headers, signing, now_ts)
                data = await cpu_bound(len(copy.body), b"".join, [*signatures, *copy.headers, b"\r\n", copy.body])
                del copy
                # the relay's own return path (VERP): bounces and complaints come back to it
                sender = rt.feedback.envelope_sender(self.qid, recipient, self.now, self.mail_from)
                started = time.perf_counter()
                result = await rt.upstream.deliver(sender, recipient, data)
                upstream_qid = upstream_queue_id(result.reply) if result.status == "delivered" else None
                rt.note_delivery(self.client.name, result)
                mail_line(event="deliver", qid=self.qid, client=self.client.name, list=list_cfg.key, rcpt=recipient,
                          stage="delivery", rule=result.status, reply=replies.one_line(f"{result.code} {result.reply}"),
                          upstream_qid=upstream_qid, attempt=1,
                          elapsed_ms=round((time.perf_counter() - started) * 1000, 1))
                if result.status == "delivered":
                    outcome.delivered.append(recipient)
                    if upstream_qid:
                        outcome.upstream_ids[recipient] = upstream_qid
                elif result.status == "temporary":
                    outcome.temporary[recipient] = (data, result)
                else:
                    outcome.permanent[recipient] = result

        width = 1 if self.message.size > BIG_MESSAGE else max(1, min(rt.config.upstream.pool_size, len(accepted)))
        await asyncio.gather(*(worker() for _ in range(width)))
        return outcome

    async def build_copy(self, ctx: MessageContext, list_cfg: "ListConfig", recipient: str, headers: list[bytes],
                         signer: "DkimSigner | FanoutSigning", now_ts: int,
                         received: bool = True) -> tuple[list[bytes], Copy]:
        """One recipient's copy through the copy stages, and its signatures (shared with the milter,
        which leaves the Received field to Postfix: `received=False`)."""
        rt = self.rt
        copy = Copy(recipient, list(headers), self.message.body)
        if received:
            copy.prepend("Received", self.received_field(recipient))
        await rt.pipeline.transform(CopyContext(
            rt.config, self.client, list_cfg, self.mail_from, recipient, self.message, copy,
            rt.services, self.qid, ctx.facts))
        # signing is the last step: nothing touches the copy after this. OpenSSL releases the
        # GIL, so in the signing threads it uses the second core and never stalls the loop
        signatures = await rt.signing.run(signer.sign, copy.headers, copy.body, now_ts, size=len(copy.body))
        return signatures, copy

    async def settle(self, refused: list[Decision], outcome: Outcome, list_cfg: "ListConfig",
                     message_id: str | None) -> str:
        """Turn delivery results into the reply; spool what must be retried, bounce what failed."""
        rt = self.rt
        at, name, key = rt.services.clock(), self.client.name, list_cfg.key
        rows = [audit_row(at, name, key, self.qid, message_id, r, "delivery", None, "deliver",
                          250, "2.0.0", "accepted by upstream", outcome.upstream_ids.get(r))
                for r in outcome.delivered]
        if not outcome.delivered and outcome.temporary:
            # nothing left the relay: the client keeps the message and retries it whole
            first = next(iter(outcome.temporary.values()))[1]
            rows += [audit_row(at, name, key, self.qid, message_id, r, "delivery", None, "tempfail",
                               res.code, "4.4.1", res.reply) for r, (_, res) in outcome.temporary.items()]
            await self.record_outcome(rows)
            rt.metrics.upstream_tempfail()
            return replies.one_line(f"{replies.UPSTREAM_UNAVAILABLE} ({first.code} {first.reply})")
        if outcome.temporary:
            retry_at = at + timedelta(seconds=rt.retry_delay(0))
            await rt.store.run(rt.store.spool_add, [
                {"queue_id": self.qid, "client": name, "mail_from": self.mail_from, "recipient": r,
                 "data": data, "created_at": at, "next_attempt_at": retry_at, "attempts": 1,
                 "last_error": replies.one_line(f"{res.code} {res.reply}")}
                for r, (data, res) in outcome.temporary.items()])
            rows += [audit_row(at, name, key, self.qid, message_id, r, "delivery", None, "spool",
                               res.code, "4.4.1", res.reply) for r, (_, res) in outcome.temporary.items()]
        rows += [audit_row(at, name, key, self.qid, message_id, r, "delivery", None, "bounce",
                           res.code, "5.0.0", res.reply) for r, res in outcome.permanent.items()]
        # the upstream's 5xx through the bounce classifier, before the reply: a hard refusal
        # suppresses the address before the client's next message to it (never raises)
        await asyncio.gather(*(rt.feedback.upstream_refused(name, key, self.qid, r, res.code, res.reply)
                               for r, res in outcome.permanent.items()))
        rt.metrics.copies_delivered(len(outcome.delivered))
        if not outcome.delivered and not outcome.temporary:
            # every copy was refused by the upstream for good: say so directly, no bounce needed
            await self.record_outcome(rows)
            recipient, result = next(iter(outcome.permanent.items()))
            return replies.one_line(f"550 5.0.0 Upstream refused {recipient}: {result.code} {result.reply}")
        failed = [FailedRecipient(d.recipient, d.verdict.code, d.verdict.status, d.verdict.reason)
                  for d in refused]
        failed += [upstream_failure(r, res.code, res.reply) for r, res in outcome.permanent.items()]
        if failed:
            await self.send_dsn(failed)
        await self.record_outcome(rows)
        parts = [f"{len(outcome.delivered)} delivered"]
        if outcome.temporary:
            parts.append(f"{len(outcome.temporary)} queued for retry")
        if failed:
            parts.append(f"{len(failed)} refused, see the delivery status notification")
        return f"250 2.0.0 OK queued as {self.qid}: " + ", ".join(parts)

    async def record_outcome(self, rows: list[dict]) -> None:
        """Delivery rows and last contact are written behind the reply (the decisions are already
        on record); a storage fault here must not turn a sent message into a 4xx, so it is logged."""
        async def write() -> None:
            try:
                await self.rt.writer.write(rows, tuple(self.contacts))
            except Exception:
                log.error("queue %s: could not record the delivery outcome", self.qid)

        self.rt.spawn(write())

    async def send_dsn(self, failed: list[FailedRecipient]) -> None:
        rt = self.rt
        dsn = build_dsn(self.client, rt.config.relay.hostname, self.mail_from, failed,
                        self.message.headers, self.qid, rt.services.clock(), self.now)
        await rt.deliver_notification(self.client, self.mail_from, dsn)
