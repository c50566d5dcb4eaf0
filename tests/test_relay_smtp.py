"""The backbone end to end: real relay, real smtplib/raw client, real aiosmtpd upstream, real DKIM verifier."""
from __future__ import annotations

import base64
import email
import email.policy
import re
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest

from conftest import PASSWORD, Sink
from relay.mail.dkim import dns_txt_record, load_private_key
from smtp_client import RawSMTP

# Expected replies (code, enhanced status) — the contract of SPEC §4 and §8.
AUTH_REQUIRED = (530, "5.7.0")
AUTH_INVALID = (535, "5.7.8")
ENCRYPTION_REQUIRED = (538, "5.7.11")
POLICY_REFUSED = (550, "5.7.1")
BAD_RCPT_SYNTAX = (501, "5.1.3")
TOO_MANY_RCPTS = (452, "4.5.3")
TOO_BIG = (552, "5.3.4")
SMUGGLED = (550, "5.5.2")
UPSTREAM_DOWN = (451, "4.4.1")
INTERNAL = (451, "4.3.0")
CLOSING = (421, "4.7.0")
TIMEOUT = (421, "4.4.2")


def message(frm: str = "news@acme.example", to: str = "alice@example.org", subject: str = "Hello",
            body: str = "Hello Alice,\nour news.\n", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = frm
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = f"<{time.monotonic_ns()}@acme.example>"
    for name, value in headers.items():
        del msg[name.replace("_", "-")]
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def code_of(reply: str) -> tuple[int, str]:
    parts = reply.split()
    return int(parts[0]), parts[1]


def login(port: int, user: str = "acme", password: str = PASSWORD) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    s.ehlo("client.test")
    s.login(user, password)
    return s


def send(port: int, data: bytes, rcpts: list[str], frm: str = "bounce@acme.example") -> tuple[int, bytes]:
    with login(port) as s:
        s.mail(frm)
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, (r, code, text)
        return s.data(data)


def dkim_tags(data: bytes) -> dict[bytes, bytes]:
    import email

    value = email.message_from_bytes(data)["DKIM-Signature"]
    return dkim.util.parse_tag_value(" ".join(value.split()).encode())


def verify_dkim(data: bytes, keys_dir: Path, domain: str = "acme.example", selector: str = "s1") -> bool:
    record = dns_txt_record(load_private_key(keys_dir / f"{domain}.pem")).encode()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record if name == f"{selector}._domainkey.{domain}.".encode() else b""

    return dkim.verify(data, dnsfunc=dns)


@pytest.fixture(scope="module")
def relay(relay_factory, sink: Sink):
    return relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}")


def test_ehlo_advertises_extensions(relay, clean_sink):
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=5) as s:
        code, text = s.ehlo("client.test")
    assert code == 250
    for ext in ("SIZE 200000", "8BITMIME", "SMTPUTF8", "PIPELINING", "ENHANCEDSTATUSCODES", "AUTH LOGIN PLAIN"):
        assert ext in text.decode(), ext
    assert "STARTTLS" not in text.decode()  # no certificate configured


def test_authenticated_message_is_signed_and_delivered(relay, clean_sink, keys_dir):
    code, text = send(relay.port, message(), ["alice@example.org"])
    assert code == 250, text
    (got,) = clean_sink.wait_for(1)
    assert got.rcpt_tos == ["alice@example.org"]
    # the relay owns the return path (SPEC §10): bounce+TOKEN@HOSTNAME, 47 octets of local part at most
    local, _, host = got.mail_from.partition("@")
    assert local.startswith("bounce+") and host == "relay.test" and len(local) <= 64
    assert b"Hello Alice" in got.data
    assert b"\r\nFeedback-ID: " in got.data
    assert verify_dkim(got.data, keys_dir)
    # d= aligns with From, From is over-signed, and there is no l= tag
    tags = dkim_tags(got.data)
    assert tags[b"d"] == b"acme.example" and tags[b"a"] == b"rsa-sha256"
    signed = [h.strip().lower() for h in tags[b"h"].split(b":")]
    assert signed.count(b"from") == 2
    assert {b"to", b"subject", b"date", b"message-id", b"feedback-id"} <= set(signed)
    assert b"l" not in tags


