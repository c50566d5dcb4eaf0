"""Stage account-state (RCPT): a frozen, suspended or terminated client sends nothing.

The same check runs at MAIL (relay/smtp/session.py); this one catches a state that changed during the
session. The state is read from the process's cache (relay/accounts), which follows storage.
"""
from __future__ import annotations

from filters.context import RcptContext
from filters.verdict import CONTINUE, Verdict

NAME = "account-state"
DESCRIPTION = "frozen clients get 451 4.7.1, suspended and terminated ones 550 5.7.1 (state from storage)"
PHASE = "rcpt"


async def check(ctx: RcptContext) -> Verdict:
    accounts = getattr(ctx.services, "accounts", None)
    if accounts is None:
        return CONTINUE
    refusal = accounts.refusal(ctx.client)
    if refusal is None:
        return CONTINUE
    if refusal.code < 500:
        return Verdict.tempfail(refusal.text, "account.frozen", refusal.code, refusal.status)
    return Verdict.reject(refusal.text, f"account.{accounts.state_of(ctx.client)}", refusal.code, refusal.status)
