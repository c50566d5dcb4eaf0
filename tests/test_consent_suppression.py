"""Consent and suppression through real SMTP: who is refused at RCPT, who after DATA, and the DSN."""
from __future__ import annotations

import json
import email
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event

from conftest import Sink
from test_relay_smtp import POLICY_REFUSED, login, message, verify_dkim

NOW = datetime.now(timezone.utc)
STAGES = '["suppression", "sender-identity", "consent"]'


def consent(address: str, *, method: str = "single", status: str = "confirmed", age_days: int = 10,
            confirmed_days: int | None = None) -> dict:
    return {"address": address, "status": status, "method": method, "source": "signup form",
            "signed_up_at": NOW - timedelta(days=age_days), "ip": "192.0.2.7", "disclosure": "Weekly news",
            "confirmed_at": NOW - timedelta(days=confirmed_days) if confirmed_days is not None else None}


@pytest.fixture(scope="module")
def relay(relay_factory, sink: Sink):
    r = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages=STAGES)
    store = r.store
    store.consent_import("acme", "news", [
        consent("fan@example.org"), consent("fan2@example.org"), consent("fan3@example.org"),
        consent("old@example.org", age_days=800),
        consent("pending@example.org", method="double", status="pending"),
        consent("leaver@example.org"),
        consent("blocked@dnc.example"),
    ], NOW, "test")
    store.consent_import("acme", "vip", [
        consent("fan@example.org"),  # single opt-in: not enough for a confirmed_opt_in list
        consent("double@example.org", method="double", confirmed_days=5),
    ], NOW, "test")
    store.suppress_add("list", "acme", "news", "leaver@example.org", "", "unsubscribe", "one-click", NOW)
    store.suppress_add("client", "acme", "", "complainer@example.org", "", "complaint", "fbl", NOW)
    store.suppress_add("global", "", "", "", "dnc.example", "do-not-contact", "cli", NOW)
    store.suppress_add("global", "", "", "nobody@example.net", "", "do-not-contact", "cli", NOW)
    return r


def rcpt_reply(port: int, rcpt: str) -> tuple[int, str]:
    with login(port) as s:
        s.mail("bounce@acme.example")
        code, text = s.rcpt(rcpt)
    return code, text.decode()


def send_to(port: int, rcpts: list[str], **headers: str) -> tuple[int, str]:
    with login(port) as s:
        s.mail("bounce@acme.example")
        for r in rcpts:
            assert s.rcpt(r)[0] == 250, r
        code, text = s.data(message(to="subscribers@acme.example", **headers))
    return code, text.decode()


def dsn_of(sink: Sink) -> email.message.Message:
    dsns = [m for m in sink.messages if m.mail_from in ("", "<>")]
    assert len(dsns) == 1, [m.mail_from for m in sink.messages]
    return email.message_from_bytes(dsns[0].data)


def test_consented_recipient_is_delivered(relay, clean_sink):
    code, text = send_to(relay.port, ["fan@example.org"])
    assert code == 250, text
    assert [m.rcpt_tos for m in clean_sink.wait_for(1)] == [["fan@example.org"]]


@pytest.mark.parametrize("rcpt, words", [
    ("postmaster@example.org", "role address"),
    ("Info+news@example.org", "role address"),
    ("complainer@example.org", "complaint"),
    ("someone@dnc.example", "do-not-contact"),
    ("someone@mail.dnc.example", "do-not-contact"),
    ("nobody@example.net", "do-not-contact"),
    ("nobody@EXAMPLE.NET", "do-not-contact"),
])
def test_refused_at_rcpt(relay, rcpt, words):
    code, text = rcpt_reply(relay.port, rcpt)
    assert (code, text.split()[0]) == POLICY_REFUSED, text
    assert words in text
    if words != "role address":
        assert NOW.date().isoformat() in text  # the reason names the date


