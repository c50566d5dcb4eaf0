"""`relay feedback ingest` as an admin runs it, and the storage it writes: counters, soft-bounce limit, outbox."""
from __future__ import annotations

import subprocess
import threading
from datetime import date, datetime, timedelta, timezone

from relay.feedback.verp import ReturnPaths
from storage.counters import Counts
from storage.feedback import FeedbackRecord
from test_cli_consent import Admin, admin, ok, one_line_error  # noqa: F401  (fixture)
from test_feedback_intake import CORPUS

# counters summed over every day: a test that runs across midnight UTC still sees its own counts
EVER = date(2000, 1, 1)

QID = "0A1B2C3D4E5F"


def _dsn(return_path: str, rcpt: str, status: str) -> str:
    """A Postfix-style DSN that quotes the returned message's header (with our Return-Path)."""
    return (f"From: MAILER-DAEMON@mx.example.org\nSubject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
            f"Content-Type: multipart/report; report-type=delivery-status; boundary=\"x\"\n\n"
            f"--x\nContent-Type: text/plain\n\nI'm sorry.\n\n--x\nContent-Type: message/delivery-status\n\n"
            f"Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; {rcpt}\nAction: failed\n"
            f"Status: {status}\nDiagnostic-Code: smtp; 550 {status} nope\n\n"
            f"--x\nContent-Type: text/rfc822-headers\n\nReturn-Path: <{return_path}>\nFrom: news@demo.example\n"
            f"To: {rcpt}\nSubject: hi\n\n--x--\n")


def test_ingest_files_and_stdin_attributes_by_the_quoted_return_path(admin: Admin):
    keys = [bytes(range(32))]
    (admin.dir / "secrets").mkdir()
    (admin.dir / "secrets" / "token.key").write_text(keys[0].hex() + "\n")
    store = admin.store()
    now = datetime.now(timezone.utc)
    try:
        store.record_decisions([{"at": now, "client": "demo", "list_key": "news", "recipient": "Gone@example.org",
                                 "stage": "consent", "rule": "consent.ok", "verdict": "accept", "queue_id": QID}])
        paths = ReturnPaths(keys, "relay.example.net", timedelta(days=90))
        good = paths.address(QID, "Gone@example.org", now)
        forged = good[:20] + ("a" if good[20] != "a" else "b") + good[21:]  # inside the token
        admin.write("hard.eml", _dsn(good, "gone@example.org", "5.1.1"))
        admin.write("forged.eml", _dsn(forged, "gone@example.org", "5.1.1"))
        corpus = str(CORPUS / "rfc3464-01.eml")
        result = subprocess.run([*admin._cmd(("feedback", "ingest", "forged.eml", "hard.eml", corpus, "-"))],
                                cwd=admin.dir, capture_output=True, text=True, timeout=120,
                                input=(CORPUS / "rfc3834-01.eml").read_text("utf-8", "replace"))
        lines = ok(result).splitlines()
        assert len(lines) == 4, lines
        assert lines[0] == "forged.eml: dsn none: token does not verify; nothing changed"
        assert lines[1] == "hard.eml: dsn hard 5.1.1: demo/news gone@example.org: recorded, suppressed"
        assert "names no copy this relay sent" in lines[2]
        assert lines[3].startswith("-: auto-reply")
        (row,) = [r for r in store.suppressions(client="demo") if r.address == "gone@example.org"]
        assert (row.scope, row.reason) == ("client", "bounce")
        assert store.totals("demo", EVER).hard_bounces == 1
        # the same report again: recorded once
        assert "already recorded" in ok(admin("feedback", "ingest", "hard.eml"))
        assert store.totals("demo", EVER).hard_bounces == 1
    finally:
        store.close()
    one_line_error(admin("feedback", "ingest", "missing.eml"), "missing.eml", "cannot read")


def test_counters_add_is_atomic_across_threads_and_totals_sum_a_window(store):
    day = date(2026, 1, 10)
    client = f"c{datetime.now().timestamp():.0f}"

    def bump() -> None:
        for _ in range(25):
            store.add(client, "news", day, delivered=2, complaints=1)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.add(client, "offers", day + timedelta(days=1), hard_bounces=3, unsubscribes=1)
    store.add(client, "news", day - timedelta(days=5), delivered=1000)  # before the window
    assert store.totals(client, day) == Counts(delivered=200, complaints=100, hard_bounces=3, unsubscribes=1)
    assert store.totals(client, day, "offers") == Counts(hard_bounces=3, unsubscribes=1)
    assert store.counters.totals(client, day - timedelta(days=5), "news").delivered == 1200
    assert store.totals("nobody", day) == Counts()


def test_soft_bounces_suppress_after_the_limit_within_the_window(store):
    now = datetime.now(timezone.utc)
    client = f"s{now.timestamp():.0f}"

    def soft(i: int, at: datetime) -> bool:
        return store.record_feedback(FeedbackRecord(
            at, client, "news", "tired@example.org", "bounce", "soft", "4.2.2", "full", f"Q{i}", "test",
            f"{client}:{i}", counter="soft_bounces", soft_limit=(3, 14))).suppressed

    assert not soft(0, now - timedelta(days=20))  # outside the window: does not count
    assert not soft(1, now - timedelta(days=2))
    assert not soft(2, now - timedelta(days=1))
    assert soft(3, now)  # the third within 14 days
    (row,) = [r for r in store.suppressions(client=client)]
    assert (row.reason, row.source) == ("bounce", "feedback:inactive")


def test_outbox_leases_each_entry_to_one_sender_and_keeps_given_up_ones(store):
    now = datetime.now(timezone.utc)
    client = f"w{now.timestamp():.0f}"
    for i in range(2):
        assert store.record_feedback(FeedbackRecord(
            now, client, "news", f"r{i}@example.org", "complaint", "complaint", "abuse", "ARF", f"W{i}", "test",
            f"{client}:w{i}", counter="complaints", suppress="complaint", webhook=True)).suppressed
    rows = [r for r in store.outbox_claim(now, 100, 60) if r["client"] == client]
    assert len(rows) == 2 and '"type": "complaint"' in rows[0]["payload"]
    assert [r for r in store.outbox_claim(now, 100, 60) if r["client"] == client] == []  # leased
    store.outbox_done(rows[0]["id"])
    store.outbox_retry(rows[1]["id"], None, "HTTP 500", now)  # given up
    later = now + timedelta(hours=2)
    assert [r for r in store.outbox_claim(later, 100, 60) if r["client"] == client] == []
    (kept,) = store.outbox_rows(client)
    assert kept["failed_at"] is not None and kept["attempts"] == 1 and kept["last_error"] == "HTTP 500"
