"""The SMTP front: aiosmtpd with per-peer limits, async AUTH, client authorisation and smuggling checks."""
from __future__ import annotations

import asyncio
import binascii
import ipaddress
import logging
import re
from base64 import b64decode
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword, TLSSetupException, syntax

from relay import replies
from relay.mail.addresses import AddressError, is_unsubscribe_address, normalize_address
from relay.mail.message import Message
from relay.base.offload import BIG, cpu_bound
from relay.smtp.data import normalize_line_ends, read_data
from relay.smtp.guard import (PROBATION, PROBATION_TIMEOUT, TRUSTED, CommandTable, PeerLimits, admission,
                              envelope_refusal, log_auth_failure)

if TYPE_CHECKING:
    from relay.config import ClientConfig
    from relay.runtime import Runtime

log = logging.getLogger("relay.smtp")


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def has_bare_line_ending_or_nul(data: bytes, chunk: int = BIG) -> bool:
    """True when data holds a CR or LF outside CRLF pairs, or NUL: the stuff of SMTP smuggling.

    aiosmtpd ends DATA only at <CRLF>.<CRLF>; an upstream might not, so a `\\n.\\n` or
    `\\r.\\r` look-alike must never be passed on. Counting is C-speed, even for 25 MB.
    """
    if len(data) <= chunk:
        pairs = data.count(b"\r\n")
        return data.count(b"\r") != pairs or data.count(b"\n") != pairs or b"\x00" in data
    # a big message is counted BIG bytes at a time: each C call holds the GIL, so from a thread
    # one pass over 25 MB would still stall the event loop for tens of milliseconds
    for start in range(0, len(data), chunk):
        end = min(start + chunk, len(data))
        pairs = data.count(b"\r\n", start, end)
        cr, lf = data.count(b"\r", start, end), data.count(b"\n", start, end)
        # a CRLF split between two chunks is a pair that neither chunk's count(b"\r\n") sees
        if data[end - 1:end] == b"\r" and data[end:end + 1] == b"\n":
            cr -= 1
        if start and data[start:start + 1] == b"\n" and data[start - 1:start] == b"\r":
            lf -= 1
        if cr != pairs or lf != pairs or data.find(b"\x00", start, end) >= 0:
            return True
    return False


def pieces_have_bare_line_ending_or_nul(pieces: list[bytes]) -> bool:
    """`has_bare_line_ending_or_nul(b"".join(pieces))` without joining them."""
    open_cr = False  # the last piece ended in a CR: this one must begin with its LF
    for piece in pieces:
        if not piece:
            continue
        if open_cr:
            if piece[:1] != b"\n":
                return True
            piece = piece[1:]
        open_cr = piece.endswith(b"\r")
        if has_bare_line_ending_or_nul(piece[:-1] if open_cr else piece):
            return True
    return open_cr


_PLAIN_PATH = re.compile(r"^<([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+)>(?: (.*))?$")


