"""`relay milter` and `relay policy` inside a real, private Postfix that relays to an aiosmtpd sink (SPEC §13)."""
from __future__ import annotations

import email
import re
import smtplib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import LoopThread, Sink, free_port, relay_toml
from postfix_instance import PostfixInstance, postfix_available
from relay.config import load_config
from relay.keys import ensure_token_key
from relay.milter.session import ONE_RECIPIENT
from relay.milter.server import start_service
from storage.migrate import upgrade
from test_relay_smtp import message, verify_dkim

pytestmark = pytest.mark.skipif(not postfix_available(), reason="needs Debian's postfix, run as root")

NOW = datetime.now(timezone.utc)
STAGES = '["suppression", "sender-identity", "consent", "unsubscribe", "footer"]'
BETA = "127.0.0.2"  # client beta's `networks`: Postfix passes the address as {client_addr}
POLICY_NO_CONSENT = "554 5.7.1 <stranger@example.org>: Recipient address rejected: no consent from stranger@example.org for list beta/news"
MILTER_DOWN = "451 4.7.1 Service unavailable - try again later"


def consent(address: str) -> dict:
    return {"address": address, "status": "confirmed", "method": "single", "source": "signup form",
            "signed_up_at": NOW - timedelta(days=10), "ip": "192.0.2.7", "disclosure": "Weekly news",
            "confirmed_at": None}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path, module_database_url: str, sink: Sink):
    upgrade(module_database_url)
    d = tmp_path_factory.mktemp("milter")
    path = d / "relay.toml"
    milter_port, policy_port = free_port(), free_port()
    path.write_text(relay_toml(smtp_port=0, http_port=free_port(), db_url=module_database_url,
                               upstream=f"smtp://127.0.0.1:{sink.port}", keys=keys_dir, stages=STAGES,
                               relay_extra="") + f'\n[milter]\nlisten = "127.0.0.1:{milter_port}"\n'
                    f'\n[policy_service]\nlisten = "127.0.0.1:{policy_port}"\n')
    config = load_config(path)
    ensure_token_key(config)
    loop = LoopThread()
    running = loop.run(start_service(config, milter=True, policy=True))
    running.runtime.store.consent_import("beta", "news", [consent(a) for a in ("fan@example.org", "fan2@example.org",
                                                                          "gone@example.org")], NOW, "test")
    running.runtime.store.suppress_add("global", "", "", "blocked@example.net", "", "do-not-contact", "cli", NOW)
    yield running, loop, milter_port, policy_port
    loop.run(running.stop(grace=5), timeout=60)
    loop.close()


@pytest.fixture(scope="module")
def postfix(service, sink: Sink):
    _, _, milter_port, policy_port = service
    instance = PostfixInstance(sink.port, {
        "smtpd_milters": f"inet:127.0.0.1:{milter_port}",
        "milter_default_action": "tempfail",
        "milter_protocol": "6",
        "smtpd_recipient_restrictions": (f"check_policy_service inet:127.0.0.1:{policy_port}, "
                                         "permit_mynetworks, reject_unauth_destination"),
    }).start()
    yield instance
    instance.stop()


def submit(port: int) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", port, timeout=15, source_address=(BETA, 0))
    s.ehlo("client.test")
    return s


def test_consented_recipient_arrives_with_footer_unsubscribe_and_dkim(postfix, service, clean_sink: Sink,
                                                                      keys_dir: Path):
    with submit(postfix.port) as s:
        refused = s.sendmail("news@beta.example", ["fan@example.org"],
                             message(frm="news@beta.example", to="fan@example.org", body="Our news.\n"))
    assert refused == {}
    [got] = clean_sink.wait_for(1)
    assert got.rcpt_tos == ["fan@example.org"]
    # the relay's return path, set by the milter's SMFIR_CHGFROM: Postfix's bounces come back to the relay
    assert got.mail_from.startswith("bounce+") and got.mail_from.endswith("@relay.test")
    parsed = email.message_from_bytes(got.data)
    token = re.search(r"/u/([\w.-]+)>", parsed["List-Unsubscribe"]).group(1)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert token in parsed.get_payload(decode=True).decode()  # the footer carries the same link
    assert "Beta GmbH" in parsed.get_payload(decode=True).decode()
    assert "(Postfix)" in parsed["Received"]  # Postfix's own trace field; the relay adds none
    assert verify_dkim(got.data, keys_dir, domain="beta.example", selector="b1")
    # the audit log names Postfix's queue id (the `i` macro the milter asked for)
    queue_id = re.search(r"with ESMTP id (\w+)", parsed["Received"]).group(1)
    running, loop = service[0], service[1]
    loop.run(running.runtime.drain(10))
    rows = [r for r in running.runtime.store.audit_rows("beta") if r.queue_id == queue_id]
    assert {(r.stage, r.verdict) for r in rows} >= {("delivery", "deliver")}
    # ... and so does the return path's token, which the relay's own code reads back
    feedback = running.runtime.feedback
    assert feedback.paths.verify(feedback.paths.token_of(got.mail_from), NOW).queue_id == queue_id
    assert parsed["Feedback-ID"].endswith(":news:beta:relay.test")
    assert "feedback-id" in parsed["DKIM-Signature"].replace(" ", "").replace("\n", "").lower()


