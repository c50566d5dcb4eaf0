"""GET /api/v1/suppressions and /api/v1/events: a client reads its own feedback, paged JSON, Bearer token."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from storage.feedback import event_payload

if TYPE_CHECKING:
    from relay.config import ClientConfig
    from relay.runtime import Runtime

# What the HTTP front hands in (relay.http.make_app), so this package never imports the front: the app
# key of the Runtime, the client API token check, and the exception that check raises when throttled.
RUNTIME_KEY = web.AppKey("feedback_runtime_key", object)
AUTHENTICATE = web.AppKey("feedback_authenticate", object)
THROTTLED = web.AppKey("feedback_throttled", object)

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


class BadQuery(ValueError):
    def __init__(self, field: str, text: str):
        super().__init__(text)
        self.field = field


def parse_since(text: str | None) -> datetime | None:
    """ISO 8601 date or date-time; a time without an offset is UTC."""
    if text is None or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise BadQuery("since", "since must be an ISO 8601 date or date-time, e.g. 2026-12-01T00:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadQuery(name, f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise BadQuery(name, f"{name} must be between {low} and {high}")
    return value


def _suppression_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "scope": row["scope"], "list": row["list_key"] or None,
            "address": row["address"] or None, "domain": row["domain"] or None, "reason": row["reason"],
            "source": row["source"], "created_at": row["created_at"].isoformat()}


def _json_error(status: int, error: str, field: str | None = None) -> web.Response:
    return web.json_response({"error": error} | ({"field": field} if field else {}), status=status)


def _runtime(request: web.Request) -> "Runtime":
    return request.app[request.app[RUNTIME_KEY]]  # type: ignore[index]


async def _page(request: web.Request, fetch: Callable[..., list[dict[str, Any]]],
                shape: Callable[[dict[str, Any]], dict[str, Any]]) -> web.Response:
    runtime = _runtime(request)
    authenticate: Callable[..., Awaitable["ClientConfig | None"]] = request.app[AUTHENTICATE]  # type: ignore[assignment]
    try:
        client = await authenticate(runtime, request)
    except request.app[THROTTLED]:  # type: ignore[misc]
        return _json_error(429, "too many wrong API tokens from this address; try again later")
    if client is None:
        return _json_error(401, "missing or invalid API token (Authorization: Bearer ...)")
    try:
        since = parse_since(request.query.get("since"))
        after = _int(request, "after", 0, 0, 2**62)
        limit = _int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    except BadQuery as bad:
        return _json_error(422, str(bad), bad.field)
    rows = await runtime.store.run(fetch, client.name, since, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = rows[-1]["id"] if rows else after
    next_url = None
    if more:
        query = dict(request.query, after=str(cursor), limit=str(limit))
        next_url = str(request.rel_url.with_query(query))
    return web.json_response({"data": [shape(r) for r in rows], "cursor": cursor, "next": next_url},
                             headers={"Cache-Control": "no-store"})


async def api_suppressions(request: web.Request) -> web.Response:
    """The client's suppressions (client-wide and its lists'), oldest first, `after` the cursor."""
    runtime = _runtime(request)
    return await _page(request, runtime.store.client_suppressions, _suppression_json)


async def api_events(request: web.Request) -> web.Response:
    """The client's events: bounce, complaint, feedback (other ARF types), unsubscribe."""
    runtime = _runtime(request)
    # whether an event suppressed is told by the suppressions list (and in webhooks, sent at the time)
    return await _page(request, runtime.store.feedback_events,
                       lambda r: {k: v for k, v in event_payload(r, False).items() if k != "suppressed"})


def add_routes(app: web.Application, runtime_key: web.AppKey, authenticate: Callable[..., Awaitable[Any]],
               throttled: type[Exception]) -> None:
    """Mount the two GET endpoints; `authenticate(runtime, request)` is the subscriber API's Bearer check."""
    app[RUNTIME_KEY], app[AUTHENTICATE], app[THROTTLED] = runtime_key, authenticate, throttled
    app.router.add_get("/api/v1/suppressions", api_suppressions)
    app.router.add_get("/api/v1/events", api_events)
