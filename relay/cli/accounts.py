"""Account and campaign commands: `relay client state/show`, `relay campaign list/show/release/decline`."""
from __future__ import annotations

import getpass
import json
from datetime import timedelta
from typing import Any

import click

from relay.cli.context import CheckedGroup, RelayContext, pass_ctx

__all__ = ["campaign", "mount"]

campaign = CheckedGroup("campaign", help="Canary campaigns: list, show, release or decline (SPEC §11).")


def _actor() -> str:
    try:
        return f"operator:{getpass.getuser()}"
    except Exception:
        return "operator"


def _client(rc: RelayContext, name: str) -> Any:
    client = rc.config.clients.get(name)
    if client is None:
        raise click.ClickException(f"unknown client {name!r} (clients: {', '.join(sorted(rc.config.clients))})")
    return client


def _with_runtime(rc: RelayContext, work: Any) -> Any:
    from relay.cli.optin import _run_with_runtime

    return _run_with_runtime(rc.config, work)


@click.command("state")
@click.argument("client_name", metavar="CLIENT")
@click.argument("state", type=click.Choice(["active", "warned", "frozen", "suspended", "terminated"]))
@click.option("--reason", required=True, help="why: goes to the audit and to the client's contact address")
@click.option("--evidence", default="", help="what shows it (a ticket, counts, a sample)")
@pass_ctx
def client_state(rc: RelayContext, client_name: str, state: str, reason: str, evidence: str) -> None:
    """Set CLIENT's state; every relay worker and host applies it within about a second."""
    client = _client(rc, client_name)
    if not reason.strip():
        raise click.ClickException("--reason must not be empty")

    async def work(rt: Any) -> Any:
        return await rt.accounts.change_state(client, state, _actor(), reason.strip(), evidence.strip())

    changed = _with_runtime(rc, work)
    if changed is None:
        click.echo(f"{client_name} is already {state}; nothing changed")
        return
    click.echo(f"{client_name}: {changed[0]} -> {changed[1]}; notice mailed to {client.contact_email}")


@click.command("show")
@click.argument("client_name", metavar="CLIENT")
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of text")
@pass_ctx
def client_show(rc: RelayContext, client_name: str, as_json: bool) -> None:
    """CLIENT's state, its history, its rates over the reputation window and its limits."""
    from relay.accounts import settings
    from relay.cli.storage import open_store
    from relay.runtime import utcnow

    client = _client(rc, client_name)
    config = rc.config
    now = utcnow()
    with open_store(config) as store:
        state = store.account_states().get(client.name, client.state)
        events = store.account_events(client.name)
        rep = settings.merged("reputation", config, client)
        since = now.date() - timedelta(days=int(rep["window_days"]) - 1)
        counts = store.totals(client.name, since)
        keys = settings.limit_keys(config, client, None, now.timestamp())
        used = store.rate_counts(client.name, [(k[0], k[1], k[2]) for k in keys])
        campaigns = store.campaigns(client.name, limit=10)
    delivered = counts.delivered
    rates = {"window_days": int(rep["window_days"]), "since": since.isoformat(), "delivered": delivered,
             "complaints": counts.complaints, "hard_bounces": counts.hard_bounces,
             "complaint_rate": counts.complaints / delivered if delivered else None,
             "hard_bounce_rate": counts.hard_bounces / delivered if delivered else None,
             "min_volume": rep["min_volume"]}
    limits = settings.merged("limits", config, client)
    data = {
        "client": client.name, "state": state, "starting_state": client.state,
        "history": [{"at": e.at.isoformat(), "from": e.old_state, "to": e.new_state, "actor": e.actor,
                     "reason": e.reason, "evidence": e.evidence} for e in events],
        "rates": rates,
        "limits": {**limits, "used": {f"per_{span}": used.get((scope, span), 0) for scope, span, _, _ in keys},
                   "lists": {k: dict(m.limits) for k, m in client.lists.items() if m.limits}},
        "campaigns": [{"id": c["id"], "list": c["list_key"], "state": c["state"], "sent": c["sent"],
                       "held": c["held"]} for c in campaigns],
    }
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.echo(f"client {client.name}: {state} (starting state in the config: {client.state})")
    click.echo("history:" if events else "history: no change recorded")
    for e in data["history"]:
        click.echo(f"  {e['at'][:19]}  {e['from']} -> {e['to']}  by {e['actor']}: {e['reason']}"
                   + (f" [{e['evidence']}]" if e["evidence"] else ""))

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2%}"

    click.echo(f"rates since {rates['since']}: {delivered} delivered, {counts.complaints} complaints "
               f"({pct(rates['complaint_rate'])}), {counts.hard_bounces} hard bounces "
               f"({pct(rates['hard_bounce_rate'])}); rules act from {rep['min_volume']} delivered")
    shown = ", ".join(f"{k} {v or 'none'}" for k, v in limits.items())
    click.echo(f"limits: {shown}; used now: " + (", ".join(f"{k} {v}" for k, v in data["limits"]["used"].items())
                                                 or "nothing counted"))
    for key, own in data["limits"]["lists"].items():
        click.echo(f"  list {key}: " + ", ".join(f"{k} {v}" for k, v in own.items()))
    for c in data["campaigns"]:
        click.echo(f"campaign {c['id']}  list {c['list']}  {c['state']}  sent {c['sent']}  held {c['held']}")


