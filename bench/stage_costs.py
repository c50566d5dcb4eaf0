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

The budget (issue 23): the relay's CPU per message for the whole pipeline (its own work on the
message plus every stage, measured in process, in units of one email parse of the same message
measured alongside, so a busy machine shifts both) may grow at most 10 % over STARTING_WHOLE for
the new work together (feedback, accounts, footer-guard); each stage in STARTING_STAGE keeps its
own share, and a stage not in it is new and counts against the 10 % (see budget_check), less
what it took over from an old stage (TOOK_OVER). The RSA signature is OpenSSL's, and what it costs
in parses differs between machines: it is measured apart and counted at its starting price
(STARTING_RAW_SIGN); the plain parse reading is printed too. Every
run prints the budget table; `--check` measures only what it needs (about a minute) and exits 1
when over budget. Run it twice before believing an OVER within a few % of the line.
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

# The starting point of issue 23, measured by this file on the shared 2-core machine (STARTING_RUN).
# Each figure is a ratio to a yardstick measured in the same run, so a busy or faster machine
# moves both sides:
#  * STAGE, BACKBONE, WHOLE: CPU per message in process (stage_cpu: 10 KB newsletter, 1 recipient)
#    ÷ one email.message_from_bytes of the same message ("parses"); the backbone is the relay's
#    own work on the message (parse, MIME scan, copy headers, DKIM, dot-stuffing; not SMTP I/O or
#    the audit commit); WHOLE = backbone + every stage. This is what the budget holds.
#  * LOAD (information): the relay's CPU per message under load (one process; smtp-source, 20
#    sessions) ÷ the bare aiosmtpd sink's in the same rounds (least of the rounds); it moved by
#    up to 30 % between runs on the shared machine with no change.
STARTING_RUN = "2026-12-07 05:30-06:10 UTC, mean of 5 runs of stage_cpu (one parse 0.29-0.35 ms CPU)"
STARTING_STAGE = {"suppression": 0.18, "consent": 0.20, "content": 2.00, "sender-identity": 0.07,
                  "footer": 1.05, "unsubscribe": 0.07}
