"""The RCPT-time decision for a Postfix client: who it is, and what the relay refuses (the policy
service answers with it; the milter asks it at RCPT before its end-of-message work)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from relay import replies
from relay.mail.addresses import AddressError, normalize_address

if TYPE_CHECKING:
    from relay.config import ClientConfig, Config
    from relay.runtime import Runtime

def client_for(config: "Config", sasl_login: str | None, client_addr: str | None) -> "ClientConfig | None":
    """SPEC §13: the SASL login names the client; without one, `networks` holds the address."""
    if sasl_login:
        return config.clients.get(sasl_login)
    return config.client_for_peer(client_addr or "")


def bare_address(address: str) -> str:
    """Postfix hands envelope addresses in angle brackets (milter) or without (policy)."""
    address = address.strip()
    return address[1:-1] if address.startswith("<") and address.endswith(">") else address


async def recipient_refusal(rt: "Runtime", client: "ClientConfig", mail_from: str, address: str) -> str | None:
    """The relay's RCPT answer for this recipient (the rcpt-phase stages), or None to go on."""
    try:
        local, domain = normalize_address(bare_address(address))
    except AddressError as exc:
        return f"{replies.BAD_RECIPIENT_SYNTAX}: {replies.one_line(str(exc))}"
    decision = await rt.check_recipient(client, mail_from, f"{local}@{domain}", None)
    return replies.verdict_reply(decision.verdict) if decision.verdict.refuses else None


def normalized(address: str) -> str:
    local, domain = normalize_address(bare_address(address))
    return f"{local}@{domain}"