class RelaySMTP(SMTP):
    """One client connection. Overrides only what aiosmtpd cannot be told through its handler."""

    def __init__(self, handler: "RelayHandler", runtime: "Runtime", limits: PeerLimits, **kwargs: Any):
        relay_cfg = runtime.config.relay
        super().__init__(
            handler, hostname=relay_cfg.hostname, data_size_limit=relay_cfg.max_message_size,
            enable_SMTPUTF8=True, decode_data=False, tls_context=runtime.tls_context,
            auth_require_tls=relay_cfg.auth_require_tls, auth_required=False,
            timeout=relay_cfg.command_timeout, ident="ESMTP consent-relay", **kwargs)
        self.runtime = runtime
        self.limits = limits
        self.peer_ip = ""
        self._counted = False
        self._refusal: str | None = None
        self._in_ehlo = False
        self._ehlo_lines: list[bytes] = []
        self._auth_failures = 0
        self.slot_kind = ""        # relay/smtp/guard.py: trusted, open or probation
        self.idle_commands = 0     # commands in a row that led nowhere
        self.messages_done = 0
        self._smtp_methods = CommandTable(self._smtp_methods, self)

    # --- connection life ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first_time = self.transport is None
        if first_time:
            if not self.slot_kind:  # else SmtpGate (relay/smtp/guard.py) admitted it already
                peer = transport.get_extra_info("peername") or ("", 0)
                self.peer_ip = str(peer[0])
                self._refusal, self.slot_kind = admission(self.runtime, self.limits, self.peer_ip)
            self._counted = self._refusal is None
            # AUTH in the clear is fine on loopback only (SPEC §2 auth_require_tls)
            relay_cfg = self.runtime.config.relay
            self._auth_require_tls = relay_cfg.auth_require_tls and not (
                relay_cfg.plaintext_auth_from_loopback and is_loopback(self.peer_ip))
        super().connection_made(transport)
        if self._counted and first_time:
            self.runtime.sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self.limits.release(self.peer_ip, self.slot_kind)
            self.runtime.sessions.discard(self)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self._refusal is not None:
            await self.push(self._refusal)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    def _reset_timeout(self, duration: float | None = None) -> None:
        # before AUTH a connection is a stranger holding a slot: it gets a shorter command timeout
        if duration is None:
            relay_cfg = self.runtime.config.relay
            duration = (relay_cfg.command_timeout if self.slot_kind == TRUSTED
                        else PROBATION_TIMEOUT if self.slot_kind == PROBATION else relay_cfg.pre_auth_timeout)
            duration = min(duration, relay_cfg.command_timeout)
        super()._reset_timeout(duration)

    def _data_timeout(self) -> float:
        relay_cfg = self.runtime.config.relay
        if self.slot_kind == TRUSTED:
            return relay_cfg.data_timeout
        return min(relay_cfg.pre_auth_data_timeout, relay_cfg.data_timeout)

    def _timeout_cb(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write((replies.TIMEOUT + "\r\n").encode("ascii"))
        super()._timeout_cb()

    async def push(self, status: Any) -> None:
        if self._in_ehlo:
            # the EHLO reply goes out in one write (one TCP segment), not a segment per line:
            # some tools (nmap's smtp library) read only the first segment
            self._ehlo_lines.append(status.encode("utf-8") if isinstance(status, str) else status)
            return
        if isinstance(status, str):
            status = replies.with_enhanced_code(status)
        await super().push(status)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._in_ehlo = True  # EHLO replies carry no enhanced codes (RFC 2034 §3)
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False
            lines, self._ehlo_lines = self._ehlo_lines, []
        if lines:
            self._writer.write(b"".join(line + b"\r\n" for line in lines))
            await self._writer.drain()

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if not await self._envelope_syntax_refused(arg, "FROM:", replies.BAD_SENDER_SYNTAX):
            await super().smtp_MAIL(arg)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        if not await self._envelope_syntax_refused(arg, "TO:", replies.BAD_RECIPIENT_SYNTAX):
            await super().smtp_RCPT(arg)

    async def _envelope_syntax_refused(self, arg: str | None, keyword: str, bad_syntax: str) -> bool:
        """501 for a path aiosmtpd would repair (control characters, source routes) or call malformed (553)."""
        path = self._strip_command_keyword(keyword, arg or "")
        if path is None or self.session is None or not self.session.host_name:
            return False  # aiosmtpd's own syntax and HELO replies
        refusal = envelope_refusal(path, bad_syntax)
        if refusal is None and self._getaddr(path)[0] is None:
            refusal = f"{bad_syntax}: not an address (a@b@c?)"
        if refusal is not None:
            await self.push(refusal)
            return True
        return False

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        """aiosmtpd's STARTTLS, refused inside TLS and when no certificate is configured."""
        if self._tls_protocol is not None:
            # aiosmtpd would answer 220 and wrap TLS in TLS, which no client can follow (RFC 3207 §4)
            await self.push(replies.TLS_ALREADY_ACTIVE)
            return
        if not self.tls_context:
            # never offered here: a permanent reply, as Postfix gives, not aiosmtpd's bare 454
            await self.push(replies.TLS_NOT_OFFERED)
            return
        await super().smtp_STARTTLS(arg)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, reading the content in large pieces (relay/smtp/data.py) instead of lines."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        # the whole DATA transfer and its processing get data_timeout, not the command timeout
        self._reset_timeout(self._data_timeout())
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content, error = await read_data(self._reader, self.data_size_limit)
        except asyncio.CancelledError:
            log.info("connection lost during DATA")
            self._writer.close()
            raise
        if error is not None:
            self._set_post_data_state()
            await self.push(error)
            return
        # the handler takes the pieces and keeps only the message split from them
        self.envelope.content = self.envelope.original_content = None
        self.envelope.pieces = content
        del content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        self.messages_done += 1
        await self.push(status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # the common <local@domain> form without the full RFC 5322 parser (it was 6 % of CPU);
        # anything unusual (quotes, routes, UTF-8, no brackets) still goes to aiosmtpd's parser
        match = _PLAIN_PATH.match(arg.strip())
        if match:
            return match.group(1), (match.group(2) or "").lstrip()
        return super()._getaddr(arg)

    # --- AUTH: aiosmtpd decodes PLAIN/LOGIN; the scrypt check runs off the event loop ---
    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        # capture the credentials only; smtp_AUTH below verifies them asynchronously
        return AuthResult(success=False, handled=False, auth_data=auth_data)

    async def smtp_AUTH(self, arg: str) -> None:
        assert self.session is not None
        if await self.check_helo_needed("EHLO"):
            return
        if not self.session.extended_smtp:
            await self.push("500 5.5.1 AUTH needs EHLO first")
            return
        if self._auth_require_tls and not self._tls_protocol:
            await self.push(replies.ENCRYPTION_REQUIRED)
            return
        if self.session.authenticated:
            await self.push("503 5.5.1 Already authenticated")
            return
        args = (arg or "").split()
        if not args or len(args) > 2:
            await self.push("501 5.5.4 Syntax: AUTH mechanism [initial-response]")
            return
        mechanism = args[0].upper()
        if mechanism not in ("PLAIN", "LOGIN"):
            await self.push("504 5.5.4 Unrecognized authentication type")
            return
        result: AuthResult = await self._auth_methods[mechanism].method(self, [mechanism, *args[1:]])
        credentials = result.auth_data
        if not isinstance(credentials, LoginPassword):
            if not result.handled:
                await self.push(result.message or "501 5.7.0 Authentication aborted")
            return
        # the throttle below is per attempt: without a cap, 100 parallel connections would guess 100 at a time
        if not await self.limits.auth_gate.enter(self.peer_ip):
            log_auth_failure(self.peer_ip, credentials.login, mechanism, "too many attempts at once")
            await self.push(replies.AUTH_BUSY)
            return
        try:
            if await self._verify(credentials, mechanism):
                return
        finally:
            self.limits.auth_gate.leave(self.peer_ip)
        if self.transport is not None and not self.transport.is_closing() and \
                self._auth_failures < self.runtime.config.relay.auth_max_failures:
            await self.push(replies.AUTH_INVALID)

    async def _verify(self, credentials: LoginPassword, mechanism: str) -> bool:
        """True when logged in (235 sent); else counted, logged and delayed (the 421 sent when over the limit)."""
        assert self.session is not None
        client = await self.runtime.authenticate(credentials.login, credentials.password)
        if client is not None:
            self.session.authenticated = True
            self.session.auth_data = client.name
            self.slot_kind = self.limits.promote(self.peer_ip, self.slot_kind)
            self.limits.note_login(self.peer_ip)
            self._reset_timeout()  # a client now: the longer command timeout from here on
            await self.push(replies.AUTH_SUCCESS)
            return True
        log_auth_failure(self.peer_ip, credentials.login, mechanism)
        self._auth_failures += 1
        self.limits.note_failure(self.peer_ip)
        failures = max(self._auth_failures, self.limits.recent_failures(self.peer_ip))
        relay_cfg = self.runtime.config.relay
        # throttle: each repeat waits longer, so guessing is slow even across connections
        await asyncio.sleep(min(relay_cfg.auth_failure_delay * failures, 10.0))
        if self._auth_failures >= relay_cfg.auth_max_failures:
            await self.push(replies.AUTH_TOO_MANY_FAILURES)
            assert self.transport is not None
            self.transport.close()
        return False

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        """aiosmtpd's PLAIN, refusing an authorisation identity other than the user (RFC 4616 §2):
        the relay has no "act as" rights, so ignoring it would log a client in as someone it did not ask to be."""
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False)
        else:
            try:
                blob = b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        authzid, login, password = parts
        if authzid and authzid != login:
            log_auth_failure(self.peer_ip, login, "PLAIN", "authorization identity differs from the user")
            await self.push(replies.AUTHZID_REFUSED)
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, auth_data=LoginPassword(login, password))


