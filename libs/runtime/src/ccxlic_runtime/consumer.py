"""One consumer loop and one error policy for every service.

Records are handled in batches, in partition order, each batch in one PostgreSQL transaction:
- each record is decoded and validated against the contract; bytes that fail, or a type that does not belong on
  the topic, go to `licensing.dead-letter` with the reason and the original bytes, and the batch goes on;
- the runtime writes the dedup record (the event `id`); an event seen before is skipped, so redelivery and
  duplicates change nothing; otherwise the handler runs inside the same transaction, which also holds the
  service's new state and its outgoing events (the outbox);
- a transient failure (the database or the network away) is retried with backoff for as long as it lasts: no
  valid input is skipped;
- any other failure rolls the batch back and replays it one record per transaction, to isolate the culprit: a
  `PermanentError` dead-letters that record at once, other exceptions after `max_attempts`, so one poisonous input
  cannot stop the service.
Offsets are committed manually, only after the transaction that handled the records has committed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from ccxlic_contract import ContractError, Event, Topic, decode_message, topic_for
from ccxlic_contract.events import INSTANCE_ID_PATTERN, DeadLetterData, DeadLettered

from ccxlic_runtime.db import ConcurrentUpdate, Database, Transaction
from ccxlic_runtime.kafka import topic_name
from ccxlic_runtime.metrics import RuntimeMetrics

log = logging.getLogger(__name__)

DEAD_LETTER_NAMESPACE = uuid.UUID("6d1f7a5e-3c0b-4d8e-9a51-0c2b7f1e9d40")
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    ConcurrentUpdate,
)
_INSTANCE_ID = re.compile(INSTANCE_ID_PATTERN)


class PermanentError(Exception):
    """Raised by a handler for an input that can never be processed. The record is dead-lettered at once."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a record came from: enough to dead-letter it and to commit past it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp_ms: int


Handler = Callable[[Transaction, Event, Delivery], Awaitable[None]]
FailureHook = Callable[[Transaction, Delivery, Event, str], Awaitable[None]]


class Stopping(Exception):
    """The service is stopping while a record waits for a retry; the record is not committed."""


Decoded = tuple[Delivery, Event | ContractError]


