"""Stage sender-identity: From: belongs to the client, and the client can be identified and reached."""
from __future__ import annotations

from filters.context import MessageContext
from filters.verdict import CONTINUE, Verdict

NAME = "sender-identity"
DESCRIPTION = "From: is one address in the client's sender domains; company, contact email and postal address are set"
PHASE = "message"


def aligned_domain(domain: str, sender_domains: tuple[str, ...]) -> str | None:
    """The sender domain this domain is, or is a subdomain of (DMARC relaxed alignment)."""
    domain = domain.lower().rstrip(".")
    for own in sender_domains:
        if domain == own or domain.endswith("." + own):
            return own
    return None


async def check(ctx: MessageContext) -> Verdict:
    addresses = ctx.message.from_addresses()
    if not addresses:
        return Verdict.reject("message has no From: header", "sender-identity.from-missing")
    if len(addresses) > 1:
        return Verdict.reject("message must have exactly one From: address", "sender-identity.from-multiple")
    address = addresses[0]
    domain = address.rpartition("@")[2]
    if "@" not in address or not domain:
        return Verdict.reject(f"From: {address!r} is not an address", "sender-identity.from-invalid")
    try:
        domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return Verdict.reject(f"From: domain {domain!r} is not valid", "sender-identity.from-invalid")
    if aligned_domain(domain, ctx.client.sender_domains) is None:
        return Verdict.reject(
            f"From: domain {domain} is not one of client {ctx.client.name}'s sender domains",
            "sender-identity.from-domain")
    client = ctx.client
    for label, value in (("company", client.company), ("contact email", client.contact_email),
                         ("postal address", client.postal_address)):
        if not value or not value.strip():
            return Verdict.reject(f"client {client.name} has no {label} to show recipients",
                                  "sender-identity.identity-missing")
    return CONTINUE
