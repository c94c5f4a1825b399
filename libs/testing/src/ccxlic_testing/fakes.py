"""Fakes of the runtime's ports, for handler tests that run without PostgreSQL or Kafka.

`FakeTransaction` is the runtime's `Transaction` with the two statements that touch PostgreSQL replaced: claims
go to a set and emitted events to a list. Everything else (scratch, the before-commit flushes, the after-commit
callbacks) is the runtime's own code, so a handler behaves as it does inside `Database.transaction`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from ccxlic_contract import Event
from ccxlic_runtime.consumer import TRANSIENT_ERRORS, Delivery, Handler
from ccxlic_runtime.db import Transaction

DELIVERY = Delivery("a-topic", 0, 0, None, None, (), 0)
"""Where a fed event "came from"; handlers read it only to dead-letter."""


class FakeTransaction(Transaction):
    """One unit of work in memory. `await tx.commit()` runs the flushes and callbacks a real commit runs."""

    def __init__(self, claimed: set[str] | None = None) -> None:
        conn: Any = None  # the fake stores ignore the connection
        super().__init__(conn, "")
        self.claimed = claimed if claimed is not None else set()
        self.events: list[Event] = []

    async def claim(self, key: str) -> bool:
        return key in await self.claim_many([key])

    async def claim_many(self, keys: Sequence[str]) -> set[str]:
        new = set(keys) - self.claimed
        self.claimed |= new
        return new

    async def emit(self, *events: Event) -> None:
        self.events.extend(events)
        self.emitted += len(events)

    async def commit(self) -> list[Event]:
        """Finish as `Database.transaction` does; return what was emitted."""
        await self._finish()
        self._committed()
        return self.events


class RollbackStore(Protocol):
    """A fake store that can undo what a failed transaction wrote."""

    def transaction(self) -> AbstractContextManager[None]: ...


class InMemoryStore:
    """Base of the in-memory stores: keep the tables as attributes; what is written inside `transaction()` is
    undone when it raises, as PostgreSQL undoes a transaction that fails (in a statement or at COMMIT)."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        saved = copy.deepcopy(vars(self))
        try:
            yield
        except BaseException:
            vars(self).update(saved)
            raise


class CommitFailed(Exception):
    """The fake COMMIT failed (handle_batch with commit=False)."""


async def handle_batch(
    handler: Handler, events: Iterable[Event], claimed: set[str], store: RollbackStore, *, commit: bool = True
) -> list[Event]:
    """Handle a batch in one fake transaction as the runtime's RecordProcessor does (each event id claimed once in
    `claimed`, the dedup record); return what it emitted. When the handler raises, or with commit=False (the COMMIT
    fails, as PostgreSQL's can), the store and the dedup record are left as they were and no after-commit callback
    runs; commit=False returns what would have been emitted."""
    tx = FakeTransaction(set(claimed))
    try:
        with store.transaction():
            for event in [e for e in events if await tx.claim(e.id)]:
                await handler(tx, event, DELIVERY)
            await tx._finish()
            if not commit:
                raise CommitFailed()
    except CommitFailed:
        return tx.events
    claimed |= tx.claimed
    tx._committed()
    return tx.events


class HandlerHarness:
    """A service's handler on a fake store, fed batch by batch. `restart()` keeps only the store and the dedup
    record, as a killed process does. Two harnesses on one store and one `claimed` set are two workers of a group."""

    def __init__(
        self, store: RollbackStore, make_handler: Callable[[], Handler], claimed: set[str] | None = None
    ) -> None:
        self.store = store
        self.claimed: set[str] = claimed if claimed is not None else set()
        self._make_handler = make_handler
        self.retries = 0
        self.restart()

    def restart(self) -> None:
        self.handler = self._make_handler()

    async def batch(self, *events: Event, commit: bool = True) -> list[Event]:
        """One attempt; a transient error is raised (see `process`)."""
        return await handle_batch(self.handler, events, self.claimed, self.store, commit=commit)

    async def process(self, *events: Event, attempts: int = 3) -> list[Event]:
        """As the runtime does: a transient error (e.g. ConcurrentUpdate) retries the whole batch."""
        for _ in range(attempts - 1):
            try:
                return await self.batch(*events)
            except TRANSIENT_ERRORS:
                self.retries += 1
        return await self.batch(*events)  # the last attempt raises what it meets

    async def feed(self, events: Sequence[Event], size: int, crashes: Iterable[int] = ()) -> list[Event]:
        """Feed `events` in batches of `size`; at each batch number in `crashes`, the commit fails, the process
        restarts and the batch is delivered again. Return everything published."""
        out: list[Event] = []
        crash_at = set(crashes)
        for n, start in enumerate(range(0, len(events), size)):
            batch = events[start : start + size]
            if n in crash_at:
                await self.batch(*batch, commit=False)
                self.restart()
            out += await self.batch(*batch)
        return out
