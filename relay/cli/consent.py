"""`relay consent import / show`: consent records with provenance, the opt-in proof.

Every bad input ends in one line (usage errors included). Imports run to the end, exit 0 and
list each refused row with its line number and reason; nothing is dropped silently.
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from relay.mail.addresses import AddressError, canonical_ip, normalize_address
from relay.cli.storage import open_store as _open_store

from relay.cli.common import (CHUNK_ROWS, FUTURE_SKEW, Group, METHODS, OPTIONAL_COLUMNS, PARALLEL_FROM_LINES, REQUIRED_COLUMNS,
    SHOW_REFUSED, STATUSES, UTC, find_client, find_list, is_role_local, one_liner, parse_time,
    short_time, table_lines)

if TYPE_CHECKING:
    from storage.consent import PreparedRow

consent = Group("consent", help="Consent records with provenance: import and inspect the opt-in proof.")


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
        if is_role_local(local, roles):
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
    client = find_client(config, client_name)
    mailing = find_list(client, list_key)
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
            click.echo(f"  line {line}: {one_liner(who) or '(empty)'}: {reason}")
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
    client = find_client(config, client_name)
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
        click.echo(f"suppressed ({blocked.scope}, {blocked.target}): {blocked.reason} since {short_time(blocked.created_at)}")
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
            ("signed up", short_time(record.signed_up_at)), ("IP", record.ip or "-"),
            ("disclosure", record.disclosure or "-"), ("confirmed at", short_time(record.confirmed_at)),
            ("last contact", short_time(record.last_contact_at)), ("revoked at", short_time(record.revoked_at)),
        ]
        if record.extra and record.extra != "{}":
            fields.append(("extra", record.extra))
        hit = unsubscribed.get(record.list_key)
        if hit is not None:
            fields.append(("unsubscribed", f"{hit.reason} since {short_time(hit.created_at)}"))
        for label, value in fields:
            click.echo(f"  {label + ':':<14}{one_liner(str(value))}")
        click.echo("  history:")
        rows = [[short_time(e.at), e.event, e.status, e.channel, e.ip or "-", one_liner(e.detail or "")]
                for e in events]
        for line in table_lines(["time", "event", "status", "channel", "IP", "detail"], rows):
            click.echo(f"    {line}")
