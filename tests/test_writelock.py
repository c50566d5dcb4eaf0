"""The hot path's SQLite writers take turns through a lock file (storage.writelock), across processes and forks."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import datetime, timezone

import threading

import pytest
from sqlalchemy import create_engine

from storage import Store, upgrade
from storage.engine import BUSY_TIMEOUT_MS
from storage.store import CALL_TIMEOUT
from storage import writelock
from storage.writelock import WriteQueue, queue_for

HOLD_S = 0.5
# a process that holds the turn of `path` for HOLD_S, saying when it has it
HOLDER = textwrap.dedent(f"""
    import sys, time
    from storage.writelock import WriteQueue
    with WriteQueue(sys.argv[1]).turn():
        print("holding", flush=True)
        time.sleep({HOLD_S})
""")
# a process that tries the lock without waiting: "busy" while someone has the turn
PROBE = textwrap.dedent("""
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("busy")
    else:
        print("free")
""")


def _python(code: str, *args: str, **kw) -> subprocess.Popen:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=root, stdout=subprocess.PIPE, text=True, **kw)


def _probe(path: str) -> str:
    p = _python(PROBE, path)
    out, _ = p.communicate(timeout=30)
    return out.strip()


def test_a_turn_excludes_another_process_and_ends_with_the_body(tmp_path) -> None:
    path = str(tmp_path / "relay.db-writers")
    queue = WriteQueue(path)
    with queue.turn():
        assert _probe(path) == "busy"
    assert _probe(path) == "free"
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_turn_is_given_back_when_the_body_raises(tmp_path) -> None:
    path = str(tmp_path / "relay.db-writers")
    queue = WriteQueue(path)
    with pytest.raises(RuntimeError):
        with queue.turn():
            raise RuntimeError("the transaction failed")
    assert _probe(path) == "free"
    with queue.turn():  # and the threads' lock too
        pass


def test_a_forked_worker_waits_for_its_parents_turn(tmp_path) -> None:
    """flock belongs to the open file, which fork shares: without the child's own open file the
    worker would take the turn its parent holds at once."""
    path = str(tmp_path / "relay.db-writers")
    queue = WriteQueue(path)
    with queue.turn():
        pass  # the parent has opened its file before forking, as a relay's parent may have
    read, write = os.pipe()
    with queue.turn():
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                os.close(read)
                with queue.turn():
                    os.write(write, b"%f" % (time.monotonic() - started))
            finally:
                os._exit(0)
        os.close(write)
        time.sleep(HOLD_S)
    try:
        ready, _, _ = select.select([read], [], [], 10)
        if not ready:  # stuck on a lock it inherited in the held state
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the forked worker never got its turn")
        said = os.read(read, 64)
        assert said, "the forked worker failed before it had its turn"
        waited = float(said)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert waited >= HOLD_S * 0.9


def test_the_hot_path_writes_wait_for_a_turn_held_by_another_relay(fresh_database_url: Callable[[], str]) -> None:
    url = fresh_database_url()
    upgrade(url)
    store = Store(url)
    try:
        if store.engine.dialect.name != "sqlite":
            assert queue_for(store.engine).path is None  # PostgreSQL wakes its own waiters
            return
        path = queue_for(store.engine).path
        assert path == os.path.abspath(store.engine.url.database) + "-writers"
        now = datetime.now(timezone.utc)
        row = {"client": "acme", "recipient": "a@example.org", "stage": "delivery", "rule": "",
               "verdict": "deliver", "queue_id": "Q1", "at": now}
        for write in (lambda: store.write_batch([row], []),
                      lambda: store.change_account_state("acme", "warned", "active", "test", "why", "", now)):
            holder = _python(HOLDER, path)
            try:
                assert holder.stdout.readline().strip() == "holding"
                started = time.monotonic()
                write()
                waited = time.monotonic() - started
            finally:
                holder.communicate(timeout=30)
            assert waited >= HOLD_S * 0.5, f"wrote after {waited:.3f} s, while another process had the turn"
        assert [r.recipient for r in store.audit_rows("acme")] == ["a@example.org"]
        assert store.account_states() == {"acme": "warned"}
    finally:
        store.close()


def test_other_databases_have_no_lock_file() -> None:
    for url in ("postgresql+psycopg://postgres@127.0.0.1:5432/test", "sqlite://", "sqlite:///:memory:"):
        engine = create_engine(url)
        try:
            assert queue_for(engine).path is None
            with queue_for(engine).turn():
                pass
        finally:
            engine.dispose()


def test_threads_of_one_process_take_turns_and_a_nested_turn_goes_on(tmp_path) -> None:
    """The threads share one open file, so flock alone would let them all in at once."""
    queue = WriteQueue(str(tmp_path / "relay.db-writers"))
    got: list[float] = []
    with queue.turn():
        with queue.turn():  # a write inside a write: no deadlock
            pass
        started = time.monotonic()

        def write() -> None:
            with queue.turn():
                got.append(time.monotonic() - started)

        other = threading.Thread(target=write)
        other.start()
        time.sleep(HOLD_S)
    other.join(timeout=10)
    assert got and got[0] >= HOLD_S * 0.9


def test_a_holder_that_never_lets_go_delays_writes_by_the_bound_only(tmp_path) -> None:
    """A stopped or hung process with the turn must not stall the other workers' writes for good:
    past the wait (WAIT_S) they write without it (SQLite's own lock still guards the file)."""
    # with SQLite's own busy timeout after it, still under the store's call bound
    assert writelock.WAIT_S + BUSY_TIMEOUT_MS / 1000 < CALL_TIMEOUT
    path = str(tmp_path / "relay.db-writers")
    holder = _python(HOLDER.replace(f"time.sleep({HOLD_S})", "time.sleep(30)"), path)
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with WriteQueue(path, wait=0.3).turn():
            waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    assert 0.25 <= waited < 5


def test_an_unusable_lock_file_leaves_the_writes_to_sqlite(tmp_path, caplog) -> None:
    queue = WriteQueue(str(tmp_path / "no-such-dir" / "relay.db-writers"))
    ran = []
    with queue.turn():
        ran.append(1)
    with queue.turn():
        ran.append(2)
    assert ran == [1, 2]
    assert [r.getMessage() for r in caplog.records if "unusable" in r.getMessage()][:1], caplog.text
    assert len([r for r in caplog.records if "unusable" in r.getMessage()]) == 1  # said once
