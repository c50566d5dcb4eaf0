"""An asyncio SMTP load generator that also measures latency.

It sends messages shaped like Postfix smtp-source's (From/To/Date/Message-Id/Subject headers,
a body of 'X' lines of the requested size, recipients rcpt@dom, 2rcpt@dom, 3rcpt@dom ...)
over `sessions` persistent connections. For each message it records the time from writing the
final "<CRLF>.<CRLF>" to reading the complete reply: the end-of-DATA latency.

Two modes:
  * throughput: as fast as possible until `messages` have been sent;
  * rate-limited (--rate R): message i is due at start + i/R, the next free session takes it;
    this is how the harness measures latency at a fixed fraction of the maximum load.

    python bench/loadgen.py 127.0.0.1:2525 -s 20 -m 1000 -l 10240 -r 1 [--rate 200] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field
from email.utils import formatdate


def recipients_for(to: str, count: int) -> list[str]:
    """smtp-source's scheme: the first is `to` itself, the others get a number prefixed."""
    return [to] + [f"{i}{to}" for i in range(2, count + 1)]


def build_message(sender: str, to: str, size: int, subject: str, seq: int) -> bytes:
    """Headers like smtp-source's, then `size` bytes of payload in 78-char lines (dot-stuffing not needed)."""
    host = sender.rsplit("@", 1)[-1]
    headers = (
        f"From: <{sender}>\r\nTo: <{to}>\r\nDate: {formatdate(localtime=False, usegmt=True)}\r\n"
        f"Message-Id: <{time.time_ns():x}.{seq}@{host}>\r\nSubject: {subject}\r\n\r\n"
    ).encode()
    line = b"X" * 78 + b"\r\n"
    full, rest = divmod(size, len(line))
    body = line * full + (b"X" * max(0, rest - 2) + b"\r\n" if rest > 2 else b"")
    return headers + body


@dataclass
class Result:
    sent: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        return {
            "sent": self.sent, "errors": self.errors, "elapsed": round(self.elapsed, 4),
            "msgs_per_s": round(self.sent / self.elapsed, 2) if self.elapsed else 0.0,
            "p50_ms": round(percentile(lat, 50) * 1e3, 3) if lat else None,
            "p99_ms": round(percentile(lat, 99) * 1e3, 3) if lat else None,
            "max_ms": round(lat[-1] * 1e3, 3) if lat else None,
            "mean_ms": round(statistics.fmean(lat) * 1e3, 3) if lat else None,
            "samples": len(lat), "first_error": self.first_error,
        }


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-pct * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


class SmtpError(Exception):
    pass


class Session:
    def __init__(self, host: str, port: int, helo: str):
        self.host, self.port, self.helo = host, port, helo
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def reply(self) -> tuple[int, str]:
        assert self.reader is not None
        lines = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise SmtpError("connection closed by server")
            lines.append(line.decode("latin-1").rstrip("\r\n"))
            if len(line) < 4 or line[3:4] != b"-":
                break
        try:
            code = int(lines[-1][:3])
        except ValueError:
            raise SmtpError(f"garbled reply {lines[-1]!r}") from None
        return code, " | ".join(lines)

    async def command(self, line: str, expect: int = 2) -> None:
        assert self.writer is not None
        self.writer.write(line.encode() + b"\r\n")
        code, text = await self.reply()
        if code // 100 != expect:
            raise SmtpError(f"{line.split(':')[0].split(' ')[0]} -> {text}")

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code, text = await self.reply()
        if code != 220:
            raise SmtpError(f"banner {text}")
        await self.command(f"EHLO {self.helo}")

    async def send(self, sender: str, rcpts: list[str], data: bytes) -> float:
        """One transaction; returns the end-of-DATA latency in seconds."""
        assert self.writer is not None
        await self.command(f"MAIL FROM:<{sender}>")
        for r in rcpts:
            await self.command(f"RCPT TO:<{r}>")
        await self.command("DATA", expect=3)
        self.writer.write(data)
        await self.writer.drain()
        t0 = time.perf_counter()
        self.writer.write(b".\r\n")
        code, text = await self.reply()
        dt = time.perf_counter() - t0
        if code // 100 != 2:
            raise SmtpError(f"end of DATA -> {text}")
        return dt

    async def close(self) -> None:
        if self.writer is None:
            return
        try:
            self.writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self.reply(), 5)
        except Exception:
            pass
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except Exception:
            pass
        self.writer = None


async def run_load(host: str, port: int, *, sessions: int = 20, messages: int = 100, size: int = 10240,
                   recipients: int = 1, sender: str = "bench@bench.example", to: str = "rcpt@example.org",
                   rate: float | None = None, subject: str = "bench", helo: str = "loadgen.bench.example",
                   timeout: float = 120.0, message: bytes | None = None) -> dict:
    """Send `messages` over `sessions` connections (paced at `rate`/s if given); return a summary dict.

    `message` (CRLF lines, not dot-stuffed) replaces the generated 'X'-lines payload of `size` bytes.
    """
    if not host.startswith("127.") and host != "localhost":
        raise ValueError("loadgen targets loopback (127.0.0.0/8) only")
    rcpts = recipients_for(to, recipients)
    # one body for all (building 100 KB per message would cost the generator more than the target)
    template = build_message(sender, to, size, subject, 0) if message is None else message
    res = Result()
    next_i = 0
    start = time.perf_counter()

    async def worker() -> None:
        nonlocal next_i
        s = Session(host, port, helo)
        try:
            while next_i < messages:
                i = next_i
                next_i += 1
                if rate:
                    delay = start + i / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                try:
                    if s.writer is None:
                        await s.connect()
                    res.latencies.append(await s.send(sender, rcpts, template))
                    res.sent += 1
                except (SmtpError, OSError, asyncio.IncompleteReadError) as exc:
                    res.errors += 1
                    res.first_error = res.first_error or str(exc)
                    await s.close()
        finally:
            await s.close()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(sessions))), timeout)
    res.elapsed = time.perf_counter() - start
    return res.summary()


def _message_file(path: str | None) -> bytes | None:
    """The file as a message with CRLF line ends (what run_load sends), or None."""
    if path is None:
        return None
    with open(path, "rb") as fh:
        return fh.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", help="host:port (loopback only)")
    p.add_argument("-s", "--sessions", type=int, default=20)
    p.add_argument("-m", "--messages", type=int, default=100)
    p.add_argument("-l", "--size", type=int, default=10240, help="payload bytes, headers not included")
    p.add_argument("-r", "--recipients", type=int, default=1)
    p.add_argument("-f", "--sender", default="bench@bench.example")
    p.add_argument("-t", "--to", default="rcpt@example.org")
    p.add_argument("--rate", type=float, default=None, help="messages per second (default: as fast as possible)")
    p.add_argument("--duration", type=float, default=None, help="with --rate: send rate*duration messages")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--message", default=None, help="send this file (an RFC 5322 message, e.g. bench/payload.py's) "
                   "instead of generated X lines")
    args = p.parse_args()
    host, _, port = args.target.rpartition(":")
    messages = args.messages
    if args.rate and args.duration:
        messages = max(1, int(args.rate * args.duration))
    out = asyncio.run(run_load(host, int(port), sessions=args.sessions, messages=messages, size=args.size,
                               recipients=args.recipients, sender=args.sender, to=args.to, rate=args.rate,
                               timeout=args.timeout, message=_message_file(args.message)))
    print(json.dumps(out))
    return 0 if out["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
