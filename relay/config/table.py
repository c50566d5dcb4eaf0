"""Reading one TOML table strictly: typed keys, unknown keys refused, one-line errors naming the key."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from relay.config.model import ConfigError, _DOMAIN_RE


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
