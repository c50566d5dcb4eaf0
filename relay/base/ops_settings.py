"""The `[admin]` and `[log]` tables of relay.toml (SPEC §12); read by relay.config, imports nothing of the relay."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class OpsSettings:
    admin_host: str | None = None   # no [admin] table: no admin listener (SPEC §12)
    admin_port: int = 0
    log_format: str = "text"        # "text" (key=value) or "json" (one JSON object a line)
    log_mail: bool = True           # one line per decision and per delivery attempt

    @property
    def admin(self) -> bool:
        return self.admin_host is not None


def parse_ops(root: Any, listen: Callable[[Any, str, str], tuple[str, int]]) -> OpsSettings:
    """Read [admin] and [log] from the root table (relay.config's _Table) with its `_listen`."""
    host: str | None = None
    port = 0
    if "admin" in root.data:
        a = root.table("admin")
        host, port = listen(a, "listen", "127.0.0.1:8026")
        a.finish()
    else:
        root.used.add("admin")
    t = root.table("log")
    fmt = t.text("format", "text")
    if fmt not in LOG_FORMATS:
        raise t.fail("format", f"must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    mail = t.get("mail", bool, True)
    t.finish()
    return OpsSettings(admin_host=host, admin_port=port, log_format=fmt, log_mail=mail)
