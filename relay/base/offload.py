"""CPU work on a big message runs in a thread, so one 25 MB message never stalls every other session."""
from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from storage.threads import thread_pool  # noqa: F401  (one pool factory for the store and the relay)

T = TypeVar("T")

# Passes over a message cost about 1-2 ms per MB in C (count, replace, join) and more in
# Python (MIME scans). Below this size a thread hop costs more than the work; above it the
# work would hold the loop for milliseconds (bench/run.py reports the loop's worst delay).
BIG = 256 * 1024


async def cpu_bound(size: int, fn: Callable[..., T], *args: object) -> T:
    """fn(*args), in a thread when `size` (the bytes it works on) is over BIG."""
    if size > BIG:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


def copy_range(data: bytes, start: int = 0, end: int | None = None) -> bytes:
    """`data[start:end]`; a big range is copied mostly by `bytes.join`, which releases the GIL while it copies.

    A plain slice of 25 MB holds the GIL for its whole memcpy and the page faults of the fresh
    buffer (3-20 ms here), so even from a thread it stalls the event loop.
    """
    stop = len(data) if end is None else min(end, len(data))
    if stop - start <= BIG:
        return data[start:end]
    return b"".join(slices(data, start, stop))


def slices(data: bytes, start: int = 0, end: int | None = None) -> list[bytes]:
    """`data[start:end]` as BIG-sized slices, for a `bytes.join` to copy without the GIL.

    bytes.join drops the GIL only when every item is a bytes object (a memoryview's buffer could
    change meanwhile), so a range is cut into slices: each slice is a short hold. Put them
    straight into the final join where possible: joining them first costs the range twice over.
    """
    stop = len(data) if end is None else min(end, len(data))
    return [data[at:min(at + BIG, stop)] for at in range(start, stop, BIG)]


def line_pieces(data: bytes, size: int = BIG) -> Iterator[bytes]:
    """`data` in pieces of at least `size` bytes, each ending just after a CRLF (the last may not),
    so every piece starts a line: passes over a big message go a piece per C call."""
    start = 0
    while start < len(data):
        cut = data.find(b"\r\n", start + size)
        stop = len(data) if cut < 0 else cut + 2
        yield data[start:stop]
        start = stop


class BatchedThreads:
    """Calls run in a thread pool, as many per thread hop as are waiting.

    Each hop (submit, wake a thread, wake the loop through its self-pipe) cost about 0.1 ms of CPU
    here, as much as a third of an RSA signature: signing each copy in its own hop took more CPU
    than signing on the loop and gained no throughput (bench/profile_relay.py, 100 recipients).
    So calls wait while every thread is busy, and the next free thread takes all that wait (up to
    `batch`): under load one hop carries many signatures and the threads still use the other core.
    """

    def __init__(self, pool: ThreadPoolExecutor, threads: int, batch: int = 32) -> None:
        self.pool = pool
        self.threads = threads
        self.batch = batch
        self.busy = 0
        self.waiting: list[tuple[Callable[..., object], tuple[object, ...], asyncio.Future[object]]] = []

    async def run(self, fn: Callable[..., T], *args: object, size: int = 0) -> T:
        """fn(*args) in one of the threads (its result or exception); with no threads, on the loop
        when `size` (the bytes it works on) is at most BIG, else in the pool as a hop of its own."""
        if not self.threads:
            if size <= BIG:
                return fn(*args)
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        self.waiting.append((fn, args, future))
        if self.busy < self.threads and len(self.waiting) == 1:
            loop.call_soon(self._dispatch, loop)  # after this loop step: the calls it makes join in
        return await future  # type: ignore[return-value]

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        while self.busy < self.threads and self.waiting:
            taken, self.waiting = self.waiting[:self.batch], self.waiting[self.batch:]
            taken = [call for call in taken if not call[2].cancelled()]
            if not taken:
                continue
            self.busy += 1
            futures = [future for _, _, future in taken]
            done = self.pool.submit(_run_calls, [(fn, args) for fn, args, _ in taken])
            done.add_done_callback(lambda d, futures=futures: loop.call_soon_threadsafe(self._finished, loop, futures, d))

    def _finished(self, loop: asyncio.AbstractEventLoop, futures: list[asyncio.Future[object]], done) -> None:
        self.busy -= 1
        try:
            results = done.result()
        except BaseException as exc:  # the pool was shut down: nothing ran
            results = [(False, exc)] * len(futures)
        for future, (ok, value) in zip(futures, results):
            if future.done():
                continue  # its caller was cancelled meanwhile
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        self._dispatch(loop)


def _run_calls(calls: list[tuple[Callable[..., object], tuple[object, ...]]]) -> list[tuple[bool, object]]:
    results: list[tuple[bool, object]] = []
    for fn, args in calls:
        try:
            results.append((True, fn(*args)))
        except Exception as exc:
            results.append((False, exc))
    return results


def signing_threads(workers: int) -> int:
    """Signing threads for each of `workers` relay processes: the cores the processes leave free
    (at most 2); 0 means sign on the event loop.

    Measured with bench/profile_relay.py (100 recipients, 2 cores): one process did as well with
    one signing thread as with two, using less CPU; two processes, which already keep both cores
    busy, delivered most with none (1,525-1,590 copies/s, against 1,387-1,452 with two threads each).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(2, cores - workers))
