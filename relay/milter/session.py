"""One Postfix connection as the relay sees it: envelope checks at MAIL/RCPT, the stages and the copy
changes at end of message, turned into milter replies and edits (SPEC §13)."""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING

from kilter.protocol import messages as m

from relay import replies
from relay.mail.dsn import FailedRecipient
from relay.mail.message import Message, field_name
from relay.milter.protocol import replace_body, reply_code
from relay.policyd.rcpt import bare_address, client_for, normalized, recipient_refusal
from relay.transaction import Transaction, audit_row

if TYPE_CHECKING:
    from relay.config import ClientConfig
    from relay.runtime import Runtime

log = logging.getLogger("relay.milter")

CONTINUE = m.Continue()
ACCEPT = m.Accept()  # "no more events for this message": mail from no relay client passes untouched
ONE_RECIPIENT = "452 4.5.3 One recipient per message for marketing mail; send the others in a new transaction"
MANY_RECIPIENTS = ("451 4.5.3 A marketing message reached the milter with several recipients; "
                   "send one recipient per transaction")


def verp_return_path(tx: Transaction, accepted: list[str]) -> str | None:
    """The envelope sender the copy carries onward: the relay's VERP return path (SPEC §10), as
    `relay serve` gives each of its copies, or None to keep the client's. A value becomes SMFIR_CHGFROM."""
    feedback = tx.rt.feedback
    if not feedback.settings.verp or not tx.mail_from:
        return None  # `[feedback] verp = false`: the MTAs after the relay own the return path
    if len(accepted) != 1:
        # one copy to several recipients (a transactional message) has one envelope sender, and a
        # token names one recipient: any one of them would pin the others' bounces on the wrong address
        return None
    try:
        # the token names the milter's queue id (Postfix's `i`), which the audit rows carry too
        return feedback.envelope_sender(tx.qid, accepted[0], tx.now, tx.mail_from)
    except ValueError:
        _warn_unencodable(tx.qid)
        return None


_unencodable_warned = False


def _warn_unencodable(queue_id: str) -> None:
    """An MTA whose queue ids the token cannot carry: said once per process, not once per message."""
    global _unencodable_warned
    if not _unencodable_warned:
        _unencodable_warned = True
        log.warning("queue id %r does not fit a return-path token (up to 21 of [0-9A-Za-z-]): the milter's "
                    "copies keep the client's envelope sender", queue_id)


def sends_marketing(client: "ClientConfig") -> bool:
    """The milter cannot see List-Id at RCPT: a client with any marketing list sends one
    recipient per transaction (per-recipient footer and token); all-transactional clients may not."""
    return any(not mailing.transactional for mailing in client.lists.values())


