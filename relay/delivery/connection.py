"""One upstream SMTP connection on asyncio: reading replies, writing dot-stuffed data, the failures it can end in."""
from __future__ import annotations

import asyncio
import collections
import logging

from relay.base.offload import BIG, line_pieces
from relay.delivery.result import DeliveryResult

log = logging.getLogger("relay.delivery")


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
