"""consent-relay benchmark harness: one command, one machine, one markdown section of results.

    .venv/bin/python bench/run.py [--quick] [--out bench/RESULTS.md]

What one run does (see bench/README.md):
  * starts a counting sink (bench/sink.py, bare aiosmtpd, separate process);
  * for each case (10 KB / 100 KB payload x 1 / 100 recipients, 20 concurrent sessions) starts
    `relay serve` (one process) and `relay serve --workers 2` on a generated config whose
    upstream is the sink and whose [policy] stages are every stage `relay stages` lists;
  * measures, in interleaved rounds (baseline, relay, relay-w2, baseline, ...), a fixed message
    count with Postfix smtp-source (or bench/loadgen.py when smtp-source is absent or its
    messages do not pass the relay): messages/s at the client, copies/s counted at the sink;
  * measures end-of-DATA -> reply latency (p50/p99) with bench/loadgen.py paced at half of the
    measured maximum of each target;
  * reads the peak RSS (VmHWM) of every relay process (workers and their parent);
  * runs bench/dkim_bench.py (DkimSigner.sign vs raw OpenSSL RSA sign, per copy);
  * appends a dated section to bench/RESULTS.md (never overwrites).

Every process it starts runs in its own process group and is stopped in `finally`, also on
Ctrl-C or SIGTERM. Only loopback addresses are used.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
import loadgen  # noqa: E402  (bench/loadgen.py)
import payload  # noqa: E402  (bench/payload.py)

PY = sys.executable
RELAY = str(Path(PY).with_name("relay")) if Path(PY).with_name("relay").exists() else shutil.which("relay") or "relay"
SMTP_SOURCE = "/usr/sbin/smtp-source" if os.access("/usr/sbin/smtp-source", os.X_OK) else shutil.which("smtp-source")
HOST = "127.0.0.1"
SENDER = "bench@bench.example"
TO = "rcpt@example.org"
CONSENT_ROWS = 1_000_000

TARGETS_TEXT = {
    "t1": "one process, all stages, 10 KB 1 rcpt: ≥ 40 % of bare sink msgs/s",
    "t2": "workers=2 ≥ 1.7× one process (10 KB 1 rcpt)",
    "t3": "100 rcpt (10 KB), 2 workers: ≥ 1,500 copies/s",
    "t4": "DKIM per copy ≤ 1.5× raw OpenSSL RSA-2048 sign",
    "t5": "p99 end-of-DATA latency at half load ≤ 50 ms (10 KB 1 rcpt, relay 1 and 2 workers)",
}


# --------------------------------------------------------------------------- processes

class Procs:
    """Every process the harness starts; each in its own session (process group), all stopped at the end."""

    def __init__(self) -> None:
        self.items: list[subprocess.Popen] = []

    def start(self, argv: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.items.append(p)
        return p

    def stop(self, p: subprocess.Popen, grace: float = 15.0) -> None:
        """SIGTERM the process group of p (relay workers included), then SIGKILL after `grace`."""
        if p.poll() is None:
            _signal_group(p.pid, signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(p.pid, signal.SIGKILL)
                p.wait(5)
        # forked workers outliving their parent would still be in the group
        _signal_group(p.pid, signal.SIGKILL)
        if p in self.items:
            self.items.remove(p)

    def stop_all(self) -> None:
        for p in list(reversed(self.items)):
            try:
                self.stop(p, grace=5.0)
            except Exception as exc:  # keep stopping the others
                print(f"bench: could not stop pid {p.pid}: {exc}", file=sys.stderr)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def tree_pids(root: int) -> list[int]:
    """root and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def vm_hwm_kib(pid: int, field: str = "VmHWM") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(root: int) -> float:
    """utime+stime of root and its descendants (live ones), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in tree_pids(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_smtp(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until the port answers with a 220 banner (or the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=2) as s:
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered SMTP on {HOST}:{port} within {timeout:.0f}s")


# --------------------------------------------------------------------------- sink

class Sink:
    def __init__(self, procs: Procs, workdir: Path):
        self.proc = procs.start([PY, str(BENCH / "sink.py"), "--stats-file", str(workdir / "sink-stats.json")],
                                stdout=subprocess.PIPE, text=True)
        info = json.loads(self.proc.stdout.readline())
        self.port, self.control_port, self.pid = info["smtp_port"], info["control_port"], info["pid"]
        wait_smtp(self.port, self.proc)

    def _ask(self, cmd: str) -> dict:
        with socket.create_connection((HOST, self.control_port), timeout=10) as s:
            s.sendall(cmd.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        return json.loads(buf)

    def stats(self) -> dict:
        return self._ask("STATS")

    def reset(self) -> dict:
        return self._ask("RESET")


class PostfixSink:
    """Postfix's smtp-sink (C) as the relay's upstream: it counts what it receives (`-c`) for a
    fraction of the aiosmtpd sink's CPU, which on a 2-core machine otherwise competes with the relay."""

    BINARY = "/usr/sbin/smtp-sink"

    def __init__(self, procs: Procs):
        self.port = free_port()
        argv = [self.BINARY, "-c", f"{HOST}:{self.port}", "1024"]
        if os.geteuid() == 0:
            argv[1:1] = ["-u", "nobody"]  # smtp-sink refuses to run as root
        self.proc = procs.start(argv, stdout=subprocess.PIPE)
        self.pid = self.proc.pid
        self.count = self.base = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        wait_smtp(self.port, self.proc)

    def _read(self) -> None:
        # smtp-sink -c rewrites one status line: "sess=N quit=N mesg=N\r"
        tail = b""
        while True:
            chunk = self.proc.stdout.read1(65536) if self.proc.stdout else b""
            if not chunk:
                return
            tail = (tail + chunk)[-200:]
            found = re.findall(rb"mesg=(\d+)", tail)
            if found:
                with self._lock:
                    self.count = int(found[-1])

    def stats(self) -> dict:
        # each relay copy is its own single-recipient transaction: messages = copies
        with self._lock:
            n = self.count - self.base
        return {"messages": n, "copies": n}

    def reset(self) -> dict:
        with self._lock:
            old, self.base = self.count - self.base, self.count
        return {"messages": old, "copies": old}


