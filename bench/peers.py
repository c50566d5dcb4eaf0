"""Side by side with a peer: Haraka (sign + forward), the bare aiosmtpd sink and the relay, one run.

    .venv/bin/python bench/peers.py [--rounds 3] [--seconds 3] [--fanout] [--out bench/RESULTS.md]

What one run does (bench/README.md, "Peers"):
  * installs Haraka from npm into a temporary directory (`npm install Haraka@VERSION`; node and
    npm must be on PATH; `--npm-dir DIR` reuses an earlier install) and writes it a config: the
    `relay` plugin's ACL admitting 127.0.0.0/8, the `dkim` plugin signing bench.example with an
    RSA-2048 key (selector b1, as the relay), `queue/smtp_forward` with `enable_outbound=true`
    to the upstream, logging at `warn`, verification off: Haraka does only sign + forward;
  * starts one Postfix `smtp-sink -c` as the upstream of every system under test, the bare
    aiosmtpd sink (bench/sink.py, the baseline: no work at all), Haraka with `nodes=1` and
    `nodes=2`, and the relay (generated config as bench/run.py, 1,000,000 consent rows) as
    one process with every stage, `relay serve` by default (`--workers auto`) with every stage,
    and one process with no stage (sign + forward, Haraka's job);
  * drives each with Postfix `smtp-source` (20 sessions, the 10 KB text+HTML newsletter of
    bench/payload.py, 1 recipient) in interleaved rounds, median of the rounds; msgs/s at the
    client, copies counted at the sink;
  * `--fanout`: also 10 KB and 100 KB x 100 recipients, baseline vs the default relay (copies/s);
  * with `--fanout`, the signing ceiling in the same run: RSA-2048 signatures per second on every
    usable core through `cryptography` (the library and key size the relay signs with), nothing
    else running. Every copy carries its own unsubscribe token, so each needs its own signature:
    no relay signing each copy can send more copies/s here, and the table says what share of
    the machine the signatures alone would take at each fan-out target;
  * end-of-DATA -> reply latency at half of the default relay's rate (bench/loadgen.py);
  * appends a table with the machine and versions to bench/RESULTS.md.

The machine is shared: every figure that matters is a ratio against the baseline measured in
the same run, in the same interleaved rounds.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import payload  # noqa: E402
import run  # noqa: E402

HARAKA_VERSION = "3.3.4"
# the targets of issue 23, as ratios from one run
DEFAULT_VS_HARAKA = 2.5  # default `relay serve`, every stage, against Haraka's best doing sign + forward
ONE_PROCESS_VS_SINK = 0.30
FANOUT_VS_SINK = {102400: 0.25, 10240: 0.45}  # copies/s, 100 recipients, every worker
P99_MS = 25.0


def signing_ceiling(seconds: float = 2.0) -> float:
    """RSA-2048 PKCS#1 v1.5 signatures per second on every usable core, as the relay makes them.

    One thread per core: OpenSSL releases the GIL while it signs, as in the relay's signing threads."""
    import threading

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cores = len(os.sched_getaffinity(0))
    counts = [0] * cores
    digest = b"\x5a" * 600  # about what a copy's signed header fields come to
    stop = time.perf_counter() + seconds

    def sign(i: int) -> None:
        pad, hash_ = padding.PKCS1v15(), hashes.SHA256()
        n = 0
        while time.perf_counter() < stop:
            key.sign(digest, pad, hash_)
            n += 1
        counts[i] = n

    threads = [threading.Thread(target=sign, args=(i,)) for i in range(cores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


@dataclass
class Target:
    name: str
    label: str
    port: int
    sink: "run.Sink | run.PostfixSink"
    proc: object | None = None  # anything with .proc.pid, for the CPU figures
    rates: dict[str, list[dict]] = field(default_factory=dict)  # case label -> rounds


class _Proc:
    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc


def install_haraka(npm_dir: Path, version: str) -> Path:
    """`npm install Haraka@version` into npm_dir (once); the path of its `haraka` command."""
    binary = npm_dir / "node_modules" / ".bin" / "haraka"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found: install node (v20) and npm, or pass --npm-dir with Haraka installed")
    npm_dir.mkdir(parents=True, exist_ok=True)
    print(f"peers: npm install Haraka@{version} into {npm_dir} ...", flush=True)
    p = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", f"Haraka@{version}"],
                       cwd=npm_dir, capture_output=True, text=True, timeout=900)
    if p.returncode != 0 or not binary.exists():
        raise RuntimeError(f"npm install Haraka@{version} failed: {(p.stderr or p.stdout).strip()[-500:]}")
    return binary


def haraka_version(npm_dir: Path) -> str:
    import json

    try:
        return json.loads((npm_dir / "node_modules" / "Haraka" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "?"


def write_haraka_config(d: Path, port: int, upstream_port: int, nodes: int, key_pem: bytes) -> Path:
    """A Haraka config directory: relay ACL, dkim signing, smtp_forward to the upstream."""
    cfg = d / "config"
    (cfg / "dkim" / "bench.example").mkdir(parents=True, exist_ok=True)
    (cfg / "dkim" / "bench.example" / "private").write_bytes(key_pem)
    (cfg / "dkim" / "bench.example" / "selector").write_text("b1\n")
    # dkim signs on queue_outbound, so it comes before the plugin that forwards there
    (cfg / "plugins").write_text("relay\ndkim\nqueue/smtp_forward\n")
    (cfg / "smtp.ini").write_text(f"listen={run.HOST}:{port}\nnodes={nodes}\ninactivity_timeout=300\n"
                                  "force_shutdown_timeout=5\n")
    (cfg / "relay.ini").write_text("[relay]\nacl=true\nforce_routing=false\n")
    (cfg / "relay_acl_allow").write_text("127.0.0.0/8\n")
    (cfg / "smtp_forward.ini").write_text(f"host={run.HOST}\nport={upstream_port}\nenable_outbound=true\n"
                                          "enable_tls=false\nmax_connections=1000\n")
    (cfg / "dkim.ini").write_text(
        "[sign]\nenabled=true\nselector=b1\ndomain=bench.example\n"
        "headers=From, Sender, Reply-To, Subject, Date, Message-ID, To, Cc, MIME-Version, Content-Type, "
        "Content-Transfer-Encoding, List-Unsubscribe, List-Unsubscribe-Post\n"
        "[canon]\nbody=relaxed\n[verify]\nenabled=false\n")
    (cfg / "log.ini").write_text("[main]\nlevel=warn\ntimestamps=false\n")
    (cfg / "me").write_text("haraka.bench.example\n")
    return d


def start_haraka(procs: run.Procs, binary: Path, d: Path, upstream_port: int, nodes: int,
                 key_pem: bytes) -> tuple[subprocess.Popen, int]:
    port = run.free_port()
    # `haraka -i` writes the skeleton (connection.ini and the other files the core needs), then ours
    made = subprocess.run([str(binary), "-i", str(d)], capture_output=True, text=True, timeout=120)
    if made.returncode != 0:
        raise RuntimeError(f"haraka -i {d} failed: {(made.stderr or made.stdout).strip()[-500:]}")
    write_haraka_config(d, port, upstream_port, nodes, key_pem)
    log = open(d / "haraka.log", "ab")
    proc = procs.start([str(binary), "-c", str(d)], stdout=log, stderr=subprocess.STDOUT, cwd=d)
    try:
        run.wait_smtp(port, proc, timeout=60)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; Haraka log:\n{(d / 'haraka.log').read_text()[-2000:]}") from None
    return proc, port


def versions(npm_dir: Path) -> str:
    def out(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return "?"

    postfix = out(["/usr/sbin/postconf", "-d", "-h", "mail_version"]) or "?"
    return f"Haraka {haraka_version(npm_dir)} on node {out(['node', '--version'])}, Postfix {postfix}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0, help="each measured run's length, about")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--haraka-version", default=HARAKA_VERSION)
    ap.add_argument("--npm-dir", type=Path, default=None, help="reuse (or make) this Haraka install")
    ap.add_argument("--fanout", action="store_true", help="also 10 KB and 100 KB x 100 recipients (copies/s)")
    ap.add_argument("--no-latency", action="store_true", help="skip the p99 at half load")
    ap.add_argument("--out", default=None, help="append the table to this file (bench/RESULTS.md)")
    args = ap.parse_args()
    if not run.SMTP_SOURCE or not os.access(run.PostfixSink.BINARY, os.X_OK):
        print("peers: needs Postfix's smtp-source and smtp-sink (apt-get install postfix)", file=sys.stderr)
        return 2
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/peers.py", *sys.argv[1:]])
    started, t0 = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="relay-peers-"))
    npm_dir = args.npm_dir or tmp / "npm"
    procs = run.Procs()
    cases = [run.Case(10240, 1, tmp / "newsletter-10240.eml")]
    if args.fanout:
        cases += [run.Case(10240, 100, tmp / "newsletter-10240.eml"), run.Case(102400, 100, tmp / "newsletter-102400.eml")]
    for case in cases:
        case.payload.write_bytes(payload.newsletter(case.size, run.SENDER, run.TO).replace(b"\r\n", b"\n"))
    latency: dict | None = None
    ceilings: list[float] = []
    try:
        binary = install_haraka(npm_dir, args.haraka_version)
        stages = run.relay_stages()
        sink, upstream = run.Sink(procs, tmp), run.PostfixSink(procs)
        key = tmp / "relay-all-w1" / "b.pem"
        run.write_relay_config(key.parent, upstream.port, stages)  # makes the key both systems sign with
        targets = [Target("baseline", "aiosmtpd bare sink (no work)", sink.port, sink)]
        for nodes in (1, 2):
            proc, port = start_haraka(procs, binary, tmp / f"haraka-n{nodes}", upstream.port, nodes, key.read_bytes())
            targets.append(Target(f"haraka-n{nodes}", f"Haraka, relay ACL + dkim + smtp_forward, nodes={nodes}",
                                  port, upstream, _Proc(proc)))
        for name, on, workers, label in (
                ("relay-all-w1", stages, 1, "consent-relay, all stages, `--workers 1`"),
                ("relay-all-auto", stages, "auto", "consent-relay, all stages, `relay serve` (default `--workers auto`)"),
                ("relay-none-w1", [], 1, "consent-relay, no stage (sign + forward only, Haraka's job), `--workers 1`")):
            relay = run.start_relay(procs, tmp / name, upstream.port, on, workers, name)  # type: ignore[arg-type]
            targets.append(Target(name, label, relay.port, upstream, relay))
        for case in cases:
            todo = targets if case.rcpts == 1 else [t for t in targets if t.name in ("baseline", "relay-all-auto")]
            counts = {}
            for t in todo:  # warm-up, sizing each target's fixed count to about --seconds
                r = run.throughput_run("smtp-source", t.port, case, max(args.sessions, 200 // case.rcpts),
                                       args.sessions, t.sink, t.proc)
                if not r["ok"] or r["sink_copies"] != r["expected_copies"]:
                    raise RuntimeError(f"{t.name} warm-up ({case.label}): {r['error'] or r['sink_copies']} copies")
                counts[t.name] = int(max(args.sessions * 4, r["msgs_per_s"] * args.seconds))
            for i in range(args.rounds):
                for t in todo:
                    r = run.throughput_run("smtp-source", t.port, case, counts[t.name], args.sessions, t.sink, t.proc)
                    if not r["ok"]:
                        raise RuntimeError(f"{t.name} round {i + 1} ({case.label}): {r['error']}")
                    t.rates.setdefault(case.label, []).append(r)
                    print(f"peers: {case.label} round {i + 1} {t.name:15} {r['msgs_per_s']:8.1f} msgs/s "
                          f"{r['copies_per_s']:9.1f} copies/s  cpu {run.fmt(r['cpu_relay_pct'])}%", flush=True)
                if case.rcpts > 1:  # the ceiling in the same rounds as the copies/s it bounds
                    ceilings.append(signing_ceiling())
                    print(f"peers: round {i + 1} signing ceiling {ceilings[-1]:,.0f} RSA-2048 signatures/s", flush=True)
        if not args.no_latency:
            auto = next(t for t in targets if t.name == "relay-all-auto")
            rate = statistics.median(r["msgs_per_s"] for r in auto.rates[cases[0].label]) / 2
            latency = run.latency_run(auto.port, cases[0], rate, 4.0, 40, args.sessions)
            print(f"peers: latency relay-all-auto at {rate:.0f} msgs/s: p50 {latency['p50_ms']} ms, "
                  f"p99 {latency['p99_ms']} ms ({latency['samples']} samples)", flush=True)
        text = render(started, time.perf_counter() - t0, command, targets, cases, latency, versions(npm_dir), stages,
                      statistics.median(ceilings) if ceilings else None)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n" + text)
        print(f"peers: appended to {args.out}")
    return 0


def _median(rounds: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def render(started: dt.datetime, elapsed: float, command: str, targets: list[Target], cases: list[run.Case],
           latency: dict | None, versions_line: str, stages: list[str], ceiling: float | None = None) -> str:
    mi = run.machine_info()
    first = cases[0].label
    by = {t.name: t for t in targets}
    base = _median(by["baseline"].rates[first], "msgs_per_s")
    L = [f"## peers: Haraka, the bare sink and the relay — {started.strftime('%Y-%m-%d %H:%M UTC')}\n",
         f"- command: `{command}` (took {elapsed:.0f} s)",
         f"- machine: {mi['nproc']} CPUs ({len(os.sched_getaffinity(0))} usable), {mi['cpu']}, {mi['mem']}, "
         f"kernel {mi['kernel']}, Python {mi['python']}, OpenSSL {mi['openssl']}",
         f"- versions: {versions_line}; " + ", ".join(f"{k} {v}" for k, v in mi["packages"].items()),
         f"- load: Postfix smtp-source, 20 sessions, text+HTML newsletter (bench/payload.py), upstream of every "
         f"system one Postfix smtp-sink -c; interleaved rounds, median; relay stages: {', '.join(stages)} "
         "(1,000,000 consent rows)",
         "- the machine was shared with other work: read the ratios (same run, same rounds), not the absolute rates",
         "",
         f"| system ({first}) | msgs/s | × bare aiosmtpd sink | CPU % (of one core) | CPU ms/msg | rounds msgs/s |",
         "|---|--:|--:|--:|--:|---|"]
    for t in targets:
        rounds = t.rates[first]
        mps = _median(rounds, "msgs_per_s")
        key = "cpu_relay_pct" if t.proc is not None else "cpu_sink_pct"
        cpu = _median(rounds, key)
        # the CPU each system spent per message (least of the rounds): what it costs, however much of
        # the shared machine it was given
        per_msg = min(r[key] / 100 / r["msgs_per_s"] * 1000 for r in rounds)
        L.append(f"| {t.label} | {mps:,.0f} | {mps / base:.2f}× | {cpu:.0f} | {per_msg:.2f} | "
                 f"{', '.join(format(r['msgs_per_s'], '.0f') for r in rounds)} |")
    def cpu_per_msg(name: str) -> float:
        key = "cpu_relay_pct" if by[name].proc is not None else "cpu_sink_pct"
        return min(r[key] / 100 / r["msgs_per_s"] * 1000 for r in by[name].rates[first])

    haraka_cpu = min(cpu_per_msg("haraka-n1"), cpu_per_msg("haraka-n2"))
    relay_cpu, sink_cpu = cpu_per_msg("relay-all-w1"), cpu_per_msg("baseline")
    note = [f"- CPU per message (least of the rounds, whatever share of the machine each got): the relay with every "
            f"stage {relay_cpu:.2f} ms, with no stage {cpu_per_msg('relay-none-w1'):.2f} ms; Haraka (sign + forward) "
            f"{haraka_cpu:.2f} ms at best; the bare sink {sink_cpu:.2f} ms. The relay's whole policy pipeline costs "
            f"{relay_cpu / haraka_cpu:.2f}× Haraka's CPU per message; given the same CPU, one relay process with every "
            f"stage would run at {sink_cpu / relay_cpu:.2f}× the bare sink's rate."]
    haraka_best = max(_median(by[n].rates[first], "msgs_per_s") for n in ("haraka-n1", "haraka-n2"))
    auto = _median(by["relay-all-auto"].rates[first], "msgs_per_s")
    one = _median(by["relay-all-w1"].rates[first], "msgs_per_s")
    none_cpu = cpu_per_msg("relay-none-w1")
    # what each throughput target allows a message, in CPU at the share of the machine the relay got
    for label, name, want in ((f"one process at {ONE_PROCESS_VS_SINK:.2f}× the bare sink", "relay-all-w1",
                               ONE_PROCESS_VS_SINK * base),
                              (f"`relay serve` at {DEFAULT_VS_HARAKA}× Haraka's best", "relay-all-auto",
                               DEFAULT_VS_HARAKA * haraka_best)):
        share = _median(by[name].rates[first], "cpu_relay_pct") / 100
        allowed = share / want * 1000
        spent = cpu_per_msg(name)
        note.append(f"- {label} ({want:,.0f} msgs/s): at the {share:.0%} of a core it got, a message may cost "
                    f"{allowed:.2f} ms of CPU; it costs {spent:.2f} ms, of which the relay with no stage (SMTP in "
                    f"and out, group commit, one RSA signature) {none_cpu:.2f} ms; that leaves "
                    f"{allowed - none_cpu:.2f} ms for every stage together, which cost {spent - none_cpu:.2f} ms")
    checks = [(f"default `relay serve`, all stages ≥ {DEFAULT_VS_HARAKA}× Haraka's best (sign + forward only)",
               auto / haraka_best, DEFAULT_VS_HARAKA, "×"),
              (f"one process, all stages ≥ {ONE_PROCESS_VS_SINK:.2f}× the bare sink", one / base, ONE_PROCESS_VS_SINK, "×")]
    bounds: list[str] = []
    cores = len(os.sched_getaffinity(0))
    for case in cases[1:]:
        b = _median(by["baseline"].rates[case.label], "copies_per_s")
        r = _median(by["relay-all-auto"].rates[case.label], "copies_per_s")
        per_copy = min(x["cpu_relay_pct"] / 100 / x["copies_per_s"] * 1000 for x in by["relay-all-auto"].rates[case.label])
        L.append(f"| {case.label}: baseline / default relay copies/s | {b:,.0f} / {r:,.0f} | {r / b:.2f}× | | "
                 f"{per_copy:.2f} per copy | "
                 f"{', '.join(format(x['copies_per_s'], '.0f') for x in by['relay-all-auto'].rates[case.label])} |")
        checks.append((f"{case.label}, default relay ≥ {FANOUT_VS_SINK[case.size]:.2f}× the baseline's copies/s",
                       r / b, FANOUT_VS_SINK[case.size], "×"))
        if ceiling:
            bounds.append(fanout_bound(case.label, b, r, per_copy, FANOUT_VS_SINK[case.size], ceiling, cores))
    if latency and latency.get("p99_ms") is not None:
        checks.append((f"p99 end-of-DATA → reply at half load (default relay, {latency['rate']:.0f} msgs/s) ≤ {P99_MS:.0f} ms",
                       latency["p99_ms"], P99_MS, " ms"))
    if ceiling:
        note += [f"- signing ceiling (median of the fan-out rounds): {ceiling:,.0f} RSA-2048 signatures/s on all {cores} "
                 f"cores through `cryptography`, nothing else running ({cores / ceiling * 1000:.2f} ms of CPU a "
                 "signature). Each copy carries its own unsubscribe token (RFC 8058 wants List-Unsubscribe under "
                 "the signature), so each copy needs its own signature:", *bounds]
    L += ["", *note, "", "| target | figure | met |", "|---|--:|---|"]
    for text, value, bound, unit in checks:
        met = value <= bound if unit == " ms" else value >= bound
        L.append(f"| {text} | {value:.3f}{unit} | {'met' if met else 'MISSED'} |")  # 0.297 is not 0.30
    return "\n".join(L) + "\n"


def fanout_bound(label: str, base: float, relay: float, per_copy_ms: float, target: float, ceiling: float,
                 cores: int) -> str:
    """What the signatures alone allow at one fan-out target, and what the relay's other work per copy adds."""
    want = target * base
    sign_ms = cores / ceiling * 1000
    other_ms = max(per_copy_ms - sign_ms, 0.0)
    share_sign = want * sign_ms / 1000 / cores
    share_all = want * (sign_ms + other_ms) / 1000 / cores
    verdict = ("**beyond the ceiling: signing alone could not reach it on this machine**" if want > ceiling else
               f"the relay's whole work per copy at that rate would take {share_all:.0%} of the machine")
    return (f"  - {label}: the ceiling is {ceiling / base:.2f}× the baseline's copies/s; the target "
            f"({target:.2f}×, {want:,.0f} copies/s) needs {share_sign:.0%} of the machine for signatures alone; "
            f"the relay spends {per_copy_ms:.2f} ms a copy ({sign_ms:.2f} signing, {other_ms:.2f} the rest) "
            f"and reaches {relay / ceiling:.2f} of the ceiling; {verdict}")


if __name__ == "__main__":
    sys.exit(main())
