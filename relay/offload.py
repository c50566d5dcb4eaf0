"""CPU work on a big message runs in a thread, so one 25 MB message never stalls every other session."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

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


def thread_pool(workers: int, name: str) -> ThreadPoolExecutor:
    """A pool with all its threads started now, not on first use under load.

    `Thread.start` waits until the new thread runs, and the new thread needs the GIL to say so:
    a pool growing while other threads work held the event loop for 11 ms (py-spy, 25 MB message).
    """
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    # each task waits for all the others, so no thread is idle when the next task is submitted
    # and the pool starts one thread per task
    barrier = threading.Barrier(workers, timeout=10)
    for future in [pool.submit(barrier.wait) for _ in range(workers)]:
        future.result()
    return pool
