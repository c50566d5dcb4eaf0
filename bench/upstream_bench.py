"""Upstream client cost: the old aiosmtplib-based SmtpUpstream against the new lean one.

One run starts a bare aiosmtpd sink in a separate process (two, in fact: one that announces
PIPELINING, as Postfix does, and one that does not), then delivers N copies of a ~10 KB
message, one recipient each, with C concurrent deliveries over a pool of C connections, via

  old        OldSmtpUpstream (below: the previous class, verbatim, on aiosmtplib)
  new        relay.delivery.SmtpUpstream against the PIPELINING sink (2 round trips per copy)
  new-lock   relay.delivery.SmtpUpstream against the sink without PIPELINING (lock-step, 4)

and reports copies/s and client CPU seconds per copy (time.process_time of this process,
which runs only the client), plus the sink's CPU per copy (from /proc). Targets alternate in
rounds so drift in machine load hits all alike; the median round is reported.

    .venv/bin/python bench/upstream_bench.py [-n 3000] [-c 8] [--size 10000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiosmtplib

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from relay.delivery.upstream import (  # noqa: E402
    LOCAL_BAD_ADDRESS, DeliveryResult, SmtpUpstream, _classify, _Dead, _one_line, _temporary,
)

log = logging.getLogger("bench.upstream")


# -- the old client, verbatim apart from its name ----------------------------------------


def _old_drop(smtp: aiosmtplib.SMTP) -> None:
    """Close a connection we no longer trust, at once."""
    transport = smtp.transport
    smtp.close()
    if transport is not None:
        # abort(), not close(): a TLS close() waits (up to 30 s) for the peer's
        # close_notify, keeping a dead session's socket open long after we gave up on it.
        transport.abort()


class OldSmtpUpstream:
    """The aiosmtplib-based SmtpUpstream as it was before the rewrite, kept verbatim for comparison."""

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
            _old_drop(smtp)
        return await self._connect(), False

    def _checkin(self, smtp: aiosmtplib.SMTP) -> None:
        # Even while closing: close() waits for every slot and then QUITs the idle list.
        if smtp.is_connected:
            self._idle.append(smtp)
        else:
            _old_drop(smtp)

    def _discard(self, smtp: aiosmtplib.SMTP) -> None:
        # After an error the session state is unknown (half-sent command, desynced
        # replies): never hand such a connection to the next message.
        _old_drop(smtp)

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
            _old_drop(smtp)
            # Even a 5xx here is temporary: a refusing greeting or EHLO from our own
            # upstream is a misconfiguration or throttling to fix, not a verdict on this
            # message, and bouncing it would lose mail the client could resend later.
            raise _Dead(DeliveryResult(
                "temporary", exc.code, _one_line(f"{exc.message} (in reply to {stage} at {self._where})")))
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            _old_drop(smtp)
            raise _Dead(_temporary(self._describe(exc, stage)))
        except BaseException:  # cancellation: don't leak the socket
            _old_drop(smtp)
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


# -- the sink: bare aiosmtpd in its own process -------------------------------------------


class _SinkHandler:
    """Accept everything; optionally announce PIPELINING (aiosmtpd handles pipelined input
    correctly, it just does not say so)."""

    def __init__(self, pipelining: bool) -> None:
        self.pipelining = pipelining
        self.copies = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802, ANN001
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server, session, envelope):  # noqa: N802, ANN001
        self.copies += len(envelope.rcpt_tos)
        return "250 2.0.0 OK"


def run_sink(pipelining: bool) -> None:
    from aiosmtpd.smtp import SMTP

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handler = _SinkHandler(pipelining)
        server = await loop.create_server(
            lambda: SMTP(handler, decode_data=False, enable_SMTPUTF8=True, hostname="sink.bench"),
            "127.0.0.1", 0)
        print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
        # stdin closing (the bench ended or died) stops the sink
        await loop.run_in_executor(None, sys.stdin.read)
        server.close()

    logging.disable(logging.CRITICAL)  # aiosmtpd logs every session at INFO
    asyncio.run(main())


class Sink:
    def __init__(self, pipelining: bool) -> None:
        args = [sys.executable, __file__, "--sink"] + ([] if pipelining else ["--no-pipelining"])
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.port = json.loads(self.proc.stdout.readline())["port"]
        self.url = f"smtp://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        """utime + stime of the sink process, in seconds."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the load ------------------------------------------------------------------------------


