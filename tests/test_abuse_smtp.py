"""Issue 24, SMTP side: slots, timeouts, commands without progress, AUTH secrets and throttles, syntax, headers."""
from __future__ import annotations

import base64
import logging
import smtplib
import socket
import struct
import threading
import time
from datetime import datetime, timezone

import pytest

from conftest import PASSWORD
from relay import replies
from smtp_client import RawSMTP

GUARDED = """max_connections = 25
reserved_connections = 5
max_commands_without_progress = 5
pre_auth_timeout = 0.6
command_timeout = 30
max_auth_per_ip = 1
"""


@pytest.fixture(scope="module")
def relay(relay_factory, sink):
    return relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", relay_extra=GUARDED)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def plain(authzid: str, user: str, password: str) -> str:
    return b64(f"{authzid}\0{user}\0{password}")


def logged_in(relay, source: str = "127.0.0.1") -> RawSMTP:
    c = RawSMTP(relay.port, source=source)
    assert c.cmd("EHLO me").startswith("250")
    assert c.cmd("AUTH PLAIN " + plain("", "acme", PASSWORD)).startswith("235")
    return c


def message(subject_lines: str = "Subject: hello\r\n", sender: str = "From: news@acme.example\r\n") -> bytes:
    return (sender + "To: fan@example.org\r\n" + subject_lines + "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n"
            "Message-ID: <m1@acme.example>\r\n\r\nHello\r\n").encode()


