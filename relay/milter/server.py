"""Run `relay milter` / `relay policy` on one asyncio loop, with the relay's HTTP side for unsubscribe links."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from relay.base.heap import settle_heap
from relay.config import Config
from relay.http.app import make_app
from relay.milter.protocol import serve_connection as milter_connection
from relay.milter.session import MilterSession
from relay.policyd.protocol import serve_connection as policy_connection
from relay.policyd.service import PolicyService
from relay.runtime import Runtime
from relay.server import listening_socket, upkeep
from storage import Store

log = logging.getLogger("relay.milter")

Connection = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def listen(address: str, connection: Connection) -> asyncio.base_events.Server:
    """Postfix's socket forms: "host:port" (inet:) or "unix:/path" (a stale socket file is replaced)."""
    if address.startswith("unix:"):
        path = Path(address[5:])
        if path.is_socket():
            path.unlink()
        server = await asyncio.start_unix_server(connection, path=str(path))
        os.chmod(path, 0o666)  # Postfix's smtpd runs as the postfix user
        return server
    host, _, port = address.rpartition(":")
    return await asyncio.start_server(connection, sock=listening_socket(host.strip("[]"), int(port)))


def bound(server: asyncio.base_events.Server) -> str:
    """Where a listener ended up (port 0 becomes the port the kernel gave)."""
    name = server.sockets[0].getsockname()
    return f"unix:{name}" if isinstance(name, str) else f"{name[0]}:{name[1]}"


@dataclass
class RunningService:
    runtime: Runtime
    servers: dict[str, asyncio.base_events.Server]
    http_runner: web.AppRunner | None
    background: list[asyncio.Task] = field(default_factory=list)

    def address(self, name: str) -> str:
        return bound(self.servers[name])

    async def stop(self, grace: float = 30.0) -> None:
        self.runtime.closing = True
        for server in self.servers.values():
            server.close()
        await self.runtime.drain(grace)
        for task in self.background:
            task.cancel()
        await asyncio.wait(self.background, timeout=5.0) if self.background else None
        self.runtime.store.close_loop_reader()
        steps = [self.runtime.close(), asyncio.to_thread(self.runtime.store.close)]
        if self.http_runner is not None:
            steps.insert(0, self.http_runner.cleanup())
        for step in steps:
            try:
                await asyncio.wait_for(step, 10.0)
            except TimeoutError:
                log.warning("shutdown step did not finish in 10 s; going on")


async def start_service(config: Config, milter: bool = True, policy: bool = False, http: bool = True,
                        store: Store | None = None, http_sock: socket.socket | None = None,
                        **runtime_args: Any) -> RunningService:
    """The milter and/or policy listeners on the running loop, sharing one Runtime with the HTTP side."""
    store = store or Store(config.storage_url, background_checkpoint=True)
    store.open_loop_reader()
    runtime = Runtime(config, store, **runtime_args)
    servers: dict[str, asyncio.base_events.Server] = {}

    async def milter_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        await milter_connection(reader, writer, MilterSession(runtime, str(peer[0]) if peer else "local"))

    policy_service = PolicyService(runtime)

    async def policy_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await policy_connection(reader, writer, policy_service.decide)

    if milter:
        servers["milter"] = await listen(config.milter_listen, milter_client)
    if policy:
        servers["policy"] = await listen(config.policy_listen, policy_client)
    runner = None
    if http:  # the unsubscribe links in the copies point here (http.public_url)
        runner = web.AppRunner(make_app(runtime), access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        http_sock = http_sock or listening_socket(config.http.listen_host, config.http.listen_port)
        await web.SockSite(runner, http_sock).start()
    background = upkeep(runtime, 5.0)  # what `relay serve` runs too (relay.server.upkeep)
    return RunningService(runtime, servers, runner, background)


async def serve_until_signalled(config: Config, milter: bool, policy: bool, http: bool) -> None:
    service = await start_service(config, milter=milter, policy=policy, http=http)
    settle_heap()  # start-up's objects out of the cyclic collector's way (relay.base.heap)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    where = "  ".join(f"{name} {service.address(name)}" for name in service.servers)
    print(f"relay: {where}" + (f"  HTTP {config.http.public_url}" if http else "") + f"  (pid {os.getpid()})",
          flush=True)
    await stop.wait()
    await service.stop()