@pytest.mark.parametrize("scope, stored, sent", [
    ("client", "carol@example.org", "Carol@example.org"),  # a complaint, then the sender's own spelling
    ("client", "DAN.Case@example.org", "dan.case@EXAMPLE.org"),
    ("global", "erin.case@example.org", "ERIN.CASE@example.org"),
    ("global", "Straße@example.org", "STRASSE@example.org"),  # full case folding, not just ASCII
])
def test_suppression_matches_the_local_part_in_any_case(relay, clean_sink, scope, stored, sent):
    """The safe side of case for suppressions: Carol@ must not slip past carol@'s complaint. The
    probe is at RCPT, so this holds for transactional lists too (they have no consent check)."""
    relay.store.suppress_add(scope, "acme" if scope == "client" else "", "", stored, "", "complaint", "fbl", NOW)
    code, text = rcpt_reply(relay.port, sent)
    assert (code, text.split()[0]) == POLICY_REFUSED, text
    assert "complaint" in text and NOW.date().isoformat() in text
    with login(relay.port) as s:  # the same on a transaction that declares a transactional list later
        s.mail("bounce@acme.example")
        assert s.rcpt("stranger@example.org")[0] == 250
        code, text = s.rcpt(sent)
        assert (code, text.split()[0].decode()) == POLICY_REFUSED
        code, text = s.data(message(to=sent, List_Id="Acme receipts <receipts.acme.example>"))
    assert code == 250, text
    assert [m.rcpt_tos for m in clean_sink.wait_for(1)] == [["stranger@example.org"]]


def test_list_unsubscribe_matches_the_local_part_in_any_case(relay, clean_sink):
    """Consent records keep the exact local part (a mismatch finds no consent), but a list-scoped
    unsubscribe covers every spelling of the address."""
    relay.store.consent_import("acme", "news", [consent("Mixed.Case@example.org")], NOW, "test")
    assert send_to(relay.port, ["Mixed.Case@example.org"])[0] == 250
    assert send_to(relay.port, ["mixed.case@example.org"])[0] == 550  # no consent in that spelling
    relay.store.suppress_add("list", "acme", "news", "MIXED.CASE@example.org", "", "unsubscribe", "cli", NOW)
    code, text = send_to(relay.port, ["Mixed.Case@example.org"])
    assert (code, text.split()[0]) == POLICY_REFUSED, text
    assert "unsubscribed" in text
    assert relay.store.suppress_remove("list", "acme", "news", "Mixed.CASE@example.org", "", "cli", NOW)
    assert send_to(relay.port, ["Mixed.Case@example.org"])[0] == 250


def test_recipients_without_current_consent_get_a_dsn(relay, clean_sink, keys_dir):
    rcpts = ["fan@example.org", "stranger@example.org", "old@example.org", "pending@example.org",
             "leaver@example.org"]
    code, text = send_to(relay.port, rcpts)
    assert code == 250 and "4 refused" in text, text
    got = clean_sink.wait_for(2)
    assert [m.rcpt_tos for m in got if m.mail_from not in ("", "<>")] == [["fan@example.org"]]
    dsn = dsn_of(clean_sink)
    assert dsn["To"] == "<bounce@acme.example>"
    report = [p for p in dsn.walk() if p.get_content_type() == "message/delivery-status"][0].as_string()
    for rcpt, why in [("stranger@example.org", "no consent"), ("old@example.org", "stale"),
                      ("pending@example.org", "not confirmed"), ("leaver@example.org", "unsubscribed")]:
        assert f"Final-Recipient: rfc822; {rcpt}" in report
        assert why in report
    assert "fan@example.org" not in report
    assert verify_dkim([m for m in got if m.mail_from in ("", "<>")][0].data, keys_dir)


def test_no_recipient_with_consent_refuses_the_message_naming_the_list(relay, clean_sink):
    code, text = send_to(relay.port, ["stranger@example.org", "other@example.org"])
    assert (code, text.split()[0]) == POLICY_REFUSED, text
    assert "news" in text
    assert clean_sink.messages == []


