"""What the consent, suppress and audit commands share: one-line usage errors, client/list lookup, time and table formats."""
from __future__ import annotations

import csv
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TextIO

import click

from relay.cli.context import CheckedGroup



UTC = timezone.utc
REQUIRED_COLUMNS = ("email", "signed_up_at", "source", "method", "ip", "disclosure")
# confirmed_at, and the columns `relay consent export` writes, so that its file imports as the same records
OPTIONAL_COLUMNS = ("confirmed_at", "status", "revoked_at", "last_contact_at", "user_agent", "extra")
STATUSES = ("", "pending", "confirmed", "revoked")
METHODS = ("single", "double")
REASONS = ("unsubscribe", "complaint", "bounce", "do-not-contact", "manual")
CHUNK_ROWS = 5000          # rows per validation chunk, and per storage transaction
PARALLEL_FROM_LINES = 20000  # below this, validating in-process beats starting workers
SHOW_REFUSED = 50          # refusals printed in the summary; --refused-out has them all
FUTURE_SKEW = timedelta(days=1)  # clocks differ; a sign-up further ahead than this is a data error


# -- one-line errors -------------------------------------------------------------------------

class OneLineUsageError(click.ClickException):
    """A usage error (missing option, bad value) shown as one line, with click's usage exit code."""

    exit_code = 2


def _one_line(exc: click.UsageError) -> OneLineUsageError:
    where = exc.ctx.command_path if exc.ctx is not None else "relay"
    return OneLineUsageError(f"{where}: {exc.format_message()}")


class Command(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _one_line(exc) from None


class Group(CheckedGroup):
    command_class = Command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            raise _one_line(exc) from None




# -- shared helpers --------------------------------------------------------------------------

def find_client(config: Any, name: str) -> Any:
    client = config.clients.get(name)
    if client is None:
        known = ", ".join(sorted(config.clients)) or "none"
        raise click.ClickException(f"unknown client {name!r} ({config.path.name} defines: {known})")
    return client


def find_list(client: Any, key: str) -> Any:
    mailing = client.lists.get(key)
    if mailing is None:
        known = ", ".join(sorted(client.lists)) or "none"
        raise click.ClickException(f"unknown list {key!r} for client {client.name} (it has: {known})")
    return mailing


def parse_time(value: str) -> datetime:
    """ISO 8601 date or date-time; no offset means UTC. Raises ValueError."""
    text = value.strip()
    if not text:
        raise ValueError("empty")
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def since_arg(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise click.ClickException(f"--since: {value!r} is not an ISO 8601 date or time "
                                   "(e.g. 2026-01-31 or 2026-01-31T12:00:00Z)") from None


def iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value is not None else ""


def short_time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


def table_lines(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Plain aligned columns: readable in a terminal, greppable in a pipe, never wrapped."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + ("  {}" if len(widths) > 1 else "{}")
    return [fmt.format(*headers).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def one_liner(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


def is_role_local(local: str, roles: frozenset[str]) -> bool:
    return local.lower().split("+", 1)[0] in roles


def row_writer(fmt: str, columns: list[str], out: TextIO) -> Callable[[dict[str, Any]], None]:
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        return lambda row: writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return lambda row: out.write(json.dumps({c: row.get(c) for c in columns}, ensure_ascii=False) + "\n")


# -- consent import: validation (runs in worker processes for big files) -------------------------
