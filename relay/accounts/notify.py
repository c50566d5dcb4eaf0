"""Notices to a client's contact address about its account and campaigns (signed and sent like DSNs)."""
from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime, make_msgid
from typing import Any

from email.header import Header

from relay.mail.message import clean_line


def build_notice(client: Any, hostname: str, subject: str, lines: list[str], now: datetime) -> bytes:
    """A plain-text message from mailer-daemon@<client's signing domain> (so the client's DKIM key
    aligns with From), auto-submitted, to the client's contact address."""
    domain = client.signing_domain
    subject_value = Header(clean_line(f"[{hostname}] {subject}"), "utf-8").encode()
    body = "\r\n".join(clean_line(line) for line in lines) + "\r\n"
    header = [
        f"From: Mail relay {hostname} <mailer-daemon@{domain}>",
        f"To: {clean_line(client.contact_email)}",
        f"Subject: {subject_value}",
        f"Date: {format_datetime(now)}",
        f"Message-ID: {make_msgid(domain=domain)}",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    return ("\r\n".join(header) + "\r\n\r\n" + body).encode("utf-8")
