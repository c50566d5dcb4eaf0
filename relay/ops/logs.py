"""Structured logging: one line per decision and per delivery attempt, as key=value text or JSON lines."""
from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

MAIL_LOGGER = "relay.mail"
mail_log = logging.getLogger(MAIL_LOGGER)
# the fields of a mail line, in this order (SPEC §12); absent ones are left out of text lines
FIELDS = ("event", "qid", "client", "peer", "list", "rcpt", "stage", "rule", "reply", "upstream_qid",
          "attempt", "elapsed_ms")


def _quote(value: Any) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\\') and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2026-12-07T05:00:00Z INFO relay.mail: event=deliver qid=… reply="250 …"`; other records as before."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "mail", None)
        if fields is not None:
            record.msg, record.args = " ".join(f"{k}={_quote(v)}" for k, v in fields.items()), None
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, and a mail line's fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name}
        fields = getattr(record, "mail", None)
        if fields is not None:
            out.update(fields)
        else:
            out["msg"] = record.getMessage()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


_handler: logging.Handler | None = None


def configure_logging(verbose: bool = False) -> None:
    """One stderr handler on the root logger, text until the configuration says otherwise."""
    global _handler
    root = logging.getLogger()
    if _handler is None or _handler not in root.handlers:
        _handler = logging.StreamHandler(sys.stderr)
        _handler.setFormatter(TextFormatter())
        root.addHandler(_handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # aiosmtpd logs every command line at INFO and DEBUG, AUTH exchanges and unsubscribe tokens
    # included (SPEC §8: secrets never in logs), so it stays at WARNING even with -v
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)


def apply_settings(log_format: str, log_mail: bool) -> None:
    """The configuration's [log] table: the format of every line, and whether mail lines are written."""
    if _handler is not None:
        _handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    mail_log.disabled = not log_mail


def mail_line(**fields: Any) -> None:
    """One decision or delivery attempt; None fields are left out."""
    if mail_log.disabled or not mail_log.isEnabledFor(logging.INFO):
        return
    ordered = {k: fields[k] for k in FIELDS if fields.get(k) is not None}
    ordered.update({k: v for k, v in fields.items() if k not in ordered and v is not None})
    mail_log.info("mail", extra={"mail": ordered})


def upstream_queue_id(reply: str) -> str | None:
    """The upstream's queue id from its 250 reply: Postfix `queued as 4XYZ`, Exim `id=1abc-…`,
    sendmail `4AB12CD Message accepted`, others' `queued as <id>` / `Queued mail for delivery`."""
    import re

    for pattern in (r"queued as ([A-Za-z0-9._-]+)", r"\bid=([A-Za-z0-9._-]+)",
                    r"^(?:2\.\d\.\d+ )?([A-Za-z0-9]{6,}) Message accepted"):
        match = re.search(pattern, reply, re.I)
        if match:
            return match.group(1).rstrip(".")
    return None