# --------------------------------------------------------------------------- relay

# stages that need a service the harness does not start: spam-score asks spamd, and without it every
# message would be tempfailed (451 4.7.1); it is off by default in relay.toml too
NEEDS_A_SERVICE = ("spam-score",)


def relay_stages() -> list[str]:
    """Every stage `relay stages` lists, in the order a relay.toml without [policy] stages runs them
    (relay.config's DEFAULT_STAGES; any other after those, in the listed order)."""
    out = subprocess.run([RELAY, "stages"], capture_output=True, text=True, check=True, cwd=ROOT, timeout=60).stdout
    listed = [line.split()[0] for line in out.splitlines() if line.strip() and line.split()[0] not in NEEDS_A_SERVICE]
    sys.path.insert(0, str(ROOT))
    from relay.config.model import DEFAULT_STAGES

    return [s for s in DEFAULT_STAGES if s in listed] + [s for s in listed if s not in DEFAULT_STAGES]


_CONSENT_TEMPLATE: dict[str, Path] = {}


def seed_consent(config_path: Path, recipients: list[str]) -> bool:
    """Give the config's database CONSENT_ROWS (1,000,000) consent rows, the bench recipients among them.

    Rows are confirmed double opt-in, recent, with provenance, for client `bench`, list `news`.
    Seeded once into a template database (migrated schema, then one raw sqlite3 executemany),
    which is copied for every relay config, so each relay decides against a realistic table.
    """
    import shutil
    import sqlite3

    db = config_path.parent / "relay.db"
    template = _CONSENT_TEMPLATE.get("path")
    if template is None:
        sys.path.insert(0, str(ROOT))
        from storage.migrate import upgrade

        template = config_path.parent.parent / "consent-template.db"
        upgrade(f"sqlite:///{template}")
        now = dt.datetime.now(dt.timezone.utc)
        signed = (now - dt.timedelta(days=30)).isoformat(sep=" ")
        confirmed = (now - dt.timedelta(days=29)).isoformat(sep=" ")
        fillers = (f"subscriber{i}@example{i % 997}.org" for i in range(CONSENT_ROWS - len(recipients)))
        addresses = list(recipients) + list(fillers)
        conn = sqlite3.connect(template)
        with conn:
            conn.executemany(
                "INSERT INTO consent (client, list_key, address, status, method, source, signed_up_at, ip, "
                "disclosure, confirmed_at, last_contact_at, revoked_at, extra, updated_at, user_agent, "
                "confirm_sent_at, confirm_sends) VALUES ('bench', 'news', ?, 'confirmed', 'double', 'bench seed', "
                "?, '192.0.2.1', 'bench disclosure', ?, NULL, NULL, '{}', ?, '', NULL, 0)",
                ((a, signed, confirmed, confirmed) for a in addresses))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        _CONSENT_TEMPLATE["path"] = template
    if not db.exists():
        shutil.copyfile(template, db)
    return True


# The bench client is a trusted high-volume sender: its limits are set (every message is counted in
# three buckets) but out of reach, and no campaign reaches the canary threshold (every message is
# counted in its campaign, none held). The repeat guard is off: smtp-source sends one body to the
# same recipients again and again, which the guard would rightly refuse from the second message on
# (its write, one row per copy, is in bench/accounts_cost.py's figure, not in these).
ACCOUNT_TABLES = """
[policy.limits]
per_minute = 100000000
per_hour = 100000000
per_day = 100000000
identical_per_day = 0

[policy.canary]
threshold = 100000000
"""


def write_relay_config(d: Path, sink_port: int, stages: list[str]) -> tuple[Path, int, int]:
    d.mkdir(parents=True, exist_ok=True)
    key = d / "b.pem"
    if not key.exists():
        subprocess.run([RELAY, "dkim", "keygen", "bench.example", "--selector", "b1", "--out", str(key)],
                       check=True, capture_output=True, cwd=d, timeout=60)
    smtp_port, http_port, admin_port = free_port(), free_port(), free_port()
    cfg = f"""# generated by bench/run.py
[relay]
hostname = "relay.bench.example"
listen = "{HOST}:{smtp_port}"
max_message_size = 26214400
max_recipients = 1000
max_connections = 1000
max_connections_per_ip = 1000

[http]
listen = "{HOST}:{http_port}"
public_url = "http://{HOST}:{http_port}"

[admin]
listen = "{HOST}:{admin_port}"

[storage]
url = "sqlite:///{d / 'relay.db'}"

[upstream]
url = "smtp://{HOST}:{sink_port}"
pool_size = 8

[secrets]
token_key_file = "{d / 'token.key'}"

[policy]
stages = {json.dumps(stages)}

[clients.bench]
networks = ["127.0.0.0/8"]
sender_domains = ["bench.example"]
company = "Bench Example Ltd"
contact_email = "hello@bench.example"
postal_address = "Bench Example Ltd, 1 Test Street, Springfield, IL 62701, USA"
dkim = {{ selector = "b1", key_file = "{key}" }}
default_list = "news"

[clients.bench.lists.news]
name = "Bench News"
kind = "marketing"
confirmed_opt_in = true
max_consent_age_days = 730
""" + ACCOUNT_TABLES
    path = d / "relay.toml"
    path.write_text(cfg)
    return path, smtp_port, admin_port  # /metrics is on the admin listener (SPEC §12)


