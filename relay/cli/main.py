"""The `relay` command: serve, check, and the admin commands; bad input gets one clear line."""
from __future__ import annotations

import ipaddress
import logging
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import click

from relay.cli.context import CheckedGroup, RelayContext, pass_ctx
from relay.config import Config, ConfigError


class RelayGroup(CheckedGroup):
    """click's group, but every bad input ends in one line (SPEC §3): a usage error without the
    usage block, and a configuration error met inside any command without a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "relay"
            click.echo(f"Error: {exc.format_message()} (see `{command} --help`)", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except ConfigError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except (click.Abort, KeyboardInterrupt, EOFError):
            click.echo("Aborted!", err=True)
            sys.exit(1)
        # with standalone_mode off click returns a command's result, or the code of ctx.exit()
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=RelayGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="relay.toml to use (default: ./relay.toml)")
@click.option("--demo", is_flag=True, help="with no --config and no ./relay.toml: use the embedded demo")
@click.option("-v", "--verbose", is_flag=True, help="log at debug level")
@click.version_option(package_name="consent-relay", prog_name="relay", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, demo: bool, verbose: bool) -> None:
    """consent-relay: an SMTP relay that enforces permission-marketing policy inline."""
    from relay.base.maillog import configure_logging

    configure_logging(verbose)
    # aiosmtpd logs every command line at INFO and DEBUG, AUTH exchanges and unsubscribe tokens
    # included (SPEC §8: secrets never in logs), so it stays at WARNING even with -v
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)
    ctx.obj = RelayContext(config_path, demo)


def check_files(config: Config) -> list[str]:
    """What start-up loads, loaded now (ClickException naming the key); notes on what it would create."""
    from relay.keys import check_start_files
    from relay.runtime import check_content_rules

    try:
        notes = check_start_files(config)
        if "content" in config.stages:
            check_content_rules(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if config.stages_off:
        notes.append(f"policy.stages leaves out {', '.join(config.stages_off)}: "
                     "mail is relayed without those checks")
    return notes + exposure_notes(config)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")


def exposure_notes(config: Config) -> list[str]:
    """Demo settings that are wrong once the relay listens beyond this host (said then only: the
    demo listens on loopback, where they are right)."""
    if _loopback(config.relay.listen_host):
        return []
    notes = []
    link_host = urllib.parse.urlsplit(config.http.public_url).hostname or ""
    if _loopback(link_host) or link_host in ("0.0.0.0", "::"):
        notes.append(f"http.public_url is {config.http.public_url}: the unsubscribe and confirmation links in "
                     "mail will not open for recipients; set it to the URL they reach this relay at")
    if _loopback(config.relay.hostname):
        notes.append(f"relay.hostname is {config.relay.hostname}: the mailto unsubscribe address "
                     "(unsubscribe+TOKEN@HOSTNAME) cannot reach this relay; set it to this host's public name")
    if config.upstream.url.startswith("maildir:"):
        notes.append(f"upstream.url is {config.upstream.url}: copies are written to a Maildir, not sent")
    if config.create_missing_secrets:
        notes.append("secrets.create_missing is on: passwords and DKIM keys are made up when a file is "
                     "missing (demo only)")
    return notes


def prepare(config: Config) -> None:
    """What serve needs before the first connection: secrets and an up-to-date schema."""
    from relay.keys import ensure_demo_secrets, ensure_token_key
    from storage.migrate import upgrade

    try:
        ensure_token_key(config)
        made = ensure_demo_secrets(config)
    except OSError as exc:
        raise click.ClickException(f"secrets: cannot create {exc.filename}: {exc.strerror}") from None
    for line in made:
        click.echo(f"relay: {line}", err=True)
    for note in check_files(config):
        click.echo(f"relay: warning: {note}", err=True)
    try:
        upgrade(config.storage_url)
    except Exception as exc:  # the database is unreachable, refuses or is newer: say which, in one line
        from relay.cli.storage import storage_error

        raise storage_error(exc, opening=True) from None


class Workers(click.ParamType):
    """`auto` or a count from 1 to 64; auto is resolved in serve, once the config is known."""

    name = "auto|N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if isinstance(value, int) or str(value).strip().lower() == "auto":
            return value if isinstance(value, int) else "auto"
        try:
            count = int(value)
        except ValueError:
            self.fail(f"{value!r} is neither 'auto' nor a number of processes", param, ctx)
        if not 1 <= count <= 64:
            self.fail(f"{count} is not in the range 1<=x<=64 (or 'auto')", param, ctx)
        return count


@main.command()
@click.option("--workers", type=Workers(), default="auto", show_default=True,
              help="processes sharing the listening ports (SO_REUSEPORT); auto: one per CPU this "
                   "process may use (at most 2 on SQLite)")
@pass_ctx
def serve(rc: RelayContext, workers: int | str) -> None:
    """Run SMTP and HTTP until SIGTERM (finishes transactions in flight); SIGHUP reloads relay.toml."""
    import shutil

    from relay.base.cpus import auto_workers  # (not relay.server: that imports prometheus-client, too early)

    config = rc.config
    if workers == "auto":  # resolved first: everything below counts the processes
        workers = auto_workers(config.storage_url)
    assert isinstance(workers, int)
    counters = None
    if workers > 1:
        from relay.ops.supervisor import metrics_dir

        counters = metrics_dir()  # before prometheus-client is imported: its counters then add up across workers
    from relay.server import serve as run

    try:
        prepare(config)
        sys.exit(run(config, workers))
    except OSError as exc:
        raise click.ClickException(listen_error(config, exc)) from None
    finally:
        if counters is not None:
            shutil.rmtree(counters, ignore_errors=True)


def listen_error(config: Config, exc: OSError) -> str:
    """`relay.listen: cannot listen on 127.0.0.1:2525: Address already in use`: the key and the port."""
    where = str(exc.filename or "")
    keys = {f"{config.relay.listen_host}:{config.relay.listen_port}": "relay.listen",
            f"{config.http.listen_host}:{config.http.listen_port}": "http.listen",
            f"{config.ops.admin_host}:{config.ops.admin_port}": "admin.listen"}
    return f"{keys.get(where, 'relay.listen / http.listen')}: cannot listen on {where or '?'}: {exc.strerror}"


@main.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--client", "client_name", required=True, help="the client the message comes from")
@click.option("--rcpt", "rcpts", multiple=True, help="a recipient (repeatable); default: the To: addresses")
@pass_ctx
def check(rc: RelayContext, file: Path, client_name: str, rcpts: tuple[str, ...]) -> None:
    """Dry-run FILE.eml through every stage; print verdicts and the first recipient's copy."""
    import asyncio
    from email.utils import getaddresses

    from sqlalchemy.exc import SQLAlchemyError

    from relay.cli.storage import migrate, storage_error
    from relay.cli.check import check_message
    from relay.mail.message import Message
    from storage import Store

    config = rc.config
    client = config.clients.get(client_name)
    if client is None:
        raise click.ClickException(f"no client {client_name!r} in {config.path.name}")
    raw = file.read_bytes()
    if b"\r\n" not in raw:
        raw = raw.replace(b"\n", b"\r\n")  # files saved with Unix line ends read as SMTP would send them
    recipients = list(rcpts) or [a for _, a in getaddresses(Message(raw).values("to")) if a]
    if not recipients:
        raise click.ClickException("no recipient: give --rcpt or a To: header")
    migrate(config)
    store = Store(config.storage_url)
    try:
        report = asyncio.run(check_message(config, store, client, recipients, raw))
    except SQLAlchemyError as exc:
        raise storage_error(exc) from None
    finally:
        store.close()
    for line in report.lines:
        click.echo(line)
    if report.copy is None:
        click.echo("result: refused for every recipient; nothing would be sent")
        sys.exit(1)
    click.echo(f"result: accepted for {len(report.accepted)} of {len(recipients)} recipient(s); "
               f"copy for {report.accepted[0]}:")
    click.echo(report.copy.decode("utf-8", "replace").replace("\r\n", "\n"))


