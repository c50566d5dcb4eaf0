"""Confirmed opt-in over real HTTP and SMTP: API and form, the mail, GET vs POST, bad IPs, suspended clients."""
from __future__ import annotations

import email
import json
import re
import urllib.parse
from datetime import timedelta

import pytest

from conftest import API_TOKEN, PASSWORD_HASH, Clock, Sink
from relay.services.optin import SignupRefused
from relay.crypto.passwords import hash_password
from test_relay_smtp import login, message, verify_dkim
from test_unsubscribe import http

STAGES = '["suppression", "sender-identity", "consent", "unsubscribe"]'
UA = "consent-relay-tests/1.0"
FROZEN_TOKEN = "frozen-api-token-0123456789"  # a suspended client that still holds an API token


def frozen_client(keys_dir) -> str:
    return f"""
[clients.frozen]
password_hash = "{PASSWORD_HASH}"
api_token_hash = "{hash_password(FROZEN_TOKEN)}"
sender_domains = ["frozen.example"]
company = "Frozen Ltd"
contact_email = "hello@frozen.example"
postal_address = "Frozen Ltd, 3 Cold St, Leeds LS1 1AA, UK"
dkim = {{ selector = "f1", key_file = "{keys_dir / 'acme.example.pem'}" }}
default_list = "news"
state = "suspended"

[clients.frozen.lists.news]
name = "Frozen News"
"""


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def relay(relay_factory, sink: Sink, clock: Clock, keys_dir):
    return relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages=STAGES, clock=clock,
                         extra=frozen_client(keys_dir))


