"""Group commit: the audit rows and last-contact updates of concurrent messages share one transaction."""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

log = logging.getLogger("relay.writer")


class GroupWriter:
    """Callers await their rows being committed; while one commit runs, the next batch gathers.

    A durable commit costs an fsync (about a millisecond here); with twenty sessions each
    committing alone, the database lock, not the CPU, set the pace. One writer, one commit
    per batch, and every waiter learns the outcome of the commit that carried its rows.
    """

    def __init__(self, store: Any):
        self.store = store
        self.rows: list[dict[str, Any]] = []
        self.contacts: list[tuple[str, str, list[str], datetime]] = []
        self.waiters: list[asyncio.Future[None]] = []
        # account steps (relay/accounts) of other messages, decided in the same transaction
        self.asks: list[tuple[Any, asyncio.Future[Any]]] = []
        self.task: asyncio.Task[None] | None = None

    async def write(self, rows: list[dict[str, Any]] = (), contacts: tuple = ()) -> None:  # type: ignore[assignment]
        """Add rows (and last-contact updates) and wait until they are committed; raises if the commit failed."""
        self.rows.extend(rows)
        self.contacts.extend(contacts)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(done)
        if self.task is None:
            self.task = asyncio.ensure_future(self._flush())
        await done

    async def step(self, ask: Any) -> Any:
        """One message's account step (storage.accounts.StepAsk), decided in the next group commit:
        no thread hop or commit of its own."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.asks.append((ask, done))
        if self.task is None:
            self.task = asyncio.ensure_future(self._flush())
        return await done

    async def _flush(self) -> None:
        try:
            while self.waiters or self.asks:
                if self.asks:
                    # the steps first, in a transaction without an fsync of its own: they answer
                    # before this round's audit commit, so a message never waits two durable commits
                    asks, self.asks = self.asks, []
                    try:
                        results = await self.store.run(self.store.account_steps, [a for a, _ in asks])
                    except Exception as error:
                        log.error("account steps of %d messages failed: %s", len(asks), type(error).__name__)
                        results = [error] * len(asks)
                    for (_, w), result in zip(asks, results):
                        if not w.done():
                            w.set_exception(result) if isinstance(result, Exception) else w.set_result(result)
                if not self.waiters:
                    continue
                rows, contacts, waiters = self.rows, self.contacts, self.waiters
                self.rows, self.contacts, self.waiters = [], [], []
                try:
                    await self.store.run(self.store.write_batch, rows, contacts)
                except Exception as error:
                    log.error("group commit of %d rows failed: %s", len(rows), type(error).__name__)
                    for w in waiters:
                        if not w.done():
                            w.set_exception(error)
                else:
                    for w in waiters:
                        if not w.done():
                            w.set_result(None)
        finally:
            self.task = None

    async def drain(self) -> None:
        while self.task is not None:
            await asyncio.shield(self.task)
