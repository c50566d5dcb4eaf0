"""Run SMTP and HTTP on one asyncio loop; N worker processes share the ports through SO_REUSEPORT."""
from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from relay.config import Config
from relay.http.app import make_app
from relay.http.guard import GuardedSite, HttpGuard, runner_args
from relay.base.heap import settle_heap
from relay.base.loop_guard import fd_shortfall, install_loop_guard, raise_fd_limit, trim_memory_forever
from relay.base.offload import signing_threads, thread_pool
from relay.runtime import Runtime
from relay.smtp.session import RelayHandler, RelaySMTP
from relay.smtp.guard import PeerLimits, SmtpGate
from storage import Store

log = logging.getLogger("relay.server")


def listening_socket(host: str, port: int, shared: bool = False, listen: bool = True) -> socket.socket:
    """A bound socket; `shared`: with SO_REUSEPORT, for worker processes binding the same port
    (the kernel spreads connections). A lone process does without it, so a second relay started
    on its ports fails with "address in use" instead of silently taking half the connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        if listen:
            sock.listen(1024)
    except OSError as exc:
        sock.close()
        # the address goes with the error, so "address in use" says which port (SPEC §3: one clear line)
        raise OSError(exc.errno, exc.strerror, f"{host}:{port}") from None
    sock.setblocking(False)
    return sock


@dataclass
class RunningRelay:
    runtime: Runtime
    smtp_server: asyncio.base_events.Server
    http_runner: web.AppRunner
    background: list[asyncio.Task]  # the retry loop, mail log lines, the loop-lag watch, the SQLite checkpoints
    smtp_port: int
    http_port: int
    limits: PeerLimits  # the SMTP front's connection slots and AUTH accounting
    admin_runner: web.AppRunner | None = None  # the [admin] listener (relay/ops/admin.py)
    admin_port: int | None = None

    async def stop(self, grace: float = 30.0) -> None:
        """Stop accepting, let transactions in flight finish, then close everything."""
        self.runtime.closing = True
        self.smtp_server.close()
        await self.runtime.drain(grace)
        for session in list(self.runtime.sessions):
            if session.transport is not None:
                session.transport.close()
        for task in self.background:
            task.cancel()
        # bounded like every step below: a retry pass that does not end on cancellation (seen
        # intermittently in tests) once stalled the whole shutdown, leaving the store open
        _, stuck = await asyncio.wait(self.background, timeout=5.0)
        if stuck:
            log.warning("background task did not stop in 5 s; closing anyway")
        # every step is bounded: a shutdown that hangs on a lingering keep-alive or a dead
        # upstream would turn SIGTERM into SIGKILL and lose the in-flight work it protects
        self.runtime.store.close_loop_reader()
        steps = [self.admin_runner.cleanup()] if self.admin_runner is not None else []
        for step in (*steps, self.http_runner.cleanup(), self.smtp_server.wait_closed(), self.runtime.close(),
                     asyncio.to_thread(self.runtime.store.close)):
            try:
                await asyncio.wait_for(step, 10.0)
            except TimeoutError:
                log.warning("shutdown step did not finish in 10 s; going on")


def upkeep(runtime: Runtime, retry_interval: float) -> list[asyncio.Task]:
    """The background work every relay process runs (`relay serve` and `relay milter` alike): the
    retry spool, SQLite checkpoints, the mail log written in batches, webhooks, and the account
    upkeep (states polled, so a `relay client state` bites within 2 s; campaigns judged; reputation)."""
    from relay.base.maillog import flush_forever

    return [asyncio.create_task(runtime.retry_forever(retry_interval)),
            asyncio.create_task(runtime.checkpoint_forever()),
            asyncio.create_task(flush_forever()),
            asyncio.create_task(runtime.webhooks.run_forever(retry_interval)),
            asyncio.create_task(runtime.accounts.run_forever())]


async def start_relay(config: Config, store: Store | None = None, retry_interval: float = 5.0,
                      smtp_sock: socket.socket | None = None, http_sock: socket.socket | None = None,
                      shared_ports: bool = False, admin: bool = True, **runtime_args: Any) -> RunningRelay:
    """Start both listeners on the running loop; the caller awaits stop()."""
    # the admin port first: when it is taken nothing else has started yet
    admin_sock = (listening_socket(config.ops.admin_host or "", config.ops.admin_port)
                  if admin and config.ops.admin else None)
    store = store or Store(config.storage_url, background_checkpoint=True)
    store.open_loop_reader()  # SQLite: the hot-path reads run on this thread (Store.read)
    runtime = Runtime(config, store, **runtime_args)
    try:
        await runtime.accounts.refresh()  # the client states in storage, before the first MAIL
    except Exception:
        logging.getLogger("relay.server").warning("could not read the client states yet; retrying in the background")
    loop = asyncio.get_running_loop()
    handler = RelayHandler(runtime)
    smtp_sock = smtp_sock or listening_socket(config.relay.listen_host, config.relay.listen_port, shared_ports)
    # asyncio listens again on the socket it is given: without backlog= it would shrink to 100,
    # and a burst of connections beyond it would hang waiting for a banner
    backlog = max(1024, config.relay.max_connections)
    # connection slots and AUTH accounting belong to the SMTP front, one set per process
    limits = PeerLimits(config.relay.max_connections, config.relay.max_connections_per_ip,
                        config.relay.reserved_connections, config.relay.max_auth_per_ip)
    runtime.limits = limits

    def session() -> RelaySMTP:
        return RelaySMTP(handler, runtime, limits)

    smtp_server = await loop.create_server(lambda: SmtpGate(session, runtime, limits), sock=smtp_sock,
                                           backlog=backlog)
    runner = web.AppRunner(make_app(runtime), access_log=None, handle_signals=False, shutdown_timeout=2.0,
                           **runner_args(config.http))
    await runner.setup()
    http_sock = http_sock or listening_socket(config.http.listen_host, config.http.listen_port, shared_ports)
    # bounded apart from SMTP (and from the admin listener, which gets its own HttpGuard)
    await GuardedSite(runner, http_sock, HttpGuard(config.http, "public"), backlog=backlog).start()
    install_loop_guard(loop)
    background = [*upkeep(runtime, retry_interval),
                  asyncio.create_task(runtime.metrics.watch_loop_lag()),
                  asyncio.create_task(trim_memory_forever())]
    admin_runner, admin_port = None, None
    if admin_sock is not None:
        from relay.ops.admin import start_admin

        # one process of a host holds it (not SO_REUSEPORT): its /metrics reads every worker's counters
        admin_runner, admin_port = await start_admin(runtime, admin_sock), admin_sock.getsockname()[1]
    return RunningRelay(runtime, smtp_server, runner, background,
                        smtp_sock.getsockname()[1], http_sock.getsockname()[1], limits, admin_runner, admin_port)


# Threads doing Python work (MIME scans of a big message) hand the GIL back to the event loop
# only every switch interval: 5 ms by default, which every such wait adds to a loop step.
SWITCH_INTERVAL = 0.001
# glibc raises its mmap threshold to the size of each big block freed (up to 32 MB): after one
# 25 MB message every later big buffer came from the heap, and 10 KB messages then saw loop
# steps of up to 100 ms (heap growth, trimming and faults). A fixed threshold turns that off:
# buffers of 128 KiB and more are always mapped and given back whole when freed.
M_MMAP_THRESHOLD, MMAP_THRESHOLD = -3, 128 * 1024


def fix_malloc_threshold() -> bool:
    """mallopt(M_MMAP_THRESHOLD, 128 KiB) where the C library is glibc; False elsewhere."""
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


async def serve_until_signalled(config: Config, workers: int = 1, slot: int = 0,
                                on_ready: Any = None) -> None:
    sys.setswitchinterval(SWITCH_INTERVAL)
    fix_malloc_threshold()
    # a flood must meet the connection limits, not the 1,024 descriptors of a login shell
    shortfall = fd_shortfall(raise_fd_limit(), config.relay.max_connections, config.http.max_connections)
    if shortfall:
        log.warning("%s", shortfall)
    # to_thread / cpu_bound work runs on a pool started now (see thread_pool)
    asyncio.get_running_loop().set_default_executor(thread_pool(4, "cpu"))
    if os.environ.get("RELAY_SLOW_CALLBACK_MS"):
        # diagnosis (bench/run.py uses it): asyncio's debug mode logs every step that held the
        # loop longer than this, naming the coroutine; debug mode slows everything down
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = float(os.environ["RELAY_SLOW_CALLBACK_MS"]) / 1000
    from relay.base.maillog import apply_settings
    from relay.ops.reload import reload

    apply_settings(config.ops.log_format, config.ops.log_mail)
    relay = await start_relay(config, sign_threads=signing_threads(workers), shared_ports=workers > 1,
                              admin=slot == 0)
    # before the first connection: start-up's objects out of the cyclic collector's way
    relay.runtime.metrics.gc_frozen.set(settle_heap())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SIGHUP reloads relay.toml; sessions and transactions in flight go on (relay/ops/reload.py)
    loop.add_signal_handler(signal.SIGHUP, lambda: relay.runtime.spawn(reload(relay.runtime)))
    log.info("SMTP on %s:%d, HTTP on %s:%d%s (pid %d)", config.relay.listen_host, relay.smtp_port,
             config.http.listen_host, relay.http_port,
             f", admin on {config.ops.admin_host}:{relay.admin_port}" if relay.admin_port else "", os.getpid())
    http_at = f"{config.http.listen_host}:{relay.http_port}"
    links = "" if config.http.public_url.rstrip("/").endswith(f"//{http_at}") else f" (links: {config.http.public_url})"
    print(f"relay: SMTP {config.relay.listen_host}:{relay.smtp_port}  HTTP http://{http_at}{links}  "
          + (f"admin http://{config.ops.admin_host}:{relay.admin_port}  " if relay.admin_port else "")
          + f"upstream {config.upstream.url}  (pid {os.getpid()})", flush=True)
    if on_ready is not None:
        on_ready()  # the supervisor restarts a worker that dies after this, and stops all before it
    await stop.wait()
    log.info("shutting down: finishing transactions in flight")
    await relay.stop()


def serve(config: Config, workers: int = 1) -> int:
    """Run in this process, or fork `workers` processes sharing the ports (SO_REUSEPORT).

    An OSError means a port cannot be bound (the caller says so in one line). A worker that fails
    at start-up says why on stderr and exits 1; the others are then stopped and the exit status is 1.
    A worker that dies later is restarted by the parent (relay/ops/supervisor.py).
    """
    if workers <= 1:
        asyncio.run(serve_until_signalled(config))
        return 0
    # the ports are tried before forking, so a taken port is one error, not one per worker
    for host, port in ((config.relay.listen_host, config.relay.listen_port),
                       (config.http.listen_host, config.http.listen_port)):
        listening_socket(host, port, shared=True, listen=False).close()
    if config.ops.admin:  # the first worker binds it alone
        listening_socket(config.ops.admin_host or "", config.ops.admin_port, listen=False).close()
    from relay.ops.supervisor import supervise

    settle_heap()  # frozen before the fork too: a worker's collections then leave those pages shared

    def worker(slot: int, ready: Any) -> None:
        asyncio.run(serve_until_signalled(config, workers, slot, ready))

    return supervise(config, workers, worker)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `relay serve`")
