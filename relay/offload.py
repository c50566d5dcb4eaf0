"""CPU work on a big message runs in a thread, so one 25 MB message never stalls every other session."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
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
