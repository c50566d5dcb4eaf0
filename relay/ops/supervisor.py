"""The parent of `relay serve --workers N`: forks the workers, restarts a dead one with a back-off and
says why it died, passes SIGHUP on once the new file has been checked, stops them all on SIGTERM."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Callable

from relay.config import Config, ConfigError

log = logging.getLogger("relay.supervisor")
SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
FIRST_DELAY, MAX_DELAY = 0.5, 30.0   # restart back-off: 0.5 s, doubling, at most 30 s
STEADY = 30.0                        # a worker that lived this long starts the back-off again


def metrics_dir() -> str:
    """A fresh directory for prometheus-client's multiprocess files, set before it is imported
    (it picks its value class at import time). Fresh, so no earlier run's counters are summed in."""
    path = tempfile.mkdtemp(prefix="relay-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name}" + (" (out of memory? see the kernel log)" if sig == signal.SIGKILL else "")
    return f"exited with status {os.WEXITSTATUS(status)}"


class Supervisor:
    def __init__(self, config: Config, workers: int, worker_main: Callable[[int, Callable[[], None]], None]):
        self.config, self.workers, self.worker_main = config, workers, worker_main
        self.slots: dict[int, int] = {}        # pid -> slot
        self.started: dict[int, float] = {}    # pid -> when it was forked
        self.ready: set[int] = set()           # pids that are serving
        self.failures: dict[int, int] = {}     # slot -> deaths in a row
        self.pending: dict[int, float] = {}    # slot -> when to start it again
        self.stopping = False
        self.status = 0

    def run(self) -> int:
        from relay.base.maillog import apply_settings

        apply_settings(self.config.ops.log_format, self.config.ops.log_mail)  # the parent's lines too
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        self.ready_r, self.ready_w = os.pipe()
        os.set_blocking(self.ready_r, False)
        try:
            for slot in range(self.workers):
                self.spawn(slot, old_mask)
            while self.slots or (self.pending and not self.stopping):
                self.step(old_mask)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            os.close(self.ready_r)
            os.close(self.ready_w)
        return self.status

    def spawn(self, slot: int, old_mask: set[signal.Signals]) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(self.ready_r)
            for sig in SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            ready_w = self.ready_w
            code = 1
            try:
                self.worker_main(slot, lambda: os.write(ready_w, f"{os.getpid()}\n".encode()))
                code = 0
            except BaseException as exc:  # noqa: BLE001 - a worker's last word, never a traceback
                print(f"relay: worker {os.getpid()} stopped: {one_line_error(exc)}", file=sys.stderr, flush=True)
            finally:
                os._exit(code)
        self.slots[pid], self.started[pid] = slot, time.monotonic()

    def step(self, old_mask: set[signal.Signals]) -> None:
        now = time.monotonic()
        wait = min([0.5, *(max(0.0, at - now) for at in self.pending.values())])
        info = signal.sigtimedwait(SIGNALS, wait)
        self.read_ready()
        if info is not None:
            if info.si_signo in (signal.SIGTERM, signal.SIGINT):
                self.stop_all()
            elif info.si_signo == signal.SIGHUP:
                self.reload()
        self.reap()
        now = time.monotonic()
        for slot, at in list(self.pending.items()):
            if at <= now and not self.stopping:
                del self.pending[slot]
                self.spawn(slot, old_mask)

    def read_ready(self) -> None:
        try:
            data = os.read(self.ready_r, 4096)
        except BlockingIOError:
            return
        for line in data.split():
            self.ready.add(int(line))

    def stop_all(self) -> None:
        self.stopping = True
        self.pending.clear()
        for pid in self.slots:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def reload(self) -> None:
        """Check the file once here, so a bad one is one log line, not one per worker."""
        from relay.ops.reload import load_checked

        try:
            load_checked(self.config)
        except (ConfigError, OSError, ValueError) as exc:
            log.error("reload refused, keeping the running configuration: %s", str(exc).splitlines()[0])
            return
        for pid in self.slots:
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                pass

    def reap(self) -> None:
        while self.slots:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.read_ready()  # a worker's "ready" may still sit in the pipe
            slot = self.slots.pop(pid)
            lived = time.monotonic() - self.started.pop(pid)
            was_ready = pid in self.ready
            self.ready.discard(pid)
            self.mark_dead(pid)
            if self.stopping:
                if status and not self.status and not was_ready:
                    self.status = 1
                continue
            why = describe(status)
            if not was_ready:
                # it never served: a port, the database or a file is wrong, and a restart
                # would only fail again; a half-started service is worse than a stopped one
                log.error("worker %d (pid %d) failed at start-up (%s); stopping", slot, pid, why)
                self.status = 1
                self.stop_all()
                continue
            failures = 0 if lived >= STEADY else self.failures.get(slot, 0) + 1
            self.failures[slot] = failures
            delay = min(MAX_DELAY, FIRST_DELAY * 2 ** failures)
            log.error("worker %d (pid %d) died after %.0f s: %s; restarting it in %.1f s",
                      slot, pid, lived, why, delay)
            self.pending[slot] = time.monotonic() + delay

    @staticmethod
    def mark_dead(pid: int) -> None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)


def supervise(config: Config, workers: int, worker_main: Callable[[int, Callable[[], None]], None]) -> int:
    try:
        return Supervisor(config, workers, worker_main).run()
    finally:
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
        if os.path.basename(path).startswith("relay-metrics-"):
            shutil.rmtree(path, ignore_errors=True)


def one_line_error(exc: BaseException) -> str:
    """An exception as one line for the log: the OS error text, else the type and first line."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
