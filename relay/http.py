"""The HTTP side (aiohttp, same loop as SMTP): health, metrics, and the recipients' endpoints."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from relay.runtime import Runtime

log = logging.getLogger("relay.http")
RUNTIME = web.AppKey("runtime", object)


def plain_page(status: int, title: str, text: str) -> web.Response:
    """A small page for errors: no stack trace, ever."""
    from html import escape

    body = (f"<!doctype html><html lang=en><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{escape(title)}</title><body style='font-family:sans-serif;max-width:36em;margin:2em auto;"
            f"padding:0 1em'><h1>{escape(title)}</h1><p>{escape(text)}</p></body></html>")
    return web.Response(status=status, text=body, content_type="text/html")


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
    return app
