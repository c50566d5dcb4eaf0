"""Load relay.toml: parse, check every section, and build the Config (SPEC §2)."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from relay.base.ops_settings import parse_ops
from relay.config.model import Config, ConfigError, DEFAULT_ROLE_ADDRESSES, DEFAULT_STAGES, HttpSection, OptinSection, RelaySection
from relay.config.sections import _accounts_tables, _client, _content_table, _feedback, _spam_score_table, _upstream
from relay.config.table import _Table, _listen, _path, _socket_listen, _storage_url


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
    return Path(__file__).resolve().parent.parent / "demo.toml"
