"""Stage spam-score: SpamAssassin's score for the message (spamd), with per-client tag and reject thresholds.

Optional and off by default (not in the default stage list): add "spam-score" to `[policy] stages`,
usually after "content". The message as the client sent it goes to spamd with the SYMBOLS command
(the score and the names of the rules that fired); a score at or above `reject` refuses it
(`550 5.7.1`, naming the score and the rules), at or above `tag` records a tag (the same
`X-Consent-Relay-Content: rule=spam-score.tag; category=spam-score` header the content stage's tags
give), below passes. The call is bounded by `timeout` (asyncio, never blocking the loop): when
spamd is slow, down or answers nonsense, `on_error = "tempfail"` (the default) answers
`451 4.7.1` so the client retries, `"pass"` lets the message go on unscored (`ctx.facts`
records why). Messages over `max_size` bytes are not scored (spamc's own default is 500 KB).

    [policy.spam_score]              # the defaults shown
    host = "127.0.0.1"
    port = 783
    timeout = 5.0                    # seconds, connect to answer
    tag = 5.0                        # SpamAssassin's own threshold
    reject = 10.0
    on_error = "tempfail"            # or "pass"
    max_size = 512000
    [clients.acme.spam_score]        # per client: tag, reject, on_error (win over the operator's)
    reject = 8.0

spamd's protocol is spoken here (`score`, thirty lines of asyncio) rather than through aiospamc: on a
timeout aiospamc leaves its socket for the garbage collector (a ResourceWarning, a descriptor held per
slow answer), and the stage needs one request, SYMBOLS. See docs/CONTENT.md.
"""
from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from filters.context import MessageContext, config_table
from filters.verdict import CONTINUE, Verdict

NAME = "spam-score"
DESCRIPTION = "SpamAssassin score from spamd, with per-client tag and reject thresholds; off by default"
PHASE = "message"

FACTS_KEY = "spam_score"
MAX_ANSWER = 64 * 1024           # spamd's answer to SYMBOLS: a few headers and the rule names
_SPAM_HEADER = re.compile(r"\s*(?:true|false|yes|no)\s*;\s*(-?[0-9]+(?:\.[0-9]+)?)\s*/\s*-?[0-9.]+\s*$", re.I)
TAG = ("spam-score.tag", "spam-score")   # appended to ctx.facts["content_tags"]: the core adds the header

OPERATOR_KEYS = {"host", "port", "timeout", "tag", "reject", "on_error", "max_size"}
CLIENT_KEYS = {"tag", "reject", "on_error"}


class SpamScoreError(ValueError):
    """A spam_score setting is wrong; the message names the key."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 783
    timeout: float = 5.0
    tag: float = 5.0
    reject: float = 10.0
    on_error: str = "tempfail"
    max_size: int = 512_000


def validate_table(data: Mapping[str, Any], where: str, client: bool = False) -> None:
    """Check one `[policy.spam_score]` or `[clients.X.spam_score]` table; raise naming the key."""
    allowed = CLIENT_KEYS if client else OPERATOR_KEYS
    for key in data:
        if key not in allowed:
            raise SpamScoreError(f"{where}.{key}: unknown key (one of {', '.join(sorted(allowed))})")
    for key in ("tag", "reject", "timeout"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise SpamScoreError(f"{where}.{key}: must be a number, got {value!r}")
    if "timeout" in data and not 0 < data["timeout"] <= 120:
        raise SpamScoreError(f"{where}.timeout: must be between 0 and 120 seconds")
    if data.get("on_error", "tempfail") not in ("tempfail", "pass"):
        raise SpamScoreError(f"{where}.on_error: must be \"tempfail\" or \"pass\", got {data['on_error']!r}")
    for key in ("port", "max_size"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise SpamScoreError(f"{where}.{key}: must be a positive whole number, got {value!r}")
    if "host" in data and (not isinstance(data["host"], str) or not data["host"].strip()):
        raise SpamScoreError(f"{where}.host: must be a host name or address")


def settings_for(config: Any, client: Any) -> Settings:
    """The operator's `[policy.spam_score]` with the client's overrides (both optional)."""
    op = config_table(getattr(config, "spam_score", None))
    cl = config_table(getattr(client, "spam_score", None))
    validate_table(op, "policy.spam_score")
    validate_table(cl, f"clients.{getattr(client, 'name', '?')}.spam_score", client=True)
    merged = {**op, **cl}
    settings = Settings(**{k: (float(v) if k in ("tag", "reject", "timeout") else v) for k, v in merged.items()})
    if settings.reject < settings.tag:
        raise SpamScoreError(f"clients.{getattr(client, 'name', '?')}.spam_score: reject ({settings.reject}) "
                             f"is below tag ({settings.tag})")
    return settings


async def score(raw: bytes, settings: Settings) -> tuple[float, list[str]]:
    """SpamAssassin's score and the names of the rules that fired, from spamd (raises on any failure).

    One SYMBOLS request in spamd's protocol (SPAMC/1.5: a request line, Content-length, a blank
    line, the message; the answer "SPAMD/1.x 0 EX_OK", a "Spam: True ; 7.3 / 5.0" header, a blank
    line and the rule names separated by commas), the whole exchange bounded by the timeout, the
    connection closed whatever happens.
    """
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(settings.host, settings.port, limit=MAX_ANSWER)
        try:
            writer.write(b"SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(raw))
            writer.write(raw)
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            answer = b""
            while len(answer) < MAX_ANSWER:  # spamd answers and closes the connection
                chunk = await reader.read(MAX_ANSWER)
                if not chunk:
                    break
                answer += chunk
            return answer
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    answer = await asyncio.wait_for(exchange(), settings.timeout)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("ascii", "replace").split("\r\n")
    status = lines[0].split(None, 2)
    if len(status) < 2 or not status[0].startswith("SPAMD/") or status[1] != "0":
        raise ValueError(f"spamd answered {lines[0][:60]!r}")
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "spam":
            m = _SPAM_HEADER.match(value)
            if m is None:
                raise ValueError(f"spamd answered Spam: {value[:60]!r}")
            value_ = float(m.group(1))
            if not math.isfinite(value_):
                raise ValueError(f"spamd answered a score of {m.group(1)!r}")
            names = body.decode("ascii", "replace").replace("\r\n", "")
            return value_, [n.strip() for n in names.split(",") if n.strip()]
    raise ValueError("spamd answered without a Spam header")


async def check(ctx: MessageContext) -> Verdict:
    settings = settings_for(ctx.config, ctx.client)
    if ctx.message.size > settings.max_size:
        ctx.facts[FACTS_KEY] = {"skipped": f"larger than {settings.max_size} bytes"}
        return CONTINUE
    try:
        raw = b"".join(ctx.message.headers) + b"\r\n" + ctx.message.body
        value, rules = await score(raw, settings)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # timeout, refused connection, a protocol error: spamd could not score it
        ctx.facts[FACTS_KEY] = {"error": type(exc).__name__}
        if settings.on_error == "pass":
            return CONTINUE
        return Verdict.tempfail("spam scorer unavailable, please try again later", "spam-score.unavailable")
    ctx.facts[FACTS_KEY] = {"score": value, "rules": rules}
    named = ",".join(rules[:6]) + (",..." if len(rules) > 6 else "")
    if value >= settings.reject:
        return Verdict.reject(f"spam score {value:.1f} at or above {settings.reject:.1f} ({named or 'no rules'})",
                              "spam-score.reject")
    if value >= settings.tag:
        tags = ctx.facts.setdefault("content_tags", [])
        if TAG not in tags:
            tags.append(TAG)
    return CONTINUE
