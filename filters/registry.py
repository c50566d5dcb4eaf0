"""Find the stage modules in `filters/` and index them by their unique NAME."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache
from typing import Any, Awaitable, Callable

PHASES = ("rcpt", "message", "copy")
_INFRASTRUCTURE = {"verdict", "registry", "context", "links"}


@dataclass(frozen=True)
class Stage:
    """A policy stage: `check` stages decide (rcpt or message phase); `apply` stages transform copies."""

    name: str
    description: str
    phase: str
    run: Callable[[Any], Awaitable[Any]]

    @property
    def transforms(self) -> bool:
        return self.phase == "copy"


def _stage_from_module(module: Any) -> Stage:
    where = module.__name__
    name, description, phase = (getattr(module, attr, None) for attr in ("NAME", "DESCRIPTION", "PHASE"))
    if not isinstance(name, str) or not isinstance(description, str) or phase not in PHASES:
        raise TypeError(f"{where}: a stage needs NAME, DESCRIPTION and PHASE in {PHASES}")
    check, apply = getattr(module, "check", None), getattr(module, "apply", None)
    # rules decide, handlers transform: a stage is one or the other, never both
    if phase == "copy":
        if apply is None or check is not None:
            raise TypeError(f"{where}: a copy-phase stage has apply(ctx) and no check")
        return Stage(name, description, phase, apply)
    if check is None or apply is not None:
        raise TypeError(f"{where}: a {phase}-phase stage has check(ctx) and no apply")
    return Stage(name, description, phase, check)


@cache
def all_stages() -> dict[str, Stage]:
    """Every stage shipped in the filters package, by name."""
    import filters

    stages: dict[str, Stage] = {}
    for info in pkgutil.iter_modules(filters.__path__):
        if info.name in _INFRASTRUCTURE or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"filters.{info.name}")
        if not hasattr(module, "NAME"):
            continue  # a helper module, not a stage
        stage = _stage_from_module(module)
        if stage.name in stages:
            raise TypeError(f"two stages are named {stage.name!r}")
        stages[stage.name] = stage
    return stages


def resolve(names: tuple[str, ...]) -> list[Stage]:
    """The configured stages in order (config loading already refused unknown names)."""
    stages = all_stages()
    return [stages[name] for name in names]
