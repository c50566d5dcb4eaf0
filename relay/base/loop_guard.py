"""The event loop's error reports under abuse: one line a second for accept failures, client mistakes at INFO."""
from __future__ import annotations

import asyncio
import ctypes
import logging
import resource
import ssl
import time
from typing import Any

log = logging.getLogger("relay.server")

ACCEPT_FAILED = "socket.accept() out of system resource"
# reports whose cause is the peer, not the relay: one INFO line, no traceback
CLIENT_CAUSED = (ssl.SSLError, ConnectionError, TimeoutError)


class LoopGuard:
    """An asyncio exception handler. asyncio already pauses a listener for a second after an accept
    failure (EMFILE, ENFILE, ENOBUFS); its report, a traceback each time, is cut to one line a second
    saying how many there were; a peer's TLS or connection error becomes one INFO line."""

    def __init__(self, clock: Any = time.monotonic, previous: Any = None):
        self.clock = clock
        self.previous = previous
        self.last_accept_log = float("-inf")
        self.accept_failures = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = context.get("message", "")
        exc = context.get("exception")
        if message == ACCEPT_FAILED:
            self.accept_failures += 1
            now = self.clock()
            if now - self.last_accept_log >= 1.0:
                log.warning("accept failed %d time(s) in the last second (%s); listener paused for 1 s",
                            self.accept_failures, exc.strerror if isinstance(exc, OSError) else exc)
                self.last_accept_log, self.accept_failures = now, 0
            return
        if isinstance(exc, CLIENT_CAUSED):
            peer = _peer(context)
            log.info("%s%s: %s", message or "connection error", f" from {peer}" if peer else "", type(exc).__name__)
            return
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)


def _peer(context: dict[str, Any]) -> str:
    transport = context.get("transport")
    try:
        peer = transport.get_extra_info("peername") if transport is not None else None
    except Exception:  # noqa: BLE001 - a closed transport; the line is still worth writing
        peer = None
    return str(peer[0]) if peer else ""


def install_loop_guard(loop: asyncio.AbstractEventLoop) -> LoopGuard:
    current = loop.get_exception_handler()
    if isinstance(current, LoopGuard):
        return current
    guard = LoopGuard(previous=current)
    loop.set_exception_handler(guard)
    return guard


def raise_fd_limit() -> int:
    """Raise the soft descriptor limit to the hard one; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def fd_shortfall(soft_limit: int, smtp_connections: int, http_connections: int, spare: int = 256) -> str | None:
    """A warning when the connection limits can use more descriptors than the process has, else None.

    Within the limits a flood is turned away by the relay; beyond the descriptors accept() fails and
    both listeners pause, SMTP with HTTP (issue 24's 46 s outage).
    """
    needed = smtp_connections + http_connections + spare
    if soft_limit >= needed:
        return None
    return (f"the descriptor limit ({soft_limit}) is below what the connection limits can use ({smtp_connections} "
            f"SMTP + {http_connections} HTTP + {spare} for files, database and upstream): raise it "
            f"(LimitNOFILE=, ulimit -n) or lower [relay] / [http] max_connections")


def _malloc_trim() -> bool:
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):  # not glibc
        return False


async def trim_memory_forever(interval: float = 10.0) -> None:
    """Give freed heap pages back to the system every `interval` seconds (glibc's malloc_trim).

    After a flood the buffers of thousands of closed connections are free but scattered through
    the heap, and glibc returns only the top of it: without a trim the relay kept about 10 % more
    memory after each flood (bench/abuse.py). A trim of a ~100 MB heap takes a few milliseconds;
    it runs in a thread, off the event loop.
    """
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(_malloc_trim)
