"""Postfix + `relay milter` against Postfix alone, in the same run: smtp-source -> postfix -> smtp-sink.

    .venv/bin/python bench/milter_bench.py [--messages 400] [--sessions 20] [--size 4096] [--rounds 3]

Two private Postfix instances (tests/postfix_instance.py), both relaying to one `smtp-sink`; one of them
has `smtpd_milters` pointing at the relay's milter (every stage on: suppression, sender identity,
consent against a seeded record, unsubscribe headers, footer, DKIM). Rounds alternate plain, milter,
plain, ... so both see the same machine state. Two figures per run, in messages per second:
accepted (smtp-source's wall time: the SMTP path, where the milter works) and end to end (until the
queue is empty again: accepted and handed to the sink). Loopback only; everything it starts is stopped.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from postfix_instance import PostfixInstance, free_port  # noqa: E402
from relay.config import load_config  # noqa: E402
from relay.mail.dkim import generate_rsa_key  # noqa: E402
from relay.keys import ensure_token_key  # noqa: E402
from storage import Store  # noqa: E402
from storage.migrate import upgrade  # noqa: E402

RCPT = "rcpt@example.org"
CONFIG = """\
[relay]
hostname = "relay.bench"
[http]
listen = "127.0.0.1:{http}"
[storage]
url = "sqlite:///{dir}/relay.db"
[upstream]
url = "smtp://127.0.0.1:{sink}"
[secrets]
token_key_file = "{dir}/token.key"
[milter]
listen = "127.0.0.1:{milter}"
[clients.bench]
sender_domains = ["bench.example"]
company = "Bench Ltd"
contact_email = "hello@bench.example"
postal_address = "Bench Ltd, 1 Test St, Leeds LS1 1AA, UK"
dkim = {{ selector = "b1", key_file = "{dir}/bench.pem" }}
default_list = "news"
networks = ["127.0.0.1/32"]
[clients.bench.lists.news]
name = "Bench News"
"""


def start_milter(work: Path, sink_port: int) -> tuple[subprocess.Popen, int]:
    """`relay milter --no-http` in its own process, as it runs beside a production Postfix."""
    generate_rsa_key(work / "bench.pem")
    milter_port = free_port()
    (work / "relay.toml").write_text(CONFIG.format(http=free_port(), dir=work, sink=sink_port, milter=milter_port))
    config = load_config(work / "relay.toml")
    ensure_token_key(config)
    upgrade(config.storage_url)
    now = datetime.now(timezone.utc)
    store = Store(config.storage_url)
    store.consent_import("bench", "news", [{
        "address": RCPT, "status": "confirmed", "method": "double", "source": "bench",
        "signed_up_at": now - timedelta(days=3), "ip": "192.0.2.1", "disclosure": "Bench News",
        "confirmed_at": now - timedelta(days=3)}], now, "bench")
    store.close()
    process = subprocess.Popen([str(ROOT / ".venv/bin/relay"), "--config", str(work / "relay.toml"), "milter",
                                "--no-http"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    assert process.stdout is not None
    line = process.stdout.readline().decode()  # "relay: milter 127.0.0.1:PORT (pid N)" once it listens
    if "milter" not in line:
        process.kill()
        sys.exit(f"relay milter did not start: {line!r}")
    return process, milter_port


def run_once(postfix: PostfixInstance, messages: int, sessions: int, size: int) -> tuple[float, float]:
    """(accepted msgs/s, end-to-end msgs/s) for one smtp-source run against this Postfix."""
    started = time.perf_counter()
    subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", str(size),
                    "-f", "bench@bench.example", "-t", RCPT, f"127.0.0.1:{postfix.port}"],
                   check=True, timeout=600, capture_output=True)
    accepted = time.perf_counter() - started
    deadline = time.monotonic() + 120
    while postfix.queue_size():
        if time.monotonic() > deadline:
            raise SystemExit(f"mail still queued after 2 minutes; see {postfix.log_file}")
        time.sleep(0.02)
    done = time.perf_counter() - started
    return messages / accepted, messages / done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--sessions", type=int, default=20)  # as bench/run.py
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("smtp-source") or not shutil.which("smtp-sink"):
        sys.exit("needs Postfix's smtp-source and smtp-sink")
    work = Path(tempfile.mkdtemp(prefix="milter-bench-"))
    sink_port = free_port()
    sink = subprocess.Popen(["smtp-sink", "-u", "postfix", f"127.0.0.1:{sink_port}", "256"], stdout=subprocess.DEVNULL)
    instances: list[PostfixInstance] = []
    relay = None
    try:
        time.sleep(0.3)
        if sink.poll() is not None:
            raise SystemExit("smtp-sink did not start")
        relay, milter_port = start_milter(work, sink_port)
        common = {"default_process_limit": "50", "smtp_destination_concurrency_limit": "20"}
        plain = PostfixInstance(sink_port, dict(common)).start()
        instances.append(plain)
        milter = PostfixInstance(sink_port, {**common, "smtpd_milters": f"inet:127.0.0.1:{milter_port}",
                                             "milter_default_action": "tempfail"}).start()
        instances.append(milter)
        # warm-up: both paths once, so nothing is measured cold (imports, templates, connections)
        run_once(plain, 20, 2, args.size)
        run_once(milter, 20, 2, args.size)
        results: dict[str, list[tuple[float, float]]] = {"postfix": [], "postfix+milter": []}
        for _ in range(args.rounds):
            results["postfix"].append(run_once(plain, args.messages, args.sessions, args.size))
            results["postfix+milter"].append(run_once(milter, args.messages, args.sessions, args.size))
        median = {name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
                  for name, runs in results.items()}
        print(f"{args.messages} messages x {args.rounds} rounds, {args.sessions} sessions, {args.size} bytes, "
              f"one recipient each; medians")
        for name, (accepted, end_to_end) in median.items():
            print(f"  {name:15} accepted {accepted:8.1f} msgs/s   end to end {end_to_end:8.1f} msgs/s")
        ratio_a = median["postfix+milter"][0] / median["postfix"][0]
        ratio_e = median["postfix+milter"][1] / median["postfix"][1]
        print(f"  ratio (milter / alone): accepted {ratio_a:.2f}x   end to end {ratio_e:.2f}x")
        if "milter-reject" in milter.log():
            print("  warning: the milter refused some messages; see", milter.log_file)
        return 0
    finally:
        for instance in instances:
            instance.stop()
        if relay is not None:
            relay.terminate()
            relay.wait(30)
        sink.terminate()
        sink.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
