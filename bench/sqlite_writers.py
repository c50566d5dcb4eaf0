"""Commit latency of SQLite writers in several processes: with turns (storage.writelock) or SQLite's busy handler alone.

    .venv/bin/python bench/sqlite_writers.py [--processes 2] [--commits 400] [--rounds 3]

Each process opens a Store on one fresh SQLite file and, in a loop, commits a group-commit batch of
five audit rows (Store.write_batch, durable: one fsync) and then an account-state change (the
account step's kind of transaction), timing each call; between calls it works 1 ms of CPU, as
a worker does between commits. Interleaved rounds: "turns" (as the relay runs) and "busy handler"
(the lock file off: `storage.writelock.WriteQueue(None)`, as before). Prints p50, p99 and the
worst call latency and the commits per second of all processes together.
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage import Store, upgrade  # noqa: E402
from storage.writelock import WriteQueue  # noqa: E402


def _worker(url: str, n: int, turns: bool, index: int, out: "multiprocessing.Queue[list[float]]") -> None:
    store = Store(url)
    if not turns:
        store.sql.writers = WriteQueue(None)
    now = datetime.now(timezone.utc)
    rows = [{"client": f"c{index}", "recipient": f"r{i}@example.org", "stage": "delivery", "rule": "",
             "verdict": "deliver", "queue_id": f"Q{index}", "at": now} for i in range(5)]
    took = []
    try:
        for i in range(n):
            spin = time.process_time() + 0.001
            while time.process_time() < spin:
                pass
            t = time.perf_counter()
            if i % 2:
                store.change_account_state(f"c{index}", "warned" if i % 4 == 1 else "active", "active", "bench", "", "", now)
            else:
                store.write_batch(rows, [])
            took.append(time.perf_counter() - t)
    finally:
        store.close()
    out.put(took)


def one_round(processes: int, commits: int, turns: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="relay-writers-") as tmp:
        url = f"sqlite:///{tmp}/relay.db"
        upgrade(url)
        ctx = multiprocessing.get_context("spawn")
        out: "multiprocessing.Queue[list[float]]" = ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(url, commits, turns, i, out)) for i in range(processes)]
        t = time.perf_counter()
        for p in procs:
            p.start()
        took = [x for _ in procs for x in out.get(timeout=600)]
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - t
    took.sort()
    return {"p50": took[len(took) // 2] * 1e3, "p99": took[int(len(took) * 0.99)] * 1e3, "max": took[-1] * 1e3,
            "rate": len(took) / elapsed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--commits", type=int, default=400, help="per process")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    results: dict[str, list[dict[str, float]]] = {"turns": [], "busy handler": []}
    for i in range(args.rounds):
        for name in results:
            r = one_round(args.processes, args.commits, name == "turns")
            results[name].append(r)
            print(f"round {i + 1} {name:13} p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms  max {r['max']:7.2f} ms  "
                  f"{r['rate']:6.0f} commits/s", flush=True)
    print(f"\n{args.processes} processes x {args.commits} commits, median of {args.rounds} rounds:\n")
    print("| writers | p50 ms | p99 ms | worst ms | commits/s |\n|---|--:|--:|--:|--:|")
    for name, rounds in results.items():
        med = {k: statistics.median(r[k] for r in rounds) for k in ("p50", "p99", "max", "rate")}
        print(f"| {name} | {med['p50']:.2f} | {med['p99']:.2f} | {med['max']:.1f} | {med['rate']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
