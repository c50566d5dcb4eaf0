"""`relay consent add|export|repermission`: confirmed opt-in from the command line."""
from __future__ import annotations

import asyncio
import csv
import json
import sys
from datetime import timedelta
from typing import Any

import click

from relay.cli.context import RelayContext, pass_ctx
from relay.cli.storage import migrate, open_store, storage_error


def _client_and_list(rc: RelayContext, client_name: str, list_key: str):  # type: ignore[no-untyped-def]
    config = rc.config
    client = config.clients.get(client_name)
    if client is None:
        raise click.ClickException(f"no client {client_name!r} in {config.path.name}")
    mailing = client.lists.get(list_key)
    if mailing is None:
        raise click.ClickException(f"client {client_name} has no list {list_key!r} "
                                   f"(lists: {', '.join(sorted(client.lists))})")
    return config, client, mailing


def _run_with_runtime(config: Any, work: Any) -> Any:
    """asyncio.run(_with_runtime(...)) with the schema migrated first; storage failures are one line."""
    from sqlalchemy.exc import SQLAlchemyError

    migrate(config)
    try:
        return asyncio.run(_with_runtime(config, work))
    except SQLAlchemyError as exc:
        raise storage_error(exc) from None


async def _with_runtime(config: Any, work: Any) -> Any:
    from relay.keys import ensure_token_key
    from relay.runtime import Runtime
    from storage import Store

    ensure_token_key(config)
    rt = Runtime(config, Store(config.storage_url))
    try:
        return await work(rt)
    finally:
        await rt.close()
        # the Runtime does not own the store; left open, its pooled connections were only
        # closed by the garbage collector (PostgreSQL: a ResourceWarning in whoever ran next)
        await asyncio.to_thread(rt.store.close)
        rt.store.close()


@click.command("add")
@click.argument("address")
@click.option("--client", "client_name", required=True)
@click.option("--list", "list_key", required=True)
@click.option("--source", required=True, help="where the consent came from, e.g. 'phone call 2026-11-20'")
@click.option("--ip", default=None, help="the subscriber's IP address, when known")
@pass_ctx
def consent_add(rc: RelayContext, address: str, client_name: str, list_key: str, source: str, ip: str | None) -> None:
    """Add one subscriber; pending with a confirmation mail when the list is confirmed_opt_in."""
    from relay.services.optin import SignupRefused, refuse_if_suspended

    config, client, mailing = _client_and_list(rc, client_name, list_key)
    if not source.strip():
        # the source is the provenance of the opt-in proof; `consent import` refuses an empty one too
        raise click.ClickException("--source must say where the consent came from (e.g. 'phone call 2026-11-20')")

    async def work(rt: Any) -> Any:
        return await rt.optin.subscribe(client, mailing, address, source=source, ip=ip, user_agent="relay CLI",
                                        channel="admin")

    try:
        refuse_if_suspended(client)  # early, before the database is opened; subscribe() checks it again
        result = _run_with_runtime(config, work)
    except SignupRefused as refused:
        raise click.ClickException(f"{address}: {refused}") from None
    click.echo(f"{result.address}: {result.state} on {client.name}/{mailing.key}; "
               f"confirmation mail: {result.confirmation_mail}")


@click.command("export")
@click.option("--client", "client_name", required=True)
@click.option("--list", "list_key", required=True)
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@pass_ctx
def consent_export(rc: RelayContext, client_name: str, list_key: str, fmt: str) -> None:
    """Write the proof of consent of every subscriber of a list (records and their history).

    The CSV imports into another relay as the same records (`relay consent import`): its extra
    column holds the columns kept from the original import, as JSON."""
    config, client, mailing = _client_and_list(rc, client_name, list_key)
    with open_store(config) as store:
        proof = store.list_proof(client.name, mailing.key)
    fields = ["address", "status", "method", "source", "signed_up_at", "ip", "user_agent", "disclosure",
              "confirmed_at", "last_contact_at", "revoked_at", "extra"]

    def record_dict(record: Any, events: list[Any]) -> dict[str, Any]:
        row = {f: (v.isoformat() if hasattr(v, "isoformat") else v) for f in fields
               for v in [getattr(record, f)]}
        row["extra"] = json.loads(record.extra) if record.extra else {}
        row["history"] = [{"at": e.at.isoformat(), "event": e.event, "status": e.status, "channel": e.channel,
                           "ip": e.ip, "detail": e.detail} for e in events]
        return row

    if fmt == "jsonl":
        for record, events in proof:
            click.echo(json.dumps(record_dict(record, events), ensure_ascii=False))
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=[*fields, "history"], lineterminator="\n")
    writer.writeheader()
    for record, events in proof:
        row = record_dict(record, events)
        row["extra"] = json.dumps(row["extra"], ensure_ascii=False) if row["extra"] else ""
        row["history"] = " | ".join(f"{h['at']} {h['event']} via {h['channel']}" + (f" from {h['ip']}" if h["ip"] else "")
                                    for h in row["history"])
        writer.writerow(row)


@click.command("repermission")
@click.option("--client", "client_name", required=True)
@click.option("--list", "list_key", required=True)
@pass_ctx
def consent_repermission(rc: RelayContext, client_name: str, list_key: str) -> None:
    """Ask subscribers whose consent is older than max_consent_age_days to confirm again."""
    from rich.progress import Progress

    from relay.services.optin import SignupRefused, refuse_if_suspended

    config, client, mailing = _client_and_list(rc, client_name, list_key)
    try:
        refuse_if_suspended(client)  # re-permission requests are mail in the client's name too
    except SignupRefused as refused:
        raise click.ClickException(str(refused)) from None
    if mailing.max_consent_age_days is None:
        raise click.ClickException(f"list {client.name}/{mailing.key} has no max_consent_age_days: nothing is stale")

    async def work(rt: Any) -> tuple[int, int]:
        store = rt.store
        before = rt.services.clock() - timedelta(days=mailing.max_consent_age_days)
        stale = await store.run(store.stale_consents, client.name, mailing.key, before)
        sent = 0
        with Progress(transient=True, disable=not sys.stderr.isatty()) as progress:
            task = progress.add_task("re-permission requests", total=len(stale))
            for address in stale:
                await rt.optin.send_confirmation(client, mailing, address, repermission=True)
                await store.run(store.note_event, client.name, mailing.key, [address], "repermission-requested",
                                "admin", rt.services.clock())
                sent += 1
                progress.advance(task)
        return len(stale), sent

    stale, sent = _run_with_runtime(config, work)
    click.echo(f"{client.name}/{mailing.key}: {stale} subscriber(s) with consent older than "
               f"{mailing.max_consent_age_days} days; {sent} re-permission request(s) sent. "
               f"Those who confirm are refreshed; the others stay blocked.")
