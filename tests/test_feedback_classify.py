"""RFC 3463 classification and report reading, case by case (the corpus run covers the breadth)."""
from __future__ import annotations

import pytest

from relay.feedback.classify import classify
from relay.feedback.parse import ARF, AUTO_REPLY, DSN, parse_report


@pytest.mark.parametrize("status, diagnostic, action, expected", [
    ("5.1.1", "550 5.1.1 user unknown", "failed", "hard"),
    ("5.1.10", "550 5.1.10 null MX", "failed", "hard"),
    ("5.2.1", "mailbox disabled", "failed", "hard"),
    ("5.2.2", "552 5.2.2 mailbox full", "failed", "soft"),
    ("4.2.2", "452 4.2.2 over quota", "failed", "soft"),
    ("5.7.1", "554 5.7.1 rejected as spam", "failed", "sender"),
    ("4.7.0", "421 4.7.0 try later, reputation", "failed", "sender"),
    ("5.1.8", "553 5.1.8 sender domain does not exist", "failed", "sender"),
    ("5.3.4", "552 5.3.4 message too big", "failed", "sender"),
    ("5.1.1", "", "delayed", "soft"),  # RFC 3464: a delayed recipient is still being tried
    ("2.0.0", "250 ok", "delivered", "none"),
    ("5.0.0", "550 5.7.1 can't determine Purported Responsible Address", "failed", "sender"),
    ("5.0.0", "550 Unknown user kijitora", "failed", "hard"),
    ("", "550 Requested action not taken: mailbox unavailable", "failed", "hard"),
    ("", "550 Rejected", "failed", "soft"),  # says nothing: counted, suppressed only past the soft limit
])
def test_classify_by_status_then_words(status, diagnostic, action, expected):
    assert classify(status, diagnostic, action)[0] == expected


def test_an_out_of_office_is_no_bounce_but_a_dsn_with_auto_submitted_is():
    vacation = b"From: a@example.org\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\n\r\nAway.\r\n"
    assert parse_report(vacation).kind == AUTO_REPLY
    dsn = (b"From: MAILER-DAEMON@mx.example.org\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
           b"Final-Recipient: rfc822; x@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n--b--\r\n")
    report = parse_report(dsn)
    assert report.kind == DSN and [(f.recipient, f.status, f.action) for f in report.failures] == \
        [("x@example.org", "5.1.1", "failed")]


@pytest.mark.parametrize("data", [b"", b"\x00\xff garbage", b"Content-Type: multipart/report; boundary=\r\n\r\n--",
                                  b"Content-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"])
def test_broken_input_never_raises(data):
    assert parse_report(data).kind in (DSN, ARF, AUTO_REPLY, "other")
