"""The HTTP listeners under abuse: connection limits, header and request timeouts, keep-alive limits, safe headers."""
from __future__ import annotations

import asyncio
import logging
import sys
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web
from aiohttp.http import HttpVersion10
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from relay.base.windows import peer_key

if TYPE_CHECKING:
    from relay.config import HttpSection

log = logging.getLogger("relay.http")

# what a connection over the limit gets before it is closed: no parser, no task, no memory kept
OVERLOADED = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
              b"Content-Length: 32\r\nRetry-After: 10\r\n\r\nToo many connections; try later\n")
# every page: no framing (clickjacking the unsubscribe or sign-up button), no script, forms post here only
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
}


class HttpGuard:
    """One listener's connection counts (public and admin listeners each have their own)."""

    def __init__(self, cfg: "HttpSection", name: str = "public"):
        self.cfg, self.name = cfg, name
        self.open_total = 0
        self.by_peer: dict[str, int] = defaultdict(int)
        self.refused = 0

    def admit(self, ip: str) -> bool:
        key = peer_key(ip)
        if self.open_total >= self.cfg.max_connections or self.by_peer[key] >= self.cfg.max_connections_per_ip:
            self.refused += 1
            return False
        self.open_total += 1
        self.by_peer[key] += 1
        return True

    def release(self, ip: str) -> None:
        key = peer_key(ip)
        self.open_total -= 1
        self.by_peer[key] -= 1
        if self.by_peer[key] <= 0:
            del self.by_peer[key]


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection, counted in, and closed when its request head or its request takes too long.

    aiohttp's keep-alive timer stops at the first byte of a request, so a client that trickles a
    header (or never finishes a body) would hold the connection for ever; here a timer always runs:
    `header_timeout` from the connection (or the last response) to a complete request head, then
    `body_timeout` for the body and the answer.
    """

    def __init__(self, manager: Any, guard: HttpGuard, **kwargs: Any):
        super().__init__(manager, **kwargs)
        self.guard = guard
        self.peer_ip = ""
        self.admitted = False
        self.served = 0
        self.mistake_logged = False  # relay/http/body.py said it once: aiohttp need not say it again
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # _Gate admitted it (and counted it in) before making this handler
        self.admitted = True
        super().connection_made(transport)
        self.arm(self.guard.cfg.header_timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.admitted:
            return
        self.admitted = False
        self.guard.release(self.peer_ip)
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp reads what is left of a body after the answer (lingering close) and logs its failure
        at ERROR with a traceback; a body the client botched is its mistake: one INFO line, once."""
        exc = sys.exc_info()[1]
        if client_mistake(exc):
            if not self.mistake_logged:
                self.mistake_logged = True
                log.info("unreadable request body from %s: %s", self.peer_ip, type(exc).__name__)
            return
        super().log_exception(*args, **kw)

    def arm(self, seconds: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self._loop.call_later(seconds, self._expire)

    def _expire(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            log.info("HTTP connection from %s timed out", self.peer_ip)
            self.transport.abort()


def client_mistake(exc: BaseException | None) -> bool:
    """True for what a client's botched request raises in aiohttp (bad gzip, bad framing, a dropped body)."""
    while exc is not None:
        if isinstance(exc, (BadHttpMessage, RequestPayloadError, ConnectionError)):
            return True
        exc = exc.__cause__
    return False


class _Gate(asyncio.Protocol):
    """What the listener makes for each new connection: admitted, it hands the transport to a new
    GuardedRequestHandler; refused, it writes the 503 and closes. A flood of 20,000 connections then
    costs a small object each, not aiohttp's handler and parser."""

    def __init__(self, make: Callable[[], "GuardedRequestHandler"], guard: HttpGuard):
        self.make, self.guard = make, guard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername") or ("", 0)
        ip = str(peer[0])
        if not self.guard.admit(ip):
            transport.write(OVERLOADED)  # type: ignore[attr-defined]
            transport.close()
            return
        handler = self.make()
        handler.peer_ip = ip
        transport.set_protocol(handler)
        handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        pass  # a refused connection's early bytes


class GuardedSite(web.SockSite):
    """A SockSite whose connections are GuardedRequestHandlers of one HttpGuard."""

    def __init__(self, runner: web.BaseRunner, sock: Any, guard: HttpGuard, **kwargs: Any):
        super().__init__(runner, sock, **kwargs)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        kwargs = dict(getattr(server, "_kwargs", {}))

        loop = asyncio.get_running_loop()

        def handler() -> GuardedRequestHandler:
            return GuardedRequestHandler(server, self._guard, loop=loop, **kwargs)

        self._server = await loop.create_server(
            lambda: _Gate(handler, self._guard), sock=self._sock, ssl=self._ssl_context, backlog=self._backlog)


def runner_args(cfg: "HttpSection") -> dict[str, Any]:
    """aiohttp's own limits for one listener (keep-alive idle time; header sizes stay aiohttp's)."""
    return {"keepalive_timeout": cfg.keepalive_timeout}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def guard_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTTP/1.0 and later only; the request timeout while it runs; a connection ends after so many requests."""
    proto = request.protocol
    guarded = isinstance(proto, GuardedRequestHandler)
    if guarded:
        proto.arm(proto.guard.cfg.body_timeout)
    if request.version < HttpVersion10:
        # HTTP/0.9 has no status line or headers: a reply it can read would be a bare page
        log.info("HTTP/0.9 request from %s refused", request.remote)
        response: web.StreamResponse = web.Response(status=505, text="HTTP/1.0 or later required\n")
        response.force_close()
        return response
    response = None
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        raise
    finally:
        if guarded:
            proto.served += 1
            proto.arm(proto.guard.cfg.header_timeout)  # the next request's head (or the end of keep-alive)
            if proto.served >= proto.guard.cfg.max_requests_per_connection:
                if isinstance(response, web.StreamResponse):
                    response.force_close()
    return response


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every page, errors included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
