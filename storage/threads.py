"""Thread pools whose threads all start at once (the store runs its queries on one)."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor


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
