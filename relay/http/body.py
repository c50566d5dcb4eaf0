"""Reading untrusted request bodies: a body the relay cannot read is the sender's fault (4xx), never a 500."""
from __future__ import annotations

import json
import logging
import urllib.parse

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.web_protocol import RequestPayloadError

# how aiohttp reports a body the client botched: bad gzip/deflate (RequestPayloadError), bad chunking,
# a body cut short (the connection dropped)
UNREADABLE = (BadHttpMessage, RequestPayloadError, ConnectionError)

log = logging.getLogger("relay.http")

BODY_LIMIT = 64 * 1024  # forms and API calls are a few hundred bytes; beyond this aiohttp answers 413


class BadBody(ValueError):
    """A body that is not UTF-8, not a form, or not JSON (the message is safe to show)."""


async def _raw(request: web.Request) -> bytes:
    """The body; a body the client botched (bad gzip or deflate, bad chunking, cut short) is BadBody
    and one INFO line: the client's mistake, not the relay's (413 passes through)."""
    try:
        return await request.read()
    except UNREADABLE as exc:
        _mistake(request, exc)
        raise BadBody("the body could not be read") from None


def _mistake(request: web.Request, exc: BaseException) -> None:
    """One INFO line per botched body (aiohttp's own report of it, on the same connection, is dropped)."""
    log.info("unreadable request body from %s: %s", request.remote, type(exc).__name__)
    if hasattr(request.protocol, "mistake_logged"):
        request.protocol.mistake_logged = True


def _utf8(raw: bytes) -> str:
    # forms from our pages and JSON (RFC 8259 §8.1) are UTF-8: a charset parameter saying otherwise
    # is ignored rather than looked up (an unknown one would raise LookupError)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("the body is not UTF-8") from None


async def read_form(request: web.Request) -> dict[str, str]:
    """The text fields of a form POST (first value of each name); file parts are ignored.

    Any content type other than multipart/form-data is read as application/x-www-form-urlencoded,
    so an RFC 8058 one-click POST sent without a Content-Type still reads as one.
    Raises BadBody for a body that cannot be read; HTTPRequestEntityTooLarge (413) passes through.
    """
    fields: dict[str, str] = {}
    if request.content_type == "multipart/form-data":
        try:
            form = await request.post()
        except (ValueError, LookupError, AssertionError):  # no or wrong boundary, broken parts, bad charset
            raise BadBody("the form could not be read") from None
        except UNREADABLE as exc:
            _mistake(request, exc)
            raise BadBody("the body could not be read") from None
        for name, value in form.items():
            if isinstance(value, str):
                fields.setdefault(name, value)
        return fields
    text = _utf8(await _raw(request))
    try:
        pairs = urllib.parse.parse_qsl(text.strip(), keep_blank_values=True, encoding="utf-8", errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise BadBody("the form could not be read") from None
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


async def read_json(request: web.Request) -> object:
    """The JSON document of the body, whatever the Content-Type says; raises BadBody when it is not one."""
    text = _utf8(await _raw(request))
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # syntax, huge integers, nesting deeper than the parser's stack
        raise BadBody("the body must be a JSON object") from None


def unencodable(value: str) -> bool:
    """True for text holding lone surrogates (JSON "\\ud800"): no database or mail can store it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
