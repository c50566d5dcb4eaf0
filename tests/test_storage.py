"""Tests for the storage package: migrations, audit log, spool leases (SQLite and PostgreSQL)."""

from fixtures_db import *  # noqa: F403  (standalone until tests/conftest.py star-imports it)

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

from storage import AuditEntry, Store, current_revision, make_engine, upgrade
from storage.migrate import head_revision
from storage.models import Suppression

T0 = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
CET = timezone(timedelta(hours=1))


def _decision(client: str, recipient: str, **extra: object) -> dict[str, object]:
    row: dict[str, object] = {"client": client, "recipient": recipient, "stage": "consent",
                              "rule": "consent.required", "verdict": "accept", "queue_id": "Q1"}
    return row | extra


def _copy(recipient: str, **extra: object) -> dict[str, object]:
    row: dict[str, object] = {"queue_id": "Q1", "client": "acme", "mail_from": "news@acme.test",
                              "recipient": recipient, "data": b"Subject: hi\r\n\r\nbody\r\n"}
    return row | extra


@pytest.fixture
def fresh_store(fresh_database_url: Callable[[], str]):
    url = fresh_database_url()
    upgrade(url)
    s = Store(url)
    yield s
    s.close()


# -- migrations ----------------------------------------------------------------

def test_fresh_database_upgrades_to_head(fresh_database_url: Callable[[], str]) -> None:
    engine = make_engine(fresh_database_url())
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        insp = inspect(engine)
        assert {"audit_log", "spool", "alembic_version"} <= set(insp.get_table_names())
        assert {i["name"] for i in insp.get_indexes("audit_log")} == {
            "ix_audit_log_at", "ix_audit_log_queue_id", "ix_audit_log_client_at"}
        assert {i["name"] for i in insp.get_indexes("spool")} == {"ix_spool_next_attempt_at"}
    finally:
        engine.dispose()


def test_upgrade_twice_is_harmless_and_keeps_data(fresh_database_url: Callable[[], str]) -> None:
    url = fresh_database_url()
    upgrade(url)
    s = Store(url)
    try:
        s.record_decisions([_decision("acme", "a@x.test")])
        upgrade(url)
        upgrade(s.engine)
        assert current_revision(s.engine) == head_revision()
        assert len(s.audit_rows()) == 1
    finally:
        s.close()


def test_concurrent_upgrades_do_not_collide(fresh_database_url: Callable[[], str]) -> None:
    url = fresh_database_url()
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def go() -> None:
        try:
            barrier.wait()
            upgrade(url)
        except BaseException as exc:  # collected and asserted in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_migrations_match_models(fresh_database_url: Callable[[], str]) -> None:
    engine = make_engine(fresh_database_url())
    try:
        upgrade(engine)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, SQLModel.metadata) == []
    finally:
        engine.dispose()