def make_message(size: int) -> bytes:
    """A pure-CRLF ~size-byte message, 8-bit body, a few lines that need dot-stuffing."""
    head = (b"From: Acme News <news@acme.example>\r\nTo: reader@example.org\r\n"
            b"Subject: Spring offers\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
    lines = []
    i = 0
    while len(head) + sum(len(x) for x in lines) < size:
        if i % 40 == 39:
            lines.append(b".a line starting with a dot\r\n")
        else:
            lines.append(b"Caf\xc3\xa9 line %04d: lorem ipsum dolor sit amet, consectetur adipiscing.\r\n" % i)
        i += 1
    return head + b"".join(lines)


async def deliver_all(upstream, n: int, concurrency: int, data: bytes, tag: str) -> None:
    counter = iter(range(n))
    failures: list[DeliveryResult] = []

    async def worker() -> None:
        for i in counter:
            result = await upstream.deliver("news@acme.example", f"{tag}{i}@example.org", data)
            if result.status != "delivered":
                failures.append(result)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if failures:
        raise RuntimeError(f"{len(failures)} copies not delivered, e.g. {failures[0]}")


async def measure(make, sink: Sink, n: int, concurrency: int, data: bytes) -> dict:
    upstream = make(sink.url, concurrency)
    try:
        await deliver_all(upstream, 100, concurrency, data, "warm")  # connect, EHLO, warm caches
        gc.collect()
        cpu0, sink0, t0 = time.process_time(), sink.cpu(), time.perf_counter()
        await deliver_all(upstream, n, concurrency, data, "r")
        elapsed = time.perf_counter() - t0
        cpu, sink_cpu = time.process_time() - cpu0, sink.cpu() - sink0
    finally:
        await upstream.close()
    return {"copies_s": n / elapsed, "cpu_ms": 1000 * cpu / n, "sink_cpu_ms": 1000 * sink_cpu / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("-n", type=int, default=3000, help="copies per measurement (default 3000)")
    ap.add_argument("-c", "--concurrency", type=int, default=8, help="deliveries in flight = pool size")
    ap.add_argument("--size", type=int, default=10_000, help="message size in bytes")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-pipelining", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sink:
        run_sink(not args.no_pipelining)
        return

    data = make_message(args.size)
    targets = {
        "old": (lambda url, c: OldSmtpUpstream(url, c, 30.0, "bench.example"), True),
        "new": (lambda url, c: SmtpUpstream(url, c, 30.0, "bench.example"), True),
        "new-lock": (lambda url, c: SmtpUpstream(url, c, 30.0, "bench.example"), False),
    }
    sinks = {True: Sink(True), False: Sink(False)}
    results: dict[str, list[dict]] = {name: [] for name in targets}
    try:
        for r in range(args.rounds):
            for name, (make, pipelining) in targets.items():
                res = asyncio.run(measure(make, sinks[pipelining], args.n, args.concurrency, data))
                results[name].append(res)
                print(f"round {r + 1} {name:9s} {res['copies_s']:7.0f} copies/s  "
                      f"client {res['cpu_ms']:.3f} ms CPU/copy  sink {res['sink_cpu_ms']:.3f} ms CPU/copy",
                      flush=True)
    finally:
        for sink in sinks.values():
            sink.stop()

    med = {name: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for name, rs in results.items()}
    print(f"\n{args.n} copies of {len(data)} bytes, concurrency {args.concurrency}, "
          f"median of {args.rounds} rounds (Python {sys.version.split()[0]}, aiosmtplib {aiosmtplib.__version__})")
    print(f"{'client':10s} {'copies/s':>9s} {'client CPU ms/copy':>19s} {'sink CPU ms/copy':>17s}")
    for name, m in med.items():
        print(f"{name:10s} {m['copies_s']:9.0f} {m['cpu_ms']:19.3f} {m['sink_cpu_ms']:17.3f}")
    o, nw = med["old"], med["new"]
    print(f"\nnew vs old: throughput x{nw['copies_s'] / o['copies_s']:.2f}, "
          f"client CPU per copy x{nw['cpu_ms'] / o['cpu_ms']:.2f} "
          f"({o['cpu_ms'] / nw['cpu_ms']:.2f}x less), sink CPU per copy x{nw['sink_cpu_ms'] / o['sink_cpu_ms']:.2f}")
    lk = med["new-lock"]
    print(f"new-lock vs old: throughput x{lk['copies_s'] / o['copies_s']:.2f}, "
          f"client CPU per copy x{lk['cpu_ms'] / o['cpu_ms']:.2f}")


if __name__ == "__main__":
    main()
