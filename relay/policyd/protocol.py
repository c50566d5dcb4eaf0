"""The policy delegation protocol: name=value lines ending in an empty line; one action=... reply each."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from relay import replies

log = logging.getLogger("relay.policy")

MAX_REQUEST = 64 * 1024  # Postfix's attributes of one request are a few hundred bytes
DUNNO = "DUNNO"


def parse_request(lines: list[bytes]) -> dict[str, str]:
    """One request's attributes; a line without "=" is ignored, as Postfix's own servers do."""
    request: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.decode("utf-8", "replace").partition("=")
        if sep:
            request[name.strip()] = value.strip()
    return request


def action_line(action: str) -> bytes:
    """`action=...` and the empty line; no CR/LF from any reason can split it."""
    return f"action={replies.one_line(action)}\n\n".encode("ascii", "replace")


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           decide: Callable[[dict[str, str]], Awaitable[str]]) -> None:
    """Postfix keeps the connection open for many requests: answer each in turn until it closes."""
    try:
        while True:
            lines: list[bytes] = []
            size = 0
            while True:
                line = await reader.readline()
                if not line:
                    return
                size += len(line)
                if size > MAX_REQUEST:
                    return  # not Postfix: drop the connection
                line = line.rstrip(b"\r\n")
                if not line:
                    break
                lines.append(line)
            try:
                action = await decide(parse_request(lines))
            except Exception as error:  # a 4xx for this recipient, never a traceback
                replies.exception_reply(error)
                action = "DEFER_IF_PERMIT 4.3.0 Internal error in the relay's policy service; try again later"
            writer.write(action_line(action))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        return
    finally:
        writer.close()
