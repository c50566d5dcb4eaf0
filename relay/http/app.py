"""The public HTTP side (aiohttp, same loop as SMTP): the recipients' endpoints (health and metrics: relay/ops/admin.py)."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from relay.http.body import BODY_LIMIT, BadBody, read_form
from relay.http.guard import guard_requests, security_headers
from relay.http.pages import RUNTIME, masked, page, plain_page
from relay.crypto.tokens import TokenError
from relay.services.unsubscribe import unsubscribe

if TYPE_CHECKING:
    from relay.runtime import Runtime

log = logging.getLogger("relay.http")


def _token_page_values(runtime: "Runtime", token: str) -> dict[str, str]:
    parsed = runtime.tokens.verify(token, "unsubscribe", runtime.services.clock())
    client = runtime.config.clients.get(parsed.client)
    if client is None or parsed.list_key not in client.lists:
        raise TokenError("the list of this link no longer exists")
    return {"company": client.company, "contact_email": client.contact_email,
            "list_name": client.lists[parsed.list_key].name, "masked": masked(parsed.recipient)}


BAD_LINK = ("This unsubscribe link is not valid",
            "The link may be incomplete or too old. Use the link in a recent message, or reply to the sender.")


async def unsubscribe_page(request: web.Request) -> web.Response:
    """GET shows what unsubscribing does and one button; it changes nothing (link scanners GET)."""
    runtime: Runtime = request.app[RUNTIME]
    try:
        values = _token_page_values(runtime, request.match_info["token"])
    except TokenError:
        return plain_page(400, *BAD_LINK)
    if await _already_unsubscribed(runtime, request.match_info["token"]):
        # a used link says it is done, not the button again (issue 17)
        return page(200, "page_unsubscribed.html.j2", title="Already done: you are unsubscribed", already="1",
                    **values)
    return page(200, "page_unsubscribe.html.j2", title=f"Unsubscribe from {values['list_name']}", **values)


async def _already_unsubscribed(runtime: "Runtime", token: str) -> bool:
    parsed = runtime.tokens.verify(token, "unsubscribe", runtime.services.clock())
    store = runtime.store
    try:
        found = await store.read(store.list_lookup, parsed.client, parsed.list_key, [parsed.recipient])
    except Exception:  # the page still works (with its button) when storage is down
        log.warning("could not look up the unsubscribe state; showing the button")
        return False
    return parsed.recipient in found.unsubscribed


async def _one_click(request: web.Request) -> bool:
    """True when the body is RFC 8058's List-Unsubscribe=One-Click; any other body is the page's button."""
    try:
        form = await read_form(request)
    except (BadBody, web.HTTPRequestEntityTooLarge):
        # the POST to the link is the request to unsubscribe (SPEC §6, whatever the body): a body we
        # cannot read, or one too large, only loses the channel
        return False
    return form.get("List-Unsubscribe") == "One-Click"


async def unsubscribe_post(request: web.Request) -> web.Response:
    """POST unsubscribes at once: the page's button, or RFC 8058 List-Unsubscribe=One-Click."""
    runtime: Runtime = request.app[RUNTIME]
    token = request.match_info["token"]
    try:
        values = _token_page_values(runtime, token)
    except TokenError:
        return plain_page(400, *BAD_LINK)
    channel = "one-click" if await _one_click(request) else "page"
    try:
        await unsubscribe(runtime, token, channel, request.remote)
    except TokenError:
        return plain_page(400, *BAD_LINK)
    return page(200, "page_unsubscribed.html.j2", title="You are unsubscribed", **values)


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def _error(request: web.Request, status: int, title: str, text: str) -> web.Response:
    """An error as the caller reads it: JSON for the API, a plain page for people."""
    if _is_api(request):
        return web.json_response({"error": text}, status=status)
    return plain_page(status, title, text)


def _route_for_log(request: web.Request) -> str:
    """The route's pattern (/u/{token}), not the path: paths carry tokens, which never go into logs (SPEC §8)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"


@web.middleware
async def no_tracebacks(request: web.Request, handler):  # type: ignore[no-untyped-def]
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and (exc.content_type != "text/html" or _is_api(request)):
            answer = _error(request, exc.status, exc.reason, exc.reason)
            if "Allow" in exc.headers:  # RFC 9110 §15.5.6: a 405 says which methods the resource takes
                answer.headers["Allow"] = exc.headers["Allow"]
            return answer
        raise
    except Exception:
        log.exception("HTTP %s %s failed", request.method, _route_for_log(request))
        return _error(request, 500, "Something went wrong", "Please try again in a few minutes.")


class _NoRequestBytes(logging.Filter):
    """aiohttp logs a request it cannot parse with a traceback and the line's first 100 bytes, which
    can hold a token (/u/TOKEN?…8 KB…): keep the peer and the kind of error, at INFO (it is the sender's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BadHttpMessage):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "malformed HTTP request from %s: %s", (peer, type(exc).__name__)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_NO_REQUEST_BYTES = _NoRequestBytes()


def make_app(runtime: "Runtime") -> web.Application:
    logging.getLogger("aiohttp.server").addFilter(_NO_REQUEST_BYTES)  # once: addFilter skips a repeat
    app = web.Application(middlewares=[guard_requests, no_tracebacks], client_max_size=BODY_LIMIT)
    app.on_response_prepare.append(security_headers)
    app[RUNTIME] = runtime
    # /healthz and /metrics are on the admin listener (relay/ops/admin.py, SPEC §12), never here
    app.router.add_get("/u/{token}", unsubscribe_page)
    app.router.add_post("/u/{token}", unsubscribe_post)
    from relay.http.optin import add_routes

    add_routes(app)
    from relay.feedback.http import add_routes as add_feedback_routes
    from relay.http.optin import TooManyFailures, _api_client

    add_feedback_routes(app, RUNTIME, _api_client, TooManyFailures)  # GET /api/v1/suppressions, /events
    return app
