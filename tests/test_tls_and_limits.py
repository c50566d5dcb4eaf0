"""STARTTLS and AUTH-over-TLS rules, connection limits and timeouts, against a real relay."""
from __future__ import annotations

import base64
import smtplib
import ssl
import time

import pytest

from conftest import PASSWORD, Sink
from smtp_client import RawSMTP
from test_relay_smtp import CLOSING, ENCRYPTION_REQUIRED, TIMEOUT, code_of, message

RELAY_EXTRA = """plaintext_auth_from_loopback = false
max_connections_per_ip = 3
command_timeout = 1.0
"""


@pytest.fixture(scope="module")
def relay(relay_factory, sink: Sink, tls_files):
    # loopback is treated like any remote peer here, so the TLS rules apply to the tests
    return relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", tls=tls_files, relay_extra=RELAY_EXTRA)


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_auth_not_offered_before_tls_and_refused_in_clear(relay):
    with RawSMTP(relay.port) as c:
        ehlo = c.cmd("EHLO client.test")
        assert "STARTTLS" in ehlo and "AUTH" not in ehlo
        creds = base64.b64encode(f"\0acme\0{PASSWORD}".encode()).decode()
        assert code_of(c.cmd(f"AUTH PLAIN {creds}")) == ENCRYPTION_REQUIRED


def test_auth_after_starttls_works(relay, clean_sink):
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=5) as s:
        s.ehlo("client.test")
        s.starttls(context=client_tls())
        code, text = s.ehlo("client.test")
        assert b"AUTH" in text
        s.login("acme", PASSWORD)
        s.mail("bounce@acme.example")
        s.rcpt("alice@example.org")
        code, _ = s.data(message())
    assert code == 250
    (got,) = clean_sink.wait_for(1)
    assert b"with ESMTPSA" in got.data  # the trace header records TLS + AUTH


def test_commands_pipelined_before_tls_handshake_are_discarded(relay, clean_sink):
    c = RawSMTP(relay.port)
    c.cmd("EHLO client.test")
    # RFC 3207 §4.2 / CVE-2011-0411: plaintext injected after STARTTLS must never run
    c.send(b"STARTTLS\r\nMAIL FROM:<bounce@acme.example>\r\n")
    assert c.reply().startswith("220")
    tls = client_tls().wrap_socket(c.sock, server_hostname="relay.test")
    tls.sendall(b"NOOP\r\n")
    time.sleep(0.3)
    tls.settimeout(0.5)
    received = b""
    try:
        while True:
            chunk = tls.recv(4096)
            if not chunk:
                break
            received += chunk
    except (TimeoutError, ssl.SSLError):
        pass
    # exactly one reply, to NOOP: had the injected MAIL run, its reply would come first
    assert received.decode().splitlines() == ["250 2.0.0 OK"], received
    tls.close()


def test_starttls_inside_tls_is_refused_and_the_session_goes_on(relay):
    with RawSMTP(relay.port) as c:
        c.cmd("EHLO client.test")
        assert c.cmd("STARTTLS").startswith("220")
        c.sock = client_tls().wrap_socket(c.sock, server_hostname="relay.test")
        ehlo = c.cmd("EHLO client.test")
        assert "STARTTLS" not in ehlo and "AUTH" in ehlo
        # RFC 3207 §4: no second TLS layer; the relay once answered 220 and wrapped TLS in TLS
        assert code_of(c.cmd("STARTTLS")) == (503, "5.5.1")
        assert c.cmd("NOOP").startswith("250")


def test_starttls_without_a_certificate(relay_factory, sink: Sink):
    plain = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}")
    with RawSMTP(plain.port) as c:
        assert "STARTTLS" not in c.cmd("EHLO client.test")
        # not offered and never will be: a permanent 502 with its enhanced code, not a bare 454
        assert code_of(c.cmd("STARTTLS")) == (502, "5.5.1")
        assert c.cmd("NOOP").startswith("250")


def test_connections_per_ip_are_limited(relay):
    held = [RawSMTP(relay.port) for _ in range(3)]
    try:
        assert all(c.greeting.startswith("220") for c in held)
        extra = RawSMTP(relay.port)
        assert code_of(extra.greeting) == CLOSING, extra.greeting
        extra.close()
    finally:
        for c in held:
            c.close()
    time.sleep(0.1)
    again = RawSMTP(relay.port)  # freed slots are usable again
    assert again.greeting.startswith("220")
    again.close()


def test_idle_connection_times_out_with_421(relay):
    with RawSMTP(relay.port) as c:
        c.cmd("EHLO client.test")
        started = time.monotonic()
        reply = c.reply()  # send nothing: command_timeout is 1 s
        assert code_of(reply) == TIMEOUT, reply
        assert time.monotonic() - started < 5


def test_slow_data_is_cut_at_timeout(relay):
    with RawSMTP(relay.port) as c:
        c.cmd("EHLO client.test")
        c.sock.settimeout(10)
        c.send(b"MAIL FROM:<x@acme.example>\r\n")
        c.reply()
        c.send(b"From: a")  # a partial line, never finished (slowloris)
        reply = c.reply()
        assert reply.startswith("421"), reply