def send(c: RawSMTP, data: bytes, rcpt: str = "fan@example.org") -> str:
    assert c.cmd("MAIL FROM:<news@acme.example>").startswith("250")
    assert c.cmd(f"RCPT TO:<{rcpt}>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    c.send(data + b".\r\n")
    return c.reply()


def test_banner_says_esmtp_and_the_ehlo_reply_is_one_segment(relay):
    c = RawSMTP(relay.port)
    assert c.greeting.startswith("220 relay.test ESMTP")

    def data_segments_in() -> int:  # struct tcp_info: tcpi_data_segs_in is the u32 at offset 152 (Linux 4.6+)
        info = c.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        return struct.unpack_from("I", info, 152)[0]

    before = data_segments_in()
    reply = c.cmd("EHLO me")
    assert reply.count("\n") >= 5 and reply.splitlines()[-1].startswith("250 ")
    assert data_segments_in() - before == 1
    c.close()


def test_nothing_of_an_auth_exchange_is_echoed_or_logged(relay, caplog):
    caplog.set_level(logging.DEBUG, logger="relay")
    secret_user, secret = "acme", "hunter2-never-logged"
    c = RawSMTP(relay.port)
    c.cmd("EHLO me")
    assert c.cmd("AUTH CRAM-MD5").startswith("504")
    # a naive client goes on with the LOGIN exchange it had in mind
    for line in (b64(secret_user), b64(secret)):
        reply = c.cmd(line)
        assert reply == replies.UNKNOWN_COMMAND and line not in reply
    assert c.cmd("AUTH LOGIN " + b64("nobody")).startswith("334")
    assert c.cmd(b64(secret)).startswith("535")
    c.close()
    c = RawSMTP(relay.port)
    c.cmd("EHLO me")
    assert c.cmd("AUTH PLAIN " + plain("", "nobody", secret)).startswith("535")
    c.close()
    for text in (b64(secret), secret, b64(secret_user)):
        assert text not in caplog.text
    failures = [r.getMessage() for r in caplog.records if "AUTH failed" in r.getMessage()]
    assert failures == ["AUTH failed from 127.0.0.1: user='nobody' mechanism=LOGIN (invalid credentials)",
                        "AUTH failed from 127.0.0.1: user='nobody' mechanism=PLAIN (invalid credentials)"]
    assert all(r.levelno == logging.WARNING for r in caplog.records if "AUTH failed" in r.getMessage())


def test_auth_plain_authorization_identity_must_be_the_user(relay):
    c = RawSMTP(relay.port)
    c.cmd("EHLO me")
    assert c.cmd("AUTH PLAIN " + plain("beta", "acme", PASSWORD)) == replies.AUTHZID_REFUSED
    assert c.cmd("AUTH PLAIN " + plain("acme", "acme", PASSWORD)).startswith("235")
    c.close()


def test_commands_without_progress_end_in_421(relay):
    c = RawSMTP(relay.port)
    c.cmd("EHLO me")
    replies_seen = [c.cmd(cmd) for cmd in ("NOOP", "RSET", "XJUNK", "NOOP")]
    assert all(r.startswith(("250", "500")) for r in replies_seen)
    assert c.cmd("NOOP") == replies.NO_PROGRESS
    with pytest.raises(ConnectionError):
        c.cmd("NOOP")
    c.close()
    # an authenticated client that sends mail makes progress: its counter starts again
    c = logged_in(relay)
    for _ in range(3):
        for cmd in ("NOOP", "RSET", "NOOP"):
            assert c.cmd(cmd).startswith("250")
        assert send(c, message()).startswith("250")
    c.close()


def test_strangers_time_out_sooner_than_clients(relay):
    stranger = RawSMTP(relay.port)
    stranger.cmd("EHLO me")
    client = logged_in(relay)
    time.sleep(1.0)  # over pre_auth_timeout (0.6 s), far under command_timeout (30 s)
    assert stranger.reply() == replies.TIMEOUT
    assert client.cmd("NOOP").startswith("250")
    stranger.close()
    client.close()


def hold(relay, count: int, source: str) -> list[RawSMTP]:
    held = []
    for _ in range(count):
        try:
            c = RawSMTP(relay.port, source=source)
        except ConnectionError:
            break
        if not c.greeting.startswith("220"):
            c.close()
            continue
        held.append(c)
    return held


def test_slots_are_kept_for_clients_that_log_in_and_for_intake_mail(relay, clean_sink):
    held = hold(relay, 25, "127.0.0.3")  # 20 pre-AUTH slots, then 2 on probation; the rest refused
    try:
        assert len(held) == 22
        assert relay.running.limits.pre_auth == 20
        # a client still gets in, logs in and sends
        c = logged_in(relay, "127.0.0.4")
        assert send(c, message()).startswith("250")
        c.close()
        # an address that logged in lately may open more than a stranger's two at once (a client's pool)
        pool = [RawSMTP(relay.port, source="127.0.0.4") for _ in range(3)]
        assert all(p.greeting.startswith("220") for p in pool), [p.greeting for p in pool]
        for p in pool:
            assert p.cmd("EHLO me").startswith("250")
            assert p.cmd("AUTH PLAIN " + plain("", "acme", PASSWORD)).startswith("235")
            p.close()
        # and mail to the relay's own intake address goes through without AUTH
        token = relay.runtime.tokens.issue("unsubscribe", "acme", "news", "intake@example.org",
                                           datetime.now(timezone.utc))
        u = RawSMTP(relay.port, source="127.0.0.5")
        assert u.cmd("EHLO me").startswith("250")
        assert u.cmd("MAIL FROM:<intake@example.org>").startswith("250")
        assert u.cmd(f"RCPT TO:<unsubscribe+{token}@relay.test>").startswith("250")
        assert u.cmd("DATA").startswith("354")
        u.send(b"Subject: unsubscribe\r\n\r\nplease\r\n.\r\n")
        assert u.reply().startswith("250")
        u.close()
        # a connection on probation that only keeps the slot is sent away at once
        probation = held[-1]
        answers = [probation.cmd("NOOP") for _ in range(4)]
        assert answers[-1] == replies.NO_PROGRESS
    finally:
        for c in held:
            c.close()


def test_concurrent_auth_attempts_per_address_are_capped(relay_factory, sink, caplog):
    caplog.set_level(logging.WARNING, logger="relay")
    relay = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", relay_extra="max_auth_per_ip = 1\n")
    conns = [RawSMTP(relay.port, source="127.0.0.6") for _ in range(4)]
    for c in conns:
        c.cmd("EHLO me")
    for c in conns:  # all at once: each verification takes a scrypt in a thread
        c.send(f"AUTH PLAIN {plain('', 'acme', 'wrong password')}\r\n".encode())
    answers = [c.reply() for c in conns]
    # they waited their turn: every one was verified and refused, never two at once from this address
    assert answers == [replies.AUTH_INVALID] * 4, answers
    assert relay.running.limits.auth_gate.peak == 1
    assert "wrong password" not in caplog.text
    for c in conns:
        c.close()


@pytest.mark.parametrize("path, reply", [
    ("<smug@exam\x0bple.org>", "501 5.1.3"),
    ("<smug@example.org\x00>", "501 5.1.3"),
    ("<a@b@example.org>", "501 5.1.3"),
    ("<@hop.example:user@example.org>", "501 5.1.3"),
])
def test_recipient_paths_the_parser_would_repair_are_refused(relay, clean_sink, path, reply):
    c = logged_in(relay)
    assert c.cmd("MAIL FROM:<news@acme.example>").startswith("250")
    answer = c.cmd(f"RCPT TO:{path}")
    assert answer.startswith(reply), answer
    answer = c.cmd(f"RCPT TO:{path}")  # and again, to be sure nothing was added
    assert c.cmd("DATA").startswith("503")
    c.close()


def test_sender_path_with_control_characters_is_refused(relay):
    c = logged_in(relay)
    assert c.cmd("MAIL FROM:<news@acme\x0b.example>").startswith("501 5.1.7")
    c.close()


@pytest.mark.parametrize("field", ["Subject", "To", "Cc", "Date", "Message-ID", "From", "Sender", "Reply-To"])
def test_a_one_per_message_field_twice_is_refused(relay, clean_sink, field):
    c = logged_in(relay)
    answer = send(c, _with_twice(field))
    c.close()
    assert answer == replies.REPEATED_FIELD.format(field=field), answer
    assert clean_sink.messages == []


def _with_twice(field: str) -> bytes:
    fields = {"From": "news@acme.example", "To": "fan@example.org", "Subject": "hello",
              "Date": "Mon, 7 Dec 2026 10:00:00 +0000", "Message-ID": "<m1@acme.example>"}
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    second = {"Subject": "Re: your order", "Message-ID": "<m2@acme.example>", "From": "news@acme.example",
              "Date": "Tue, 8 Dec 2026 10:00:00 +0000"}.get(field, "news@acme.example")
    head += f"{field}: {second}\r\n"
    if field in ("Sender", "Reply-To", "Cc"):
        head += f"{field}: news@acme.example\r\n"
    return (head + "\r\nHello\r\n").encode()


@pytest.mark.parametrize("from_field, rule", [
    ("From: =?utf-8?q?ceo=40bank=2Eexample?= <news@acme.example>", "bank.example"),
    ('From: "ceo@bank.example" <news@acme.example>', "bank.example"),
    ("From: <@bank.example:news@acme.example>", "route"),
    ("From: news@acme.example\r\nSender: ceo@bank.example", "Sender"),
])
def test_what_a_reader_sees_in_from_and_sender_is_checked(relay, clean_sink, from_field, rule):
    c = logged_in(relay)
    answer = send(c, message(sender=from_field + "\r\n"))
    c.close()
    assert answer.startswith("550 5.7.1") and rule in answer, answer
    assert clean_sink.messages == []


def test_own_sender_and_display_name_pass(relay, clean_sink):
    c = logged_in(relay)
    answer = send(c, message(sender="From: =?utf-8?q?news=40acme=2Eexample?= <news@acme.example>\r\n"
                                    "Sender: bulk@mail.acme.example\r\n"))
    c.close()
    assert answer.startswith("250"), answer


def test_a_failed_tls_handshake_is_one_info_line(relay_factory, sink, tls_files, caplog):
    caplog.set_level(logging.INFO)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    tls_relay = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", tls=tls_files)
    c = RawSMTP(tls_relay.port)
    c.cmd("EHLO me")
    assert c.cmd("STARTTLS").startswith("220")
    c.send(b"\x16\x03\x01\x00\x05hello-this-is-not-tls" * 4)
    time.sleep(0.5)
    c.close()
    good = smtplib.SMTP("127.0.0.1", tls_relay.port, timeout=5)
    good.ehlo()
    good.quit()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, caplog.text


def test_smtp_keeps_accepting_while_http_is_flooded(relay):
    """The HTTP side is bounded apart: holding every HTTP slot (and more) leaves SMTP answering at once."""
    http_port = relay.running.http_port
    socks: list[socket.socket] = []
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set() and len(socks) < 1500:
            try:
                s = socket.create_connection(("127.0.0.1", http_port), timeout=2, source_address=("127.0.0.9", 0))
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # half-sent
                socks.append(s)
            except OSError:
                time.sleep(0.01)

    thread = threading.Thread(target=flood)
    thread.start()
    try:
        time.sleep(0.3)
        started = time.monotonic()
        c = logged_in(relay, "127.0.0.7")
        assert send(c, message()).startswith("250")
        c.close()
        assert time.monotonic() - started < 1.0
    finally:
        stop.set()
        thread.join()
        for s in socks:
            s.close()
