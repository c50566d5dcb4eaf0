"""What the account stages (account-state, promo-guard, limits, canary) add to a message's cost.

    .venv/bin/python bench/accounts_cost.py [--rounds 3] [--seconds 3] [--out bench/RESULTS.md]

As bench/stage_costs.py (10 KB newsletter, 1 recipient, smtp-source with 20 sessions, one relay
process, 1,000,000 consent rows, Postfix smtp-sink upstream; interleaved rounds, median), two
relays side by side:
  * before: the stages of the previous default (suppression, sender-identity, consent, content,
    unsubscribe, footer);
  * after: the new default, the same plus account-state, promo-guard, limits and canary, with limits
    set (so every message counts in three buckets) but far out of reach, the repeat guard off (the
    load sends one body to one recipient again and again) and a canary threshold no run reaches (so
    every message is counted in its campaign and never held).
The ratio is the per-message cost after / before (issue 19: at most 1.10).
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

BEFORE = ["suppression", "sender-identity", "consent", "content", "unsubscribe", "footer"]
AFTER = os.environ.get("ACCOUNTS_COST_AFTER", "account-state suppression sender-identity consent content promo-guard "
                       "limits canary unsubscribe footer").split()


def start(procs: run.Procs, d: Path, upstream_port: int, stages: list[str], name: str, extra: str) -> run.Relay:
    # run.write_relay_config gives both relays run.ACCOUNT_TABLES (limits out of reach, no repeat
    # guard, no canary hold); `extra` is appended to that
    config, smtp_port, http_port = run.write_relay_config(d, upstream_port, stages)
    config.write_text(config.read_text() + extra)
    run.seed_consent(config, run.loadgen.recipients_for(run.TO, 100))
    log = d / f"{name}.log"
    with open(log, "ab") as fh:
        proc = procs.start([run.RELAY, "--config", str(config), "serve", "--workers", "1"],
                           stdout=fh, stderr=run.subprocess.STDOUT, cwd=d)
    run.wait_smtp(smtp_port, proc)
    return run.Relay(name, 1, proc, smtp_port, log, http_port)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not run.SMTP_SOURCE or not os.access(run.PostfixSink.BINARY, os.X_OK):
        print("accounts_cost: needs Postfix's smtp-source and smtp-sink", file=sys.stderr)
        return 2
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/accounts_cost.py", *sys.argv[1:]])
    started, t0 = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    procs = run.Procs()
    tmp = Path(tempfile.mkdtemp(prefix="relay-accounts-cost-"))
    rates: dict[str, list[float]] = {"before": [], "after": []}
    cpu: dict[str, list[float]] = {"before": [], "after": []}  # relay CPU ms per message: steadier on a busy machine
    try:
        case = run.Case(10240, 1, tmp / "newsletter.eml")
        case.payload.write_bytes(payload.newsletter(case.size, run.SENDER, run.TO).replace(b"\r\n", b"\n"))
        upstream = run.PostfixSink(procs)
        relays = {"before": start(procs, tmp / "before", upstream.port, BEFORE, "before", ""),
                  "after": start(procs, tmp / "after", upstream.port, AFTER, "after", "")}
        counts = {}
        for name, relay in relays.items():
            r = run.throughput_run("smtp-source", relay.port, case, 200, args.sessions, upstream, relay)
            if not r["ok"] or r["sink_copies"] < r["expected_copies"]:
                raise RuntimeError(f"{name}: {r['error'] or 'copies missing at the sink'}")
            counts[name] = int(max(args.sessions * 4, r["msgs_per_s"] * args.seconds))
        for i in range(args.rounds):
            for name, relay in relays.items():
                r = run.throughput_run("smtp-source", relay.port, case, counts[name], args.sessions, upstream, relay)
                if not r["ok"] or r["sink_copies"] < r["expected_copies"]:
                    raise RuntimeError(f"{name} round {i + 1}: {r['error'] or 'copies missing at the sink'}")
                rates[name].append(r["msgs_per_s"])
                cpu[name].append(r["cpu_relay_pct"] / 100 / r["msgs_per_s"] * 1000)
                print(f"accounts_cost: round {i + 1} {name:7} {r['msgs_per_s']:8.1f} msgs/s "
                      f"{cpu[name][-1]:.3f} ms CPU/msg", flush=True)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["before"] / med["after"]
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    mi = run.machine_info()
    text = "\n".join([
        f"## account stages, 10 KB 1 rcpt, one process — {started.strftime('%Y-%m-%d %H:%M UTC')}\n",
        f"- command: `{command}` (took {time.perf_counter() - t0:.0f} s)",
        f"- machine: {mi['nproc']} CPUs, {mi['cpu']}, Python {mi['python']}",
        "",
        "| relay | msgs/s (median) | ms per message | relay CPU ms per message (median) | rounds (msgs/s) |",
        "|---|--:|--:|--:|---|",
        *(f"| {k} | {v:,.0f} | {1000 / v:.3f} | {cpu_med[k]:.3f} | {', '.join(f'{x:.0f}' for x in rates[k])} |"
          for k, v in med.items()),
        "",
        f"- per-message cost after / before: **{ratio:.3f}×** by throughput (+{1000 / med['after'] - 1000 / med['before']:.3f} ms), "
        f"**{cpu_med['after'] / cpu_med['before']:.3f}×** by the relay's CPU per message",
    ]) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
