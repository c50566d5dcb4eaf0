"""SIGHUP: read relay.toml again and switch every new transaction to it, or keep the old one and say why."""
from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from relay.base.heap import settle_heap
from relay.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from relay.runtime import Runtime

log = logging.getLogger("relay.reload")
# what a running process cannot change: sockets are bound and the store is open
RESTART_ONLY = (("relay.listen", lambda c: (c.relay.listen_host, c.relay.listen_port)),
                ("http.listen", lambda c: (c.http.listen_host, c.http.listen_port)),
                ("admin.listen", lambda c: (c.ops.admin_host, c.ops.admin_port)),
                ("storage.url", lambda c: c.storage_url))


def load_checked(config: Config) -> Config:
    """The configuration file as it is now, with every file it names loaded (as start-up does);
    ConfigError naming the first problem."""
    from relay.keys import check_start_files
    from relay.runtime import check_content_rules

    new = load_config(config.path)
    check_start_files(new)
    if "content" in new.stages:
        check_content_rules(new)
    return new


def apply(runtime: "Runtime", new: Config) -> list[str]:
    """Switch the runtime to `new`: clients, lists, limits, rules, templates, keys. Sessions and
    transactions in flight keep the objects they already hold; nothing is dropped. Returns notes."""
    from filters.context import Services
    from filters.footer import templates as footer_templates
    from relay.keys import load_client_secrets, read_token_keys, tls_context
    from relay.base.maillog import apply_settings
    from relay.pipeline import Pipeline
    from relay.crypto.tokens import TokenCodec

    old = runtime.config
    # build everything first: a failure here leaves the runtime exactly as it was
    secrets = {name: load_client_secrets(c) for name, c in new.clients.items()}
    tokens = TokenCodec(read_token_keys(new), timedelta(days=new.token_max_age_days))
    pipeline = Pipeline(new.stages)
    tls = tls_context(new)
    if "footer" in new.stages:
        from filters import footer

        # compiled again now (a client's template directory may have changed), not by the next message
        for template_dir in {None, *(c.footer_templates for c in new.clients.values())}:
            footer._TEMPLATES.pop(template_dir, None)
            footer_templates(template_dir)
    notes = [f"{key} changed: takes effect at the next restart" for key, get in RESTART_ONLY
             if get(old) != get(new)]
    # the things a process cannot change keep their running values
    new = dataclasses.replace(new, relay=dataclasses.replace(
        new.relay, listen_host=old.relay.listen_host, listen_port=old.relay.listen_port),
        http=dataclasses.replace(new.http, listen_host=old.http.listen_host, listen_port=old.http.listen_port),
        storage_url=old.storage_url)
    if new.upstream != old.upstream:
        from relay.delivery.upstream import make_upstream

        previous = runtime.upstream
        runtime.upstream = make_upstream(new.upstream.url, new.upstream.pool_size, new.upstream.timeout,
                                         new.relay.hostname, new.upstream.max_connection_age,
                                         new.upstream.max_connection_messages)
        runtime.spawn(previous.close())  # lets its transactions in flight finish, then QUITs
    runtime.secrets = secrets
    runtime.tokens = tokens
    runtime.services = Services(clock=runtime.services.clock, store=runtime.store, dns=runtime.services.dns,
                                tokens=tokens)
    runtime.pipeline = pipeline
    runtime.tls_context = tls
    runtime.limits.total = new.relay.max_connections
    runtime.limits.per_ip = new.relay.max_connections_per_ip
    runtime._verified.clear()  # a changed password must not be served from the login cache
    runtime.config = new
    apply_settings(new.ops.log_format, new.ops.log_mail)
    return notes


async def reload(runtime: "Runtime") -> bool:
    """Reload from the file the runtime was started with; one log line either way."""
    try:
        new = await asyncio.to_thread(load_checked, runtime.config)
        notes = apply(runtime, new)
    except (ConfigError, OSError, ValueError) as exc:
        log.error("reload refused, keeping the running configuration: %s",
                  str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return False
    log.info("configuration reloaded from %s (%d client(s))%s", runtime.config.path, len(runtime.config.clients),
             "; " + "; ".join(notes) if notes else "")
    if gc.get_freeze_count():  # a served process froze its start-up heap: freeze what the reload compiled too
        runtime.metrics.gc_frozen.set(settle_heap())
    return True
