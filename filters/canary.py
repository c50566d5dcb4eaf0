"""Stage canary (after DATA): a large campaign goes out to a first share, then waits to be judged.

A campaign is one client's mail on one list with one body fingerprint or X-Campaign-ID (SPEC §11).
Past `[policy.canary] threshold`, recipients beyond the canary get 451 4.7.1 during the hold (the
client's MTA keeps them; nothing is stored); a declined campaign gets 550 5.7.1 naming it.
"""
from __future__ import annotations

from filters.context import MessageContext
from filters.verdict import CONTINUE, Verdict

NAME = "canary"
DESCRIPTION = ("campaigns over the threshold go to a first share (the canary) and the rest wait for the "
               "judgement after the hold: released or declined")
PHASE = "message"


async def check(ctx: MessageContext) -> Verdict | dict[str, Verdict]:
    accounts = getattr(ctx.services, "accounts", None)
    if accounts is None or ctx.list is None or ctx.list.transactional:
        return CONTINUE
    step = await accounts.step(ctx)
    camp = step.campaign
    if camp is None:
        return CONTINUE
    verdicts: dict[str, Verdict] = {}
    for r in step.declined:
        verdicts[r] = Verdict.reject(f"campaign {camp['id']} ({camp['label']}) was declined: {camp['reason']}",
                                     "canary.declined")
    if step.held:
        until = camp["hold_until"]
        when = f"until {until:%Y-%m-%d %H:%M:%S} UTC" if until else "for now"
        held = Verdict.tempfail(f"campaign {camp['id']} is held {when} while its first {camp['sent']} "
                                f"recipients are judged; retry later", "canary.held")
        for r in step.held:
            verdicts[r] = held
    return verdicts
