"""Delivery status notifications (RFC 3464 multipart/report) naming each refused recipient and why."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING

from relay.message import clean_line

if TYPE_CHECKING:
    from relay.config import ClientConfig


@dataclass(frozen=True)
class FailedRecipient:
    recipient: str
    code: int
    status: str
    reason: str


def _lines(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


def build_dsn(client: "ClientConfig", reporting_host: str, envelope_from: str,
              failed: list[FailedRecipient], original_headers: list[bytes], queue_id: str,
              now: datetime) -> bytes:
    """A complete DSN message, ready to sign and send with a null envelope sender."""
    boundary = f"=_dsn_{secrets.token_hex(12)}"
    domain = client.signing_domain
    human = [
        f"This is the mail relay at {reporting_host}, sending for {clean_line(client.company)}.",
        "",
        f"Your message (queue id {queue_id}) was NOT delivered to the following",
        "recipient(s). It was delivered to the others.",
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
            f"Diagnostic-Code: smtp; {f.code} {f.status} {clean_line(f.reason)}",
        ]
    body = b"".join([
        _lines(f"--{boundary}", "Content-Type: text/plain; charset=utf-8",
               "Content-Transfer-Encoding: 8bit", "", *human, ""),
        _lines(f"--{boundary}", "Content-Type: message/delivery-status", "",
               f"Reporting-MTA: dns; {reporting_host}", f"X-Queue-ID: {queue_id}",
               f"Arrival-Date: {format_datetime(now)}", *per_recipient, ""),
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