def test_confirmed_opt_in_list_needs_double_opt_in(relay, clean_sink):
    code, text = send_to(relay.port, ["fan@example.org", "double@example.org"], List_Id="<vip.acme.example>")
    assert code == 250, text
    got = clean_sink.wait_for(2)
    assert [m.rcpt_tos for m in got if m.mail_from not in ("", "<>")] == [["double@example.org"]]
    assert "double) opt-in" in dsn_of(clean_sink).as_string()


def test_transactional_list_skips_consent_and_list_unsubscribes(relay, clean_sink):
    code, text = send_to(relay.port, ["stranger@example.org", "leaver@example.org"],
                         List_Id="Acme receipts <receipts.acme.example>")
    assert code == 250, text
    assert sorted(r for m in clean_sink.wait_for(2) for r in m.rcpt_tos) == [
        "leaver@example.org", "stranger@example.org"]
    # ... but never global do-not-contact
    code, text = rcpt_reply(relay.port, "someone@dnc.example")
    assert code == 550


def test_delivery_updates_last_contact_which_keeps_consent_current(relay, clean_sink):
    before = relay.store.list_lookup("acme", "news", ["fan2@example.org"]).consents["fan2@example.org"]
    assert send_to(relay.port, ["fan2@example.org"])[0] == 250
    relay.flush()
    after = relay.store.list_lookup("acme", "news", ["fan2@example.org"]).consents["fan2@example.org"]
    assert before.last_contact_at is None and after.last_contact_at is not None


def test_one_consent_query_per_message(relay, clean_sink):
    statements: list[str] = []
    lock = threading.Lock()

    def count(conn, cursor, statement, params, context, executemany):  # noqa: ANN001
        with lock:
            statements.append(statement)

    def count_driver_sql(statement: str) -> None:
        count(None, None, statement, None, None, False)

    engine = relay.store.engine
    event.listen(engine, "before_cursor_execute", count)  # SQLAlchemy statements
    relay.store.sql.listeners.append(count_driver_sql)  # the hot path's plain driver SQL
    try:
        code, _ = send_to(relay.port, ["fan@example.org", "fan2@example.org", "fan3@example.org",
                                       "stranger@example.org", "old@example.org"])
    finally:
        event.remove(engine, "before_cursor_execute", count)
        relay.store.sql.listeners.remove(count_driver_sql)
    assert code == 250
    consent_reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "FROM consent" in s]
    assert len(consent_reads) == 1, consent_reads


def test_the_send_path_reads_run_on_the_event_loop_with_sqlite(relay, clean_sink):
    """SQLite: the RCPT suppression probe and the list lookup skip the thread hop (storage.hotpath
    open_loop_reader); PostgreSQL is across a network, so they stay on the store's threads."""
    ran: list[tuple[str, int]] = []

    def note(statement: str) -> None:
        ran.append((statement, threading.get_ident()))

    relay.store.sql.listeners.append(note)
    try:
        code, _ = send_to(relay.port, ["fan@example.org"])
    finally:
        relay.store.sql.listeners.remove(note)
    assert code == 250
    # (the background poll for account-state changes, `account_clock`, may fall in the window: not the send path)
    reads = [ident for statement, ident in ran
             if statement.lstrip().upper().startswith("SELECT") and "account_clock" not in statement]
    assert len(reads) == 2, ran  # the suppression probe at RCPT, the list lookup after DATA
    on_loop = [ident == relay.loop.thread.ident for ident in reads]
    assert on_loop == ([True, True] if relay.store.engine.dialect.name == "sqlite" else [False, False])


