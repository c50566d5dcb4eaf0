"""Stage consent (after DATA): each recipient needs current consent for the list, and no suppression."""
from __future__ import annotations

from datetime import timedelta

from filters.context import MessageContext
from filters.suppression import MARKETING_ONLY_REASONS, suppressed
from filters.verdict import CONTINUE, Verdict

NAME = "consent"
DESCRIPTION = ("recipients need current consent for the list (confirmed where the list demands it); "
               "list unsubscribes and suppressions refuse")
PHASE = "message"


async def check(ctx: MessageContext) -> Verdict | dict[str, Verdict]:
    mailing = ctx.list
    if mailing is None:
        return CONTINUE
    store = ctx.services.store
    # one query for the whole message, whatever the number of recipients: consent records and
    # suppressions, including global and client-wide ones added since RCPT
    found = await store.read(store.list_lookup, ctx.client.name, mailing.key, list(ctx.recipients))
    client = ctx.client.name
    verdicts: dict[str, Verdict] = {}
    if mailing.transactional:
        # no marketing consent needed, and an unsubscribe does not stop a receipt; the rest does
        for rcpt in ctx.recipients:
            blocking = [h for h in found.wide.get(rcpt, ()) if h.reason not in MARKETING_ONLY_REASONS]
            if blocking:
                verdicts[rcpt] = suppressed(rcpt, client, blocking[0])
        return verdicts
    ctx.facts["consent"] = found.consents
    now = ctx.services.clock()
    where = f"{client}/{mailing.key}"
    for rcpt in ctx.recipients:
        wide = found.wide.get(rcpt, [])
        blocking = [h for h in wide if h.reason not in MARKETING_ONLY_REASONS]
        unsubscribed = found.unsubscribed.get(rcpt)
        record = found.consents.get(rcpt)
        if blocking:
            verdicts[rcpt] = suppressed(rcpt, client, blocking[0])
        elif wide:  # a global or client-wide unsubscribe: from all marketing mail
            hit, day = wide[0], wide[0].created_at.date().isoformat()
            of = f"of {client}" if hit.scope == "client" else f"sent through this relay ({hit.target})"
            verdicts[rcpt] = Verdict.reject(f"{rcpt} unsubscribed from all marketing mail {of} on {day}",
                                            "consent.unsubscribed")
        elif unsubscribed is not None:
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
