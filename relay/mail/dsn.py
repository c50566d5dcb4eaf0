"""Delivery status notifications (RFC 3464 multipart/report) naming each refused recipient and why."""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING

from relay.mail.message import clean_line

if TYPE_CHECKING:
    from relay.config import ClientConfig


@dataclass(frozen=True)
class FailedRecipient:
    """One recipient the message did not reach; `diagnostic` is the remote MTA's reply as it gave it."""

    recipient: str
    code: int
    status: str
    reason: str
    diagnostic: str | None = None


# RFC 3463 enhanced status code at the start of a reply text: class.subject.detail
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


def upstream_failure(recipient: str, code: int, reply: str, status: str | None = None,
                     reason: str | None = None) -> FailedRecipient:
    """A recipient the upstream refused: Status is the upstream's own enhanced code when it gave one
    of the right class (5.1.1 and 5.7.1 mean different things to a bounce processor), the
    Diagnostic-Code its reply unchanged (RFC 3464 §2.3.4, §2.3.6)."""
    found = _ENHANCED.match(reply)
    if status is None:
        status = found.group(0) if found and found.group(1) == "5" else "5.0.0"
    return FailedRecipient(recipient, code, status, reason or f"upstream refused: {code} {reply}",
                           f"{code} {reply}")


def _lines(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


def build_dsn(client: "ClientConfig", reporting_host: str, envelope_from: str,
              failed: list[FailedRecipient], original_headers: list[bytes], queue_id: str,
              now: datetime, arrived: datetime | None = None) -> bytes:
    """A complete DSN message, ready to sign and send with a null envelope sender.

    `arrived` is when the relay accepted the message (Arrival-Date); a bounce from the retry
    spool is written days later than that."""
    boundary = f"=_dsn_{secrets.token_hex(12)}"
    domain = client.signing_domain
    human = [
        f"This is the mail relay at {reporting_host}, sending for {clean_line(client.company)}.",
        "",
        f"Your message (queue id {queue_id}) could NOT be delivered to the following",
        "recipient(s); it has been given up for them.",
        "",
    ]
    for f in failed:
        human.append(f"  <{f.recipient}>: {clean_line(f.reason)}")
    human += ["", "No action is needed for recipients refused for lack of consent or after an",
              "unsubscribe: the relay protects them on purpose. Do not resend to them."]
    per_recipient: list[str] = []
    for f in failed:
        per_recipient += [
            "",
            f"Final-Recipient: rfc822; {f.recipient}",
            "Action: failed",
            f"Status: {f.status}",
            "Diagnostic-Code: smtp; " + clean_line(f.diagnostic or f"{f.code} {f.status} {f.reason}"),
        ]
    body = b"".join([
        _lines(f"--{boundary}", "Content-Type: text/plain; charset=utf-8",
               "Content-Transfer-Encoding: 8bit", "", *human, ""),
        _lines(f"--{boundary}", "Content-Type: message/delivery-status", "",
               f"Reporting-MTA: dns; {reporting_host}", f"X-Queue-ID: {queue_id}",
               f"Arrival-Date: {format_datetime(arrived or now)}", *per_recipient, ""),
        _lines(f"--{boundary}", "Content-Type: text/rfc822-headers", ""),
        b"".join(original_headers),
        _lines("", f"--{boundary}--"),
    ])
    header = _lines(
        f"From: Mail Delivery System <mailer-daemon@{domain}>",
        f"To: <{envelope_from}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {format_datetime(now)}",
        f"Message-ID: {make_msgid(idstring=queue_id + '.dsn', domain=domain)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    )
    return header + b"\r\n" + body
