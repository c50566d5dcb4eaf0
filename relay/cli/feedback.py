"""`relay feedback ingest FILE...`: saved bounces and complaint reports through the same path as mail to the relay."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from relay.cli.context import RelayContext, pass_ctx
from relay.cli.storage import open_store


class _Offline:
    """What relay.feedback.Feedback needs of a Runtime, without the listeners, DKIM keys or upstream:
    a saved report needs only the token keys and the database. Webhook entries it queues are sent
    by the running relay's outbox runner."""

    def __init__(self, config: Any, store: Any) -> None:
        from datetime import datetime, timedelta, timezone

        from filters.context import Services
        from relay.keys import read_token_keys
        from relay.base.metrics import Metrics
        from relay.crypto.tokens import TokenCodec

        self.config, self.store = config, store
        self.tokens = TokenCodec(read_token_keys(config), timedelta(days=config.token_max_age_days))
        self.services = Services(clock=lambda: datetime.now(timezone.utc), store=store, tokens=self.tokens)
        self.metrics = Metrics()
        self.webhooks = self

    def wake(self) -> None:
        pass


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
    from relay.feedback.service import Feedback

    async def work(feedback: Feedback) -> None:
        for name, data in inputs:
            outcomes = await feedback.ingest(data, "cli")
            click.echo(f"{name}: " + "; ".join(o.line() for o in outcomes))

    with open_store(config) as store:
        asyncio.run(work(Feedback(_Offline(config, store))))  # type: ignore[arg-type]
