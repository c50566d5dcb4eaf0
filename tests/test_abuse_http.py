"""Issue 24, HTTP side: connection limits, read timeouts, keep-alive limits, client mistakes, forms, headers."""
from __future__ import annotations

import gzip
import json
import logging
import socket
import time
import urllib.parse
from datetime import datetime, timezone
from http.client import HTTPConnection

import pytest

from conftest import API_TOKEN
from relay.http.guard import SECURITY_HEADERS
from relay.services.optin import API_FAILURES_PER_IP

HTTP_LIMITS = """max_connections = 5
max_connections_per_ip = 3
header_timeout = 0.5
body_timeout = 0.5
max_requests_per_connection = 2
"""


@pytest.fixture(scope="module")
def relay(relay_factory, sink):
    return relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", http_extra=HTTP_LIMITS,
                         extra="\n[optin]\nrate_per_ip_per_hour = 1000\n")


def connect(relay, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", relay.running.http_port), timeout=3, source_address=(source, 0))
    return sock


def closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing, or None when it kept the connection open that long."""
    sock.settimeout(seconds)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return data


def request(relay, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            connection: HTTPConnection | None = None) -> tuple[int, str, dict]:
    conn = connection or HTTPConnection("127.0.0.1", relay.running.http_port, timeout=5)
    conn.request(method, path, body=body, headers=headers or {})
    answer = conn.getresponse()
    result = answer.status, answer.read().decode("utf-8", "replace"), dict(answer.headers)
    if connection is None:
        conn.close()
    return result


def test_connection_limits_total_and_per_address(relay):
    held = [connect(relay) for _ in range(3)]
    try:
        time.sleep(0.1)
        over = connect(relay)
        assert (closed_within(over, 2) or b"").startswith(b"HTTP/1.1 503")  # the 4th from one address
        held += [connect(relay, "127.0.0.2") for _ in range(2)]
        time.sleep(0.1)
        assert (closed_within(connect(relay, "127.0.0.3"), 2) or b"").startswith(b"HTTP/1.1 503")  # 6th in all
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert request(relay, "GET", "/s/acme/news")[0] == 200  # slots come back when connections close


def test_a_trickled_request_head_is_cut_off(relay):
    sock = connect(relay)
    sock.sendall(b"GET /s/acme/news HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    started = time.monotonic()
    assert closed_within(sock, 3) is not None
    assert time.monotonic() - started < 2


def test_an_unfinished_body_is_cut_off(relay):
    sock = connect(relay)
    sock.sendall(b"POST /s/acme/news HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\n\r\nemail=")
    started = time.monotonic()
    assert closed_within(sock, 3) is not None
    assert time.monotonic() - started < 2


def test_keep_alive_ends_after_the_request_limit(relay):
    conn = HTTPConnection("127.0.0.1", relay.running.http_port, timeout=5)
    first = request(relay, "GET", "/s/acme/news", connection=conn)
    second = request(relay, "GET", "/s/acme/news", connection=conn)
    conn.close()
    assert first[2].get("Connection", "").lower() != "close"
    assert second[2].get("Connection", "").lower() == "close"


def test_an_idle_keep_alive_connection_is_closed(relay):
    sock = connect(relay)
    sock.sendall(b"GET /s/acme/news HTTP/1.1\r\nHost: x\r\n\r\n")
    data = closed_within(sock, 3)
    assert data is not None and data.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("path", ["/u/not-a-token", "/s/acme/news", "/nowhere", "/c/bad"])
def test_every_page_refuses_framing_and_scripts(relay, path):
    status, _, headers = request(relay, "GET", path)
    assert status in (200, 400, 404)
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (name, headers)
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none' covers scripts


def test_http_0_9_is_refused(relay):
    sock = connect(relay)
    sock.sendall(b"GET /s/acme/news\r\n\r\n")
    data = closed_within(sock, 3) or b""
    assert b"ok\n" not in data and b" 200 " not in data.split(b"\r\n", 1)[0], data


def unsubscribe_path(relay, address: str) -> str:
    token = relay.runtime.tokens.issue("unsubscribe", "acme", "news", address, datetime.now(timezone.utc))
    return f"/u/{token}"


def list_unsubscribes(relay, address: str) -> list[str]:
    return [s.source for s in relay.store.suppressions(scope="list", client="acme", list_key="news")
            if s.address == address]


def test_bad_gzip_is_a_client_mistake_and_post_still_unsubscribes(relay, caplog):
    caplog.set_level(logging.INFO, logger="relay")
    caplog.set_level(logging.INFO, logger="aiohttp")
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"}
    status, page, _ = request(relay, "POST", unsubscribe_path(relay, "gz@example.org"), b"not gzip at all", headers)
    assert status == 200 and "Traceback" not in page
    assert list_unsubscribes(relay, "gz@example.org") == ["page"]
    status, body, _ = request(relay, "POST", "/api/v1/subscribers", b"\x1f\x8b broken",
                              {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json",
                               "Content-Encoding": "gzip"})
    assert status == 422 and json.loads(body)["field"] == "body"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    unreadable = [r for r in caplog.records if "unreadable request body" in r.getMessage()]
    assert len(unreadable) == 2 and all(r.levelno == logging.INFO for r in unreadable)
    # and a good gzip body is read
    good = gzip.compress(b"List-Unsubscribe=One-Click")
    status, _, _ = request(relay, "POST", unsubscribe_path(relay, "gz2@example.org"), good, headers)
    assert status == 200 and list_unsubscribes(relay, "gz2@example.org") == ["one-click"]


def test_a_dropped_body_still_unsubscribes_and_logs_no_error(relay, caplog):
    caplog.set_level(logging.INFO, logger="relay")
    sock = connect(relay)
    sock.sendall(f"POST {unsubscribe_path(relay, 'dropped@example.org')} HTTP/1.1\r\nHost: x\r\n"
                 "Content-Length: 500\r\n\r\nList-Unsub".encode())
    time.sleep(0.1)
    sock.close()
    deadline = time.monotonic() + 3
    while not list_unsubscribes(relay, "dropped@example.org") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list_unsubscribes(relay, "dropped@example.org") == ["page"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def form(email: str) -> bytes:
    return urllib.parse.urlencode({"email": email}).encode()


def test_hosted_form_refuses_posts_from_other_sites(relay, clean_sink):
    plain = {"Content-Type": "application/x-www-form-urlencoded"}
    status, page, _ = request(relay, "POST", "/s/acme/news", form("bomb@example.org"),
                              plain | {"Origin": "https://evil.example"})
    assert status == 403 and "own page" in page
    status, _, _ = request(relay, "POST", "/s/acme/news", form("bomb2@example.org"),
                           plain | {"Referer": "https://evil.example/page.html"})
    assert status == 403
    status, _, _ = request(relay, "POST", "/s/acme/news", form("bomb3@example.org"), plain | {"Origin": "null"})
    assert status == 403
    own = relay.http
    status, _, _ = request(relay, "POST", "/s/acme/news", form("fine@example.org"), plain | {"Origin": own})
    assert status == 200
    status, _, _ = request(relay, "POST", "/s/acme/news", form("fine2@example.org"),
                           plain | {"Referer": own + "/s/acme/news"})
    assert status == 200
    sent = {m.rcpt_tos[0] for m in clean_sink.wait_for(2)}
    assert sent == {"fine@example.org", "fine2@example.org"}
    # the form page asks the browser to send its own origin (no-referrer would make it "null")
    assert request(relay, "GET", "/s/acme/news")[2]["Referrer-Policy"] == "same-origin"


def test_wrong_tokens_cannot_lock_out_the_right_one(relay_factory, sink):
    fresh = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}")
    body = json.dumps({"email": "lock@example.org", "list": "news", "source": "x"}).encode()

    def api(token: str) -> int:
        return request(fresh, "POST", "/api/v1/subscribers", body,
                       {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})[0]

    codes = [api(f"wrong-{i}") for i in range(API_FAILURES_PER_IP + 1)]
    assert codes == [401] * API_FAILURES_PER_IP + [429]
    assert api(API_TOKEN) == 202  # never used before from this address, so not cached: still let in
