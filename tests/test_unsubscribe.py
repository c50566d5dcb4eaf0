"""One-click unsubscribe end to end: headers in the signed copy, GET changes nothing, POST and mailto do."""
from __future__ import annotations

import email
import re
import smtplib
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from http.client import HTTPConnection

import pytest

from conftest import Sink
from relay.crypto.tokens import TokenCodec, TokenError
from test_consent_suppression import consent
from test_relay_smtp import POLICY_REFUSED, dkim_tags, login, message, verify_dkim

STAGES = '["suppression", "sender-identity", "consent", "unsubscribe"]'
NOW = datetime.now(timezone.utc)


@pytest.fixture(scope="module")
def relay(relay_factory, sink: Sink):
    r = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages=STAGES)
    people = ["bob@example.org", "carol@example.org", "dave@example.org", "erin@example.org"]
    r.store.consent_import("acme", "news", [consent(p) for p in people], NOW, "test")
    r.store.consent_import("acme", "vip", [consent(p, method="double", confirmed_days=1) for p in people], NOW, "test")
    return r


def deliver(relay, sink: Sink, rcpt: str, **headers: str):
    sink.clear()
    with login(relay.port) as s:
        s.mail("bounce@acme.example")
        assert s.rcpt(rcpt)[0] == 250
        code, text = s.data(message(to=rcpt, **headers))
    if code != 250:
        return code, text.decode(), None
    (got,) = sink.wait_for(1)
    return code, text.decode(), got


def links_of(data: bytes) -> tuple[str, str]:
    value = " ".join(email.message_from_bytes(data)["List-Unsubscribe"].split())
    https, mailto = re.findall(r"<([^>]+)>", value)
    return https, mailto.removeprefix("mailto:")


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, str, dict]:
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def test_copy_carries_signed_one_click_headers_replacing_the_clients(relay, clean_sink, keys_dir):
    code, _, got = deliver(relay, clean_sink, "bob@example.org",
                           List_Unsubscribe="<https://tracker.example/unsub?u=1>")
    assert code == 250
    parsed = email.message_from_bytes(got.data)
    assert parsed.get_all("List-Unsubscribe") and len(parsed.get_all("List-Unsubscribe")) == 1
    https, mailto = links_of(got.data)
    assert https.startswith(relay.http + "/u/") and "tracker.example" not in got.data.decode()
    assert mailto.startswith("unsubscribe+") and mailto.endswith("@relay.test")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert verify_dkim(got.data, keys_dir)
    signed = [h.strip().lower() for h in dkim_tags(got.data)[b"h"].split(b":")]
    assert b"list-unsubscribe" in signed and b"list-unsubscribe-post" in signed  # RFC 8058 §4


def test_get_shows_a_page_and_changes_nothing(relay, clean_sink):
    _, _, got = deliver(relay, clean_sink, "carol@example.org")
    https, _ = links_of(got.data)
    for _ in range(3):  # link scanners may GET many times
        status, page, headers = http("GET", https)
        assert status == 200
        assert "<button" in page and "Acme News" in page and "Acme Inc" in page
        assert "carol@example.org" not in page and "c***@example.org" in page
        assert "Set-Cookie" not in headers
    code, _, _ = deliver(relay, clean_sink, "carol@example.org")
    assert code == 250  # still subscribed


def test_one_click_post_stops_that_list_only_and_is_idempotent(relay, clean_sink):
    _, _, got = deliver(relay, clean_sink, "dave@example.org")
    https, _ = links_of(got.data)
    status, page, headers = http("POST", https, b"List-Unsubscribe=One-Click")
    assert status == 200 and "unsubscribed" in page.lower()
    assert "Location" not in headers and "Set-Cookie" not in headers
    code, text, _ = deliver(relay, clean_sink, "dave@example.org")
    assert (code, text.split()[0]) == POLICY_REFUSED
    assert "unsubscribed from acme/news" in text
    code, _, _ = deliver(relay, clean_sink, "dave@example.org", List_Id="<vip.acme.example>")
    assert code == 250  # other lists are left alone
    status, _, _ = http("POST", https, b"List-Unsubscribe=One-Click")  # replay: same answer
    assert status == 200
    assert len([s for s in relay.store.suppressions(scope="list", client="acme")
                if s.address == "dave@example.org"]) == 1
    (record, events), = [(r, e) for r, e in relay.store.consent_records("acme", "dave@example.org")
                         if r.list_key == "news"]
    assert record.status == "revoked" and [e.channel for e in events if e.event == "revoked"] == ["one-click"]
    status, metrics, _ = http("GET", f"http://127.0.0.1:{relay.running.admin_port}/metrics")
    assert 'relay_unsubscribes_total{channel="one-click"} 1.0' in metrics


