"""What each policy stage costs per message under load, and what the 40 % target leaves for all of them.

    .venv/bin/python bench/stage_costs.py [--rounds 3] [--seconds 3] [--out bench/RESULTS.md]

One run, one machine, 10 KB newsletters with 1 recipient, smtp-source with 20 sessions (as
bench/run.py), every relay one process with the 1,000,000-row consent table, forwarding to
Postfix's smtp-sink. Started side by side and measured in interleaved rounds (median):
  * baseline: the load generator straight at the bare aiosmtpd sink (bench/sink.py);
  * all: the relay with every stage on;
  * one relay per stage with that stage left out (consent and suppression also together:
    both read the store, and what they cost together is not the sum of their parts);
  * none: the relay with no stage (SMTP in, audit group commit, DKIM, forwarding).
A stage's cost is 1/rate(without it) − 1/rate(all), in ms per message. The target (one process at
≥ 40 % of the baseline) allows 1/(0.4·baseline) ms per message in all; 1/rate(none) of that is
the relay's backbone, and the rest is the budget for every stage together.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import payload  # noqa: E402
import run  # noqa: E402

TARGET = 0.40


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0, help="each round's length, about")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--out", default=None, help="append the table to this file (bench/RESULTS.md)")
    args = ap.parse_args()
    if not run.SMTP_SOURCE or not os.access(run.PostfixSink.BINARY, os.X_OK):
        print("stage_costs: needs Postfix's smtp-source and smtp-sink (apt-get install postfix)", file=sys.stderr)
        return 2
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/stage_costs.py", *sys.argv[1:]])
    started, t0 = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    stages = run.relay_stages()
    variants: dict[str, list[str]] = {"all": stages}
    for left_out in [[s] for s in stages] + [["consent", "suppression"]]:
        if all(s in stages for s in left_out):
            variants["without " + " + ".join(left_out)] = [s for s in stages if s not in left_out]
    variants["none"] = []
    procs = run.Procs()
    tmp = Path(tempfile.mkdtemp(prefix="relay-stagecost-"))
    rates: dict[str, list[float]] = {name: [] for name in ["baseline", *variants]}
    try:
        case = run.Case(10240, 1, tmp / "newsletter.eml")
        case.payload.write_bytes(payload.newsletter(case.size, run.SENDER, run.TO).replace(b"\r\n", b"\n"))
        sink, upstream = run.Sink(procs, tmp), run.PostfixSink(procs)
        targets: dict[str, tuple[int, run.Sink | run.PostfixSink, run.Relay | None]] = {"baseline": (sink.port, sink, None)}
        for i, (name, on) in enumerate(variants.items()):
            relay = run.start_relay(procs, tmp / f"v{i}", upstream.port, on, 1, f"v{i}")
            targets[name] = (relay.port, upstream, relay)
        counts = {}
        for name, (port, target_sink, relay) in targets.items():  # warm-up, sizing each round
            r = run.throughput_run("smtp-source", port, case, 200, args.sessions, target_sink, relay)
            if not r["ok"]:
                raise RuntimeError(f"{name}: {r['error']}")
            counts[name] = int(max(args.sessions * 4, r["msgs_per_s"] * args.seconds))
        for i in range(args.rounds):
            for name, (port, target_sink, relay) in targets.items():
                r = run.throughput_run("smtp-source", port, case, counts[name], args.sessions, target_sink, relay)
                if not r["ok"]:
                    raise RuntimeError(f"{name} round {i + 1}: {r['error']}")
                rates[name].append(r["msgs_per_s"])
                print(f"stage_costs: round {i + 1} {name:32} {r['msgs_per_s']:8.1f} msgs/s", flush=True)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)  # every relay's database holds 1,000,000 consent rows
    text = render(started, time.perf_counter() - t0, command, stages, {k: statistics.median(v) for k, v in rates.items()}, rates)
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n" + text)
    return 0


def render(started: dt.datetime, elapsed: float, command: str, stages: list[str], median: dict[str, float],
           rates: dict[str, list[float]]) -> str:
    mi = run.machine_info()
    ms = {k: 1000 / v for k, v in median.items()}
    base, every, none = median["baseline"], ms["all"], ms["none"]
    allowed = 1000 / (TARGET * base)
    L = [f"## stage costs, 10 KB 1 rcpt, one process — {started.strftime('%Y-%m-%d %H:%M UTC')}\n",
         f"- command: `{command}` (took {elapsed:.0f} s)",
         f"- machine: {mi['nproc']} CPUs, {mi['cpu']}, Python {mi['python']}",
         "- load: smtp-source, 20 sessions, 10 KB newsletter (bench/payload.py), 1 recipient; every relay one "
         "process, 1,000,000 consent rows, upstream Postfix smtp-sink; interleaved rounds, median",
         "",
         "| relay | msgs/s | vs baseline | ms per message | the left-out stage costs, ms per message | rounds |",
         "|---|--:|--:|--:|--:|---|"]
    for name, rate in median.items():
        cost = f"{every - ms[name]:.2f}" if name.startswith("without ") else ""
        L.append(f"| {name} | {rate:,.0f} | {rate / base:.2f}× | {ms[name]:.2f} | {cost} | "
                 f"{', '.join(f'{x:.0f}' for x in rates[name])} |")
    L += ["",
          f"- at {TARGET:.0%} of the baseline a message may cost {allowed:.2f} ms in all; the relay with no stage "
          f"costs {none:.2f} ms, which leaves **{allowed - none:.2f} ms for every stage together**; the stages "
          f"cost {every - none:.2f} ms ({', '.join(stages)})."]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
