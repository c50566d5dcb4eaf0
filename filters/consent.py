"""Stage consent (after DATA): each recipient needs current consent for the message's list."""
from __future__ import annotations

from datetime import timedelta

from filters.context import MessageContext
from filters.verdict import CONTINUE, Verdict

NAME = "consent"
DESCRIPTION = "recipients need current consent for the list (confirmed where the list demands it); list unsubscribes refuse"
PHASE = "message"


async def check(ctx: MessageContext) -> Verdict | dict[str, Verdict]:
    mailing = ctx.list
    if mailing is None or mailing.transactional:
        return CONTINUE  # transactional mail needs no marketing consent (do-not-contact still applied at RCPT)
    store = ctx.services.store
    # one query for the whole message, whatever the number of recipients
    found = await store.read(store.list_lookup, ctx.client.name, mailing.key, list(ctx.recipients))
    ctx.facts["consent"] = found.consents
    now = ctx.services.clock()
    where = f"{ctx.client.name}/{mailing.key}"
    verdicts: dict[str, Verdict] = {}
    for rcpt in ctx.recipients:
        unsubscribed = found.unsubscribed.get(rcpt)
        record = found.consents.get(rcpt)
        if unsubscribed is not None:
            verdicts[rcpt] = Verdict.reject(
                f"{rcpt} unsubscribed from {where} on {unsubscribed.created_at.date().isoformat()}",
                "consent.unsubscribed")
        elif record is None:
            verdicts[rcpt] = Verdict.reject(f"no consent from {rcpt} for list {where}", "consent.missing")
        elif record.status == "revoked":
            day = record.revoked_at.date().isoformat() if record.revoked_at else "an earlier date"
            verdicts[rcpt] = Verdict.reject(f"{rcpt} withdrew consent for list {where} on {day}",
                                            "consent.revoked")
        elif record.status != "confirmed":
            verdicts[rcpt] = Verdict.reject(
                f"consent from {rcpt} for list {where} is not confirmed yet (double opt-in pending)",
                "consent.unconfirmed")
        elif mailing.confirmed_opt_in and (record.method != "double" or record.confirmed_at is None):
            verdicts[rcpt] = Verdict.reject(
                f"list {where} requires confirmed (double) opt-in; {rcpt} gave single opt-in consent",
                "consent.unconfirmed")
        elif mailing.max_consent_age_days is not None:
            # the later of confirmation (or sign-up) and the last mail actually delivered
            basis = max(t for t in (record.confirmed_at or record.signed_up_at, record.last_contact_at) if t)
            if now - basis > timedelta(days=mailing.max_consent_age_days):
                verdicts[rcpt] = Verdict.reject(
                    f"consent from {rcpt} for list {where} is stale: last confirmed or contacted "
                    f"{basis.date().isoformat()}, more than {mailing.max_consent_age_days} days ago",
                    "consent.stale")
    return verdicts
