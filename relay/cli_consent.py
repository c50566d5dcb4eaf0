"""Consent, suppression and audit commands: `relay consent ...`, `relay suppress ...`, `relay audit export`.

Every bad input ends in one line (usage errors included). Imports run to the end, exit 0 and
list each refused row with its line number and reason; nothing is dropped silently.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from relay.addresses import AddressError, canonical_ip, normalize_address, suppression_key
from relay.cli_context import CheckedGroup
from relay.cli_storage import open_store as _open_store

if TYPE_CHECKING:
    from storage.consent import PreparedRow

__all__ = ["audit", "consent", "suppress"]

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


consent = Group("consent", help="Consent records with provenance: import and inspect the opt-in proof.")
suppress = Group("suppress", help="Suppressions (never send): global, per client, per list; address or @domain.")
audit = Group("audit", help="The audit trail: decisions and consent events.")


# -- shared helpers --------------------------------------------------------------------------

def _client(config: Any, name: str) -> Any:
    client = config.clients.get(name)
    if client is None:
        known = ", ".join(sorted(config.clients)) or "none"
        raise click.ClickException(f"unknown client {name!r} ({config.path.name} defines: {known})")
    return client


def _list(client: Any, key: str) -> Any:
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


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise click.ClickException(f"--since: {value!r} is not an ISO 8601 date or time "
                                   "(e.g. 2026-01-31 or 2026-01-31T12:00:00Z)") from None


def _iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value is not None else ""


def _short(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Plain aligned columns: readable in a terminal, greppable in a pipe, never wrapped."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + ("  {}" if len(widths) > 1 else "{}")
    return [fmt.format(*headers).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def _one_liner(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


def _is_role(local: str, roles: frozenset[str]) -> bool:
    return local.lower().split("+", 1)[0] in roles


def _writer(fmt: str, columns: list[str], out: TextIO) -> Callable[[dict[str, Any]], None]:
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        return lambda row: writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return lambda row: out.write(json.dumps({c: row.get(c) for c in columns}, ensure_ascii=False) + "\n")


# -- consent import: validation (runs in worker processes for big files) -------------------------

def validate_chunk(rows: list[tuple[int, list[str]]], columns: dict[str, int], extra: list[tuple[str, int]],
                   width: int, roles: frozenset[str], now: datetime, target: tuple[str, str, Any, str, bool]
                   ) -> list[tuple[int, str | None, str, str | None, tuple[str, str, PreparedRow] | None]]:
    """Check one chunk of CSV rows and, for good ones, build the database rows (in the worker, off the writer).

    target: (client, list key, import time in the database's form, channel, is PostgreSQL).
    Returns one tuple per row, in order: (line, normalised address or None, email as given,
    reason refused or None, (status, method, row for Store.consent_import_prepared) or None).
    """
    from storage.consent import prepare_import_row  # here: the CLI's other commands need no SQLAlchemy
    email_i, signed_i, source_i, method_i = (columns["email"], columns["signed_up_at"], columns["source"],
                                             columns["method"])
    ip_i, disclosure_i = columns["ip"], columns["disclosure"]
    confirmed_i = columns.get("confirmed_at")
    status_i, revoked_i, contact_i = columns.get("status"), columns.get("revoked_at"), columns.get("last_contact_at")
    agent_i, extra_i = columns.get("user_agent"), columns.get("extra")
    ahead = now + FUTURE_SKEW
    out: list[tuple[int, str | None, str, str | None, dict[str, Any] | None]] = []
    append = out.append
    for line, row in rows:
        if len(row) != width:
            email = row[email_i].strip() if len(row) > email_i else ""
            append((line, None, email, f"has {len(row)} fields, the header has {width}", None))
            continue
        email = row[email_i].strip()
        if not email:
            append((line, None, "", "email is empty", None))
            continue
        try:
            local, domain = normalize_address(email)
        except AddressError as exc:
            append((line, None, email, str(exc), None))
            continue
        address = f"{local}@{domain}"
        if _is_role(local, roles):
            append((line, address, email, f"role address ({local.lower().split('+', 1)[0]}@): "
                                          "not a person who can give consent", None))
            continue
        source = row[source_i].strip()
        method = row[method_i].strip().lower()
        signed_raw = row[signed_i].strip()
        reason = None
        if not signed_raw:
            reason = "signed_up_at is empty"
        elif not source:
            reason = "source is empty"
        elif "\n" in source or "\r" in source:
            reason = "source contains a line break"
        elif not method:
            reason = "method is empty"
        elif method not in METHODS:
            reason = f"method {row[method_i].strip()!r} is not single or double"
        if reason is not None:
            append((line, address, email, reason, None))
            continue
        try:
            signed_up_at = parse_time(signed_raw)
        except ValueError:
            append((line, address, email, f"signed_up_at {signed_raw!r} is not an ISO 8601 date/time", None))
            continue
        if signed_up_at > ahead:
            append((line, address, email, f"signed_up_at {signed_raw} is in the future", None))
            continue
        confirmed_at = None
        confirmed_raw = row[confirmed_i].strip() if confirmed_i is not None else ""
        if confirmed_raw:
            try:
                confirmed_at = parse_time(confirmed_raw)
            except ValueError:
                append((line, address, email,
                        f"confirmed_at {confirmed_raw!r} is not an ISO 8601 date/time", None))
                continue
            if confirmed_at < signed_up_at:
                append((line, address, email,
                        f"confirmed_at {confirmed_raw} is before signed_up_at {signed_raw}", None))
                continue
            if confirmed_at > ahead:
                append((line, address, email, f"confirmed_at {confirmed_raw} is in the future", None))
                continue
        ip = row[ip_i].strip()
        if ip:
            try:
                ip = canonical_ip(ip)
            except ValueError:
                append((line, address, email, f"ip {ip!r} is not an IP address", None))
                continue
        exported, reason = _exported_fields(row, status_i, revoked_i, contact_i, agent_i, extra_i, signed_up_at, ahead)
        if reason is not None:
            append((line, address, email, reason, None))
            continue
        status = "pending" if method == "double" and confirmed_at is None else "confirmed"
        if exported["revoked_at"] is not None:
            status = "revoked"  # an unsubscribe stays one: importing it as consent would mail the person again
        kept = {**exported.pop("extra"), **{name: row[i] for name, i in extra}}
        append((line, address, email, None, (status, method, prepare_import_row(*target[:2], {
            "address": address, "status": status, "method": method, "source": source,
            "signed_up_at": signed_up_at, "ip": ip or None, "disclosure": row[disclosure_i].strip(),
            "confirmed_at": confirmed_at, "extra": kept, **exported,
        }, *target[2:]))))
    return out


def _exported_fields(row: list[str], status_i: int | None, revoked_i: int | None, contact_i: int | None,
                     agent_i: int | None, extra_i: int | None, signed_up_at: datetime, ahead: datetime
                     ) -> tuple[dict[str, Any], str | None]:
    """The optional columns of a `relay consent export` file: (values, None) or ({}, reason refused).

    status `revoked` (or a revoked_at) keeps the record revoked; revoked_at defaults to the sign-up
    time when the file has none (the earliest the unsubscribe can have been).
    """
    def cell(i: int | None) -> str:
        return row[i].strip() if i is not None else ""

    status = cell(status_i).lower()
    if status not in STATUSES:
        return {}, f"status {cell(status_i)!r} is not pending, confirmed or revoked"
    times: dict[str, datetime | None] = {}
    for name, i in (("revoked_at", revoked_i), ("last_contact_at", contact_i)):
        raw = cell(i)
        try:
            times[name] = parse_time(raw) if raw else None
        except ValueError:
            return {}, f"{name} {raw!r} is not an ISO 8601 date/time"
        if times[name] is not None and times[name] > ahead:  # type: ignore[operator]
            return {}, f"{name} {raw} is in the future"
    if status == "revoked" and times["revoked_at"] is None:
        times["revoked_at"] = signed_up_at
    extra: dict[str, Any] = {}
    if cell(extra_i):
        try:
            extra = json.loads(cell(extra_i))
        except ValueError:
            extra = None  # type: ignore[assignment]
        if not isinstance(extra, dict):
            return {}, "extra is not a JSON object"
    return {**times, "user_agent": cell(agent_i), "extra": extra}, None


def _read_csv(path: Path) -> tuple[str, csv.Reader]:  # type: ignore[name-defined]
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    return text, csv.reader(io.StringIO(text, newline=""), strict=False)


def _header(path: Path, reader: Any) -> tuple[dict[str, int], list[tuple[str, int]], int]:
    try:
        header = next(reader)
    except StopIteration:
        raise click.ClickException(f"{path}: empty file; the first line must be the header "
                                   f"({', '.join(REQUIRED_COLUMNS)})") from None
    except csv.Error as exc:
        raise click.ClickException(f"{path}: line 1: bad CSV header: {exc}") from None
    names = [h.strip().lower() for h in header]
    columns: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name:
            continue  # a trailing comma from a spreadsheet export: nothing to keep
        if name in columns:
            raise click.ClickException(f"{path}: header names column {name!r} twice")
        columns[name] = i
    if "email" not in columns and "address" in columns:
        columns["email"] = columns.pop("address")  # the column `relay consent export` writes
        names = [("email" if n == "address" else n) for n in names]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise click.ClickException(f"{path}: missing column {missing[0]!r} (the header must have: "
                                   f"{', '.join(REQUIRED_COLUMNS)}; optional: confirmed_at)")
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    extra = [(header[i].strip(), i) for i, name in enumerate(names) if name and name not in known]
    return columns, extra, len(header)


def _chunks(path: Path, reader: Any, size: int) -> Iterator[list[tuple[int, list[str]]]]:
    chunk: list[tuple[int, list[str]]] = []
    last = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise click.ClickException(f"{path}: line {last + 1}: unreadable CSV: {exc}") from None
        start, last = last + 1, reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line: not a record
        chunk.append((start, row))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _progress(total: int) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                    console=console, disable=not console.is_terminal, transient=False)


def _validated(path: Path, reader: Any, args: tuple[Any, ...], parallel: bool
               ) -> Iterator[tuple[list[Any], int]]:
    """Validation results chunk by chunk, in file order; workers run ahead while storage writes."""
    if not parallel:
        for chunk in _chunks(path, reader, CHUNK_ROWS):
            yield validate_chunk(chunk, *args), len(chunk)
        return
    import multiprocessing

    workers = max(1, min(4, os.cpu_count() or 1))
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    window: deque[tuple[Future[list[Any]], int]] = deque()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        try:
            for chunk in _chunks(path, reader, CHUNK_ROWS):
                window.append((pool.submit(validate_chunk, chunk, *args), len(chunk)))
                if len(window) > workers * 2:
                    future, n = window.popleft()
                    yield future.result(), n
            while window:
                future, n = window.popleft()
                yield future.result(), n
        finally:
            for future, _ in window:
                future.cancel()


@consent.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--client", "client_name", required=True, help="Client the records belong to.")
@click.option("--list", "list_key", required=True, help="List of that client the people subscribed to.")
@click.option("--channel", default="import", show_default=True,
              help="Channel recorded in each record's history.")
@click.option("--refused-out", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write every refused row (line, email, reason) to this CSV file.")
@click.pass_obj
def consent_import(rc: Any, file: Path, client_name: str, list_key: str, channel: str,
                   refused_out: Path | None) -> None:
    """Import consent records with their provenance from FILE (CSV, UTF-8).

    \b
    Header columns (all must exist, in any order):
      email         the subscriber's address
      signed_up_at  when they subscribed: ISO 8601, e.g. 2025-03-01T12:00:00Z (no offset = UTC)
      source        where: form URL, event, shop checkout ...
      method        single or double (opt-in)
      ip            the sign-up IP address (the value may be empty, e.g. paper forms)
      disclosure    what they were told / agreed to (the value may be empty)
    Optional: confirmed_at (double opt-in confirmation time), and what `relay consent export`
    writes (address for email, status, revoked_at, last_contact_at, user_agent, extra): a
    revoked row stays revoked. Any other column is kept with the record. email, signed_up_at,
    source and method need a value.

    \b
    Refused, with line number and reason: bad or role addresses, empty required values, bad
    dates, dates in the future, confirmed_at before signed_up_at, an unknown method, a bad IP,
    and an address seen earlier in the file. Status: single -> confirmed; double with
    confirmed_at -> confirmed; double without -> pending (awaits confirmation).
    Records already on file are never changed: importing a file twice adds nothing.
    """
    config = rc.config
    client = _client(config, client_name)
    mailing = _list(client, list_key)
    if mailing.transactional:
        # as `consent add`: a transactional list has no consent stage, so records there prove nothing
        raise click.ClickException(f"list {mailing.key} is transactional: nobody subscribes to it "
                                   "(its mail needs no consent records)")
    if not channel.strip() or "\n" in channel or "\r" in channel:
        raise click.ClickException("--channel must be a single non-empty line")
    text, reader = _read_csv(file)
    columns, extra, width = _header(file, reader)
    refused_fh = None
    if refused_out is not None:
        try:
            refused_fh = refused_out.open("w", newline="", encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(f"--refused-out {refused_out}: cannot write: {exc.strerror}") from None
    now = datetime.now(UTC)
    lines_estimate = max(1, text.count("\n") + (0 if text.endswith("\n") else 1) - 1)
    from storage.hotpath import sqlite_time

    postgres = config.storage_url.startswith("postgresql")
    args = (columns, extra, width, config.role_addresses, now,
            (client.name, mailing.key, now if postgres else sqlite_time(now), channel, postgres))
    read = added = existing = 0
    refused: list[tuple[int, str, str]] = []
    seen: dict[str, int] = {}
    single_on_coi = pending = revoked = 0
    import time

    started = time.monotonic()
    with _open_store(config) as store, _progress(lines_estimate) as progress:
        task = progress.add_task(f"{file.name} → {client.name}/{mailing.key}", total=lines_estimate, rate="")
        for results, n in _validated(file, reader, args, parallel=lines_estimate >= PARALLEL_FROM_LINES):
            batch = []
            for line, address, email, reason, record in results:
                if address is not None:
                    first = seen.get(address)
                    if first is None:
                        seen[address] = line
                    elif reason is None:
                        reason = f"duplicate of line {first}"
                if reason is not None:
                    refused.append((line, address or email, reason))
                    continue
                status, method, prepared = record
                batch.append(prepared)
                if status == "revoked":
                    revoked += 1
                elif status == "pending":
                    pending += 1
                elif method == "single" and mailing.confirmed_opt_in:
                    single_on_coi += 1
            if batch:
                new, old = store.consent_import_prepared(client.name, mailing.key, batch, bulk=True)
                added += len(new)
                existing += len(old)
            read += n
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(task, advance=n, rate=f"{read / elapsed:,.0f} rows/s")
        store.consent_import_finish()  # durable and analysed before the summary says it is done
        progress.update(task, completed=lines_estimate, total=lines_estimate)
    refused.sort()
    if refused_fh is not None:
        with refused_fh:
            writer = csv.writer(refused_fh)
            writer.writerow(["line", "email", "reason"])
            writer.writerows(refused)
    width_n = len(f"{read:,}")
    click.echo(f"{file.name} → {client.name}/{mailing.key}")
    click.echo(f"  rows read:                    {read:>{width_n},}")
    click.echo(f"  added:                        {added:>{width_n},}")
    click.echo(f"  already on file (unchanged):  {existing:>{width_n},}")
    click.echo(f"  refused:                      {len(refused):>{width_n},}")
    if pending and mailing.confirmed_opt_in:
        click.echo(f"note: {pending:,} added or kept row(s) are double opt-in without confirmed_at: "
                   "pending until confirmed")
    if revoked:
        click.echo(f"note: {revoked:,} row(s) were revoked (unsubscribed) and are kept as revoked: they get no mail")
    if single_on_coi:
        click.echo(f"note: list {mailing.key} requires confirmed opt-in; {single_on_coi:,} single opt-in "
                   "row(s) were recorded but will not be mailed")
    if refused:
        click.echo("refused rows:")
        for line, who, reason in refused[:SHOW_REFUSED]:
            click.echo(f"  line {line}: {_one_liner(who) or '(empty)'}: {reason}")
        if len(refused) > SHOW_REFUSED:
            more = len(refused) - SHOW_REFUSED
            hint = f" (all of them are in {refused_out})" if refused_out else " (use --refused-out FILE for all)"
            click.echo(f"  ... and {more:,} more{hint}")


# -- consent show -------------------------------------------------------------------------------

@consent.command("show")
@click.argument("address")
@click.option("--client", "client_name", required=True, help="Client whose records to show.")
@click.pass_obj
def consent_show(rc: Any, address: str, client_name: str) -> None:
    """Every consent record CLIENT holds for ADDRESS, with its full history: the opt-in proof."""
    config = rc.config
    client = _client(config, client_name)
    try:
        local, domain = normalize_address(address.strip())
    except AddressError as exc:
        raise click.ClickException(f"{address}: {exc}") from None
    target = f"{local}@{domain}"
    with _open_store(config) as store:
        records = store.consent_records(client.name, target)
        blocked = store.suppression_for(client.name, target, domain)
        unsubscribed = {r.list_key: store.list_lookup(client.name, r.list_key, [target]).unsubscribed.get(target)
                        for r, _ in records}
    if blocked is not None:
        click.echo(f"suppressed ({blocked.scope}, {blocked.target}): {blocked.reason} since {_short(blocked.created_at)}")
    if not records:
        click.echo(f"no consent records for {target} at client {client.name}")
        return
    for n, (record, events) in enumerate(records):
        if n:
            click.echo("")
        mailing = client.lists.get(record.list_key)
        name = f" ({mailing.name})" if mailing else " (list no longer in the configuration)"
        click.echo(f"{target} — {client.name}/{record.list_key}{name}: {record.status}")
        fields = [
            ("status", record.status), ("method", record.method), ("source", record.source),
            ("signed up", _short(record.signed_up_at)), ("IP", record.ip or "-"),
            ("disclosure", record.disclosure or "-"), ("confirmed at", _short(record.confirmed_at)),
            ("last contact", _short(record.last_contact_at)), ("revoked at", _short(record.revoked_at)),
        ]
        if record.extra and record.extra != "{}":
            fields.append(("extra", record.extra))
        hit = unsubscribed.get(record.list_key)
        if hit is not None:
            fields.append(("unsubscribed", f"{hit.reason} since {_short(hit.created_at)}"))
        for label, value in fields:
            click.echo(f"  {label + ':':<14}{_one_liner(str(value))}")
        click.echo("  history:")
        rows = [[_short(e.at), e.event, e.status, e.channel, e.ip or "-", _one_liner(e.detail or "")]
                for e in events]
        for line in _table(["time", "event", "status", "channel", "IP", "detail"], rows):
            click.echo(f"    {line}")


# -- suppressions -------------------------------------------------------------------------------

def _scope(config: Any, is_global: bool, client_name: str | None, list_key: str | None,
           required: bool = True) -> tuple[str | None, str, str]:
    """(scope, client, list_key) from the flags; ("", "", "") style blanks for the storage layer."""
    if is_global and client_name:
        raise click.ClickException("--global and --client exclude each other: a suppression is global "
                                   "or belongs to one client")
    if list_key and not client_name:
        raise click.ClickException("--list needs --client (lists belong to a client)")
    if is_global:
        return "global", "", ""
    if client_name:
        client = _client(config, client_name)
        if list_key:
            _list(client, list_key)
            return "list", client.name, list_key
        return "client", client.name, ""
    if required:
        raise click.ClickException("say where: --global, --client C, or --client C --list L")
    return None, "", ""


def _target(value: str, scope: str) -> tuple[str, str]:
    """(address, domain) for storage from TARGET: an address, or @domain for a whole domain.

    The address is its suppression_key (local part case-folded), as the store keeps it: the
    operator sees what is stored, and an import finds Carol@ and carol@ to be one entry.
    """
    value = value.strip()
    if value.startswith("@"):
        if scope == "list":
            raise ValueError("a whole domain (@domain) can be suppressed globally or for a client, "
                             "not for one list")
        try:
            _, domain = normalize_address(f"x@{value[1:]}")
        except AddressError as exc:
            raise ValueError(f"{value} is not a valid domain: "
                             f"{str(exc).replace('after the @-sign', 'domain')}") from None
        return "", domain
    if not value:
        raise ValueError("empty address")
    try:
        local, domain = normalize_address(value)
    except AddressError as exc:
        raise ValueError(str(exc)) from None
    return suppression_key(f"{local}@{domain}"), ""


def _describe(scope: str, client: str, list_key: str) -> str:
    return {"global": "global", "client": f"client {client}"}.get(scope, f"list {client}/{list_key}")


def _scope_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--list", "list_key", help="Only this list of the client (needs --client).")(f)
    f = click.option("--client", "client_name", help="For one client.")(f)
    f = click.option("--global", "is_global", is_flag=True, help="For every client.")(f)
    return f


def _scoped_target(rc: Any, target: str, is_global: bool, client_name: str | None,
                   list_key: str | None) -> tuple[str, str, str, str, str, str]:
    """The scope flags and TARGET of `suppress add/remove`, checked: (scope, client, list, address,
    domain, how to show the target)."""
    scope, client, key = _scope(rc.config, is_global, client_name, list_key)
    assert scope is not None
    try:
        address, domain = _target(target, scope)
    except ValueError as exc:
        raise click.ClickException(f"{target}: {exc}") from None
    return scope, client, key, address, domain, address or f"@{domain}"


@suppress.command("add")
@click.argument("target")
@_scope_options
@click.option("--reason", type=click.Choice(REASONS), default="manual", show_default=True)
@click.option("--source", default="cli", show_default=True, help="Who or what asked for it.")
@click.pass_obj
def suppress_add(rc: Any, target: str, is_global: bool, client_name: str | None, list_key: str | None,
                 reason: str, source: str) -> None:
    """Never send to TARGET (an address, or @domain for a whole domain and its subdomains)."""
    scope, client, key, address, domain, shown = _scoped_target(rc, target, is_global, client_name, list_key)
    with _open_store(rc.config) as store:
        added = store.suppress_add(scope, client, key, address, domain, reason, source, datetime.now(UTC))
    where = _describe(scope, client, key)
    click.echo(f"suppressed {shown} ({where}, {reason})" if added else f"{shown} was already suppressed ({where})")


@suppress.command("remove")
@click.argument("target")
@_scope_options
@click.option("--source", default="cli", show_default=True, help="Who or what asked for it (audited).")
@click.pass_obj
def suppress_remove(rc: Any, target: str, is_global: bool, client_name: str | None, list_key: str | None,
                    source: str) -> None:
    """Lift a suppression of TARGET in exactly that scope (audited)."""
    scope, client, key, address, domain, shown = _scoped_target(rc, target, is_global, client_name, list_key)
    with _open_store(rc.config) as store:
        removed = store.suppress_remove(scope, client, key, address, domain, source, datetime.now(UTC))
    where = _describe(scope, client, key)
    click.echo(f"removed the suppression of {shown} ({where})" if removed
               else f"{shown} was not suppressed ({where}); nothing changed")


@suppress.command("list")
@_scope_options
@click.pass_obj
def suppress_list(rc: Any, is_global: bool, client_name: str | None, list_key: str | None) -> None:
    """Show suppressions: all, --global ones, a client's (client-wide and its lists'), or one list's."""
    scope, client, key = _scope(rc.config, is_global, client_name, list_key, required=False)
    with _open_store(rc.config) as store:
        if scope == "client":  # a client's own entries: client-wide and every list
            rows = store.suppressions(None, client, None)
        elif scope is None:
            rows = store.suppressions()
        else:
            rows = store.suppressions(scope, client, key)
    if not rows:
        click.echo("no suppressions")
        return
    table = [[s.address or f"@{s.domain}", s.scope, s.client or "-", s.list_key or "-", s.reason,
              _one_liner(s.source or "-"), _short(s.created_at)] for s in rows]
    for line in _table(["target", "scope", "client", "list", "reason", "source", "since"], table):
        click.echo(line)
    click.echo(f"{len(rows)} suppression(s)")


