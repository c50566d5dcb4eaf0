"""Profile `relay serve` under load with py-spy and print the hottest functions.

    .venv/bin/python bench/profile_relay.py [--size 10240] [--rcpts 1] [--workers 1] [--messages 1500]

Starts the counting sink and a relay exactly as bench/run.py does, loads it with smtp-source
(or bench/loadgen.py), records it with `py-spy record --subprocesses --format raw`, and prints
the top functions by own time and by total time (the raw file stays for flame graphs).
Needs py-spy (`.venv/bin/pip install py-spy`) and ptrace permission.
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--rcpts", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--messages", type=int, default=1500)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--all-stages", action="store_true")
    ap.add_argument("--payload", choices=("newsletter", "x-lines"), default="newsletter")
    ap.add_argument("--without", default="", help="comma-separated stages to leave off")
    ap.add_argument("--no-profile", action="store_true", help="only the load run, no py-spy")
    ap.add_argument("--gil", action="store_true", help="only samples holding the GIL (py-spy --gil)")
    ap.add_argument("--raw", default=None, help="keep the collapsed stacks here")
    args = ap.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    procs = run.Procs()
    tmp = Path(tempfile.mkdtemp(prefix="relay-prof-"))
    raw = Path(args.raw) if args.raw else tmp / "profile.raw"
    try:
        # as bench/run.py: consent is off while seed_consent() seeds nothing
        stages = [st for st in run.relay_stages() if st != "consent" or args.all_stages]
        if args.without:
            stages = [st for st in stages if st not in args.without.split(",")]
        print(f"stages on: {', '.join(stages)}")
        # the same upstream as bench/run.py: Postfix smtp-sink when installed, else the aiosmtpd sink
        sink = run.PostfixSink(procs) if os.access(run.PostfixSink.BINARY, os.X_OK) else run.Sink(procs, tmp)
        relay = run.start_relay(procs, tmp / "relay", sink.port, stages, args.workers, "relay")
        case = run.Case(args.size, args.rcpts)
        if args.payload == "newsletter":
            case.payload = tmp / "newsletter.eml"
            case.payload.write_bytes(run.payload.newsletter(args.size, run.SENDER, run.TO).replace(b"\r\n", b"\n"))
        spy = None if args.no_profile else procs.start([pyspy, "record", "--pid", str(relay.proc.pid), "--subprocesses", "--rate", str(args.rate),
                           "--format", "raw", "--output", str(raw), "--nonblocking"] + (["--gil"] if args.gil else []),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        gen = "smtp-source" if run.SMTP_SOURCE else "loadgen"
        r = run.throughput_run(gen, relay.port, case, args.messages, args.sessions, sink, relay)
        print(f"load: {r['sent']} msgs in {r['elapsed']:.2f}s = {r['msgs_per_s']:.1f} msg/s, "
              f"{r['copies_per_s']:.0f} copies/s, relay CPU {r['cpu_relay_pct']:.0f}%, sink CPU "
              f"{r['cpu_sink_pct']:.0f}%, load CPU {r['cpu_load_pct']:.0f}% {r['error']}")
        if spy is None:
            return 0  # (the finally below cleans up)
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            print("py-spy did not stop:", spy.stderr.read().decode()[-500:] if spy.stderr else "")
        if spy.returncode not in (0, None) and not raw.exists():
            print("py-spy failed:", spy.stderr.read().decode()[-1000:])
    finally:
        procs.stop_all()
        # the relay's database holds 1,000,000 consent rows: keep only the profile
        for item in tmp.iterdir():
            if item != raw:
                shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
        if not raw.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if not raw.exists():
        return 0
    own, total = collections.Counter(), collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        n = int(n)
        samples += n
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    print(f"\n{samples} samples ({raw})\n\ntop by own time:")
    for f, n in own.most_common(args.top):
        print(f"  {n / samples:6.1%}  {f}")
    print("\ntop by total time:")
    for f, n in total.most_common(args.top):
        print(f"  {n / samples:6.1%}  {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
