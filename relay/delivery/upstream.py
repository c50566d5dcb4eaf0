"""Hand finished copies to the upstream: a pooled SMTP/SMTPS client or a local Maildir."""
from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit

from relay.base.offload import BIG, cpu_bound, line_pieces

log = logging.getLogger("relay.delivery")

Status = Literal["delivered", "temporary", "permanent"]

# Codes used when the upstream never said anything itself (connect failure, timeout, local
# I/O error). They are ordinary SMTP codes of the right class, not 0, because callers put
# `f"{code} {reply}"` into replies, audit rows and DSNs; the reply text says it was local.
LOCAL_TEMPFAIL = 451
LOCAL_BAD_ADDRESS = 553


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of handing one copy to the upstream.

    `code`/`reply` are the upstream's own reply when it gave one (reply without the
    code, multi-line replies joined by spaces); for local failures they are a
    synthetic code of the right class and a short description ("connection refused
    by …", "timeout after 2s …"), never a traceback.
    """

    status: Status
    code: int
    reply: str


class Upstream(Protocol):
    """What the pipeline delivers through; one call per recipient copy."""

    async def deliver(self, mail_from: str, recipient: str, data: bytes) -> DeliveryResult: ...

    async def close(self) -> None: ...


def _classify(code: int) -> Status:
    # Anything that is not a clear 2xx or 5xx (4xx, 3xx where 2xx was due, garbage) is
    # retried: losing a message to a confused server is worse than a retry.
    if 200 <= code < 300:
        return "delivered"
    if 500 <= code < 600:
        return "permanent"
    return "temporary"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _temporary(reply: str, code: int = LOCAL_TEMPFAIL) -> DeliveryResult:
    return DeliveryResult("temporary", code, _one_line(reply))


class _Dead(Exception):
    """A pooled connection died before MAIL FROM was accepted: safe to retry once."""

    def __init__(self, result: DeliveryResult) -> None:
        super().__init__(result.reply)
        self.result = result


class _Lost(ConnectionError):
    """The upstream closed the connection (EOF) while we still expected a reply."""


class _BadReply(Exception):
    """A reply line that is not SMTP (or too long): the session can no longer be trusted."""


class _Refused(Exception):
    """A non-success reply during connection setup (greeting, EHLO/HELO, STARTTLS)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text


_MAX_REPLY_LINE = 4096  # RFC 5321 §4.5.3.1.5 allows 512; be generous, but bounded

# What a transaction leaves behind on its connection.
_CLEAN, _RESET, _DROP = 0, 1, 2


_WRITE_CHUNK = 1 << 20


def _stuff(data: bytes, chunk: int = BIG) -> list[bytes]:
    """Dot-stuff the message and append the end-of-data marker (RFC 5321 §4.5.2), as pieces to write.

    The pipeline hands over pure CRLF (no bare CR or LF), so every line start is either
    the very first byte or follows a CRLF: one replace() does it, no re-normalising. Most mail
    has no line starting with a dot: then the message goes out as it is, without a copy.
    """
    if not data:
        return [b".\r\n"]
    end = b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"
    if data[:1] != b"." and not _has_dot_line(data):
        return [data, end]
    if len(data) <= chunk:  # (the pieces are written one after the other: no joining copy)
        stuffed = data.replace(b"\r\n.", b"\r\n..")
        return [b".", stuffed, end] if data[:1] == b"." else [stuffed, end]
    # a big message is stuffed a line-aligned BIG piece at a time (one replace over 25 MB would
    # hold the GIL for tens of milliseconds): every piece starts a line, so a leading dot of a
    # piece is a line's leading dot
    pieces = []
    for piece in line_pieces(data, chunk):
        piece = piece.replace(b"\r\n.", b"\r\n..")
        pieces.append(b"." + piece if piece[:1] == b"." else piece)
    pieces.append(end)
    return pieces


def _has_dot_line(data: bytes, chunk: int = BIG) -> bool:
    # BIG bytes per search: one search over a big message would hold the GIL (and the loop) for long
    return any(data.find(b"\r\n.", start, start + chunk + 2) >= 0 for start in range(0, len(data), chunk))


class _Connection(asyncio.Protocol):
    """One SMTP client connection: parses replies as they arrive, queues them in order.

    Replies are read with `reply(timeout)`; a reply that already arrived (as the replies
    to a pipelined group do) is returned without any scheduling. Replies that arrived
    before the connection was lost can still be read; after them, the loss is raised.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.extensions: set[str] = set()
        self._buf = b""
        self._lines: list[str] = []  # continuation lines of a multi-line reply so far
        self._replies: collections.deque[tuple[int, str]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._exc: BaseException | None = None  # raised once the queued replies are read
        self._paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self.born = loop.time()  # pooled connections retire by age and count (Postfix: 300 s)
        self.messages = 0

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._exc is not None:
            return
        buf = self._buf + data if self._buf else data
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            line = buf[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            sep = line[3:4]
            if len(line) < 3 or not line[:3].isdigit() or sep not in (b"", b" ", b"-"):
                self._fail(_BadReply(line[:80]))
                return
            self._lines.append(line[4:].decode("utf-8", "replace"))
            if sep != b"-":
                self._replies.append((int(line[:3]), "\n".join(self._lines)))
                self._lines = []
        self._buf = buf[start:]
        if len(self._buf) > _MAX_REPLY_LINE or len(self._lines) > 1000:
            self._fail(_BadReply(b"reply line too long"))
            return
        if self._replies:
            self._wake(self._waiter, None)

    def eof_received(self) -> bool:
        return False  # let the transport close itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._exc is None:
            self._exc = exc if exc is not None else _Lost("connection closed by the server")
        self._wake(self._waiter, self._exc)
        self._wake(self._drain_waiter, self._exc)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake(self._drain_waiter, None)

    # -- use -----------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Open, in sync, and nothing unsolicited (e.g. a 421 before hanging up) waiting."""
        return (self._exc is None and not self._replies and self.transport is not None
                and not self.transport.is_closing())

    @property
    def has_unread_input(self) -> bool:
        return bool(self._replies or self._buf or self._lines)

    def write(self, data: bytes) -> None:
        if self._exc is not None:
            raise self._exc
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) while the transport's write buffer is over its high-water mark."""
        while self._paused:
            if self._exc is not None:
                raise self._exc
            self._drain_waiter = self._loop.create_future()
            try:
                await self._wait(self._drain_waiter, timeout)
            finally:
                self._drain_waiter = None

    async def reply(self, timeout: float) -> tuple[int, str]:
        """The next reply: (code, text with lines joined by newlines)."""
        while True:
            if self._replies:
                return self._replies.popleft()
            if self._exc is not None:
                raise self._exc
            self._waiter = self._loop.create_future()
            try:
                await self._wait(self._waiter, timeout)
            finally:
                self._waiter = None

    async def _wait(self, fut: asyncio.Future[None], timeout: float) -> None:
        # A plain timer instead of asyncio.timeout()/wait_for(): no extra task and no
        # cancellation round trip on the hot path.
        timer = self._loop.call_later(timeout, self._expire, fut)
        try:
            await fut
        finally:
            timer.cancel()

    def _expire(self, fut: asyncio.Future[None]) -> None:
        self._wake(fut, TimeoutError())

    def _fail(self, exc: BaseException) -> None:
        if self._exc is None:
            self._exc = exc
        self._wake(self._waiter, self._exc)
        self._wake(self._drain_waiter, self._exc)

    @staticmethod
    def _wake(fut: asyncio.Future[None] | None, exc: BaseException | None) -> None:
        if fut is not None and not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

    def abort(self) -> None:
        """Close at once. abort(), not close(): a TLS close() waits (up to 30 s) for the
        peer's close_notify, keeping a dead session's socket open long after we gave up."""
        if self._exc is None:
            self._exc = _Lost("connection closed by the relay")
        if self.transport is not None:
            self.transport.abort()
        elif not self.closed.done():
            self.closed.set_result(None)


