"""SMTP under abuse: slots kept for clients that log in, commands without progress, AUTH concurrency, paths."""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import defaultdict
from functools import partial
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from relay import replies
from relay.base.windows import SlidingWindows, peer_key

if TYPE_CHECKING:
    from relay.runtime import Runtime
    from relay.smtp.session import RelaySMTP

log = logging.getLogger("relay.smtp")

# How a connection holds its slot. "trusted": authenticated, or a peer inside a client's networks;
# "open": an ordinary pre-AUTH slot; "probation": taken from the reserve while the ordinary pre-AUTH
# slots are full, so it must authenticate (or write to an intake address) at once.
TRUSTED, OPEN, PROBATION = "trusted", "open", "probation"
# a connection on probation may send a few commands that lead nowhere (EHLO, EHLO again after
# STARTTLS): more, and it was only holding the slot
PROBATION_COMMANDS_WITHOUT_PROGRESS = 3
PROBATION_TIMEOUT = 10.0


class Slots:
    """Connections in total and per peer address; pre-AUTH connections never take the last `reserved` slots.

    When the ordinary pre-AUTH slots are full, a new connection may still take a reserved slot on
    probation (at most `probation_per_ip` per address, IPv6 per /64): it gets a short timeout and
    almost no commands without progress. Authenticating moves a connection out of the pre-AUTH
    count, so clients that log in always find room, whoever holds the pre-AUTH slots.
    """

    def __init__(self, total: int, per_ip: int, reserved: int = 0, probation_per_ip: int = 2):
        self.total, self.per_ip = total, per_ip
        self.reserved = min(reserved, total // 5)  # a small test relay keeps most of its few slots
        self.probation_per_ip = probation_per_ip
        self.open_total = 0
        self.open_by_ip: dict[str, int] = defaultdict(int)
        self.pre_auth = 0
        self.probation_by_peer: dict[str, int] = defaultdict(int)

    def admit(self, ip: str, trusted: bool, known: bool = False) -> tuple[str | None, str]:
        """(None, kind of slot) for a connection let in, or (the 421 reply, "") for one refused.

        `known`: the address logged in lately; its connections may use the whole reserve on
        probation (a client's pool connects several at once), a stranger's only `probation_per_ip`.
        """
        if self.open_total >= self.total:
            return replies.TOO_MANY_CONNECTIONS, ""
        if self.open_by_ip[ip] >= self.per_ip:
            return replies.TOO_MANY_CONNECTIONS_FROM_IP, ""
        if trusted:
            kind = TRUSTED
        elif self.pre_auth < self.total - self.reserved:
            kind = OPEN
            self.pre_auth += 1
        elif self.probation_by_peer[peer_key(ip)] < (self.reserved if known else self.probation_per_ip):
            kind = PROBATION
            self.probation_by_peer[peer_key(ip)] += 1
        else:
            return replies.TOO_MANY_CONNECTIONS, ""
        self.open_total += 1
        self.open_by_ip[ip] += 1
        return None, kind

    def _leave(self, ip: str, kind: str) -> None:
        if kind == OPEN:
            self.pre_auth -= 1
        elif kind == PROBATION:
            key = peer_key(ip)
            self.probation_by_peer[key] -= 1
            if self.probation_by_peer[key] <= 0:
                del self.probation_by_peer[key]

    def promote(self, ip: str, kind: str) -> str:
        """The connection authenticated: it leaves the pre-AUTH count; returns its new kind."""
        self._leave(ip, kind)
        return TRUSTED

    def release(self, ip: str, kind: str = OPEN) -> None:
        self._leave(ip, kind)
        self.open_total -= 1
        self.open_by_ip[ip] -= 1
        if self.open_by_ip[ip] <= 0:
            del self.open_by_ip[ip]


def admission(runtime: "Runtime", limits: "PeerLimits", ip: str) -> tuple[str | None, str]:
    """(None, kind of slot) or (the 421 reply, ""), for a new connection from `ip`."""
    refusal = runtime.refusal_for_new_connection()
    if refusal is not None:
        return refusal, ""
    trusted = runtime.config.client_for_peer(ip) is not None
    return limits.admit(ip, trusted, limits.logged_in_lately(ip))


class SmtpGate(asyncio.Protocol):
    """What the SMTP listener makes for each new connection: admitted, it hands the transport to a new
    session (`make()`); refused, it writes the 421 and closes. aiosmtpd's session costs about a
    millisecond to make (it inspects its handler and methods), which a connection flood paid for every
    connection it was refused."""

    def __init__(self, make: Callable[[], "RelaySMTP"], runtime: "Runtime", limits: "PeerLimits"):
        self.make, self.runtime, self.limits = make, runtime, limits

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername") or ("", 0)
        ip = str(peer[0])
        refusal, kind = admission(self.runtime, self.limits, ip)
        if refusal is not None:
            transport.write((refusal + "\r\n").encode("ascii"))  # type: ignore[attr-defined]
            transport.close()
            return
        session = self.make()
        session.peer_ip, session.slot_kind = ip, kind
        transport.set_protocol(session)  # type: ignore[attr-defined]
        session.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        pass  # what a refused connection sent before the close

    def eof_received(self) -> bool:
        return False


class AuthGate:
    """At most `per_peer` AUTH verifications (scrypt and the failure delay) at once from one address.

    Over the cap an attempt waits its turn (up to `wait` seconds, then 454): a client's pool that logs
    in all at once after a restart gets through, while 100 parallel connections guessing passwords
    get no more verifications than one connection would.
    """

    def __init__(self, per_peer: int, wait: float = 10.0):
        self.per_peer, self.wait = per_peer, wait
        self.gates: dict[str, list] = {}  # peer → [semaphore, users]
        self.busy: dict[str, int] = defaultdict(int)
        self.peak = 0  # the most verifications seen at once from one address

    async def enter(self, ip: str) -> bool:
        key = peer_key(ip)
        gate = self.gates.setdefault(key, [asyncio.Semaphore(self.per_peer), 0])
        gate[1] += 1
        try:
            await asyncio.wait_for(gate[0].acquire(), self.wait)
        except TimeoutError:
            self._drop(key, gate)
            return False
        self.busy[key] += 1
        self.peak = max(self.peak, self.busy[key])
        return True

    def leave(self, ip: str) -> None:
        key = peer_key(ip)
        gate = self.gates[key]
        gate[0].release()
        self.busy[key] -= 1
        if self.busy[key] <= 0:
            del self.busy[key]
        self._drop(key, gate)

    def _drop(self, key: str, gate: list) -> None:
        gate[1] -= 1
        if gate[1] <= 0:
            del self.gates[key]


def log_auth_failure(ip: str, user: bytes, mechanism: str, why: str = "invalid credentials") -> None:
    """One WARNING line a fail2ban filter can match: address, user and mechanism, never the secret."""
    name = replies.one_line(user.decode("utf-8", "replace"))[:100]
    log.warning("AUTH failed from %s: user=%r mechanism=%s (%s)", ip, name, mechanism, why)


# --- commands without progress ---

def _progress(server: "RelaySMTP") -> tuple[int, ...]:
    """A marker that only grows when the session gets somewhere (pre-AUTH, MAIL alone is not progress:
    MAIL and RSET in turns would otherwise hold a slot for ever)."""
    session, envelope = server.session, server.envelope
    authenticated = bool(session is not None and session.authenticated) or server.slot_kind == TRUSTED
    mail = int(authenticated and envelope is not None and envelope.mail_from is not None)
    rcpts = len(envelope.rcpt_tos) if envelope is not None else 0
    return (int(authenticated), int(server._tls_protocol is not None), server.messages_done, mail, rcpts)


def _advanced(before: tuple[int, ...], after: tuple[int, ...]) -> bool:
    return any(b > a for a, b in zip(before, after))


async def run_command(server: "RelaySMTP", command: str, method: Callable[[Any], Awaitable[None]] | None,
                      arg: Any) -> None:
    """Run one command and count it when it led nowhere; after too many such in a row, the next gets 421."""
    limit = (PROBATION_COMMANDS_WITHOUT_PROGRESS if server.slot_kind == PROBATION
             else server.runtime.config.relay.max_commands_without_progress)
    if server.idle_commands >= limit and command != "QUIT":
        log.info("closing %s: %d commands without progress", server.peer_ip, server.idle_commands)
        await server.push(replies.NO_PROGRESS)
        if server.transport is not None:
            server.transport.close()
        return
    before = _progress(server)
    if method is None:
        # never echo or log the line: after a refused AUTH a naive client sends base64(password) as a command
        await server.push(replies.UNKNOWN_COMMAND)
    else:
        await method(arg)
    if _advanced(before, _progress(server)):
        server.idle_commands = 0
    else:
        server.idle_commands += 1


class CommandTable(dict):
    """aiosmtpd's command table, looked up once per command line: every command, known or not,
    runs through `run_command`, so junk is answered without echoing it and counted."""

    def __init__(self, methods: dict[str, Any], server: "RelaySMTP"):
        super().__init__(methods)
        self.server = server

    def get(self, command: str, default: Any = None) -> Any:  # type: ignore[override]
        method = super().get(command)
        wrapped = partial(run_command, self.server, command, method)
        for name in ("__smtp_syntax__", "__smtp_syntax_extended__", "__smtp_syntax_when__"):
            if hasattr(method, name):  # HELP MAIL still finds the syntax text
                setattr(wrapped, name, getattr(method, name))
        return wrapped


# --- envelope syntax the address parser would forgive ---

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def envelope_refusal(path: str, bad_syntax: str) -> str | None:
    """The reply for a MAIL/RCPT path that must be refused before parsing, else None.

    aiosmtpd's parser reads a control character as folding white space and drops it
    (`<smug@exam\\x0bple.org>` became smug@example.org), and drops a source route
    (`<@hop:user@host>`, RFC 5321 §4.1.2 obs) leaving user@host: neither is what was sent.
    """
    if _CONTROL.search(path):
        return f"{bad_syntax}: control characters are not allowed in an address"
    if path.lstrip().startswith("<@"):
        return f"{bad_syntax}: source routes (<@host:user@domain>) are not accepted"
    return None


class PeerLimits(Slots):
    """Connection slots (above), recent AUTH failures per address (IPv6: per /64) and
    AUTH verifications in progress per address."""

    def __init__(self, total: int, per_ip: int, reserved: int = 0, auth_per_ip: int = 3):
        super().__init__(total, per_ip, reserved)
        self.auth_failures = SlidingWindows(600.0)
        self.auth_gate = AuthGate(auth_per_ip)
        self.last_login: dict[str, float] = {}  # peer → when it last logged in (clients: a bounded set)

    def note_login(self, ip: str) -> None:
        self.last_login[peer_key(ip)] = time.monotonic()

    def logged_in_lately(self, ip: str, within: float = 3600.0) -> bool:
        when = self.last_login.get(peer_key(ip))
        return when is not None and time.monotonic() - when < within

    def recent_failures(self, ip: str) -> int:
        return self.auth_failures.count(peer_key(ip))

    def note_failure(self, ip: str) -> None:
        self.auth_failures.add(peer_key(ip))
