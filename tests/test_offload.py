"""Thread hops: BatchedThreads carries every waiting call in one hop, and signs on the loop when told to."""
from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from relay.base.offload import BIG, BatchedThreads, signing_threads, thread_pool


class CountingPool(ThreadPoolExecutor):
    """A real pool that counts its hops (submits)."""

    def __init__(self, workers: int) -> None:
        super().__init__(max_workers=workers)
        self.hops = 0

    def submit(self, *args, **kwargs):  # type: ignore[override]
        self.hops += 1
        return super().submit(*args, **kwargs)


def test_calls_waiting_for_a_busy_thread_share_one_hop():
    pool = CountingPool(1)
    gate = threading.Event()

    async def main() -> list[object]:
        threads = BatchedThreads(pool, 1)
        first = asyncio.create_task(threads.run(gate.wait, 5))
        await asyncio.sleep(0.05)  # the one thread is now busy with the first call
        rest = [asyncio.create_task(threads.run(pow, 2, n)) for n in range(10)]
        await asyncio.sleep(0.05)
        assert pool.hops == 1  # the ten calls wait for the thread
        gate.set()
        return [await first] + [await task for task in rest]

    try:
        results = asyncio.run(main())
    finally:
        pool.shutdown()
    assert results == [True] + [2 ** n for n in range(10)]
    assert pool.hops == 2  # the first call, then the ten together


def test_exceptions_reach_their_own_caller_and_cancelled_calls_are_skipped():
    pool = CountingPool(1)
    gate = threading.Event()
    ran: list[int] = []

    def record(n: int) -> int:
        ran.append(n)
        if n == 3:
            raise ValueError("three")
        return n

    async def main() -> list[object]:
        threads = BatchedThreads(pool, 1)
        first = asyncio.create_task(threads.run(gate.wait, 5))
        await asyncio.sleep(0.05)
        tasks = [asyncio.create_task(threads.run(record, n)) for n in range(6)]
        await asyncio.sleep(0)
        tasks[1].cancel()
        await asyncio.sleep(0.05)
        gate.set()
        await first
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        pool.shutdown()
    assert isinstance(results[1], asyncio.CancelledError)
    assert isinstance(results[3], ValueError) and str(results[3]) == "three"
    assert [results[n] for n in (0, 2, 4, 5)] == [0, 2, 4, 5]
    assert 1 not in ran  # cancelled before its hop: never run


@pytest.mark.parametrize("size, on_loop", [(100, True), (BIG + 1, False)])
def test_no_threads_means_small_calls_on_the_loop_big_ones_in_the_pool(size, on_loop):
    pool = thread_pool(1, "test")

    async def main() -> bool:
        threads = BatchedThreads(pool, 0)
        where = await threads.run(threading.current_thread, size=size)
        return where is threading.main_thread()

    try:
        assert asyncio.run(main()) is on_loop
    finally:
        pool.shutdown()


def test_signing_threads_are_the_cores_the_workers_leave():
    cores = len(os.sched_getaffinity(0))
    assert signing_threads(cores) == 0
    assert signing_threads(cores + 3) == 0
    assert signing_threads(1) == min(2, cores - 1)
