"""Content settings: the operator's [policy.content] and a client's [clients.X.content], checked and merged."""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from filters.content import scorer
from filters.content.rulefiles import ruleset_for
from filters.content.ruleset import RuleError, RuleSet
from filters.context import config_table

ACTIONS = ("reject", "tag", "off")


@dataclass(frozen=True)
class Settings:
    default: str = "reject"
    categories: Mapping[str, str] = field(default_factory=dict)   # category -> reject|tag|off
    operator_domains: tuple[str, ...] = ()
    operator_addresses: tuple[str, ...] = ()
    extra_rules: tuple[Path, ...] = ()
    branded_links_only: bool = False
    link_allow: tuple[str, ...] = ()
    # the content scorer: None = off, else the probability at which it refuses (0 = the model's own)
    scorer: float | None = 0.0

    def action(self, category: str) -> str:
        return self.categories.get(category, self.default)


def _paths(value: Any, base: Path) -> tuple[Path, ...]:
    if value is None or value == "":
        return ()
    items = [value] if isinstance(value, (str, Path)) else list(value)
    out = []
    for item in items:
        p = Path(item).expanduser()
        out.append(p if p.is_absolute() else base / p)
    return tuple(out)


def validate_table(data: Mapping[str, Any], where: str, client: bool = False,
                   known_categories: Iterable[str] | None = None) -> None:
    """Check one `[policy.content]` (or `[clients.X.content]`) table; raise RuleError naming the key."""
    allowed = {"default", "categories", "extra_rules", "link_allow", "scorer"} | (
        {"branded_links_only"} if client else {"operator_domains", "operator_addresses"})
    for key in data:
        if key not in allowed:
            raise RuleError(f"{where}.{key}: unknown key (one of {', '.join(sorted(allowed))})")
    if "default" in data and data["default"] not in ACTIONS:
        raise RuleError(f"{where}.default: must be \"reject\", \"tag\" or \"off\", got {data['default']!r}")
    cats = data.get("categories", {})
    if not isinstance(cats, Mapping):
        raise RuleError(f"{where}.categories: must be a table of category = \"reject\"|\"tag\"|\"off\"")
    known = set(known_categories) if known_categories is not None else None
    for cat, action in cats.items():
        if action not in ACTIONS:
            raise RuleError(f"{where}.categories.{cat}: must be \"reject\", \"tag\" or \"off\", got {action!r}")
        if known is not None and cat not in known:
            raise RuleError(f"{where}.categories.{cat}: unknown category (known: {', '.join(sorted(known))})")
    for key in ("operator_domains", "operator_addresses", "link_allow"):
        value = data.get(key, [])
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
            raise RuleError(f"{where}.{key}: must be a list of strings")
    if "branded_links_only" in data and not isinstance(data["branded_links_only"], bool):
        raise RuleError(f"{where}.branded_links_only: must be true or false")
    if "scorer" in data and not (isinstance(data["scorer"], bool) or (
            isinstance(data["scorer"], (int, float)) and 0.5 <= data["scorer"] < 1.0)):
        raise RuleError(f"{where}.scorer: must be true, false or a probability from 0.5 to 0.99")
    extra = data.get("extra_rules")
    if extra is not None and not isinstance(extra, (str, Path, list, tuple)):
        raise RuleError(f"{where}.extra_rules: must be a file name or a list of file names")


def _domains(values: Iterable[str]) -> tuple[str, ...]:
    out = []
    for v in values:
        v = v.strip().lower().rstrip(".").lstrip("@")
        try:
            v = v.encode("idna").decode("ascii")
        except UnicodeError:
            pass
        out.append(v)
    return tuple(out)


def _scorer(value: bool | float) -> float | None:
    """`scorer = true` (the model's own threshold), `false` (off) or the probability to refuse at."""
    if value is False:
        return None
    return 0.0 if value is True else float(value)


_SETTINGS: dict[tuple[int, str], tuple[Any, Settings, RuleSet]] = {}


def content_settings(config: Any, client: Any) -> Settings:
    """The content settings for one client: operator `[policy.content]` merged with the client's.

    Reads `config.content` and `client.content` (a dict, a dataclass or None) so wiring them into
    relay/config.py is one field each; without them every category is `reject`.
    """
    return _settings_and_rules(config, client)[0]


def _settings_and_rules(config: Any, client: Any) -> tuple[Settings, RuleSet]:
    key = (id(config), getattr(client, "name", ""))
    cached = _SETTINGS.get(key)
    if cached is not None and cached[0]() is config:
        return cached[1], cached[2]
    op = config_table(getattr(config, "content", None))
    cl = config_table(getattr(client, "content", None))
    base = Path(getattr(config, "path", "relay.toml")).absolute().parent
    validate_table(op, "policy.content")
    validate_table(cl, f"clients.{getattr(client, 'name', '?')}.content", client=True)
    categories = {**dict(op.get("categories") or {}), **dict(cl.get("categories") or {})}
    settings = Settings(
        default=cl.get("default") or op.get("default") or "reject",
        categories=categories,
        operator_domains=_domains(op.get("operator_domains") or ()),
        operator_addresses=tuple(a.strip().lower() for a in op.get("operator_addresses") or ()),
        extra_rules=_paths(op.get("extra_rules"), base) + _paths(cl.get("extra_rules"), base),
        branded_links_only=bool(cl.get("branded_links_only", False)),
        link_allow=_domains([*(op.get("link_allow") or ()), *(cl.get("link_allow") or ())]),
        scorer=_scorer(cl.get("scorer", op.get("scorer", True))),
    )
    rules = ruleset_for(settings.extra_rules)
    if settings.scorer is not None:
        scorer.load()  # read now (start-up), not by the first message
    unknown = set(categories) - set(rules.categories)
    if unknown:
        raise RuleError(f"content: unknown category {sorted(unknown)[0]!r} "
                        f"(known: {', '.join(sorted(rules.categories))})")
    try:
        ref = weakref.ref(config)
    except TypeError:
        def ref(config: Any = config) -> Any:  # objects without weak references (tests)
            return config
    _SETTINGS[key] = (ref, settings, rules)
    return settings, rules