STARTING_BACKBONE = 1.90
STARTING_WHOLE = STARTING_BACKBONE + sum(STARTING_STAGE.values())  # 5.47 parses
STARTING_LOAD = {"all": 4.33, "none": 2.18}  # 3.02 and 1.52 ms CPU/msg over the sink's 0.70 ms
GROWTH = 0.10  # what the new work (feedback, accounts, footer-guard) may add to WHOLE, together
# The RSA-2048 signature inside the backbone is OpenSSL's work, not Python's, and what it costs in
# parses depends on the host: at the starting point a raw `key.sign` took 253-319 µs
# (bench/dkim_bench.py, wall time on an idle process, 07:13-13:45 UTC that day) against a parse of
# 290-350 µs CPU: 0.72-1.10 parses. On the host of 2026-12-07 23:00-23:50 (also "AMD EPYC", but
# every figure slower) stage_cpu measured 767-1043 µs CPU against 453-564 µs: 1.46-2.09 parses, a
# shift larger than the whole 10 % allowance that no change of ours made. So the signature is
# timed apart (`raw_sign`, the same key.sign on the same 2048-bit key, beside DkimSigner.sign)
# and counted at its starting price; the rest of DkimSigner.sign (canonicalisation, base64,
# fields) stays in parses with the backbone. The price is the top of the starting range, the
# strictest reading (a dearer starting signature leaves less room for the rest); the verdict
# of the plain parse yardstick is printed too.
STARTING_RAW_SIGN = 1.10  # parses
# footer-guard plans the footer (MIME slots, first recipient's rendering) that footer used to plan,
# and hands the plan on in ctx.facts; its language guess and visibility check are new. The two are
# judged as a pair: what they cost together beyond footer's starting share is new work (so footer's
# own speed-ups since the starting point are credited to the pair).
TOOK_OVER = {"footer-guard": "footer"}
# in-process ratios repeated within ~5-10 % between runs here: a stage is "over" past this
NOISE = 0.10


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0, help="each round's length, about")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--out", default=None, help="append the table to this file (bench/RESULTS.md)")
    ap.add_argument("--check", action="store_true",
                    help="only what the budget needs (in-process stage CPU; baseline, every stage and no stage "
                         "under load, no left-out variants); exit 1 when over budget")
    ap.add_argument("--messages", type=int, default=200, help="messages per in-process repeat")
    args = ap.parse_args()
    if not run.SMTP_SOURCE or not os.access(run.PostfixSink.BINARY, os.X_OK):
        print("stage_costs: needs Postfix's smtp-source and smtp-sink (apt-get install postfix)", file=sys.stderr)
        return 2
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/stage_costs.py", *sys.argv[1:]])
    started, t0 = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    stages = run.relay_stages()
    variants: dict[str, list[str]] = {"all": stages}
    for left_out in ([] if args.check else [[s] for s in stages] + [["consent", "suppression"]]):
        if all(s in stages for s in left_out):
            variants["without " + " + ".join(left_out)] = [s for s in stages if s not in left_out]
    variants["none"] = []
    procs = run.Procs()
    tmp = Path(tempfile.mkdtemp(prefix="relay-stagecost-"))
    rates: dict[str, list[float]] = {name: [] for name in ["baseline", *variants]}
    cpu: dict[str, list[float]] = {name: [] for name in ["baseline", *variants]}  # CPU ms per message
    try:
        print("stage_costs: each stage's CPU in process ...", flush=True)
        in_process = stage_cpu(tmp, args.messages, 3)
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
                pct = r["cpu_relay_pct"] if relay is not None else r["cpu_sink_pct"]
                cpu[name].append(pct / 100 / r["msgs_per_s"] * 1000)
                print(f"stage_costs: round {i + 1} {name:32} {r['msgs_per_s']:8.1f} msgs/s "
                      f"{cpu[name][-1]:6.3f} ms CPU/msg", flush=True)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)  # every relay's database holds 1,000,000 consent rows
    text = render(started, time.perf_counter() - t0, command, stages, {k: statistics.median(v) for k, v in rates.items()}, rates)
    load = {k: min(cpu[k]) / min(cpu["baseline"]) for k in ("all", "none")}
    lines, over = budget_check(load, in_process)
    text += "\n" + "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n" + text)
    return 1 if args.check and over else 0


# about what DkimSigner.sign hands OpenSSL for this message (the signed header fields, canonical)
SIGNED = b"\x5a" * 700


def stage_cpu(tmp: Path, messages: int, repeat: int) -> dict[str, float]:
    """Each stage's CPU per message, in process: the relay's own stage objects and contexts on the
    10 KB newsletter, 1 recipient, the 1,000,000-row consent table (SQLite), best of `repeat`.
    Also `parse`: one email.message_from_bytes of the same message, the yardstick (same process)."""
    import asyncio

    return asyncio.run(_stage_cpu(tmp, messages, repeat))


