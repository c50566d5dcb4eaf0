"""The admin listener (SPEC §12): /metrics for the whole host, /healthz naming storage and upstream state."""
from __future__ import annotations

import asyncio
import os
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from storage import queue

if TYPE_CHECKING:
    from relay.runtime import Runtime

ADMIN_RUNTIME = web.AppKey("admin_runtime", object)
PROBE_TTL = 2.0        # seconds a probe result is reused: scrapes and health checks come often
PROBE_TIMEOUT = 3.0


class UpstreamProbe:
    """Is the upstream answering? A connection and its 220 greeting (then QUIT); a Maildir must be writable."""

    def __init__(self, url: str, timeout: float = PROBE_TIMEOUT) -> None:
        self.url, self.timeout = url, timeout
        self._last: tuple[float, bool, str] | None = None
        self._lock = asyncio.Lock()

    def follow(self, url: str) -> None:
        """The upstream after a reload (SIGHUP may change [upstream] url)."""
        if url != self.url:
            self.url, self._last = url, None

    async def check(self) -> tuple[bool, str]:
        async with self._lock:
            now = time.monotonic()
            if self._last is None or now - self._last[0] > PROBE_TTL:
                ok, why = await self._probe()
                self._last = (time.monotonic(), ok, why)
            return self._last[1], self._last[2]

    async def _probe(self) -> tuple[bool, str]:
        if self.url.startswith("maildir:"):
            target = Path(self.url[len("maildir:"):])
            ok = target.is_dir() and os.access(target, os.W_OK) or not target.exists() and os.access(
                target.parent, os.W_OK)
            return ok, f"maildir {target} {'writable' if ok else 'not writable'}"
        parts = urlsplit(self.url)
        host, tls = parts.hostname or "", parts.scheme == "smtps"
        port = parts.port or (465 if tls else 25)
        context = None
        if tls:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        writer = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(host, port, ssl=context)
                greeting = await reader.readline()
                while greeting[3:4] == b"-":
                    greeting = await reader.readline()
                writer.write(b"QUIT\r\n")
                await writer.drain()
        except (OSError, TimeoutError) as exc:
            return False, f"{host}:{port}: {getattr(exc, 'strerror', None) or type(exc).__name__}"
        finally:
            if writer is not None:
                writer.close()
        if not greeting.startswith(b"220"):
            return False, f"{host}:{port} greets with {greeting[:60].decode('ascii', 'replace').strip()!r}"
        return True, f"{host}:{port} answers"


class HostCollector:
    """Gauges that are one value for the whole host, read at scrape time: the retry spool and upstream health."""

    def __init__(self, runtime: "Runtime", probe: UpstreamProbe) -> None:
        self.runtime, self.probe = runtime, probe
        self.values: dict[str, float] = {}

    async def refresh(self) -> None:
        rt = self.runtime
        now = rt.services.clock()
        try:
            spool = await rt.store.run(queue.stats, rt.store.engine, now)
            oldest = spool["oldest"]
            if oldest is not None and oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=now.tzinfo)
            self.values = {"storage_up": 1, "queue": spool["total"], "held": spool["held"], "due": spool["due"],
                           "oldest": (now - oldest).total_seconds() if oldest is not None else 0.0}
        except Exception:
            self.values = {"storage_up": 0}
        self.probe.follow(rt.config.upstream.url)
        self.values["upstream_up"] = 1 if (await self.probe.check())[0] else 0

    def collect(self) -> Any:
        v = self.values
        yield GaugeMetricFamily("relay_storage_up", "1 when the database answers", value=v.get("storage_up", 0))
        yield GaugeMetricFamily("relay_upstream_up", "1 when the upstream MTA answers with its 220 greeting",
                                value=v.get("upstream_up", 0))
        if "queue" in v:
            yield GaugeMetricFamily("relay_retry_queue_copies", "Copies in the retry spool (all hosts sharing "
                                    "the database)", value=v["queue"])
            yield GaugeMetricFamily("relay_retry_queue_held", "Copies on hold (relay queue hold)", value=v["held"])
            yield GaugeMetricFamily("relay_retry_queue_due", "Copies due for an attempt now", value=v["due"])
            yield GaugeMetricFamily("relay_retry_queue_oldest_seconds", "Age of the oldest spooled copy",
                                    value=v["oldest"])


def _process_registry(runtime: "Runtime") -> CollectorRegistry:
    """This host's counters: every worker's, through prometheus-client's multiprocess files when
    `relay serve --workers N` set PROMETHEUS_MULTIPROC_DIR, else this process's own registry."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return runtime.metrics.registry


def make_admin_app(runtime: "Runtime") -> web.Application:
    probe = UpstreamProbe(runtime.config.upstream.url)
    host = HostCollector(runtime, probe)
    counters = _process_registry(runtime)
    host_registry = CollectorRegistry(auto_describe=False)
    host_registry.register(host)

    async def metrics(request: web.Request) -> web.Response:
        await host.refresh()
        body = generate_latest(counters) + generate_latest(host_registry)
        return web.Response(body=body, content_type="text/plain", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    async def healthz(request: web.Request) -> web.Response:
        """200 and `ok` only when storage and upstream both answer; else 503 naming what is down."""
        lines, healthy = [], True
        try:
            await runtime.store.run(runtime.store.ping)
            lines.append("storage: ok")
        except Exception:
            healthy = False
            lines.append("storage: down (the database does not answer)")
        probe.follow(runtime.config.upstream.url)
        up, why = await probe.check()
        healthy = healthy and up
        lines.append(f"upstream: {'ok' if up else 'down'} ({why})")
        if runtime.closing:
            healthy = False
            lines.append("relay: shutting down")
        text = ("ok\n" if healthy else "unhealthy\n") + "\n".join(lines) + "\n"
        return web.Response(status=200 if healthy else 503, text=text, headers={"Cache-Control": "no-store"})

    app = web.Application()
    app[ADMIN_RUNTIME] = runtime
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def start_admin(runtime: "Runtime", sock: Any) -> web.AppRunner:
    """Serve the admin app on `sock`; the caller cleans the runner up."""
    from relay.http.guard import GuardedSite, HttpGuard, runner_args

    runner = web.AppRunner(make_admin_app(runtime), access_log=None, handle_signals=False, shutdown_timeout=2.0,
                           **runner_args(runtime.config.http))
    await runner.setup()
    # bounded apart from the public listener: a flood of unsubscribe links never starves the scrapes
    await GuardedSite(runner, sock, HttpGuard(runtime.config.http, "admin")).start()
    return runner
