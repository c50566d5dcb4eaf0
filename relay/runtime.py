"""Everything one relay process shares across connections: config, stages, storage, upstream, keys."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import ssl
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

from filters.context import RcptContext, Services
from filters.footer import templates as footer_templates
from relay import replies
from relay.config import ClientConfig, Config
from relay.delivery.upstream import Upstream, make_upstream
from relay.mail.dkim import DkimSigner
from relay.mail.dsn import build_dsn, upstream_failure
from relay.base.offload import BatchedThreads, signing_threads, thread_pool
from relay.keys import load_client_secrets, read_token_keys, tls_context
from relay.mail.message import Message, split_header_block
from relay.base.metrics import Metrics
from relay.base.maillog import mail_line, upstream_queue_id
from relay.crypto.passwords import verify_password
from relay.pipeline import Decision, Pipeline
from relay.crypto.tokens import TokenCodec, TokenError
from relay.base.writer import GroupWriter
from relay.services.unsubscribe import unsubscribe
from relay.mail.addresses import AddressError, normalize_address, unsubscribe_token
from relay.transaction import Transaction

log = logging.getLogger("relay.runtime")


def check_content_rules(config: Config) -> None:
    """Compile every client's content rules at start-up, so a bad rule file stops the relay there."""
    from filters.content import RuleError, content_settings
    from relay.config import ConfigError

    for client in config.clients.values():
        try:
            content_settings(config, client)
        except RuleError as exc:
            raise ConfigError(str(exc)) from None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Runtime:
    """Built once per process at start-up; the SMTP and HTTP sides both use it."""

    def __init__(self, config: Config, store: Any, upstream: Upstream | None = None,
                 clock: Callable[[], datetime] = utcnow, sign_threads: int | None = None):
        self.config = config
        self.store = store
        self.upstream = upstream or make_upstream(
            config.upstream.url, config.upstream.pool_size, config.upstream.timeout, config.relay.hostname,
            config.upstream.max_connection_age, config.upstream.max_connection_messages)
        self.tokens = TokenCodec(read_token_keys(config), timedelta(days=config.token_max_age_days))
        self.services = Services(clock=clock, store=store, tokens=self.tokens)
        self.writer = GroupWriter(store)
        # DKIM signing: on the loop when the worker processes already fill the cores, else in
        # threads (see signing_threads); big copies always go to a thread
        threads = signing_threads(1) if sign_threads is None else sign_threads
        self.sign_pool = thread_pool(max(1, threads), "dkim")
        self.signing = BatchedThreads(self.sign_pool, threads)
        self.pipeline = Pipeline(config.stages)
        if "content" in config.stages:
            check_content_rules(config)
        if "footer" in config.stages:
            # compiled now, not by the first message (10 ms on the event loop)
            from relay.mail.footer_lang import LANGUAGES

            dirs = {()} | {tuple(d for d in (getattr(lst, "footer_templates", None), c.footer_templates) if d)
                           for c in config.clients.values() for lst in (None, *c.lists.values())}
            for template_dirs in dirs:  # (every language: the footer speaks the message's)
                for lang in LANGUAGES:
                    footer_templates(template_dirs, lang)
        self.secrets = {name: load_client_secrets(c) for name, c in config.clients.items()}
        self.tls_context = self._tls_context()
        # the SMTP front's connection slots (relay.smtp.guard.PeerLimits): made by the server, which
        # owns the listeners; held here so a reload can change their sizes
        self.limits: Any = None
        self.metrics = Metrics()
        # How long a retry worker holds a spooled copy: longer than one delivery can take (about ten
        # upstream steps, each bounded by the upstream timeout), so nobody else claims a copy mid-send.
        self.spool_lease = max(300.0, 20 * config.upstream.timeout)
        self.sessions: set[Any] = set()
        self.in_flight = 0
        self.closing = False
        # successful logins, so a busy client does not pay scrypt on every connection
        self._verified: dict[str, bytes] = {}
        self._tasks: set[asyncio.Task] = set()
        from relay.services.optin import Optin

        self.optin = Optin(self)
        from relay.feedback.service import Feedback
        from relay.feedback.webhooks import WebhookRunner

        self.feedback = Feedback(self)  # return paths, Feedback-ID, bounce and complaint intake
        self.webhooks = WebhookRunner(self)
        from relay.accounts import Accounts

        self.accounts = self.services.accounts = Accounts(config, store, clock, self.deliver_notification,
                                                          self.writer)

    def _tls_context(self) -> ssl.SSLContext | None:
        return tls_context(self.config)

    def refusal_for_new_connection(self) -> str | None:
        return replies.SHUTTING_DOWN if self.closing else None

    # --- identity ---
    async def authenticate(self, login: bytes, password: bytes) -> ClientConfig | None:
        name = login.decode("utf-8", "replace")
        client = self.config.clients.get(name)
        encoded = self.secrets[name].password_hash if client else None
        if client is None or encoded is None:
            # same cost either way, so timing does not tell which client names exist
            await asyncio.to_thread(verify_password, password.decode("utf-8", "replace"), _DUMMY_HASH)
            return None
        fingerprint = hashlib.sha256(encoded.encode() + b"\0" + password).digest()
        cached = self._verified.get(name)
        if cached is not None and hmac.compare_digest(cached, fingerprint):
            return client
        ok = await asyncio.to_thread(verify_password, password.decode("utf-8", "surrogateescape"), encoded)
        if ok:
            self._verified[name] = fingerprint
            return client
        return None

    def signer_for(self, client: ClientConfig, message: Message) -> DkimSigner:
        """d= is the client's sender domain that From: aligns with."""
        from filters.sender_identity import aligned_domain

        signers = self.secrets[client.name].signers
        for address in message.from_addresses():
            own = aligned_domain(address.rpartition("@")[2], client.sender_domains)
            if own is not None:
                return signers[own]
        return signers[client.signing_domain]

    # --- SMTP transaction ---
    def sender_refusal(self, client: ClientConfig, address: str) -> str | None:
        """The MAIL FROM reply that refuses this client's sender, or None (the SMTP front, the milter
        and the policy service ask the same)."""
        from filters.sender_identity import aligned_domain

        refusal = self.accounts.refusal(client)  # the state in storage, cached (relay/accounts)
        if refusal is not None:
            return refusal.line
        if not address or address == "<>":  # aiosmtpd reports the null sender as "<>"
            return replies.NULL_SENDER
        try:
            local, domain = normalize_address(address)
        except AddressError as exc:
            return f"{replies.BAD_SENDER_SYNTAX}: {replies.one_line(str(exc))}"
        if aligned_domain(domain, client.sender_domains) is None:
            return f"550 5.7.1 Sender domain {domain} is not one of client {client.name}'s sender domains"
        return None

    async def check_recipient(self, client: ClientConfig, mail_from: str, recipient: str,
                              session: Any) -> Decision:
        ctx = RcptContext(self.config, client, mail_from, recipient, self.services)
        decision = await self.pipeline.check_recipient(ctx)
        if decision.verdict.refuses:
            from relay.transaction import audit_row

            self.metrics.refused(decision.stage, decision.verdict.rule)
            self.metrics.client_recipient(client.name, "refused")
            mail_line(event="decision", client=client.name, peer=getattr(session, "peer", None) and session.peer[0],
                      rcpt=recipient, stage=decision.stage, rule=decision.verdict.rule,
                      reply=replies.verdict_reply(decision.verdict))
            # a refusal is evidence too; if storage is down the refusal still stands
            try:
                await self.writer.write([audit_row(self.services.clock(), client.name, None, "", None, recipient,
                                                   decision.stage, decision.verdict, decision.verdict.action.value)])
            except Exception:
                log.error("could not record a refusal at RCPT for client %s", client.name)
        return decision

    async def transaction(self, client: ClientConfig, mail_from: str, recipients: list[str],
                          message: Message, **session: Any) -> str:
        started = time.perf_counter()
        self.in_flight += 1
        try:
            reply = await Transaction(self, client, mail_from, recipients, message, **session).run()
        except Exception as error:
            reply = replies.exception_reply(error)
        finally:
            self.in_flight -= 1
        self.metrics.latency.observe(time.perf_counter() - started)
        self.metrics.reply(reply)
        self.metrics.client_message(client.name, reply)
        return reply

    def note_delivery(self, client: str, result: Any) -> None:
        """Per-client copy counters, and whether the upstream took or refused the copy (answered)."""
        self.metrics.upstream_result(result.status != "temporary")
        self.metrics.client_copy(client, result.status)

    # --- mail to unsubscribe+TOKEN@hostname: accepted without AUTH, same effect as the POST ---
    def unsubscribe_address_refusal(self, address: str) -> str | None:
        """None when the address carries a valid token; else the RCPT reply (no database needed)."""
        token = unsubscribe_token(address, self.config.relay.hostname)
        try:
            self.tokens.verify(token or "", "unsubscribe", self.services.clock())
        except TokenError:
            return replies.BAD_UNSUBSCRIBE_ADDRESS
        return None

    async def unsubscribe_by_mail(self, recipients: list[str]) -> str:
        for address in recipients:
            token = unsubscribe_token(address, self.config.relay.hostname)
            try:
                await unsubscribe(self, token or "", "mailto")
            except TokenError:
                return replies.BAD_UNSUBSCRIBE_ADDRESS
        return replies.UNSUBSCRIBED

    # --- mail the relay writes itself (DSNs, later confirmation requests) ---
    def sign(self, client: ClientConfig, data: bytes) -> bytes:
        message = Message(data)
        signer = self.signer_for(client, message)
        return b"".join(signer.sign(message.headers, message.body, int(self.services.clock().timestamp()))) + data

    async def deliver_notification(self, client: ClientConfig, recipient: str, data: bytes,
                                   mail_from: str = "") -> str:
        """Sign and send; a temporary failure goes to the retry spool, never lost. Returns what
        became of it: "sent" (the upstream took it), "queued for retry" or "refused by the upstream"."""
        signed = self.sign(client, data)
        started = time.perf_counter()
        result = await self.upstream.deliver(mail_from, recipient, signed)
        self.note_delivery(client.name, result)
        mail_line(event="notice", client=client.name, rcpt=recipient, stage="delivery", rule=result.status,
                  reply=replies.one_line(f"{result.code} {result.reply}"),
                  upstream_qid=upstream_queue_id(result.reply) if result.status == "delivered" else None,
                  attempt=1, elapsed_ms=round((time.perf_counter() - started) * 1000, 1))
        if result.status == "temporary":
            now = self.services.clock()
            await self.store.run(self.store.spool_add, [{
                "queue_id": "notice", "client": client.name, "mail_from": mail_from, "recipient": recipient,
                "data": signed, "created_at": now, "next_attempt_at": now + timedelta(seconds=self.retry_delay(0)),
                "attempts": 1, "last_error": replies.one_line(f"{result.code} {result.reply}")}])
            return "queued for retry"
        if result.status == "permanent":
            log.warning("notification to %s refused by upstream: %s %s", recipient, result.code, result.reply)
            return "refused by the upstream"
        return "sent"

    # --- retry spool ---
    def retry_delay(self, attempts: int) -> float:
        return min(self.config.upstream.retry_initial_delay * (2 ** attempts), 3600.0)

    async def retry_due(self, limit: int = 100) -> int:
        """Deliver spooled copies that are due; return how many were handled."""
        rows = await self.store.run(self.store.spool_claim_due, self.services.clock(), limit, self.spool_lease)
        # the leases this worker may hold on each copy it has not finished with: while a renewal is
        # in a store thread both the old and the new one (a cancellation does not stop that thread)
        held = {row.id: [row.lease_until] for row in rows}
        try:
            for row in rows:
                await self._retry_one(row, held)
        except BaseException:
            # shutting down mid-pass, or a store error (SQLite busy while an admin command writes):
            # hand the unfinished copies back, so that this relay's next pass (or another worker)
            # sends them now instead of after the lease runs out
            await self._release(held)
            raise
        return len(rows)

    async def _retry_one(self, row: Any, held: dict[int, list[Any]]) -> None:
        """One spooled copy: send it, then delete it, reschedule it or bounce it."""
        now = self.services.clock()
        # the batch's leases may have run out while earlier copies were sent: renew this one
        # first, and leave it alone if another worker has claimed it in the meantime
        lease = now + timedelta(seconds=self.spool_lease)
        previous = held[row.id][-1]
        held[row.id] = [previous, lease]
        if not await self.store.run(self.store.spool_renew, row.id, previous, lease):
            del held[row.id]
            return
        held[row.id] = [lease]
        # a client's copy goes out with the relay's return path (VERP), as it did the first time
        envelope = (self.feedback.envelope_sender(row.queue_id, row.recipient, now, row.mail_from)
                    if row.mail_from and row.queue_id != "notice" else row.mail_from)
        started = time.perf_counter()
        result = await self.upstream.deliver(envelope, row.recipient, row.data)
        self.note_delivery(row.client, result)
        upstream_qid = upstream_queue_id(result.reply) if result.status == "delivered" else None
        mail_line(event="retry", qid=row.queue_id, client=row.client, rcpt=row.recipient, stage="delivery",
                  rule=result.status, reply=replies.one_line(f"{result.code} {result.reply}"),
                  upstream_qid=upstream_qid, attempt=row.attempts + 1,
                  elapsed_ms=round((time.perf_counter() - started) * 1000, 1))
        now = self.services.clock()
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=timezone.utc)
        expired = now - created > timedelta(hours=self.config.upstream.retry_max_age_hours)
        if result.status == "delivered":
            await self.store.run(self.store.spool_done, row.id)
            self.metrics.copies_delivered(1)
            self._record_spooled(row, now, "deliver", 250, "2.0.0",
                                 f"accepted by upstream at attempt {row.attempts + 1}", upstream_qid)
        elif result.status == "temporary" and not expired:
            next_at = now + timedelta(seconds=self.retry_delay(row.attempts))
            await self.store.run(self.store.spool_retry, row.id, next_at,
                                 replies.one_line(f"{result.code} {result.reply}"), lease)
        else:
            await self._bounce_spooled(row, result)
            await self.store.run(self.store.spool_done, row.id)
            self._record_spooled(row, now, "bounce", result.code, "5.4.7" if result.status == "temporary"
                                 else "5.0.0", replies.one_line(f"{result.code} {result.reply}"))
            if result.status == "permanent" and row.queue_id != "notice":
                self.spawn(self.feedback.upstream_refused(row.client, "", row.queue_id, row.recipient,
                                                          result.code, result.reply))
        del held[row.id]

    def _record_spooled(self, row: Any, at: datetime, outcome: str, code: int | None, status: str,
                        reason: str, upstream_qid: str | None = None) -> None:
        """The audit row of a spooled copy's end (delivered or bounced), written behind, as for a
        copy delivered at once; a delivery also keeps the recipient's consent current."""
        from relay.transaction import audit_row, resolve_list

        client = self.config.clients.get(row.client)
        if client is None or row.queue_id == "notice":  # the relay's own mail is no recipient decision
            return
        message = Message(row.data)
        mailing = resolve_list(client, message)
        list_key = None if isinstance(mailing, str) else mailing.key
        audit = [audit_row(at, client.name, list_key, row.queue_id, message.first("message-id"), row.recipient,
                           "delivery", None, outcome, code, status, reason, upstream_qid)]
        contacts = ((client.name, list_key, [row.recipient], at),) if outcome == "deliver" and list_key else ()

        async def write() -> None:
            try:
                await self.writer.write(audit, contacts)
            except Exception:
                log.error("queue %s: could not record the retried copy's outcome", row.queue_id)

        self.spawn(write())

    async def _release(self, held: dict[int, list[Any]]) -> None:
        """Give back the leases in `held` (bounded: this runs while the relay stops)."""
        try:
            async with asyncio.timeout(2.0):
                await self.store.run(self.store.spool_release, list(held.items()))
        except Exception:
            log.warning("could not release %d spooled copies; they are retried when their lease ends", len(held))

    async def _bounce_spooled(self, row: Any, result: Any) -> None:
        client = self.config.clients.get(row.client)
        if client is None or not row.mail_from:
            log.warning("dropping undeliverable notice to %s: %s", row.recipient, result.reply)
            return
        headers, _ = split_header_block(row.data)
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=timezone.utc)
        if result.status == "temporary":
            # RFC 3463 5.4.7: given up after retry_max_age_hours; the diagnostic is the last deferral
            hours = self.config.upstream.retry_max_age_hours
            failed = upstream_failure(row.recipient, result.code, result.reply, "5.4.7",
                                      f"still not accepted after {hours:g} hours of retries; "
                                      f"last reply: {result.code} {result.reply}")
        else:
            failed = upstream_failure(row.recipient, result.code, result.reply)
        dsn = build_dsn(client, self.config.relay.hostname, row.mail_from, [failed], headers,
                        row.queue_id, self.services.clock(), created)
        await self.deliver_notification(client, row.mail_from, dsn)

    async def retry_forever(self, interval: float) -> None:
        while True:
            try:
                while await self.retry_due() > 0:
                    pass
            except Exception:
                log.exception("retry pass failed; trying again in %.0fs", interval)
            await asyncio.sleep(interval)

    async def checkpoint_forever(self, interval: float = 1.0) -> None:
        """SQLite: copy the WAL into the database every `interval` seconds, off the commit path.

        With SQLite's automatic checkpoints, the commit that filled the WAL also wrote its pages
        back and synced the database file: one group commit took 136 ms, and every message
        waiting on it waited with it. `relay serve`
        opens its store with `background_checkpoint=True`; for a store that still checkpoints on
        commit, or PostgreSQL, this costs a cheap PASSIVE checkpoint or nothing.
        """
        while True:
            await asyncio.sleep(interval)
            try:
                await self.store.run(self.store.checkpoint)
            except Exception:  # a locked or unreachable database: the next round tries again
                log.debug("WAL checkpoint failed", exc_info=True)

    # --- background work that must finish before shutdown ---
    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def busy(self) -> bool:
        """A transaction is under way somewhere: processing, background work, or a client mid-envelope."""
        return bool(self.in_flight or self._tasks or self.writer.task or any(
            getattr(getattr(s, "envelope", None), "mail_from", None) for s in self.sessions))

    async def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.upstream.close()
        # not wait=True: a blocking call here would stall the event loop, where no timeout reaches
        self.sign_pool.shutdown(wait=False)


_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
