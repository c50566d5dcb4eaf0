"""Secrets at start-up: create what may be created (token key; demo passwords and DKIM keys), load the rest."""
from __future__ import annotations

import os
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path

from relay.config import ClientConfig, Config, ConfigError
from relay.mail.dkim import DkimSigner, generate_ed25519_key, generate_rsa_key, load_private_key
from relay.crypto.passwords import generate_password, hash_password


@dataclass
class ClientSecrets:
    password_hash: str | None
    signers: dict[str, DkimSigner]  # by sender domain: d= aligns with From:


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ensure_token_key(config: Config) -> None:
    """SPEC §2: the token HMAC key is created if missing."""
    if not config.token_key_file.exists():
        _write_secret(config.token_key_file, secrets.token_hex(32).encode() + b"\n")


def ensure_demo_secrets(config: Config) -> list[str]:
    """With [secrets] create_missing: make absent password files and DKIM keys; say what was made."""
    made: list[str] = []
    if not config.create_missing_secrets:
        return made
    for client in config.clients.values():
        if client.password_file is not None and not client.password_file.exists():
            _write_secret(client.password_file, (generate_password() + "\n").encode())
            made.append(f"client {client.name}: password written to {client.password_file}")
        if not client.dkim.key_file.exists():
            generate_rsa_key(client.dkim.key_file)
            made.append(f"client {client.name}: DKIM key written to {client.dkim.key_file}")
        if client.dkim.ed25519_key_file is not None and not client.dkim.ed25519_key_file.exists():
            generate_ed25519_key(client.dkim.ed25519_key_file)
            made.append(f"client {client.name}: ed25519 DKIM key written to {client.dkim.ed25519_key_file}")
    return made


def _load_key(client: ClientConfig, path: Path, key: str):
    try:
        return load_private_key(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{key}: cannot load {path}: {exc}") from None


def load_client_secrets(client: ClientConfig) -> ClientSecrets:
    where = f"clients.{client.name}"
    password_hash = client.password_hash
    if password_hash is None and client.password_file is not None:
        try:
            password = client.password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{where}.password_file: cannot read {client.password_file}: {exc.strerror}") from None
        if not password:
            raise ConfigError(f"{where}.password_file: {client.password_file} is empty")
        password_hash = hash_password(password)
    rsa_key = _load_key(client, client.dkim.key_file, f"{where}.dkim.key_file")
    ed_key = (_load_key(client, client.dkim.ed25519_key_file, f"{where}.dkim.ed25519_key_file")
              if client.dkim.ed25519_key_file else None)
    signers = {domain: DkimSigner(domain, client.dkim.selector, rsa_key, ed_key, client.dkim.ed25519_selector)
               for domain in client.sender_domains}
    return ClientSecrets(password_hash, signers)


def read_token_keys(config: Config) -> list[bytes]:
    """Token keys, newest first: one hex key per line, so a key can rotate (old ones still verify)."""
    try:
        text = config.token_key_file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"secrets.token_key_file: cannot read {config.token_key_file}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    try:
        keys = [bytes.fromhex(ln) for ln in lines]
    except ValueError:
        raise ConfigError(f"secrets.token_key_file: {config.token_key_file} must hold hex keys, one per line") from None
    if not keys or any(len(k) < 16 for k in keys):
        raise ConfigError(f"secrets.token_key_file: {config.token_key_file} needs keys of at least 16 bytes")
    return keys


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The STARTTLS context from [relay] tls_cert / tls_key, or None; ConfigError naming the key."""
    relay_cfg = config.relay
    if relay_cfg.tls_cert is None or relay_cfg.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    for key, path in (("relay.tls_cert", relay_cfg.tls_cert), ("relay.tls_key", relay_cfg.tls_key)):
        if not path.is_file():
            raise ConfigError(f"{key}: {path} does not exist")
    try:
        context.load_cert_chain(relay_cfg.tls_cert, relay_cfg.tls_key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"relay.tls_cert: cannot load {relay_cfg.tls_cert} with {relay_cfg.tls_key}: {reason}") from None
    return context


def check_start_files(config: Config) -> list[str]:
    """Load every file start-up loads (token keys, passwords, DKIM keys, TLS pair): ConfigError
    naming the key of the first that fails; notes for the absent ones start-up would create."""
    notes: list[str] = []
    if config.token_key_file.exists():
        read_token_keys(config)
    else:
        notes.append(f"secrets.token_key_file: {config.token_key_file} is created at start-up")
    for client in config.clients.values():
        absent = [p for p in (client.password_file, client.dkim.key_file, client.dkim.ed25519_key_file)
                  if p is not None and not p.exists()]
        if absent and config.create_missing_secrets:
            notes.extend(f"clients.{client.name}: {p} is created at start-up (secrets.create_missing)" for p in absent)
            continue
        load_client_secrets(client)
    tls_context(config)
    return notes
