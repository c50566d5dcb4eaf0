"""Stage suppression (RCPT time): role addresses, global do-not-contact, client-wide suppression."""
from __future__ import annotations

from filters.context import RcptContext
from filters.verdict import CONTINUE, Verdict

NAME = "suppression"
DESCRIPTION = "refuse role addresses, do-not-contact addresses and domains, and client-wide suppressions at RCPT"
PHASE = "rcpt"


def is_role_address(local: str, roles: frozenset[str]) -> bool:
    """postmaster@, info@, noreply@ ...: a mailbox of a function, not a person who subscribed."""
    return local.lower().split("+", 1)[0] in roles


async def check(ctx: RcptContext) -> Verdict:
    local, _, domain = ctx.recipient.rpartition("@")
    if is_role_address(local, ctx.config.role_addresses):
        return Verdict.reject(f"{ctx.recipient} is a role address ({local.lower().split('+')[0]}@): "
                              f"role mailboxes do not subscribe to mail", "suppression.role-address")
    store = ctx.services.store
    hit = await store.read(store.suppression_for, ctx.client.name, ctx.recipient, domain)
    if hit is None:
        return CONTINUE
    day = hit.created_at.date().isoformat()
    if hit.scope == "global":
        return Verdict.reject(f"{ctx.recipient} is on the do-not-contact list ({hit.target}, "
                              f"{hit.reason} since {day})", "suppression.global")
    return Verdict.reject(f"{ctx.recipient} is suppressed for client {ctx.client.name} "
                          f"({hit.reason} on {day})", "suppression.client")