def test_a_copy_postfix_cannot_deliver_bounces_to_the_return_path_and_suppresses(postfix, service, clean_sink: Sink):
    """The whole way round: Postfix takes the milter's copy, the next hop refuses the recipient for
    good, Postfix mails its DSN to bounce+TOKEN@relay.test (relayed to the sink, like all its mail),
    and the relay's intake, given that DSN, attributes it to beta/news and suppresses the address."""
    running, loop = service[0], service[1]
    clean_sink.handler.reply_for = lambda rcpt: "550 5.1.1 no such user" if rcpt == "gone@example.org" else None
    with submit(postfix.port) as s:
        assert s.sendmail("news@beta.example", ["gone@example.org"],
                          message(frm="news@beta.example", to="gone@example.org")) == {}
    arrived = clean_sink.wait_for(1, timeout=30)  # the refused copy never arrives; its DSN does
    assert len(arrived) == 1, postfix.log()[-3000:]
    [dsn] = arrived
    assert dsn.mail_from == "<>" and dsn.rcpt_tos[0].startswith("bounce+") and dsn.rcpt_tos[0].endswith("@relay.test")
    reply = loop.run(running.runtime.feedback.intake(dsn.rcpt_tos, dsn.data))
    assert reply.startswith("250 2.0.0 Report received: dsn hard 5.1.1: beta/news gone@example.org: recorded"), reply
    assert [r.reason for r in running.runtime.store.suppressions(client="beta")
            if r.address == "gone@example.org"] == ["bounce"]


def test_unconsented_recipient_refused_at_rcpt_with_the_relays_reason(postfix, clean_sink: Sink):
    with submit(postfix.port) as s:
        s.mail("news@beta.example")
        code, text = s.rcpt("stranger@example.org")
    assert f"{code} {text.decode()}" == POLICY_NO_CONSENT
    assert clean_sink.messages == []


def test_two_marketing_recipients_become_two_transactions_each_with_its_own_token(postfix, clean_sink: Sink):
    body = message(frm="news@beta.example", to="fans@beta.example", body="Two of you.\n")
    with submit(postfix.port) as s:
        refused = s.sendmail("news@beta.example", ["fan@example.org", "fan2@example.org"], body)
        # the second recipient is deferred by the milter; an MTA retries it in a new transaction
        assert {rcpt: (code, text.decode()) for rcpt, (code, text) in refused.items()} == {
            "fan2@example.org": (452, ONE_RECIPIENT[4:])}
        assert s.sendmail("news@beta.example", ["fan2@example.org"], body) == {}
    got = clean_sink.wait_for(2)
    assert sorted(m.rcpt_tos[0] for m in got) == ["fan2@example.org", "fan@example.org"]
    assert all(len(m.rcpt_tos) == 1 for m in got)
    tokens = {email.message_from_bytes(m.data)["List-Unsubscribe"] for m in got}
    assert len(tokens) == 2


def test_milter_down_makes_postfix_tempfail_and_nothing_is_lost(postfix, service, clean_sink: Sink, keys_dir: Path):
    running, loop, milter_port, _ = service
    loop.run(_close(running.servers["milter"]))
    try:
        with submit(postfix.port) as s:
            code, text = s.mail("news@beta.example")
            if code == 250:
                code, text = s.rcpt("fan@example.org")
        assert f"{code} {text.decode()}" == MILTER_DOWN  # the client keeps the message and retries
        assert postfix.queue_size() == 0 and clean_sink.messages == []
    finally:
        loop.run(_reopen(running, "milter", milter_port))
    with submit(postfix.port) as s:  # the client's retry goes through once the milter is back
        assert s.sendmail("news@beta.example", ["fan@example.org"],
                          message(frm="news@beta.example", to="fan@example.org")) == {}
    [got] = clean_sink.wait_for(1)
    assert verify_dkim(got.data, keys_dir, domain="beta.example", selector="b1")


async def _close(server) -> None:  # noqa: ANN001
    server.close()
    await server.wait_closed()


async def _reopen(running, name: str, port: int) -> None:  # noqa: ANN001
    from relay.milter.server import listen
    from relay.milter.protocol import serve_connection
    from relay.milter.session import MilterSession

    async def connection(reader, writer):  # noqa: ANN001
        await serve_connection(reader, writer, MilterSession(running.runtime, "127.0.0.1"))

    running.servers[name] = await listen(f"127.0.0.1:{port}", connection)


def test_postfix_took_the_negotiation_without_complaint(postfix):
    """Macros (SETSYMLIST), no-reply events and header edits: Postfix logs no milter warning."""
    warnings = [line for line in postfix.log().splitlines() if "warning" in line and "milter" in line.lower()]
    assert warnings == [] or all("connect to Milter service" in w for w in warnings), warnings
