"""Client accounts with consequences: states polled from storage, limits, canary campaigns, notices.

One `Accounts` per relay process. States are cached in memory and refreshed when the version row
in storage moves (polled every STATE_POLL seconds), so a `relay client state` on any host bites in
every worker within a second, without a restart. The per-message checks (volume limits, the repeat
guard, the campaign share) are one storage transaction per message (`Store.account_step`).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable

from relay.accounts import settings
from relay.accounts.fingerprint import campaign_key, fingerprint
from relay.accounts.notify import build_notice
from storage.accounts import CampaignAsk, LimitKey, StepAsk, StepResult

log = logging.getLogger("relay.accounts")

STATE_POLL = 0.5          # seconds between looks at the version row: a change bites within ~1 s
JUDGE_EVERY = 1.0         # seconds between looks for campaigns whose hold has ended
REPUTATION_EVERY = 60.0   # seconds between passes of the reputation rules
PRUNE_EVERY = 600.0       # seconds between clean-ups of old counters
STEP_FACT = "accounts.step"
HOLD_FACT = "accounts.limits"


@dataclass(frozen=True)
class _Plan:
    limits: tuple[tuple[str, str, int, int], ...]  # (scope, span, seconds, limit)
    repeats: bool
    canary: settings.Canary | None


@dataclass(frozen=True)
class Refusal:
    code: int
    status: str
    text: str

    @property
    def line(self) -> str:
        return f"{self.code} {self.status} {self.text}"


def refusal_for(client: str, state: str) -> Refusal | None:
    """What a client in this state is told at MAIL (and RCPT): frozen keeps the mail at the client."""
    if state == "frozen":
        return Refusal(451, "4.7.1", f"Client {client} is frozen; mail is deferred until an operator "
                                     f"lifts the freeze (keep it queued)")
    if state in ("suspended", "terminated"):
        return Refusal(550, "5.7.1", f"Client {client} is {state}; mail is not accepted")
    return None


class Accounts:
    """States, limits and campaigns of every client, as this process sees them."""

    def __init__(self, config: Any, store: Any, clock: Callable[[], datetime],
                 send: Callable[[Any, str, bytes], Awaitable[None]] | None = None, writer: Any = None):
        self.config, self.store, self.clock, self.send = config, store, clock, send
        self.version = -1
        self.stored: dict[str, str] = {}
        self._plans: dict[tuple[int, str, str | None], _Plan] = {}
        # steps ride in the audit group commit (relay/base/writer.py): no hop or commit of their own
        self.writer = writer

    # -- states ------------------------------------------------------------------------------

    def state_of(self, client: Any) -> str:
        return self.stored.get(client.name, client.state)

    def closed(self, client: Any) -> bool:
        """Suspended or terminated: no sign-ups, no mail in the client's name."""
        return self.state_of(client) in ("suspended", "terminated")

    def refusal(self, client: Any) -> Refusal | None:
        return refusal_for(client.name, self.state_of(client))

    async def refresh(self) -> bool:
        """Reload the states when the version row moved; True when it did."""
        version = await self.store.run(self.store.account_version)
        if version == self.version:
            return False
        self.stored = await self.store.run(self.store.account_states)
        self.version = version
        return True

    async def change_state(self, client: Any, new: str, actor: str, reason: str, evidence: str = "",
                           only_from: tuple[str, ...] | None = None) -> tuple[str, str] | None:
        """Record the change (audited), mail the client, and take it into this process at once."""
        now = self.clock()
        changed = await self.store.run(self.store.change_account_state, client.name, new, client.state, actor,
                                       reason, evidence, now, only_from)
        if changed is None:
            return None
        self.stored[client.name] = new
        old = changed[0]
        lines = [f"The account of {client.company} ({client.name}) at this mail relay changed from "
                 f"{old} to {new} on {now:%Y-%m-%d %H:%M} UTC.", "", f"Reason: {reason}"]
        if evidence:
            lines += [f"Evidence: {evidence}"]
        lines += ["", _MEANING[new]]
        await self.notify(client, f"Your sending account is now {new}", lines)
        return changed

    async def notify(self, client: Any, subject: str, lines: list[str]) -> None:
        """A notice to the client's contact address, DKIM-signed, through the upstream; never raises."""
        if self.send is None:
            return
        try:
            data = build_notice(client, self.config.relay.hostname, subject, lines, self.clock())
            await self.send(client, client.contact_email, data)
        except Exception:
            log.exception("could not mail a notice to client %s", client.name)

    # -- the per-message step ------------------------------------------------------------------

    async def step(self, ctx: Any) -> StepResult:
        """Limits, repeats and the campaign share of this message: one storage transaction, shared by
        the limits and canary stages (whichever runs first does it)."""
        done = ctx.facts.get(STEP_FACT)
        if done is not None:
            return done
        from storage.consent import suppression_key

        now = self.clock()
        mailing = ctx.list
        plan = self._plan(ctx.client, mailing)
        ts = int(now.timestamp())
        limits = [LimitKey(scope, span, ts // seconds, limit) for scope, span, seconds, limit in plan.limits]
        ask = None
        fp = fingerprint(ctx) if (plan.repeats or plan.canary) else None
        if plan.canary is not None:
            canary = plan.canary
            label = (ctx.message.first("x-campaign-id") or "").strip()[:200]
            size = _declared_size(ctx.message.first("x-campaign-size"))
            ask = CampaignAsk(campaign_key(ctx.client.name, mailing.key, label or f"fingerprint:{fp}"),
                              mailing.key, label or f"fingerprint:{fp[:16]}", (ctx.message.first("subject") or ""),
                              size, canary.threshold, canary.first(size), canary.hold_seconds)
        recipients = list(ctx.recipients)
        ask_step = StepAsk(ctx.client.name, recipients, [suppression_key(r) for r in recipients],
                           now, limits, fp if plan.repeats else None, ask, ctx.queue_id)
        result = (await self.writer.step(ask_step) if self.writer is not None
                  else (await self.store.run(self.store.account_steps, [ask_step]))[0])
        ctx.facts[STEP_FACT] = result
        ctx.facts[HOLD_FACT] = (limits, len(recipients) - len(result.repeats) - len(result.held)
                                - len(result.declined))
        return result

    def _plan(self, client: Any, mailing: Any) -> "_Plan":
        """What the step checks for this client and list: worked out once per configuration."""
        key = (id(self.config), client.name, getattr(mailing, "key", None))
        plan = self._plans.get(key)
        if plan is None:
            stages = self.config.stages
            # each half only where its stage runs: limits and the repeat guard belong to `limits`,
            # campaigns to `canary`
            limits = tuple((scope, span, settings.SPANS[span], limit) for scope, span, _, limit in
                           settings.limit_keys(self.config, client, mailing, 0)) if "limits" in stages else ()
            repeats = "limits" in stages and int(settings.merged("limits", self.config, client)["identical_per_day"]) > 0
            marketing = mailing is not None and not mailing.transactional and "canary" in stages
            plan = self._plans[key] = _Plan(limits, repeats, settings.canary(self.config, client) if marketing else None)
        return plan

    async def undo(self, client: Any, facts: dict[str, Any], queue_id: str) -> None:
        """The message ended in a 4xx after its step (upstream down): its retry is neither a repeat
        nor counted twice."""
        limits, count = facts.get(HOLD_FACT, ([], 0))
        if STEP_FACT not in facts:
            return
        try:
            await self.store.run(self.store.account_step_undo, client.name, limits, count, queue_id)
        except Exception:
            log.error("queue %s: could not give back the limits of a deferred message", queue_id)

    # -- campaigns -----------------------------------------------------------------------------

    async def judge(self, campaign: dict[str, Any]) -> str | None:
        """Release or decline a campaign whose hold ended; None when another worker already did."""
        client = self.config.clients.get(campaign["client"])
        c = settings.canary(self.config, client)
        fb = await self.store.run(self.store.campaign_feedback, campaign["id"])
        sent = max(fb["canary"], 1)
        rates = [("hard-bounce", fb["bounce"] / sent, c.max_hard_bounce_rate),
                 ("unsubscribe", fb["unsubscribe"] / sent, c.max_unsubscribe_rate),
                 ("complaint", fb["complaint"] / sent, c.max_complaint_rate)]
        over = [(name, rate, limit) for name, rate, limit in rates if rate > limit]
        summary = ", ".join(f"{name} rate {rate:.1%} (limit {limit:.1%})" for name, rate, limit in rates)
        evidence = (f"canary of {fb['canary']}: {fb['bounce']} hard bounces, {fb['unsubscribe']} unsubscribes, "
                    f"{fb['complaint']} complaints; {summary}")
        state = "declined" if over else "released"
        if not await self.store.run(self.store.decide_campaign, campaign["id"], state, "rule:canary",
                                    evidence, self.clock(), ("holding",)):
            return None
        if client is not None:
            await self.notify_campaign(client, campaign, state, evidence)
        return state

    async def decide(self, campaign: dict[str, Any], state: str, actor: str, reason: str) -> bool:
        if not await self.store.run(self.store.decide_campaign, campaign["id"], state, actor, reason,
                                    self.clock(), ("counting", "holding", "open")):
            return False
        client = self.config.clients.get(campaign["client"])
        if client is not None:
            await self.notify_campaign(client, campaign, state, reason)
        return True

    async def notify_campaign(self, client: Any, campaign: dict[str, Any], state: str, why: str) -> None:
        what = ("will be accepted when your mail system retries the held recipients" if state == "released"
                else "is refused (550 5.7.1) for every recipient not yet sent")
        await self.notify(client, f"Campaign {campaign['id']} {state}", [
            f"Your campaign {campaign['id']} ({campaign['label']}, list {campaign['list_key']}, "
            f"subject {campaign['subject']!r}) was {state}.", "", f"Why: {why}", "",
            f"The rest of the campaign {what}."])

    async def judge_due(self) -> list[str]:
        return [s for c in await self.store.run(self.store.campaigns_due, self.clock())
                if (s := await self.judge(c)) is not None]

    # -- reputation ----------------------------------------------------------------------------

    async def reputation_pass(self) -> list[tuple[str, str]]:
        """Warn or freeze clients whose complaint or hard-bounce rate crossed a threshold; never
        suspend, never lift a state (an operator decides those)."""
        changed = []
        today = self.clock().date()
        for client in self.config.clients.values():
            r = settings.merged("reputation", self.config, client)
            since = today - timedelta(days=int(r["window_days"]) - 1)
            counts = await self.store.run(self.store.totals, client.name, since)
            if counts.delivered < max(1, int(r["min_volume"])):
                continue
            complaint = counts.complaints / counts.delivered
            bounce = counts.hard_bounces / counts.delivered
            evidence = (f"{counts.complaints} complaints and {counts.hard_bounces} hard bounces on "
                        f"{counts.delivered} delivered copies since {since.isoformat()}: complaint rate "
                        f"{complaint:.2%}, hard-bounce rate {bounce:.2%}")
            if complaint >= r["complaint_freeze"] or bounce >= r["bounce_freeze"]:
                new, only_from = "frozen", ("active", "warned")
                why = (f"complaint rate {complaint:.2%} >= {r['complaint_freeze']:.2%}"
                       if complaint >= r["complaint_freeze"] else
                       f"hard-bounce rate {bounce:.2%} >= {r['bounce_freeze']:.2%}")
            elif complaint >= r["complaint_warn"] or bounce >= r["bounce_warn"]:
                new, only_from = "warned", ("active",)
                why = (f"complaint rate {complaint:.2%} >= {r['complaint_warn']:.2%}"
                       if complaint >= r["complaint_warn"] else
                       f"hard-bounce rate {bounce:.2%} >= {r['bounce_warn']:.2%}")
            else:
                continue
            if await self.change_state(client, new, "rule:reputation", why, evidence, only_from):
                changed.append((client.name, new))
        return changed

    # -- background work -----------------------------------------------------------------------

    async def run_forever(self) -> None:
        """Poll states; judge campaigns; run the reputation rules; prune. Errors are logged, retried."""
        last_reputation = last_prune = last_judge = 0.0
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            try:
                await self.refresh()
                if now - last_judge >= JUDGE_EVERY:
                    last_judge = now
                    await self.judge_due()
                if now - last_reputation >= REPUTATION_EVERY:
                    last_reputation = now
                    await self.reputation_pass()
                if now - last_prune >= PRUNE_EVERY:
                    last_prune = now
                    await self.store.run(self.store.account_prune, self.clock())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("account upkeep failed; trying again", exc_info=True)
            await asyncio.sleep(STATE_POLL)


_MEANING = {
    "active": "Your mail is accepted as usual.",
    "warned": ("Your mail is still accepted. Please look at the evidence above: if it goes on, the "
               "account will be frozen."),
    "frozen": ("New mail is deferred (451 4.7.1): your mail system keeps it and retries. Nothing is lost "
               "while the freeze lasts; contact the relay operator."),
    "suspended": "New mail is refused (550 5.7.1). Contact the relay operator.",
    "terminated": "The account is closed; mail is refused (550 5.7.1).",
}


def _declared_size(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() and len(value) < 10 else None


__all__ = ["Accounts", "Refusal", "refusal_for", "STEP_FACT"]
