"""Stage sender-identity: From: belongs to the client, and the client can be identified and reached."""
from __future__ import annotations

import re
from email.utils import getaddresses

from filters.context import MessageContext
from filters.verdict import CONTINUE, Verdict
from relay.mail.message import field_name, field_value, raw_field_value

NAME = "sender-identity"
DESCRIPTION = ("From: (and Sender:) is one address in the client's sender domains, its display name shows no other; "
               "company, contact email and postal address are set")
PHASE = "message"


def aligned_domain(domain: str, sender_domains: tuple[str, ...]) -> str | None:
    """The sender domain this domain is, or is a subdomain of (DMARC relaxed alignment)."""
    domain = domain.lower().rstrip(".")
    for own in sender_domains:
        if domain == own or domain.endswith("." + own):
            return own
    return None


# what a reader takes for an address in a decoded display name (`=?utf-8?q?ceo=40bank=2Eexample?=`)
_SHOWN_ADDRESS = re.compile(r"[^\s<>\"'(),;:@]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")


def _shown_refusal(ctx: MessageContext) -> Verdict | None:
    """From: and Sender: as a reader sees them: no route address, no foreign address in a decoded display
    name, and a Sender: in the client's domains (a reader shows "on behalf of" it)."""
    for raw in ctx.message.headers:
        name = field_name(raw)
        if name not in ("from", "sender"):
            continue
        label = "From" if name == "from" else "Sender"
        if re.search(r"<\s*@", raw_field_value(raw)):
            return Verdict.reject(f"{label}: route addresses (<@host:user@domain>) are not accepted",
                                  "sender-identity.route-address")
        for domain in _SHOWN_ADDRESS.findall(field_value(raw)):
            if aligned_domain(domain, ctx.client.sender_domains) is None:
                return Verdict.reject(f"{label}: shows an address in {domain.lower()}, not one of client "
                                      f"{ctx.client.name}'s sender domains", "sender-identity.display-name")
        if name == "sender":
            found = [addr for _, addr in getaddresses([raw_field_value(raw)]) if addr]
            domain = found[0].rpartition("@")[2] if len(found) == 1 else ""
            if aligned_domain(domain, ctx.client.sender_domains) is None:
                return Verdict.reject(f"Sender: must be one address in client {ctx.client.name}'s sender domains",
                                      "sender-identity.sender")
    return None


async def check(ctx: MessageContext) -> Verdict:
    shown = _shown_refusal(ctx)
    if shown is not None:
        return shown
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
