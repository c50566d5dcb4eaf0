"""Fault-injection helpers for bench/reliability.py and tests/test_reliability.py.

* `FaultProxy`: a TCP proxy on a fixed loopback port (run on its own asyncio loop in a
  background thread) that forwards to a target (e.g. PostgreSQL on 127.0.0.1:5432) and can be
  - stopped: the listener closes and every live connection is aborted (peers see a reset,
    new connections are refused) — "the database host is down";
  - paused: connections stay open and new ones are accepted, but no byte moves in either
    direction until resumed — "the network drops every packet" (a partition);
  - started / resumed again on the same port.
* a recording SMTP sink, run as its own process (`python bench/faultproxy.py sink ...`): the
  counting sink of bench/sink.py (same Counter, handler and STATS/RESET/QUIT control port) that
  also appends the value of one header (default `X-Reliability-Id`) of every message it
  accepts to a file, one line per message, flushed before it answers 250.

    python bench/faultproxy.py sink --record FILE [--port P] [--header X-Reliability-Id]
    python bench/faultproxy.py proxy --listen 127.0.0.1:P --target 127.0.0.1:5432
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))


# --------------------------------------------------------------------------- proxy

class FaultProxy:
    """A stoppable, pausable TCP proxy on a fixed loopback port (own loop, own thread)."""

    def __init__(self, listen_port: int, target_host: str = "127.0.0.1", target_port: int = 5432,
                 host: str = "127.0.0.1") -> None:
        if not host.startswith("127.") or not target_host.startswith("127."):
            raise ValueError("FaultProxy is for loopback only")
        self.host, self.port = host, listen_port
        self.target = (target_host, target_port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="faultproxy", daemon=True)
        self.thread.start()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()
        self._flowing: asyncio.Event | None = None
        self.connections = 0

    def _call(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # -- public, thread-safe ---------------------------------------------------------
    def start(self) -> "FaultProxy":
        self._call(self._start())
        return self

    def stop(self) -> None:
        """Refuse new connections and abort every live one."""
        self._call(self._stop())

    def pause(self) -> None:
        """Blackhole: keep everything open, move no bytes (new connections hang too)."""
        self._call(self._set_flow(False))

    def resume(self) -> None:
        self._call(self._set_flow(True))

    def close(self) -> None:
        try:
            self._call(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()

    # -- on the proxy loop -------------------------------------------------------------
    async def _start(self) -> None:
        if self._flowing is None:
            self._flowing = asyncio.Event()
        self._flowing.set()
        if self._server is None:
            self._server = await asyncio.start_server(self._client, self.host, self.port, reuse_address=True)

    async def _set_flow(self, flowing: bool) -> None:
        assert self._flowing is not None
        (self._flowing.set if flowing else self._flowing.clear)()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            transport = w.transport
            if transport is not None:
                transport.abort()
        self._writers.clear()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._flowing is not None:
            self._flowing.set()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None and self._flowing is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        up_w: asyncio.StreamWriter | None = None
        try:
            await self._flowing.wait()
            up_r, up_w = await asyncio.open_connection(*self.target)
            self._writers.add(up_w)
            await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            for w in (writer, up_w):
                if w is not None:
                    self._writers.discard(w)
                    if w.transport is not None:
                        w.transport.abort()
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()  # data read just before a pause is held back too
                writer.write(data)
                await writer.drain()
        finally:
            if writer.can_write_eof() and not writer.is_closing():
                try:
                    writer.write_eof()
                except OSError:
                    pass


# --------------------------------------------------------------------------- recording sink

def _sink_main(args: argparse.Namespace) -> int:
    from aiosmtpd.smtp import SMTP

    import sink as counting_sink  # bench/sink.py: Counter, CountingHandler, control

    pattern = re.compile(rb"^" + re.escape(args.header.encode()) + rb":[ \t]*(\S+)", re.I | re.M)
    record = open(args.record, "ab", buffering=0)  # noqa: SIM115 (lives as long as the process)

    class RecordingHandler(counting_sink.CountingHandler):
        async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802
            content = envelope.original_content or envelope.content or b""
            head = content.split(b"\r\n\r\n", 1)[0]
            m = pattern.search(head)
            tag = m.group(1) if m else b"-"
            record.write(tag + b" " + str(len(envelope.rcpt_tos)).encode() + b"\n")
            return await super().handle_DATA(server, session, envelope)

    async def run() -> None:
        counter = counting_sink.Counter()
        handler = RecordingHandler(counter)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="sink.reliability", decode_data=False, enable_SMTPUTF8=True,
                         data_size_limit=64 * 1024 * 1024),
            host=args.host, port=args.port, backlog=1024, reuse_address=True)
        ctl = await asyncio.start_server(lambda r, w: counting_sink.control(counter, stop, r, w),
                                         host=args.host, port=0)
        print(json.dumps({"smtp_port": server.sockets[0].getsockname()[1],
                          "control_port": ctl.sockets[0].getsockname()[1], "pid": os.getpid()}), flush=True)
        try:
            await stop.wait()
        finally:
            server.close()
            ctl.close()
            record.close()

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    asyncio.run(run())
    return 0


def _proxy_main(args: argparse.Namespace) -> int:
    host, _, port = args.listen.rpartition(":")
    thost, _, tport = args.target.rpartition(":")
    proxy = FaultProxy(int(port), thost, int(tport), host=host).start()
    print(json.dumps({"listen": args.listen, "target": args.target, "pid": os.getpid()}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGUSR1, lambda *_: proxy.pause())
    signal.signal(signal.SIGUSR2, lambda *_: proxy.resume())
    done.wait()
    proxy.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sink", help="recording SMTP sink")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--record", required=True, help="file to append '<header value> <rcpts>' lines to")
    s.add_argument("--header", default="X-Reliability-Id")
    p = sub.add_parser("proxy", help="TCP proxy (SIGUSR1 pause, SIGUSR2 resume, SIGTERM stop)")
    p.add_argument("--listen", required=True)
    p.add_argument("--target", default="127.0.0.1:5432")
    args = ap.parse_args()
    if args.cmd == "sink":
        if not args.host.startswith("127."):
            ap.error("loopback only")
        return _sink_main(args)
    return _proxy_main(args)


if __name__ == "__main__":
    sys.exit(main())