def test_migration_0004_folds_suppressed_local_parts_and_merges_what_becomes_equal(
        fresh_database_url: Callable[[], str]) -> None:
    """Rows an older release stored with the local part as given: after the upgrade each is
    found in any case, and rows that fold together are one (the oldest), the rest audited."""
    url = fresh_database_url()
    upgrade(url, "0003")
    hour = timedelta(hours=1)
    old = [  # (scope, client, list, address, domain, reason, source, created_at), as 0003 stored them
        ("client", "acme", "", "Carol@example.org", "", "complaint", "fbl", T0),
        ("client", "acme", "", "carol@example.org", "", "manual", "cli", T0 + hour),
        ("client", "acme", "", "CAROL@example.org", "", "bounce", "import:x.txt", T0 + 2 * hour),
        ("global", "", "", "Carol@example.org", "", "do-not-contact", "cli", T0 + hour),
        ("list", "acme", "news", "Dave@example.org", "", "unsubscribe", "one-click", T0),
        ("list", "acme", "news", "Straße@example.org", "", "unsubscribe", "mailto", T0),
        ("client", "acme", "", "plain@example.org", "", "manual", "cli", T0),
        ("global", "", "", "", "example.net", "do-not-contact", "cli", T0),
    ]
    columns = ("scope", "client", "list_key", "address", "domain", "reason", "source", "created_at")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(Suppression.__table__), [dict(zip(columns, row)) for row in old])
    finally:
        engine.dispose()
    upgrade(url)
    s = Store(url)
    try:
        assert current_revision(s.engine) == head_revision()
        assert sorted((r.scope, r.client, r.list_key, r.address, r.domain, r.reason, r.created_at)
                      for r in s.suppressions()) == sorted([
            ("client", "acme", "", "carol@example.org", "", "complaint", T0),  # the oldest of three
            ("global", "", "", "carol@example.org", "", "do-not-contact", T0 + hour),
            ("list", "acme", "news", "dave@example.org", "", "unsubscribe", T0),
            ("list", "acme", "news", "strasse@example.org", "", "unsubscribe", T0),
            ("client", "acme", "", "plain@example.org", "", "manual", T0),
            ("global", "", "", "", "example.net", "do-not-contact", T0),
        ])
        merged = [(r.client, r.recipient, r.stage, r.rule, r.verdict) for r in s.audit_rows()]
        assert sorted(merged) == [("acme", "CAROL@example.org", "admin", "suppression.client", "merge"),
                                  ("acme", "carol@example.org", "admin", "suppression.client", "merge")]
        assert any("bounce (client:acme) via import:x.txt: merged into carol@example.org" in r.reason
                   for r in s.audit_rows())
        hit = s.suppression_for("acme", "cAROL@example.org", "example.org")
        assert hit is not None and (hit.scope, hit.reason) == ("global", "do-not-contact")
        assert s.suppression_for("other", "Plain@example.org", "example.org") is None
        assert s.suppression_for("acme", "PLAIN@example.org", "example.org") is not None
        assert s.list_lookup("acme", "news", ["DAVE@example.org"]).unsubscribed["DAVE@example.org"].reason == \
            "unsubscribe"
        # the unique index holds the folded rows: adding one again in another case changes nothing
        assert not s.suppress_add("client", "acme", "", "cArOl@example.org", "", "manual", "cli", T0)
        assert s.suppress_remove("client", "acme", "", "CAROL@EXAMPLE.ORG", "", "cli", T0)
        upgrade(url)  # and again: nothing left to fold
        assert len(s.suppressions()) == 5
    finally:
        s.close()


def test_sqlite_pragmas(fresh_database_url: Callable[[], str]) -> None:
    url = fresh_database_url()
    if not url.startswith("sqlite"):
        pytest.skip("SQLite only")
    engine = make_engine(url)
    try:
        upgrade(engine)  # turns foreign keys off while migrating; must restore them
        with engine.connect() as conn:
            pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("synchronous") == 2  # FULL
            assert pragma("busy_timeout") == 5000
            assert pragma("foreign_keys") == 1
    finally:
        engine.dispose()


def test_background_checkpoint_leaves_the_wal_to_the_store(fresh_database_url: Callable[[], str]) -> None:
    url = fresh_database_url()
    upgrade(url)
    store = Store(url, background_checkpoint=True)
    try:
        now = datetime.now(timezone.utc)
        for n in range(3):
            store.write_batch([_decision("acme", f"r{n}@example.org", at=now)], [])
        store.checkpoint()  # PostgreSQL: nothing to do, and no error
        if store.engine.dialect.name != "sqlite":
            return
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
            store.write_batch([_decision("acme", "late@example.org", at=now)], [])
            # (busy, frames in the WAL, frames copied): commits left the new frames in the WAL ...
            busy, frames, copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
            assert busy == 0 and frames > 0 and copied == frames
        assert [r.recipient for r in store.audit_rows("acme")].count("late@example.org") == 1
    finally:
        store.close()


# -- store basics --------------------------------------------------------------

def test_ping(store: Store, tmp_path) -> None:
    store.ping()
    broken = Store(f"sqlite:///{tmp_path}/missing/dir/relay.db")
    try:
        with pytest.raises(OperationalError):
            broken.ping()
    finally:
        broken.close()


