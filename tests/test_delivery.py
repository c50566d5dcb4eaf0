"""Upstream delivery against real servers: an aiosmtpd sink, Postfix's smtp-sink, a Maildir."""
from __future__ import annotations

import asyncio
import datetime
import logging
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as AiosmtpdSMTP
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relay.delivery.upstream import (
    DeliveryResult, MaildirUpstream, SmtpUpstream, Upstream, make_upstream,
)

SMTP_SINK = "/usr/sbin/smtp-sink"
TIMEOUT = 1.0  # per-operation upstream timeout used throughout: keeps the module fast

MESSAGE = (
    b"From: Sender <sender@acme.example>\r\n"
    b"To: rcpt@dest.example\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9e\r\n"
    b".a line that starts with a dot (dot-stuffed on the wire)\r\n"
    b"..two dots\r\n"
    b"\r\n"
    b"last line\r\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- aiosmtpd sink -------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]
    peer: Any
    tls: bool


class Collector:
    """aiosmtpd handler: keeps every envelope; refuses recipients starting with 'reject'."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.connections = 0
        self.servers: list[AiosmtpdSMTP] = []
        self.lock = threading.Lock()
        self.mail_421_once = False  # answer the next MAIL with 421, as a server going idle does
        self.data_delay = 0.0

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any,
                          address: str, mail_options: list[str]) -> str:
        if self.mail_421_once:
            self.mail_421_once = False
            return "421 4.4.2 sink closing idle connection"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any,
                          address: str, rcpt_options: list[str]) -> str:
        if address.startswith("reject"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        with self.lock:
            self.messages.append(Received(
                envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content,
                list(envelope.mail_options), session.peer, session.ssl is not None))
            self.servers.append(server)
        return "250 2.0.0 Ok: queued"


class CountingController(Controller):
    """Counts TCP connections the sink accepted, which is what the pool must bound."""

    def factory(self) -> AiosmtpdSMTP:
        handler: Collector = self.handler
        kwargs = self.SMTP_kwargs

        class Counting(AiosmtpdSMTP):
            def connection_made(self, transport: Any) -> None:
                with handler.lock:
                    handler.connections += 1
                super().connection_made(transport)

        return Counting(handler, **kwargs)


@pytest.fixture
def start_sink() -> Iterator[Callable[..., tuple[str, Collector]]]:
    """Start aiosmtpd sinks on free ports; returns (url, collector)."""
    controllers: list[Controller] = []

    def start(scheme: str = "smtp", **kwargs: Any) -> tuple[str, Collector]:
        handler = Collector()
        port = free_port()
        controller = CountingController(handler, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        controllers.append(controller)
        with handler.lock:  # the controller's own start-up probe is not ours
            handler.connections = 0
        return f"{scheme}://127.0.0.1:{port}", handler

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A self-signed certificate, as many real MX hosts have: must not stop delivery."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sink.invalid")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    return ctx


async def _deliver_and_close(upstream: Upstream, *args: Any) -> DeliveryResult:
    try:
        return await upstream.deliver(*args)
    finally:
        await upstream.close()


def deliver_once(url: str, mail_from: str = "sender@acme.example",
                 recipient: str = "rcpt@dest.example", data: bytes = MESSAGE,
                 timeout: float = TIMEOUT) -> DeliveryResult:
    upstream = SmtpUpstream(url, pool_size=2, timeout=timeout, helo_name="relay.test")
    return asyncio.run(_deliver_and_close(upstream, mail_from, recipient, data))


def test_message_arrives_byte_exact_as_8bitmime(start_sink: Callable[..., tuple[str, Collector]]) -> None:
    url, sink = start_sink()
    result = deliver_once(url)
    assert result == DeliveryResult("delivered", 250, "2.0.0 Ok: queued")
    [msg] = sink.messages
    assert msg.content == MESSAGE
    assert msg.mail_from == "sender@acme.example"
    assert msg.rcpt_tos == ["rcpt@dest.example"]
    assert "BODY=8BITMIME" in msg.mail_options
    assert f"SIZE={len(MESSAGE)}" in msg.mail_options
    assert not msg.tls


def test_ascii_message_does_not_claim_8bitmime(start_sink: Callable[..., tuple[str, Collector]]) -> None:
    url, sink = start_sink()
    data = b"Subject: plain\r\n\r\nascii only\r\n"
    assert deliver_once(url, data=data).status == "delivered"
    assert sink.messages[0].content == data
    assert "BODY=8BITMIME" not in sink.messages[0].mail_options


def test_null_sender_for_bounces(start_sink: Callable[..., tuple[str, Collector]]) -> None:
    url, sink = start_sink()
    assert deliver_once(url, mail_from="").status == "delivered"
    assert sink.messages[0].mail_from == "<>"  # aiosmtpd's spelling of the null sender


def test_smtputf8_address_when_offered(start_sink: Callable[..., tuple[str, Collector]]) -> None:
    url, sink = start_sink()
    assert deliver_once(url, recipient="jörg@bücher.example").status == "delivered"
    assert sink.messages[0].rcpt_tos == ["jörg@bücher.example"]
    assert "SMTPUTF8" in sink.messages[0].mail_options


def test_smtputf8_address_refused_when_not_offered(start_sink: Callable[..., tuple[str, Collector]]) -> None:
    url, sink = start_sink(enable_SMTPUTF8=False)
    result = deliver_once(url, recipient="jörg@bücher.example")
    assert result.status == "permanent" and "SMTPUTF8" in result.reply
    assert sink.messages == []


def test_refused_recipient_is_permanent_and_connection_is_reused(
        start_sink: Callable[..., tuple[str, Collector]]) -> None:
    url, sink = start_sink()

    async def run() -> tuple[DeliveryResult, DeliveryResult]:
        upstream = SmtpUpstream(url, pool_size=1, timeout=TIMEOUT, helo_name="relay.test")
        try:
            first = await upstream.deliver("s@acme.example", "reject@dest.example", MESSAGE)
            second = await upstream.deliver("s@acme.example", "ok@dest.example", MESSAGE)
        finally:
            await upstream.close()
        return first, second

    first, second = asyncio.run(run())
    assert first == DeliveryResult("permanent", 550, "5.1.1 no such user here")
    assert second.status == "delivered"
    assert [m.rcpt_tos for m in sink.messages] == [["ok@dest.example"]]
    assert sink.connections == 1  # RSET, not a new connection, after the refusal


def test_pool_reuses_and_bounds_connections(start_sink: Callable[..., tuple[str, Collector]]) -> None:
    url, sink = start_sink()

    async def run() -> list[DeliveryResult]:
        upstream = SmtpUpstream(url, pool_size=4, timeout=TIMEOUT, helo_name="relay.test")
        try:
            results = [await upstream.deliver("s@acme.example", f"seq{i}@dest.example",
                                              MESSAGE + b"seq %d\r\n" % i) for i in range(50)]
            results += await asyncio.gather(*(
                upstream.deliver("s@acme.example", f"par{i}@dest.example", MESSAGE + b"par %d\r\n" % i)
                for i in range(50)))
        finally:
            await upstream.close()
        return results

    results = asyncio.run(run())
    assert [r.status for r in results] == ["delivered"] * 100
    assert len(sink.messages) == 100
    # every copy arrived intact and went to its own recipient
    got = {m.rcpt_tos[0]: m.content for m in sink.messages}
    assert got["par17@dest.example"] == MESSAGE + b"par 17\r\n"
    assert got["seq49@dest.example"] == MESSAGE + b"seq 49\r\n"
    assert 2 <= sink.connections <= 4
    assert len({m.peer for m in sink.messages}) == sink.connections


def test_idle_connection_closed_by_server_is_replaced(start_sink: Callable[..., tuple[str, Collector]]) -> None:
    url, sink = start_sink(timeout=0.3)  # aiosmtpd drops sessions idle for 0.3 s

    async def run() -> list[DeliveryResult]:
        upstream = SmtpUpstream(url, pool_size=2, timeout=TIMEOUT, helo_name="relay.test")
        try:
            first = await upstream.deliver("s@acme.example", "a@dest.example", MESSAGE)
            await asyncio.sleep(0.8)
            second = await upstream.deliver("s@acme.example", "b@dest.example", MESSAGE)
        finally:
            await upstream.close()
        return [first, second]

    assert [r.status for r in asyncio.run(run())] == ["delivered", "delivered"]
    assert sink.connections == 2


def test_dead_pooled_connection_is_retried_once_on_a_fresh_one(
        start_sink: Callable[..., tuple[str, Collector]], caplog: pytest.LogCaptureFixture) -> None:
    """The server hangs up while our loop is busy, so the pool still believes in the socket."""
    url, sink = start_sink()
    caplog.set_level(logging.INFO, logger="relay.delivery")

    async def run() -> list[DeliveryResult]:
        upstream = SmtpUpstream(url, pool_size=1, timeout=TIMEOUT, helo_name="relay.test")
        try:
            first = await upstream.deliver("s@acme.example", "a@dest.example", MESSAGE)
            server = sink.servers[0]
            server.loop.call_soon_threadsafe(server.transport.close)
            time.sleep(0.3)  # blocks our loop: the FIN is not processed before MAIL FROM
            second = await upstream.deliver("s@acme.example", "b@dest.example", MESSAGE)
        finally:
            await upstream.close()
        return [first, second]

    assert [r.status for r in asyncio.run(run())] == ["delivered", "delivered"]
    assert sink.connections == 2
    assert [m.rcpt_tos for m in sink.messages] == [["a@dest.example"], ["b@dest.example"]]
    assert "retrying on a fresh one" in caplog.text


def test_421_to_mail_on_pooled_connection_is_retried(
        start_sink: Callable[..., tuple[str, Collector]], caplog: pytest.LogCaptureFixture) -> None:
    url, sink = start_sink()
    caplog.set_level(logging.INFO, logger="relay.delivery")

    async def run() -> list[DeliveryResult]:
        upstream = SmtpUpstream(url, pool_size=1, timeout=TIMEOUT, helo_name="relay.test")
        try:
            first = await upstream.deliver("s@acme.example", "a@dest.example", MESSAGE)
            sink.mail_421_once = True
            second = await upstream.deliver("s@acme.example", "b@dest.example", MESSAGE)
        finally:
            await upstream.close()
        return [first, second]

    assert [r.status for r in asyncio.run(run())] == ["delivered", "delivered"]
    assert sink.connections == 2 and len(sink.messages) == 2
    assert "sink closing idle connection" in caplog.text and "retrying" in caplog.text


def test_close_waits_for_transactions_in_flight(start_sink: Callable[..., tuple[str, Collector]]) -> None:
    url, sink = start_sink()
    sink.data_delay = 0.3

    async def run() -> tuple[list[DeliveryResult], DeliveryResult]:
        upstream = SmtpUpstream(url, pool_size=3, timeout=TIMEOUT, helo_name="relay.test")
        tasks = [asyncio.create_task(upstream.deliver("s@acme.example", f"r{i}@dest.example", MESSAGE))
                 for i in range(3)]
        await asyncio.sleep(0.1)  # all three are waiting for the reply to the final dot
        await upstream.close()
        late = await upstream.deliver("s@acme.example", "late@dest.example", MESSAGE)
        return [t.result() for t in tasks], late

    in_flight, late = asyncio.run(run())
    assert [r.status for r in in_flight] == ["delivered"] * 3
    assert late.status == "temporary" and "shutting down" in late.reply
    assert len(sink.messages) == 3


def test_starttls_used_when_offered_even_with_self_signed_cert(
        start_sink: Callable[..., tuple[str, Collector]], server_tls: ssl.SSLContext) -> None:
    url, sink = start_sink(tls_context=server_tls)
    assert deliver_once(url).status == "delivered"
    [msg] = sink.messages
    assert msg.tls and msg.content == MESSAGE


def test_smtps_implicit_tls(start_sink: Callable[..., tuple[str, Collector]],
                            server_tls: ssl.SSLContext) -> None:
    url, sink = start_sink("smtps", ssl_context=server_tls)
    assert deliver_once(url).status == "delivered"
    assert sink.messages[0].content == MESSAGE


def test_connection_refused_is_temporary() -> None:
    result = deliver_once(f"smtp://127.0.0.1:{free_port()}")
    assert result.status == "temporary"
    assert "connection refused" in result.reply
    assert "Traceback" not in result.reply and "Errno" not in result.reply


def test_deliver_after_close_is_temporary(start_sink: Callable[..., tuple[str, Collector]]) -> None:
    url, _ = start_sink()

    async def run() -> DeliveryResult:
        upstream = SmtpUpstream(url, pool_size=1, timeout=TIMEOUT, helo_name="relay.test")
        await upstream.close()
        return await upstream.deliver("s@acme.example", "a@dest.example", MESSAGE)

    assert asyncio.run(run()).status == "temporary"


# -- Postfix smtp-sink for faults ------------------------------------------------------


@pytest.fixture
def smtp_sink() -> Iterator[Callable[..., str]]:
    """Start /usr/sbin/smtp-sink with fault options; returns its smtp:// url."""
    if not os.path.exists(SMTP_SINK):
        pytest.skip("Postfix smtp-sink not installed")
    procs: list[subprocess.Popen[bytes]] = []

    def start(*options: str) -> str:
        port = free_port()
        # smtp-sink refuses to run as root without -u
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        proc = subprocess.Popen([SMTP_SINK, *user, *options, f"127.0.0.1:{port}", "10"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        deadline = time.monotonic() + 5
        while True:
            try:
                # accepting connections is enough: some tests delay the banner on purpose
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    _, err = proc.communicate()
                    raise RuntimeError(f"smtp-sink did not start: {err!r}") from None
                time.sleep(0.05)
        return f"smtp://127.0.0.1:{port}"

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_smtp_sink_accepts(smtp_sink: Callable[..., str]) -> None:
    assert deliver_once(smtp_sink()) == DeliveryResult("delivered", 250, "2.0.0 Ok")


@pytest.mark.parametrize("command", ["RCPT", "DATA", "."])
def test_4xx_is_temporary_with_upstream_code(smtp_sink: Callable[..., str], command: str) -> None:
    result = deliver_once(smtp_sink("-r", command))
    assert result == DeliveryResult("temporary", 450, "4.3.0 Error: command failed")


def test_custom_4xx_reply_is_passed_through(smtp_sink: Callable[..., str]) -> None:
    result = deliver_once(smtp_sink("-r", "RCPT", "-b", "451 4.7.1 Greylisted, come back later"))
    assert result == DeliveryResult("temporary", 451, "4.7.1 Greylisted, come back later")


@pytest.mark.parametrize("command", ["MAIL", "RCPT", "DATA", "."])
def test_5xx_is_permanent_with_upstream_code(smtp_sink: Callable[..., str], command: str) -> None:
    result = deliver_once(smtp_sink("-f", command))
    assert result == DeliveryResult("permanent", 500, "5.3.0 Error: command failed")


def test_custom_5xx_after_final_dot(smtp_sink: Callable[..., str]) -> None:
    result = deliver_once(smtp_sink("-f", ".", "-B", "554 5.7.1 Message content rejected"))
    assert result == DeliveryResult("permanent", 554, "5.7.1 Message content rejected")


def test_disconnect_after_final_dot_is_temporary(smtp_sink: Callable[..., str]) -> None:
    result = deliver_once(smtp_sink("-q", "."))
    assert result.status == "temporary"
    assert "may or may not" in result.reply


def test_disconnect_on_rcpt_is_temporary(smtp_sink: Callable[..., str]) -> None:
    result = deliver_once(smtp_sink("-q", "RCPT"))
    assert result.status == "temporary" and "RCPT" in result.reply


def test_421_on_fresh_connection_is_temporary(smtp_sink: Callable[..., str]) -> None:
    result = deliver_once(smtp_sink("-Q", "MAIL"))
    assert result.status == "temporary" and result.code == 421


def test_slow_reply_after_dot_times_out(smtp_sink: Callable[..., str]) -> None:
    url = smtp_sink("-W", ".:5")
    started = time.monotonic()
    result = deliver_once(url, timeout=0.5)
    assert time.monotonic() - started < 3
    assert result.status == "temporary"
    assert "timeout after 0.5s" in result.reply and "DATA" in result.reply


def test_slow_banner_times_out(smtp_sink: Callable[..., str]) -> None:
    result = deliver_once(smtp_sink("-W", "CONNECT:5"), timeout=0.5)
    assert result.status == "temporary" and "timeout" in result.reply


def test_no_8bitmime_still_sends_bytes(smtp_sink: Callable[..., str]) -> None:
    # smtp-sink -8 does not announce 8BITMIME: we must not claim BODY=8BITMIME, yet deliver
    # the bytes unchanged (re-encoding would break DKIM). -D dumps what it received.
    dump_dir = Path(tempfile.mkdtemp(prefix="smtp-sink-"))
    try:
        dump_dir.chmod(0o777)  # smtp-sink may run as nobody
        assert deliver_once(smtp_sink("-8", "-D", str(dump_dir / "dump"))).status == "delivered"
        dump = (dump_dir / "dump").read_bytes()
    finally:
        shutil.rmtree(dump_dir)
    assert b"X-Mail-Args: <sender@acme.example> SIZE=" not in dump  # no SIZE offered either
    assert b"X-Mail-Args: <sender@acme.example>\n" in dump
    assert b"BODY=8BITMIME" not in dump
    assert b"Caf\xc3\xa9 cr\xc3\xa8me" in dump


# -- Maildir ---------------------------------------------------------------------------


def test_maildir_delivery(tmp_path: Path) -> None:
    box = tmp_path / "outbox"
    upstream = MaildirUpstream(box)
    assert {p.name for p in box.iterdir()} == {"tmp", "new", "cur"}
    result = asyncio.run(upstream.deliver("sender@acme.example", "rcpt@dest.example", MESSAGE))
    assert result.status == "delivered" and result.code == 250
    [stored] = list((box / "new").iterdir())
    assert stored.read_bytes() == (b"Return-Path: <sender@acme.example>\r\n"
                                   b"Delivered-To: rcpt@dest.example\r\n" + MESSAGE)
    assert stored.name in result.reply
    assert list((box / "tmp").iterdir()) == []
    assert ":" not in stored.name and "/" not in stored.name


def test_maildir_null_sender_and_concurrent_unique_names(tmp_path: Path) -> None:
    upstream = make_upstream(f"maildir:{tmp_path}", 1, 1.0, "relay.test")

    async def run() -> list[DeliveryResult]:
        try:
            return await asyncio.gather(*(
                upstream.deliver("", f"r{i}@dest.example", b"n: %d\r\n\r\nbody\r\n" % i)
                for i in range(30)))
        finally:
            await upstream.close()

    assert {r.status for r in asyncio.run(run())} == {"delivered"}
    files = list((tmp_path / "new").iterdir())
    assert len(files) == 30
    assert all(f.read_bytes().startswith(b"Return-Path: <>\r\n") for f in files)


def test_maildir_unwritable_is_temporary(tmp_path: Path) -> None:
    upstream = MaildirUpstream(tmp_path)
    # Works even as root (where chmod does not stop writes): tmp/ is no longer a directory.
    shutil.rmtree(tmp_path / "tmp")
    (tmp_path / "tmp").write_bytes(b"")
    result = asyncio.run(upstream.deliver("s@acme.example", "r@dest.example", MESSAGE))
    assert result.status == "temporary"
    assert "Not a directory" in result.reply
    assert list((tmp_path / "new").iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_maildir_permission_denied_is_temporary(tmp_path: Path) -> None:
    upstream = MaildirUpstream(tmp_path)
    (tmp_path / "tmp").chmod(0o500)
    try:
        result = asyncio.run(upstream.deliver("s@acme.example", "r@dest.example", MESSAGE))
    finally:
        (tmp_path / "tmp").chmod(0o700)
    assert result.status == "temporary" and "Permission denied" in result.reply


def test_maildir_refuses_header_injection_in_addresses(tmp_path: Path) -> None:
    upstream = MaildirUpstream(tmp_path)
    result = asyncio.run(upstream.deliver("s@acme.example", "r@dest.example\r\nBcc: x@y", MESSAGE))
    assert result.status == "permanent"
    assert list((tmp_path / "new").iterdir()) == []


def test_make_upstream_by_scheme(tmp_path: Path) -> None:
    assert isinstance(make_upstream("smtp://127.0.0.1:25", 4, 1.0, "relay.test"), SmtpUpstream)
    smtps = make_upstream("smtps://mail.example:465", 4, 1.0, "relay.test")
    assert isinstance(smtps, SmtpUpstream) and smtps.implicit_tls and smtps.port == 465
    maildir = make_upstream(f"maildir:{tmp_path / 'box'}", 4, 1.0, "relay.test")
    assert isinstance(maildir, MaildirUpstream) and (tmp_path / "box" / "new").is_dir()
    with pytest.raises(ValueError):
        make_upstream("lmtp://127.0.0.1:24", 4, 1.0, "relay.test")
    with pytest.raises(ValueError):
        make_upstream("maildir:", 4, 1.0, "relay.test")