def test_each_recipient_gets_its_own_signed_copy(relay, clean_sink, keys_dir):
    rcpts = ["a@example.org", "b@example.net", "c@example.com"]
    code, _ = send(relay.port, message(to="list@acme.example"), rcpts)
    assert code == 250
    got = clean_sink.wait_for(3)
    assert sorted(r for m in got for r in m.rcpt_tos) == sorted(rcpts)
    assert all(len(m.rcpt_tos) == 1 for m in got)
    assert all(verify_dkim(m.data, keys_dir) for m in got)


def test_copies_signed_on_the_event_loop_verify(relay_factory, clean_sink, keys_dir):
    # `relay serve --workers N` on N or more cores signs on the loop (no signing threads)
    loop_signer = relay_factory(upstream=f"smtp://127.0.0.1:{clean_sink.port}", sign_threads=0)
    assert loop_signer.runtime.signing.threads == 0
    rcpts = [f"r{n}@example.org" for n in range(5)]
    code, _ = send(loop_signer.port, message(to="list@acme.example"), rcpts)
    assert code == 250
    got = clean_sink.wait_for(5)
    assert sorted(r for m in got for r in m.rcpt_tos) == rcpts
    assert all(verify_dkim(m.data, keys_dir) for m in got)
    loop_signer.stop()


def test_auth_login_mechanism(relay, clean_sink):
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=5) as s:
        s.ehlo("client.test")
        s.user, s.password = "acme", PASSWORD
        code, _ = s.auth("LOGIN", s.auth_login)
    assert code == 235


@pytest.mark.parametrize("rcpt", [
    "victim@example.org",
    "victim%example.org@relay.test",
    '"victim@example.org"@relay.test',
    "@relay.test:victim@example.org",
    "victim@example.org@relay.test",
])
def test_no_open_relay_without_auth(relay, clean_sink, rcpt):
    with RawSMTP(relay.port) as c:
        c.cmd("EHLO client.test")
        assert c.cmd("MAIL FROM:<x@acme.example>").startswith("250")
        reply = c.cmd(f"RCPT TO:<{rcpt}>")
        assert code_of(reply)[0] in (530, 553, 501), reply
        assert code_of(reply) == AUTH_REQUIRED or reply.startswith(("553", "501"))
        assert c.cmd("DATA").startswith("503")
    assert clean_sink.messages == []


def test_wrong_password_then_too_many_failures(relay, clean_sink):
    with RawSMTP(relay.port) as c:
        c.cmd("EHLO client.test")
        bad = base64.b64encode(b"\0acme\0wrong").decode()
        assert code_of(c.cmd(f"AUTH PLAIN {bad}")) == AUTH_INVALID
        assert code_of(c.cmd(f"AUTH PLAIN {bad}")) == AUTH_INVALID
        reply = c.cmd(f"AUTH PLAIN {bad}")  # auth_max_failures = 3
        assert code_of(reply) == CLOSING, reply
        with pytest.raises(ConnectionError):
            c.cmd("NOOP")
        # the secret never appears in a reply
        assert "wrong" not in reply


def test_unknown_client_name_is_refused(relay):
    with RawSMTP(relay.port) as c:
        c.cmd("EHLO client.test")
        creds = base64.b64encode(f"\0nobody\0{PASSWORD}".encode()).decode()
        assert code_of(c.cmd(f"AUTH PLAIN {creds}")) == AUTH_INVALID


def test_envelope_sender_of_another_domain_is_refused(relay, clean_sink):
    with login(relay.port) as s:
        code, text = s.mail("news@beta.example")
    assert (code, text.split()[0].decode()) == (550, "5.7.1")
    assert b"beta.example" in text


def test_from_header_of_another_domain_is_refused(relay, clean_sink):
    with login(relay.port) as s:
        s.mail("bounce@acme.example")
        s.rcpt("alice@example.org")
        code, text = s.data(message(frm="ceo@bank.example"))
    assert (code, text.split()[0].decode()) == (550, "5.7.1")
    assert b"bank.example" in text
    assert clean_sink.messages == []


