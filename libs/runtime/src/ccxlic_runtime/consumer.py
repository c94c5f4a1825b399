"""One consumer loop and one error policy for every service.

For each record, in partition order:
- it is decoded and validated against the contract; bytes that fail, or a type that does not belong on the topic,
  go to `licensing.dead-letter` with the reason and the original bytes (through the outbox, once), and the loop
  goes on;
- the handler runs; it does its own PostgreSQL transaction (dedup record + state + outgoing events);
- a transient failure (the database or the network away) is retried with backoff for as long as it lasts: no
  valid input is skipped;
- a `PermanentError` from the handler dead-letters the record at once; any other exception is retried
  `max_attempts` times and then dead-lettered, so one poisonous input cannot stop the service.
Offsets are committed manually, after the handlers of the batch have committed their transactions.
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

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from ccxlic_contract import ContractError, Event, Topic, decode_message, topic_for
from ccxlic_contract.events import INSTANCE_ID_PATTERN, DeadLetterData, DeadLettered

from ccxlic_runtime.db import Database
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


Handler = Callable[[Event, Delivery], Awaitable[None]]
FailureHook = Callable[[Delivery, Event, str], Awaitable[None]]


class Stopping(Exception):
    """The service is stopping while a record waits for a retry; the record is not committed."""


class RecordProcessor:
    """The error policy for one record, shared by the aiokafka loop and the faust adapter."""

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

    async def process(self, d: Delivery) -> None:
        topic = self.by_name.get(d.topic)
        try:
            event = decode_message(d.value, d.headers)
            if topic is not None and not topic.allows(event.type):
                raise ContractError(
                    f"type {event.type} does not belong on topic {topic.name}; publish it to {topic_for(event.type).name}"
                )
        except ContractError as exc:
            await self.dead_letter(d, str(exc))
            return
        started = time.perf_counter()
        attempts = 0
        backoff = 0.1
        while True:
            try:
                await self.handler(event, d)
                self.metrics.processed.labels(self.service, d.topic, event.type).inc()
                self.metrics.latency.labels(self.service).observe(time.perf_counter() - started)
                return
            except PermanentError as exc:
                await self.dead_letter(d, f"{event.type} {event.id} rejected: {exc}")
                return
            except TRANSIENT_ERRORS as exc:
                self.metrics.retries.labels(self.service).inc()
                log.warning(
                    "transient failure; retrying", extra={"error": repr(exc), "topic": d.topic, "offset": d.offset}
                )
            except Exception as exc:
                attempts += 1
                self.metrics.retries.labels(self.service).inc()
                if attempts >= self.max_attempts:
                    reason = f"handler failed {attempts} times on {event.type} {event.id}: {exc!r}"
                    log.exception("handler failed; dead-lettering", extra={"topic": d.topic, "offset": d.offset})
                    await self.dead_letter(d, reason)
                    if self.on_failure is not None:
                        await self.on_failure(d, event, reason)
                    return
                log.warning("handler failed; retrying", extra={"error": repr(exc), "attempt": attempts})
            if self.stop.is_set():
                raise Stopping()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def dead_letter(self, d: Delivery, reason: str) -> None:
        """Publish the record to the dead-letter topic, with the reason and the original bytes, exactly once."""
        key_text = d.key.decode("utf-8", "replace") if d.key is not None else None
        subject = key_text if key_text is not None and _INSTANCE_ID.match(key_text) else "unknown"
        event = DeadLettered(
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
        while True:
            try:
                async with self.db.transaction() as tx:
                    if await tx.claim(f"dlq:{self.service}:{d.topic}:{d.partition}:{d.offset}"):
                        await tx.emit(event)
                break
            except TRANSIENT_ERRORS as exc:
                log.warning("dead-letter write failed; retrying", extra={"error": repr(exc)})
                if self.stop.is_set():
                    raise Stopping() from None
                await asyncio.sleep(1.0)
        self.metrics.dead_lettered.labels(self.service, d.topic).inc()
        log.warning(
            "dead-lettered", extra={"topic": d.topic, "partition": d.partition, "offset": d.offset, "reason": reason}
        )


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
        self.ready.set()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=self.batch)
                if not batches:
                    continue
                offsets: dict[TopicPartition, int] = {}
                try:
                    for tp, records in batches.items():
                        for rec in records:
                            await self.processor.process(
                                Delivery(
                                    rec.topic,
                                    rec.partition,
                                    rec.offset,
                                    rec.key,
                                    rec.value,
                                    tuple(rec.headers or ()),
                                    rec.timestamp,
                                )
                            )
                            offsets[tp] = rec.offset + 1
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