def api(relay, body: object, token: str | None = API_TOKEN) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    request = urllib.request.Request(relay.http + "/api/v1/subscribers", data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", UA)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def confirmation_links(sink: Sink, rcpt: str) -> list[str]:
    links = []
    for m in sink.for_rcpt(rcpt):
        parsed = email.message_from_bytes(m.data)
        text = [p for p in parsed.walk() if p.get_content_type() == "text/plain"][0].get_payload(decode=True).decode()
        # the company is named once: the postal address already begins with it
        assert not re.search(r"(?m)^([^,\n]+), \1, ", text), text
        links += re.findall(r"(http://\S+/c/[a-z0-9]+)", text)
    return links


def newsletter(relay, rcpt: str, list_id: str = "<vip.acme.example>") -> int:
    with login(relay.port) as s:
        s.mail("bounce@acme.example")
        s.rcpt(rcpt)
        code, _ = s.data(message(to=rcpt, List_Id=list_id))
    return code


def test_api_pending_mail_get_post_then_delivered(relay, clean_sink, keys_dir):
    status, body = api(relay, {"email": "hank@example.org", "list": "vip", "source": "checkout page",
                               "ip": "198.51.100.9", "disclosure": "VIP offers weekly"})
    assert status == 202 and body == {"email": "hank@example.org", "list": "vip", "status": "pending",
                                      "confirmation_mail": "sent"}
    (mail,) = clean_sink.wait_for(1)
    assert mail.rcpt_tos == ["hank@example.org"] and mail.mail_from == "hello@acme.example"
    assert verify_dkim(mail.data, keys_dir)
    (link,) = confirmation_links(clean_sink, "hank@example.org")
    assert newsletter(relay, "hank@example.org") == 550          # pending: no mail yet
    status, page, _ = http("GET", link)
    assert status == 200 and "<button" in page and "hank@example.org" not in page
    assert newsletter(relay, "hank@example.org") == 550          # GET confirmed nothing
    status, page, _ = http("POST", link, b"confirm=yes")
    assert status == 200 and "Subscription confirmed" in page
    assert newsletter(relay, "hank@example.org") == 250
    (record, events), = relay.store.consent_records("acme", "hank@example.org")
    assert record.status == "confirmed" and record.method == "double" and record.ip == "198.51.100.9"
    assert record.disclosure == "VIP offers weekly" and record.confirmed_at is not None
    assert [e.event for e in events] == ["created", "confirmed"]
    assert events[0].channel == "api" and json.loads(events[0].detail)["user_agent"] == UA
    assert events[1].channel == "confirm-link" and events[1].ip == "127.0.0.1"
    assert json.loads(events[1].detail)["user_agent"].startswith("Python-urllib")


@pytest.mark.parametrize("body, field", [
    ({"list": "vip", "source": "x"}, "email"),
    ({"email": "not an address", "list": "vip", "source": "x"}, "email"),
    ({"email": "a@example.org", "list": "nope", "source": "x"}, "list"),
    ({"email": "a@example.org", "list": "vip"}, "source"),
    ({"email": "a@example.org", "list": "vip", "source": "x", "colour": "red"}, "colour"),
    ({"email": "a@example.org", "list": "vip", "source": "x", "ip": 5}, "ip"),
    ({"email": "a@example.org", "list": "vip", "source": "x", "ip": "not-ip"}, "ip"),
    ({"email": "a@example.org", "list": "news", "source": "x", "ip": "999.1.1.1"}, "ip"),
    ({"email": "sales@example.org", "list": "vip", "source": "x"}, "email"),
    ({"email": "a@example.org", "list": "receipts", "source": "x"}, "list"),
    (b"{not json", "body"),
])
def test_api_bad_input_is_422_naming_the_field(relay, clean_sink, body, field):
    status, answer = api(relay, body)
    assert status == 422 and answer["field"] == field, answer
    assert clean_sink.messages == []
    assert relay.store.consent_records("acme", "a@example.org") == []


def test_api_needs_a_valid_token(relay, clean_sink):
    assert api(relay, {"email": "a@example.org", "list": "vip", "source": "x"}, token=None)[0] == 401
    assert api(relay, {"email": "a@example.org", "list": "vip", "source": "x"}, token="wrong")[0] == 401


def test_single_opt_in_list_needs_no_mail(relay, clean_sink):
    status, body = api(relay, {"email": "ivy@example.org", "list": "news", "source": "shop", "ip": "2001:DB8:0:0::9"})
    assert status == 202 and body["status"] == "confirmed" and body["confirmation_mail"] == "not needed"
    assert clean_sink.messages == []
    assert newsletter(relay, "ivy@example.org", "<news.acme.example>") == 250
    (record, _), = relay.store.consent_records("acme", "ivy@example.org")
    assert record.method == "single" and record.ip == "2001:db8::9"  # stored in canonical form


def test_hosted_form_is_double_opt_in_even_on_single_opt_in_list(relay, clean_sink):
    """Anyone can type anyone's address into a web form: only the confirmation link proves it is theirs."""
    status, page, _ = http("GET", relay.http + "/s/acme/news")
    assert status == 200 and "We will send you an email to confirm" in page
    status, page, _ = http("POST", relay.http + "/s/acme/news", urllib.parse.urlencode({"email": "lou@example.org"}).encode())
    assert status == 200 and "Check your inbox" in page and "You are subscribed" not in page
    (record, events), = relay.store.consent_records("acme", "lou@example.org")
    assert record.status == "pending" and record.method == "double" and events[0].channel == "form"
    (mail,) = clean_sink.wait_for(1)
    assert mail.rcpt_tos == ["lou@example.org"] and "Acme News" in email.message_from_bytes(mail.data)["Subject"]
    (link,) = confirmation_links(clean_sink, "lou@example.org")
    assert newsletter(relay, "lou@example.org", "<news.acme.example>") == 550  # pending: no marketing yet
    assert http("GET", link)[0] == 200
    (record, _), = relay.store.consent_records("acme", "lou@example.org")
    assert record.status == "pending"                                         # GET confirmed nothing
    status, page, _ = http("POST", link, b"confirm=yes")
    assert status == 200 and "Subscription confirmed" in page
    (record, events), = relay.store.consent_records("acme", "lou@example.org")
    assert record.status == "confirmed" and record.confirmed_at is not None
    assert [e.event for e in events] == ["created", "confirmed"]
    assert newsletter(relay, "lou@example.org", "<news.acme.example>") == 250
    assert len(clean_sink.for_rcpt("lou@example.org")) == 2                  # the confirmation, then the newsletter


def test_suspended_client_gets_no_subscribers_and_sends_nothing(relay, clean_sink):
    body = {"email": "nat@example.org", "list": "news", "source": "x", "ip": "198.51.100.9"}
    status, answer = api(relay, body, token=FROZEN_TOKEN)
    assert status == 403 and answer == {"error": "client frozen is suspended: it takes no sign-ups and sends no "
                                                 "confirmation mail"}
    assert api(relay, b"{not json", token=FROZEN_TOKEN)[0] == 403  # refused before its input is read
    assert relay.store.consent_records("frozen", "nat@example.org") == []
    status, page, _ = http("GET", relay.http + "/s/idle/news")
    assert status == 403 and "Sign-ups are closed" in page and "<form" not in page
    status, page, _ = http("POST", relay.http + "/s/idle/news", urllib.parse.urlencode({"email": "nat@example.org"}).encode())
    assert status == 403 and "Sign-ups are closed" in page and "suspended" not in page
    assert relay.store.consent_records("idle", "nat@example.org") == []
    assert clean_sink.messages == []


def test_a_confirmation_link_of_a_suspended_client_confirms_nothing(relay, clean_sink, clock):
    # the sign-up happened before the client was suspended; its link arrives afterwards
    relay.store.signup("idle", "news", "ola@example.org", source="x", ip=None, user_agent="", disclosure="d",
                       channel="api", at=clock(), double=True, window=timedelta(hours=24))
    link = relay.http + "/c/" + relay.runtime.tokens.issue("confirm", "idle", "news", "ola@example.org", clock())
    for method in ("GET", "POST"):
        status, page, _ = http(method, link, b"confirm=yes" if method == "POST" else None)
        assert status == 403 and "Sign-ups are closed" in page and "<button" not in page, (method, page)
    (record, events), = relay.store.consent_records("idle", "ola@example.org")
    assert record.status == "pending" and [e.event for e in events] == ["created"]


def test_signing_up_again_once_confirmed_sends_no_mail(relay, clean_sink):
    body = {"email": "pat@example.org", "list": "vip", "source": "x"}
    assert api(relay, body)[1]["confirmation_mail"] == "sent"
    (link,) = confirmation_links(clean_sink, "pat@example.org")
    assert http("POST", link, b"confirm=yes")[0] == 200
    status, answer = api(relay, body)
    assert status == 202 and answer == {"email": "pat@example.org", "list": "vip", "status": "confirmed",
                                        "confirmation_mail": "not needed"}
    assert len(clean_sink.for_rcpt("pat@example.org")) == 1
    (record, events), = relay.store.consent_records("acme", "pat@example.org")
    assert record.status == "confirmed" and [e.event for e in events] == ["created", "confirmed"]


def test_one_mail_and_one_reminder_per_window(relay, clean_sink):
    answers = [api(relay, {"email": "jo@example.org", "list": "vip", "source": "x"})[1]["confirmation_mail"]
               for _ in range(4)]
    assert answers == ["sent", "reminder", "limit reached", "limit reached"]
    assert len(clean_sink.wait_for(2)) == 2
    assert "Reminder" in email.message_from_bytes(clean_sink.messages[1].data)["Subject"]


def test_suppressed_address_is_refused_without_mail(relay, clean_sink, clock):
    relay.store.suppress_add("client", "acme", "", "gone@example.org", "", "complaint", "fbl", clock())
    status, body = api(relay, {"email": "gone@example.org", "list": "vip", "source": "x"})
    assert status == 422 and body["field"] == "email"
    assert clean_sink.messages == []


def test_hosted_form_records_pending_and_honeypot_records_nothing(relay, clean_sink):
    status, page, _ = http("GET", relay.http + "/s/acme/vip")
    assert status == 200 and "Acme VIP" in page and 'name="website"' in page and "Acme Inc" in page
    status, page, _ = http("POST", relay.http + "/s/acme/vip",
                           urllib.parse.urlencode({"email": "bot@example.org", "website": "http://spam"}).encode())
    assert status == 200 and "Check your inbox" in page
    assert relay.store.consent_records("acme", "bot@example.org") == []
    status, page, _ = http("POST", relay.http + "/s/acme/vip", urllib.parse.urlencode({"email": "kim@example.org"}).encode())
    assert status == 200 and "Check your inbox" in page
    (record, events), = relay.store.consent_records("acme", "kim@example.org")
    assert record.status == "pending" and events[0].channel == "form" and record.ip == "127.0.0.1"
    assert record.disclosure.startswith("You will receive Acme VIP")
    assert confirmation_links(clean_sink, "kim@example.org")
    assert clean_sink.for_rcpt("bot@example.org") == []
    status, page, _ = http("POST", relay.http + "/s/acme/vip", urllib.parse.urlencode({"email": "info@example.org"}).encode())
    assert status == 422 and "role address" in page
    assert http("GET", relay.http + "/s/acme/nope")[0] == 404
    assert http("GET", relay.http + "/s/acme/receipts")[0] == 404


def test_expired_pending_record_never_confirms(relay, clean_sink, clock):
    api(relay, {"email": "late@example.org", "list": "vip", "source": "x"})
    (link,) = confirmation_links(clean_sink, "late@example.org")
    clock.offset = timedelta(days=8)  # pending_expiry_days defaults to 7
    try:
        status, page, _ = http("POST", link, b"confirm=yes")
    finally:
        clock.offset = timedelta()
    assert status == 400 and "expired" in page
    (record, _), = relay.store.consent_records("acme", "late@example.org")
    assert record.status == "pending"


def test_unsubscribed_person_must_confirm_again_even_on_single_opt_in_list(relay, clean_sink, clock):
    api(relay, {"email": "back@example.org", "list": "news", "source": "x"})
    relay.store.consent_revoke("acme", "news", "back@example.org", clock(), "one-click")
    status, body = api(relay, {"email": "back@example.org", "list": "news", "source": "x"})
    assert body["status"] == "pending" and body["confirmation_mail"] == "sent"
    (link,) = confirmation_links(clean_sink, "back@example.org")
    assert newsletter(relay, "back@example.org", "<news.acme.example>") == 550
    assert http("POST", link, b"confirm=yes")[0] == 200
    assert newsletter(relay, "back@example.org", "<news.acme.example>") == 250


def test_rate_limit_per_ip(relay_factory, sink):
    limited = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages=STAGES,
                            extra="\n[optin]\nrate_per_ip_per_hour = 2\n")
    codes = [http("POST", limited.http + "/s/acme/vip",
                  urllib.parse.urlencode({"email": f"r{i}@example.org"}).encode())[0] for i in range(3)]
    assert codes == [200, 200, 429]
    # issue 24: the API has a budget of its own; a visitor filling the form does not use it up
    assert api(limited, {"email": "r9@example.org", "list": "vip", "source": "x"})[0] == 202
    # an IPv6 host holds a whole /64: the limit counts the /64, not each address in it
    acme = limited.runtime.config.clients["acme"]
    limited.runtime.optin.check_rate(acme, "2001:db8:1:2::1")
    limited.runtime.optin.check_rate(acme, "2001:db8:1:2::2")
    with pytest.raises(SignupRefused) as refused:
        limited.runtime.optin.check_rate(acme, "2001:db8:1:2:ffff::3")
    assert refused.value.status == 429
    limited.runtime.optin.check_rate(acme, "2001:db8:1:3::1")  # the next /64 is someone else


