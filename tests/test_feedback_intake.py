"""Feedback intake end to end: real relay, real SMTP, the bounce corpus, VERP tokens, ARF built from the sink's copy."""
from __future__ import annotations

import re
import smtplib
import threading
from datetime import date
from pathlib import Path

import pytest

from conftest import PASSWORD, Sink

# counters summed over every day: a test that runs across midnight UTC still sees its own counts
EVER = date(2000, 1, 1)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "bounces"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus/bounces")
STAGES = '["suppression", "sender-identity"]'

# Expected replies (code, enhanced status)
AUTH_REQUIRED = (530, "5.7.0")
REPORT_RECEIVED = (250, "2.0.0")
REPORT_FORGED = (250, "2.6.0")
BAD_RETURN_PATH = (550, "5.1.1")
SUPPRESSED = (550, "5.7.1")
OWN_TRANSACTION = (452, "4.5.3")


def code_of(reply: str) -> tuple[int, str]:
    parts = reply.split()
    return int(parts[0]), parts[1]


def message(to: str, subject: str = "News", body: str = "Hello,\nour news.\n") -> bytes:
    return (f"From: news@acme.example\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{subject.replace(' ', '.')}.{to}>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode().replace(
        b"\r\n", b"\n").replace(b"\n", b"\r\n")


def send(port: int, rcpt: str, data: bytes) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.login("acme", PASSWORD)
        try:
            s.sendmail("news@acme.example", [rcpt], data)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients[rcpt]
            return code, text.decode()
        except smtplib.SMTPResponseException as exc:
            return exc.smtp_code, exc.smtp_error.decode()
    return 250, ""


def report(port: int, rcpt: str, data: bytes, mail_from: str = "") -> str:
    """Mail a report without AUTH, as a receiving MTA or a feedback loop does; the final reply as text."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("mx.receiver.test")
        code, text = s.mail(mail_from)
        assert code == 250
        code, text = s.rcpt(rcpt)
        if code != 250:
            return f"{code} {text.decode()}"
        code, text = s.data(data)
        return f"{code} {text.decode()}"


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture(scope="module")
def relay(relay_factory, sink: Sink):
    return relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages=STAGES)


def test_unauthenticated_mail_to_other_addresses_is_still_refused(relay):
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
        s.ehlo("x.test")
        s.mail("")
        for address in ("someone@example.org", "info@relay.test", "postmaster@example.org",
                        "bounce@relay.test", "abuse%example.org@relay.test"):
            code, text = s.rcpt(address)
            assert (code, text.decode().split()[0]) == AUTH_REQUIRED, address
        # the relay's own addresses are taken, and only alone in their transaction
        assert s.rcpt("postmaster@relay.test")[0] == 250
        assert s.rcpt("ABUSE@Relay.Test")[0] == 250
        code, text = s.rcpt("someone@example.org")
        assert (code, text.decode().split()[0]) in (AUTH_REQUIRED, OWN_TRANSACTION)


def test_forged_return_path_is_refused_at_rcpt(relay):
    reply = report(relay.port, "bounce+" + "a" * 40 + "@relay.test", b"Subject: x\r\n\r\nx\r\n")
    assert code_of(reply) == BAD_RETURN_PATH


def _expected(status: str) -> str | None:
    """RFC 3463, independently of the relay's code: whose fault a status says it is."""
    klass, subject, detail = status.split(".")
    if subject == "7":
        return "sender"
    if klass == "4":
        return "soft"
    if subject == "1" and detail not in ("7", "8"):
        return "hard"
    if (subject, detail) == ("2", "1"):
        return "hard"
    if (subject, detail) == ("2", "2"):
        return "soft"
    return None  # the standards leave the rest to judgement


