"""`relay check`: the whole pipeline on one message, reporting every stage's verdict; nothing sent or stored."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from filters.context import CopyContext, MessageContext, RcptContext, Services
from filters.verdict import Action, Verdict
from relay.addresses import AddressError, normalize_address
from relay.config import ClientConfig, Config
from relay.keys import load_client_secrets, read_token_keys
from relay.message import Copy, Message
from relay.pipeline import Pipeline
from relay.smtp import has_bare_line_ending_or_nul
from relay.tokens import TokenCodec
from relay.transaction import resolve_list


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
    """Run every configured stage as the relay would, read-only, and sign the first accepted copy."""
    from datetime import timedelta

    report = CheckReport()
    now = datetime.now(timezone.utc)
    tokens = TokenCodec(read_token_keys(config), timedelta(days=config.token_max_age_days))
    services = Services(clock=lambda: now, store=store, tokens=tokens)
    pipeline = Pipeline(config.stages)
    if has_bare_line_ending_or_nul(raw):
        report.say("smtp", "message", "reject 550 5.5.2 bare CR, bare LF or NUL in message data")
        return report
    open_rcpts: list[str] = []
    for address in recipients:
        try:
            local, domain = normalize_address(address)
        except AddressError as exc:
            report.say("smtp", address, f"reject 501 5.1.3 {exc}")
            continue
        rcpt = f"{local}@{domain}"
        decision = await pipeline.check_recipient(RcptContext(config, client, "", rcpt, services))
        report.say(decision.stage or "rcpt stages", rcpt, decision.verdict)
        if not decision.verdict.refuses:
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
    for stage, outcome in decision.trail:
        if isinstance(outcome, Verdict):
            report.say(stage, "message", outcome)
        else:
            for rcpt in ctx.recipients:
                if rcpt in outcome:
                    report.say(stage, rcpt, outcome[rcpt])
    report.accepted = decision.accepted
    if not report.accepted:
        return report
    first = report.accepted[0]
    copy = Copy(first, list(message.headers), message.body)
    await pipeline.transform(CopyContext(config, client, list_cfg, "", first, message, copy, services,
                                         "CHECK", ctx.facts))
    signer = load_client_secrets(client).signers
    from filters.sender_identity import aligned_domain

    domain = next((aligned_domain(a.rpartition("@")[2], client.sender_domains)
                   for a in message.from_addresses()), None) or client.signing_domain
    signatures = signer[domain].sign(copy.headers, copy.body, int(now.timestamp()))
    report.copy = b"".join(signatures) + copy.as_bytes()
    return report