@pytest.fixture(scope="module")
def roomy(relay_factory, sink: Sink):
    """A relay whose per-IP sign-up limit the many requests below stay under."""
    return relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages=STAGES,
                         extra="\n[optin]\nrate_per_ip_per_hour = 1000\n")


def api_raw(relay, body: bytes, headers: dict[str, str], method: str = "POST") -> tuple[int, str, dict]:
    """The API with exactly these headers: for what well-behaved clients never send."""
    from test_unsubscribe import post

    if method == "POST":
        return post(relay.http + "/api/v1/subscribers", body, headers)
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(relay.http + "/api/v1/subscribers", method=method),
                                    timeout=5) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


@pytest.mark.parametrize("body, content_type, field", [
    (b'{"email": "charset@example.org", "list": "news", "source": "x"}', "application/json; charset=bogus", None),
    (b'{"email": "a\xe9@example.org", "list": "news", "source": "x"}', "application/json; charset=latin-1", "body"),
    (b'{"email":' * 3000 + b'"a@example.org"' + b"}" * 3000, "application/json", "body"),
    (b'{"email": "a@example.org", "list": "news", "source": "\\ud800"}', "application/json", "source"),
    (b'{"email": "a@example.org", "list": "news", "source": "x", "disclosure": "\\udfff"}', "application/json",
     "disclosure"),
])
def test_api_body_that_is_not_utf8_json_is_422(roomy, clean_sink, body, content_type, field):
    # JSON is UTF-8 (RFC 8259 §8.1): a charset parameter changes nothing, an unreadable body is the client's fault
    status, answer, _ = api_raw(roomy, body, {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": content_type})
    if field is None:
        assert status == 202, answer
    else:
        assert status == 422 and json.loads(answer)["field"] == field, answer
    assert clean_sink.messages == []


def test_api_token_that_is_not_utf8_is_401(roomy, clean_sink):
    status, answer, _ = api_raw(roomy, b"{}", {"Authorization": "Bearer \xe9\xff"})
    assert status == 401 and json.loads(answer)["error"]


def test_api_errors_are_json_with_allow(roomy, clean_sink):
    status, answer, headers = api_raw(roomy, b"", {}, method="GET")
    assert status == 405 and headers["Content-Type"].startswith("application/json") and "error" in json.loads(answer)
    assert headers["Allow"] == "POST"
    status, answer, headers = api_raw(roomy, b'{"email": "' + b"a" * 200_000 + b'"}',
                                      {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"})
    assert status == 413 and headers["Content-Type"].startswith("application/json") and "error" in json.loads(answer)
    status, answer, headers = api_raw(roomy, b"", {}, method="DELETE")
    assert status == 405 and json.loads(answer)["error"]


@pytest.mark.parametrize("body, content_type", [
    (b"email=\xff\xfe%40example.org", "application/x-www-form-urlencoded"),
    (b"email=%ff%fe%40example.org", "application/x-www-form-urlencoded"),
    (b"garbage", "multipart/form-data; boundary=XX"),
    (b'--XX\r\nContent-Disposition: form-data; name="email"; filename="a.txt"\r\n\r\nfile@example.org\r\n--XX--\r\n',
     "multipart/form-data; boundary=XX"),
])
def test_hosted_form_body_that_cannot_be_read_is_422(roomy, clean_sink, body, content_type):
    from test_unsubscribe import post

    status, page, _ = post(roomy.http + "/s/acme/news", body, {"Content-Type": content_type})
    assert status == 422 and 'role="alert"' in page and "Traceback" not in page and "FileField" not in page, page
    assert clean_sink.messages == []


def test_wrong_api_tokens_are_throttled_per_ip(relay_factory, sink):
    from relay.services.optin import API_FAILURES_PER_IP

    fresh = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages=STAGES)
    body = {"email": "throttle@example.org", "list": "news", "source": "x"}
    assert api(fresh, body)[0] == 202  # the right token, known from now on
    codes = [api(fresh, body, token=f"wrong-{i}")[0] for i in range(API_FAILURES_PER_IP + 2)]
    assert codes == [401] * API_FAILURES_PER_IP + [429, 429]  # checked one at a time from now on
    assert api(fresh, body)[0] == 202  # the client's own systems still get in
