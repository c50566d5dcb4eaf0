"""The sections of relay.toml that take more than a line to check: upstream, lists, clients, feedback."""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from relay.mail.identity_check import contact_email_problem, postal_address_problem
from relay.config.model import ClientConfig, ConfigError, DkimConfig, FeedbackSection, ListConfig, UpstreamSection, _EMAIL_RE, _NAME_RE
from relay.config.table import _Table, _domain, _path


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