@main.command("config-check")
@pass_ctx
def config_check(rc: RelayContext) -> None:
    """Validate the configuration and the files it names (keys, TLS pair); print a summary."""
    config = rc.config
    notes = check_files(config)
    click.echo(f"{config.path}: ok — {len(config.clients)} client(s), stages: {', '.join(config.stages)}")
    for note in notes:
        click.echo(f"note: {note}")


@main.command()
def stages() -> None:
    """List the policy stages this version ships."""
    from filters.registry import all_stages

    for stage in all_stages().values():
        click.echo(f"{stage.name:18} {stage.phase:8} {stage.description}")


def _mount() -> None:
    from relay.cli.queue import queue

    main.add_command(queue)
    from relay.cli.audit import audit
    from relay.cli.consent import consent
    from relay.cli.suppress import suppress
    from relay.cli.keys import client, dkim

    main.add_command(dkim)
    main.add_command(client)
    main.add_command(consent)
    main.add_command(suppress)
    main.add_command(audit)
    from relay.cli.milter import mount as mount_postfix_commands  # relay milter, relay policy (SPEC §13)
    mount_postfix_commands(main, prepare)
    from relay.cli.optin import consent_add, consent_export, consent_repermission

    for command in (consent_add, consent_export, consent_repermission):
        consent.add_command(command)
    from relay.cli.feedback import feedback

    main.add_command(feedback)
    from relay.cli.accounts import mount as mount_accounts

    mount_accounts(main, client)  # relay client state/show, relay campaign


_mount()
