"""The milter side of `relay milter` on its own, driven by the pure-Python `miltertest` MTA (milter v6)."""
from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import time

import pytest
from click.testing import CliRunner
from miltertest import MilterConnection, codec, constants as c

import dkim

from conftest import LoopThread, Sink, free_port, relay_toml
from relay.cli.main import main as relay_cli
from relay.config import load_config
from relay.mail.dkim import dns_txt_record, load_private_key
from relay.keys import ensure_token_key
from relay.milter.session import ONE_RECIPIENT
from relay.milter.server import start_service
from storage.migrate import upgrade
from test_relay_smtp import verify_dkim

NOW = datetime.now(timezone.utc)
# miltertest decodes SMFIR_CHGFROM only with ESMTP arguments after the address, which the protocol
# makes optional: libmilter's smfi_chgfrom(ctx, from, NULL) and the relay send the address alone,
# and Postfix's milter8.c reads either. The test MTA is taught the shorter form.
codec.codec[c.SMFIR_CHGFROM] = (("from", "str"),)
STAGES = '["suppression", "sender-identity", "consent", "unsubscribe", "footer"]'
# what an MTA without SETSYMLIST support offers: the macros then come from its own configuration
ACTIONS = c.SMFI_V6_ACTS & ~c.SMFIF_SETSYMLIST
SUPPRESSED = (f"550 5.7.1 blocked@example.net is on the do-not-contact list (blocked@example.net, "
              f"do-not-contact since {NOW.date().isoformat()})")
NO_CONSENT = "550 5.7.1 no consent from stranger@example.org for list acme/news"
NOT_OUR_DOMAIN = "550 5.7.1 Sender domain other.example is not one of client acme's sender domains"


# a client whose lists are all transactional: several recipients per message are fine
SHOP = """
[clients.shop]
sender_domains = ["shop.example"]
company = "Shop AB"
contact_email = "help@shop.example"
postal_address = "Shop AB, Storgatan 1, 111 22 Stockholm, Sweden"
dkim = {{ selector = "s3", key_file = "{key}" }}
default_list = "orders"
networks = ["127.0.0.3/32"]

[clients.shop.lists.orders]
name = "Shop orders"
kind = "transactional"
"""


def consent(address: str) -> dict:
    return {"address": address, "status": "confirmed", "method": "single", "source": "signup form",
            "signed_up_at": NOW - timedelta(days=10), "ip": "192.0.2.7", "disclosure": "Weekly news",
            "confirmed_at": None}


CONFIG: dict[str, Path] = {}  # the module's relay.toml, for the CLI
SERVICE: dict[str, Any] = {}  # the milter's runtime and loop, to ask the relay's own feedback code


@pytest.fixture(scope="module")
def milter(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path, module_database_url: str, sink: Sink):
    upgrade(module_database_url)
    path = tmp_path_factory.mktemp("milter") / "relay.toml"
    path.write_text(relay_toml(smtp_port=0, http_port=free_port(), db_url=module_database_url,
                               upstream=f"smtp://127.0.0.1:{sink.port}", keys=keys_dir, stages=STAGES)
                    + '\n[milter]\nlisten = "127.0.0.1:0"\n' + SHOP.format(key=keys_dir / "beta.example.pem"))
    config = load_config(path)
    ensure_token_key(config)
    CONFIG["path"] = path
    loop = LoopThread()
    running = loop.run(start_service(config, milter=True, http=False))
    running.runtime.store.consent_import("acme", "news", [consent("fan@example.org"), consent("reader@example.org")],
                                         NOW, "test")
    running.runtime.store.suppress_add("global", "", "", "blocked@example.net", "", "do-not-contact", "cli", NOW)
    SERVICE.update(runtime=running.runtime, loop=loop)
    host, port = running.address("milter").rsplit(":", 1)
    yield host, int(port)
    loop.run(running.stop(grace=5), timeout=60)
    loop.close()


