"""`relay milter` and `relay policy`: the relay's policy inside an existing Postfix (SPEC §13)."""
from __future__ import annotations

import asyncio
import sys
from typing import Callable

import click

from relay.cli.context import RelayContext, pass_ctx
from relay.config import Config

# `relay serve`'s start-up step (secrets, schema), handed in by mount(): importing relay.cli
# from here would make an import cycle with the module that mounts these commands
_prepare: Callable[[Config], None] = lambda config: None


def _run(rc: RelayContext, milter: bool, policy: bool, http: bool) -> None:
    from relay.milter.server import serve_until_signalled

    config = rc.config
    _prepare(config)
    try:
        asyncio.run(serve_until_signalled(config, milter=milter, policy=policy, http=http))
    except OSError as exc:
        keys = " / ".join(k for k, on in (("milter.listen", milter), ("policy_service.listen", policy),
                                           ("http.listen", http)) if on)
        raise click.ClickException(f"{keys}: cannot listen: {exc.strerror}") from None
    sys.exit(0)


@click.command("milter")
@click.option("--policy/--no-policy", default=False, show_default=True,
              help="also answer check_policy_service on [policy_service] listen")
@click.option("--http/--no-http", default=True, show_default=True,
              help="serve the unsubscribe and opt-in pages on [http] listen (the copies' links point there)")
@pass_ctx
def milter(rc: RelayContext, policy: bool, http: bool) -> None:
    """Run the stages as a Postfix milter on [milter] listen until SIGTERM."""
    _run(rc, milter=True, policy=policy, http=http)


@click.command("policy")
@click.option("--http/--no-http", default=False, show_default=True,
              help="also serve the unsubscribe and opt-in pages on [http] listen")
@pass_ctx
def policy(rc: RelayContext, http: bool) -> None:
    """Answer Postfix policy requests (check_policy_service) on [policy_service] listen until SIGTERM."""
    _run(rc, milter=False, policy=True, http=http)


def mount(main: click.Group, prepare: Callable[[Config], None]) -> None:
    global _prepare
    _prepare = prepare
    main.add_command(milter)
    main.add_command(policy)
