"""Stage limits (after DATA): volume limits per client and per list, and the repeat guard.

Over a limit the whole message gets 451 4.7.1 (the client's MTA keeps it; nothing is counted for
it); a recipient who already got this very body today is refused 550 5.7.1. Counting is one
storage transaction per message, shared with the canary stage (relay/accounts: `Accounts.step`).
"""
from __future__ import annotations

from filters.context import MessageContext
from filters.verdict import CONTINUE, Verdict

NAME = "limits"
DESCRIPTION = ("volume limits per client and transactional list (451 4.7.1 past them); the same body "
               "to the same recipient twice a day is refused")
PHASE = "message"


async def check(ctx: MessageContext) -> Verdict | dict[str, Verdict]:
    accounts = getattr(ctx.services, "accounts", None)
    if accounts is None:
        return CONTINUE
    step = await accounts.step(ctx)
    if step.over is not None:
        key = step.over
        scope = f"client {ctx.client.name}" if key.scope == "client" else \
            f"list {ctx.client.name}/{key.scope.split(':', 1)[1]}"
        return Verdict.tempfail(f"volume limit of {scope} reached ({key.limit} copies per {key.span}; "
                                f"{step.count} sent); try again later", f"limits.per-{key.span}")
    return {r: Verdict.reject(f"{r} already got this message from {ctx.client.name} today; "
                              f"identical copies are sent once a day", "limits.repeat")
            for r in step.repeats}
