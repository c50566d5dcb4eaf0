"""`relay feedback ingest FILE...`: saved bounces and complaint reports through the same path as mail to the relay."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from relay.cli_context import RelayContext, pass_ctx
from relay.cli_optin import _run_with_runtime


@click.group("feedback")
def feedback() -> None:
    """Bounces and complaints (DSN, ARF) the relay did not receive by mail."""


@feedback.command("ingest")
@click.argument("files", nargs=-1, required=True)
@pass_ctx
def ingest(rc: RelayContext, files: tuple[str, ...]) -> None:
    """Read each FILE (a DSN or an ARF message; `-` reads one from stdin) and print what it found and did."""
    inputs: list[tuple[str, bytes]] = []
    for name in files:
        if name == "-":
            inputs.append(("-", sys.stdin.buffer.read()))
            continue
        try:
            inputs.append((name, Path(name).read_bytes()))
        except OSError as exc:
            raise click.ClickException(f"{name}: cannot read: {exc.strerror}") from None
    config = rc.config

    async def work(rt: Any) -> list[str]:
        lines = []
        for name, data in inputs:
            outcomes = await rt.feedback.ingest(data, "cli")
            lines.append(f"{name}: " + "; ".join(o.line() for o in outcomes))
        return lines

    for line in _run_with_runtime(config, work):
        click.echo(line)
