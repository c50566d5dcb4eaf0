"""Reliability, CI-sized (bench/reliability.py is the full run): `relay serve` in a subprocess is
kill -9'ed under load, its upstream misbehaves (Postfix smtp-sink), its SQLite database is locked.
Nothing answered 250 may be missing at the upstream. About 40 s in all."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import reliability as rel  # noqa: E402  (bench/reliability.py)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    e = rel.Env(tmp_path_factory.mktemp("reliability"))
    try:
        yield e
    finally:
        e.close()


def test_kill9_under_load_loses_no_accepted_message(env: rel.Env) -> None:
    c = rel.crash_test(env, n=300, kills=2, sessions=8, budget=40, seed=7)
    assert c["kills"] == 2, c
    assert c["not_acked"] == 0, f"only {c['acked']}/300 answered 250 within the budget: {c['retried']}"
    assert c["lost"] == 0, f"answered 250 but not at the upstream: {c['missing_sample']}"
    assert not c["leaked"], c["leaked"][:3]
    assert c["integrity"] == "ok"
    print(f"\ncrash: {c['acked']} acked, 0 lost, {c['duplicates']} duplicate(s), retried {c['retried']}, "
          f"restarts {[round(x, 1) for x in c['restart_s']]} s")


@pytest.mark.skipif(not rel.SMTP_SINK, reason="Postfix smtp-sink is not installed")
def test_upstream_tempfail_drop_and_slow_reply_then_retry_delivers(env: rel.Env) -> None:
    wanted = ("4xx on final dot", "hang-up after final dot", "dot reply after 5s")
    cases = [c for c in rel.UPSTREAM_CASES if c[0].startswith(wanted)]
    assert len(cases) == 3
    for item in rel.upstream_faults(env, cases, prefix="t"):
        first, retry = item["first"], item["retry"]
        assert first.stage == "dot" and first.status == rel.UPSTREAM_DOWN, (item["case"], first)
        assert not rel.leaks_internals(first.text), first.text
        assert first.seconds < 10, (item["case"], first)  # [upstream] timeout = 2
        assert retry.code == 250 and item["arrived"] == 1, (item["case"], retry, item["arrived"])


def test_sqlite_write_lock_is_451_430_then_recovers(env: rel.Env) -> None:
    r = rel.sqlite_lock_test(env, hold=6.5, prefix="tl")
    locked = r["locked"]
    assert locked.status == rel.INTERNAL, locked
    assert 4.0 < locked.seconds < 6.5 + 5, locked  # the 5 s busy timeout, not a hang
    assert r["arrived_while_locked"] == 0
    assert r["after"].code == 250, r["after"]
    assert r["no_consent"].status == rel.NO_CONSENT, r["no_consent"]  # the consent stage was on throughout
    assert r["arrived"] == 1
