"""`relay queue list/show/flush/delete/hold/release`: the retry spool without sqlite3 (SPEC §12)."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any

import click

from relay.cli.context import RelayContext, pass_ctx
from relay.cli.storage import open_store
from storage import queue as spool

IDS_HELP = "spool ids (numbers, from `relay queue list`) or relay queue ids (every copy of that message)"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(value: datetime | None) -> str:
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": r["id"], "queue_id": r["queue_id"], "client": r["client"], "from": r["mail_from"] or "<>",
            "to": r["recipient"], "size": r.get("size"), "attempts": r["attempts"],
            "created": _iso(r["created_at"]), "next_attempt": "held" if r["held"] else _iso(r["next_attempt_at"]),
            "sending": bool(r["lease_until"] and _aware(r["lease_until"]) > _now()), "last_error": r["last_error"]}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@click.group()
def queue() -> None:
    """Inspect and manage the retry spool (copies the upstream deferred)."""


@queue.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per copy")
@pass_ctx
def queue_list(rc: RelayContext, as_json: bool) -> None:
    """Every spooled copy: id, queue id, client, recipient, attempts, next attempt, last error."""
    with open_store(rc.config) as store:
        rows = [_row(r) for r in spool.list_copies(store.engine)]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo("the retry spool is empty")
        return
    click.echo(f"{'ID':>6}  {'QUEUE ID':12}  {'CLIENT':10}  {'TO':30}  {'TRIES':>5}  {'NEXT ATTEMPT':20}  LAST ERROR")
    for r in rows:
        click.echo(f"{r['id']:>6}  {r['queue_id']:12}  {r['client']:10}  {r['to']:30}  {r['attempts']:>5}  "
                   f"{r['next_attempt'] + (' (sending)' if r['sending'] else ''):20}  {r['last_error']}")
    held = sum(1 for r in rows if r["next_attempt"] == "held")
    click.echo(f"{len(rows)} cop{'y' if len(rows) == 1 else 'ies'} in the spool" + (f", {held} held" if held else ""))


@queue.command("show")
@click.argument("ident")
@click.option("--body", is_flag=True, help="also print the signed copy as it will be sent")
@pass_ctx
def queue_show(rc: RelayContext, ident: str, body: bool) -> None:
    """One spooled copy (by spool id) or every copy of a message (by queue id)."""
    with open_store(rc.config) as store:
        rows = spool.list_copies(store.engine, [ident])
        data = spool.copy_data(store.engine, rows[0]["id"]) if body and len(rows) == 1 else None
    if not rows:
        raise click.ClickException(f"no spooled copy {ident!r} (see `relay queue list`)")
    for r in rows:
        for key, value in _row(r).items():
            click.echo(f"{key + ':':14}{value}")
        click.echo("")
    if body:
        if data is None:
            raise click.ClickException("--body needs one copy: give its spool id")
        sys.stdout.write(data.decode("utf-8", "replace").replace("\r\n", "\n"))


def _ids_or_all(ids: tuple[str, ...], every: bool, verb: str) -> list[str] | None:
    if ids and every:
        raise click.UsageError("give ids or --all, not both")
    if not ids and not every:
        raise click.UsageError(f"say which copies to {verb}: ids, or --all")
    return list(ids) or None


@queue.command("flush")
@click.argument("ids", nargs=-1)
@pass_ctx
def queue_flush(rc: RelayContext, ids: tuple[str, ...]) -> None:
    """Make copies due now (all, or the IDS given); a running relay tries them within seconds."""
    with open_store(rc.config) as store:
        n = spool.flush(store.engine, list(ids) or None, _now())
    click.echo(f"{n} cop{'y' if n == 1 else 'ies'} due now; a running relay tries them on its next pass (every 5 s)")


@queue.command("delete")
@click.argument("ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="empty the whole spool")
@pass_ctx
def queue_delete(rc: RelayContext, ids: tuple[str, ...], every: bool) -> None:
    """Delete copies for good: they are not sent and no bounce goes out; the audit log says so."""
    from relay.transaction import audit_row

    chosen = _ids_or_all(ids, every, "delete")
    with open_store(rc.config) as store:
        rows = spool.remove(store.engine, chosen or [str(r["id"]) for r in spool.list_copies(store.engine)])
        now = _now()
        store.record_decisions([audit_row(now, r["client"], None, r["queue_id"], None, r["recipient"], "admin", None,
                                          "delete", None, None, "deleted from the retry spool by relay queue delete")
                                for r in rows if r["queue_id"] != "notice"])
    if not rows:
        raise click.ClickException(f"no spooled copy {' '.join(ids)} (see `relay queue list`)")
    click.echo(f"deleted {len(rows)} cop{'y' if len(rows) == 1 else 'ies'}")


def _hold(rc: RelayContext, ids: tuple[str, ...], every: bool, held: bool) -> None:
    chosen = _ids_or_all(ids, every, "hold" if held else "release")
    with open_store(rc.config) as store:
        n = spool.hold(store.engine, chosen, held, _now())
    if held:
        click.echo(f"{n} cop{'y' if n == 1 else 'ies'} held: not retried (nor bounced) until released")
    else:
        click.echo(f"{n} cop{'y' if n == 1 else 'ies'} released: due now")


@queue.command("hold")
@click.argument("ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="hold every copy")
@pass_ctx
def queue_hold(rc: RelayContext, ids: tuple[str, ...], every: bool) -> None:
    """Stop retrying copies (an upstream to fix, a message to look at) until `relay queue release`."""
    _hold(rc, ids, every, True)


@queue.command("release")
@click.argument("ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="release every held copy")
@pass_ctx
def queue_release(rc: RelayContext, ids: tuple[str, ...], every: bool) -> None:
    """Put held copies back in the retry queue, due at once."""
    _hold(rc, ids, every, False)
