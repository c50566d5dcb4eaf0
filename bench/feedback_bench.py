"""Feedback costs: reports processed per second by one process, and what VERP + Feedback-ID add per copy.

    .venv/bin/python bench/feedback_bench.py [--reports 2000] [--rounds 3] [--seconds 2] [--out bench/RESULTS.md]

1. intake: `Feedback.ingest` (the path of SMTP intake and `relay feedback ingest`) in one process on a
   SQLite database: (a) the bounce corpus (../shared/corpus/bounces, parsed and classified, none of
   them ours: no write), (b) DSNs to VERP addresses of copies the database knows (attribution by
   token, then the event, counter, suppression and audit rows in one transaction each).
2. per copy: two relays side by side, identical but for `[feedback] verp` (true: bounce+TOKEN
   return path and Feedback-ID on every copy; false: neither), every stage on, 1,000,000 consent
   rows, 10 KB newsletters with 1 recipient from smtp-source (20 sessions) to Postfix's smtp-sink,
   interleaved rounds, median msgs/s. The ratio off/on is the cost (≤ 1.05 is the target).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import payload  # noqa: E402
import run  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "bounces"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus/bounces")


def _dsn(return_path: str, rcpt: str) -> bytes:
    return (f"From: MAILER-DAEMON@mx.example.org\r\nTo: {return_path}\r\nSubject: Undelivered Mail\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"x\"\r\n\r\n"
            f"--x\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: failed\r\n"
            f"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 user unknown\r\n--x--\r\n").encode()


def intake(reports: int) -> dict[str, float]:
    from relay.cli.feedback import _Offline
    from relay.config import load_config
    from relay.feedback.service import Feedback
    from storage import Store, upgrade

    tmp = Path(tempfile.mkdtemp(prefix="relay-feedbackbench-"))
    try:
        config_path = tmp / "relay.toml"
        demo = (ROOT / "relay" / "demo.toml").read_text()
        config_path.write_text(demo.replace('url = "sqlite:///relay.db"', f'url = "sqlite:///{tmp / "relay.db"}"'))
        (tmp / "secrets").mkdir()
        (tmp / "secrets" / "token.key").write_text(os.urandom(32).hex() + "\n")
        config = load_config(config_path)
        upgrade(config.storage_url)
        store = Store(config.storage_url)
        feedback = Feedback(_Offline(config, store))  # type: ignore[arg-type]
        now = dt.datetime.now(dt.timezone.utc)
        rows, dsns = [], []
        for i in range(reports):
            qid, rcpt = f"{i:012X}", f"user{i}@example.org"
            rows.append({"at": now, "client": "demo", "list_key": "news", "recipient": rcpt, "stage": "consent",
                         "rule": "ok", "verdict": "accept", "queue_id": qid})
            dsns.append((_dsn(feedback.paths.address(qid, rcpt, now), rcpt), feedback.paths.token(qid, rcpt, now)))
        store.record_decisions(rows)
        corpus = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]

        async def go() -> dict[str, float]:
            t0 = time.perf_counter()
            for data in corpus:
                await feedback.ingest(data, "bench")
            corpus_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for data, token in dsns:
                (outcome,) = await feedback.ingest(data, "bench", [token])
                assert outcome.result is not None and outcome.result.suppressed, outcome.line()
            ours_s = time.perf_counter() - t0
            return {"corpus_reports": len(corpus), "corpus_per_s": len(corpus) / corpus_s,
                    "verp_dsns": len(dsns), "verp_per_s": len(dsns) / ours_s}

        result = asyncio.run(go())
        store.close()
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def start_relay(procs: run.Procs, d: Path, sink_port: int, stages: list[str], verp: bool, name: str) -> run.Relay:
    """bench/run.py's start_relay with `[feedback] verp` set."""
    config, smtp_port, http_port = run.write_relay_config(d, sink_port, stages)
    with open(config, "a") as fh:
        fh.write(f"\n[feedback]\nverp = {'true' if verp else 'false'}\n")
    run.seed_consent(config, run.loadgen.recipients_for(run.TO, 100))
    log = d / f"{name}.log"
    with open(log, "ab") as fh:
        proc = procs.start([run.RELAY, "--config", str(config), "serve"], stdout=fh, stderr=run.subprocess.STDOUT,
                           cwd=d)
    run.wait_smtp(smtp_port, proc)
    return run.Relay(name, 1, proc, smtp_port, log, http_port)


