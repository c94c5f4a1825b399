"""Fakes of the runtime's ports, for handler tests that run without PostgreSQL or Kafka, under the runtime's own
RecordProcessor and Instances (nothing of the unit of work is re-implemented here).

- `FakeDatabase` is the runtime's `Database` in memory: each transaction claims ids in a set, queues events in a
  list and, when it raises or its COMMIT fails, leaves the store, the claims and the outbox as they were (the store
  is an `InMemoryStore`, whose tables roll back like PostgreSQL's).
- `Worker` is one process of a service: the real `RecordProcessor` around the service's `Instances`, over a
  `FakeDatabase`. Feed it events (encoded and decoded as on the wire); `restart()` keeps only the database, as a
  killed process does; two workers on one database are two workers of a group.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol

from ccxlic_audit.log import Head
from ccxlic_contract import Event, Topic, encode, key_for, topic_for
from ccxlic_contract.codec import STRUCTURED_CONTENT_TYPE
from ccxlic_runtime.db import LogRow, Transaction
from ccxlic_runtime.instances import Instances
from ccxlic_runtime.metrics import RuntimeMetrics
from ccxlic_runtime.policy import Delivery, RecordProcessor
from prometheus_client import CollectorRegistry


class RollbackStore(Protocol):
    """A fake store that can undo what a failed transaction wrote."""

    def transaction(self) -> contextmanager[None]: ...  # type: ignore[valid-type]


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


class FakeTransaction(Transaction):
    """One unit of work in memory: the runtime's Transaction with its two statements replaced."""

    def __init__(self, claimed: set[str], logs: dict[str, list[LogRow]] | None = None) -> None:
        conn: Any = None  # the fake stores ignore the connection
        super().__init__(conn, "")
        self.claimed = claimed
        self.events: list[tuple[str, Event]] = []
        self.logs = logs if logs is not None else {}

    async def log_head(self, instance: str) -> Head:
        head = Head()
        for row in self.logs.get(instance, []):
            head = head.after(row[4].encode())
        return head

    def append_log(self, instance: str, rows: Sequence[LogRow], head: Head) -> None:
        for row in rows:
            chain = self.logs.setdefault(row[0], [])
            assert row[1] == len(chain) + 1, f"entry {row[1]} of {row[0]} after entry {len(chain)}"  # the key
            chain.append(row)

    async def claim(self, key: str) -> bool:
        return key in await self.claim_many([key])

    async def claim_many(self, keys: Sequence[str]) -> set[str]:
        new = set(keys) - self.claimed
        self.claimed |= new
        return new

    async def _queue(self, rows: Sequence[tuple[str, bytes, bytes]]) -> None:
        raise AssertionError("unreachable: emit is replaced")

    async def emit(self, *events: Event, topic: Topic | None = None) -> None:
        for e in events:
            destination = topic or topic_for(e.type)
            assert destination.allows(e.type), f"{e.type} does not belong on {destination.name}"
            self.events.append((destination.name, e))
        self.emitted += len(events)


class CommitFailed(ConnectionResetError):
    """The fake COMMIT failed (a transient error, as a lost connection at COMMIT is)."""


class Crash(BaseException):
    """The process died at COMMIT: nothing in the runtime catches it."""


class FakeDatabase:
    """The runtime's Database in memory. `fail_at` = transaction numbers whose COMMIT fails (the runtime retries);
    `crash_at` = those at which the process dies (the caller restarts the worker and delivers again)."""

    def __init__(self, store: InMemoryStore) -> None:
        self.store = store
        self.claimed: set[str] = set()
        self.logs: dict[str, list[LogRow]] = {}  # each instance's licensing log (audit_log)
        self.outbox: list[tuple[str, Event]] = []
        self.transactions = 0
        self.fail_at: set[int] = set()
        self.crash_at: set[int] = set()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        self.transactions += 1
        n = self.transactions
        tx = FakeTransaction(set(self.claimed), {k: list(v) for k, v in self.logs.items()})
        with self.store.transaction():
            yield tx
            await tx.flush()
            if n in self.crash_at:
                raise Crash()
            if n in self.fail_at:
                raise CommitFailed("COMMIT failed (fake)")
        self.claimed = tx.claimed
        self.logs = tx.logs
        self.outbox.extend(tx.events)

    def published(self, since: int = 0) -> list[Event]:
        return [e for _, e in self.outbox[since:]]


def delivery(event: Event, topic: Topic | None = None, offset: int = 0, partition: int = 0) -> Delivery:
    """An event as a record on its topic (or on `topic`, for an input forwarded onto a service's stream)."""
    destination = topic or topic_for(event.type)
    headers: tuple[tuple[str, bytes | None], ...] = (("content-type", STRUCTURED_CONTENT_TYPE.encode()),)
    return Delivery(destination.name, partition, offset, key_for(event), encode(event), headers, None)


class Worker:
    """One process of a service: the runtime's RecordProcessor around `make_app()`, over a FakeDatabase."""

    def __init__(
        self,
        db: FakeDatabase,
        make_app: Callable[[], Instances[Any, Any, Any]],
        inputs: Sequence[Topic],
        *,
        service: str = "test",
    ) -> None:
        self.db = db
        self.inputs = list(inputs)
        self.service = service
        self._make_app = make_app
        self.offset = 0
        self.restart()

    def restart(self) -> None:
        """A new process: only the database survives."""
        self.app = self._make_app()
        self.registry = CollectorRegistry()
        self.metrics = RuntimeMetrics(self.registry)
        self.processor = RecordProcessor(
            service=self.service,
            inputs=self.inputs,
            prefix="",
            db=self.db,
            app=self.app,
            metrics=self.metrics,
            stop=asyncio.Event(),
            max_backoff=0.0,
        )

    def records(self, events: Iterable[Event]) -> list[Delivery]:
        """Events as records: on their own topic when the service reads it, else on its (one) input stream."""
        names = {t.name for t in self.inputs}
        out = []
        for e in events:
            self.offset += 1
            topic = topic_for(e.type) if topic_for(e.type).name in names else self.inputs[0]
            out.append(delivery(e, topic, self.offset))
        return out

    async def batch(self, *events: Event) -> list[Event]:
        """Handle the events as one batch; return what it published."""
        return await self.deliver(self.records(events))

    async def deliver(self, deliveries: Sequence[Delivery]) -> list[Event]:
        before = len(self.db.outbox)
        await self.processor.process_batch([(d, self.processor.decode(d)) for d in deliveries])
        return self.db.published(before)

    async def feed(self, events: Sequence[Event], size: int, crashes: Iterable[int] = ()) -> list[Event]:
        """Feed `events` in batches of `size`; at each batch number in `crashes` the process dies at COMMIT, is
        restarted and the batch is delivered again (the offsets were not committed). Return what was published."""
        before = len(self.db.outbox)
        crash_at = set(crashes)
        for n, start in enumerate(range(0, len(events), size)):
            records = self.records(events[start : start + size])
            if n in crash_at:
                self.db.crash_at.add(self.db.transactions + 1)
                try:
                    await self.deliver(records)
                except Crash:
                    self.restart()
            await self.deliver(records)
        return self.db.published(before)
