"""The context every `relay` command gets: the config, loaded on first use (help needs none)."""
from __future__ import annotations

from pathlib import Path

import click

from relay.config import Config, ConfigError, default_config_path, load_config


class RelayContext:
    def __init__(self, config_path: Path | None):
        self.explicit = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            path = self.explicit or default_config_path()
            embedded = self.explicit is None and path.name == "demo.toml"
            try:
                # the embedded demo keeps its files in the working directory, not in site-packages
                self._config = load_config(path, base=Path.cwd() if embedded else None)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
        return self._config


pass_ctx = click.make_pass_decorator(RelayContext)
