"""RFC 5322 §3.6: at most one of each one-per-message field; a second Subject: would dodge every check."""
from __future__ import annotations

from relay.mail.message import field_name

# RFC 5322 §3.6 table: fields that may occur at most once (Resent-* blocks and trace fields may repeat)
ONE_PER_MESSAGE = ("date", "from", "sender", "reply-to", "to", "cc", "bcc", "message-id", "in-reply-to",
                   "references", "subject")
_DISPLAY = {"message-id": "Message-ID", "reply-to": "Reply-To", "in-reply-to": "In-Reply-To"}


def repeated_field(headers: list[bytes]) -> str | None:
    """The first one-per-message field that occurs more than once, as it is usually written; else None.

    Checks read the first occurrence while mail readers and DKIM verifiers may read the last
    (OpenDKIM fails such mail), so a message with two is refused, not repaired.
    """
    seen: set[str] = set()
    for raw in headers:
        name = field_name(raw)
        if name in ONE_PER_MESSAGE:
            if name in seen:
                return _DISPLAY.get(name, name.title())
            seen.add(name)
    return None
