"""What relay.toml says, as frozen dataclasses: sections, clients, lists, and the defaults."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay.base.ops_settings import OpsSettings


DEFAULT_ROLE_ADDRESSES = (
    "abuse", "admin", "administrator", "billing", "compliance", "contact", "devnull",
    "dns", "ftp", "help", "hostmaster", "info", "list", "list-request", "mailer-daemon",
    "marketing", "no-reply", "noc", "noreply", "null", "office", "postmaster", "privacy",
    "remove", "root", "sales", "security", "spam", "support", "sysadmin", "tech",
    "undisclosed-recipients", "unsubscribe", "usenet", "uucp", "webmaster", "www",
)
# SPEC §2's policy stages, each a promise the product makes (§4, §5): a list that leaves one out
# is allowed (a transactional-only relay, a benchmark, a test of one stage) but said out loud
SPEC_STAGES = ("suppression", "consent", "content", "sender-identity", "unsubscribe")
# with no [policy] stages: all of them, in the demo's order (cheap refusals at RCPT first)
DEFAULT_STAGES = ("account-state", "suppression", "sender-identity", "consent", "content", "promo-guard",
                  "limits", "canary", "unsubscribe", "footer")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ConfigError(Exception):
    """A configuration problem, phrased as one line naming the key path."""


@dataclass(frozen=True)
class ListConfig:
    key: str
    name: str
    kind: str  # "marketing" | "transactional"
    confirmed_opt_in: bool
    max_consent_age_days: int | None
    disclosure: str = ""  # what a subscriber is told at sign-up; kept with each consent record
    footer_templates: Path | None = None  # overrides its client's footer templates (checked at load)
    limits: dict[str, Any] = field(default_factory=dict)  # [clients.X.lists.L.limits] (relay/accounts)

    @property
    def transactional(self) -> bool:
        return self.kind == "transactional"


@dataclass(frozen=True)
class DkimConfig:
    selector: str
    key_file: Path
    ed25519_key_file: Path | None = None
    # one DNS name publishes one key: the ed25519 key needs a selector of its own
    ed25519_selector: str | None = None


@dataclass(frozen=True)
class ClientConfig:
    name: str
    password_hash: str | None
    password_file: Path | None
    sender_domains: tuple[str, ...]
    company: str
    contact_email: str
    postal_address: str
    dkim: DkimConfig
    default_list: str | None
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    api_token_hash: str | None
    suspended: bool
    lists: dict[str, ListConfig]
    footer_templates: Path | None = None  # a directory whose templates override footer_templates/
    confirm_from: str = ""  # From: of confirmation mails; must be in a sender domain
    content: dict[str, Any] = field(default_factory=dict)  # [clients.X.content]: overrides of [policy.content]
    spam_score: dict[str, Any] = field(default_factory=dict)  # [clients.X.spam_score]: filters.spam_score
    webhook_url: str | None = None  # feedback events are POSTed here (docs/FEEDBACK.md)
    webhook_secret: str | None = None  # HMAC-SHA256 key of the webhook signature header
    state: str = "active"  # the starting state; storage holds the current one (relay/accounts)
    accounts: dict[str, Any] = field(default_factory=dict)  # [clients.X.reputation|limits|canary]

    def owns_domain(self, domain: str) -> bool:
        return domain.lower().rstrip(".") in self.sender_domains

    @property
    def signing_domain(self) -> str:
        return self.sender_domains[0]


@dataclass(frozen=True)
class RelaySection:
    hostname: str
    listen_host: str
    listen_port: int
    max_message_size: int
    max_recipients: int
    tls_cert: Path | None
    tls_key: Path | None
    auth_require_tls: bool
    plaintext_auth_from_loopback: bool
    max_connections: int
    max_connections_per_ip: int
    command_timeout: float
    data_timeout: float
    auth_max_failures: int
    auth_failure_delay: float
    # docs/ABUSE.md: strangers (before AUTH) get shorter timeouts, fewer idle commands and never the reserve
    pre_auth_timeout: float = 30.0
    pre_auth_data_timeout: float = 120.0
    reserved_connections: int = 50
    max_commands_without_progress: int = 20
    max_auth_per_ip: int = 3


@dataclass(frozen=True)
class HttpSection:
    listen_host: str
    listen_port: int
    public_url: str
    # docs/ABUSE.md: the public listener faces the internet (unsubscribe links)
    max_connections: int = 512
    max_connections_per_ip: int = 64
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 15.0
    max_requests_per_connection: int = 100


@dataclass(frozen=True)
class UpstreamSection:
    url: str
    pool_size: int
    timeout: float
    retry_max_age_hours: float
    retry_initial_delay: float
    max_connection_age: float = 300.0     # seconds a pooled upstream connection is reused
    max_connection_messages: int = 100    # copies one pooled upstream connection carries

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0]


@dataclass(frozen=True)
class OptinSection:
    pending_expiry_days: int        # a pending sign-up older than this can no longer be confirmed
    resend_window_hours: float      # at most one confirmation mail and one reminder per address+list in it
    rate_per_ip_per_hour: int       # hosted form and API submissions from one IP address
    rate_per_client_per_hour: int   # hosted form and API submissions for one client
    api_rate_per_ip_per_hour: int = 3600  # the authenticated API's own budget, apart from the form's


@dataclass(frozen=True)
class FeedbackSection:
    soft_bounce_limit: int = 5       # soft bounces of one address ...
    soft_bounce_days: int = 14       # ... within this many days → suppressed as inactive
    webhook_timeout: float = 10.0    # seconds for one webhook POST
    webhook_max_attempts: int = 30   # then the entry is kept as failed (about a day of back-off)
    webhook_retry_delay: float = 30.0  # first retry after this many seconds, doubling up to an hour
    verp: bool = True                # false: copies keep the client's envelope sender and get no Feedback-ID


@dataclass(frozen=True)
class Config:
    path: Path
    relay: RelaySection
    http: HttpSection
    storage_url: str
    upstream: UpstreamSection
    token_key_file: Path
    token_max_age_days: int
    create_missing_secrets: bool
    stages: tuple[str, ...]
    role_addresses: frozenset[str]
    optin: OptinSection
    clients: dict[str, ClientConfig] = field(default_factory=dict)
    content: dict[str, Any] = field(default_factory=dict)  # [policy.content], checked by filters.content
    spam_score: dict[str, Any] = field(default_factory=dict)  # [policy.spam_score], checked by filters.spam_score
    # SPEC §13: `relay milter` and `relay policy` listen here ("host:port" or "unix:/path")
    milter_listen: str = "127.0.0.1:8891"
    policy_listen: str = "127.0.0.1:10040"
    feedback: FeedbackSection = field(default_factory=FeedbackSection)
    ops: OpsSettings = field(default_factory=OpsSettings)  # [admin] and [log] (relay/ops, SPEC §12)
    accounts: dict[str, Any] = field(default_factory=dict)  # [policy.reputation|limits|canary] (relay/accounts)

    @property
    def stages_off(self) -> list[str]:
        """The spec's policy stages this configuration leaves out."""
        return [name for name in SPEC_STAGES if name not in self.stages]

    def client_for_peer(self, ip: str) -> ClientConfig | None:
        """The client whose `networks` contain this peer address, if any."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        for client in self.clients.values():
            if any(addr in net for net in client.networks):
                return client
        return None