def test_every_decision_is_in_the_audit_log(relay, clean_sink):
    send_to(relay.port, ["fan3@example.org", "stranger@example.org"], Message_ID="<audit-consent@acme.example>")
    rcpt_reply(relay.port, "postmaster@example.org")
    relay.flush()
    rows = relay.store.audit_rows(client="acme")
    mine = [r for r in rows if r.message_id == "<audit-consent@acme.example>"]
    assert {(r.recipient, r.verdict, r.rule) for r in mine} >= {
        ("fan3@example.org", "accept", "pipeline.passed"),
        ("stranger@example.org", "reject", "consent.missing"),
        ("fan3@example.org", "deliver", "delivery"),
    }
    assert any(r.recipient == "postmaster@example.org" and r.rule == "suppression.role-address" for r in rows)


def test_store_import_keeps_the_first_of_repeated_addresses_and_never_overwrites(relay):
    store = relay.store
    first = dict(consent("twice@example.org"), source="first form", disclosure="tab\there, back\\slash")
    again = dict(consent("twice@example.org"), source="second form")
    added, existing = store.consent_import("acme", "dup-list", [first, again], NOW, "test")
    assert (added, existing) == (["twice@example.org"], ["twice@example.org"])
    added, existing = store.consent_import("acme", "dup-list", [again], NOW, "test")
    assert (added, existing) == ([], ["twice@example.org"])
    [(record, events)] = [(r, e) for r, e in store.consent_records("acme", "twice@example.org")
                          if r.list_key == "dup-list"]
    # the first row is on file exactly as given (COPY text escaping on PostgreSQL included)
    assert (record.source, record.disclosure, record.ip) == ("first form", "tab\there, back\\slash", "192.0.2.7")
    assert record.signed_up_at == first["signed_up_at"]
    assert [e.event for e in events] == ["created"]
    assert json.loads(events[0].detail)["disclosure"] == "tab\there, back\\slash"


@pytest.mark.parametrize("scope, target, rcpt", [
    ("client", "race-client-{l}@example.org", "race-client-{l}@example.org"),
    ("global", "race-global-{l}@example.org", "Race-Global-{l}@example.org"),
    ("global", "@race-{l}.example", "fan@mail.race-{l}.example"),
])
@pytest.mark.parametrize("list_key", ["news", "receipts"])
def test_suppression_added_between_rcpt_and_data_is_honoured(relay, clean_sink, scope, target, rcpt, list_key):
    """A complaint or do-not-contact entry that lands while the client is still sending DATA stops the copy:
    the decision after DATA reads the suppressions again (in its one query), on marketing and
    transactional lists alike."""
    target, rcpt = target.format(l=list_key), rcpt.format(l=list_key)
    relay.store.consent_import("acme", "news", [consent(rcpt)], NOW, "test")
    address, domain = ("", target[1:]) if target.startswith("@") else (target, "")
    with login(relay.port) as s:
        s.mail("bounce@acme.example")
        assert s.rcpt("fan@example.org")[0] == 250
        assert s.rcpt(rcpt)[0] == 250
        relay.store.suppress_add(scope, "acme" if scope == "client" else "", "", address, domain,
                                 "complaint", "fbl", NOW)
        code, text = s.data(message(to=rcpt, List_Id=f"<{list_key}.acme.example>"))
    assert code == 250 and "1 refused" in text.decode(), text
    got = clean_sink.wait_for(2)
    assert [m.rcpt_tos for m in got if m.mail_from not in ("", "<>")] == [["fan@example.org"]]
    report = dsn_of(clean_sink).as_string()
    assert "complaint" in report and ("do-not-contact" if scope == "global" else "suppressed for client") in report


