"""`relay serve --workers auto` (the default): one process per CPU the relay may run on."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess

import pytest

from conftest import free_port
from relay.base.cpus import SQLITE_AUTO_WORKERS, auto_workers, usable_cpus
from test_cli_and_demo import RELAY, demo_config, run_relay, wait_port

WORKER_LINE = re.compile(r"^relay: SMTP .*\(pid (\d+)\)$", re.M)


def test_auto_is_the_affinity_mask_and_at_most_two_on_sqlite():
    cpus = len(os.sched_getaffinity(0))
    assert usable_cpus() == cpus
    assert auto_workers("postgresql+psycopg://u@h/db") == cpus
    assert auto_workers("sqlite:////tmp/relay.db") == min(cpus, SQLITE_AUTO_WORKERS)


def test_help_says_auto_is_the_default(tmp_path):
    result = run_relay("serve", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--workers AUTO|N" in result.stdout and "[default: auto]" in result.stdout, result.stdout


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) not installed")
def test_serve_started_on_one_cpu_runs_one_process(tmp_path):
    """The CPUs the relay may use, not the machine's: pinned to one CPU it does not fork."""
    smtp_port = free_port()
    demo_config(tmp_path, smtp_port, free_port())
    proc = subprocess.Popen(["taskset", "-c", str(min(os.sched_getaffinity(0))), *RELAY, "--config", "relay.toml",
                             "serve"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(smtp_port, proc)
        # the line comes once SIGTERM is handled (a signal between listen() and then would kill it)
        first = proc.stdout.readline() if proc.stdout else ""
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert [int(pid) for pid in WORKER_LINE.findall(first + out)] == [proc.pid], out  # the process itself serves