def test_subdomain_of_sender_domain_is_aligned(relay, clean_sink, keys_dir):
    code, _ = send(relay.port, message(frm="news@mail.acme.example"), ["alice@example.org"])
    assert code == 250
    (got,) = clean_sink.wait_for(1)
    assert verify_dkim(got.data, keys_dir)


def test_two_from_addresses_are_refused(relay, clean_sink):
    data = message().replace(b"From: news@acme.example", b"From: news@acme.example, x@evil.example")
    with login(relay.port) as s:
        s.mail("bounce@acme.example")
        s.rcpt("alice@example.org")
        code, _ = s.data(data)
    assert code == 550
    assert clean_sink.messages == []


@pytest.mark.parametrize("from_value", [
    # encoded words decode to a quote that would hide the real first address from the check
    b"=?utf-8?q?=22?= <ceo@bank.example> =?utf-8?q?=22?= <news@acme.example>",
    b"=?utf-8?q?x=22?=, ceo@bank.example, =?utf-8?q?=22?= <news@acme.example>",
], ids=["quote-hides-address", "quote-hides-list"])
def test_encoded_words_cannot_hide_a_foreign_from_address(relay, clean_sink, from_value):
    # RFC 2047 §5: an encoded word is never address syntax; a mail reader sees ceo@bank.example
    data = message().replace(b"From: news@acme.example", b"From: " + from_value)
    code, _ = send(relay.port, data, ["alice@example.org"])
    assert code == 550
    assert clean_sink.messages == []


def test_encoded_display_name_is_still_aligned(relay, clean_sink, keys_dir):
    data = message().replace(b"From: news@acme.example", b"From: =?utf-8?q?Acme_N=C3=BCws?= <news@acme.example>")
    code, _ = send(relay.port, data, ["alice@example.org"])
    assert code == 250
    (got,) = clean_sink.wait_for(1)
    assert verify_dkim(got.data, keys_dir)


def test_null_sender_from_a_client_is_refused(relay):
    with login(relay.port) as s:
        code, text = s.mail("")
    assert (code, text.split()[0].decode()) == POLICY_REFUSED
    assert b"Null sender" in text


def test_suspended_client_is_refused(relay):
    with login(relay.port, user="idle") as s:
        code, text = s.mail("news@idle.example")
    assert (code, text.split()[0].decode()) == POLICY_REFUSED
    assert b"suspended" in text


def test_bad_recipient_syntax(relay):
    with login(relay.port) as s:
        s.mail("bounce@acme.example")
        for bad in ("no-at-sign", "a@b", "a b@example.org", "x@[127.0.0.1]"):
            code, text = s.rcpt(bad)
            assert (code, text.split()[0].decode()) == BAD_RCPT_SYNTAX, (bad, text)


def test_too_many_recipients(relay):
    with login(relay.port) as s:
        s.mail("bounce@acme.example")
        for i in range(5):
            assert s.rcpt(f"r{i}@example.org")[0] == 250
        code, text = s.rcpt("r5@example.org")
    assert (code, text.split()[0].decode()) == TOO_MANY_RCPTS


def test_message_too_big(relay, clean_sink):
    big = message(body="x" * 100 + "\n" * 0 + ("y" * 70 + "\n") * 3000)
    with login(relay.port) as s:
        code, text = s.mail("bounce@acme.example", ["SIZE=300000"])
        assert (code, text.split()[0].decode()) == TOO_BIG
        s.rset()
        s.mail("bounce@acme.example")
        s.rcpt("alice@example.org")
        code, text = s.data(big)
    assert (code, text.split()[0].decode()) == TOO_BIG
    assert clean_sink.messages == []