def test_unsubscribe_from_all_stops_marketing_but_not_receipts(relay, clean_sink):
    """A client-wide or global suppression for `unsubscribe` withdraws marketing consent, not the
    receipts a customer still needs; complaint, bounce, do-not-contact and manual stop everything."""
    store = relay.store
    people = {reason: f"all-{reason}@example.org" for reason in
              ("unsubscribe", "complaint", "bounce", "do-not-contact", "manual")}
    store.consent_import("acme", "news", [consent(a) for a in people.values()] + [consent("all-global@example.org")],
                         NOW, "test")
    for reason, address in people.items():
        store.suppress_add("client", "acme", "", address, "", reason, "cli", NOW)
    store.suppress_add("global", "", "", "all-global@example.org", "", "unsubscribe", "import", NOW)
    leavers = [people["unsubscribe"], "all-global@example.org"]
    for address in leavers:  # the list is not known at RCPT: decided after DATA
        assert rcpt_reply(relay.port, address)[0] == 250
    for reason in ("complaint", "bounce", "do-not-contact", "manual"):
        code, text = rcpt_reply(relay.port, people[reason])
        assert (code, text.split()[0]) == POLICY_REFUSED and reason in text, text
    code, text = send_to(relay.port, leavers, List_Id="Acme receipts <receipts.acme.example>")
    assert code == 250 and "2 delivered" in text, text
    assert sorted(r for m in clean_sink.wait_for(2) for r in m.rcpt_tos) == sorted(leavers)
    clean_sink.clear()
    code, text = send_to(relay.port, leavers + ["fan@example.org"])
    assert code == 250 and "2 refused" in text, text
    report = dsn_of(clean_sink).as_string()
    assert "unsubscribed from all marketing mail of acme" in report
    assert "unsubscribed from all marketing mail sent through this relay" in report
    code, text = send_to(relay.port, leavers, List_Id="<vip.acme.example>")
    assert (code, text.split()[0]) == POLICY_REFUSED, text
    relay.flush()
    rules = {(r.recipient, r.rule) for r in store.audit_rows(client="acme") if r.recipient in leavers}
    assert (people["unsubscribe"], "consent.unsubscribed") in rules


@pytest.mark.parametrize("list_id", ["<news.acme.example>", "<receipts.acme.example>"])
def test_a_hundred_recipients_cost_one_query_after_data(relay_factory, sink: Sink, list_id):
    """SPEC §7: one query per stage per message. After DATA the consent stage reads consent and
    suppressions for all 100 recipients at once, and the writes are one statement each (audit rows,
    last contact), whatever the number of recipients. (RCPT answers one recipient at a time: one
    probe each, see DESIGN.)"""
    big = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages=STAGES, max_recipients=100)
    rcpts = [f"hundred{i}@example.org" for i in range(100)]
    big.store.consent_import("acme", "news", [consent(r) for r in rcpts[:60]], NOW, "test")
    big.store.suppress_add("list", "acme", "news", rcpts[0], "", "unsubscribe", "one-click", NOW)
    statements: list[str] = []
    lock = threading.Lock()

    def count(conn, cursor, statement, params, context, executemany):  # noqa: ANN001
        if any(table in statement for table in ("consent", "suppression", "audit_log")):
            with lock:
                statements.append(statement)

    def count_driver_sql(statement: str) -> None:
        count(None, None, statement, None, None, False)

    engine = big.store.engine
    event.listen(engine, "before_cursor_execute", count)
    big.store.sql.listeners.append(count_driver_sql)
    sink.clear()
    try:
        with login(big.port) as s:
            s.mail("bounce@acme.example")
            for r in rcpts:
                assert s.rcpt(r)[0] == 250, r
            at_rcpt = len(statements)
            code, text = s.data(message(to="subscribers@acme.example", List_Id=list_id))
        big.flush()
    finally:
        event.remove(engine, "before_cursor_execute", count)
        big.store.sql.listeners.remove(count_driver_sql)
    assert code == 250, text
    assert at_rcpt == 100  # the RCPT suppression probe
    after = statements[at_rcpt:]
    reads = [s for s in after if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 1, reads
    # the decisions, the delivery outcomes, and (marketing only) last contact: no statement per recipient
    assert len(after) <= 4, after
    delivered = 100 if list_id.startswith("<receipts") else 59
    assert f"{delivered} delivered" in text.decode()
