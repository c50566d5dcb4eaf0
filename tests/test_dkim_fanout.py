"""Fan-out signing (relay/mail/dkim_fanout.py): what the copies share is hashed once, and every copy's
signature is byte for byte the one DkimSigner.sign makes alone, and verifies at a real verifier."""
from __future__ import annotations

import random
from email.message import EmailMessage

import pytest

from conftest import Sink
from relay.mail.dkim import DkimSigner, body_hash, load_private_key
from relay.mail.dkim_fanout import FanoutSigning, shared_ranges
from relay.mail.message import Message
from relay.mail.mime_footer import plan_footer
from test_relay_smtp import send, verify_dkim

NOW = 1_796_000_000


def newsletter(paragraphs: int = 40, to: str = "list@acme.example") -> bytes:
    """A text+HTML newsletter, quoted-printable, about 300 bytes per paragraph and part."""
    rng = random.Random(paragraphs)
    words = "spring collection workshop  jacket\tcanvas tote repair café shipping garden".split(" ")
    text = "\n\n".join(" ".join(rng.choice(words) for _ in range(40)) for _ in range(paragraphs))
    msg = EmailMessage()
    msg["From"] = "news@acme.example"
    msg["To"] = to
    msg["Subject"] = "Our spring news"
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = f"<fanout.{paragraphs}@acme.example>"
    msg.set_content(text)
    msg.add_alternative("<html><body>" + "".join(f"<p>{p}</p>\n" for p in text.split("\n\n")) + "</body></html>\n",
                        subtype="html")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


@pytest.fixture(scope="module")
def signer(keys_dir) -> DkimSigner:
    return DkimSigner("acme.example", "s1", load_private_key(keys_dir / "acme.example.pem"))


def footered_copies(raw: bytes, recipients: list[str]) -> tuple[Message, list[bytes]]:
    """Each recipient's body with the real footer planner's text and HTML footers in."""
    message = Message(raw)
    plan = plan_footer(message.headers, message.body)
    assert plan is not None and plan.needs_text and plan.needs_html
    return message, [plan.apply(f"Sent to {r}\nUnsubscribe: https://relay.test/u/{r}",
                                f"<p>Sent to {r}</p>").body for r in recipients]


def test_copies_with_the_real_footer_hash_as_alone_and_use_the_shared_runs(signer):
    message, bodies = footered_copies(newsletter(), [f"r{n}@example.org" for n in range(5)])
    fan = FanoutSigning(signer, message.body)
    for body in bodies:
        assert fan.body_hash(body) == body_hash(body)
    assert fan._segments and fan._prefix is not None  # the shared path was taken, not the fallback
    shared = sum(len(s.raw) for s in fan._segments)
    assert shared > 0.9 * len(message.body), (shared, len(message.body))


def test_signatures_are_the_same_bytes_as_signing_each_copy_alone(signer):
    """The canonical header cache and the body runs change nothing in what is signed (RSA PKCS#1
    v1.5 is deterministic): per-recipient headers and bodies, signed both ways."""
    message, bodies = footered_copies(newsletter(), ["a@example.org", "b@example.net", "c@example.com"])
    fan = FanoutSigning(signer, message.body)
    for n, body in enumerate(bodies):
        headers = [f"List-Unsubscribe: <https://relay.test/u/{n}>\r\n".encode(), *message.headers]
        assert fan.sign(headers, body, NOW) == signer.sign(headers, body, NOW)
    assert fan.canon_cache  # the shared header values were canonicalized once


def _insert(body: bytes, at: int, text: bytes) -> bytes:
    return body[:at] + text + body[at:]


@pytest.mark.parametrize("seed", range(40))
def test_any_insertion_or_change_gives_the_hash_of_the_copy_itself(signer, seed):
    """Copies the plan was not made for (other places, mid-line, replaced lines, bare LF, runs of
    whitespace and empty lines at the joins, trailing blank lines): always the copy's own hash."""
    rng = random.Random(seed)
    base = Message(newsletter(12 + seed % 5)).body
    pieces = [b"\r\n", b"  \t\r\n", b"footer for %d \r\n\r\n" % seed, b"mid-line text", b"\t \t",
              b"bare\nLF\r\n", b"\r\n\r\n\r\n", b"x" * 300 + b"\r\n"]

    def variant() -> bytes:
        body = base
        for _ in range(rng.randint(0, 3)):
            at = rng.randrange(len(body) + 1)
            body = _insert(body, at, rng.choice(pieces))
        if rng.random() < 0.3:  # a changed line, as a re-encoded part would be
            at = body.find(b"\r\n", rng.randrange(len(body))) + 2
            body = body[:at] + b"CHANGED " + body[at + 8:]
        if rng.random() < 0.3:
            body += rng.choice([b"\r\n\r\n", b"trailing no CRLF", b" \r\n"])
        return body

    fan = FanoutSigning(signer, base)
    for _ in range(6):
        body = variant()
        assert fan.body_hash(body) == body_hash(body)


def test_shared_ranges_are_line_aligned_runs_of_the_base():
    base = b"".join(b"line %04d of the message body, long enough to count\r\n" % n for n in range(200))
    copy = _insert(_insert(base, 5000, b"FOOTER ONE\r\n"), 9000 + 12, b"inserted mid-line")
    ranges = shared_ranges(base, copy)
    assert len(ranges) >= 2
    for start, end in ranges:
        assert start == 0 or base[start - 2:start] == b"\r\n"
        assert base[end - 2:end] == b"\r\n" and base[start:end] in copy


def test_a_big_newsletter_to_many_recipients_verifies_at_dkimpy(relay_factory, sink: Sink, keys_dir):
    """End to end: a 20 KB text+HTML message to 5 recipients through a real relay (footer on every
    copy, fan-out signing in the signing threads), each copy verified by dkimpy."""
    relay = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}")
    try:
        sink.clear()
        rcpts = [f"reader{n}@example.org" for n in range(5)]
        raw = newsletter(60)
        assert len(raw) > 15_000
        code, text = send(relay.port, raw, rcpts)
        assert code == 250, text
        got = sink.wait_for(5)
        assert sorted(r for m in got for r in m.rcpt_tos) == rcpts
        bodies = {m.data.split(b"\r\n\r\n", 1)[1] for m in got}
        assert len(bodies) == 5  # every copy has its own footer
        assert all(verify_dkim(m.data, keys_dir) for m in got)
    finally:
        relay.stop()