async def _stage_cpu(tmp: Path, messages: int, repeat: int) -> dict[str, float]:
    import email
    from datetime import datetime, timedelta, timezone

    sys.path.insert(0, str(run.ROOT))
    from filters.context import CopyContext, MessageContext, RcptContext, Services
    from relay.config import load_config
    from relay.delivery.upstream import _stuff
    from relay.keys import ensure_token_key, load_client_secrets, read_token_keys
    from relay.mail.message import Copy, Message
    from relay.mail.mime_footer import STRUCTURE_FACT, mime_structure
    from relay.pipeline import Pipeline
    from relay.crypto.tokens import TokenCodec
    from relay.transaction import copy_headers, resolve_list
    from storage import Store

    stages = run.relay_stages()
    config_path, _, _ = run.write_relay_config(tmp / "in-process", 1, stages)
    run.seed_consent(config_path, [run.TO])
    config = load_config(config_path)
    ensure_token_key(config)
    raw = payload.newsletter(10240, run.SENDER, run.TO)
    client = config.clients["bench"]
    store = Store(config.storage_url)
    store.open_loop_reader()
    now = datetime.now(timezone.utc)
    services = Services(clock=lambda: now, store=store,
                        tokens=TokenCodec(read_token_keys(config), timedelta(days=config.token_max_age_days)))
    pipeline = Pipeline(config.stages)
    signer = load_client_secrets(client).signers[client.signing_domain]
    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
    from cryptography.hazmat.primitives.hashes import SHA256

    rsa_key, padding, sha256 = signer.rsa_key, PKCS1v15(), SHA256()
    assert rsa_key.key_size == 2048, "the signature's yardstick (STARTING_RAW_SIGN) is an RSA-2048 sign"
    best: dict[str, float] = {}
    try:
        for _ in range(repeat):
            spent = dict.fromkeys([s.name for s in pipeline.rcpt_stages + pipeline.message_stages
                                   + pipeline.copy_stages] + ["parse", "backbone", "signing", "raw_sign"], 0.0)
            for n in range(messages):
                t = time.process_time()
                email.message_from_bytes(raw)
                spent["parse"] += time.process_time() - t
                ctx = RcptContext(config, client, run.SENDER, run.TO, services)
                for stage in pipeline.rcpt_stages:
                    t = time.process_time()
                    await stage.run(ctx)
                    spent[stage.name] += time.process_time() - t
                t = time.process_time()  # the backbone's own work on the message (SMTP and storage aside)
                message = Message(raw)
                list_cfg = resolve_list(client, message)
                assert not isinstance(list_cfg, str), list_cfg
                mctx = MessageContext(config, client, list_cfg, run.SENDER, (run.TO,), message, services, f"Q{n}")
                mctx.facts[STRUCTURE_FACT] = mime_structure(message.headers, message.body)
                spent["backbone"] += time.process_time() - t
                for stage in pipeline.message_stages:
                    t = time.process_time()
                    verdict = await stage.run(mctx)
                    spent[stage.name] += time.process_time() - t
                    if getattr(verdict, "code", None) and verdict.code >= 400:
                        raise RuntimeError(f"{stage.name} refused the bench message: {verdict}")
                t = time.process_time()
                copy = Copy(run.TO, copy_headers(message, client, now, f"Q{n}", mctx.facts), message.body)
                copy.prepend("Received", f"from bench by relay.bench.example id Q{n} for <{run.TO}>")
                spent["backbone"] += time.process_time() - t
                cctx = CopyContext(config, client, list_cfg, run.SENDER, run.TO, message, copy, services, f"Q{n}",
                                   mctx.facts)
                for stage in pipeline.copy_stages:
                    t = time.process_time()
                    await stage.run(cctx)
                    spent[stage.name] += time.process_time() - t
                t = time.process_time()  # signing (DkimSigner.sign, OpenSSL's RSA inside)
                signatures = signer.sign(copy.headers, copy.body, int(now.timestamp()))
                spent["signing"] += time.process_time() - t
                t = time.process_time()  # the copy's bytes, dot-stuffing for the upstream
                _stuff(b"".join([*signatures, *copy.headers, b"\r\n", copy.body]))
                spent["backbone"] += time.process_time() - t
                t = time.process_time()  # the yardstick of the signature: one raw RSA-2048 sign, as DkimSigner's
                rsa_key.sign(SIGNED, padding, sha256)
                spent["raw_sign"] += time.process_time() - t
            for name, total in spent.items():
                best[name] = min(best.get(name, 1e9), total / messages * 1e6)
    finally:
        store.close_loop_reader()
        store.close()
    return best  # µs of CPU per message


