"""Hand finished copies to the upstream: a pooled SMTP/SMTPS client or a local Maildir."""
from __future__ import annotations

import asyncio
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

import aiosmtplib

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


def _drop(smtp: aiosmtplib.SMTP) -> None:
    """Close a connection we no longer trust, at once."""
    transport = smtp.transport
    smtp.close()
    if transport is not None:
        # abort(), not close(): a TLS close() waits (up to 30 s) for the peer's
        # close_notify, keeping a dead session's socket open long after we gave up on it.
        transport.abort()


class SmtpUpstream:
    """A bounded pool of persistent ESMTP connections to one upstream MTA."""

    def __init__(self, url: str, pool_size: int, timeout: float, helo_name: str) -> None:
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
        self._where = f"{self.host}:{self.port}"
        # The semaphore bounds transactions in flight; a connection is only opened when no
        # idle one exists, so open connections (idle + busy) never exceed pool_size.
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[aiosmtplib.SMTP] = []
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
                    smtp, reused = await self._checkout()
                except _Dead as dead:  # a fresh connect failed: nothing to retry on
                    return dead.result
                try:
                    return await self._transaction(smtp, reused, mail_from, recipient, data)
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
        await asyncio.gather(*(self._quit(smtp) for smtp in idle))

    # -- connections ---------------------------------------------------------------

    async def _checkout(self) -> tuple[aiosmtplib.SMTP, bool]:
        """An idle live connection (reused=True) or a freshly opened one."""
        while self._idle:
            # LIFO: the most recently used connection is the least likely to have hit the
            # server's idle timeout; the cold ones at the bottom die off on their own.
            smtp = self._idle.pop()
            if smtp.is_connected:
                return smtp, True
            _drop(smtp)
        return await self._connect(), False

    def _checkin(self, smtp: aiosmtplib.SMTP) -> None:
        # Even while closing: close() waits for every slot and then QUITs the idle list.
        if smtp.is_connected:
            self._idle.append(smtp)
        else:
            _drop(smtp)

    def _discard(self, smtp: aiosmtplib.SMTP) -> None:
        # After an error the session state is unknown (half-sent command, desynced
        # replies): never hand such a connection to the next message.
        _drop(smtp)

    async def _connect(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, local_hostname=self.helo_name,
            timeout=self.timeout, use_tls=self.implicit_tls, start_tls=False,
            tls_context=self._tls,
        )
        stage = "connect"
        try:
            await smtp.connect()
            stage = "EHLO"
            await self._hello(smtp)
            if not self.implicit_tls and smtp.supports_extension("starttls"):
                stage = "STARTTLS"
                await smtp.starttls()
                # RFC 3207: forget what was learnt before TLS and ask again.
                stage = "EHLO"
                await self._hello(smtp)
        except aiosmtplib.SMTPResponseException as exc:
            _drop(smtp)
            # Even a 5xx here is temporary: a refusing greeting or EHLO from our own
            # upstream is a misconfiguration or throttling to fix, not a verdict on this
            # message, and bouncing it would lose mail the client could resend later.
            raise _Dead(DeliveryResult(
                "temporary", exc.code, _one_line(f"{exc.message} (in reply to {stage} at {self._where})")))
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            _drop(smtp)
            raise _Dead(_temporary(self._describe(exc, stage)))
        except BaseException:  # cancellation: don't leak the socket
            _drop(smtp)
            raise
        return smtp

    async def _hello(self, smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.ehlo()
        except aiosmtplib.SMTPHeloError as exc:
            # An old or minimal server that rejects EHLO still speaks plain SMTP.
            if 500 <= exc.code < 600 and smtp.is_connected:
                await smtp.helo()
            else:
                raise

    async def _quit(self, smtp: aiosmtplib.SMTP) -> None:
        transport = smtp.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        try:
            await smtp.quit(timeout=min(self.timeout, 5.0))
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()
        if transport is None or sock is None:
            return
        # After QUIT nothing is left to protect, so skip the TLS close_notify dance, which
        # can wait up to 30 s for a peer that already left; then wait for the socket to be
        # really released, so a caller that ends its event loop next leaks nothing.
        transport.abort()
        for _ in range(100):
            if sock.fileno() == -1:
                break
            await asyncio.sleep(0.01)

    def _describe(self, exc: BaseException, stage: str) -> str:
        """A short human cause for a local failure; never the exception's repr or traceback."""
        if isinstance(exc, TimeoutError):  # aiosmtplib's timeouts subclass it
            what = "connecting to" if stage == "connect" else f"waiting for reply to {stage} from"
            return f"timeout after {self.timeout:g}s {what} {self._where}"
        # aiosmtplib wraps the socket error (its own errors are ConnectionErrors too), so
        # look down the chain for the first plain OS-level cause.
        cause: BaseException = exc
        link: BaseException | None = exc
        while link is not None:
            if isinstance(link, OSError) and not isinstance(link, aiosmtplib.SMTPException):
                cause = link
                break
            link = link.__cause__
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by {self._where}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake with {self._where} failed: {cause.reason or cause.strerror}"
        if isinstance(cause, OSError) and not isinstance(cause, aiosmtplib.SMTPException):
            # strerror is None for e.g. "Multiple exceptions" from a multi-address connect
            detail = cause.strerror or str(cause) or type(cause).__name__
            return f"cannot {'connect to' if stage == 'connect' else 'talk to'} {self._where}: {detail}"
        if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
            return f"connection lost during {stage} with {self._where}"
        return f"{stage} with {self._where} failed: {type(exc).__name__}"

    # -- one transaction -----------------------------------------------------------

    async def _transaction(self, smtp: aiosmtplib.SMTP, reused: bool,
                           mail_from: str, recipient: str, data: bytes) -> DeliveryResult:
        try:
            result, clean = await self._exchange(smtp, reused, mail_from, recipient, data)
        except BaseException:
            # _Dead or cancellation: a reply may still be in flight, so the session can
            # never be trusted again (a late reply would pair with the next command).
            self._discard(smtp)
            raise
        await self._finish(smtp, clean)
        return result

    async def _exchange(self, smtp: aiosmtplib.SMTP, reused: bool, mail_from: str,
                        recipient: str, data: bytes) -> tuple[DeliveryResult, bool]:
        """One MAIL/RCPT/DATA exchange; the flag says whether no envelope is left open."""
        utf8 = not (mail_from.isascii() and recipient.isascii())
        if utf8 and not smtp.supports_extension("smtputf8"):
            # RFC 6531 §3.4: without SMTPUTF8 an internationalised address cannot be sent
            # at all, and retrying would not help.
            return DeliveryResult("permanent", LOCAL_BAD_ADDRESS,
                                  f"5.6.7 upstream {self._where} does not offer SMTPUTF8, "
                                  "needed for a non-ASCII address"), True
        options: list[bytes] = []
        if smtp.supports_extension("size"):
            # RFC 1870 lets the upstream refuse an oversized message before we send it.
            options.append(b"SIZE=%d" % len(data))
        if not data.isascii() and smtp.supports_extension("8bitmime"):
            # Without 8BITMIME the bytes still go out unchanged (as Postfix does by
            # default): re-encoding to 7 bit here would break the DKIM signature.
            options.append(b"BODY=8BITMIME")
        if utf8:
            options.append(b"SMTPUTF8")
        encoding = "utf-8" if utf8 else "ascii"
        # Addresses go out exactly as given (the front end already validated them):
        # aiosmtplib's mail()/rcpt() run them through email.utils.parseaddr, which can
        # rewrite quoted local parts. execute_command still refuses CR/LF/NUL.
        stage = "MAIL FROM"
        try:
            reply = await smtp.execute_command(
                b"MAIL", b"FROM:<" + mail_from.encode(encoding) + b">", *options)
            if reply.code == 421 and reused:
                # The server is ending a session it kept open for us (idle timeout,
                # shutdown): nothing was accepted yet, so a fresh connection may do.
                raise _Dead(DeliveryResult("temporary", reply.code, _one_line(reply.message)))
            if reply.code != 250:
                return DeliveryResult(_classify(reply.code), reply.code, _one_line(reply.message)), False
            stage = "RCPT TO"
            reply = await smtp.execute_command(b"RCPT", b"TO:<" + recipient.encode(encoding) + b">")
            if reply.code not in (250, 251):
                return DeliveryResult(_classify(reply.code), reply.code, _one_line(reply.message)), False
            stage = "DATA"
            # data() normalises bare CR/LF to CRLF and dot-stuffs; the pipeline already
            # sends pure CRLF, so the bytes arrive unchanged.
            reply = await smtp.data(data)
            return DeliveryResult(_classify(reply.code), reply.code, _one_line(reply.message)), True
        except aiosmtplib.SMTPResponseException as exc:
            # 4xx/5xx to DATA or to the final dot (SMTPDataError), or a malformed reply line.
            return DeliveryResult(_classify(exc.code), exc.code, _one_line(exc.message)), False
        except ValueError:
            # execute_command refuses control characters in an address: never fixable.
            return DeliveryResult("permanent", LOCAL_BAD_ADDRESS,
                                  "5.1.3 address contains control characters; not sent"), False
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            if stage == "MAIL FROM" and reused:
                raise _Dead(_temporary(self._describe(exc, stage))) from None
            if stage == "DATA":
                # The final dot may have reached a server that then died: it may or may
                # not have the message, so the caller must treat it as not delivered.
                return _temporary(f"connection lost during DATA with {self._where}; "
                                  "the upstream may or may not have the message"), False
            return _temporary(self._describe(exc, stage)), False
        except (aiosmtplib.SMTPException, OSError) as exc:  # timeouts and the rest
            text = self._describe(exc, stage)
            if stage == "DATA":  # a reply we gave up waiting for may still have been 250
                text += "; the upstream may or may not have the message"
            return _temporary(text), False

    async def _finish(self, smtp: aiosmtplib.SMTP, clean: bool) -> None:
        """Return the connection to the pool in a known state, or drop it."""
        if clean or not smtp.is_connected:
            # After a completed DATA the server has reset the envelope itself (RFC 5321
            # §4.1.1.4), so no RSET: that saves a round trip per message.
            (self._checkin if clean else self._discard)(smtp)
            return
        try:
            # A refused MAIL/RCPT/DATA leaves a half-built envelope; RSET clears it so
            # the connection can carry the next message.
            reply = await smtp.execute_command(b"RSET")
        except (aiosmtplib.SMTPException, OSError, ValueError):
            self._discard(smtp)
            return
        except BaseException:
            self._discard(smtp)
            raise
        if reply.code == 250:
            self._checkin(smtp)
        else:
            self._discard(smtp)


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


def make_upstream(url: str, pool_size: int, timeout: float, helo_name: str) -> Upstream:
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
        return SmtpUpstream(url, pool_size, timeout, helo_name)
    raise ValueError(f"upstream url must be smtp://host:port, smtps://host:port or maildir:DIR, got {url!r}")