class MilterSession:
    """The events of one milter connection; a transaction's state is reset at MAIL and abort."""

    def __init__(self, rt: "Runtime", peer: str):
        self.rt, self.peer = rt, peer
        self.leading_space = False
        self.client_addr = ""
        self.helo = ""
        self._reset()

    def _reset(self) -> None:
        self.client: ClientConfig | None = None
        self.mail_from = ""
        self.recipients: list[str] = []
        self.headers: list[bytes] = []
        self.body: list[bytes] = []

    async def event(self, message: m.Message, macros: dict[str, str]) -> list[m.Message]:
        match message:
            case m.Connect():
                self.client_addr = macros.get("{client_addr}") or str(message.address or "")
                return [CONTINUE]
            case m.Helo():
                self.helo = message.hostname
                return [CONTINUE]
            case m.EnvelopeFrom():
                return [await self.mail(bytes(message.sender).decode("utf-8", "replace"), macros)]
            case m.EnvelopeRecipient():
                return [await self.rcpt(bytes(message.recipient).decode("utf-8", "replace"))]
            case m.Header():
                self.header(message.name, bytes(message.value))
                return [CONTINUE]
            case m.Body():
                self.body.append(bytes(message.content))
                return [CONTINUE]
            case m.EndOfMessage():
                if self.client is None or not self.recipients:
                    self._reset()
                    return [CONTINUE]
                if message.content:
                    self.body.append(bytes(message.content))
                try:
                    return await self.end_of_message(macros.get("i", ""))
                except Exception as error:  # 451 4.3.0, never a traceback to the client
                    return [reply_code(replies.exception_reply(error))]
                finally:
                    self._reset()
            case m.Abort():
                self._reset()
                return []
        return [CONTINUE]  # Data, EndOfHeaders, Unknown

    # --- envelope ---
    async def mail(self, sender: str, macros: dict[str, str]) -> m.Message:
        self._reset()
        client = client_for(self.rt.config, macros.get("{auth_authen}"), self.client_addr)
        if client is None:
            return ACCEPT  # not one of the relay's clients: Postfix's own business
        refusal = self.rt.sender_refusal(client, bare_address(sender) or "<>")
        if refusal is not None:
            return reply_code(refusal)
        self.client, self.mail_from = client, normalized(sender)
        return CONTINUE

    async def rcpt(self, address: str) -> m.Message:
        if self.client is None:
            return ACCEPT  # an MTA that kept sending after our ACCEPT at MAIL
        if self.recipients and sends_marketing(self.client):
            self.rt.metrics.refused("milter", "milter.one_recipient")
            return reply_code(ONE_RECIPIENT)
        if len(self.recipients) >= self.rt.config.relay.max_recipients:
            return reply_code(replies.TOO_MANY_RECIPIENTS)
        refusal = await recipient_refusal(self.rt, self.client, self.mail_from, address)
        if refusal is not None:
            return reply_code(refusal)
        recipient = normalized(address)
        if recipient not in self.recipients:
            self.recipients.append(recipient)
        return CONTINUE

    def header(self, name: str, value: bytes) -> None:
        # Postfix separates folded lines with LF; the relay's message keeps CRLF
        value = value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        space = b"" if self.leading_space else b" "
        self.headers.append(name.encode("ascii", "replace") + b":" + space + value + b"\r\n")

    # --- end of message ---
    async def end_of_message(self, queue_id: str) -> list[m.Message]:
        rt = self.rt
        assert self.client is not None
        started = time.perf_counter()
        message = Message(b"".join(self.headers) + b"\r\n" + b"".join(self.body))
        tx = Transaction(rt, self.client, self.mail_from, list(self.recipients), message,
                         peer=self.client_addr, helo=self.helo, authenticated=False, tls=False)
        if queue_id:
            tx.qid = queue_id  # the audit log and Postfix's log then name the same message
        rt.in_flight += 1
        try:
            answer = await self._decide_and_change(tx, message)
        finally:
            rt.in_flight -= 1
        rt.metrics.latency.observe(time.perf_counter() - started)
        final = answer[-1]
        rt.metrics.reply(bytes(final.content).rstrip(b"\0").decode() if isinstance(final, m.ReplyCode)
                         else replies.OK)
        return answer

    async def _decide_and_change(self, tx: Transaction, message: Message) -> list[m.Message]:
        rt = self.rt
        decided = await tx.decide()
        if isinstance(decided, str):
            return [reply_code(decided)]
        ctx, list_cfg, decision = decided
        accepted = decision.accepted
        if not accepted:
            return [reply_code(tx.refusal_reply(decision, list_cfg))]
        if len(accepted) > 1 and not list_cfg.transactional:
            # per-recipient copies need per-recipient transactions (the RCPT check makes this rare:
            # a client whose lists were all transactional named a marketing list in List-Id)
            return [reply_code(MANY_RECIPIENTS)]
        signer = rt.signer_for(self.client, message)  # type: ignore[arg-type]
        # transactional copies carry no per-recipient part, so one copy serves all recipients; the
        # header starts as the relay's own copies' does, with its Feedback-ID (signed, as theirs is)
        signatures, copy = await tx.build_copy(ctx, list_cfg, accepted[0], tx.stamped_headers(ctx, list_cfg),
                                               signer, int(tx.now.timestamp()), received=False)
        edits: list[m.Message] = []
        for refused in decision.refused:
            edits.append(m.RemoveRecipient(f"<{refused.recipient}>"))
        return_path = verp_return_path(tx, accepted)
        if return_path is not None:
            edits.append(m.ChangeSender(f"<{return_path}>"))
        edits += header_edits(message.headers, copy.headers, self.leading_space)
        # the signature goes on top, as the relay's own copies carry it; signed last
        for signature in reversed(signatures):
            name, value = split_field(signature, self.leading_space)
            edits.append(m.InsertHeader(0, name, value))
        if copy.body != message.body:
            edits += replace_body(copy.body)
        if decision.refused:
            await tx.send_dsn([FailedRecipient(d.recipient, d.verdict.code, d.verdict.status, d.verdict.reason)
                               for d in decision.refused])
        await self._record(tx, list_cfg.key, accepted, "consent" in ctx.facts)
        return [*edits, CONTINUE]

    async def _record(self, tx: Transaction, list_key: str, accepted: list[str], marketing: bool) -> None:
        """The hand-off to Postfix is this side's delivery: audit it, keep consent current."""
        rt = self.rt
        at, message_id = rt.services.clock(), tx.message.first("message-id")
        rows = [audit_row(at, tx.client.name, list_key, tx.qid, message_id, r, "delivery", None, "deliver",
                          250, "2.0.0", "handed back to Postfix by the milter") for r in accepted]
        contacts = ((tx.client.name, list_key, accepted, tx.now),) if marketing else ()
        rt.metrics.copies_delivered(len(accepted))

        async def write() -> None:
            try:
                await rt.writer.write(rows, contacts)
            except Exception:
                log.error("queue %s: could not record the milter hand-off", tx.qid)

        rt.spawn(write())


def split_field(field: bytes, leading_space: bool) -> tuple[str, bytes]:
    """A raw "Name: value\\r\\n" field as the milter's name and value (folds as LF, as Postfix keeps them)."""
    name, _, value = field.partition(b":")
    value = value[:-2] if value.endswith(b"\r\n") else value
    if not leading_space and value[:1] == b" ":
        value = value[1:]
    return name.strip().decode("ascii", "replace"), value.replace(b"\r\n", b"\n")


def header_edits(original: list[bytes], final: list[bytes], leading_space: bool) -> list[m.Message]:
    """The SMFIR_CHGHEADER / SMFIR_ADDHEADER steps that turn the header Postfix has into the copy's.

    Fields are matched by name and occurrence (the milter's index is per name, from 1); removals go
    from the last occurrence down so no index shifts under a later step.
    """
    before: dict[str, list[bytes]] = defaultdict(list)
    after: dict[str, list[bytes]] = defaultdict(list)
    for field in original:
        before[field_name(field)].append(field)
    for field in final:
        after[field_name(field)].append(field)
    edits: list[m.Message] = []
    for name in dict.fromkeys([*before, *after]):
        old, new = before.get(name, []), after.get(name, [])
        for index in range(min(len(old), len(new))):
            if old[index] != new[index]:
                edits.append(m.ChangeHeader(index + 1, *split_field(new[index], leading_space)))
        for index in reversed(range(len(new), len(old))):
            edits.append(m.ChangeHeader(index + 1, split_field(old[index], leading_space)[0], b""))
        for field in new[len(old):]:
            edits.append(m.AddHeader(*split_field(field, leading_space)))
    return edits