def test_every_corpus_message_gets_a_definite_reply_and_standard_dsns_are_classified(relay):
    files = sorted(CORPUS.glob("*.eml"))
    assert len(files) >= 333
    replies: dict[str, str] = {}

    def batch(names: list[Path]) -> None:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as s:
            s.ehlo("mx.receiver.test")
            for path in names:
                s.mail("")
                code, text = s.rcpt("postmaster@relay.test")
                assert code == 250, (path.name, code, text)
                try:
                    code, text = s.data(crlf(path.read_bytes()))
                except smtplib.SMTPDataError as exc:  # a 5xx to DATA (e.g. a bare CR): definite too
                    code, text = exc.smtp_code, exc.smtp_error
                replies[path.name] = f"{code} {text.decode('utf-8', 'replace')}"
                if code != 250:
                    s.rset()

    threads = [threading.Thread(target=batch, args=(files[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(replies) == len(files)
    for name, reply in replies.items():
        assert reply[0] in "25", (name, reply)  # never 451 4.3.0, never a dropped connection
    classified = 0
    for name, reply in replies.items():
        match = re.search(r"\bdsn (hard|soft|sender|none) ([245]\.\d{1,3}\.\d{1,3})", reply)
        if not match or not (name.startswith("rfc3464") or "delivery-status" in
                             (CORPUS / name).read_text("utf-8", "replace").lower()):
            continue
        expected = _expected(match.group(2))
        if expected is not None:
            assert match.group(1) == expected, (name, reply)
            classified += 1
    assert classified >= 100  # of the 336, over 100 standard DSNs carry a status RFC 3463 alone decides
    assert all("auto-reply" in replies[n] for n in replies if n.startswith("rfc3834"))
    assert all("arf complaint" in replies[n] for n in replies if n.startswith("arf-0"))


def test_hard_upstream_refusal_suppresses_before_the_next_message(relay, clean_sink):
    clean_sink.handler.reply_for = lambda rcpt: "550 5.1.1 <gone@example.org>: user unknown" \
        if rcpt == "gone@example.org" else None
    before = relay.store.totals("acme", EVER)
    assert send(relay.port, "gone@example.org", message("gone@example.org"))[0] == 550
    code, text = send(relay.port, "gone@example.org", message("gone@example.org", "Again"))
    assert (code, text.split()[0]) == SUPPRESSED and "bounce" in text
    after = relay.store.totals("acme", EVER)
    assert after.hard_bounces == before.hard_bounces + 1
    # a policy refusal is the sender's fault: counted, the recipient stays mailable
    clean_sink.handler.reply_for = lambda rcpt: "554 5.7.1 Message rejected as spam" \
        if rcpt == "picky@example.org" else None
    assert send(relay.port, "picky@example.org", message("picky@example.org"))[0] == 550
    clean_sink.handler.reply_for = lambda rcpt: None
    assert send(relay.port, "picky@example.org", message("picky@example.org", "Again"))[0] == 250
    assert relay.store.totals("acme", EVER).sender_faults == after.sender_faults + 1


def _arf(copy: bytes, return_path: str, feedback_type: str = "abuse") -> bytes:
    """An RFC 5965 report of the copy as a mailbox provider sends it, the recipient redacted (RFC 6590)."""
    original = f"Return-Path: <{return_path}>\r\n".encode() + copy
    original = re.sub(rb"[a-z]+@example\.org", b"redacted@example.org", original)
    return (b"From: fbl@mailbox.example\r\nTo: fbl@relay.test\r\nSubject: FW: complaint\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"b1\"\r\n\r\n"
            b"--b1\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
            b"--b1\r\nContent-Type: message/feedback-report\r\n\r\n"
            + f"Feedback-Type: {feedback_type}\r\nUser-Agent: test/1.0\r\nVersion: 1\r\n".encode()
            + b"\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\n" + original + b"\r\n--b1--\r\n")


def test_arf_complaint_built_from_the_delivered_copy_suppresses_and_a_tampered_token_does_not(relay, clean_sink):
    assert send(relay.port, "carol@example.org", message("carol@example.org"))[0] == 250
    (copy,) = clean_sink.wait_for(1)
    token = copy.mail_from.split("+", 1)[1].split("@")[0]
    tampered = copy.mail_from.replace(token, token[:-1] + ("a" if token[-1] != "a" else "b"))
    before = relay.store.totals("acme", EVER)
    reply = report(relay.port, "fbl@relay.test", _arf(copy.data, tampered))
    assert code_of(reply) == REPORT_FORGED
    assert any(r.stage == "feedback" and r.verdict == "forged" for r in relay.store.audit_rows("*"))
    assert send(relay.port, "carol@example.org", message("carol@example.org", "Still"))[0] == 250
    reply = report(relay.port, "fbl@relay.test", _arf(copy.data, copy.mail_from, "not-spam"))
    assert code_of(reply) == REPORT_RECEIVED and "arf other" in reply
    assert relay.store.totals("acme", EVER).complaints == before.complaints
    reply = report(relay.port, "fbl@relay.test", _arf(copy.data, copy.mail_from))
    assert code_of(reply) == REPORT_RECEIVED and "suppressed" in reply, reply
    code, text = send(relay.port, "carol@example.org", message("carol@example.org", "After"))
    assert (code, text.split()[0]) == SUPPRESSED and "complaint" in text
    assert relay.store.totals("acme", EVER).complaints == before.complaints + 1
    # the same report again (an FBL retrying) counts once
    report(relay.port, "abuse@relay.test", _arf(copy.data, copy.mail_from))
    assert relay.store.totals("acme", EVER).complaints == before.complaints + 1
    rows = [r for r in relay.store.suppressions(client="acme") if r.address == "carol@example.org"]
    assert [(r.scope, r.reason) for r in rows] == [("client", "complaint")]


def dsn(rcpt: str, status: str, text: str) -> bytes:
    return (b"From: MAILER-DAEMON@mx.example.org\r\nTo: x\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"d\"\r\n\r\n"
            b"--d\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n--d\r\nContent-Type: message/delivery-status\r\n\r\n"
            b"Reporting-MTA: dns; mx.example.org\r\n\r\n"
            + f"Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {status}\r\n"
              f"Diagnostic-Code: smtp; {text}\r\n".encode() + b"--d--\r\n")


def test_dsn_to_the_verp_address_suppresses_hard_and_counts_soft(relay, clean_sink):
    for rcpt in ("dead@example.org", "full@example.org"):
        assert send(relay.port, rcpt, message(rcpt))[0] == 250
    copies = {m.rcpt_tos[0]: m for m in clean_sink.wait_for(2)}

    before = relay.store.totals("acme", EVER)
    reply = report(relay.port, copies["full@example.org"].mail_from,
                   dsn("full@example.org", "5.2.2", "552 5.2.2 mailbox full"))
    assert "dsn soft 5.2.2" in reply
    reply = report(relay.port, copies["dead@example.org"].mail_from,
                   dsn("dead@example.org", "5.1.1", "550 5.1.1 no such user"))
    assert "dsn hard 5.1.1" in reply and "suppressed" in reply
    after = relay.store.totals("acme", EVER)
    assert (after.hard_bounces, after.soft_bounces) == (before.hard_bounces + 1, before.soft_bounces + 1)
    assert send(relay.port, "full@example.org", message("full@example.org", "Again"))[0] == 250
    code, text = send(relay.port, "dead@example.org", message("dead@example.org", "Again"))
    assert (code, text.split()[0]) == SUPPRESSED
    assert after.delivered >= before.delivered
    # on record: the audit log has the report and the suppression, the metrics count them
    rows = [r for r in relay.store.audit_rows("acme") if r.recipient == "dead@example.org"]
    assert {(r.stage, r.verdict) for r in rows} >= {("feedback", "bounce"), ("admin", "suppress")}
    assert any(r.rule == "feedback.bounce.hard" and r.status == "5.1.1" for r in rows)
    metrics = relay.runtime.metrics.render().decode()
    assert 'relay_feedback_outcomes_total{category="hard",kind="dsn"}' in metrics
    assert 'relay_feedback_suppressions_total{kind="bounce"}' in metrics


def test_the_63_octet_return_path_of_a_milter_copy_is_taken_at_rcpt_and_attributed(relay):
    """`relay milter`'s copies name Postfix's queue id (not 12 hex digits): the longer token form
    passes the SMTP front's RCPT and the intake finds the copy by the milter's decision row."""
    qid, rcpt = "3F2A1B4C5D6", "via-milter@example.org"
    now = relay.runtime.services.clock()
    relay.store.record_decisions([{"at": now, "client": "acme", "list_key": "news", "recipient": rcpt,
                                   "stage": "consent", "rule": "consent.ok", "verdict": "accept", "queue_id": qid}])
    address = relay.runtime.feedback.paths.address(qid, rcpt, now)
    assert len(address.split("@")[0]) == 63
    tampered = address[:30] + ("a" if address[30] != "a" else "b") + address[31:]
    assert code_of(report(relay.port, tampered, dsn(rcpt, "5.1.1", "550 5.1.1 no such user"))) == BAD_RETURN_PATH
    reply = report(relay.port, address, dsn(rcpt, "5.1.1", "550 5.1.1 no such user"))
    assert reply == f"250 2.0.0 Report received: dsn hard 5.1.1: acme/news {rcpt}: recorded, suppressed"


def test_complaint_without_return_path_is_attributed_by_the_copys_unsubscribe_link(relay):
    """Some feedback loops keep only the reported message's header: our List-Unsubscribe names the copy;
    another sender's /u/ link in the same report is none of ours and changes nothing."""
    from datetime import datetime, timezone

    token = relay.runtime.tokens.issue("unsubscribe", "acme", "news", "dana@example.org", datetime.now(timezone.utc))
    copy = (f"From: news@acme.example\r\nTo: redacted@example.org\r\nSubject: News\r\n"
            f"List-Unsubscribe: <{relay.http}/u/{token}>, <mailto:unsubscribe+{token}@relay.test>\r\n\r\n"
            f"See https://other.example/u/abcdefghijklmnopqrstuvwxyz234567 too\r\n").encode()
    before = relay.store.totals("acme", EVER).complaints
    reply = report(relay.port, "abuse@relay.test", _arf(copy, "someone@else.example"))
    assert code_of(reply) == REPORT_RECEIVED and "dana@example.org: recorded, suppressed" in reply, reply
    assert relay.store.totals("acme", EVER).complaints == before + 1
    middle = len(token) // 2  # (the last base32 character may hold only padding bits)
    forged = token[:middle] + ("a" if token[middle] != "a" else "b") + token[middle + 1:]
    tampered = copy.replace(token.encode(), forged.encode())
    reply = report(relay.port, "abuse@relay.test", _arf(tampered, "someone@else.example"))
    assert code_of(reply) == REPORT_FORGED
