"""Nothing is lost: upstream down, 4xx, 5xx, partial fan-out, storage faults, and an upstream killed mid-load."""
from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.utils
import smtplib
import threading
import re
import time

import pytest
from sqlalchemy import create_engine, text

from conftest import Clock, Sink, SinkHandler, free_port
from test_relay_smtp import INTERNAL, UPSTREAM_DOWN, login, message, verify_dkim


@pytest.fixture(scope="module")
def relay(relay_factory, sink: Sink):
    return relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}")


def data_reply(port: int, data: bytes, rcpts: list[str]) -> tuple[int, str, str]:
    with login(port) as s:
        s.mail("bounce@acme.example")
        for r in rcpts:
            s.rcpt(r)
        code, text = s.data(data)
    parts = text.decode().split(" ", 1)
    return code, parts[0], text.decode()


def test_upstream_unreachable_is_451_441(relay_factory, keys_dir, fresh_database_url):
    # its own database too: stop() gives up after a teardown stall, and a dead relay left running on
    # the module's database would claim (and fail) the copies other tests spool
    dead = relay_factory(upstream=f"smtp://127.0.0.1:{free_port()}", db_url=fresh_database_url())
    try:
        code, status, text = data_reply(dead.port, message(), ["alice@example.org"])
        assert (code, status) == UPSTREAM_DOWN, text
        assert dead.store.spool_count() == 0  # the client keeps the message; nothing is queued here
    finally:
        dead.stop()


def test_upstream_4xx_is_451_441(relay, clean_sink):
    clean_sink.handler.reply_for = lambda rcpt: "451 4.3.0 try later"
    code, status, text = data_reply(relay.port, message(), ["alice@example.org", "bob@example.org"])
    assert (code, status) == UPSTREAM_DOWN, text
    assert clean_sink.messages == []


def test_upstream_5xx_for_only_recipient_is_refused(relay, clean_sink):
    clean_sink.handler.reply_for = lambda rcpt: "550 5.1.1 no such user"
    code, status, text = data_reply(relay.port, message(), ["ghost@example.org"])
    assert code == 550 and "no such user" in text


def test_upstream_5xx_for_one_recipient_sends_a_signed_dsn(relay, clean_sink, keys_dir):
    clean_sink.handler.reply_for = lambda rcpt: "550 5.1.1 no such user" if rcpt.startswith("ghost") else None
    code, _, text = data_reply(relay.port, message(), ["ghost@example.org", "alice@example.org"])
    assert code == 250, text
    got = clean_sink.wait_for(2)
    dsn = [m for m in got if m.mail_from in ("", "<>")]  # aiosmtpd records <> as given
    assert len(dsn) == 1 and dsn[0].rcpt_tos == ["bounce@acme.example"]
    parsed = email.message_from_bytes(dsn[0].data)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    status_part = [p for p in parsed.walk() if p.get_content_type() == "message/delivery-status"][0]
    report = status_part.as_string()
    assert "Final-Recipient: rfc822; ghost@example.org" in report and "Action: failed" in report
    assert verify_dkim(dsn[0].data, keys_dir)
    assert [m.rcpt_tos for m in got if m not in dsn] == [["alice@example.org"]]


def test_partial_fanout_is_spooled_and_retried(relay, clean_sink):
    calls = {"n": 0}

    def flaky(rcpt: str) -> str | None:
        if rcpt == "later@example.org" and calls["n"] < 1:
            calls["n"] += 1
            return "451 4.4.5 busy"
        return None

    clean_sink.handler.reply_for = flaky
    code, _, text = data_reply(relay.port, message(), ["now@example.org", "later@example.org"])
    assert code == 250 and "1 queued for retry" in text, text
    got = clean_sink.wait_for(2, timeout=10)
    assert sorted(r for m in got for r in m.rcpt_tos) == ["later@example.org", "now@example.org"]
    deadline = time.monotonic() + 5
    while relay.store.spool_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert relay.store.spool_count() == 0
    # the copy delivered from the spool is on record as such, with the queue id the client was given
    relay.flush()
    qid = re.search(r"queued as (\w+)", text).group(1)
    ends = [(r.verdict, r.code, r.reason) for r in relay.store.audit_rows(client="acme")
            if r.recipient == "later@example.org" and r.queue_id == qid and r.stage == "delivery"]
    assert ends == [("spool", 451, "4.4.5 busy"), ("deliver", 250, "accepted by upstream at attempt 2")], ends
    # the retried copy still carries the relay's return path for this copy (VERP, docs/FEEDBACK.md)
    (retried,) = clean_sink.for_rcpt("later@example.org")
    feedback = relay.runtime.feedback
    token = feedback.paths.token_of(retried.mail_from)
    assert token and feedback.paths.verify(token, relay.runtime.services.clock()).queue_id == qid