def test_page_button_post_unsubscribes(relay, clean_sink):
    _, _, got = deliver(relay, clean_sink, "erin@example.org", List_Id="<vip.acme.example>")
    https, _ = links_of(got.data)
    status, page, _ = http("POST", https, b"confirm=yes")
    assert status == 200
    code, _, _ = deliver(relay, clean_sink, "erin@example.org", List_Id="<vip.acme.example>")
    assert code == 550
    assert [s.source for s in relay.store.suppressions(scope="list", client="acme", list_key="vip")
            if s.address == "erin@example.org"] == ["page"]


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-3] + ("aaa" if not t.endswith("aaa") else "bbb"),   # tampered MAC
    lambda t: t[:20] + ("a" if t[20] != "a" else "b") + t[21:],         # tampered payload
    lambda t: "not-a-token",
    lambda t: t[:30],
])
def test_bad_or_tampered_token_gets_400_plain_page(relay, clean_sink, mangle):
    _, _, got = deliver(relay, clean_sink, "bob@example.org")
    https, _ = links_of(got.data)
    base, token = https.rsplit("/", 1)
    for method, body in (("GET", None), ("POST", b"List-Unsubscribe=One-Click")):
        status, page, _ = http(method, f"{base}/{mangle(token)}", body)
        assert status == 400, (method, page)
        assert "not valid" in page and "Traceback" not in page
    assert deliver(relay, clean_sink, "bob@example.org")[0] == 250  # nothing was unsubscribed


def test_mailto_unsubscribe_without_auth(relay, clean_sink):
    relay.store.consent_import("acme", "news", [consent("frank@example.org")], NOW, "test")
    _, _, got = deliver(relay, clean_sink, "frank@example.org")
    _, mailto = links_of(got.data)
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=5) as s:   # no AUTH, like a mailbox provider
        s.ehlo("mx.example.org")
        s.mail("frank@example.org")
        assert s.rcpt("other@example.org")[0] == 530                  # anything else still needs AUTH
        assert s.rcpt(mailto)[0] == 250
        code, text = s.data(b"Subject: unsubscribe\r\n\r\nunsubscribe\r\n")
    assert code == 250 and b"Unsubscribed" in text
    assert deliver(relay, clean_sink, "frank@example.org")[0] == 550
    assert [s.source for s in relay.store.suppressions(scope="list", client="acme")
            if s.address == "frank@example.org"] == ["mailto"]


def test_mailto_unsubscribe_in_upper_case(relay, clean_sink):
    """Tokens are issued in lower case; a mail system on the way back may upper-case the whole address."""
    relay.store.consent_import("acme", "news", [consent("grace@example.org")], NOW, "test")
    _, _, got = deliver(relay, clean_sink, "grace@example.org")
    _, mailto = links_of(got.data)
    shouted = mailto.upper()
    assert shouted.startswith("UNSUBSCRIBE+") and shouted.endswith("@RELAY.TEST") and shouted != mailto
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=5) as s:
        s.ehlo("MX.EXAMPLE.ORG")
        s.mail("GRACE@EXAMPLE.ORG")
        assert s.rcpt(shouted)[0] == 250
        code, text = s.data(b"Subject: UNSUBSCRIBE\r\n\r\nUNSUBSCRIBE\r\n")
    assert code == 250 and b"Unsubscribed" in text
    assert deliver(relay, clean_sink, "grace@example.org")[0] == 550
    assert [s.source for s in relay.store.suppressions(scope="list", client="acme")
            if s.address == "grace@example.org"] == ["mailto"]


def test_mailto_with_forged_token_is_refused(relay):
    forged = "unsubscribe+" + "a" * 92 + "@relay.test"
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=5) as s:
        s.ehlo("mx.example.org")
        s.mail("x@example.org")
        code, text = s.rcpt(forged)
    assert (code, text.split()[0].decode()) == (550, "5.1.1")