@dataclass
class Relay:
    name: str
    workers: int
    proc: subprocess.Popen
    port: int
    log: Path
    http_port: int = 0  # the admin listener's port: its /metrics covers every worker

    def metric(self, name: str, asks: int = 1) -> float | None:
        """The largest value of a /metrics sample over `asks` requests."""
        import urllib.request

        best = None
        for _ in range(asks):
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.http_port}/metrics", timeout=5) as r:
                    m = re.search(rf"^{re.escape(name)} (\S+)$", r.read().decode(), re.M)
            except OSError:
                continue
            if m:
                best = max(best or 0.0, float(m.group(1)))
        return best

    def peak_rss_kib(self) -> tuple[int, int]:
        """(sum of VmHWM over every process of this relay, number of processes)."""
        pids = tree_pids(self.proc.pid)
        return sum(vm_hwm_kib(p) for p in pids), len(pids)


def start_relay(procs: Procs, d: Path, sink_port: int, stages: list[str], workers: int, name: str) -> Relay:
    config, smtp_port, http_port = write_relay_config(d, sink_port, stages)
    seed_consent(config, loadgen.recipients_for(TO, 100))
    log = d / f"{name}.log"
    with open(log, "ab") as fh:
        proc = procs.start([RELAY, "--config", str(config), "serve", "--workers", str(workers)],
                           stdout=fh, stderr=subprocess.STDOUT, cwd=d)
    try:
        wait_smtp(smtp_port, proc)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; relay log {log}:\n{log.read_text()[-2000:]}") from None
    return Relay(name, workers, proc, smtp_port, log, http_port)


# --------------------------------------------------------------------------- load

@dataclass
class Case:
    size: int
    rcpts: int
    payload: Path | None = None  # a newsletter of `size` bytes (bench/payload.py); None: smtp-source's X lines

    def message(self) -> bytes | None:
        """The payload as loadgen sends it (CRLF, not dot-stuffed); None for loadgen's own X lines."""
        return self.payload.read_bytes().replace(b"\n", b"\r\n") if self.payload else None

    @property
    def label(self) -> str:
        return f"{self.size // 1024} KB, {self.rcpts} rcpt"


def smtp_source_argv(port: int, case: Case, count: int, sessions: int) -> list[str]:
    body = ["-F", str(case.payload)] if case.payload else ["-l", str(case.size)]
    return [SMTP_SOURCE, "-s", str(sessions), "-m", str(count), *body, "-r", str(case.rcpts),
            "-d", "-f", SENDER, "-t", TO, "-M", "bench.example", "-S", "bench", f"{HOST}:{port}"]


