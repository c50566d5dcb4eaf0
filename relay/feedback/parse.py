"""Read a report: RFC 3464 DSN, RFC 5965 ARF, RFC 3834 auto-reply, or a non-standard bounce (flufl.bounce)."""
from __future__ import annotations

import email
import email.message
import logging
import re
from dataclasses import dataclass, field
from email.policy import compat32

from relay.feedback.classify import find_status

log = logging.getLogger("relay.feedback")

DSN, ARF, AUTO_REPLY, OTHER = "dsn", "arf", "auto-reply", "other"

_BOUNCE_FROM = re.compile(r"mailer-daemon|postmaster|mail delivery|mail administrator|mailer_daemon|"
                          r"mdaemon|bounce", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(r"undeliver|undelivered|delivery (status|failure|has failed|notification)|"
                             r"returned mail|failure notice|mail delivery failed|could not be delivered|"
                             r"delivery failure|non[- ]?delivery|rejected|mail system error|not delivered|"
                             r"delivery problem|warning: could not send|bounce", re.IGNORECASE)
_AUTO_SUBJECT = re.compile(r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|"
                           r"away from|vacation|abwesenheit|absence|autoreply|on leave|auto:)", re.IGNORECASE)

_COMPLAINT_SUBJECT = re.compile(r"complaint about message|abuse report|spam report|feedback report", re.IGNORECASE)


@dataclass(frozen=True)
class Failure:
    """One recipient's line of a report."""

    recipient: str  # as the report names it ("" when it names none)
    status: str  # RFC 3463 code as given ("" when none)
    action: str  # failed / delayed / delivered / relayed / expanded, or "" (non-standard)
    diagnostic: str  # the remote reply or the report's words, one line


@dataclass
class Report:
    kind: str
    failures: list[Failure] = field(default_factory=list)
    feedback_type: str = ""  # ARF Feedback-Type, lower case
    reported_recipients: list[str] = field(default_factory=list)  # ARF Original-Rcpt-To
    original: str = ""  # the returned or reported message (or its header), as text, for attribution
    message_ids: list[str] = field(default_factory=list)  # Message-IDs found in the original
    via: str = ""  # which reader understood it: email, flufl.bounce, text


def _one_line(text: str, limit: int = 400) -> str:
    return " ".join(str(text).split())[:limit]


def _text(part: email.message.Message) -> str:
    """A part's payload as text, whatever its transfer encoding or charset claims."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # broken base64 or quoted-printable: take it as it stands
        payload = None
    if payload is None:
        raw = part.get_payload()
        if isinstance(raw, list):
            return "\n".join(_flatten(p) for p in raw if isinstance(p, email.message.Message))
        return str(raw)
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _flatten(msg: email.message.Message) -> str:
    try:
        return msg.as_string()
    except Exception:
        return "\n".join(f"{k}: {v}" for k, v in msg.items())


def _field_blocks(part: email.message.Message) -> list[email.message.Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and all(isinstance(p, email.message.Message) for p in payload):
        blocks = list(payload)
        # message/feedback-report is parsed as one sub-message: its body may hold more fields
        if len(blocks) == 1 and blocks[0].get_payload() and isinstance(blocks[0].get_payload(), str):
            blocks += _blocks_from_text(blocks[0].get_payload())
        return blocks
    return _blocks_from_text(_text(part))


def _blocks_from_text(text: str) -> list[email.message.Message]:
    chunks = re.split(r"\r?\n\s*\r?\n", text.strip())
    return [email.message_from_string(chunk.strip() + "\n", policy=compat32) for chunk in chunks if chunk.strip()]


def _typed_address(value: str | None) -> str:
    """`rfc822; a@b` → a@b (RFC 3464 address-type; `<>` and stray brackets dropped)."""
    if not value:
        return ""
    _, _, address = value.partition(";") if ";" in value else ("", "", value)
    return address.strip().strip("<>").strip()


def _headers_of(part: email.message.Message) -> tuple[str, list[str]]:
    """The original message (message/rfc822 or text/rfc822-headers) as text, and its Message-IDs."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message):
        inner = payload[0]
        return _flatten(inner), [v for v in inner.get_all("Message-ID", []) if v]
    text = _text(part)
    inner = email.message_from_string(text, policy=compat32)
    return text, [v for v in inner.get_all("Message-ID", []) if v]


def _dsn(msg: email.message.Message, report: Report) -> None:
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            blocks = _field_blocks(part)
            for block in blocks[1:] if len(blocks) > 1 else blocks:
                recipient = _typed_address(block.get("Final-Recipient") or block.get("Original-Recipient"))
                status = find_status(str(block.get("Status", "")))
                if not recipient and not status:
                    continue
                diagnostic = _one_line(_typed_address(block.get("Diagnostic-Code")) or block.get("Diagnostic-Code") or "")
                report.failures.append(Failure(recipient, status, str(block.get("Action", "")).strip().lower(),
                                               diagnostic))
        elif ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers", "message/global",
                       "message/global-headers"):
            report.original, report.message_ids = _headers_of(part)


