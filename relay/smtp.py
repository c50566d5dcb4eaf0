"""The SMTP front: aiosmtpd with per-peer limits, async AUTH, client authorisation and smuggling checks."""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, syntax

from filters.sender_identity import aligned_domain
from relay import replies
from relay.addresses import AddressError, is_unsubscribe_address, normalize_address
from relay.message import Message
from relay.offload import BIG, cpu_bound
from relay.smtp_data import read_data
from relay.windows import SlidingWindows, peer_key

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


class PeerLimits:
    """Connections in total and per peer address, and recent AUTH failures per address (IPv6: per /64)."""

    def __init__(self, total: int, per_ip: int):
        self.total, self.per_ip = total, per_ip
        self.open_total = 0
        self.open_by_ip: dict[str, int] = defaultdict(int)
        self.auth_failures = SlidingWindows(600.0)

    def admit(self, ip: str) -> str | None:
        """Count the connection in, or return the 421 reply that refuses it."""
        if self.open_total >= self.total:
            return replies.TOO_MANY_CONNECTIONS
        if self.open_by_ip[ip] >= self.per_ip:
            return replies.TOO_MANY_CONNECTIONS_FROM_IP
        self.open_total += 1
        self.open_by_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.open_total -= 1
        self.open_by_ip[ip] -= 1
        if self.open_by_ip[ip] <= 0:
            del self.open_by_ip[ip]

    def recent_failures(self, ip: str) -> int:
        return self.auth_failures.count(peer_key(ip))

    def note_failure(self, ip: str) -> None:
        self.auth_failures.add(peer_key(ip))


_PLAIN_PATH = re.compile(r"^<([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+)>(?: (.*))?$")


class RelaySMTP(SMTP):
    """One client connection. Overrides only what aiosmtpd cannot be told through its handler."""

    def __init__(self, handler: "RelayHandler", runtime: "Runtime", limits: PeerLimits, **kwargs: Any):
        relay_cfg = runtime.config.relay
        super().__init__(
            handler, hostname=relay_cfg.hostname, data_size_limit=relay_cfg.max_message_size,
            enable_SMTPUTF8=True, decode_data=False, tls_context=runtime.tls_context,
            auth_require_tls=relay_cfg.auth_require_tls, auth_required=False,
            timeout=relay_cfg.command_timeout, ident="consent-relay", **kwargs)
        self.runtime = runtime
        self.limits = limits
        self.peer_ip = ""
        self._counted = False
        self._refusal: str | None = None
        self._in_ehlo = False
        self._auth_failures = 0

    # --- connection life ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first_time = self.transport is None
        if first_time:
            peer = transport.get_extra_info("peername") or ("", 0)
            self.peer_ip = str(peer[0])
            self._refusal = self.runtime.refusal_for_new_connection() or self.limits.admit(self.peer_ip)
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
            self.limits.release(self.peer_ip)
            self.runtime.sessions.discard(self)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self._refusal is not None:
            await self.push(self._refusal)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    def _timeout_cb(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write((replies.TIMEOUT + "\r\n").encode("ascii"))
        super()._timeout_cb()

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and not self._in_ehlo:
            status = replies.with_enhanced_code(status)
        await super().push(status)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._in_ehlo = True  # EHLO replies carry no enhanced codes (RFC 2034 §3)
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

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
        """aiosmtpd's DATA, reading the content in large pieces (relay/smtp_data.py) instead of lines."""
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
        self._reset_timeout(self.runtime.config.relay.data_timeout)
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
        client = await self.runtime.authenticate(credentials.login, credentials.password)
        if client is not None:
            self.session.authenticated = True
            self.session.auth_data = client.name
            await self.push(replies.AUTH_SUCCESS)
            return
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
            return
        await self.push(replies.AUTH_INVALID)


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
            refusal = self.runtime.accounts.refusal(client)  # the state in storage, cached (relay/accounts)
            if refusal is not None:
                return refusal.line
            if not address or address == "<>":  # aiosmtpd reports the null sender as "<>"
                return replies.NULL_SENDER
            try:
                local, domain = normalize_address(address)
            except AddressError as exc:
                return f"{replies.BAD_SENDER_SYNTAX}: {replies.one_line(str(exc))}"
            if aligned_domain(domain, client.sender_domains) is None:
                return (f"550 5.7.1 Sender domain {domain} is not one of client "
                        f"{client.name}'s sender domains")
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
        if client_name is None:
            return replies.AUTH_REQUIRED
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
        if await cpu_bound(size, pieces_have_bare_line_ending_or_nul, pieces):
            return replies.SMUGGLING
        if getattr(envelope, "unsubscribe", False):
            return await self.runtime.unsubscribe_by_mail(envelope.rcpt_tos)
        client = self.runtime.config.clients[session.client_name]
        message = await cpu_bound(size, Message.from_pieces, pieces)
        del pieces  # from here on the message lives as header fields and body only
        return await self.runtime.transaction(
            client, envelope.mail_from, list(envelope.rcpt_tos), message,
            peer=server.peer_ip, helo=session.host_name or "", authenticated=bool(session.authenticated),
            tls=server._tls_protocol is not None)

    async def handle_exception(self, error: Exception) -> str:
        return replies.exception_reply(error)