def test_run_uses_executor(store: Store) -> None:
    async def main() -> int:
        await store.run(store.ping)
        return await store.run(store.spool_count)

    assert isinstance(asyncio.run(main()), int)


def test_run_keeps_a_cancellation_that_arrives_as_the_call_completes(store: Store) -> None:
    # Python 3.11's asyncio.wait_for returned the result here and dropped the cancellation, so a
    # background task cancelled at shutdown went on running (RunningRelay.stop waited 5 s for it)
    finished = threading.Event()

    def call() -> int:
        finished.set()
        return 1

    async def main() -> None:
        task = asyncio.create_task(store.run(call))
        await asyncio.sleep(0)  # the call is in the store's thread
        assert finished.wait(5)
        time.sleep(0.05)  # the loop is busy: the result's hand-over is queued behind this step
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_hot_path_reads_run_on_the_loop_thread_and_a_lock_sends_them_to_a_thread(
        fresh_database_url: Callable[[], str]) -> None:
    """SQLite: Store.read runs on the event loop's own connection (no thread hop); when that meets
    a lock it gives up within milliseconds and the read waits on a store thread, not on the loop."""
    import sqlite3

    from storage.hotpath import LOOP_READ_BUSY_MS

    url = fresh_database_url()
    upgrade(url)
    store = Store(url)
    threads: list[int] = []
    store.sql.listeners.append(lambda _text: threads.append(threading.get_ident()))

    async def main() -> tuple[object, float, float]:
        locker = None
        if url.startswith("sqlite"):
            # an exclusive-locking writer keeps every other connection out, readers too, in WAL
            # mode; it must be the database's only user when it takes the lock
            locker = sqlite3.connect(store.engine.url.database, check_same_thread=False, isolation_level=None)
            locker.execute("PRAGMA locking_mode=EXCLUSIVE")
            locker.execute("BEGIN EXCLUSIVE")
            locker.execute("DELETE FROM suppression WHERE address = 'nobody@example.org'")
            asyncio.get_running_loop().call_later(0.6, lambda: (locker.execute("COMMIT"), locker.close()))
        if not store.open_loop_reader():
            return "not sqlite", 0.0, 0.0
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        try:
            tick = asyncio.create_task(ticker())
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            result = await store.read(store.suppression_for, "acme", "a@example.org", "example.org")
            waited = time.perf_counter() - t0
            tick.cancel()
            # tried here first, then answered by a store thread once the lock was gone
            assert threads[0] == threading.get_ident() and threads[-1] != threads[0]
            # no lock: the read runs here, on the loop's thread
            assert await store.read(store.suppression_for, "acme", "b@example.org", "example.org") is None
            assert threads[-1] == threading.get_ident()
            return result, waited, max(gaps)
        finally:
            store.close_loop_reader()

    try:
        result, waited, worst_gap = asyncio.run(main())
    finally:
        store.close()
    if result == "not sqlite":
        assert not url.startswith("sqlite"), "a SQLite file database must get a loop reader"
        return
    assert result is None and waited >= 0.4  # answered once the lock was gone
    # the loop kept ticking: the attempt on its own connection gave up after LOOP_READ_BUSY_MS
    # (had the loop waited for the lock itself, one gap would be about half a second)
    assert LOOP_READ_BUSY_MS <= 50 and worst_gap < 0.01 + LOOP_READ_BUSY_MS / 1000 + 0.25, worst_gap


# -- audit log -----------------------------------------------------------------

