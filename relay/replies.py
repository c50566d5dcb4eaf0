"""The one place that turns verdicts, outcomes and exceptions into SMTP reply lines."""
from __future__ import annotations

import logging
import re

from filters.verdict import Verdict

log = logging.getLogger("relay.replies")

# Replies the relay gives, named so tests compare against the same constants.
AUTH_REQUIRED = "530 5.7.0 Authentication required"
AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
AUTH_SUCCESS = "235 2.7.0 Authentication successful"
ENCRYPTION_REQUIRED = "538 5.7.11 Encryption required for requested authentication mechanism"
AUTH_TOO_MANY_FAILURES = "421 4.7.0 Too many failed authentication attempts; closing connection"
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections; try again later"
TOO_MANY_CONNECTIONS_FROM_IP = "421 4.7.0 Too many connections from your address; try again later"
TIMEOUT = "421 4.4.2 Timeout exceeded; closing connection"
TLS_ALREADY_ACTIVE = "503 5.5.1 TLS already active"
TLS_NOT_OFFERED = "502 5.5.1 STARTTLS not offered: no certificate configured"
SHUTTING_DOWN = "421 4.3.2 Service shutting down; try again later"
BAD_RECIPIENT_SYNTAX = "501 5.1.3 Bad recipient address syntax"
BAD_SENDER_SYNTAX = "501 5.1.7 Bad sender address syntax"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
MESSAGE_TOO_BIG = "552 5.3.4 Message too big for system"
SMUGGLING = ("550 5.5.2 Message refused: bare CR, NUL or an end-of-data look-alike in message data "
             "(RFC 5321 section 2.3.8); send lines ending in CRLF")
UPSTREAM_UNAVAILABLE = "451 4.4.1 Upstream mail server unavailable; try again later"
INTERNAL_ERROR = "451 4.3.0 Internal error; try again later"
NO_LIST = "550 5.7.1 Message names no list (List-Id) and client {client} has no default_list"
UNKNOWN_LIST = "550 5.7.1 Unknown list {list!r} for client {client}"
NULL_SENDER = "550 5.7.1 Null sender <> not accepted from clients"
MIME_TOO_DEEP = "554 5.6.0 MIME parts nested more than 100 levels deep; message refused"
TLS_HANDSHAKE_FAILED = "421 4.7.0 TLS handshake failed; closing connection"
UNKNOWN_COMMAND = "500 5.5.2 Command not recognized"  # never the line itself: it may be a password
NO_PROGRESS = "421 4.7.0 Too many commands without progress; closing connection"
AUTH_BUSY = "454 4.7.0 Too many authentication attempts in progress from your address; try again later"
AUTHZID_REFUSED = ("535 5.7.8 Authentication credentials invalid: "
                   "the authorization identity must be empty or the user name (RFC 4616)")
REPEATED_FIELD = "554 5.6.0 Message has more than one {field}: field; RFC 5322 section 3.6 allows one"
OK = "250 2.0.0 OK"
UNSUBSCRIBED = "250 2.0.0 Unsubscribed; no more mail from this list will be sent to this address"
BAD_UNSUBSCRIBE_ADDRESS = "550 5.1.1 Unknown or expired unsubscribe address; use the link in a recent message"
# feedback intake (docs/FEEDBACK.md): mail to bounce+TOKEN@, fbl@, postmaster@, abuse@ HOSTNAME
BAD_RETURN_PATH = "550 5.1.1 Unknown or expired return-path address; this relay sent no such copy"
FEEDBACK_OWN_TRANSACTION = "452 4.5.3 Send mail to the relay's own addresses in its own transaction"
FEEDBACK_FORGED = "250 2.6.0 Report received; its token does not verify, so nothing was changed"
FEEDBACK_RECEIVED = "250 2.0.0 Report received"

_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}\b")
# aiosmtpd's own replies that carry no enhanced status code: the code to add (RFC 3463)
_DEFAULT_ENHANCED = {
    "221": "2.0.0", "250": "2.0.0", "421": "4.7.0", "500": "5.5.2", "501": "5.5.4",
    "502": "5.5.1", "503": "5.5.1", "504": "5.5.4", "530": "5.7.0", "552": "5.3.4",
    "553": "5.1.3", "554": "5.7.0", "555": "5.5.4",
}
_REWRITES = {
    "552 Error: Too much mail data": MESSAGE_TOO_BIG,
}


def one_line(text: str) -> str:
    """Replies are single ASCII lines: no CR/LF from any value can split a reply."""
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", text)
    return text.encode("ascii", "backslashreplace").decode("ascii").strip()


def verdict_reply(verdict: Verdict) -> str:
    return f"{verdict.code} {verdict.status} {one_line(verdict.reason)}"


def exception_reply(error: BaseException) -> str:
    """Internal errors become 451 4.3.0; the traceback goes to the log, never to the client."""
    log.error("internal error: %s", type(error).__name__, exc_info=error)
    return INTERNAL_ERROR


def with_enhanced_code(status: str) -> str:
    """Give aiosmtpd's built-in replies an enhanced status code (RFC 2034)."""
    if status in _REWRITES:
        return _REWRITES[status]
    if _ENHANCED.match(status) or len(status) < 4 or status[3] != " ":
        return status
    code = status[:3]
    enhanced = _DEFAULT_ENHANCED.get(code)
    if enhanced is None:
        return status
    text = status[4:]
    if text.startswith("Error: "):
        text = text[len("Error: "):]
    return f"{code} {enhanced} {text}"
