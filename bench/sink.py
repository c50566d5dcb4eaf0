"""A counting SMTP sink for the benchmark: bare aiosmtpd that answers 250 to everything.

It counts transactions ("messages") and recipients ("copies": one per RCPT accepted), plus
payload bytes. Counts are read or reset over a tiny line-based control port on loopback:

    STATS  -> one JSON line {"messages": M, "copies": C, "bytes": B, "since": T}
    RESET  -> zeroes the counters, answers the counts it had, as JSON
    QUIT   -> the sink exits (the counts are also written to --stats-file on exit)

Start-up prints one JSON line on stdout: {"smtp_port": P, "control_port": Q, "pid": N}.

    python bench/sink.py [--host 127.0.0.1] [--port 0] [--control-port 0] [--stats-file F]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time

from aiosmtpd.smtp import SMTP


class Counter:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> dict:
        old = self.snapshot() if hasattr(self, "messages") else None
        self.messages = 0
        self.copies = 0
        self.bytes = 0
        self.since = time.time()
        return old or self.snapshot()

    def snapshot(self) -> dict:
        return {"messages": self.messages, "copies": self.copies, "bytes": self.bytes, "since": self.since}


class CountingHandler:
    """Accept every message; count it and its recipients."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd hook name)
        c = self.counter
        c.messages += 1
        c.copies += len(envelope.rcpt_tos)
        c.bytes += len(envelope.content or b"")
        return "250 2.0.0 OK"


async def control(counter: Counter, stop: asyncio.Event, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            cmd = line.strip().upper()
            if cmd == b"STATS":
                out = counter.snapshot()
            elif cmd == b"RESET":
                out = counter.reset()
            elif cmd == b"QUIT":
                out = {"bye": True}
                stop.set()
            else:
                out = {"error": "commands: STATS, RESET, QUIT"}
            writer.write(json.dumps(out).encode() + b"\n")
            await writer.drain()
    finally:
        writer.close()


async def main_async(args: argparse.Namespace) -> None:
    counter = Counter()
    handler = CountingHandler(counter)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.bench", decode_data=False, enable_SMTPUTF8=True,
                     data_size_limit=64 * 1024 * 1024),
        host=args.host, port=args.port, backlog=1024, reuse_address=True)
    ctl = await asyncio.start_server(lambda r, w: control(counter, stop, r, w), host=args.host,
                                     port=args.control_port)
    smtp_port = server.sockets[0].getsockname()[1]
    control_port = ctl.sockets[0].getsockname()[1]
    print(json.dumps({"smtp_port": smtp_port, "control_port": control_port, "pid": os.getpid()}), flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        ctl.close()
        if args.stats_file:
            with open(args.stats_file, "w") as fh:
                json.dump(counter.snapshot(), fh)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--stats-file", default=None, help="write the final counts here (JSON) on exit")
    args = parser.parse_args()
    if not args.host.startswith("127."):
        parser.error("the sink listens on loopback (127.0.0.0/8) only")
    # aiosmtpd logs every command at INFO: that would be most of the sink's work
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
