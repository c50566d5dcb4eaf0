"""The decision for one policy request: the relay's RCPT refusals, and consent for the client's default list."""
from __future__ import annotations

from typing import TYPE_CHECKING

from filters.context import MessageContext
from filters.verdict import Verdict
from relay.mail.addresses import AddressError
from relay.policyd.rcpt import client_for, normalized, recipient_refusal
from relay.policyd.protocol import DUNNO
from relay.transaction import audit_row

if TYPE_CHECKING:
    from relay.runtime import Runtime


def action_for(reply: str) -> str:
    """A relay reply ("550 5.7.1 why") as a policy action: REJECT for 5xx, DEFER_IF_PERMIT for 4xx."""
    code, _, rest = reply.partition(" ")
    return f"REJECT {rest}" if code.startswith("5") else f"DEFER_IF_PERMIT {rest}"


class PolicyService:
    """Answers `request=smtpd_access_policy` at RCPT; DUNNO for everything that is not the relay's."""

    def __init__(self, rt: "Runtime"):
        self.rt = rt

    async def decide(self, request: dict[str, str]) -> str:
        rt = self.rt
        if request.get("request") != "smtpd_access_policy" or request.get("protocol_state", "RCPT") != "RCPT":
            return DUNNO
        client = client_for(rt.config, request.get("sasl_username"), request.get("client_address"))
        if client is None or not request.get("recipient"):
            return DUNNO
        sender = request.get("sender", "")
        refusal = rt.sender_refusal(client, sender or "<>")
        if refusal is not None:
            return action_for(refusal)
        sender = normalized(sender)
        try:
            recipient = normalized(request["recipient"])
        except AddressError:
            return DUNNO  # Postfix's own syntax checks answer this one
        refusal = await recipient_refusal(rt, client, sender, recipient)
        if refusal is not None:
            return action_for(refusal)
        verdict = await self.default_list_consent(client, sender, recipient)
        if verdict is not None:
            return action_for(f"{verdict.code} {verdict.status} {verdict.reason}")
        return DUNNO

    async def default_list_consent(self, client, sender: str, recipient: str) -> Verdict | None:  # type: ignore[no-untyped-def]
        """The consent stage itself, for the list a message without List-Id goes to (policy has no
        header to read); a client without default_list is left to the milter's end-of-message check."""
        rt = self.rt
        if "consent" not in rt.config.stages or client.default_list is None:
            return None
        from filters.consent import check

        mailing = client.lists[client.default_list]
        ctx = MessageContext(rt.config, client, mailing, sender, (recipient,), None, rt.services,  # type: ignore[arg-type]
                             "policy")
        outcome = await check(ctx)
        verdict = outcome.get(recipient) if isinstance(outcome, dict) else outcome
        if verdict is None or not verdict.refuses:
            return None
        rt.metrics.refused("consent", verdict.rule)
        try:
            await rt.writer.write([audit_row(rt.services.clock(), client.name, mailing.key, "", None, recipient,
                                             "consent", verdict, verdict.action.value)])
        except Exception:
            pass  # the refusal stands without its record, as at RCPT in the relay
        return verdict
