"""HTTP ways in for subscribers: the client API, the hosted form, and the /c/TOKEN confirmation."""
from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING

from aiohttp import web
from yarl import URL

from relay.http.pages import RUNTIME, masked, page, plain_page
from relay.http.body import BadBody, read_form, read_json, unencodable
from relay.services.optin import API_FAILURES_PER_IP, SignupRefused, refuse_if_suspended
from relay.crypto.passwords import verify_password
from relay.crypto.tokens import TokenError
from relay.base.windows import peer_key

if TYPE_CHECKING:
    from relay.config import ClientConfig
    from relay.runtime import Runtime

API_FIELDS = ("email", "list", "source", "ip", "disclosure")
BAD_CONFIRM_LINK = ("This confirmation link is not valid",
                    "The link may be incomplete or too old. Sign up again to get a new one.")


def _json_error(status: int, error: str, field: str | None = None) -> web.Response:
    body = {"error": error} | ({"field": field} if field else {})
    return web.json_response(body, status=status)


class TooManyFailures(Exception):
    """This peer sent too many wrong API tokens lately: answered 429 without hashing another."""


async def _api_client(runtime: "Runtime", request: web.Request) -> "ClientConfig | None":
    """The client whose API token the request carries; None for none or a wrong one (counted per IP)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    # surrogateescape: header bytes that are not UTF-8 arrive as lone surrogates (as in passwords._encode)
    token = token.strip()
    cache = runtime.optin.api_tokens  # sha256(token) → client, so scrypt runs once per token
    fingerprint = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
    if fingerprint in cache:
        return runtime.config.clients.get(cache[fingerprint])
    failures, peer = runtime.optin.api_failures, peer_key(request.remote or "")
    if failures.count(peer) < API_FAILURES_PER_IP:
        client = await _check_token(runtime, token, fingerprint)
        if client is None:
            failures.add(peer)
        return client
    # locked out: a refusal here would also refuse the right token, not yet cached, from the same
    # address (everyone behind one proxy). So tokens are still checked, one at a time per address:
    # wrong ones cost at most one scrypt thread per address, and each wrong one answers 429
    locks = runtime.optin.api_locks
    entry = locks.setdefault(peer, [asyncio.Lock(), 0])
    entry[1] += 1
    try:
        async with entry[0]:
            client = await _check_token(runtime, token, fingerprint)
    finally:
        entry[1] -= 1
        if not entry[1]:
            del locks[peer]
    if client is None:
        raise TooManyFailures()
    return client


async def _check_token(runtime: "Runtime", token: str, fingerprint: bytes) -> "ClientConfig | None":
    for client in runtime.config.clients.values():
        if client.api_token_hash and await asyncio.to_thread(verify_password, token, client.api_token_hash):
            runtime.optin.api_tokens[fingerprint] = client.name
            return client
    return None


async def api_subscribers(request: web.Request) -> web.Response:
    """POST /api/v1/subscribers: a client's own systems add a subscriber (202 when recorded)."""
    runtime: Runtime = request.app[RUNTIME]
    try:
        client = await _api_client(runtime, request)
    except TooManyFailures:
        return _json_error(429, "too many wrong API tokens from this address; try again later")
    if client is None:
        return _json_error(401, "missing or invalid API token (Authorization: Bearer ...)")
    try:
        refuse_if_suspended(client, runtime.accounts.state_of(client))  # before the body: the answer is about the client, not its input
    except SignupRefused as refused:
        return _json_error(refused.status, str(refused), refused.field)
    try:
        body = await read_json(request)
    except BadBody as bad:
        return _json_error(422, str(bad), "body")
    if not isinstance(body, dict):
        return _json_error(422, "the body must be a JSON object", "body")
    unknown = sorted(set(body) - set(API_FIELDS))
    if unknown:
        return _json_error(422, f"unknown field {unknown[0]!r}", unknown[0])
    for name in API_FIELDS:
        if isinstance(body.get(name), str) and unencodable(body[name]):
            return _json_error(422, f"{name} holds an invalid \\u escape (a lone surrogate)", name)
    for name in ("email", "list", "source"):
        if not isinstance(body.get(name), str) or not body[name].strip():
            return _json_error(422, f"{name} is required and must be a non-empty string", name)
    for name in ("ip", "disclosure"):
        if name in body and not isinstance(body[name], str):
            return _json_error(422, f"{name} must be a string", name)
    mailing = client.lists.get(body["list"])
    if mailing is None:
        return _json_error(422, f"client {client.name} has no list {body['list']!r}", "list")
    try:
        runtime.optin.check_rate(client, request.remote, "api")
        result = await runtime.optin.subscribe(
            client, mailing, body["email"], source=body["source"], ip=body.get("ip") or None,
            user_agent=request.headers.get("User-Agent", ""), channel="api", disclosure=body.get("disclosure"))
    except SignupRefused as refused:
        return _json_error(refused.status, str(refused), refused.field)
    return web.json_response({"email": result.address, "list": mailing.key, "status": result.state,
                              "confirmation_mail": result.confirmation_mail}, status=202)


def _form_list(runtime: "Runtime", request: web.Request):  # type: ignore[no-untyped-def]
    client = runtime.config.clients.get(request.match_info["client"])
    mailing = client.lists.get(request.match_info["list"]) if client else None
    if client is None or mailing is None or mailing.transactional:
        raise web.HTTPNotFound()
    return client, mailing


def _signups_closed(client, mailing) -> web.Response:  # type: ignore[no-untyped-def]
    # the visitor is told the list takes no sign-ups now; the client's account state is the operator's business
    return plain_page(403, "Sign-ups are closed",
                      f"{client.company} is not taking sign-ups to {mailing.name} at the moment.")


