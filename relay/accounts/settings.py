"""The `[policy.reputation]`, `[policy.limits]` and `[policy.canary]` tables, per-client overrides, checks."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

STATES = ("active", "warned", "frozen", "suspended", "terminated")
# SPEC §11 defaults (SES-like reputation thresholds)
REPUTATION = {"window_days": 7, "min_volume": 1000, "complaint_warn": 0.001, "complaint_freeze": 0.005,
              "bounce_warn": 0.05, "bounce_freeze": 0.10}
# 0 = no limit; identical_per_day: copies of one body to one recipient per day (the repeat guard)
LIMITS = {"per_minute": 0, "per_hour": 0, "per_day": 0, "identical_per_day": 1}
LIST_LIMITS = ("per_minute", "per_hour", "per_day")
CANARY = {"threshold": 1000, "share": 0.10, "max_first": 1000, "hold_minutes": 360.0,
          "max_hard_bounce_rate": 0.05, "max_unsubscribe_rate": 0.02, "max_complaint_rate": 0.003}
TABLES = {"reputation": REPUTATION, "limits": LIMITS, "canary": CANARY}
_RATES = {"complaint_warn", "complaint_freeze", "bounce_warn", "bounce_freeze", "share",
          "max_hard_bounce_rate", "max_unsubscribe_rate", "max_complaint_rate"}
_FLOATS = _RATES | {"hold_minutes"}
SPANS = {"minute": 60, "hour": 3600, "day": 86400}


def check_table(name: str, data: Any, where: str, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """One table's keys and values; a ValueError names the key. Returns the table as given."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: must be a table")
    defaults = TABLES[name]
    allowed = keys or tuple(defaults)
    for key, value in data.items():
        if key not in allowed:
            raise ValueError(f"{where}.{key}: unknown key (one of {', '.join(allowed)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                key not in _FLOATS and not isinstance(value, int)):
            raise ValueError(f"{where}.{key}: must be {'a number' if key in _FLOATS else 'a whole number'}, "
                             f"got {value!r}")
        if value < 0 or (key in _RATES and value > 1):
            raise ValueError(f"{where}.{key}: must be {'a rate between 0 and 1' if key in _RATES else 'at least 0'}"
                             f", got {value!r}")
    merged = {**defaults, **data}
    if name == "reputation" and (merged["complaint_warn"] > merged["complaint_freeze"]
                                 or merged["bounce_warn"] > merged["bounce_freeze"]):
        raise ValueError(f"{where}: a *_warn threshold must not exceed its *_freeze threshold")
    if name == "limits" and merged["identical_per_day"] not in (0, 1):
        raise ValueError(f"{where}.identical_per_day: 1 (one copy of a body per recipient and day) or 0 (off)")
    if name == "canary" and (merged["threshold"] < 1 or merged["max_first"] < 1):
        raise ValueError(f"{where}: threshold and max_first must be at least 1")
    return dict(data)


@dataclass(frozen=True)
class Canary:
    threshold: int
    share: float
    max_first: int
    hold_seconds: float
    max_hard_bounce_rate: float
    max_unsubscribe_rate: float
    max_complaint_rate: float

    def first(self, declared_size: int | None) -> int:
        """How many recipients go out before the hold (SPEC §11)."""
        if declared_size is not None and declared_size > self.threshold:
            return min(self.max_first, math.ceil(self.share * declared_size))
        return min(self.threshold, self.max_first)


def merged(name: str, config: Any, client: Any) -> dict[str, Any]:
    """Operator table over the defaults, the client's table over that."""
    return {**TABLES[name], **(getattr(config, "accounts", {}) or {}).get(name, {}),
            **(getattr(client, "accounts", {}) or {}).get(name, {})}


def canary(config: Any, client: Any) -> Canary:
    c = merged("canary", config, client)
    return Canary(int(c["threshold"]), float(c["share"]), int(c["max_first"]), float(c["hold_minutes"]) * 60,
                  float(c["max_hard_bounce_rate"]), float(c["max_unsubscribe_rate"]), float(c["max_complaint_rate"]))


def limit_keys(config: Any, client: Any, mailing: Any, now_ts: float) -> list[tuple[str, str, int, int]]:
    """(scope, span, bucket, limit) for every limit set: the client's, and a list's own limits."""
    out = []
    client_limits = merged("limits", config, client)
    for span, seconds in SPANS.items():
        limit = int(client_limits[f"per_{span}"])
        if limit:
            out.append(("client", span, int(now_ts // seconds), limit))
    own = getattr(mailing, "limits", None) or {}
    for span, seconds in SPANS.items():
        limit = int(own.get(f"per_{span}", 0))
        if limit:
            out.append((f"list:{mailing.key}", span, int(now_ts // seconds), limit))
    return out
