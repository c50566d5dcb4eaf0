"""The context every `relay` command gets: the config, loaded on first use (help needs none)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from relay.config import Config, ConfigError, default_config_path, load_config


NO_CONFIG = ("no configuration: give --config PATH, run where ./relay.toml is, or pass --demo "
             "for the embedded demo (SQLite ./relay.db, mail to ./outbox)")


class RelayContext:
    def __init__(self, config_path: Path | None, demo: bool = False):
        self.explicit = config_path
        self.demo = demo
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            path = self.explicit or default_config_path()
            embedded = self.explicit is None and path.name == "demo.toml"
            if embedded and not self.demo:
                # SPEC §12: never the demo by accident (a suppression added from the wrong
                # directory would land in a new ./relay.db and never reach production)
                raise click.ClickException(NO_CONFIG)
            try:
                # the embedded demo keeps its files in the working directory, not in site-packages
                self._config = load_config(path, base=Path.cwd() if embedded else None)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
        return self._config


pass_ctx = click.make_pass_decorator(RelayContext)


def refuse_repeated_options(command: click.Command, args: list[str]) -> None:
    """A UsageError when an option that takes one value is given twice (click keeps the last one
    silently: `--list news --list members` subscribed to members)."""
    if isinstance(command, click.Group):
        return  # its own subcommand is checked when the group resolves it
    single = {name: param for param in command.params if isinstance(param, click.Option)
              and not param.multiple and not param.is_flag and not param.count for name in param.opts}
    seen: dict[str, str] = {}
    tokens = iter(args)
    for token in tokens:
        if token == "--":
            break
        name, _, inline = token.partition("=")
        param = single.get(name)
        if param is None:
            continue
        value = inline if inline or token.endswith("=") else next(tokens, "")  # skip the value
        if param.name in seen:
            raise click.UsageError(f"{name} given twice ({seen[param.name]!r} and {value!r}): give it once",
                                   click.get_current_context(silent=True))
        seen[param.name or name] = value


class CheckedGroup(click.Group):
    """click's group, refusing a repeated single-value option in the command it resolves."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            refuse_repeated_options(command, rest)
        return name, command, rest
