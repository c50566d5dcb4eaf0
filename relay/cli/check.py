"""`relay check`: the whole pipeline on one message, reporting every stage's verdict; nothing sent or stored."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from filters.context import CopyContext, MessageContext, RcptContext, Services
from filters.verdict import CONTINUE, Action, Verdict
from relay.mail.addresses import AddressError, normalize_address
from relay.config import ClientConfig, Config
from relay.keys import load_client_secrets, read_token_keys
from relay.mail.message import Copy, Message
from relay.pipeline import Pipeline
from relay.smtp.data import normalize_line_ends
from relay.crypto.tokens import TokenCodec
from relay.feedback.verp import stamp_headers
from relay.transaction import copy_headers, received_parts, resolve_list


@dataclass
class CheckReport:
    lines: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    copy: bytes | None = None

    def say(self, stage: str, subject: str, verdict: Verdict | str) -> None:
        text = verdict if isinstance(verdict, str) else (
            f"{verdict.action.value}" + ("" if verdict.action is Action.CONTINUE
                                         else f" {verdict.code} {verdict.status} {verdict.reason} [{verdict.rule}]"))
        self.lines.append(f"{stage:16} {subject:32} {text}")


async def check_message(config: Config, store: object, client: ClientConfig, recipients: list[str],
                        raw: bytes) -> CheckReport:
    """Run every configured stage as the relay would, read-only, and sign the first accepted copy.

    Every stage that sees a recipient gets a line for it (its verdict, `continue` when it passes);
    a copy stage gets a line saying what it changed.
    """
    from datetime import timedelta

    report = CheckReport()
    now = datetime.now(timezone.utc)
    tokens = TokenCodec(read_token_keys(config), timedelta(days=config.token_max_age_days))
    services = Services(clock=lambda: now, store=store, tokens=tokens)
    pipeline = Pipeline(config.stages)
    normalized = normalize_line_ends([raw])
    if normalized is None:
        report.say("smtp", "message", "reject 550 5.5.2 bare CR or NUL in message data")
        return report
    raw = b"".join(normalized)  # bare LF is CRLF, as the SMTP side takes it (SPEC §8)
    open_rcpts: list[str] = []
    for address in recipients:
        try:
            local, domain = normalize_address(address)
        except AddressError as exc:
            report.say("smtp", address, f"reject 501 5.1.3 {exc}")
            continue
        rcpt = f"{local}@{domain}"
        ctx = RcptContext(config, client, "", rcpt, services)
        for stage in pipeline.rcpt_stages:  # as Pipeline.check_recipient, saying each verdict
            verdict = await stage.run(ctx)
            report.say(stage.name, rcpt, verdict)
            if verdict.action is not Action.CONTINUE:
                break
        else:
            open_rcpts.append(rcpt)
    message = Message(raw)
    list_cfg = resolve_list(client, message)
    if isinstance(list_cfg, str):
        report.say("list", "message", f"reject {list_cfg}")
        return report
    report.say("list", "message", f"{list_cfg.key} ({list_cfg.kind})")
    if not open_rcpts:
        return report
    ctx = MessageContext(config, client, list_cfg, "", tuple(open_rcpts), message, services, "CHECK")
    decision = await pipeline.check_message(ctx)
    seen = list(open_rcpts)
    for stage, outcome in decision.trail:  # each stage saw the recipients no earlier stage refused
        verdicts = outcome if isinstance(outcome, Mapping) else dict.fromkeys(seen, outcome)
        for rcpt in seen:
            report.say(stage, rcpt, verdicts.get(rcpt, CONTINUE))
        seen = [r for r in seen if verdicts.get(r, CONTINUE).action is Action.CONTINUE]
    report.accepted = decision.accepted
    if not report.accepted:
        return report
    first = report.accepted[0]
    headers = stamp_headers(copy_headers(message, client, now, "CHECK", ctx.facts), message.first("x-campaign-id"),
                            message.body, list_cfg.key, client.name, config.relay.hostname)  # as relay.feedback does
    copy = Copy(first, headers, message.body)
    copy.prepend("Received", first.join(received_parts("relay-check (local)", config.relay.hostname, "LOCAL",
                                                       "CHECK", now)))
    copy_ctx = CopyContext(config, client, list_cfg, "", first, message, copy, services, "CHECK", ctx.facts)
    for stage in pipeline.copy_stages:
        before_headers, before_body = list(copy.headers), copy.body
        await stage.run(copy_ctx)
        report.say(stage.name, first, _changes(before_headers, before_body, copy))
    signer = load_client_secrets(client).signers
    from filters.sender_identity import aligned_domain

    domain = next((aligned_domain(a.rpartition("@")[2], client.sender_domains)
                   for a in message.from_addresses()), None) or client.signing_domain
    signatures = signer[domain].sign(copy.headers, copy.body, int(now.timestamp()))
    report.say("dkim", first, f"signed d={domain} s={client.dkim.selector}")
    report.copy = b"".join(signatures) + copy.as_bytes()
    return report


def _changes(headers: list[bytes], body: bytes, copy: Copy) -> str:
    """What a copy stage did, in a few words: the header fields it set, whether the body changed."""
    before, after = set(headers), set(copy.headers)
    added = [_name(f) for f in copy.headers if f not in before]
    removed = [_name(f) for f in headers if f not in after]
    parts = [f"set {', '.join(added)}"] if added else []
    if removed and not added:
        parts.append(f"removed {', '.join(removed)}")
    if copy.body != body:
        parts.append(f"body {len(body):,} -> {len(copy.body):,} bytes")
    return "applied: " + ("; ".join(parts) if parts else "no change")


def _name(raw_field: bytes) -> str:
    return raw_field.split(b":", 1)[0].strip().decode("ascii", "replace")