class RelayHandler:
    """aiosmtpd hooks: who the client is, what it may send, and the hand-off to the transaction."""

    def __init__(self, runtime: "Runtime"):
        self.runtime = runtime

    def client_of(self, server: RelaySMTP, session: Any) -> "ClientConfig | None":
        config = self.runtime.config
        if session.authenticated:
            return config.clients.get(session.auth_data)
        return config.client_for_peer(server.peer_ip)

    async def handle_EHLO(self, server: RelaySMTP, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        extra = ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"]
        return responses[:-1] + extra + responses[-1:]

    async def handle_MAIL(self, server: RelaySMTP, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        client = self.client_of(server, session)
        if client is not None:
            refusal = self.runtime.sender_refusal(client, address)
            if refusal is not None:
                return refusal
            session.client_name = client.name
        else:
            session.client_name = None  # only the unsubscribe address may follow (RCPT decides)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return replies.OK

    async def handle_RCPT(self, server: RelaySMTP, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        runtime = self.runtime
        client_name = getattr(session, "client_name", None)
        if is_unsubscribe_address(address, runtime.config.relay.hostname):
            # the one address anyone may write to without AUTH (RFC 2369 mailto unsubscribe)
            if envelope.rcpt_tos and not getattr(envelope, "unsubscribe", False):
                return "452 4.5.3 Send unsubscribe mail in its own transaction"
            refusal = runtime.unsubscribe_address_refusal(address)
            if refusal is not None:
                return refusal
            envelope.unsubscribe = True
            envelope.rcpt_tos.append(address)
            return replies.OK
        if runtime.feedback.address_kind(address) is not None:
            # bounce+TOKEN@, fbl@, postmaster@, abuse@ HOSTNAME: reports, taken without AUTH (SPEC §10)
            if envelope.rcpt_tos and not getattr(envelope, "feedback", False):
                return replies.FEEDBACK_OWN_TRANSACTION
            refusal = runtime.feedback.rcpt_refusal(address)
            if refusal is not None:
                return refusal
            envelope.feedback = True
            envelope.rcpt_tos.append(address)
            return replies.OK
        if client_name is None:
            return replies.AUTH_REQUIRED
        if getattr(envelope, "feedback", False):
            return replies.FEEDBACK_OWN_TRANSACTION
        if getattr(envelope, "unsubscribe", False):
            return "452 4.5.3 Send unsubscribe mail in its own transaction"
        if len(envelope.rcpt_tos) >= runtime.config.relay.max_recipients:
            return replies.TOO_MANY_RECIPIENTS
        try:
            local, domain = normalize_address(address)
        except AddressError as exc:
            return f"{replies.BAD_RECIPIENT_SYNTAX}: {replies.one_line(str(exc))}"
        recipient = f"{local}@{domain}"
        client = runtime.config.clients[client_name]
        decision = await runtime.check_recipient(client, envelope.mail_from, recipient, session)
        if decision.verdict.refuses:
            return replies.verdict_reply(decision.verdict)
        if recipient in envelope.rcpt_tos:
            return "250 2.1.5 Recipient already named; one copy will be sent"
        envelope.rcpt_tos.append(recipient)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: RelaySMTP, session: Any, envelope: Any) -> str:
        pieces: list[bytes] = envelope.pieces
        envelope.pieces = []
        size = sum(map(len, pieces))
        normalized = await cpu_bound(size, normalize_line_ends, pieces)
        if normalized is None:  # bare CR or NUL (the end-of-data look-alikes were refused while reading)
            return replies.SMUGGLING
        pieces = normalized
        if getattr(envelope, "unsubscribe", False):
            return await self.runtime.unsubscribe_by_mail(envelope.rcpt_tos)
        if getattr(envelope, "feedback", False):
            data = await cpu_bound(size, b"".join, pieces)
            del pieces
            try:
                return await self.runtime.feedback.intake(list(envelope.rcpt_tos), data)
            except Exception as error:  # storage down: the reporting MTA keeps the report and retries
                return replies.exception_reply(error)
        client = self.runtime.config.clients[session.client_name]
        message = await cpu_bound(size, Message.from_pieces, pieces)
        del pieces  # from here on the message lives as header fields and body only
        return await self.runtime.transaction(
            client, envelope.mail_from, list(envelope.rcpt_tos), message,
            peer=server.peer_ip, helo=session.host_name or "", authenticated=bool(session.authenticated),
            tls=server._tls_protocol is not None)

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # the client's handshake failed (aiosmtpd closes the connection): its mistake, one INFO line
            log.info("TLS handshake failed: %s", type(error.__cause__ or error).__name__)
            return replies.TLS_HANDSHAKE_FAILED
        return replies.exception_reply(error)