@pytest.mark.parametrize("lookalike", [
    b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r.\n", b"\r\n.\n", b"\r\n\x00.\r\n", b"\r\n.\r", b"x\ry",
])  # a bare LF elsewhere is a CRLF (SPEC §8, Postfix's smtpd_forbid_bare_newline = normalize): test_operations_lf
def test_smuggling_lookalikes_are_refused(relay, clean_sink, lookalike):
    smuggled = (b"MAIL FROM:<bounce@acme.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
                b"From: ceo@acme.example\r\n\r\nsmuggled\r\n")
    creds = base64.b64encode(f"\0acme\0{PASSWORD}".encode()).decode()
    with RawSMTP(relay.port) as c:
        c.cmd("EHLO client.test")
        assert c.cmd(f"AUTH PLAIN {creds}").startswith("235")
        c.cmd("MAIL FROM:<bounce@acme.example>")
        c.cmd("RCPT TO:<alice@example.org>")
        assert c.cmd("DATA").startswith("354")
        c.send(b"From: news@acme.example\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nbody" + lookalike
               + smuggled + b"\r\n.\r\n")
        reply = c.reply()
        assert code_of(reply) == SMUGGLED, reply
        assert c.cmd("NOOP").startswith("250")  # the session stays in step
    time.sleep(0.2)
    assert clean_sink.messages == []


def test_network_client_needs_no_auth(relay, clean_sink, keys_dir):
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=5, source_address=("127.0.0.2", 0)) as s:
        s.ehlo("app.beta.example")
        s.mail("news@beta.example")
        assert s.rcpt("carol@example.org")[0] == 250
        code, _ = s.data(message(frm="news@beta.example", to="carol@example.org"))
    assert code == 250
    (got,) = clean_sink.wait_for(1)
    assert verify_dkim(got.data, keys_dir, domain="beta.example", selector="b1")


def test_network_client_limited_to_own_domain(relay, clean_sink):
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=5, source_address=("127.0.0.2", 0)) as s:
        s.ehlo("app.beta.example")
        code, text = s.mail("news@acme.example")
    assert (code, text.split()[0].decode()) == POLICY_REFUSED


def test_unknown_list_is_refused_and_list_id_selects(relay, clean_sink):
    with login(relay.port) as s:
        s.mail("bounce@acme.example")
        s.rcpt("alice@example.org")
        code, text = s.data(message(List_Id="Acme Deals <deals.acme.example>"))
    assert (code, text.split()[0].decode()) == POLICY_REFUSED
    assert b"deals" in text
    code, _ = send(relay.port, message(List_Id="Acme receipts <receipts.acme.example>"), ["alice@example.org"])
    assert code == 250
    code, _ = send(relay.port, message(List_Id="<news>"), ["alice@example.org"])
    assert code == 250


def test_missing_date_and_message_id_are_added(relay, clean_sink, keys_dir):
    data = b"From: news@acme.example\r\nTo: alice@example.org\r\nSubject: bare\r\n\r\nhi\r\n"
    assert send(relay.port, data, ["alice@example.org"])[0] == 250
    (got,) = clean_sink.wait_for(1)
    assert b"\r\nDate: " in got.data and b"\r\nMessage-ID: <" in got.data
    assert verify_dkim(got.data, keys_dir)


def test_every_decision_is_audited(relay, clean_sink):
    with login(relay.port) as s:
        s.mail("bounce@acme.example")
        s.rcpt("audited@example.org")
        s.data(message(to="audited@example.org", Message_ID="<audit-1@acme.example>"))
    relay.flush()
    rows = [r for r in relay.store.audit_rows(client="acme") if r.recipient == "audited@example.org"]
    verdicts = [r.verdict for r in rows]
    assert "accept" in verdicts and "deliver" in verdicts
    assert all(r.list_key == "news" and r.queue_id for r in rows)