def throughput_run(gen: str, port: int, case: Case, count: int, sessions: int, sink: "Sink | PostfixSink",
                   relay: "Relay | None" = None) -> dict:
    """One fixed-count run as fast as possible; copies are counted at the sink.

    Also returns the CPU the relay (all its processes) and the sink used, as % of one core.
    """
    sink.reset()
    cpu_sink0 = cpu_seconds(sink.pid)
    cpu_relay0 = cpu_seconds(relay.proc.pid) if relay else 0.0
    cpu_load0 = _children_cpu() + time.process_time()  # smtp-source is a waited-for child; loadgen runs here
    t0 = time.perf_counter()
    if gen == "smtp-source":
        p = subprocess.run(smtp_source_argv(port, case, count, sessions), capture_output=True, text=True,
                           timeout=300)
        elapsed = time.perf_counter() - t0
        ok = p.returncode == 0
        sent = count if ok else 0
        err = "" if ok else (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
    else:
        r = asyncio.run(loadgen.run_load(HOST, port, sessions=sessions, messages=count, size=case.size,
                                         recipients=case.rcpts, sender=SENDER, to=TO, timeout=300,
                                         message=case.message()))
        elapsed = time.perf_counter() - t0
        sent, ok, err = r["sent"], r["errors"] == 0, r["first_error"]
    # the relay answers 250 only after every copy reached the upstream; give stragglers a moment anyway
    want = sent * case.rcpts
    deadline = time.monotonic() + 2
    s = sink.stats()
    while s["copies"] < want and time.monotonic() < deadline:
        time.sleep(0.05)
        s = sink.stats()
    cpu_sink = (cpu_seconds(sink.pid) - cpu_sink0) / elapsed * 100
    cpu_relay = (cpu_seconds(relay.proc.pid) - cpu_relay0) / elapsed * 100 if relay else None
    cpu_load = (_children_cpu() + time.process_time() - cpu_load0) / elapsed * 100
    return {"elapsed": elapsed, "cpu_sink_pct": cpu_sink, "cpu_relay_pct": cpu_relay, "cpu_load_pct": cpu_load,
            "sent": sent, "ok": ok, "error": err,
            "msgs_per_s": sent / elapsed, "copies_per_s": s["copies"] / elapsed,
            "sink_messages": s["messages"], "sink_copies": s["copies"], "expected_copies": want}


def resources_run(procs: Procs, d: Path, upstream_port: int, stages: list[str], gen: str) -> dict:
    """Memory and event-loop figures of one fresh one-process relay (issue targets: RSS ≤ 300 MB at
    200 sessions; a 25 MB message costs ≤ 5× its size; the loop never blocked more than a few ms)."""
    out: dict = {}
    relay = start_relay(procs, d / "res-msg", upstream_port, stages, 1, "res-msg")
    big = Case(25_000_000, 1)
    small = throughput_run(gen if gen == "loadgen" else "loadgen", relay.port, Case(10240, 1), 20, 4, _NullSink(), relay)
    rss_before = vm_hwm_kib(relay.proc.pid, "VmRSS")
    t0 = time.perf_counter()
    r = asyncio.run(loadgen.run_load(HOST, relay.port, sessions=1, messages=1, size=big.size, recipients=1,
                                     sender=SENDER, to=TO, timeout=300))
    out["big_s"] = time.perf_counter() - t0
    out["big_ok"] = r["errors"] == 0 and small["ok"]
    out["big_error"] = r["first_error"] or small["error"]
    out["big_extra_mib"] = (vm_hwm_kib(relay.proc.pid) - rss_before) / 1024
    out["big_ratio"] = out["big_extra_mib"] * 1024 * 1024 / big.size
    out["lag_max_ms"] = (relay.metric("relay_event_loop_lag_max_seconds") or 0) * 1000
    procs.stop(relay.proc)
    # the longest single step the loop ran (asyncio debug mode logs each step over 5 ms): the 25 MB
    # message, then 10 KB newsletters at a moderate rate; debug mode itself slows every step
    os.environ["RELAY_SLOW_CALLBACK_MS"] = "5"
    try:
        relay = start_relay(procs, d / "res-steps", upstream_port, stages, 1, "res-steps")
    finally:
        del os.environ["RELAY_SLOW_CALLBACK_MS"]
    asyncio.run(loadgen.run_load(HOST, relay.port, sessions=1, messages=1, size=big.size, recipients=1,
                                 sender=SENDER, to=TO, timeout=300))
    steps_big = _slow_steps(relay.log)
    asyncio.run(loadgen.run_load(HOST, relay.port, sessions=20, messages=400, size=10240, recipients=1,
                                 sender=SENDER, to=TO, rate=100, timeout=300,
                                 message=payload.newsletter(10240, SENDER, TO)))
    steps_small = _slow_steps(relay.log)[len(steps_big):]
    procs.stop(relay.proc)
    out["step_big_ms"] = max((ms for ms, _ in steps_big), default=0.0)
    out["step_small_ms"] = max((ms for ms, _ in steps_small), default=0.0)
    out["steps_small_over"] = len(steps_small)
    out["step_where"] = ", ".join(sorted({w for _, w in steps_big + steps_small}))[:300]
    relay = start_relay(procs, d / "res-200", upstream_port, stages, 1, "res-200")
    r = throughput_run(gen, relay.port, Case(10240, 1), 2000, 200, _NullSink(), relay)
    out["s200_ok"], out["s200_error"] = r["ok"], r["error"]
    out["s200_msgs_per_s"] = r["msgs_per_s"]
    out["s200_rss_mib"] = vm_hwm_kib(relay.proc.pid) / 1024
    out["s200_lag_max_ms"] = (relay.metric("relay_event_loop_lag_max_seconds") or 0) * 1000
    procs.stop(relay.proc)
    return out


def _slow_steps(log: Path) -> list[tuple[float, str]]:
    """(ms, where the coroutine stopped) for each 'Executing … took N seconds' asyncio logged."""
    found = re.findall(r"Executing .*?coro=<(\S+) running at (\S+?)>.*? took ([\d.]+) seconds", log.read_text())
    return [(float(sec) * 1000, f"{what} {where.rsplit('/', 1)[-1]}") for what, where, sec in found]


class _NullSink:
    """For runs whose copies are not counted (the relay's upstream still receives them)."""

    pid = os.getpid()

    def reset(self) -> dict:
        return {"messages": 0, "copies": 0}

    def stats(self) -> dict:
        return {"messages": 1 << 40, "copies": 1 << 40}


def _children_cpu() -> float:
    import resource

    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def latency_run(port: int, case: Case, rate: float, seconds: float, min_samples: int, sessions: int) -> dict:
    # at least min_samples, but never longer than ~3x the planned time (slow 100-recipient targets)
    count = min(max(min_samples, int(rate * seconds)), max(1, int(rate * seconds * 3)))
    r = asyncio.run(loadgen.run_load(HOST, port, sessions=sessions, messages=count, size=case.size,
                                     recipients=case.rcpts, sender=SENDER, to=TO, rate=rate, timeout=300,
                                     message=case.message()))
    r["rate"] = rate
    return r


def smtp_source_ok(port: int, sink: "Sink | PostfixSink") -> tuple[bool, str]:
    """Does one smtp-source message (1 and 3 recipients) pass the relay and arrive at the sink?"""
    for rc in (1, 3):
        r = throughput_run("smtp-source", port, Case(1024, rc), 1, 1, sink)
        if not r["ok"] or r["sink_copies"] != rc:
            return False, r["error"] or f"sink got {r['sink_copies']} of {rc} copies"
    return True, ""


# --------------------------------------------------------------------------- dkim

def dkim_cost(iterations: int) -> dict:
    """Run the colleague's bench/dkim_bench.py and read its figures."""
    p = subprocess.run([PY, str(BENCH / "dkim_bench.py"), "--iterations", str(iterations)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    out = p.stdout
    m_d = re.search(r"DkimSigner\.sign[^:]*:\s*([\d.]+) us/copy", out)
    m_r = re.search(r"raw OpenSSL[^:]*:\s*([\d.]+) us/copy", out)
    m_m = re.search(r"message:\s*(\d+) bytes", out)
    if not (m_d and m_r):
        return {"error": (out + p.stderr).strip()[-500:]}
    d, r = float(m_d.group(1)), float(m_r.group(1))
    return {"dkim_us": d, "raw_us": r, "ratio": d / r, "message_bytes": int(m_m.group(1)) if m_m else None,
            "output": out.strip()}


# --------------------------------------------------------------------------- environment

def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    from importlib.metadata import PackageNotFoundError, version
    pkgs = {}
    for name in ("consent-relay", "aiosmtpd", "aiosmtplib", "cryptography", "dkimpy", "sqlmodel", "aiohttp"):
        try:
            pkgs[name] = version(name)
        except PackageNotFoundError:
            pkgs[name] = "absent"
    try:
        ossl = subprocess.run([PY, "-c", "from cryptography.hazmat.backends.openssl import backend;"
                               "print(backend.openssl_version_text())"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except Exception:
        ossl = "?"
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem": mem, "kernel": platform.release(),
            "python": platform.python_version(), "packages": pkgs, "openssl": ossl}


# --------------------------------------------------------------------------- main

@dataclass
class VariantResult:
    rounds: list[dict] = field(default_factory=list)
    count: int = 0
    latency: dict | None = None
    rss_kib: int | None = None
    nprocs: int | None = None
    lag_ms: float | None = None  # worst event-loop timer delay the relay saw (its /metrics)
    error: str = ""

    def median(self, key: str) -> float | None:
        vals = [r[key] for r in self.rounds if r["ok"] and r.get(key) is not None]
        return statistics.median(vals) if vals else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer and shorter rounds (about 1.5 minutes)")
    ap.add_argument("--out", default=str(BENCH / "RESULTS.md"), help="markdown file to append to")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds per case (default 3; quick 1)")
    ap.add_argument("--seconds", type=float, default=None, help="target length of one run (default 3; quick 1)")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--loadgen", action="store_true", help="use bench/loadgen.py even when smtp-source exists")
    ap.add_argument("--payload", choices=("newsletter", "x-lines"), default="newsletter",
                    help="what each message carries: a text+HTML newsletter of the case's size (bench/payload.py) "
                         "or smtp-source's own lines of X (-l)")
    ap.add_argument("--upstream", choices=("smtp-sink", "aiosmtpd"), default="smtp-sink",
                    help="the relay's counting upstream: Postfix smtp-sink (default when installed) or the "
                         "aiosmtpd sink of the baseline")
    ap.add_argument("--resources-only", action="store_true",
                    help="only the memory and event-loop figures (200 sessions, a 25 MB message), no throughput cases")
    ap.add_argument("--all-stages", action="store_true",
                    help="keep the consent stage on even when seed_consent() seeded nothing")
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (1.0 if args.quick else 3.0)
    lat_seconds = 2.0 if args.quick else 4.0
    min_lat_samples = 10 if args.quick else 20
    dkim_iters = 500 if args.quick else 2000
    sessions = args.sessions
    # every session sends several messages: with one each, how SO_REUSEPORT happened to split 20
    # connections between two workers decided a 100-recipient round
    min_count = sessions * 4
    cases = [Case(10240, 1), Case(10240, 100), Case(102400, 1), Case(102400, 100)]
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/run.py", *sys.argv[1:]])

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    procs = Procs()
    started = dt.datetime.now(dt.timezone.utc)
    t_start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    if args.payload == "newsletter":
        for case in cases:
            case.payload = tmp / f"newsletter-{case.size}.eml"
            case.payload.write_bytes(payload.newsletter(case.size, SENDER, TO).replace(b"\r\n", b"\n"))
    results: dict[str, dict[str, VariantResult]] = {}
    notes: list[str] = []
    try:
        listed = relay_stages()
        stages = list(listed)
        if "consent" in listed:
            probe_cfg, _, _ = write_relay_config(tmp / "seed-probe", 1, listed)
            seeded = seed_consent(probe_cfg, loadgen.recipients_for(TO, 100))
            if seeded or args.all_stages:
                notes.append(f"`consent` stage on; seed_consent() {'seeded' if seeded else 'seeded NOTHING'} "
                             f"(realistic: {CONSENT_ROWS:,} consent rows).")
            else:
                stages.remove("consent")
                notes.append(f"`relay stages` lists `consent`, but it is OFF in this run: it needs {CONSENT_ROWS:,} "
                             "consent rows seeded, and `seed_consent()` in bench/run.py (the hook for that) does "
                             "nothing yet, so the stage would refuse every bench recipient. Figures are for the "
                             "other stages; `--all-stages` forces it on.")
        print(f"bench: stages listed: {', '.join(listed)}; on: {', '.join(stages)}", flush=True)
        print("bench: DKIM per-copy cost (bench/dkim_bench.py) ...", flush=True)
        dkim = dkim_cost(dkim_iters)
        sink = Sink(procs, tmp)
        print(f"bench: sink on {HOST}:{sink.port} (control {sink.control_port})", flush=True)
        upstream: Sink | PostfixSink = sink
        if args.upstream == "smtp-sink" and os.access(PostfixSink.BINARY, os.X_OK):
            upstream = PostfixSink(procs)
        elif args.upstream == "smtp-sink":
            notes.append("Postfix smtp-sink not found: the relays forwarded to the baseline's aiosmtpd sink.")
        upstream_name = "Postfix smtp-sink -c" if isinstance(upstream, PostfixSink) else "bench/sink.py (aiosmtpd)"
        print(f"bench: relay upstream: {upstream_name} on {HOST}:{upstream.port}", flush=True)

        gen = "smtp-source" if SMTP_SOURCE and not args.loadgen else "loadgen"
        if gen == "smtp-source":
            probe = start_relay(procs, tmp / "probe", upstream.port, stages, 1, "probe")
            ok, why = smtp_source_ok(probe.port, upstream)
            procs.stop(probe.proc)
            if not ok:
                gen = "loadgen"
                notes.append(f"smtp-source's messages did not pass the relay ({why}); bench/loadgen.py "
                             "generated the load for every target (baseline included) instead.")
        elif not SMTP_SOURCE:
            notes.append("smtp-source not found: bench/loadgen.py generated the load.")
        print(f"bench: load generator: {gen}", flush=True)

        print("bench: resources (200 sessions, a 25 MB message, event-loop lag) ...", flush=True)
        try:
            resources = resources_run(procs, tmp, upstream.port, stages, gen)
        except Exception as exc:  # keep the throughput figures
            resources = {"error": str(exc).splitlines()[0][:300]}
        print(f"bench:   {resources}", flush=True)
        for ci, case in enumerate(cases if not args.resources_only else []):
            print(f"bench: case {case.label} ...", flush=True)
            # relay-bare (10 KB, 1 rcpt only): one process with no policy stage at all (SMTP in,
            # parse, audit, DKIM, delivery), the bound on what the stages can add up to
            bare = (case.size, case.rcpts) == (10240, 1)
            variants = ("baseline", "relay", "relay-w2") + (("relay-bare",) if bare else ())
            res = {v: VariantResult() for v in variants}
            results[case.label] = res
            relays: dict[str, Relay] = {}
            try:
                relays["relay"] = start_relay(procs, tmp / f"c{ci}-w1", upstream.port, stages, 1, "relay")
                relays["relay-w2"] = start_relay(procs, tmp / f"c{ci}-w2", upstream.port, stages, 2, "relay-w2")
                if bare:
                    relays["relay-bare"] = start_relay(procs, tmp / f"c{ci}-bare", upstream.port, [], 1, "relay-bare")
                sinks = {v: sink if v == "baseline" else upstream for v in variants}
                ports = {"baseline": sink.port, **{v: r.port for v, r in relays.items()}}
                # calibration (doubles as warm-up): size each target's fixed count to ~`seconds`
                warm = max(sessions // 2, 200 // case.rcpts)
                for v, port in ports.items():
                    r = throughput_run(gen, port, case, warm, sessions, sinks[v], relays.get(v))
                    if not r["ok"]:
                        res[v].error = r["error"]
                        print(f"bench:   {v} warm-up failed: {r['error']}", flush=True)
                        continue
                    res[v].count = int(min(max(min_count, r["msgs_per_s"] * seconds), 200_000))
                for i in range(rounds):
                    for v, port in ports.items():
                        if res[v].error:
                            continue
                        r = throughput_run(gen, port, case, res[v].count, sessions, sinks[v], relays.get(v))
                        res[v].rounds.append(r)
                        if not r["ok"]:
                            res[v].error = r["error"]
                        elif r["sink_copies"] != r["expected_copies"]:
                            notes.append(f"{case.label} {v} round {i + 1}: sink counted {r['sink_copies']} "
                                         f"copies, expected {r['expected_copies']}")
                        print(f"bench:   round {i + 1} {v:9} {r['sent']:6d} msgs {r['elapsed']:6.2f}s "
                              f"{r['msgs_per_s']:8.1f} msg/s {r['copies_per_s']:9.1f} copies/s  cpu relay "
                              f"{fmt(r['cpu_relay_pct'])}% sink {r['cpu_sink_pct']:.0f}% load {r['cpu_load_pct']:.0f}%"
                              f"{'  ERROR ' + r['error'] if not r['ok'] else ''}", flush=True)
                for v, port in ports.items():
                    mps = res[v].median("msgs_per_s")
                    if not mps:
                        continue
                    lat = latency_run(port, case, mps / 2, lat_seconds, min_lat_samples, sessions)
                    res[v].latency = lat
                    print(f"bench:   latency {v:9} at {mps / 2:7.1f} msg/s: p50 {lat['p50_ms']} ms, "
                          f"p99 {lat['p99_ms']} ms ({lat['samples']} samples, {lat['errors']} errors)", flush=True)
                for v, relay in relays.items():
                    res[v].rss_kib, res[v].nprocs = relay.peak_rss_kib()
                    lag = relay.metric("relay_event_loop_lag_max_seconds", asks=1 if relay.workers == 1 else 8)
                    res[v].lag_ms = lag * 1000 if lag is not None else None
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one broken case must not lose the others' figures
                why = str(exc).splitlines()[0][:300]
                tail = [ln for ln in str(exc).splitlines() if ln.strip()][-1:] if "\n" in str(exc) else []
                notes.append(f"case {case.label} failed: {why}" + (f" … {tail[0][:200]}" if tail else ""))
                print(f"bench:   case failed: {exc}", file=sys.stderr, flush=True)
                for vr in res.values():
                    vr.error = vr.error or "case failed, see notes"
            finally:
                for relay in relays.values():
                    procs.stop(relay.proc)
        elapsed = time.monotonic() - t_start
        section = render(started, elapsed, command, listed, stages, gen, sessions, rounds, seconds, lat_seconds,
                         cases, results, dkim, notes, machine_info(), args.quick, upstream_name, resources,
                         "a text+HTML newsletter of the case's size, quoted-printable (bench/payload.py; smtp-source -F)"
                         if args.payload == "newsletter" else "smtp-source's own lines of X (-l size)")
        out = Path(args.out)
        with open(out, "a") as fh:
            if out.stat().st_size == 0:
                fh.write("# consent-relay benchmark results\n\nEach run of `bench/run.py` appends a section "
                         "(newest last). See bench/README.md.\n")
            fh.write("\n" + section)
        print(section)
        print(f"bench: appended to {out} ({elapsed:.0f}s)")
        return 0
    except KeyboardInterrupt:
        print("bench: interrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def fmt(x: float | None, nd: int = 0) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.{nd}f}"


def render(started, elapsed, command, listed, stages, gen, sessions, rounds, seconds, lat_seconds, cases, results,
           dkim, notes, mi, quick, upstream_name="bench/sink.py (aiosmtpd)", resources=None,
           payload_desc="smtp-source -l (X lines)") -> str:
    L: list[str] = []
    L.append(f"## {started.strftime('%Y-%m-%d %H:%M UTC')}{' (quick)' if quick else ''}\n")
    L.append(f"- command: `{command}` (took {elapsed:.0f} s)")
    L.append(f"- machine: {mi['nproc']} CPUs, {mi['cpu']}, {mi['mem']} RAM, Linux {mi['kernel']}")
    L.append(f"- Python {mi['python']}; " + ", ".join(f"{k} {v}" for k, v in mi["packages"].items())
             + f"; {mi['openssl']}")
    L.append(f"- stages listed by `relay stages`: {', '.join(f'`{s}`' for s in listed)}; "
             f"**on in this run**: {', '.join(f'`{s}`' for s in stages)}")
    L.append(f"- load: {gen}{' (' + SMTP_SOURCE + ')' if gen == 'smtp-source' else ''}, {sessions} concurrent "
             f"sessions, connections reused (-d); {rounds} interleaved round(s) per case, median; each target's "
             f"message count fixed per case from a warm-up run to last ~{seconds:g} s")
    L.append(f"- payload: {payload_desc}")
    L.append(f"- latency: bench/loadgen.py paced at half of each target's measured msgs/s for ~{lat_seconds:g} s; "
             "time from sending the final `.` to the reply")
    L.append(f"- relay: `relay --config <tmp>/relay.toml serve [--workers 2]`, upstream (pool_size 8) = {upstream_name}, "
             "counting what it receives; baseline = the load generator straight at bench/sink.py (bare aiosmtpd)")
    L.append("- CPU: % of one core used by the relay (all its processes) / the sink it sends to / the load generator; "
             f"ceiling = the msgs/s at which that CPU per message would fill all {mi['nproc']} cores (relay, sink "
             "and load generator share this machine)")
    L.append("- peak RSS = sum of VmHWM of every relay process (with --workers 2: both workers and their parent)\n")
    L.append("| case | target | msgs | msgs/s | copies/s (at sink) | vs baseline | w2 / w1 | p50 ms | p99 ms "
             "| at msgs/s | peak RSS MiB (procs) | loop lag max ms | CPU % relay / sink / load | ceiling msgs/s | rounds msgs/s |")
    L.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
    for case in cases:
        res = results.get(case.label)
        if not res:
            continue
        base = res["baseline"].median("msgs_per_s")
        w1 = res["relay"].median("msgs_per_s")
        for v, vr in res.items():
            mps, cps = vr.median("msgs_per_s"), vr.median("copies_per_s")
            ratio = f"{mps / base:.2f}×" if mps and base and v != "baseline" else ""
            w2w1 = f"{mps / w1:.2f}×" if v == "relay-w2" and mps and w1 else ""
            lat = vr.latency or {}
            rss = f"{vr.rss_kib / 1024:.0f} ({vr.nprocs})" if vr.rss_kib else ("—" if v == "baseline" else "n/a")
            rr = ", ".join(f"{r['msgs_per_s']:.0f}" for r in vr.rounds if r["ok"])
            cr = vr.median("cpu_relay_pct") if v != "baseline" else None
            cs, cl = vr.median("cpu_sink_pct"), vr.median("cpu_load_pct")
            cpu = f"{fmt(cr)} / {fmt(cs)} / {fmt(cl)}"
            used = (cr or 0) + (cs or 0) + (cl or 0)
            ceiling = fmt(mps * mi["nproc"] * 100 / used, 0) if mps and used else "n/a"
            err = f" ERROR: {vr.error[:80]}" if vr.error else ""
            L.append(f"| {case.label} | {v} | {vr.count} | {fmt(mps, 1)} | {fmt(cps, 0)} | {ratio} | {w2w1} "
                     f"| {fmt(lat.get('p50_ms'), 1)} | {fmt(lat.get('p99_ms'), 1)} | {fmt(lat.get('rate'), 0)} "
                     f"| {rss} | {fmt(vr.lag_ms, 1) if v != 'baseline' else '—'} | {cpu} | {ceiling} | {rr}{err} |")
    L.append("")
    if "error" in dkim:
        L.append(f"DKIM (bench/dkim_bench.py): failed: {dkim['error']}\n")
    else:
        L.append(f"DKIM per copy (bench/dkim_bench.py, {dkim['message_bytes']}-byte message): "
                 f"`DkimSigner.sign` {dkim['dkim_us']:.0f} µs vs raw OpenSSL `key.sign(PKCS1v15, SHA256)` "
                 f"{dkim['raw_us']:.0f} µs → {dkim['ratio']:.2f}×\n")

    res = resources or {"error": "not run"}
    if "error" in res:
        L.append(f"Resources: failed: {res['error']}\n")
    else:
        L.append("| resource figure (fresh one-process relay each) | got | target |")
        L.append("|---|---|---|")
        L.append(f"| peak RSS, 200 concurrent sessions, 2,000 × 10 KB | {res['s200_rss_mib']:.0f} MiB "
                 f"({res['s200_msgs_per_s']:.0f} msgs/s{', ERROR ' + res['s200_error'] if not res['s200_ok'] else ''})"
                 f" | ≤ 300 MB: **{'met' if res['s200_rss_mib'] * 1.048576 <= 300 else 'missed'}** |")
        L.append(f"| one 25,000,000-byte message: peak RSS above the idle relay | {res['big_extra_mib']:.0f} MiB = "
                 f"{res['big_ratio']:.1f}× its size, relayed in {res['big_s']:.1f} s"
                 f"{' ERROR ' + res['big_error'] if not res['big_ok'] else ''} | ≤ 5×: **{'met' if res['big_ratio'] <= 5 else 'missed'}** |")
        L.append(f"| worst event-loop timer delay (50 ms timer, relay /metrics; all sessions' work queued "
                 f"ahead of it): 25 MB message; 200 sessions flat out | "
                 f"{res['lag_max_ms']:.1f} ms; {res['s200_lag_max_ms']:.1f} ms | — |")
        if "step_big_ms" in res:
            L.append(f"| longest single event-loop step (asyncio debug mode, which slows each step): 25 MB message; "
                     f"10 KB newsletters at 100 msgs/s ({res['steps_small_over']} steps over 5 ms) | "
                     f"{res['step_big_ms']:.0f} ms; {res['step_small_ms']:.0f} ms | a few ms |")
            L.append(f"| … where those steps stopped | {res['step_where'] or 'none over 5 ms'} | |")
        L.append("")

    def get(label, v, key):
        r = results.get(label)
        return r[v].median(key) if r else None

    t = {}
    b, r1, r2 = (get("10 KB, 1 rcpt", v, "msgs_per_s") for v in ("baseline", "relay", "relay-w2"))
    t["t1"] = (r1 / b if r1 and b else None, 0.40, f"{r1 / b:.0%} of bare sink" if r1 and b else "n/a", "ge")
    t["t2"] = (r2 / r1 if r1 and r2 else None, 1.7, f"{r2 / r1:.2f}×" if r1 and r2 else "n/a", "ge")
    c2 = get("10 KB, 100 rcpt", "relay-w2", "copies_per_s")
    t["t3"] = (c2, 1500, f"{c2:,.0f} copies/s" if c2 else "n/a", "ge")
    dr = dkim.get("ratio")
    t["t4"] = (dr, 1.5, f"{dr:.2f}×" if dr else "n/a", "le")
    p99s = [(results.get("10 KB, 1 rcpt") or {}).get(v) for v in ("relay", "relay-w2")]
    p99s = [x.latency["p99_ms"] for x in p99s if x and x.latency and x.latency.get("p99_ms") is not None]
    worst = max(p99s) if len(p99s) == 2 else None
    t["t5"] = (worst, 50.0, f"worst p99 {worst:.1f} ms" if worst is not None else "n/a", "le")
    L.append("| target | got | |")
    L.append("|---|---|---|")
    for k, (val, lim, shown, how) in t.items():
        if val is None:
            verdict = "n/a"
        else:
            verdict = "**met**" if (val >= lim if how == "ge" else val <= lim) else "**missed**"
        L.append(f"| {TARGETS_TEXT[k]} | {shown} | {verdict} |")
    L.append("")
    L += bounds(results, mi["nproc"])
    for n in notes:
        L.append(f"- note: {n}")
    if notes:
        L.append("")
    return "\n".join(L) + "\n"


def bounds(results: dict, cores: int) -> list[str]:
    """What bounds the first two targets, from this run's own figures (10 KB, 1 rcpt)."""
    res = results.get("10 KB, 1 rcpt") or {}
    med = {v: r.median("msgs_per_s") for v, r in res.items()}
    cpu = {v: (r.median("cpu_relay_pct"), r.median("cpu_sink_pct"), r.median("cpu_load_pct")) for v, r in res.items()}
    out = []
    b, one, bare, two = (med.get(v) for v in ("baseline", "relay", "relay-bare", "relay-w2"))
    if b and one and bare:
        allowed, backbone, stages = 1000 / (0.4 * b), 1000 / bare, 1000 / one - 1000 / bare
        out.append(f"- what bounds one process: the relay with no stage at all (relay-bare) reached {bare / b:.2f}× "
                   f"of the baseline. At 40 % a message may cost {allowed:.2f} ms of the relay's time; relay-bare "
                   f"takes {backbone:.2f} ms, which leaves {allowed - backbone:.2f} ms for every stage together; "
                   f"the stages took {stages:.2f} ms (1/relay − 1/relay-bare; each stage's share: "
                   f"bench/stage_costs.py). Its main thread holds the GIL for nearly all of that time.")
    if one and two and all(cpu.get("relay-w2", (None,))) and cpu.get("relay", (None,))[0]:
        r2, s2, l2 = cpu["relay-w2"]
        r1 = cpu["relay"][0]
        room = cores * 100 - s2 - l2
        per_msg2 = r2 * 10 / two  # ms of CPU per message with two workers
        most = room * 10 / per_msg2  # msgs/s the CPU the sink and load generator leave would carry
        out.append(f"- what bounds two workers: relay-w2 used {r2:.0f} % CPU, its upstream sink {s2:.0f} % and the "
                   f"load generator {l2:.0f} %: {r2 + s2 + l2:.0f} % of {cores * 100} %, the machine is full. At "
                   f"{per_msg2:.2f} ms of CPU per message, the {room:.0f} % the sink and the load generator leave "
                   f"carry at most {most:,.0f} msgs/s = {most / one:.2f}× of one process; 1.7× needs at most "
                   f"{room * 10 / (1.7 * one):.2f} ms. One process took {r1 * 10 / one:.2f} ms of CPU per message "
                   f"({r1:.0f} % CPU); its rate is set by its event loop's thread, which holds the GIL.")
    return out + ([""] if out else [])


if __name__ == "__main__":
    sys.exit(main())