def test_storage_failure_is_451_430_and_nothing_leaves(relay_factory, fresh_database_url, clean_sink):
    url = fresh_database_url()
    broken = relay_factory(upstream=f"smtp://127.0.0.1:{clean_sink.port}", db_url=url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_log"))
    engine.dispose()
    try:
        code, status, text_ = data_reply(broken.port, message(), ["alice@example.org"])
    finally:
        broken.stop()  # its database is dropped after this test
    assert (code, status) == INTERNAL, text_
    assert "Traceback" not in text_ and "audit_log" not in text_
    time.sleep(0.2)
    assert clean_sink.messages == []


def test_upstream_killed_mid_load_loses_nothing(relay, clean_sink):
    """A few thousand messages; the upstream dies and returns; every 250 is at the upstream."""
    total, threads = 2000, 8
    acked: list[str] = []
    tempfails = [0]
    lock = threading.Lock()
    counter = iter(range(total))

    def client() -> None:
        s = login(relay.port)
        for i in counter:
            tag = f"load-{i}"
            data = message(subject=tag, to=f"r{i}@example.org")
            for _attempt in range(200):
                try:
                    s.mail("bounce@acme.example")
                    s.rcpt(f"r{i}@example.org")
                    code, _ = s.data(data)
                except smtplib.SMTPException:
                    code = 0
                if code == 250:
                    with lock:
                        acked.append(tag)
                    break
                with lock:
                    tempfails[0] += 1
                s.rset()
                time.sleep(0.05)  # the client retries what was not answered 250
        s.quit()

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    while len(acked) < total // 4:
        time.sleep(0.01)
    clean_sink.stop()            # the upstream dies in the middle of the load
    time.sleep(1.0)
    clean_sink.start()
    for w in workers:
        w.join(120)
    received = [email.message_from_bytes(m.data)["Subject"] for m in clean_sink.wait_for(len(acked), 20)]
    missing = set(acked) - set(received)
    assert len(acked) == total
    assert tempfails[0] > 0, "the upstream outage never reached a client: the test proved nothing"
    assert missing == set(), f"{len(missing)} messages answered 250 but not at the upstream"
    duplicates = len(received) - len(set(received))
    print(f"\n{total} messages, {len(acked)} answered 250, {tempfails[0]} 4xx retried, 0 lost, {duplicates} duplicates")


class SlowSinkHandler(SinkHandler):
    """An upstream that thinks `delay` seconds before answering the final dot."""

    delay = 0.0

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


def tempfailing_slow_upstream() -> tuple[Sink, list[str]]:
    """A sink (slowed later by spool_then_retry_slowly) that tempfails four `later` recipients for now."""
    upstream = Sink()
    upstream.handler = SlowSinkHandler()
    upstream.start()
    later = [f"later{i}@example.org" for i in range(1, 5)]
    upstream.handler.reply_for = lambda rcpt: "451 4.4.5 busy" if rcpt.startswith("later") else None
    return upstream, later


def spool_then_retry_slowly(relay, upstream: Sink, later: list[str]) -> None:
    """Send one message whose `later` copies the upstream tempfails (so they are spooled), then let
    the upstream accept at one second a copy, and wait for the relay's retry pass to start on them."""
    code, _, text_ = data_reply(relay.port, message(), ["now@example.org", *later])
    assert code == 250 and f"{len(later)} queued for retry" in text_, text_
    upstream.handler.delay = 1.0
    upstream.handler.reply_for = lambda rcpt: None
    deadline = time.monotonic() + 15
    while not any(r in later for m in upstream.messages for r in m.rcpt_tos):
        assert time.monotonic() < deadline, "the relay never retried the spooled copies"
        time.sleep(0.02)


def test_spooled_copy_goes_out_once_when_a_lease_expires_mid_pass(relay_factory, fresh_database_url):
    """Two relays share one spool; the upstream is slow, so relay A's batch claim outlives its lease
    before A reaches the last copies. Relay B may take those over, but then A must skip them."""
    url = fresh_database_url()
    upstream, later = tempfailing_slow_upstream()
    a = relay_factory(upstream=f"smtp://127.0.0.1:{upstream.port}", db_url=url)
    # B's clock first runs a day behind (nothing is due for it), later 1.5 s short of A's lease
    # ahead: then B sees each lease A takes expire 1.5 s after A took it
    b_clock = Clock()
    b_clock.offset = dt.timedelta(days=-1)
    b = relay_factory(upstream=f"smtp://127.0.0.1:{upstream.port}", db_url=url, clock=b_clock)
    try:
        spool_then_retry_slowly(a, upstream, later)
        b_clock.offset = dt.timedelta(seconds=a.runtime.spool_lease - 1.5)
        deadline = time.monotonic() + 20
        while a.store.spool_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert a.store.spool_count() == 0
        time.sleep(1.5)  # a copy still being sent twice would arrive now
        got = sorted(r for m in upstream.messages for r in m.rcpt_tos)
        assert got == sorted(["now@example.org", *later]), got
    finally:
        a.stop()
        b.stop()
        upstream.stop()


def delivery_status(data: bytes) -> tuple[email.message.Message, str]:
    """The DSN parsed, and its message/delivery-status part as text (RFC 3464)."""
    parsed = email.message_from_bytes(data)
    assert parsed.get_content_type() == "multipart/report", parsed.get_content_type()
    assert parsed.get_param("report-type") == "delivery-status"
    parts = [p for p in parsed.walk() if p.get_content_type() == "message/delivery-status"]
    assert len(parts) == 1
    return parsed, parts[0].as_string()


def test_dsn_status_and_diagnostic_are_the_upstreams_own(relay, clean_sink):
    """A bounce processor files 5.1.1 (no such mailbox) apart from 5.7.1 (policy): the DSN must carry
    the upstream's enhanced status, and its reply as given (RFC 3464 §2.3.4, §2.3.6)."""
    clean_sink.handler.reply_for = lambda rcpt: "550 5.1.1 <ghost@example.org>: no such user" \
        if rcpt.startswith("ghost") else None
    code, _, text_ = data_reply(relay.port, message(), ["ghost@example.org", "alice@example.org"])
    assert code == 250, text_
    got = clean_sink.wait_for(2)
    (dsn,) = [m for m in got if m.mail_from in ("", "<>")]
    _, report = delivery_status(dsn.data)
    assert "Final-Recipient: rfc822; ghost@example.org" in report
    assert "Status: 5.1.1" in report, report
    assert "Diagnostic-Code: smtp; 550 5.1.1 <ghost@example.org>: no such user" in report, report


def test_spooled_copy_that_expires_bounces_with_a_failed_dsn(relay_factory, fresh_database_url):
    """retry_max_age_hours after arrival a copy still tempfailed is bounced: one RFC 3464 report to the
    envelope sender, null sender, Action failed, the last upstream reply; the DSN itself is spooled
    when the sender's server tempfails it, and goes out once that recovers."""
    upstream = Sink().start()
    clock = Clock()
    dsn_tempfails = [1]

    def reply_for(rcpt: str) -> str | None:
        if rcpt.startswith("later"):
            return "451 4.4.5 mailbox busy"
        if rcpt == "bounce@acme.example" and dsn_tempfails[0]:
            dsn_tempfails[0] -= 1
            return "452 4.2.2 over quota for now"
        return None

    upstream.handler.reply_for = reply_for
    relay = relay_factory(upstream=f"smtp://127.0.0.1:{upstream.port}", db_url=fresh_database_url(), clock=clock)
    try:
        arrival = clock()
        code, _, text_ = data_reply(relay.port, message(), ["now@example.org", "later@example.org"])
        assert code == 250 and "1 queued for retry" in text_, text_
        time.sleep(1.0)  # a few retries within the age limit: still queued, no DSN yet
        assert relay.store.spool_count() == 1
        assert [m.rcpt_tos for m in upstream.messages] == [["now@example.org"]]
        clock.offset = dt.timedelta(hours=121)
        deadline = time.monotonic() + 15
        while not [m for m in upstream.messages if m.mail_from in ("", "<>")]:
            assert time.monotonic() < deadline, "no DSN after the copy expired"
            time.sleep(0.05)
        assert dsn_tempfails == [0]  # the first DSN attempt was tempfailed and spooled, then retried
        deadline = time.monotonic() + 5
        while relay.store.spool_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert relay.store.spool_count() == 0
        (dsn,) = [m for m in upstream.messages if m.mail_from in ("", "<>")]
        assert dsn.rcpt_tos == ["bounce@acme.example"]
        # (not DKIM-verified here: it is signed at the test clock's time, 121 h ahead, which dkimpy
        # refuses as a signature from the future)
        assert dsn.data.startswith(b"DKIM-Signature:")
        parsed, report = delivery_status(dsn.data)
        assert parsed["To"] == "<bounce@acme.example>"
        assert "Final-Recipient: rfc822; later@example.org" in report and "Action: failed" in report
        assert "Status: 5.4.7" in report, report
        assert "Diagnostic-Code: smtp; 451 4.4.5 mailbox busy" in report, report
        arrived = email.utils.parsedate_to_datetime(report.split("Arrival-Date: ", 1)[1].splitlines()[0])
        assert abs((arrived - arrival).total_seconds()) < 60, (arrived, arrival)
        human = [p for p in parsed.walk() if p.get_content_type() == "text/plain"][0].get_payload(decode=True)
        assert b"delivered to the others" not in human  # nobody here knows what became of the others
        assert [m.rcpt_tos for m in upstream.messages if m.mail_from not in ("", "<>")] == [["now@example.org"]]
        relay.flush()
        ends = [(r.verdict, r.status) for r in relay.store.audit_rows(client="acme")
                if r.recipient == "later@example.org" and r.stage == "delivery"]
        assert ends == [("spool", "4.4.1"), ("bounce", "5.4.7")], ends  # the DSN itself is no decision
    finally:
        relay.stop()
        upstream.stop()


def test_copies_held_by_a_stopped_relay_go_out_at_once_after_restart(relay_factory, fresh_database_url):
    """A relay stopped (SIGTERM) in the middle of a retry pass hands back the copies it had claimed:
    the restarted relay sends them now, not when the leases would have run out minutes later."""
    url = fresh_database_url()
    upstream, later = tempfailing_slow_upstream()
    first = relay_factory(upstream=f"smtp://127.0.0.1:{upstream.port}", db_url=url)
    try:
        spool_then_retry_slowly(first, upstream, later)
        first.stop()  # in the middle of its pass: one copy at the upstream, one being sent, two to go
    finally:
        first.stop()
    upstream.handler.delay = 0.0
    second = relay_factory(upstream=f"smtp://127.0.0.1:{upstream.port}", db_url=url)
    try:
        deadline = time.monotonic() + 10
        while second.store.spool_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert second.store.spool_count() == 0, "copies stayed leased to the relay that was stopped"
        got = [r for m in upstream.messages for r in m.rcpt_tos]
        assert set(got) == {"now@example.org", *later}
        # the copy cut off after its final dot may arrive twice (at least once, never lost); no other
        assert len(got) - len(set(got)) <= 1, got
    finally:
        second.stop()
        upstream.stop()