def _arf(msg: email.message.Message, report: Report) -> bool:
    found = False
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/feedback-report":
            for block in _field_blocks(part):
                if block.get("Feedback-Type"):
                    report.feedback_type = str(block.get("Feedback-Type")).strip().lower()
                    found = True
                for value in block.get_all("Original-Rcpt-To", []) or []:
                    address = _typed_address(value)
                    if "@" in address:
                        report.reported_recipients.append(address)
        elif ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            report.original, report.message_ids = _headers_of(part)
    return found


def _is_auto_reply(msg: email.message.Message) -> bool:
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    if auto and not auto.startswith("no"):
        return True
    if any(msg.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Vacation")):
        return True
    if str(msg.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.search(str(msg.get("Subject", ""))))


def _looks_like_bounce(msg: email.message.Message) -> bool:
    return bool(_BOUNCE_FROM.search(str(msg.get("From", ""))) or _BOUNCE_SUBJECT.search(str(msg.get("Subject", ""))))


def _body_text(msg: email.message.Message) -> str:
    texts = [_text(p) for p in msg.walk() if not p.is_multipart() and p.get_content_maintype() == "text"]
    return "\n".join(texts) if texts else _text(msg)


def _nonstandard(msg: email.message.Message, report: Report) -> None:
    """Bounces without a delivery-status part: flufl.bounce's detectors (Mailman 3) find the addresses,
    the text around each one gives the status and the words."""
    body = _body_text(msg)
    temporary: set[bytes] = set()
    permanent: set[bytes] = set()
    try:
        from flufl.bounce import all_failures

        temporary, permanent = all_failures(msg)
        report.via = "flufl.bounce"
    except ImportError:  # optional: without it the text reader below still classifies the message
        report.via = "text"
    except Exception:  # a detector that trips on odd input must not lose the report
        log.debug("flufl.bounce failed on a report", exc_info=True)
        report.via = "text"
    lines = body.splitlines()
    for addresses, default in ((permanent, "5.0.0"), (temporary, "4.0.0")):
        for raw in sorted(addresses):
            address = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip("<>")
            context = _context(lines, address) or body
            status = find_status(context) or find_status(body) or ""
            report.failures.append(Failure(address, status or default, "failed" if default[0] == "5" else "delayed",
                                           _one_line(context)))
    if not report.failures:
        status = find_status(body)
        report.failures.append(Failure("", status, "", _one_line(body[:2000])))
    marker = re.search(r"^.*(below this line|original message|returned message|message headers follow|"
                       r"copy of the message|undelivered message).*$", body, re.IGNORECASE | re.MULTILINE)
    report.original = body[marker.end():] if marker else body


def _context(lines: list[str], address: str) -> str:
    lowered = address.lower()
    for i, line in enumerate(lines):
        if lowered in line.lower():
            return " ".join(lines[i:i + 4])
    return ""


def parse_report(data: bytes) -> Report:
    """Whatever arrives at the relay's own addresses: never raises for malformed input."""
    try:
        msg = email.message_from_bytes(data, policy=compat32)
    except Exception:
        return Report(OTHER, original=data.decode("utf-8", "replace"))
    ctype = msg.get_content_type()
    report_type = str(msg.get_param("report-type", "") or "").lower() if ctype == "multipart/report" else ""
    report = Report(OTHER, via="email")
    try:
        if report_type == "feedback-report" or any(p.get_content_type() == "message/feedback-report"
                                                   for p in msg.walk()):
            if _arf(msg, report):
                report.kind = ARF
                return report
        if report_type in ("delivery-status", "global-delivery-status") or any(
                p.get_content_type() in ("message/delivery-status", "message/global-delivery-status")
                for p in msg.walk()):
            _dsn(msg, report)
            if report.failures:
                report.kind = DSN
                return report
        if _looks_like_bounce(msg) or str(msg.get("Return-Path", "")).strip() == "<>" and not _is_auto_reply(msg):
            report.kind = DSN
            _nonstandard(msg, report)
            return report
        if _COMPLAINT_SUBJECT.search(str(msg.get("Subject", ""))) and any(
                p.get_content_type() in ("message/rfc822", "text/rfc822-headers") for p in msg.walk()):
            # the older, pre-ARF feedback loops: a complaint that carries the message it is about
            _arf(msg, report)
            report.kind, report.feedback_type, report.via = ARF, "abuse", "text"
            return report
        if _is_auto_reply(msg):
            report.kind = AUTO_REPLY
            return report
        # last try: a bounce that hides its nature in headers and subject; flufl.bounce knows many
        probe = Report(DSN)
        _nonstandard(msg, probe)
        if any(f.recipient for f in probe.failures):
            return probe
    except Exception:  # the email package copes with most breakage; what it does not is "other", never a crash
        log.info("a report could not be read; taken as not a report", exc_info=True)
        report = Report(OTHER, via="email")
    return report