@pytest.fixture(scope="module")
def milter_without_verp(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path, module_database_url: str,
                        sink: Sink, milter):
    """A second `relay milter` on the same database, with `[feedback] verp = false`."""
    path = tmp_path_factory.mktemp("milter-no-verp") / "relay.toml"
    path.write_text(relay_toml(smtp_port=0, http_port=free_port(), db_url=module_database_url,
                               upstream=f"smtp://127.0.0.1:{sink.port}", keys=keys_dir, stages=STAGES)
                    + '\n[milter]\nlisten = "127.0.0.1:0"\n\n[feedback]\nverp = false\n')
    config = load_config(path)
    ensure_token_key(config)
    loop = LoopThread()
    running = loop.run(start_service(config, milter=True, http=False))
    host, port = running.address("milter").rsplit(":", 1)
    yield host, int(port)
    loop.run(running.stop(grace=5), timeout=60)
    loop.close()


_OPEN: list[socket.socket] = []


@pytest.fixture(autouse=True)
def close_connections():
    yield
    while _OPEN:
        _OPEN.pop().close()


def open_socket(milter: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(milter, timeout=10)
    _OPEN.append(sock)
    return sock


# the events the milter asks not to answer (Postfix streams them); an MTA may not offer it
NO_REPLY = {c.SMFIC_CONNECT: c.SMFIP_NR_CONN, c.SMFIC_HELO: c.SMFIP_NR_HELO, c.SMFIC_HEADER: c.SMFIP_NR_HDR,
            c.SMFIC_EOH: c.SMFIP_NR_EOH, c.SMFIC_BODY: c.SMFIP_NR_BODY}
OLD_MTA = c.SMFI_V6_PROT & ~(c.SMFIP_NR_CONN | c.SMFIP_NR_HELO | c.SMFIP_NR_HDR | c.SMFIP_NR_EOH | c.SMFIP_NR_BODY)


def step(conn: MilterConnection, cmd: str, **args: object) -> None:
    """Send an event; wait for its "continue" unless the milter negotiated it away."""
    if conn.protocol_flags & NO_REPLY.get(cmd, 0):
        conn._send(cmd, **args)
    else:
        conn.send(cmd, **args)


def connect(milter: tuple[str, int], client_ip: str = "192.0.2.1", protocol: int = c.SMFI_V6_PROT) -> MilterConnection:
    conn = MilterConnection(open_socket(milter))
    conn.optneg_mta(actions=ACTIONS, protocol=protocol)
    step(conn, c.SMFIC_CONNECT, hostname="client.test", family=c.SMFIA_INET, port=4567, address=client_ip)
    step(conn, c.SMFIC_HELO, helo="client.test")
    return conn


def mail_as_acme(conn: MilterConnection, sender: str = "<news@acme.example>", queue_id: str = "4XQUEUEID1") -> tuple:
    conn.send_macro(c.SMFIC_MAIL, **{"i": queue_id, "{auth_authen}": "acme"})
    return conn.send_ar(c.SMFIC_MAIL, args=[sender])


def reply_text(reply: tuple) -> str:
    assert reply[0] == c.SMFIR_REPLYCODE, reply
    return f"{reply[1]['smtpcode']}{reply[1]['space']}{reply[1]['text']}"


def test_negotiation_asks_for_leading_space_and_the_actions_it_uses(milter):
    conn = MilterConnection(open_socket(milter))
    actions, protocol = conn.optneg_mta(actions=ACTIONS)
    assert protocol & c.SMFIP_HDR_LEADSPC and protocol & c.SMFIP_NOUNKNOWN and protocol & c.SMFIP_NODATA
    assert protocol & c.SMFIP_NR_HDR and protocol & c.SMFIP_NR_BODY  # headers and body are streamed
    wanted = c.SMFIF_ADDHDRS | c.SMFIF_CHGHDRS | c.SMFIF_CHGBODY | c.SMFIF_DELRCPT | c.SMFIF_CHGFROM
    assert actions == wanted


def test_mail_from_no_relay_client_is_left_alone(milter):
    conn = connect(milter, client_ip="192.0.2.99")
    assert conn.send_ar(c.SMFIC_MAIL, args=["<someone@elsewhere.example>"])[0] == c.SMFIR_ACCEPT


def test_client_by_networks_macro_and_sender_alignment(milter):
    conn = connect(milter, client_ip="127.0.0.2")  # client beta's networks
    assert conn.send_ar(c.SMFIC_MAIL, args=["<news@beta.example>"])[0] == c.SMFIR_CONTINUE
    conn = connect(milter)
    assert reply_text(mail_as_acme(conn, "<news@other.example>")) == NOT_OUR_DOMAIN


def test_rcpt_refusals_and_one_marketing_recipient_per_transaction(milter):
    conn = connect(milter)
    assert mail_as_acme(conn)[0] == c.SMFIR_CONTINUE
    assert reply_text(conn.send_ar(c.SMFIC_RCPT, args=["<blocked@example.net>"])) == SUPPRESSED
    assert conn.send_ar(c.SMFIC_RCPT, args=["<fan@example.org>"])[0] == c.SMFIR_CONTINUE
    assert reply_text(conn.send_ar(c.SMFIC_RCPT, args=["<other@example.org>"])) == ONE_RECIPIENT
    conn._send(c.SMFIC_ABORT)  # no reply to an abort
    # after an abort the next transaction starts empty
    assert mail_as_acme(conn)[0] == c.SMFIR_CONTINUE
    assert conn.send_ar(c.SMFIC_RCPT, args=["<fan@example.org>"])[0] == c.SMFIR_CONTINUE


HEADERS = [("From", " News <news@acme.example>"), ("To", " fan@example.org"), ("Subject", " Hello"),
           ("Date", " Mon, 23 Nov 2026 10:00:00 +0000"), ("Message-ID", " <m1@acme.example>"),
           ("List-Unsubscribe", " <mailto:old@acme.example>"),
           ("DKIM-Signature", " v=1; a=rsa-sha256; d=acme.example; s=old; b=AAAA"),
           ("MIME-Version", " 1.0"), ("Content-Type", " text/plain; charset=utf-8")]
BODY = "Hello,\r\nour news.\r\n"


def send_message(conn: MilterConnection, rcpt: str, headers: list = HEADERS, queue_id: str = "4XQUEUEID1") -> list:
    assert mail_as_acme(conn, queue_id=queue_id)[0] == c.SMFIR_CONTINUE
    assert conn.send_ar(c.SMFIC_RCPT, args=[f"<{rcpt}>"])[0] == c.SMFIR_CONTINUE
    if not conn.protocol_flags & c.SMFIP_NODATA:
        conn.send(c.SMFIC_DATA)
    for name, value in headers:
        step(conn, c.SMFIC_HEADER, name=name, value=value)
    step(conn, c.SMFIC_EOH)
    step(conn, c.SMFIC_BODY, buf=BODY)
    return conn.send_eom()


def apply(headers: list[tuple[str, str]], body: str, actions: list) -> bytes:
    """What an MTA does with the edits (Postfix's rules: per-name index from 1, empty value deletes)."""
    fields = list(headers)
    replaced = None
    for cmd, args in actions:
        if cmd == c.SMFIR_ADDHEADER:
            fields.append((args["name"], args["value"]))
        elif cmd == c.SMFIR_INSHEADER:
            fields.insert(args["index"], (args["name"], args["value"]))
        elif cmd == c.SMFIR_CHGHEADER:
            seen = 0
            for i, (name, _) in enumerate(fields):
                if name.lower() == args["name"].lower():
                    seen += 1
                    if seen == args["index"]:
                        if args["value"]:
                            fields[i] = (name, args["value"])
                        else:
                            del fields[i]
                        break
        elif cmd == c.SMFIR_REPLBODY:
            replaced = (replaced or "") + args["buf"]
    text = "".join(f"{n}:{v.replace(chr(10), chr(13) + chr(10))}\r\n" for n, v in fields)
    return (text + "\r\n" + (replaced if replaced is not None else body)).encode()


def test_end_of_message_edits_give_the_relays_copy_signed_last(milter, keys_dir: Path):
    conn = connect(milter)
    actions = send_message(conn, "fan@example.org")
    assert actions[-1][0] == c.SMFIR_CONTINUE
    commands = [cmd for cmd, _ in actions[:-1]]
    assert c.SMFIR_REPLBODY in commands
    final = apply(HEADERS, BODY, [(cmd, args) for cmd, args in actions[:-1]])
    assert b"DKIM-Signature: v=1; a=rsa-sha256; d=acme.example; s=old" not in final  # the client's is gone
    assert final.count(b"List-Unsubscribe:") == 1 and b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in final
    assert b"Acme Inc, 1 Main St" in final  # the footer
    assert final.startswith(b"DKIM-Signature:") and verify_dkim(final, keys_dir)


POSTFIX_QID = "3F2A1B4C5D6"  # a Postfix queue id: 5 hex digits of microseconds, then the queue file's inode


def dsn(recipient: str, status: str = "5.1.1") -> bytes:
    """What a receiving MTA mails to the return path when it gives up on the copy."""
    return (f"From: MAILER-DAEMON@mx.example.org\r\nTo: postmaster@relay.test\r\nSubject: Undelivered Mail\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"x\"\r\n"
            f"\r\n--x\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n--x\r\nContent-Type: message/delivery-status\r\n"
            f"\r\nReporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; {recipient}\r\nAction: failed\r\n"
            f"Status: {status}\r\nDiagnostic-Code: smtp; 550 {status} no such user\r\n--x--\r\n").encode()


def change_sender(actions: list) -> list[str]:
    return [args["from"] for cmd, args in actions if cmd == c.SMFIR_CHGFROM]


def signed_fields(message: bytes) -> list[str]:
    """The h= list of the message's DKIM-Signature, as dkimpy reads it."""
    header = message.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    [line] = [ln for ln in header.split(b"\r\n") if ln.lower().startswith(b"dkim-signature:")]
    tags = dict(tag.strip().split(b"=", 1) for tag in line.split(b":", 1)[1].split(b";") if b"=" in tag)
    return [name.strip().decode().lower() for name in tags[b"h"].replace(b" ", b"").split(b":")]


def test_marketing_copy_gets_the_relays_return_path_and_its_bounce_finds_the_copy(milter):
    """SMFIR_CHGFROM to bounce+TOKEN@HOSTNAME; the token names Postfix's queue id, so a DSN mailed
    to it is attributed by the relay's own intake to client, list and recipient, and suppresses."""
    conn = connect(milter)
    actions = send_message(conn, "reader@example.org", queue_id=POSTFIX_QID)
    assert actions[-1][0] == c.SMFIR_CONTINUE
    [sender] = change_sender(actions)
    assert sender.startswith("<bounce+") and sender.endswith("@relay.test>") and len(sender[1:].split("@")[0]) <= 64
    runtime, loop = SERVICE["runtime"], SERVICE["loop"]
    ref = runtime.feedback.paths.verify(runtime.feedback.paths.token_of(sender), datetime.now(timezone.utc))
    assert ref.queue_id == POSTFIX_QID
    reply = loop.run(runtime.feedback.intake([sender[1:-1]], dsn("reader@example.org")))
    assert reply == "250 2.0.0 Report received: dsn hard 5.1.1: acme/news reader@example.org: recorded, suppressed"
    assert [r.reason for r in runtime.store.suppressions(client="acme") if r.address == "reader@example.org"] == [
        "bounce"]


def test_the_copy_carries_the_relays_feedback_id_under_its_dkim_signature(milter, keys_dir: Path):
    conn = connect(milter)
    actions = send_message(conn, "fan@example.org", queue_id=POSTFIX_QID)
    final = apply(HEADERS, BODY, actions[:-1])
    [line] = [ln for ln in final.split(b"\r\n") if ln.lower().startswith(b"feedback-id:")]
    # CAMPAIGN:LIST:CLIENT:HOSTNAME; the campaign is the body's fingerprint (no X-Campaign-ID)
    campaign, list_key, client, relay_id = line.split(b":", 1)[1].strip().decode().split(":")
    assert (list_key, client, relay_id) == ("news", "acme", "relay.test") and campaign
    assert "feedback-id" in signed_fields(final) and verify_dkim(final, keys_dir)


def test_verp_false_keeps_the_clients_sender_and_adds_no_feedback_id(milter, milter_without_verp, keys_dir: Path):
    """The same message through two milters that differ only in `[feedback] verp`."""
    with_verp = send_message(connect(milter), "fan@example.org")
    without = send_message(connect(milter_without_verp), "fan@example.org")
    assert len(change_sender(with_verp)) == 1 and change_sender(without) == []
    final = apply(HEADERS, BODY, without[:-1])
    assert b"Feedback-ID:" not in final and b"Feedback-ID:" in apply(HEADERS, BODY, with_verp[:-1])
    assert verify_dkim(final, keys_dir)


def test_end_of_message_without_consent_is_refused_with_the_relays_reason(milter):
    conn = connect(milter)
    actions = send_message(conn, "stranger@example.org")
    assert len(actions) == 1 and reply_text(actions[0]) == NO_CONSENT


def test_an_mta_without_leading_space_or_no_reply_options(milter, keys_dir: Path):
    conn = connect(milter, protocol=OLD_MTA & ~c.SMFIP_HDR_LEADSPC & ~c.SMFIP_NODATA)
    headers = [(name, value.lstrip()) for name, value in HEADERS]
    actions = send_message(conn, "fan@example.org", headers)
    final = apply([(n, " " + v) for n, v in headers], BODY,
                  [(cmd, {**args, "value": " " + args["value"]} if args.get("value") else args)
                   for cmd, args in actions[:-1]])
    assert verify_dkim(final, keys_dir)


def test_a_message_out_of_protocol_drops_only_that_connection(milter):
    sock = open_socket(milter)
    conn = MilterConnection(sock)
    conn.optneg_mta(actions=ACTIONS, protocol=OLD_MTA)
    sock.sendall(b"\x00\x00\x00\x02Zx")  # no such milter command
    assert sock.recv(100) == b""  # closed; Postfix would apply milter_default_action
    conn = connect(milter)  # the next connection is served as usual
    assert mail_as_acme(conn)[0] == c.SMFIR_CONTINUE


def test_transactional_client_keeps_several_recipients_and_one_copy_serves_them(milter, keys_dir: Path):
    conn = connect(milter, client_ip="127.0.0.3")
    assert conn.send_ar(c.SMFIC_MAIL, args=["<orders@shop.example>"])[0] == c.SMFIR_CONTINUE
    for rcpt in ("a@example.org", "b@example.org"):
        assert conn.send_ar(c.SMFIC_RCPT, args=[f"<{rcpt}>"])[0] == c.SMFIR_CONTINUE
    headers = [("From", " Shop <orders@shop.example>"), ("To", " a@example.org, b@example.org"),
               ("Subject", " Your order"), ("MIME-Version", " 1.0"), ("Content-Type", " text/plain")]
    for name, value in headers:
        step(conn, c.SMFIC_HEADER, name=name, value=value)
    step(conn, c.SMFIC_EOH)
    step(conn, c.SMFIC_BODY, buf=BODY)
    actions = conn.send_eom()
    assert actions[-1][0] == c.SMFIR_CONTINUE
    assert c.SMFIR_DELRCPT not in [cmd for cmd, _ in actions]
    # one copy, one envelope sender: a token naming one recipient would misattribute the other's
    # bounce, so the client's sender stays (docs/MILTER.md); the Feedback-ID is per message and stays
    assert change_sender(actions) == []
    final = apply(headers, BODY, actions[:-1])
    assert b"Feedback-ID: " in final and "feedback-id" in signed_fields(final)
    assert b"List-Unsubscribe" not in final and b"Shop AB, Storgatan 1" in final
    assert b"Message-ID:" in final and b"Date:" in final  # added when missing, as the relay does
    record = dns_txt_record(load_private_key(keys_dir / "beta.example.pem")).encode()
    assert dkim.verify(final, dnsfunc=lambda name, timeout=5: record if name == b"s3._domainkey.shop.example." else b"")


def test_a_client_state_set_by_the_cli_bites_in_a_running_milter_within_2_s(milter):
    """`relay milter` polls account states as `relay serve` does: a freeze by the CLI defers the
    client's mail at MAIL (451 4.7.1, Postfix keeps it), and lifting it lets the mail through again."""
    def mail_reply() -> tuple:
        return connect(milter, client_ip="127.0.0.2").send_ar(c.SMFIC_MAIL, args=["<news@beta.example>"])

    assert mail_reply()[0] == c.SMFIR_CONTINUE
    result = CliRunner().invoke(relay_cli, ["--config", str(CONFIG["path"]), "client", "state", "beta", "frozen",
                                            "--reason", "complaints from ISP X"])
    assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 2.0
    while (reply := mail_reply())[0] != c.SMFIR_REPLYCODE:
        assert time.monotonic() < deadline, "the freeze did not reach the milter within 2 s"
        time.sleep(0.1)
    assert reply_text(reply).startswith("451 4.7.1 "), reply
    result = CliRunner().invoke(relay_cli, ["--config", str(CONFIG["path"]), "client", "state", "beta", "active",
                                            "--reason", "resolved"])
    assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 2.0
    while mail_reply()[0] != c.SMFIR_CONTINUE:
        assert time.monotonic() < deadline, "lifting the freeze did not reach the milter within 2 s"
        time.sleep(0.1)
