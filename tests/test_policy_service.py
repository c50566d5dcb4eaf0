"""`relay policy`: Postfix's policy delegation protocol over a real socket (TCP and UNIX), the relay's answers."""
from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import LoopThread, Sink, free_port, relay_toml
from filters.verdict import Verdict
from relay import replies
from relay.config import load_config
from relay.keys import ensure_token_key
from relay.milter.server import start_service
from relay.policyd.service import action_for
from storage.migrate import upgrade

NOW = datetime.now(timezone.utc)
STAGES = '["suppression", "sender-identity", "consent", "unsubscribe", "footer"]'
NO_CONSENT = "action=REJECT 5.7.1 no consent from stranger@example.org for list acme/news"
ROLE = "action=REJECT 5.7.1 postmaster@example.org is a role address (postmaster@): role mailboxes do not subscribe to mail"
SUSPENDED = "action=REJECT 5.7.1 Client idle is suspended; mail is not accepted"
DUNNO = "action=DUNNO"


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path, module_database_url: str, sink: Sink):
    upgrade(module_database_url)
    d = tmp_path_factory.mktemp("policy")
    path = d / "relay.toml"
    path.write_text(relay_toml(smtp_port=0, http_port=free_port(), db_url=module_database_url,
                               upstream=f"smtp://127.0.0.1:{sink.port}", keys=keys_dir, stages=STAGES)
                    + f'\n[policy_service]\nlisten = "unix:{d}/policy.sock"\n')
    config = load_config(path)
    ensure_token_key(config)
    loop = LoopThread()
    running = loop.run(start_service(config, milter=False, policy=True, http=False))
    running.runtime.store.consent_import("acme", "news", [{
        "address": "fan@example.org", "status": "confirmed", "method": "single", "source": "signup form",
        "signed_up_at": NOW - timedelta(days=10), "ip": "192.0.2.7", "disclosure": "Weekly news",
        "confirmed_at": None}], NOW, "test")
    yield str(d / "policy.sock")
    loop.run(running.stop(grace=5), timeout=60)
    loop.close()


def ask(path: str, *requests: dict[str, str]) -> list[str]:
    """Several requests on one connection, as Postfix's smtpd sends them."""
    answers = []
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        reader = s.makefile("rb")
        for request in requests:
            attrs = {"request": "smtpd_access_policy", "protocol_state": "RCPT", "protocol_name": "ESMTP",
                     "client_address": "192.0.2.1", "sender": "news@acme.example", **request}
            s.sendall("".join(f"{k}={v}\n" for k, v in attrs.items()).encode() + b"\n")
            answers.append(reader.readline().decode().rstrip("\n"))
            assert reader.readline() == b"\n"
        reader.close()
    return answers


def test_answers_per_recipient_from_sasl_username(policy):
    assert ask(policy,
               {"sasl_username": "acme", "recipient": "fan@example.org"},
               {"sasl_username": "acme", "recipient": "stranger@example.org"},
               {"sasl_username": "acme", "recipient": "postmaster@example.org"},
               {"sasl_username": "idle", "sender": "x@idle.example", "recipient": "fan@example.org"},
               ) == [DUNNO, NO_CONSENT, ROLE, SUSPENDED]


def test_client_by_networks_and_strangers_left_to_postfix(policy):
    assert ask(policy,
               {"client_address": "127.0.0.2", "sender": "news@beta.example", "recipient": "fan@example.org"},
               {"client_address": "192.0.2.50", "recipient": "anyone@example.org"},
               {"protocol_state": "DATA", "sasl_username": "acme", "recipient": "stranger@example.org"},
               ) == ["action=REJECT 5.7.1 no consent from fan@example.org for list beta/news", DUNNO, DUNNO]


def test_temporary_refusals_become_defer_if_permit():
    verdict = Verdict.tempfail("consent store busy", "consent.busy")
    assert action_for(replies.verdict_reply(verdict)) == "DEFER_IF_PERMIT 4.7.1 consent store busy"
