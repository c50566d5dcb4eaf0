"""The HTTP side (aiohttp, same loop as SMTP): health, metrics, and the recipients' endpoints."""
from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

import jinja2
from aiohttp import web

from relay.tokens import TokenError
from relay.unsubscribe import unsubscribe

if TYPE_CHECKING:
    from relay.runtime import Runtime

log = logging.getLogger("relay.http")
RUNTIME = web.AppKey("runtime", object)


@functools.cache
def _pages() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("footer_templates", "."), autoescape=True)


def page(status: int, template: str, **values: str) -> web.Response:
    body = _pages().get_template(template).render(**values)
    # no caching and no cookies: each page reflects the state now, for anyone holding the link
    return web.Response(status=status, text=body, content_type="text/html",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def plain_page(status: int, title: str, text: str) -> web.Response:
    """A small page for errors: no stack trace, ever."""
    return page(status, "page_message.html.j2", title=title, text=text)


def masked(address: str) -> str:
    """a***@example.org: pages never show the whole address to whoever holds the link."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


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
    return page(200, "page_unsubscribe.html.j2", title=f"Unsubscribe from {values['list_name']}", **values)


async def unsubscribe_post(request: web.Request) -> web.Response:
    """POST unsubscribes at once: the page's button, or RFC 8058 List-Unsubscribe=One-Click."""
    runtime: Runtime = request.app[RUNTIME]
    token = request.match_info["token"]
    form = await request.post()
    channel = "one-click" if form.get("List-Unsubscribe") == "One-Click" else "page"
    try:
        values = _token_page_values(runtime, token)
        await unsubscribe(runtime, token, channel, request.remote)
    except TokenError:
        return plain_page(400, *BAD_LINK)
    return page(200, "page_unsubscribed.html.j2", title="You are unsubscribed", **values)


@web.middleware
async def no_tracebacks(request: web.Request, handler):  # type: ignore[no-untyped-def]
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "text/html":
            return plain_page(exc.status, exc.reason, exc.reason)
        raise
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path)
        return plain_page(500, "Something went wrong", "Please try again in a few minutes.")


async def healthz(request: web.Request) -> web.Response:
    runtime: Runtime = request.app[RUNTIME]
    try:
        await runtime.store.run(runtime.store.ping)
    except Exception:
        return web.Response(status=503, text="storage unavailable\n")
    return web.Response(text="ok\n")


async def metrics(request: web.Request) -> web.Response:
    runtime: Runtime = request.app[RUNTIME]
    return web.Response(body=runtime.metrics.render(), content_type="text/plain", charset="utf-8")


def make_app(runtime: "Runtime") -> web.Application:
    app = web.Application(middlewares=[no_tracebacks], client_max_size=64 * 1024)
    app[RUNTIME] = runtime
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/u/{token}", unsubscribe_page)
    app.router.add_post("/u/{token}", unsubscribe_post)
    from relay.http_optin import add_routes

    add_routes(app)
    return app
