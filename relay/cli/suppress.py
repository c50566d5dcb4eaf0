"""`relay suppress add / remove / list / import / export`: global, client and list suppressions."""
from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from relay.mail.addresses import AddressError, normalize_address
from storage.consent import suppression_key
from relay.cli.storage import open_store as _open_store

from relay.cli.common import (Group, REASONS, SHOW_REFUSED, UTC, find_client, find_list, iso, one_liner, row_writer, short_time,
    since_arg, table_lines)

suppress = Group("suppress", help="Suppressions (never send): global, per client, per list; address or @domain.")


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
        client = find_client(config, client_name)
        if list_key:
            find_list(client, list_key)
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
              one_liner(s.source or "-"), short_time(s.created_at)] for s in rows]
    for line in table_lines(["target", "scope", "client", "list", "reason", "source", "since"], table):
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
    client = find_client(rc.config, client_name)
    if list_key:
        find_list(client, list_key)
    when = since_arg(since)
    with _open_store(rc.config) as store:
        if list_key:
            rows = store.suppressions("client", client.name, "", when) + store.suppressions(
                "list", client.name, list_key, when)
        else:
            rows = store.suppressions(None, client.name, None, when)
    rows.sort(key=lambda s: (s.created_at, s.id or 0))
    write = row_writer(fmt, SUPPRESSION_COLUMNS, sys.stdout)
    for s in rows:
        write({"address": s.address or f"@{s.domain}", "scope": s.scope, "list": s.list_key or None,
               "reason": s.reason, "source": s.source, "at": iso(s.created_at)})