def budget_check(load: dict[str, float], stage: dict[str, float]) -> tuple[list[str], bool]:
    """Lines comparing this run with the starting point; True when over budget.

    `load`: relay CPU/msg ÷ sink CPU/msg for "all" and "none" (information); `stage`: µs CPU/msg
    per stage, "backbone" (without signing), "signing" (DkimSigner.sign), "raw_sign" (one raw
    RSA-2048 sign) and "parse" (stage_cpu). Over budget: the whole pipeline in process past
    STARTING_WHOLE + 10 %, or the new work (stages not in STARTING_STAGE, less what they took over,
    TOOK_OVER) adding more than 10 % of STARTING_WHOLE. The signature counts at its starting price
    (STARTING_RAW_SIGN); the rest of signing is in parses, with the backbone.
    """
    parse = stage["parse"]
    units = {k: v / parse for k, v in stage.items() if k not in ("parse", "backbone", "signing", "raw_sign")}
    raw_sign = stage["raw_sign"] / parse  # this machine's price of the signature, in parses
    signer_rest = max(stage["signing"] - stage["raw_sign"], 0.0) / parse
    backbone = stage["backbone"] / parse + signer_rest + STARTING_RAW_SIGN  # the signature at its starting price
    whole = backbone + sum(units.values())
    plain_whole = whole - STARTING_RAW_SIGN + raw_sign  # as the parse yardstick alone reads it
    L = [f"### budget (issue 23): starting point {STARTING_RUN}",
         "",
         f"Stage CPU in process, in parses of the message (one parse: {parse:.0f} µs CPU this run); a known "
         f"stage is over when it passes its starting share by more than {NOISE:.0%}. The RSA-2048 signature is "
         f"measured apart (raw `key.sign`: {stage['raw_sign']:.0f} µs = {raw_sign:.2f} parses this run) and counts "
         f"at its starting price, {STARTING_RAW_SIGN:.2f} parse.",
         "",
         "| stage | starting point | this run | µs CPU/msg | verdict |",
         "|---|--:|--:|--:|---|"]
    new = 0.0
    for name, value in units.items():
        if name in STARTING_STAGE:
            was = STARTING_STAGE[name]
            verdict = "over" if value > was * (1 + NOISE) + 0.02 else "under" if value < was * (1 - NOISE) - 0.02 \
                else "within noise"
            L.append(f"| {name} | {was:.2f} | {value:.2f} | {stage[name]:.0f} | {verdict} |")
        else:
            new += value
            L.append(f"| {name} (new) | — | {value:.2f} | {stage[name]:.0f} | counts against the {GROWTH:.0%} |")
    for taker, old in TOOK_OVER.items():
        if taker in units and old in units:
            pair = units[taker] + units[old]
            # what the old stage no longer costs is taken off the new stage's share (never below 0)
            handed = min(max(STARTING_STAGE[old] - units[old], 0.0), units[taker])
            new -= handed
            L.append(f"| {old} + {taker}, judged as a pair | {STARTING_STAGE[old]:.2f} | {pair:.2f} | "
                     f"{stage[taker] + stage[old]:.0f} | {units[taker] - handed:.2f} counts as new |")
    allowance = STARTING_WHOLE * GROWTH
    new_over = new > allowance
    L.append(f"| **new work together** | allowed {allowance:.2f} | {new:.2f} | {new * parse:.0f} | "
             f"**{'OVER' if new_over else 'within'} budget** |")
    L.append(f"| backbone (parse, MIME scan, copy headers, DKIM, dot-stuffing), the signature at its starting price | "
             f"{STARTING_BACKBONE:.2f} | {backbone:.2f} | {stage['backbone'] + stage['signing']:.0f} | "
             f"{'over' if backbone > STARTING_BACKBONE * (1 + NOISE) else 'within noise'} |")
    allowed = STARTING_WHOLE * (1 + GROWTH)
    whole_over = whole > allowed
    L.append(f"| **whole pipeline in process** | {STARTING_WHOLE:.2f} | {whole:.2f} | "
             f"{sum(stage[k] for k in stage if k not in ('parse', 'raw_sign')):.0f} (this host's signature) | "
             f"**{'OVER' if whole_over else 'within'} budget ({allowed:.2f})** |")
    L += ["", f"With the signature at this machine's price ({raw_sign:.2f} parses), as the parse yardstick alone reads "
          f"it: the whole pipeline {plain_whole:.2f} ({'over' if plain_whole > allowed else 'within'} {allowed:.2f}).",
          "", "Under load (information: on the shared machine this moved by up to 30 % between runs with no change), "
          "relay CPU per message ÷ the bare sink's, least of the rounds:", "",
          "| relay | starting point | this run | +10 % would be |", "|---|--:|--:|--:|",
          f"| no stage | {STARTING_LOAD['none']:.2f} | {load['none']:.2f} | {STARTING_LOAD['none'] * (1 + GROWTH):.2f} |",
          f"| every stage | {STARTING_LOAD['all']:.2f} | {load['all']:.2f} | {STARTING_LOAD['all'] * (1 + GROWTH):.2f} |"]
    return L, new_over or whole_over


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
