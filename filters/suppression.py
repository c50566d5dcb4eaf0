"""Stage suppression (RCPT time): role addresses, global do-not-contact, client-wide suppression."""
from __future__ import annotations

from typing import TYPE_CHECKING

from filters.context import RcptContext
from filters.verdict import CONTINUE, Verdict

if TYPE_CHECKING:
    from storage.consent import SuppressionHit

NAME = "suppression"
DESCRIPTION = "refuse role addresses, do-not-contact addresses and domains, and client-wide suppressions at RCPT"
PHASE = "rcpt"
# Reasons that withdraw marketing consent only: a receipt still reaches someone who unsubscribed
# from all of a client's newsletters. The list (and so its kind) is known only after DATA, where the
# consent stage decides these; every other reason refuses at RCPT, whatever the list.
MARKETING_ONLY_REASONS = ("unsubscribe",)


def is_role_address(local: str, roles: frozenset[str]) -> bool:
    """postmaster@, info@, noreply@ ...: a mailbox of a function, not a person who subscribed."""
    return local.lower().split("+", 1)[0] in roles


def suppressed(recipient: str, client: str, hit: "SuppressionHit") -> Verdict:
    """The refusal for a global or client-wide suppression; it names this client only, never another's."""
    day = hit.created_at.date().isoformat()
    if hit.scope == "global":
        return Verdict.reject(f"{recipient} is on the do-not-contact list ({hit.target}, "
                              f"{hit.reason} since {day})", "suppression.global")
    return Verdict.reject(f"{recipient} is suppressed for client {client} ({hit.reason} on {day})",
                          "suppression.client")


async def check(ctx: RcptContext) -> Verdict:
    local, _, domain = ctx.recipient.rpartition("@")
    if is_role_address(local, ctx.config.role_addresses):
        return Verdict.reject(f"{ctx.recipient} is a role address ({local.lower().split('+')[0]}@): "
                              f"role mailboxes do not subscribe to mail", "suppression.role-address")
    store = ctx.services.store
    hit = await store.read(store.suppression_for, ctx.client.name, ctx.recipient, domain, MARKETING_ONLY_REASONS)
    if hit is None:
        return CONTINUE
    return suppressed(ctx.recipient, ctx.client.name, hit)
