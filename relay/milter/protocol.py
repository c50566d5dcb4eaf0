"""The milter wire protocol (v6) on asyncio: kilter.protocol parses and checks, this drives the socket."""
from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from kilter.protocol import messages as m
from kilter.protocol.buffer import SimpleBuffer
from kilter.protocol.core import FilterProtocol
from kilter.protocol.exceptions import InsufficientSpace, InvalidMessage, UnexpectedMessage, UnknownMessage

log = logging.getLogger("relay.milter")
ProtocolError = (InvalidMessage, UnexpectedMessage, UnknownMessage, ValueError)

# Postfix sends body chunks of at most 64 KiB unless a larger size is negotiated (we never ask)
BUFFER_SIZE = 256 * 1024
REPLY_CHUNK = 65535  # SMFIR_REPLBODY pieces: libmilter's MILTER_CHUNK_SIZE

ACTIONS = (m.ActionFlags.ADD_HEADERS | m.ActionFlags.CHANGE_HEADERS | m.ActionFlags.CHANGE_BODY
           | m.ActionFlags.DELETE_RECIPIENT | m.ActionFlags.CHANGE_FROM | m.ActionFlags.SETSYMLIST)
# no SMTP "unknown command" or DATA events; header values with their leading space, so a field is
# rebuilt byte for byte and the DKIM signature covers exactly what Postfix will send; and no reply to
# the events that are only ever "continue" (connect, HELO, header, end of header, body chunk): the
# MTA streams them without waiting, which saves a dozen round trips per message
OPTIONS = (m.ProtocolFlags.NO_UNKNOWN | m.ProtocolFlags.NO_DATA | m.ProtocolFlags.HEADER_LEADING_SPACE
           | m.ProtocolFlags.NR_CONNECT | m.ProtocolFlags.NR_HELO | m.ProtocolFlags.NR_HEADER
           | m.ProtocolFlags.NR_END_OF_HEADERS | m.ProtocolFlags.NR_BODY)
# the macros the session needs, asked for in the negotiation (Postfix honours SETSYMLIST); the
# same names are Postfix's milter_*_macros defaults, for MTAs that ignore the request
MACROS = {
    m.Stage.CONNECT: ["j", "{client_addr}", "{client_name}"],
    m.Stage.ENVELOPE_FROM: ["i", "{auth_type}", "{auth_authen}"],
    m.Stage.END_MESSAGE: ["i"],
}


class Handler(Protocol):
    """One connection's events; each returns the reply messages (edits first, then the response)."""

    leading_space: bool

    async def event(self, message: m.Message, macros: dict[str, str]) -> list[m.Message]: ...


def reply_code(reply: str) -> m.ReplyCode:
    """SMFIR_REPLYCODE: "550 5.7.1 text" as a C string (Postfix passes it to the SMTP client)."""
    return m.ReplyCode(reply.encode("ascii", "replace") + b"\0")


def replace_body(body: bytes) -> list[m.ReplaceBody]:
    return [m.ReplaceBody(body[i:i + REPLY_CHUNK]) for i in range(0, len(body), REPLY_CHUNK)] or [m.ReplaceBody(b"")]


def negotiate_reply(offer: m.Negotiate) -> tuple[m.Negotiate, bool]:
    """Take the actions and options we need out of what the MTA offers."""
    actions = ACTIONS & offer.action_flags
    options = OPTIONS & offer.protocol_flags
    macros = MACROS if m.ActionFlags.SETSYMLIST in actions else {}
    return (m.Negotiate(6, actions, options, macros),
            m.ProtocolFlags.HEADER_LEADING_SPACE in options)


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler) -> None:
    """Read events until the MTA closes (SMFIC_QUIT) or the socket ends; answer each in order."""
    proto = FilterProtocol()
    inbox, outbox = SimpleBuffer(BUFFER_SIZE), SimpleBuffer(BUFFER_SIZE)
    macros: dict[str, str] = {}
    try:
        while True:
            data = await reader.read(inbox.available)
            if not data:
                return
            inbox[:] = data
            for message in proto.read_from(inbox):
                # messages are views of the buffer: what the handler keeps, it copies
                if isinstance(message, m.Close):
                    return
                if isinstance(message, m.Macro):
                    macros.update(message.macros)
                    continue
                if isinstance(message, m.Negotiate):
                    answer, handler.leading_space = negotiate_reply(message)
                    replies: list[m.Message] = [answer]
                else:
                    replies = await handler.event(message, macros)
                    if isinstance(message, (m.Abort, m.EndOfMessage)):
                        # a new transaction starts; the connection macros stay
                        macros = {k: v for k, v in macros.items() if k in _CONNECTION_MACROS}
                    if not proto.needs_response(message):
                        continue  # negotiated away (NR_*): the MTA is not waiting for it
                for reply in replies:
                    _send(proto, outbox, writer, reply)
            # everything answered in this read goes out in one write
            if outbox.filled:
                writer.write(outbox[:].tobytes())
                del outbox[:]
            if inbox.available == 0:
                raise InsufficientSpace("milter message larger than the buffer")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    except (*ProtocolError, InsufficientSpace) as error:
        # not the milter protocol as negotiated: drop the connection; Postfix then applies
        # milter_default_action (tempfail) to the message in progress
        log.warning("milter connection dropped: %s: %s", type(error).__name__, error)
    finally:
        writer.close()


_CONNECTION_MACROS = frozenset({"j", "{client_addr}", "{client_name}", "{daemon_name}", "{daemon_addr}", "v", "_"})


def _send(proto: FilterProtocol, outbox: SimpleBuffer, writer: asyncio.StreamWriter, reply: m.Message) -> None:
    try:
        proto.write_to(outbox, reply)
    except InsufficientSpace:
        writer.write(outbox[:].tobytes())
        del outbox[:]
        proto.write_to(outbox, reply)