@suppress.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_scope_options
@click.option("--reason", type=click.Choice(REASONS), default="do-not-contact", show_default=True)
@click.option("--source", default=None, help="Recorded with each entry [default: import:FILENAME].")
@click.pass_obj
def suppress_import(rc: Any, file: Path, is_global: bool, client_name: str | None, list_key: str | None,
                    reason: str, source: str | None) -> None:
    """Suppress every address or @domain in FILE (one per line; blank lines and # comments skipped).

    FILE may also be what `relay suppress export` wrote (CSV with an address column): then each
    row keeps its reason and source, and with --client alone its scope (client-wide or its list).
    """
    scope, client, key = _scope(rc.config, is_global, client_name, list_key)
    assert scope is not None
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise click.ClickException(f"{file}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{file}: not UTF-8 text (bad byte at offset {exc.start})") from None
    source = source or f"import:{file.name}"
    rows: list[dict[str, str]] = []
    refused: list[tuple[int, str, str]] = []
    seen: dict[tuple[str, str, str, str], int] = {}
    read = 0
    # a row's own scope counts only when the flags name a client and no list: the export is per client
    per_row_scope = scope == "client"
    for number, entry, given in _suppression_entries(file, text):
        read += 1
        row_scope, row_key, row_reason = scope, key, reason
        if given.get("reason"):
            if given["reason"] not in REASONS:
                refused.append((number, entry, f"reason {given['reason']!r} is not one of {', '.join(REASONS)}"))
                continue
            row_reason = given["reason"]
        if per_row_scope and given.get("scope") == "list":
            row_scope, row_key = "list", given.get("list", "")
            if row_key not in rc.config.clients[client].lists:
                refused.append((number, entry, f"client {client} has no list {row_key!r}"))
                continue
        target = given["address"] if "address" in given else entry
        try:
            address, domain = _target(target, row_scope)
        except ValueError as exc:
            refused.append((number, entry, str(exc)))
            continue
        first = seen.get((row_scope, row_key, address, domain))
        if first is not None:
            refused.append((number, entry, f"duplicate of line {first}"))
            continue
        seen[(row_scope, row_key, address, domain)] = number
        rows.append({"scope": row_scope, "client": client, "list_key": row_key, "address": address,
                     "domain": domain, "reason": row_reason, "source": given.get("source") or source})
    with _open_store(rc.config) as store:
        added, existing = store.suppress_import(rows, datetime.now(UTC)) if rows else (0, 0)
    click.echo(f"{file.name} → {_describe(scope, client, key)} ({reason})")
    click.echo(f"  entries read:        {read}")
    click.echo(f"  added:               {added}")
    click.echo(f"  already suppressed:  {existing}")
    click.echo(f"  refused:             {len(refused)}")
    for number, entry, why in refused[:SHOW_REFUSED]:
        click.echo(f"  line {number}: {entry}: {why}")
    if len(refused) > SHOW_REFUSED:
        click.echo(f"  ... and {len(refused) - SHOW_REFUSED} more")


