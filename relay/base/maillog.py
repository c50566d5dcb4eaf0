"""Structured logging: one line per decision and per delivery attempt, as key=value text or JSON lines."""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

MAIL_LOGGER = "relay.mail"  # named in each mail line; the lines bypass `logging` (see MailWriter)
# the fields of a mail line, in this order (SPEC §12); absent ones are left out of text lines
FIELDS = ("event", "qid", "client", "peer", "list", "rcpt", "stage", "rule", "reply", "upstream_qid",
          "attempt", "elapsed_ms")


# printable ASCII but space, '"', '=' and backslash: such a value goes out bare, any other is a JSON string
_BARE = re.compile(r'[!#-<>-\[\]-~]+')


def _quote(value: Any) -> str:
    text = value if type(value) is str else str(value)
    return text if _BARE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2026-12-07 05:00:00,123 INFO relay.server: …`: the relay's usual lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg (and exc when there is a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _iso(record.created), "level": record.levelname, "logger": record.name,
                               "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when % 1 * 1000):03d}Z"


class MailWriter:
    """Mail lines, formatted here and written in batches: through `logging` a line cost 50-150 µs
    on the bench machine (record, formatter, localtime, a write and a flush each), two of them
    per message a tenth of what the relay spends on a message. Here a line is a string join; a
    running relay writes what gathered every 0.1 s (`flush_forever`), anything else at once."""

    def __init__(self) -> None:
        self.enabled = True
        self.json = False
        self.buffer: list[str] = []
        self.batching = 0  # relays in this process running flush_forever
        self._second = -1
        self._stamp = ""

    def line(self, fields: dict[str, Any]) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:  # made once a second: strftime and localtime are not cheap
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S" if self.json else "%Y-%m-%d %H:%M:%S",
                                        (time.gmtime if self.json else time.localtime)(second))
        ms = int((now - second) * 1000)
        if self.json:
            text = json.dumps({"ts": f"{self._stamp}.{ms:03d}Z", "level": "INFO", "logger": MAIL_LOGGER, **fields},
                              ensure_ascii=False, default=str)
        else:  # the same frame as logging's lines: `asctime level logger: message`
            text = (f"{self._stamp},{ms:03d} INFO {MAIL_LOGGER}: "
                    + " ".join(f"{k}={_quote(v)}" for k, v in fields.items()))
        self.buffer.append(text)
        if not self.batching:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        data = "\n".join(self.buffer) + "\n"
        self.buffer.clear()
        stream = _handler.stream if _handler is not None else sys.stderr
        try:
            stream.write(data)
            stream.flush()
        except (OSError, ValueError):  # stderr closed or full: the audit log still has every decision
            pass


writer = MailWriter()


async def flush_forever(interval: float = 0.1) -> None:
    """Run for a relay's life: write the gathered mail lines every `interval` seconds, and at the end."""
    import asyncio

    writer.batching += 1
    try:
        while True:
            await asyncio.sleep(interval)
            writer.flush()
    finally:
        writer.batching -= 1
        writer.flush()


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
    writer.json, writer._second = log_format == "json", -1  # (the cached stamp is per format)
    writer.enabled = log_mail


def mail_line(**fields: Any) -> None:
    """One decision or delivery attempt; None fields are left out. Only `relay serve` and the CLI
    configure a handler: a relay inside another program (the tests) writes no mail lines."""
    if not writer.enabled or _handler is None:
        return
    ordered = {k: fields[k] for k in FIELDS if fields.get(k) is not None}
    if len(ordered) != len(fields):
        ordered.update({k: v for k, v in fields.items() if k not in ordered and v is not None})
    writer.line(ordered)


def upstream_queue_id(reply: str) -> str | None:
    """The upstream's queue id from its 250 reply: Postfix `queued as 4XYZ`, Exim `id=1abc-…`,
    sendmail `4AB12CD Message accepted`, others' `queued as <id>` / `Queued mail for delivery`."""
    for pattern in (r"queued as ([A-Za-z0-9._-]+)", r"\bid=([A-Za-z0-9._-]+)",
                    r"^(?:2\.\d\.\d+ )?([A-Za-z0-9]{6,}) Message accepted"):
        match = re.search(pattern, reply, re.I)
        if match:
            return match.group(1).rstrip(".")
    return None
