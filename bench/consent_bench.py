"""Consent benchmark: `relay consent import` of a big CSV, and the per-message consent lookup.

    .venv/bin/python bench/consent_bench.py [--rows 1000000] [--pg URL | --no-pg]

For SQLite (a file in a temp directory) and PostgreSQL (a fresh schema, created and dropped here):
  1. generate a consent CSV of --rows rows (0.1 % of them role addresses, refused by design),
     and time `relay consent import` on it as a subprocess, end to end (rows/s);
  2. time deciding one 1,000-recipient message: `Store.list_lookup(client, list, addresses)` for
     1,000 addresses (half on file, half not) — median of --runs runs — against a baseline
     measured in the same run: one plain indexed SELECT of one address (median of 200 runs),
     and, for contrast, 1,000 of those single SELECTs in a row (what a per-recipient loop costs).
Prints a markdown table and appends it, with date, machine and command, to bench/RESULTS.md in
one write (other benchmarks append there too).

Targets: import >= 20,000 rows/s; a 1,000-recipient decision <= 20 ms on SQLite.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import re
import secrets
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, make_url, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from storage import Store  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEMO = ROOT / "relay" / "demo.toml"
CLIENT, LIST = "demo", "news"
IMPORT_TARGET = 20_000  # rows/s
DECIDE_TARGET_MS = 20.0


def address(i: int) -> str:
    return f"subscriber.{i}@mail{i % 997}.example.com"


def write_csv(path: Path, rows: int) -> int:
    """The CSV to import; returns how many rows the import must refuse (role addresses)."""
    start = datetime(2023, 1, 1, tzinfo=timezone.utc)
    refused = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("email,signed_up_at,source,method,ip,disclosure,confirmed_at,campaign\n")
        chunk = []
        for i in range(rows):
            signed = start + timedelta(seconds=i * 7)
            if i % 1000 == 999:
                email = f"info+{i}@mail{i % 997}.example.com"
                refused += 1
            else:
                email = address(i)
            if i % 3:
                method, confirmed = "double", (signed + timedelta(minutes=5)).isoformat()
            else:
                method, confirmed = "single", ""
            chunk.append(f"{email},{signed.isoformat()},https://shop.example/signup,{method},"
                         f"198.51.{(i >> 8) & 255}.{i & 255},Weekly news; unsubscribe any time,{confirmed},"
                         f"spring-{i % 12}\n")
            if len(chunk) >= 10000:
                fh.write("".join(chunk))
                chunk = []
        fh.write("".join(chunk))
    return refused


def write_config(directory: Path, url: str) -> Path:
    config = DEMO.read_text().replace('url = "sqlite:///relay.db"', f'url = "{url}"')
    path = directory / "relay.toml"
    path.write_text(config)
    return path


def run_import(config: Path, csv_path: Path) -> tuple[float, dict[str, float], str]:
    cmd = [sys.executable, "-m", "relay", "--config", str(config), "consent", "import", str(csv_path),
           "--client", CLIENT, "--list", LIST]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(cmd, cwd=config.parent, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)  # incl. its workers
    if result.returncode != 0:
        raise SystemExit(f"import failed ({result.returncode}): {result.stderr.strip()}")
    counts = {}
    for label in ("rows read", "added", "already on file", "refused"):
        m = re.search(rf"^\s*{re.escape(label)}[^:]*:\s+([\d,]+)$", result.stdout, re.M)
        counts[label] = int(m.group(1).replace(",", "")) if m else -1
    counts["cpu_s"] = cpu  # type: ignore[assignment]
    return elapsed, counts, result.stdout


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def measure_lookup(url: str, rows: int, runs: int) -> dict[str, float]:
    store = Store(url)
    try:
        rnd = random.Random(42)
        present = [address(i) for i in rnd.sample([i for i in range(rows) if i % 1000 != 999], 500)]
        absent = [f"nobody.{i}@mail{i % 997}.example.com" for i in range(500)]
        recipients = present + absent
        rnd.shuffle(recipients)
        found = store.list_lookup(CLIENT, LIST, recipients)
        assert len(found.consents) == 500, len(found.consents)
        one = text("SELECT id, status FROM consent WHERE client = :c AND list_key = :l AND address = :a")

        def single(a: str = present[0]) -> None:
            with store.engine.connect() as conn:
                conn.execute(one, {"c": CLIENT, "l": LIST, "a": a}).first()

        def per_recipient() -> None:
            with store.engine.connect() as conn:
                for a in recipients:
                    conn.execute(one, {"c": CLIENT, "l": LIST, "a": a}).first()

        for _ in range(3):  # warm caches, statement cache, connection pool
            store.list_lookup(CLIENT, LIST, recipients)
            single()
        return {
            "lookup": median_ms(lambda: store.list_lookup(CLIENT, LIST, recipients), runs),
            "single": median_ms(single, max(runs, 200)),
            "loop": median_ms(per_recipient, max(3, runs // 4)),
        }
    finally:
        store.close()


def pg_schema(base: str) -> tuple[str, str]:
    schema = f"bench_{os.getpid()}_{secrets.token_hex(4)}"
    engine = create_engine(base, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        engine.dispose()
    # libpq options set search_path on every connection: the relay subprocess sees only this schema
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return schema, url.render_as_string(hide_password=False)


def drop_schema(base: str, schema: str) -> None:
    engine = create_engine(base, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


def bench_backend(name: str, url: str, work: Path, csv_path: Path, rows: int, refused: int,
                  runs: int) -> dict[str, object]:
    directory = work / name
    directory.mkdir()
    config = write_config(directory, url)
    print(f"[{name}] importing {rows:,} rows ...", file=sys.stderr, flush=True)
    elapsed, counts, stdout = run_import(config, csv_path)
    expected_added = rows - refused
    if counts["added"] != expected_added or counts["refused"] != refused:
        raise SystemExit(f"[{name}] unexpected import summary (wanted {expected_added} added, "
                         f"{refused} refused):\n{stdout}")
    print(f"[{name}] {elapsed:.1f} s, {rows / elapsed:,.0f} rows/s; measuring lookups ...",
          file=sys.stderr, flush=True)
    result: dict[str, object] = {"backend": name, "import_s": elapsed, "rows_per_s": rows / elapsed,
                                 "cpu_s": counts["cpu_s"]}
    result.update(measure_lookup(url, rows, runs))
    return result


def table(results: list[dict[str, object]], rows: int) -> str:
    lines = [
        f"| backend | import {rows:,} rows (CPU s, all processes) | rows/s (target ≥ {IMPORT_TARGET:,}) | decide 1,000 recipients: "
        f"list_lookup median (target ≤ {DECIDE_TARGET_MS:g} ms on SQLite) | baseline: 1 indexed SELECT, median "
        "| 1,000 single SELECTs in a loop, median |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(f"| {r['backend']} | {r['import_s']:.1f} s ({r['cpu_s']:.1f}) | {r['rows_per_s']:,.0f} | {r['lookup']:.2f} ms "
                     f"| {r['single']:.3f} ms | {r['loop']:.1f} ms |")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.node()} — {cpu}, {os.cpu_count()} CPU(s), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def append_results(report: str) -> Path:
    path = ROOT / "bench" / "RESULTS.md"
    data = report.encode("utf-8")
    # one O_APPEND write: concurrent appenders never interleave inside this block
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20, help="timed list_lookup runs (median reported)")
    parser.add_argument("--pg", default=DEFAULT_PG, help=f"PostgreSQL base URL [default: {DEFAULT_PG}]")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = parser.parse_args()
    if args.rows < 2000:
        parser.error("--rows must be at least 2000 (the lookup samples 500 present addresses)")

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results = []
    with tempfile.TemporaryDirectory(prefix="consent-bench-") as tmp:
        work = Path(tmp)
        csv_path = work / "consent.csv"
        print(f"writing {args.rows:,} rows to {csv_path} ...", file=sys.stderr, flush=True)
        refused = write_csv(csv_path, args.rows)
        results.append(bench_backend("SQLite", f"sqlite:///{work / 'relay.db'}", work, csv_path, args.rows,
                                     refused, args.runs))
        if not args.no_pg:
            schema, url = pg_schema(args.pg)
            try:
                results.append(bench_backend("PostgreSQL", url, work, csv_path, args.rows, refused, args.runs))
            finally:
                drop_schema(args.pg, schema)

    report = table(results, args.rows)
    print(report)
    sqlite = results[0]
    verdicts = [
        f"import: {'PASS' if all(r['rows_per_s'] >= IMPORT_TARGET for r in results) else 'FAIL'} "
        f"(≥ {IMPORT_TARGET:,} rows/s)",
        f"decide 1,000 recipients on SQLite: {'PASS' if sqlite['lookup'] <= DECIDE_TARGET_MS else 'FAIL'} "
        f"(≤ {DECIDE_TARGET_MS:g} ms)",
    ]
    print("\n".join(verdicts))
    if not args.no_append:
        command = "python bench/consent_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        block = (f"\n## consent import and lookup — {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}\n\n"
                 f"- machine: {machine()}\n- load average at start: {load}\n- command: `{command.strip()}`\n"
                 f"- CSV: {args.rows:,} rows, {refused:,} role addresses (refused by design); import timed "
                 "end to end as a `relay consent import` subprocess\n"
                 f"- lookup: 1,000 recipients (500 on file, 500 not), median of {args.runs} runs\n\n"
                 f"{report}\n\n" + "".join(f"- {v}\n" for v in verdicts))
        print(f"appended to {append_results(block)}", file=sys.stderr)


if __name__ == "__main__":
    main()