SUPPRESSION_COLUMNS = ["address", "scope", "list", "reason", "source", "at"]


def _suppression_entries(path: Path, text: str) -> Iterator[tuple[int, str, dict[str, str]]]:
    """(line number, the line, its fields) for each entry of a `suppress import` file.

    A plain list gives {} (the line is the target); a CSV whose header names an `address`
    column (what `suppress export` writes) gives that row's columns by name.
    """
    lines = text.splitlines()
    first = next((i for i, raw in enumerate(lines) if raw.strip() and not raw.strip().startswith("#")), None)
    header = [h.strip().lower() for h in next(csv.reader([lines[first]]))] if first is not None else []
    if "address" not in header:
        for number, raw in enumerate(lines, start=1):
            entry = raw.strip()
            if entry and not entry.startswith("#"):
                yield number, entry, {}
        return
    for number, raw in enumerate(lines[first + 1:], start=first + 2):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        try:
            cells = next(csv.reader([raw]))  # the export writes no line breaks inside a field
        except csv.Error as exc:
            raise click.ClickException(f"{path}: line {number}: unreadable CSV: {exc}") from None
        yield number, entry, {name: cell.strip() for name, cell in zip(header, cells) if name}


@suppress.command("export")
@click.option("--client", "client_name", required=True, help="Client whose suppressions to export.")
@click.option("--list", "list_key", help="Only client-wide entries and this list's.")
@click.option("--since", help="Only entries made at or after this ISO 8601 date/time.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.pass_obj
def suppress_export(rc: Any, client_name: str, list_key: str | None, since: str | None, fmt: str) -> None:
    """Write a client's suppressions (client-wide and per list, unsubscribes included) to stdout,
    for the client to apply in its own systems. Global entries are the relay's own and not exported."""
    client = _client(rc.config, client_name)
    if list_key:
        _list(client, list_key)
    when = _since(since)
    with _open_store(rc.config) as store:
        if list_key:
            rows = store.suppressions("client", client.name, "", when) + store.suppressions(
                "list", client.name, list_key, when)
        else:
            rows = store.suppressions(None, client.name, None, when)
    rows.sort(key=lambda s: (s.created_at, s.id or 0))
    write = _writer(fmt, SUPPRESSION_COLUMNS, sys.stdout)
    for s in rows:
        write({"address": s.address or f"@{s.domain}", "scope": s.scope, "list": s.list_key or None,
               "reason": s.reason, "source": s.source, "at": _iso(s.created_at)})


# -- audit export -------------------------------------------------------------------------------

AUDIT_COLUMNS = ["kind", "at", "client", "list", "address", "stage", "rule", "verdict", "code", "status",
                 "reason", "message_id", "queue_id", "upstream_queue_id", "event", "consent_status", "channel", "ip", "detail"]


@audit.command("export")
@click.option("--client", "client_name", required=True, help="Client whose trail to export.")
@click.option("--since", help="Only rows at or after this ISO 8601 date/time.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--include-global", is_flag=True,
              help="Also the admin changes to global suppressions (recorded for client '*').")
@click.pass_obj
def audit_export(rc: Any, client_name: str, since: str | None, fmt: str, include_global: bool) -> None:
    """Write every decision about the client's recipients (and admin suppression changes) merged with
    its consent events, oldest first, to stdout. `kind` is "decision" or "consent"."""
    client = _client(rc.config, client_name)
    when = _since(since)
    with _open_store(rc.config) as store:
        decisions = store.audit_rows(client.name, when)
        if include_global:
            decisions += store.audit_rows("*", when)
        events = store.consent_events(client.name, when)
    merged: list[tuple[datetime, int, int, dict[str, Any]]] = []
    for a in decisions:
        merged.append((a.at, 0, a.id or 0, {
            "kind": "decision", "at": _iso(a.at), "client": a.client, "list": a.list_key, "address": a.recipient,
            "stage": a.stage, "rule": a.rule, "verdict": a.verdict, "code": a.code, "status": a.status,
            "reason": a.reason, "message_id": a.message_id, "queue_id": a.queue_id or None,
            "upstream_queue_id": a.upstream_queue_id}))
    for e in events:
        merged.append((e.at, 1, e.id or 0, {
            "kind": "consent", "at": _iso(e.at), "client": e.client, "list": e.list_key, "address": e.address,
            "event": e.event, "consent_status": e.status, "channel": e.channel, "ip": e.ip,
            "detail": e.detail or None}))
    merged.sort(key=lambda m: m[:3])
    write = _writer(fmt, AUDIT_COLUMNS, sys.stdout)
    for *_, row in merged:
        write(row)