class RecordProcessor:
    """The error policy, shared by the aiokafka loop and the faust adapter."""

    def __init__(
        self,
        *,
        service: str,
        topics: Sequence[Topic],
        prefix: str,
        db: Database,
        handler: Handler,
        metrics: RuntimeMetrics,
        stop: asyncio.Event,
        on_failure: FailureHook | None = None,
        max_attempts: int = 3,
        max_backoff: float = 5.0,
    ) -> None:
        self.service = service
        self.by_name = {topic_name(t, prefix): t for t in topics}
        self.db = db
        self.handler = handler
        self.metrics = metrics
        self.stop = stop
        self.on_failure = on_failure
        self.max_attempts = max_attempts
        self.max_backoff = max_backoff

    def decode(self, d: Delivery) -> Event | ContractError:
        topic = self.by_name.get(d.topic)
        try:
            event = decode_message(d.value, d.headers)
        except ContractError as exc:
            return exc
        if topic is not None and not topic.allows(event.type):
            return ContractError(
                f"type {event.type} does not belong on topic {topic.name}; publish it to {topic_for(event.type).name}"
            )
        return event

    async def process(self, d: Delivery) -> None:
        await self.process_batch([d])

    async def process_batch(self, deliveries: Sequence[Delivery]) -> None:
        """Handle records in one transaction; on a non-transient failure, one transaction per record."""
        if not deliveries:
            return
        items = [(d, self.decode(d)) for d in deliveries]
        started = time.perf_counter()
        backoff = 0.1
        while True:
            try:
                async with self.db.transaction() as tx:
                    # one round trip claims every event of the batch (a duplicate id within it counts once)
                    fresh = await tx.claim_many([ev.id for _, ev in items if not isinstance(ev, ContractError)])
                    for item in items:
                        await self._apply(tx, item, fresh)
                break
            except TRANSIENT_ERRORS as exc:
                self.metrics.retries.labels(self.service).inc()
                log.warning("transient failure; retrying the batch", extra={"error": repr(exc)})
            except Exception as exc:
                if len(items) == 1:
                    await self._one_by_one(items[0], exc)
                    break
                log.warning("batch failed; replaying it one record at a time", extra={"error": repr(exc)})
                for item in items:
                    await self._one_by_one(item, None)
                break
            if self.stop.is_set():
                raise Stopping()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
        elapsed = time.perf_counter() - started
        newest: dict[str, int] = {}
        for d, ev in items:
            newest[d.topic] = max(newest.get(d.topic, 0), d.timestamp_ms)
            if isinstance(ev, ContractError):
                continue
            self.metrics.processed.labels(self.service, d.topic, ev.type).inc()
        for topic, ms in newest.items():
            self.metrics.consumed_timestamp.labels(self.service, topic).set(ms / 1000)
        self.metrics.latency.labels(self.service).observe(elapsed / len(items))

    async def _apply(self, tx: Transaction, item: Decoded, fresh: set[str] | None = None) -> None:
        """Dead-letter a bad record, or run the handler on an event not seen before. `fresh` holds the ids the
        batch already claimed (each is consumed once); without it the event is claimed here."""
        d, ev = item
        if isinstance(ev, ContractError):
            await self._dead_letter(tx, d, str(ev))
        elif fresh is not None:
            if ev.id in fresh:
                fresh.discard(ev.id)
                await self.handler(tx, ev, d)
        elif await tx.claim(ev.id):
            await self.handler(tx, ev, d)

    async def _one_by_one(self, item: Decoded, first_error: Exception | None) -> None:
        d, ev = item
        attempts = 1 if first_error is not None else 0
        error = first_error
        backoff = 0.1
        while True:
            if isinstance(error, PermanentError) or (error is not None and attempts >= self.max_attempts):
                assert not isinstance(ev, ContractError)
                reason = (
                    f"{ev.type} {ev.id} rejected: {error}"
                    if isinstance(error, PermanentError)
                    else f"handler failed {attempts} times on {ev.type} {ev.id}: {error!r}"
                )
                log.error("dead-lettering an input the handler cannot process", extra={"reason": reason})
                async with self.db.transaction() as tx:
                    await self._dead_letter(tx, d, reason)
                    if self.on_failure is not None:
                        await self.on_failure(tx, d, ev, reason)
                return
            try:
                async with self.db.transaction() as tx:
                    await self._apply(tx, item)
                return
            except TRANSIENT_ERRORS as exc:
                self.metrics.retries.labels(self.service).inc()
                log.warning("transient failure; retrying", extra={"error": repr(exc), "offset": d.offset})
                if self.stop.is_set():
                    raise Stopping() from None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception as exc:
                attempts += 1
                error = exc
                self.metrics.retries.labels(self.service).inc()
                log.warning("handler failed", extra={"error": repr(exc), "attempt": attempts, "offset": d.offset})

    async def _dead_letter(self, tx: Transaction, d: Delivery, reason: str) -> None:
        """Queue the record for the dead-letter topic, with the reason and the original bytes, exactly once."""
        if not await tx.claim(f"dlq:{self.service}:{d.topic}:{d.partition}:{d.offset}"):
            return
        key_text = d.key.decode("utf-8", "replace") if d.key is not None else None
        subject = key_text if key_text is not None and _INSTANCE_ID.match(key_text) else "unknown"
        await tx.emit(
            DeadLettered(
                id=str(uuid.uuid5(DEAD_LETTER_NAMESPACE, f"{self.service}:{d.topic}:{d.partition}:{d.offset}")),
                source=f"urn:ccxlic:{self.service}",
                time=datetime.fromtimestamp(d.timestamp_ms / 1000, UTC),
                subject=subject,
                data=DeadLetterData(
                    topic=d.topic,
                    partition=d.partition,
                    offset=d.offset,
                    key=key_text,
                    error=reason,
                    payload_base64=base64.b64encode(d.value or b"").decode(),
                ),
            )
        )
        self.metrics.dead_lettered.labels(self.service, d.topic).inc()
        log.warning("dead-lettered", extra={"topic": d.topic, "offset": d.offset, "reason": reason})


def delivery_of(rec: Any) -> Delivery:
    """A Delivery from an aiokafka ConsumerRecord."""
    return Delivery(rec.topic, rec.partition, rec.offset, rec.key, rec.value, tuple(rec.headers or ()), rec.timestamp)


class ConsumerLoop:
    """Consume topics with a consumer group; process each record; commit after the batch's transactions."""

    def __init__(
        self,
        processor: RecordProcessor,
        *,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        batch: int = 500,
    ) -> None:
        self.processor = processor
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = list(topics)
        self.batch = batch
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.batch,
        )
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=self.batch)
                if consumer.assignment():  # ready once the group has given this member its partitions
                    self.ready.set()
                if not batches:
                    continue
                offsets: dict[TopicPartition, int] = {}
                try:
                    for tp, records in batches.items():
                        await self.processor.process_batch([delivery_of(rec) for rec in records])
                        offsets[tp] = records[-1].offset + 1
                finally:
                    if offsets:
                        await self._commit(consumer, offsets)
        except Stopping:
            log.info("stopping with a record still waiting for a retry; it will be redelivered")
        finally:
            self.ready.clear()
            await consumer.stop()

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # A rebalance took the partitions away; the next owner redelivers and the dedup record absorbs it.
            log.warning("offset commit failed", extra={"error": repr(exc)})