def test_undecodable_header_bytes_are_delivered_and_audited(relay, clean_sink, keys_dir):
    # 8-bit bytes in Message-ID reached the audit log as lone surrogates, which no database driver
    # encodes: the group commit failed and the client got 451 4.3.0. An encoded-word whose charset
    # name is 8-bit made email.header raise CharsetError while sender-identity read From:.
    for n, (from_field, message_id) in enumerate([
            (b"news@acme.example", b"<caf\xe9-1@acme.example>"),
            (b"=?x\xe9?B?QWNtZQ==?= <news@acme.example>", b"<plain-2@acme.example>")]):
        data = (b"From: " + from_field + b"\r\nTo: alice@example.org\r\nSubject: bytes\r\n"
                b"Message-ID: " + message_id + b"\r\n\r\nhello\r\n")
        rcpt = f"bytes{n}@example.org"
        with login(relay.port) as s:
            s.mail("bounce@acme.example", ["BODY=8BITMIME"])
            assert s.rcpt(rcpt)[0] == 250
            code, text = s.data(data)
        assert code == 250, text
        (got,) = clean_sink.wait_for(1)
        assert message_id in got.data and verify_dkim(got.data, keys_dir)
        clean_sink.clear()
        relay.flush()
        rows = [r for r in relay.store.audit_rows(client="acme") if r.recipient == rcpt]
        assert {"accept", "deliver"} <= {r.verdict for r in rows}
        assert all(r.message_id == message_id.decode("utf-8", "replace") for r in rows)


def test_obsolete_space_before_the_colon_is_dropped_from_the_copy(relay, clean_sink, keys_dir):
    # RFC 5322 §4.5 obs-optional allows "Subject : x"; strict readers (Python's email, dkimpy) end
    # the header there, so every field after it (the relay's own too) was body to them and DKIM failed
    data = (b"From: news@acme.example\r\nTo: alice@example.org\r\nSubject : Spaced out\r\n"
            b"Date\t: Mon, 23 Nov 2026 10:00:00 +0000\r\nX-Campaign: autumn\r\n\r\nhello\r\n")
    with login(relay.port) as s:
        s.mail("bounce@acme.example")
        s.rcpt("alice@example.org")
        code, text = s.data(data)
    assert code == 250, text
    (got,) = clean_sink.wait_for(1)
    parsed = email.message_from_bytes(got.data, policy=email.policy.default)
    assert parsed["Subject"] == "Spaced out" and parsed["Date"] == "Mon, 23 Nov 2026 10:00:00 +0000"
    assert parsed["X-Campaign"] == "autumn" and parsed.get_content().startswith("hello")
    assert b"Subject : " not in got.data and verify_dkim(got.data, keys_dir)


def test_metrics_and_healthz(relay):
    import urllib.request

    admin = f"http://127.0.0.1:{relay.running.admin_port}"  # SPEC §12: the admin listener, not the public one
    with urllib.request.urlopen(admin + "/healthz", timeout=5) as r:
        assert r.status == 200
    with urllib.request.urlopen(admin + "/metrics", timeout=5) as r:
        text = r.read().decode()
    assert "relay_messages_total" in text and "relay_data_seconds_bucket" in text
    # the event-loop watch times a 50 ms tick from the start
    deadline = time.monotonic() + 3
    while True:
        with urllib.request.urlopen(admin + "/metrics", timeout=5) as r:
            text = r.read().decode()
        ticks = float(re.search(r"^relay_event_loop_lag_seconds_count (\S+)$", text, re.M).group(1))
        if ticks >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert ticks >= 2
    assert re.search(r"^relay_event_loop_lag_max_seconds \d", text, re.M)


# --- DATA is read in large pieces (relay/smtp/data.py); these hold it to RFC 5321 §4.1.1.4 and §4.5.2 ---

LINE_TOO_LONG = (500, "5.5.2")


def raw_session(port: int) -> RawSMTP:
    c = RawSMTP(port)
    creds = base64.b64encode(f"\0acme\0{PASSWORD}".encode()).decode()
    c.cmd("EHLO client.test")
    assert c.cmd(f"AUTH PLAIN {creds}").startswith("235")
    return c


def start_data(c: RawSMTP) -> None:
    assert c.cmd("MAIL FROM:<bounce@acme.example>").startswith("250")
    assert c.cmd("RCPT TO:<alice@example.org>").startswith("250")
    assert c.cmd("DATA").startswith("354")