class SmtpUpstream:
    """A bounded pool of persistent ESMTP connections to one upstream MTA.

    A small client of its own on an asyncio Protocol: with RFC 2920 PIPELINING offered,
    MAIL FROM, RCPT TO and DATA go out in one write, and the dot-stuffed message with its
    final dot in a second one: two round trips per copy instead of four.
    """

    def __init__(self, url: str, pool_size: int, timeout: float, helo_name: str,
                 max_age: float = 300.0, max_messages: int = 100) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"upstream url must be smtp://host:port or smtps://host:port, got {url!r}")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.host = parts.hostname
        self.implicit_tls = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.implicit_tls else 25)
        self.pool_size = pool_size
        self.timeout = timeout
        self.helo_name = helo_name
        # like Postfix's smtp_connection_reuse_time_limit (300 s) and reuse_count_limit: a
        # connection kept forever would never meet the upstream's new settings after a reload
        self.max_age, self.max_messages = max_age, max_messages
        self._retiring: set[asyncio.Task] = set()
        try:  # the EHLO argument is a domain (RFC 5321 §4.1.4): A-labels for IDNs
            self._helo = helo_name.encode("ascii" if helo_name.isascii() else "idna")
        except UnicodeError:
            self._helo = helo_name.encode("ascii", "replace")
        self._where = f"{self.host}:{self.port}"
        # The semaphore bounds transactions in flight; a connection is only opened when no
        # idle one exists, so open connections (idle + busy) never exceed pool_size.
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[_Connection] = []
        # Every connection whose socket is not yet released, so close() can wait for all.
        self._open: set[_Connection] = set()
        self._closed = False
        # Opportunistic TLS, Postfix's `smtp_tls_security_level = may`: encrypt when the
        # server offers STARTTLS but do not verify its certificate, since MX certificates
        # are commonly self-signed or name-mismatched and refusing them would only push
        # the mail back to plaintext elsewhere. smtps:// uses the same unverified context.
        self._tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self._tls.check_hostname = False
        self._tls.verify_mode = ssl.CERT_NONE

    async def deliver(self, mail_from: str, recipient: str, data: bytes) -> DeliveryResult:
        if self._closed:
            return _temporary("relay is shutting down; upstream connection pool closed")
        async with self._slots:
            for attempt in (1, 2):
                try:
                    conn, reused = await self._checkout()
                except _Dead as dead:  # a fresh connect failed: nothing to retry on
                    return dead.result
                try:
                    return await self._transaction(conn, reused, mail_from, recipient, data)
                except _Dead as dead:
                    if attempt == 2:
                        return dead.result
                    log.info("pooled connection to %s was dead (%s); retrying on a fresh one",
                             self._where, dead.result.reply)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Let transactions in flight finish (each bounded by the timeout), then QUIT.

        New deliveries are refused as temporary from the moment close() is called.
        """
        if self._closed:
            return
        self._closed = True
        # Holding every slot means no transaction is running any more.
        for _ in range(self.pool_size):
            await self._slots.acquire()
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(conn) for conn in idle))
        # Wait until every socket (QUIT ones and ones dropped earlier) is really released,
        # so a caller that ends its event loop next leaks nothing.
        pending = [conn.closed for conn in self._open if not conn.closed.done()]
        if pending:
            await asyncio.wait(pending, timeout=1.0)

    # -- connections ---------------------------------------------------------------

    async def _checkout(self) -> tuple[_Connection, bool]:
        """An idle live connection (reused=True) or a freshly opened one."""
        while self._idle:
            # LIFO: the most recently used connection is the least likely to have hit the
            # server's idle timeout; the cold ones at the bottom die off on their own.
            conn = self._idle.pop()
            if conn.usable and not self._worn_out(conn):
                return conn, True
            self._retire(conn)
        return await self._connect(), False

    def _checkin(self, conn: _Connection) -> None:
        # Even while closing: close() waits for every slot and then QUITs the idle list.
        if conn.usable and not self._worn_out(conn):
            self._idle.append(conn)
        else:
            self._retire(conn)

    def _worn_out(self, conn: _Connection) -> bool:
        return (conn.messages >= self.max_messages
                or asyncio.get_running_loop().time() - conn.born >= self.max_age)

    def _retire(self, conn: _Connection) -> None:
        """QUIT a connection that has served its time (politely, in the background), or drop a dead one."""
        if not conn.usable:
            self._drop(conn)
            return
        task = asyncio.ensure_future(self._quit(conn))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _drop(self, conn: _Connection) -> None:
        # After an error the session state is unknown (half-sent command, desynced
        # replies): never hand such a connection to the next message.
        conn.abort()

    def _track(self, conn: _Connection) -> None:
        self._open.add(conn)
        conn.closed.add_done_callback(lambda _: self._open.discard(conn))

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(loop)
        self._track(conn)
        stage = "connect"
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    await loop.create_connection(
                        lambda: conn, self.host, self.port,
                        ssl=self._tls if self.implicit_tls else None,
                        server_hostname=self.host if self.implicit_tls else None,
                        ssl_handshake_timeout=self.timeout if self.implicit_tls else None)
            except BaseException:
                if conn.transport is None and not conn.closed.done():
                    conn.closed.set_result(None)  # never connected: nothing to wait for
                raise
            code, text = await conn.reply(self.timeout)
            if code != 220:
                raise _Refused(code, text)
            stage = "EHLO"
            stage = await self._hello(conn)
            if not self.implicit_tls and "starttls" in conn.extensions:
                stage = "STARTTLS"
                conn.write(b"STARTTLS\r\n")
                code, text = await conn.reply(self.timeout)
                if code != 220:
                    raise _Refused(code, text)
                if conn.has_unread_input:
                    # Plaintext sent after the 220 would be read as if it came over TLS
                    # (the STARTTLS command-injection family of attacks).
                    raise _BadReply(b"data after the STARTTLS reply")
                plain = conn.transport
                assert plain is not None
                try:
                    async with asyncio.timeout(self.timeout):
                        tls = await loop.start_tls(plain, conn, self._tls,
                                                   server_hostname=self.host,
                                                   ssl_handshake_timeout=self.timeout)
                except BaseException:
                    # The plain transport now reports to the TLS layer, which does not
                    # tell us about a loss during the handshake: close it ourselves.
                    plain.abort()
                    conn.connection_lost(None)
                    raise
                if tls is None:
                    raise _Lost("connection closed during the TLS handshake")
                conn.transport = tls  # type: ignore[assignment]
                # RFC 3207: forget what was learnt before TLS and ask again.
                stage = "EHLO"
                stage = await self._hello(conn)
        except _Refused as exc:
            self._drop(conn)
            # Even a 5xx here is temporary: a refusing greeting or EHLO from our own
            # upstream is a misconfiguration or throttling to fix, not a verdict on this
            # message, and bouncing it would lose mail the client could resend later.
            raise _Dead(DeliveryResult(
                "temporary", exc.code, _one_line(f"{exc.text} (in reply to {stage} at {self._where})")))
        except (OSError, _BadReply) as exc:  # OSError covers timeouts, ssl.SSLError, _Lost
            self._drop(conn)
            raise _Dead(_temporary(self._describe(exc, stage)))
        except BaseException:  # cancellation: don't leak the socket
            self._drop(conn)
            raise
        return conn

    async def _hello(self, conn: _Connection) -> str:
        """EHLO (HELO if refused); records the extensions. Returns the stage for errors."""
        conn.write(b"EHLO " + self._helo + b"\r\n")
        code, text = await conn.reply(self.timeout)
        if code == 250:
            conn.extensions = {line.split(None, 1)[0].lower()
                               for line in text.split("\n")[1:] if line.strip()}
            return "EHLO"
        if not 500 <= code < 600:
            raise _Refused(code, text)
        # An old or minimal server that rejects EHLO still speaks plain SMTP.
        conn.write(b"HELO " + self._helo + b"\r\n")
        code, text = await conn.reply(self.timeout)
        if code != 250:
            raise _Refused(code, text)
        conn.extensions = set()
        return "HELO"

    async def _quit(self, conn: _Connection) -> None:
        try:
            if conn.usable:
                conn.write(b"QUIT\r\n")
                await conn.reply(min(self.timeout, 5.0))
        except (OSError, _BadReply):
            pass
        finally:
            # After QUIT nothing is left to protect, so skip the TLS close_notify dance,
            # which can wait up to 30 s for a peer that already left.
            conn.abort()

    def _describe(self, exc: BaseException, stage: str) -> str:
        """A short human cause for a local failure; never the exception's repr or traceback."""
        if isinstance(exc, TimeoutError):
            what = "connecting to" if stage == "connect" else f"waiting for reply to {stage} from"
            return f"timeout after {self.timeout:g}s {what} {self._where}"
        if isinstance(exc, ConnectionRefusedError):
            return f"connection refused by {self._where}"
        if isinstance(exc, ssl.SSLError):
            return f"TLS handshake with {self._where} failed: {exc.reason or exc.strerror}"
        if isinstance(exc, _Lost):
            return f"connection lost during {stage} with {self._where}"
        if isinstance(exc, _BadReply):
            return f"malformed reply to {stage} from {self._where}"
        if isinstance(exc, OSError):
            # strerror is None for e.g. "Multiple exceptions" from a multi-address connect
            detail = exc.strerror or str(exc) or type(exc).__name__
            return f"cannot {'connect to' if stage == 'connect' else 'talk to'} {self._where}: {detail}"
        return f"{stage} with {self._where} failed: {type(exc).__name__}"

    # -- one transaction -----------------------------------------------------------

    async def _transaction(self, conn: _Connection, reused: bool,
                           mail_from: str, recipient: str, data: bytes) -> DeliveryResult:
        try:
            result, after = await self._exchange(conn, reused, mail_from, recipient, data)
            conn.messages += 1
        except BaseException:
            # _Dead or cancellation: a reply may still be in flight, so the session can
            # never be trusted again (a late reply would pair with the next command).
            self._drop(conn)
            raise
        await self._finish(conn, after)
        return result

    async def _exchange(self, conn: _Connection, reused: bool, mail_from: str,
                        recipient: str, data: bytes) -> tuple[DeliveryResult, int]:
        """One MAIL/RCPT/DATA exchange; also says what the connection needs afterwards."""
        utf8 = not (mail_from.isascii() and recipient.isascii())
        if utf8 and "smtputf8" not in conn.extensions:
            # RFC 6531 §3.4: without SMTPUTF8 an internationalised address cannot be sent
            # at all, and retrying would not help.
            return DeliveryResult("permanent", LOCAL_BAD_ADDRESS,
                                  f"5.6.7 upstream {self._where} does not offer SMTPUTF8, "
                                  "needed for a non-ASCII address"), _CLEAN
        if any(c in addr for addr in (mail_from, recipient) for c in "\r\n\0"):
            # These would end the command early and smuggle in one of our own choosing.
            return DeliveryResult("permanent", LOCAL_BAD_ADDRESS,
                                  "5.1.3 address contains control characters; not sent"), _CLEAN
        extensions = conn.extensions
        # Addresses go out exactly as given (the front end already validated them).
        encoding = "utf-8" if utf8 else "ascii"
        mail = b"MAIL FROM:<" + mail_from.encode(encoding) + b">"
        if "size" in extensions:
            # RFC 1870 lets the upstream refuse an oversized message before we send it.
            mail += b" SIZE=%d" % len(data)
        if "8bitmime" in extensions and not data.isascii():
            # Without 8BITMIME the bytes still go out unchanged (as Postfix does by
            # default): re-encoding to 7 bit here would break the DKIM signature.
            mail += b" BODY=8BITMIME"
        if utf8:
            mail += b" SMTPUTF8"
        mail += b"\r\n"
        rcpt = b"RCPT TO:<" + recipient.encode(encoding) + b">\r\n"
        pipelining = "pipelining" in extensions
        timeout = self.timeout
        failure: tuple[int, str] | None = None  # the first refusal of the envelope
        sent = False  # the message itself went out: from here on, never retry
        stage = "MAIL FROM"
        try:
            if pipelining:
                # RFC 2920: the envelope and DATA in one write, then the three replies.
                conn.write(mail + rcpt + b"DATA\r\n")
            else:
                conn.write(mail)
            code, text = await conn.reply(timeout)
            if code == 421 and reused:
                # The server is ending a session it kept open for us (idle timeout,
                # shutdown): nothing was accepted yet, so a fresh connection may do.
                raise _Dead(DeliveryResult("temporary", code, _one_line(text)))
            if code != 250:
                failure = (code, text)
                if code == 421 or not pipelining:
                    return self._result(code, text), _DROP if code == 421 else _RESET
            stage = "RCPT TO"
            if not pipelining:
                conn.write(rcpt)
            code, text = await conn.reply(timeout)
            if failure is None and code not in (250, 251):
                failure = (code, text)
            if code == 421 or (failure is not None and not pipelining):
                return self._result(*(failure or (code, text))), _DROP if code == 421 else _RESET
            stage = "DATA"
            if not pipelining:
                conn.write(b"DATA\r\n")
            code, text = await conn.reply(timeout)
            if failure is not None:
                if code == 354:
                    # RFC 2920 §3.1: DATA accepted although the envelope was refused:
                    # end it with an empty message, then the RSET clears the rest.
                    conn.write(b".\r\n")
                    code, _ = await conn.reply(timeout)
                return self._result(*failure), _DROP if code == 421 else _RESET
            if code != 354:
                if 200 <= code < 300:  # not an answer to DATA: a confused server
                    return _temporary(f"{code} {text} (unexpected reply to DATA from {self._where})"), _DROP
                return self._result(code, text), _DROP if code == 421 else _RESET
            sent = True
            pieces = await cpu_bound(len(data), _stuff, data)
            if len(data) <= BIG:
                # one write, so one send() and one segment: the message and its final dot were
                # two, and each send costs the receiver's TCP work too on loopback
                pieces = [b"".join(pieces)]
            for piece in pieces:
                view = memoryview(piece)
                # a megabyte at a time: the transport copies what the socket does not take at once,
                # and 25 MB copied in one call would hold the loop for tens of milliseconds
                for start in range(0, len(view), _WRITE_CHUNK):
                    conn.write(view[start:start + _WRITE_CHUNK])
                    if len(view) > _WRITE_CHUNK:
                        await conn.drain(timeout)
            await conn.drain(timeout)
            code, text = await conn.reply(timeout)
            if 200 <= code < 300:
                return self._result(code, text), _CLEAN
            return self._result(code, text), _DROP if code == 421 else _RESET
        except (OSError, _BadReply) as exc:  # lost connections, timeouts, garbage replies
            if stage == "MAIL FROM" and reused and isinstance(exc, ConnectionError):
                raise _Dead(_temporary(self._describe(exc, stage))) from None
            if not sent:
                return _temporary(self._describe(exc, stage)), _DROP
            # The final dot may have reached a server that then died or is still thinking:
            # it may or may not have the message, so the caller must treat it as not
            # delivered.
            if isinstance(exc, _Lost):
                text = f"connection lost during DATA with {self._where}"
            else:
                text = self._describe(exc, stage)
            return _temporary(text + "; the upstream may or may not have the message"), _DROP

    @staticmethod
    def _result(code: int, text: str) -> DeliveryResult:
        return DeliveryResult(_classify(code), code, _one_line(text))

    async def _finish(self, conn: _Connection, after: int) -> None:
        """Return the connection to the pool in a known state, or drop it."""
        if after == _CLEAN:
            # After a completed DATA the server has reset the envelope itself (RFC 5321
            # §4.1.1.4), so no RSET: that saves a round trip per message.
            self._checkin(conn)
            return
        if after == _DROP or not conn.usable:
            self._drop(conn)
            return
        try:
            # A refused MAIL/RCPT/DATA leaves a half-built envelope; RSET clears it so
            # the connection can carry the next message.
            conn.write(b"RSET\r\n")
            code, _ = await conn.reply(self.timeout)
        except (OSError, _BadReply):
            self._drop(conn)
            return
        except BaseException:
            self._drop(conn)
            raise
        if code == 250:
            self._checkin(conn)
        else:
            self._drop(conn)