def test_audit_round_trip_with_aware_times(store: Store) -> None:
    client = f"audit-{id(store)}"
    # Mixed keys across rows and a non-UTC offset on input.
    store.record_decisions([
        _decision(client, "a@x.test", at=T0),
        _decision(client, "b@x.test", at=T0.astimezone(CET), verdict="reject", code=550,
                  status="5.7.1", reason="no consent", message_id="<m1@x>", list_key="news"),
        _decision(client, "c@x.test", at=T0 + timedelta(hours=1)),
    ])
    rows = store.audit_rows(client=client)
    assert [r.recipient for r in rows] == ["a@x.test", "b@x.test", "c@x.test"]
    assert all(isinstance(r, AuditEntry) for r in rows)
    assert rows[0].at == T0 and rows[0].at.tzinfo == timezone.utc
    assert rows[1].at == T0 and rows[1].at.utcoffset() == timedelta(0)
    assert (rows[1].verdict, rows[1].code, rows[1].status, rows[1].list_key) == ("reject", 550, "5.7.1", "news")
    assert rows[0].code is None and rows[0].reason == ""
    assert rows[0].id is not None and rows[0].id < rows[1].id < rows[2].id

    later = store.audit_rows(client=client, since=T0 + timedelta(minutes=30))
    assert [r.recipient for r in later] == ["c@x.test"]
    assert store.audit_rows(client=client + "-other") == []


def test_default_audit_time_is_now(store: Store) -> None:
    client = f"now-{id(store)}"
    before = datetime.now(timezone.utc)
    store.record_decisions([_decision(client, "a@x.test")])
    (row,) = store.audit_rows(client=client)
    assert before - timedelta(seconds=1) <= row.at <= datetime.now(timezone.utc)


