"""`relay audit export`: decisions and consent events, oldest first, as CSV or JSON lines."""
from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click

from relay.cli.storage import open_store as _open_store

from relay.cli.common import Group, find_client, iso, row_writer, since_arg

audit = Group("audit", help="The audit trail: decisions and consent events.")


# -- audit export -------------------------------------------------------------------------------

AUDIT_COLUMNS = ["kind", "at", "client", "list", "address", "stage", "rule", "verdict", "code", "status",
                 "reason", "message_id", "queue_id", "upstream_queue_id", "event", "consent_status", "channel", "ip",
                 "detail"]


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
    client = find_client(rc.config, client_name)
    when = since_arg(since)
    with _open_store(rc.config) as store:
        decisions = store.audit_rows(client.name, when)
        if include_global:
            decisions += store.audit_rows("*", when)
        events = store.consent_events(client.name, when)
    merged: list[tuple[datetime, int, int, dict[str, Any]]] = []
    for a in decisions:
        merged.append((a.at, 0, a.id or 0, {
            "kind": "decision", "at": iso(a.at), "client": a.client, "list": a.list_key, "address": a.recipient,
            "stage": a.stage, "rule": a.rule, "verdict": a.verdict, "code": a.code, "status": a.status,
            "reason": a.reason, "message_id": a.message_id, "queue_id": a.queue_id or None,
            "upstream_queue_id": a.upstream_queue_id}))
    for e in events:
        merged.append((e.at, 1, e.id or 0, {
            "kind": "consent", "at": iso(e.at), "client": e.client, "list": e.list_key, "address": e.address,
            "event": e.event, "consent_status": e.status, "channel": e.channel, "ip": e.ip,
            "detail": e.detail or None}))
    merged.sort(key=lambda m: m[:3])
    write = row_writer(fmt, AUDIT_COLUMNS, sys.stdout)
    for *_, row in merged:
        write(row)