HEAD = b"From: news@acme.example\r\nTo: alice@example.org\r\nSubject: dots\r\n\r\n"


def test_data_unstuffs_dots_and_ends_only_at_a_lone_dot(relay, clean_sink):
    # lines ending in "." and a dot-stuffed "." line must not end DATA; the terminator arrives split
    body = b"Thanks.\r\n..\r\n..leading dot\r\nend of sentence.\r\n.x\r\n"
    with raw_session(relay.port) as c:
        start_data(c)
        for piece in (HEAD, body, b".", b"\r", b"\n"):
            c.send(piece)
            time.sleep(0.02)  # separate TCP segments
        reply = c.reply()
        assert reply.startswith("250"), reply
    got = clean_sink.wait_for(1)[0].data
    assert b"\r\nThanks.\r\n.\r\n.leading dot\r\nend of sentence.\r\nx\r\n" in got


def test_data_with_commands_pipelined_after_it(relay, clean_sink):
    with raw_session(relay.port) as c:
        start_data(c)
        c.send(HEAD + b"one\r\n.\r\nMAIL FROM:<bounce@acme.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
        assert c.reply().startswith("250")
        assert c.reply().startswith("250") and c.reply().startswith("250")
        assert c.reply().startswith("354")
        c.send(HEAD.replace(b"alice", b"bob") + b"two\r\n.\r\nQUIT\r\n")
        assert c.reply().startswith("250")
        assert c.reply().startswith("221")
    got = clean_sink.wait_for(2)
    assert sorted(m.rcpt_tos[0] for m in got) == ["alice@example.org", "bob@example.org"]


def test_data_line_too_long_is_refused_and_session_goes_on(relay, clean_sink):
    with raw_session(relay.port) as c:
        start_data(c)
        c.send(HEAD + b"x" * 1200 + b"\r\n.\r\n")
        assert code_of(c.reply()) == LINE_TOO_LONG
        assert c.cmd("RSET").startswith("250")
        start_data(c)
        c.send(HEAD + b"x" * 998 + b"\r\n.\r\n")  # the longest line RFC 5321 allows
        assert c.reply().startswith("250")
        start_data(c)
        c.send(HEAD + b"x" * 999 + b"\r\n.\r\n")  # one more: 1,001 octets with its CRLF
        assert code_of(c.reply()) == LINE_TOO_LONG
        assert c.cmd("RSET").startswith("250")
        start_data(c)
        c.send(HEAD + b"." * 999 + b"\r\n.\r\n")  # 998 dots, dot-stuffed: the line is 998 long
        assert c.reply().startswith("250")
    got = clean_sink.wait_for(2)
    assert len(got) == 2 and max(map(len, got[1].data.split(b"\r\n"))) <= 998


def test_data_larger_than_the_read_buffer_arrives_whole(relay, clean_sink):
    # 150 KB with no ".\r\n" in it (more than the reader's limit), then lines that end in a dot
    lines = b"".join(b"line %06d, no dot at its end\r\n" % i for i in range(5000))
    lines += b"".join(b"line %06d ends with a dot.\r\n" % i for i in range(500))
    with raw_session(relay.port) as c:
        start_data(c)
        c.send(HEAD + lines + b".\r\n")
        reply = c.reply()
        assert reply.startswith("250"), reply
    got = clean_sink.wait_for(1)[0].data
    assert lines in got


def test_smuggling_check_in_chunks_agrees_with_the_whole_message_check():
    import random

    from relay.smtp.session import has_bare_line_ending_or_nul

    rng = random.Random(7)
    alphabet = [b"a", b"\r\n", b"\r", b"\n", b"\x00", b"."]
    for _ in range(5000):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        if rng.random() < 0.5:
            data = data.replace(b"\r", b"").replace(b"\n", b"\r\n").replace(b"\x00", b"")
        whole = has_bare_line_ending_or_nul(data, chunk=1 << 20)
        for chunk in (1, 2, 3, 7):  # every split of a CRLF between chunks
            assert has_bare_line_ending_or_nul(data, chunk=chunk) == whole, (data, chunk)