def test_naive_datetime_is_rejected(store: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        store.record_decisions([_decision("naive", "a@x.test", at=datetime(2025, 1, 1))])


# -- spool ---------------------------------------------------------------------

def test_spool_add_claim_retry_done(fresh_store: Store) -> None:
    s = fresh_store
    s.spool_add([_copy("a@x.test", next_attempt_at=T0), _copy("b@x.test", next_attempt_at=T0 + timedelta(minutes=5))])
    assert s.spool_count() == 2

    (a,) = s.spool_claim_due(T0, limit=10, lease_seconds=60)
    assert a.recipient == "a@x.test" and a.data.startswith(b"Subject: hi")
    assert a.lease_until == T0 + timedelta(seconds=60) and a.attempts == 0
    assert a.created_at.tzinfo == timezone.utc
    assert s.spool_claim_due(T0, limit=10, lease_seconds=60) == []  # leased, b not due

    s.spool_retry(a.id, T0 + timedelta(minutes=10), "451 try later")
    (b,) = s.spool_claim_due(T0 + timedelta(minutes=6), limit=10, lease_seconds=3600)
    assert b.recipient == "b@x.test"
    (a2,) = s.spool_claim_due(T0 + timedelta(minutes=10), limit=10, lease_seconds=60)
    assert (a2.id, a2.attempts, a2.last_error) == (a.id, 1, "451 try later")

    s.spool_done(a2.id)
    s.spool_done(b.id)
    assert s.spool_count() == 0


def test_expired_lease_is_reclaimed(fresh_store: Store) -> None:
    s = fresh_store
    s.spool_add([_copy("a@x.test", next_attempt_at=T0)])
    assert len(s.spool_claim_due(T0, limit=1, lease_seconds=30)) == 1
    assert s.spool_claim_due(T0 + timedelta(seconds=29), limit=1, lease_seconds=30) == []
    assert len(s.spool_claim_due(T0 + timedelta(seconds=31), limit=1, lease_seconds=30)) == 1


def test_renew_keeps_a_lease_only_for_its_holder(fresh_store: Store) -> None:
    s = fresh_store
    s.spool_add([_copy("a@x.test", next_attempt_at=T0)])
    (mine,) = s.spool_claim_due(T0, limit=1, lease_seconds=30)
    assert s.spool_renew(mine.id, mine.lease_until, T0 + timedelta(seconds=90))
    # our first lease ran out (as far as a claimer 100 s later knows) and someone else took the copy
    (theirs,) = s.spool_claim_due(T0 + timedelta(seconds=100), limit=1, lease_seconds=30)
    assert not s.spool_renew(mine.id, T0 + timedelta(seconds=90), T0 + timedelta(seconds=200))
    s.spool_retry(mine.id, T0 + timedelta(hours=1), "451 late", held=T0 + timedelta(seconds=90))
    (row,) = s.spool_claim_due(T0 + timedelta(seconds=131), limit=1, lease_seconds=30)
    assert row.attempts == 0  # the stale holder's retry did not touch the new holder's copy
    assert s.spool_renew(theirs.id, row.lease_until, T0 + timedelta(seconds=300))


def test_release_gives_back_a_copy_whose_renewal_may_or_may_not_have_been_written(fresh_store: Store) -> None:
    """A relay stopped while a renewal sat in a store thread does not know which lease is on the copy:
    releasing with both hands it back either way, and never touches a lease someone else took."""
    s = fresh_store
    s.spool_add([_copy("a@x.test", next_attempt_at=T0), _copy("b@x.test", next_attempt_at=T0)])
    a, b = s.spool_claim_due(T0, limit=2, lease_seconds=30)
    renewed = T0 + timedelta(seconds=90)
    assert s.spool_renew(a.id, a.lease_until, renewed)  # the renewal did land
    (theirs,) = s.spool_claim_due(T0 + timedelta(seconds=31), limit=1, lease_seconds=30)
    assert theirs.id == b.id  # b's lease ran out and another relay took it
    s.spool_release([(a.id, [a.lease_until, renewed]), (b.id, [b.lease_until, T0 + timedelta(seconds=95)])])
    due = {r.recipient for r in s.spool_claim_due(T0 + timedelta(seconds=32), limit=5, lease_seconds=30)}
    assert due == {"a@x.test"}  # a is due again at once; b stays with its new holder


def test_claim_respects_limit_and_order(fresh_store: Store) -> None:
    s = fresh_store
    s.spool_add([_copy(f"r{i}@x.test", next_attempt_at=T0 - timedelta(seconds=i)) for i in range(5)])
    got = s.spool_claim_due(T0, limit=3, lease_seconds=60)
    assert [c.recipient for c in got] == ["r4@x.test", "r3@x.test", "r2@x.test"]


def test_concurrent_claims_never_share_a_row(fresh_database_url: Callable[[], str]) -> None:
    url = fresh_database_url()
    upgrade(url)
    a, b = Store(url), Store(url)
    try:
        a.spool_add([_copy(f"r{i}@x.test", next_attempt_at=T0) for i in range(40)])
        results: dict[str, list[int]] = {"a": [], "b": []}
        errors: list[BaseException] = []
        for _ in range(10):  # several rounds; the same `now` maximises contention
            barrier = threading.Barrier(2)

            def claim(name: str, s: Store) -> None:
                try:
                    barrier.wait()
                    results[name] += [c.id for c in s.spool_claim_due(T0, limit=3, lease_seconds=300)]
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=claim, args=("a", a)), threading.Thread(target=claim, args=("b", b))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert errors == []
        assert set(results["a"]).isdisjoint(results["b"])
        assert len(results["a"]) + len(results["b"]) == len(set(results["a"]) | set(results["b"]))
        # 10 rounds x 2 claimers x 3 = 60 > 40 rows: a claimer that loses a race
        # takes the next rows instead of coming back empty, so all 40 go out once.
        assert len(results["a"]) + len(results["b"]) == 40
        assert results["a"] and results["b"]
        assert b.spool_claim_due(T0, limit=100, lease_seconds=300) == []
    finally:
        a.close()
        b.close()


def test_audit_times_are_stored_in_one_form_whichever_path_wrote_them(store: Store) -> None:
    # the group commit writes plain driver SQL; its rows must read, compare and sort like Core's
    at = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=timezone(timedelta(hours=2)))
    store.write_batch([_decision("form-a", "a@x.test", at=at)], [])
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT at FROM audit_log WHERE client = 'form-a'").scalar_one()
    if store.engine.dialect.name == "sqlite":
        assert stored == "2026-03-01 10:00:00.250000"  # SQLAlchemy's SQLite DateTime text, in UTC
    rows = store.audit_rows(client="form-a", since=at - timedelta(microseconds=1))
    assert [r.at for r in rows] == [at.astimezone(timezone.utc)]
    assert store.audit_rows(client="form-a", since=at + timedelta(microseconds=1)) == []