def _form_page(status: int, client, mailing, email: str = "", error: str = "") -> web.Response:  # type: ignore[no-untyped-def]
    response = page(status, "page_subscribe.html.j2", title=f"Subscribe to {mailing.name}", company=client.company,
                list_name=mailing.name, disclosure=mailing.disclosure, postal_address=client.postal_address,
                email=email, error=error)
    # the browser then sends the page's own Origin with the POST (with no-referrer it sends "null"),
    # which form_post checks; the form's URL holds no token, so nothing leaks
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def foreign_origin(request: web.Request, public_url: str) -> str | None:
    """The origin of another site that made the browser post here, else None.

    A third-party page could post the hosted form from each visitor's browser (subscription bombing
    spread over many addresses). Browsers say where a POST comes from in Origin (else Referer);
    a request with neither comes from no browser page, and meets the honeypot and rate limits.
    """
    seen = request.headers.get("Origin") or request.headers.get("Referer")
    if not seen:
        return None
    ours = {_origin(public_url), f"{request.scheme}://{request.host}".lower()}
    origin = _origin(seen)
    return None if origin in ours else (origin or seen[:100])


def _origin(url: str) -> str:
    try:
        parsed = URL(url.strip())
        return str(parsed.origin()).lower() if parsed.absolute and parsed.scheme in ("http", "https") else ""
    except (ValueError, TypeError):
        return ""


async def form_get(request: web.Request) -> web.Response:
    client, mailing = _form_list(request.app[RUNTIME], request)
    if request.app[RUNTIME].accounts.closed(client):
        return _signups_closed(client, mailing)
    return _form_page(200, client, mailing)


async def form_post(request: web.Request) -> web.Response:
    """The hosted form: records a pending subscriber with IP, time, user agent and the disclosure shown.

    Always double opt-in, whatever the list's confirmed_opt_in: a web form proves nothing about who
    owns the address typed in, so only the confirmation link does (SPEC §6).
    """
    runtime: Runtime = request.app[RUNTIME]
    client, mailing = _form_list(runtime, request)
    if runtime.accounts.closed(client):
        return _signups_closed(client, mailing)
    if foreign_origin(request, runtime.config.http.public_url) is not None:
        return plain_page(403, "Sign up on the list's own page",
                          "This form can only be sent from its own page. Open the sign-up page and try again.")
    try:
        form = await read_form(request)
    except BadBody as bad:
        return _form_page(422, client, mailing, "", f"{bad}: please type your address again.")
    email = form.get("email", "")
    done = page(200, "page_subscribed.html.j2", title="Check your inbox", company=client.company,
                list_name=mailing.name)
    if form.get("website"):
        return done  # the honeypot was filled: a bot. Look the same, record and send nothing
    try:
        runtime.optin.check_rate(client, request.remote)
        await runtime.optin.subscribe(
            client, mailing, email, source=f"hosted form /s/{client.name}/{mailing.key}", ip=request.remote,
            user_agent=request.headers.get("User-Agent", ""), channel="form", confirm_by_mail=True)
    except SignupRefused as refused:
        if refused.status == 429:
            return plain_page(429, "Too many sign-ups", str(refused))
        return _form_page(422, client, mailing, email, str(refused))
    # the same page whether a mail went out or the address was already subscribed: the form does not
    # tell whoever types an address what the list knows about it
    return done


async def confirm_get(request: web.Request) -> web.Response:
    """GET /c/TOKEN shows what confirming means and one button; it changes nothing."""
    runtime: Runtime = request.app[RUNTIME]
    try:
        parsed, client, mailing = runtime.optin.parse(request.match_info["token"])
    except TokenError:
        return plain_page(400, *BAD_CONFIRM_LINK)
    if runtime.accounts.closed(client):
        return _signups_closed(client, mailing)
    store = runtime.store
    try:
        found = await store.read(store.list_lookup, client.name, mailing.key, [parsed.recipient])
        record = found.consents.get(parsed.recipient)
    except Exception:  # the page still works (with its button) when storage is down
        record = None
    if record is not None and record.status == "confirmed" and record.confirmed_at is not None:
        # a used link says it is done, not the button again (issue 17)
        return page(200, "page_confirmed.html.j2", title="Already done: subscription confirmed", already="1",
                    company=client.company, list_name=mailing.name, masked=masked(parsed.recipient))
    return page(200, "page_confirm.html.j2", title=f"Confirm {mailing.name}", company=client.company,
                list_name=mailing.name, masked=masked(parsed.recipient), disclosure=mailing.disclosure)


async def confirm_post(request: web.Request) -> web.Response:
    runtime: Runtime = request.app[RUNTIME]
    token = request.match_info["token"]
    try:
        parsed, client, mailing = runtime.optin.parse(token)
        if runtime.accounts.closed(client):
            # confirming makes consent to mail from this client: not while it sends nothing
            return _signups_closed(client, mailing)
        state, client, mailing = await runtime.optin.confirm(
            token, request.remote, request.headers.get("User-Agent", ""))
    except TokenError:
        return plain_page(400, *BAD_CONFIRM_LINK)
    if state in ("confirmed", "already"):
        return page(200, "page_confirmed.html.j2", title="Subscription confirmed", company=client.company,
                    list_name=mailing.name, masked=masked(parsed.recipient))
    if state == "expired":
        return plain_page(400, "This confirmation link has expired", "Sign up again to get a new link.")
    return plain_page(400, "There is nothing to confirm",
                      "This sign-up no longer exists or was withdrawn. Sign up again if you want this list.")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/subscribers", api_subscribers)
    app.router.add_get("/s/{client}/{list}", form_get)
    app.router.add_post("/s/{client}/{list}", form_post)
    app.router.add_get("/c/{token}", confirm_get)
    app.router.add_post("/c/{token}", confirm_post)
