"""What a stage is handed: the client, the list, the envelope, the message, and injected services."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from relay.config import ClientConfig, Config, ListConfig
    from relay.mail.message import Copy, Message


@dataclass
class Services:
    """Clock, storage and DNS are passed in so tests can substitute real alternatives."""

    clock: Callable[[], datetime]
    store: Any = None          # storage.Store
    dns: Any = None            # a dns.asyncresolver.Resolver, when a stage needs one
    tokens: Any = None         # unsubscribe/confirm token codec (issue 4)
    accounts: Any = None       # relay.accounts.Accounts: client states, limits, campaigns


@dataclass
class RcptContext:
    config: "Config"
    client: "ClientConfig"
    mail_from: str
    recipient: str
    services: Services


@dataclass
class MessageContext:
    config: "Config"
    client: "ClientConfig"
    list: "ListConfig | None"
    mail_from: str
    recipients: tuple[str, ...]        # those still open when this stage runs
    message: "Message"
    services: Services
    queue_id: str
    # facts a check stage learned that a later transform needs, e.g. consent per recipient
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class CopyContext:
    config: "Config"
    client: "ClientConfig"
    list: "ListConfig | None"
    mail_from: str
    recipient: str
    message: "Message"
    copy: "Copy"
    services: Services
    queue_id: str
    facts: dict[str, Any] = field(default_factory=dict)


def config_table(value: Any) -> dict[str, Any]:
    """A stage's settings table as a dict, whatever carries it (None, a mapping, a dataclass or an
    object with attributes): the operator-wide `[policy.*]` table or a client's override."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if dataclasses.is_dataclass(value):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return dict(vars(value))