def test_tokens_rotate_and_expire():
    old_key, new_key = b"o" * 32, b"n" * 32
    old = TokenCodec([old_key], timedelta(days=30))
    token = old.issue("unsubscribe", "acme", "news", "bob@example.org", NOW)
    rotated = TokenCodec([new_key, old_key], timedelta(days=30))
    assert rotated.verify(token, "unsubscribe", NOW).recipient == "bob@example.org"
    assert rotated.verify(rotated.issue("unsubscribe", "acme", "news", "x@example.org", NOW),
                          "unsubscribe", NOW).list_key == "news"
    with pytest.raises(TokenError):
        TokenCodec([new_key], timedelta(days=30)).verify(token, "unsubscribe", NOW)  # old key retired
    with pytest.raises(TokenError):
        rotated.verify(token, "unsubscribe", NOW + timedelta(days=31))
    with pytest.raises(TokenError):
        rotated.verify(token, "confirm", NOW)  # an unsubscribe token confirms nothing
    assert rotated.verify(token.upper(), "unsubscribe", NOW).client == "acme"  # case-folded mailto still works


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, dict]:
    """A POST with exactly these headers (urllib would add a Content-Type), for bodies browsers never send."""
    parts = urllib.parse.urlsplit(url)
    connection = HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request("POST", parts.path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read().decode(), dict(answer.headers)
    finally:
        connection.close()


def unsubscribe_link(relay, address: str) -> str:
    token = relay.runtime.tokens.issue("unsubscribe", "acme", "news", address, datetime.now(timezone.utc))
    return f"{relay.http}/u/{token}"


def list_unsubscribes(relay, address: str) -> list[str]:
    return [s.source for s in relay.store.suppressions(scope="list", client="acme", list_key="news")
            if s.address == address]


@pytest.mark.parametrize("name, body, content_type, channel", [
    ("broken-multipart", b"garbage", "multipart/form-data; boundary=XX", "page"),
    ("multipart-without-boundary", b"garbage", "multipart/form-data", "page"),
    ("not-utf8", b"List-Unsubscribe=\xff\xfe", "application/x-www-form-urlencoded", "page"),
    ("unknown-charset", b"List-Unsubscribe=One-Click", "application/x-www-form-urlencoded; charset=bogus",
     "one-click"),
    ("no-content-type", b"List-Unsubscribe=One-Click", None, "one-click"),
    ("multipart-one-click", b'--XX\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
     b"One-Click\r\n--XX--\r\n", "multipart/form-data; boundary=XX", "one-click"),
])
def test_post_unsubscribes_whatever_the_body(relay, name, body, content_type, channel):
    # the POST to the link is the request; the body only tells one-click from the page's button
    address = f"body-{name}@example.org"
    status, page, _ = post(unsubscribe_link(relay, address), body,
                           {"Content-Type": content_type} if content_type else {})
    assert status == 200 and "unsubscribed" in page.lower(), page
    assert list_unsubscribes(relay, address) == [channel]


def test_too_big_a_body_still_unsubscribes(relay):
    # SPEC §6: the POST unsubscribes whatever the body (issue 24); a body over the limit only loses the channel
    status, page, _ = post(unsubscribe_link(relay, "big@example.org"), b"List-Unsubscribe=One-Click&x="
                           + b"a" * 200_000, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and "Traceback" not in page and "65536" not in page
    assert list_unsubscribes(relay, "big@example.org") == ["page"]


def test_too_big_a_form_is_413_plain_page(relay):
    status, page, _ = post(f"{relay.http}/s/acme/news", b"email=x%40example.org&x=" + b"a" * 200_000,
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 413 and "<h1>" in page and "Traceback" not in page and "65536" not in page


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_get_405_with_allow(relay, method):
    url = unsubscribe_link(relay, "methods@example.org")
    request = urllib.request.Request(url, data=b"" if method != "OPTIONS" else None, method=method)
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=5)
    with answer.value:
        page = answer.value.read().decode()
    assert answer.value.code == 405 and "<h1>" in page
    assert set(answer.value.headers["Allow"].split(",")) >= {"GET", "HEAD", "POST"}
    assert list_unsubscribes(relay, "methods@example.org") == []


def test_a_failing_unsubscribe_logs_no_token(relay, monkeypatch, caplog):
    def storage_breaks(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(relay.store, "consent_revoke", storage_breaks)
    url = unsubscribe_link(relay, "logs@example.org")
    status, page, _ = post(url, b"List-Unsubscribe=One-Click", {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 500 and "disk on fire" not in page and "Traceback" not in page
    assert "disk on fire" in caplog.text  # the operator still gets the cause...
    assert url.rsplit("/", 1)[1] not in caplog.text  # ...but never the token (SPEC §8)


def test_an_over_long_request_line_logs_no_token(relay, caplog):
    url = unsubscribe_link(relay, "longline@example.org")
    status, page, _ = http("GET", url + "?utm=" + "a" * 9000)  # beyond aiohttp's 8190-byte request line
    assert status == 400 and "Traceback" not in page
    assert url.rsplit("/", 1)[1] not in caplog.text and "Traceback" not in caplog.text  # SPEC §8
    assert "malformed HTTP request" in caplog.text and "LineTooLong" in caplog.text
    assert list_unsubscribes(relay, "longline@example.org") == []