_counter = itertools.count()


class MaildirUpstream:
    """Deliver into a Maildir (demos, tests, hand-off to a local delivery agent)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        for sub in ("tmp", "new", "cur"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        # Maildir names may not hold "/" or ":"; escape them as the Maildir specification says.
        self._host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")

    def _unique(self) -> str:
        # time.MusecPpidQcounter.host (the modern Maildir convention): unique per
        # host, process and delivery even within the same microsecond.
        now = time.time()
        sec, usec = int(now), int((now % 1) * 1_000_000)
        return f"{sec}.M{usec}P{os.getpid()}Q{next(_counter)}.{self._host}"

    async def deliver(self, mail_from: str, recipient: str, data: bytes) -> DeliveryResult:
        if any(c in addr for addr in (mail_from, recipient) for c in "\r\n\0"):
            # These would forge extra header lines in the trace block.
            return DeliveryResult("permanent", LOCAL_BAD_ADDRESS,
                                  "5.1.3 address contains control characters; not stored")
        trace = (f"Return-Path: <{mail_from}>\r\nDelivered-To: {recipient}\r\n").encode("utf-8")
        try:
            # Disk I/O and fsync block for milliseconds to seconds: keep them off the loop.
            name = await asyncio.to_thread(self._write, trace, data)
        except OSError as exc:
            return _temporary(f"4.3.0 maildir {self.directory}: {exc.strerror or type(exc).__name__}")
        return DeliveryResult("delivered", 250, f"2.0.0 stored in maildir as new/{name}")

    def _write(self, trace: bytes, data: bytes) -> str:
        name = self._unique()
        tmp = self.directory / "tmp" / name
        new_dir = self.directory / "new"
        # O_EXCL: never overwrite another delivery's file, whatever happens to names.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(trace)
                fh.write(data)
                fh.flush()
                # The relay answers 250 on the strength of this: the bytes must be on disk.
                os.fsync(fh.fileno())
            os.rename(tmp, new_dir / name)
        except BaseException:
            # A half-written file in tmp/ is garbage; readers never look there, but disks fill.
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        # The rename is only durable once the directory entry itself is on disk.
        dfd = os.open(new_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return name

    async def close(self) -> None:
        return None


def make_upstream(url: str, pool_size: int, timeout: float, helo_name: str,
                  max_age: float = 300.0, max_messages: int = 100) -> Upstream:
    """Build the upstream named by `[upstream] url`: smtp://, smtps:// or maildir:DIR."""
    if url.startswith("maildir:"):
        target = url[len("maildir:"):]
        if target.startswith("//"):  # tolerate maildir:///abs/path
            target = target[2:]
        if not target:
            raise ValueError("maildir: needs a directory, e.g. maildir:/var/spool/relay/outbox")
        return MaildirUpstream(Path(target))
    scheme = url.split(":", 1)[0]
    if scheme in ("smtp", "smtps"):
        return SmtpUpstream(url, pool_size, timeout, helo_name, max_age, max_messages)
    raise ValueError(f"upstream url must be smtp://host:port, smtps://host:port or maildir:DIR, got {url!r}")
