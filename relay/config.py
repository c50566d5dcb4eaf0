"""Load and validate relay.toml into frozen dataclasses; a bad file raises one ConfigError line."""
from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay.mail.identity_check import contact_email_problem, postal_address_problem
from relay.base.ops_settings import OpsSettings, parse_ops

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


class _Table:
    """One TOML table being read: tracks its path and refuses keys nobody asked for."""

    def __init__(self, data: Any, path: str, file: str):
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: {path}: must be a table")
        self.data, self.path, self.file = data, path, file
        self.used: set[str] = set()

    def fail(self, key: str, why: str) -> ConfigError:
        where = f"{self.path}.{key}" if self.path else key
        return ConfigError(f"{self.file}: {where}: {why}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., what: str = "") -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "is required")
            return default
        value = self.data[key]
        # bool is an int in Python; a TOML `true` must not pass as a number
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(key, f"must be {what or _kind_name(kind)}, not a boolean")
        if not isinstance(value, kind):
            raise self.fail(key, f"must be {what or _kind_name(kind)}, got {value!r}")
        return value

    def text(self, key: str, default: Any = ...) -> Any:
        value = self.get(key, str, default)
        if isinstance(value, str) and ("\r" in value or "\n" in value):
            raise self.fail(key, "must be a single line")
        if isinstance(value, str) and not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def number(self, key: str, default: Any, minimum: float, integer: bool = True) -> Any:
        value = self.get(key, int if integer else (int, float), default,
                         "a whole number" if integer else "a number")
        if value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def table(self, key: str, required: bool = False) -> "_Table":
        self.used.add(key)
        if key not in self.data and not required:
            return _Table({}, f"{self.path}.{key}" if self.path else key, self.file)
        if key not in self.data:
            raise self.fail(key, "section is missing")
        return _Table(self.data[key], f"{self.path}.{key}" if self.path else key, self.file)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.fail(unknown[0], "unknown key (check the spelling against SPEC §2)")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _listen(t: _Table, key: str, default: str) -> tuple[str, int]:
    value = t.text(key, default)
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise t.fail(key, f"must be host:port, got {value!r}")
    return host, int(port)


def _socket_listen(t: _Table, default: str) -> str:
    """[milter] / [policy_service] listen: host:port, or unix:/absolute/path (Postfix's own forms)."""
    value = t.text("listen", default)
    if value.startswith("unix:"):
        if not value[5:].startswith("/"):
            raise t.fail("listen", f"must be host:port or unix:/absolute/path, got {value!r}")
    else:
        _listen(t, "listen", default)
    t.finish()
    return value


def _path(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _domain(t: _Table, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise t.fail(key, f"must be a list of domain names, got {value!r}")
    try:
        ascii_domain = value.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise t.fail(key, f"{value!r} is not a valid domain name") from None
    if not _DOMAIN_RE.match(ascii_domain):
        raise t.fail(key, f"{value!r} is not a valid domain name")
    return ascii_domain


def _storage_url(t: _Table, base: Path) -> str:
    url = t.text("url", "sqlite:///relay.db")
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        rel = url[len("sqlite:///"):]
        return "sqlite:///" + str(_path(base, rel))
    if url.startswith(("postgresql://", "postgresql+psycopg://")):
        # one driver for PostgreSQL: psycopg 3
        return url.replace("postgresql://", "postgresql+psycopg://", 1)
    if url.startswith(("sqlite://", "postgresql+")):
        raise t.fail("url", f"unsupported database URL {url!r} (use sqlite:///FILE or postgresql+psycopg://...)")
    raise t.fail("url", f"must start with sqlite:/// or postgresql+psycopg://, got {url!r}")


def _upstream(t: _Table, base: Path) -> UpstreamSection:
    url = t.text("url", "maildir:outbox")
    if url.startswith("maildir:"):
        target = url[len("maildir:"):]
        if not target:
            raise t.fail("url", "maildir: needs a directory, e.g. maildir:outbox")
        url = "maildir:" + str(_path(base, target))
    elif not re.match(r"^smtps?://[^/:]+(:\d+)?/?$", url):
        raise t.fail("url", f"must be smtp://host:port, smtps://host:port or maildir:DIR, got {url!r}")
    section = UpstreamSection(
        url=url,
        pool_size=t.number("pool_size", 8, 1),
        timeout=t.number("timeout", 30.0, 0.1, integer=False),
        retry_max_age_hours=t.number("retry_max_age_hours", 120.0, 0.01, integer=False),
        retry_initial_delay=t.number("retry_initial_delay", 60.0, 0.1, integer=False),
        max_connection_age=t.number("max_connection_age", 300.0, 0, integer=False),
        max_connection_messages=t.number("max_connection_messages", 100, 1),
    )
    t.finish()
    return section


def _lists(client: _Table, company: str, base: Path) -> dict[str, ListConfig]:
    lists: dict[str, ListConfig] = {}
    lists_table = client.table("lists")
    for key in lists_table.data:
        lists_table.used.add(key)
        lt = lists_table.table(key)
        if not _NAME_RE.match(key):
            raise lists_table.fail(key, "list names use a-z, 0-9, '.', '_' and '-'")
        kind = lt.text("kind", "marketing")
        if kind not in ("marketing", "transactional"):
            raise lt.fail("kind", f"must be \"marketing\" or \"transactional\", got {kind!r}")
        age = lt.get("max_consent_age_days", int, None, "a whole number of days")
        if age is not None and age < 1:
            raise lt.fail("max_consent_age_days", "must be at least 1")
        lists[key] = ListConfig(
            key=key, name=lt.text("name", key), kind=kind,
            confirmed_opt_in=lt.get("confirmed_opt_in", bool, False),
            max_consent_age_days=age,
            disclosure=lt.text("disclosure", f"You will receive {lt.data.get('name', key)} from {company} by email. "
                                             f"Every message has a link to unsubscribe at once."),
            footer_templates=_path(base, lt.text("footer_templates", None)),
            limits=_accounts_tables(lt, ("limits",), f"{lt.path}", list_level=True).get("limits", {}),
        )
        lt.finish()
    return lists


def _content_table(t: _Table, key: str, where: str, client: bool = False) -> dict[str, Any]:
    """The content policy table, checked by the content stage's own validator (rules are its data)."""
    data = t.get(key, dict, {})
    if not data:
        return {}
    from filters.content import RuleError, validate_table

    try:
        validate_table(data, where, client=client)
    except RuleError as exc:
        raise ConfigError(f"{t.file}: {exc}") from None
    return data


def _spam_score_table(t: _Table, key: str, where: str, client: bool = False) -> dict[str, Any]:
    """The spam-score stage's table, checked by the stage's own validator."""
    data = t.get(key, dict, {})
    if not data:
        return {}
    from filters.spam_score import SpamScoreError, validate_table

    try:
        validate_table(data, where, client=client)
    except SpamScoreError as exc:
        raise ConfigError(f"{t.file}: {exc}") from None
    return data
def _accounts_tables(t: _Table, names: tuple[str, ...], where: str, list_level: bool = False) -> dict[str, Any]:
    """The account tables (relay/accounts/settings.py checks them); a list has only its own limits."""
    from relay.accounts.settings import LIST_LIMITS, check_table

    out = {}
    for name in names:
        if name in t.data:
            try:
                out[name] = check_table(name, t.get(name, dict), f"{where}.{name}",
                                        LIST_LIMITS if list_level else None)
            except ValueError as exc:
                raise ConfigError(f"{t.file}: {exc}") from None
    return out


def _confirm_from(t: _Table, contact: str, domains: tuple[str, ...]) -> str:
    """Confirmation mail must be DKIM-aligned: the contact address if it is ours, else subscriptions@."""
    def aligned(address: str) -> bool:
        domain = address.rpartition("@")[2].lower()
        return any(domain == d or domain.endswith("." + d) for d in domains)

    value = t.text("confirm_from", None)
    if value is not None:
        if not _EMAIL_RE.match(value) or not aligned(value):
            raise t.fail("confirm_from", f"{value!r} must be an address in one of the sender domains")
        return value
    return contact if aligned(contact) else f"subscriptions@{domains[0]}"


def _check_footer_templates(t: _Table, client: ClientConfig) -> None:
    """A client's and its lists' footer templates, rendered with sample data (filters/footer_check.py)."""
    from filters.footer_check import TemplateProblem, check_templates

    own = (client.footer_templates,) if client.footer_templates else ()
    checks = [("footer_templates", own, frozenset(lst.kind for lst in client.lists.values()
                                                 if lst.footer_templates is None))] if own else []
    checks += [(f"lists.{key}.footer_templates", (lst.footer_templates, *own), frozenset({lst.kind}))
               for key, lst in client.lists.items() if lst.footer_templates is not None]
    for key, dirs, kinds in checks:
        try:
            check_templates(dirs, kinds)
        except TemplateProblem as exc:
            raise t.fail(key, str(exc)) from None


def _client(name: str, t: _Table, base: Path) -> ClientConfig:
    if not _NAME_RE.match(name):
        raise ConfigError(f"{t.file}: {t.path}: client names use a-z, 0-9, '.', '_' and '-'")
    password_hash = t.text("password_hash", None)
    password_file = _path(base, t.text("password_file", None))
    if password_hash is not None and not password_hash.startswith("scrypt$"):
        raise t.fail("password_hash", "must come from `relay client hash-password` (scrypt$...)")
    domains_raw = t.get("sender_domains", list)
    if not domains_raw:
        raise t.fail("sender_domains", "must name at least one domain")
    domains = tuple(_domain(t, "sender_domains", d) for d in domains_raw)
    contact = t.text("contact_email")
    if not _EMAIL_RE.match(contact):
        raise t.fail("contact_email", f"{contact!r} is not an email address")
    # the footer's identity must be true and reachable (SPEC §5, §8; relay/mail/identity_check.py)
    problem = contact_email_problem(contact, domains, t.get("contact_email_external", bool, False))
    if problem is not None:
        raise t.fail("contact_email", problem)
    postal = t.text("postal_address")
    problem = postal_address_problem(postal)
    if problem is not None:
        raise t.fail("postal_address", f"{postal!r} {problem}")
    dkim_t = t.table("dkim", required=True)
    selector = dkim_t.text("selector")
    if not re.match(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", selector):
        raise dkim_t.fail("selector", f"{selector!r} is not a valid DKIM selector")
    ed_key_file = _path(base, dkim_t.text("ed25519_key_file", None))
    ed_selector = dkim_t.text("ed25519_selector", None)
    if ed_key_file is not None:
        ed_selector = ed_selector or f"{selector}-ed25519"
        if ed_selector == selector:
            raise dkim_t.fail("ed25519_selector", "must differ from selector (one DNS record per key)")
    dkim = DkimConfig(selector, _path(base, dkim_t.text("key_file")), ed_key_file, ed_selector)
    dkim_t.finish()
    networks = []
    for raw in t.get("networks", list, []):
        try:
            net = ipaddress.ip_network(str(raw), strict=False)
        except ValueError:
            raise t.fail("networks", f"{raw!r} is not an IP network") from None
        # no organisation's own public network is wider than a /8 (or an IPv6 /16): wider ones, and
        # sets of them such as 0.0.0.0/1 + 128.0.0.0/1, are a large part of the internet
        if net.prefixlen == 0 or (net.prefixlen < (8 if net.version == 4 else 16) and not net.is_private):
            raise t.fail("networks", f"{raw!r} would make an open relay; name your own networks")
        networks.append(net)
    company = t.text("company")
    lists = _lists(t, company, base)
    default_list = t.text("default_list", None)
    if default_list is not None and default_list not in lists:
        raise t.fail("default_list", f"names list {default_list!r}, which [{t.path}.lists] does not define")
    api_hash = t.text("api_token_hash", None)
    if api_hash is not None and not api_hash.startswith("scrypt$"):
        raise t.fail("api_token_hash", "must come from `relay client hash-password` (scrypt$...)")
    from relay.accounts.settings import STATES

    state = t.text("state", "active")
    if state not in STATES:
        raise t.fail("state", f"must be one of {', '.join(STATES)}, got {state!r}")
    client = ClientConfig(
        name=name, password_hash=password_hash, password_file=password_file,
        sender_domains=domains, company=company, contact_email=contact,
        postal_address=postal, dkim=dkim, default_list=default_list,
        networks=tuple(networks), api_token_hash=api_hash, suspended=state in ("suspended", "terminated"),
        lists=lists, footer_templates=_path(base, t.text("footer_templates", None)),
        confirm_from=_confirm_from(t, contact, domains),
        content=_content_table(t, "content", f"clients.{name}.content", client=True),
        spam_score=_spam_score_table(t, "spam_score", f"clients.{name}.spam_score", client=True),
        **_webhook(t),
        state=state, accounts=_accounts_tables(t, ("reputation", "limits", "canary"), t.path),
    )
    t.finish()
    _check_footer_templates(t, client)
    if password_hash is None and password_file is None and not networks:
        raise t.fail("password_hash", "is required (or password_file, or networks): the client could not log in")
    return client


def _webhook(t: _Table) -> dict[str, Any]:
    url = t.text("webhook_url", None)
    secret = t.text("webhook_secret", None)
    if url is None:
        if secret is not None:
            raise t.fail("webhook_secret", "given without webhook_url")
        return {}
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", url):
        raise t.fail("webhook_url", f"must be an http(s) URL, got {url!r}")
    if not secret or len(secret) < 16:
        raise t.fail("webhook_secret", "is required with webhook_url, at least 16 characters (the signature key)")
    return {"webhook_url": url, "webhook_secret": secret}


def _feedback(t: _Table) -> FeedbackSection:
    section = FeedbackSection(
        soft_bounce_limit=t.number("soft_bounce_limit", 5, 1),
        soft_bounce_days=t.number("soft_bounce_days", 14, 1),
        webhook_timeout=t.number("webhook_timeout", 10.0, 0.1, integer=False),
        webhook_max_attempts=t.number("webhook_max_attempts", 30, 1),
        webhook_retry_delay=t.number("webhook_retry_delay", 30.0, 0.01, integer=False),
        verp=t.get("verp", bool, True),
    )
    t.finish()
    return section


def parse_config(data: dict[str, Any], path: Path, known_stages: frozenset[str], base: Path | None = None) -> Config:
    """Validate the parsed TOML; raise ConfigError naming the first bad key."""
    file = path.name
    base = base or path.absolute().parent
    root = _Table(data, "", file)
    r = root.table("relay")
    host, port = _listen(r, "listen", "127.0.0.1:2525")
    tls_cert = _path(base, r.text("tls_cert", None))
    tls_key = _path(base, r.text("tls_key", None))
    if (tls_cert is None) != (tls_key is None):
        raise r.fail("tls_key" if tls_key is None else "tls_cert", "tls_cert and tls_key go together")
    relay = RelaySection(
        hostname=r.text("hostname", "localhost"), listen_host=host, listen_port=port,
        max_message_size=r.number("max_message_size", 26214400, 1024),
        max_recipients=r.number("max_recipients", 1000, 1),
        tls_cert=tls_cert, tls_key=tls_key,
        auth_require_tls=r.get("auth_require_tls", bool, True),
        # loopback peers may AUTH in the clear (local apps); off when a proxy sits on loopback
        plaintext_auth_from_loopback=r.get("plaintext_auth_from_loopback", bool, True),
        max_connections=r.number("max_connections", 500, 1),
        max_connections_per_ip=r.number("max_connections_per_ip", 100, 1),
        command_timeout=r.number("command_timeout", 300.0, 0.1, integer=False),
        data_timeout=r.number("data_timeout", 600.0, 0.1, integer=False),
        auth_max_failures=r.number("auth_max_failures", 5, 1),
        auth_failure_delay=r.number("auth_failure_delay", 1.0, 0, integer=False),
        pre_auth_timeout=r.number("pre_auth_timeout", 30.0, 0.1, integer=False),
        pre_auth_data_timeout=r.number("pre_auth_data_timeout", 120.0, 0.1, integer=False),
        reserved_connections=r.number("reserved_connections", 50, 0),
        max_commands_without_progress=r.number("max_commands_without_progress", 20, 1),
        max_auth_per_ip=r.number("max_auth_per_ip", 3, 1),
    )
    if not re.match(r"^[A-Za-z0-9.-]+$", relay.hostname):
        raise r.fail("hostname", f"{relay.hostname!r} is not a host name")
    r.finish()
    h = root.table("http")
    http_host, http_port = _listen(h, "listen", "127.0.0.1:8025")
    public_url = h.text("public_url", f"http://{http_host}:{http_port}").rstrip("/")
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", public_url):
        raise h.fail("public_url", f"must be an http(s) URL, got {public_url!r}")
    http = HttpSection(
        http_host, http_port, public_url,
        max_connections=h.number("max_connections", 512, 1),
        max_connections_per_ip=h.number("max_connections_per_ip", 64, 1),
        header_timeout=h.number("header_timeout", 10.0, 0.1, integer=False),
        body_timeout=h.number("body_timeout", 30.0, 0.1, integer=False),
        keepalive_timeout=h.number("keepalive_timeout", 15.0, 0.1, integer=False),
        max_requests_per_connection=h.number("max_requests_per_connection", 100, 1))
    h.finish()
    s = root.table("storage")
    storage_url = _storage_url(s, base)
    s.finish()
    upstream = _upstream(root.table("upstream"), base)
    sec = root.table("secrets")
    token_key_file = _path(base, sec.text("token_key_file", "secrets/token.key"))
    create_missing = sec.get("create_missing", bool, False)
    # links in mail must keep working for a while after it is read (RFC 8058: long enough)
    token_max_age_days = sec.number("token_max_age_days", 90, 30)
    sec.finish()
    p = root.table("policy")
    stages = p.get("stages", list, list(DEFAULT_STAGES))
    for stage in stages:
        if stage not in known_stages:
            raise p.fail("stages", f"unknown stage {stage!r} (this version has: {', '.join(sorted(known_stages))})")
    if len(set(stages)) != len(stages):
        raise p.fail("stages", "names a stage twice")
    if "footer" not in stages and "footer" in known_stages and {"sender-identity", "unsubscribe"} & set(stages):
        # SPEC §2 lists five stages and §5 puts a footer on every copy: the footer is the copy-phase
        # half of sender identity and unsubscribe (a module decides or transforms, never both), so
        # a list naming either brings it, last; naming "footer" places it elsewhere
        stages.append("footer")
    if "footer" in stages and "footer-guard" not in stages and "footer-guard" in known_stages:
        # the footer's rule half (SPEC §8): a copy carries a visible footer or the message is
        # refused 554 5.6.0, never sent without it; no stages list turns that off
        stages.append("footer-guard")
    roles = p.get("role_addresses", list, list(DEFAULT_ROLE_ADDRESSES))
    content = _content_table(p, "content", "policy.content")
    spam_score = _spam_score_table(p, "spam_score", "policy.spam_score")
    accounts = _accounts_tables(p, ("reputation", "limits", "canary"), "policy")
    p.finish()
    o = root.table("optin")
    optin = OptinSection(
        pending_expiry_days=o.number("pending_expiry_days", 7, 1),
        resend_window_hours=o.number("resend_window_hours", 24.0, 0.01, integer=False),
        rate_per_ip_per_hour=o.number("rate_per_ip_per_hour", 20, 1),
        rate_per_client_per_hour=o.number("rate_per_client_per_hour", 10000, 1),
        api_rate_per_ip_per_hour=o.number("api_rate_per_ip_per_hour", 3600, 1),
    )
    o.finish()
    milter_listen = _socket_listen(root.table("milter"), "127.0.0.1:8891")
    policy_listen = _socket_listen(root.table("policy_service"), "127.0.0.1:10040")
    feedback = _feedback(root.table("feedback"))
    ops = parse_ops(root, _listen)
    clients_t = root.table("clients")
    clients = {}
    for name in clients_t.data:
        clients_t.used.add(name)
        clients[name] = _client(name, clients_t.table(name), base)
    root.finish()
    owners: dict[str, str] = {}
    for client in clients.values():
        for domain in client.sender_domains:
            if domain in owners:
                raise ConfigError(f"{file}: clients.{client.name}.sender_domains: {domain} "
                                  f"already belongs to client {owners[domain]}")
            owners[domain] = client.name
    return Config(
        path=path, relay=relay, http=http,
        storage_url=storage_url, upstream=upstream, token_key_file=token_key_file,
        token_max_age_days=token_max_age_days,
        create_missing_secrets=create_missing, stages=tuple(stages),
        role_addresses=frozenset(str(x).lower() for x in roles), optin=optin, clients=clients,
        content=content, spam_score=spam_score, milter_listen=milter_listen, policy_listen=policy_listen,
        feedback=feedback, ops=ops, accounts=accounts,
    )


def load_config(path: Path, known_stages: frozenset[str] | None = None, base: Path | None = None) -> Config:
    """Read and validate a relay.toml; every failure is a one-line ConfigError."""
    if known_stages is None:
        from filters import registry
        known_stages = frozenset(registry.all_stages())
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path.name}: not valid TOML: {exc}") from None
    return parse_config(data, path, known_stages, base)


def default_config_path() -> Path:
    """./relay.toml when present, else the embedded demo configuration."""
    local = Path("relay.toml")
    if local.exists():
        return local
    return Path(__file__).with_name("demo.toml")