def _campaign_or_fail(store: Any, ident: str) -> dict[str, Any]:
    found = store.campaign(ident.strip().lower())
    if found is None:
        raise click.ClickException(f"no campaign {ident!r} (see `relay campaign list`)")
    return found


def _line(c: dict[str, Any]) -> str:
    hold = f"  hold until {c['hold_until']:%Y-%m-%d %H:%M:%S}" if c["hold_until"] and c["state"] == "holding" else ""
    return (f"{c['id']}  {c['client']}/{c['list_key']}  {c['state']:9}  sent {c['sent']}  held {c['held']}  "
            f"{c['label']}{hold}")


@campaign.command("list")
@click.option("--client", "client_name", default=None)
@pass_ctx
def campaign_list(rc: RelayContext, client_name: str | None) -> None:
    """Campaigns, newest first."""
    from relay.cli.storage import open_store

    if client_name is not None:
        _client(rc, client_name)
    with open_store(rc.config) as store:
        rows = store.campaigns(client_name)
    if not rows:
        click.echo("no campaigns")
    for c in rows:
        click.echo(_line(c))


@campaign.command("show")
@click.argument("ident", metavar="ID")
@pass_ctx
def campaign_show(rc: RelayContext, ident: str) -> None:
    """One campaign, with its canary's bounces, unsubscribes and complaints so far."""
    from relay.cli.storage import open_store

    with open_store(rc.config) as store:
        c = _campaign_or_fail(store, ident)
        fb = store.campaign_feedback(c["id"])
    click.echo(_line(c))
    click.echo(f"subject: {c['subject']}")
    click.echo(f"started {c['started_at']:%Y-%m-%d %H:%M:%S} UTC; declared size {c['declared_size'] or 'none'}; "
               f"recipients offered {c['seen']}")
    click.echo(f"canary: {fb['canary']} recipients; {fb['bounce']} bounced, {fb['unsubscribe']} unsubscribed, "
               f"{fb['complaint']} complained")
    if c["decided_at"]:
        click.echo(f"decided {c['decided_at']:%Y-%m-%d %H:%M:%S} UTC by {c['decided_by']}: {c['reason']}")


def _decide(rc: RelayContext, ident: str, state: str, reason: str) -> None:
    async def work(rt: Any) -> tuple[dict[str, Any], bool]:
        found = await rt.store.run(rt.store.campaign, ident.strip().lower())
        if found is None:
            return {}, False
        return found, await rt.accounts.decide(found, state, _actor(), reason)

    found, done = _with_runtime(rc, work)
    if not found:
        raise click.ClickException(f"no campaign {ident!r} (see `relay campaign list`)")
    if not done:
        raise click.ClickException(f"campaign {found['id']} is already {found['state']}; nothing changed")
    click.echo(f"campaign {found['id']} {state}; client {found['client']} notified")


@campaign.command("release")
@click.argument("ident", metavar="ID")
@pass_ctx
def campaign_release(rc: RelayContext, ident: str) -> None:
    """Let the rest of the campaign go out (its held recipients are accepted on retry)."""
    _decide(rc, ident, "released", "released by an operator")


@campaign.command("decline")
@click.argument("ident", metavar="ID")
@click.option("--reason", required=True, help="why: told to the client and kept with the campaign")
@pass_ctx
def campaign_decline(rc: RelayContext, ident: str, reason: str) -> None:
    """Refuse the rest of the campaign (550 5.7.1 naming it)."""
    if not reason.strip():
        raise click.ClickException("--reason must not be empty")
    _decide(rc, ident, "declined", reason.strip())


def mount(main: click.Group, client: click.Group) -> None:
    client.add_command(client_state)
    client.add_command(client_show)
    main.add_command(campaign)