def per_copy(rounds: int, seconds: float, sessions: int) -> dict[str, list[float]]:
    procs = run.Procs()
    tmp = Path(tempfile.mkdtemp(prefix="relay-verpbench-"))
    rates: dict[str, list[float]] = {"verp on": [], "verp off": [], "cpu on": [], "cpu off": []}
    try:
        case = run.Case(10240, 1, tmp / "newsletter.eml")
        case.payload.write_bytes(payload.newsletter(case.size, run.SENDER, run.TO).replace(b"\r\n", b"\n"))
        upstream = run.PostfixSink(procs)
        stages = run.relay_stages()
        relays = {"verp on": start_relay(procs, tmp / "on", upstream.port, stages, True, "on"),
                  "verp off": start_relay(procs, tmp / "off", upstream.port, stages, False, "off")}
        counts = {}
        for name, relay in relays.items():
            r = run.throughput_run("smtp-source", relay.port, case, 200, sessions, upstream, relay)
            if not r["ok"]:
                raise RuntimeError(f"{name}: {r['error']}")
            counts[name] = int(max(sessions * 4, r["msgs_per_s"] * seconds))
        for i in range(rounds):
            # the order alternates per round: on a shared machine, whoever runs first meets other load
            for name, relay in (list(relays.items()) if i % 2 == 0 else list(relays.items())[::-1]):
                r = run.throughput_run("smtp-source", relay.port, case, counts[name], sessions, upstream, relay)
                if not r["ok"]:
                    raise RuntimeError(f"{name} round {i + 1}: {r['error']}")
                rates[name].append(r["msgs_per_s"])
                # the relay's own CPU per message: on a shared machine far steadier than msgs/s
                cpu_ms = r["cpu_relay_pct"] / 100 / r["msgs_per_s"] * 1000
                rates[name.replace("verp", "cpu")].append(cpu_ms)
                print(f"feedback_bench: round {i + 1} {name:9} {r['msgs_per_s']:8.1f} msgs/s  "
                      f"{cpu_ms:.3f} ms CPU/msg", flush=True)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return rates


def micro(copies: int = 20000) -> dict[str, float]:
    """In-process: the VERP token and the Feedback-ID per copy, in µs (what the relay adds to each copy)."""
    from relay.feedback.verp import ReturnPaths, stamp_headers
    from relay.mail.message import Message

    paths = ReturnPaths([os.urandom(32)], "relay.bench.example", dt.timedelta(days=90))
    message = Message(payload.newsletter(10240, run.SENDER, run.TO))
    now = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    for i in range(copies):
        paths.address("A1B2C3D4E5F6", f"rcpt{i}@example.org", now)
    verp_us = (time.perf_counter() - t0) / copies * 1e6
    t0 = time.perf_counter()
    for _ in range(copies // 10):
        stamp_headers(list(message.headers), message.first("x-campaign-id"), message.body, "news", "bench",
                      "relay.bench.example")
    stamp_us = (time.perf_counter() - t0) / (copies // 10) * 1e6
    return {"verp_us": verp_us, "stamp_us": stamp_us}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reports", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--skip-copies", action="store_true", help="intake only (no smtp-source/smtp-sink needed)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/feedback_bench.py", *sys.argv[1:]])
    started = dt.datetime.now(dt.timezone.utc)
    got = intake(args.reports)
    small = micro()
    lines = [f"## feedback_bench {started:%Y-%m-%d %H:%M} UTC", "", f"`{command}`", "",
             "| what | figure |", "| --- | --- |",
             f"| corpus reports parsed and classified (none ours), one process | {got['corpus_per_s']:,.0f} /s "
             f"({got['corpus_reports']} reports) |",
             f"| DSNs to VERP addresses, attributed and recorded (SQLite), one process | {got['verp_per_s']:,.0f} /s "
             f"({got['verp_dsns']} DSNs) |",
             f"| per copy, in process: return-path token | {small['verp_us']:.1f} µs |",
             f"| per message, in process: Feedback-ID (SHA-256 of a 10 KB body, once per message) | "
             f"{small['stamp_us']:.1f} µs |"]
    if not args.skip_copies:
        rates = per_copy(args.rounds, args.seconds, args.sessions)
        on, off = statistics.median(rates["verp on"]), statistics.median(rates["verp off"])
        cpu_on, cpu_off = statistics.median(rates["cpu on"]), statistics.median(rates["cpu off"])
        lines += [f"| relay, every stage, 10 KB × 1 rcpt, verp on (median msgs/s) | {on:,.0f} "
                  f"({', '.join(f'{r:.0f}' for r in rates['verp on'])}) |",
                  f"| same, verp off | {off:,.0f} ({', '.join(f'{r:.0f}' for r in rates['verp off'])}) |",
                  f"| throughput ratio off/on | {off / on:.3f} |",
                  f"| relay CPU per message, verp on / off (median ms) | {cpu_on:.3f} / {cpu_off:.3f} |",
                  f"| cost of VERP + Feedback-ID: CPU per message on/off | {cpu_on / cpu_off:.3f} |"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
