"""The start-up heap frozen (relay.base.heap) against left to the collector: a full collection's time, and the relay under load.

    .venv/bin/python bench/gc_freeze.py [--rounds 4] [--messages 1500] [--out bench/RESULTS.md]

1. In this process: the relay's modules, the shipped content rules and the scorer loaded as
   `relay serve` loads them; the time of one full collection (`gc.collect()`), before and after
   `settle_heap()`, and how many objects it froze.
2. Two one-process relays with every stage (bench/run.py's configuration, 1,000,000 consent rows,
   Postfix smtp-sink upstream), one started with RELAY_GC_FREEZE=0; smtp-source sends the 10 KB
   newsletter in 20 sessions, `--rounds` interleaved runs of `--messages` each. Per relay: msgs/s
   per round and the worst event-loop delay of the whole run (relay_event_loop_lag_max_seconds),
   where a full collection's stall shows.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import payload  # noqa: E402
import run  # noqa: E402


def collection_ms() -> tuple[float, float, int, int]:
    """(ms of a full collection before the freeze, after it, objects tracked, objects frozen)."""
    import relay.cli.main  # noqa: F401  (the modules `relay serve` imports)
    import relay.server  # noqa: F401
    from filters.content import ruleset_for, scorer
    from relay.base.heap import settle_heap

    ruleset_for()
    scorer.load()
    gc.collect()
    tracked = len(gc.get_objects())
    before = []
    for _ in range(3):
        t = time.perf_counter()
        gc.collect()
        before.append((time.perf_counter() - t) * 1000)
    frozen = settle_heap()
    after = []
    for _ in range(3):
        t = time.perf_counter()
        gc.collect()
        after.append((time.perf_counter() - t) * 1000)
    return statistics.median(before), statistics.median(after), tracked, frozen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--messages", type=int, default=1500)
    ap.add_argument("--out", type=Path, default=None, help="append the table to this file (bench/RESULTS.md)")
    args = ap.parse_args()
    started, t0 = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    os.environ.pop("RELAY_GC_FREEZE", None)
    before, after, tracked, frozen = collection_ms()
    tmp = Path(tempfile.mkdtemp(prefix="relay-gc-"))
    procs = run.Procs()
    case = run.Case(10240, 1, tmp / "newsletter-10240.eml")
    case.payload.write_bytes(payload.newsletter(case.size, run.SENDER, run.TO).replace(b"\r\n", b"\n"))
    rates: dict[str, list[float]] = {"frozen": [], "not frozen": []}
    lag: dict[str, float] = {}
    try:
        upstream = run.PostfixSink(procs)
        relays = {}
        for name, value in (("frozen", "1"), ("not frozen", "0")):
            os.environ["RELAY_GC_FREEZE"] = value  # (inherited by the relay started now)
            relays[name] = run.start_relay(procs, tmp / name.replace(" ", "-"), upstream.port, run.relay_stages(), 1,
                                           name.replace(" ", "-"))
        os.environ.pop("RELAY_GC_FREEZE")
        for name, relay in relays.items():  # warm-up
            run.throughput_run("smtp-source", relay.port, case, 200, 20, upstream, relay)
        for i in range(args.rounds):
            for name, relay in relays.items():
                r = run.throughput_run("smtp-source", relay.port, case, args.messages, 20, upstream, relay)
                if not r["ok"]:
                    raise RuntimeError(f"{name} round {i + 1}: {r['error']}")
                rates[name].append(r["msgs_per_s"])
                print(f"gc_freeze: round {i + 1} {name:10} {r['msgs_per_s']:7.1f} msgs/s", flush=True)
        for name, relay in relays.items():
            lag[name] = (relay.metric("relay_event_loop_lag_max_seconds") or 0.0) * 1000
            print(f"gc_freeze: {name}: frozen objects {relay.metric('relay_gc_frozen_objects')}, "
                  f"worst loop delay {lag[name]:.1f} ms", flush=True)
    finally:
        procs.stop_all()
    text = (f"\n## gc freeze: the start-up heap frozen or not — {started:%Y-%m-%d %H:%M} UTC\n\n"
            f"- command: `.venv/bin/python bench/gc_freeze.py --rounds {args.rounds} --messages {args.messages}` "
            f"(took {time.perf_counter() - t0:.0f} s)\n"
            f"- machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n"
            f"- in process, relay modules + content rules + scorer loaded: {tracked:,} objects tracked; a full "
            f"collection {before:.1f} ms before `settle_heap()`, {after:.2f} ms after ({frozen:,} frozen)\n"
            f"- under load: one-process relays, every stage, 10 KB newsletter, smtp-source 20 sessions, "
            f"{args.rounds} interleaved rounds of {args.messages}\n\n"
            "| relay | msgs/s (median) | rounds | worst event-loop delay ms |\n|---|--:|---|--:|\n"
            + "".join(f"| {name} | {statistics.median(rates[name]):.0f} | "
                      f"{', '.join(f'{x:.0f}' for x in rates[name])} | {lag.get(name, 0):.1f} |\n" for name in rates))
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
