"""One error policy for every service: what happens to each input record, whatever goes wrong.

Records are handled in batches, each batch in one PostgreSQL transaction (the unit of work):
- each record is decoded against the contract; a record that does not decode, whose type does not belong on its
  topic, or whose event time is further ahead of the record's timestamp than `max_skew`, goes to
  `licensing.dead-letter` with the reason, and the batch goes on;
- a well-formed event on another partition than its subject's, or whose key is not its subject (another
  partitioner than Kafka's murmur2, or no key), is *misplaced*: a service that takes inputs from any publisher
  (`reroute`, the consumption computer) publishes it unchanged, keyed by its subject, on its reroute topic and reads
  it back on the right partition (once: the reroute has a dedup record of its own); any other service dead-letters
  it;
- the event's id is claimed (the dedup record); an event seen before is skipped, so redelivery and duplicates
  change nothing; otherwise the service's application handles it inside the same transaction, which also holds its
  new state and its outgoing events (the outbox);
- a transient failure (the database or the network away, another worker's newer state) is retried with backoff
  and jitter for as long as it lasts, and `/readyz` says so: no valid input is skipped;
- any other exception, from the codec or the application, is permanent for that record: the batch is rolled back
  and replayed one record per transaction to find the culprit; a `PermanentError` dead-letters that record at once,
  other exceptions after `max_attempts` with the last error, so no single input can stop the service;
- building a dead letter cannot fail (`dead_letter` is total: text it cannot keep is escaped, and its last resort
  is the record's topic, partition, offset, size and hash), and writing one fails only while the database is away:
  if telling the application's downstream of the failure (`failed`) is what fails, the dead letter goes alone.
The caller commits Kafka offsets only after `process_batch` returns: every record up to them was then committed to
PostgreSQL, as handled or as a dead letter.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg
from aiokafka.partitioner import murmur2
from ccxlic_contract import ContractError, Event, Topic, decode_message, topic_for
from ccxlic_contract.events import (
    ALL_INSTANCES,
    INSTANCE_ID_PATTERN,
    MAX_DEAD_LETTER_PAYLOAD,
    MAX_YEAR,
    MIN_YEAR,
    ClockTicked,
    DeadLetterData,
    DeadLettered,
    DeadLetterHeader,
)

from ccxlic_runtime.db import ConcurrentUpdate, Transaction
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
    asyncpg.exceptions.OperatorInterventionError,  # e.g. "terminating connection due to administrator command"
    asyncpg.exceptions.InsufficientResourcesError,
    ConcurrentUpdate,
)
_INSTANCE_ID = re.compile(INSTANCE_ID_PATTERN)


class PermanentError(Exception):
    """Raised by an application for an input that can never be processed. The record is dead-lettered at once."""


class Stopping(Exception):
    """The service is stopping while a record waits for a retry; the record is not committed."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a record came from: enough to dead-letter it and to commit past it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]
    timestamp_ms: int | None


Record = tuple[Delivery, Event | ContractError]
"""A decoded record: its event, or why it was refused."""


class Application(Protocol):
    """What a service runs inside the unit of work (the runtime's `Instances` is one)."""

    def begin(self, uow: Transaction) -> None:
        """A unit of work starts."""
        ...

    async def handle(self, uow: Transaction, event: Event, delivery: Delivery) -> None:
        """One input, not seen before."""
        ...

    async def finish(self, uow: Transaction) -> None:
        """The last step before COMMIT: save what the inputs changed and queue the outgoing events."""
        ...

    def committed(self) -> None:
        """The unit of work committed."""
        ...

    def abort(self) -> None:
        """The unit of work rolled back: forget what it did."""
        ...

    async def failed(self, uow: Transaction, event: Event, reason: str) -> None:
        """An input was dead-lettered because handling it failed: publish what downstream should know."""
        ...


class UnitsOfWork(Protocol):
    """Where transactions come from: the runtime's `Database`, or a fake in tests."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...


# cached: aiokafka's murmur2 is pure Python, and a worker sees the same instances again and again
@functools.lru_cache(maxsize=65536)
def partition_for(subject: str, partitions: int) -> int:
    """The partition of a subject's records: Kafka's default partitioner (murmur2 of the key), which the Java
    clients, aiokafka and our producers use. Co-partitioned topics keep one instance's records in one task."""
    return int(murmur2(subject.encode()) & 0x7FFFFFFF) % partitions


class Decoder:
    """A service's reading of its input records: the contract's codec, then where the record sits (its topic, key
    and partition) and how far its event time is ahead of the record's timestamp. The processor decodes with it, and
    so does a tool that reads a service's inputs as the service would (`ccxlic whatif`)."""

    def __init__(
        self,
        inputs: Sequence[Topic],
        prefix: str,
        *,
        partitions: Callable[[str], int | None] | None = None,
        max_skew: timedelta | None = None,
        reroute: Topic | None = None,
    ) -> None:
        self.reroute_name = None if reroute is None else topic_name(reroute, prefix)
        self.by_name = {topic_name(t, prefix): t for t in inputs}
        self.partitions = partitions
        self.max_skew = max_skew

    def decode(self, d: Delivery) -> Event | ContractError:
        """The record's event, or why it is refused. Never raises."""
        try:
            return self._decode(d)
        except ContractError as exc:
            return exc
        except Exception as exc:  # the codec is total; this is the last line if it ever is not
            log.exception("decoding raised", extra={"topic": d.topic, "offset": d.offset})
            return ContractError(f"cannot decode the record: {type(exc).__name__}: {str(exc)[:200]}")

    def _decode(self, d: Delivery) -> Event:
        event = decode_message(d.value, d.headers)
        topic = self.by_name.get(d.topic)
        if topic is not None and not topic.allows(event.type):
            raise ContractError(
                f"type {event.type} does not belong on topic {topic.name}; publish it to {topic_for(event.type).name}"
            )
        if self.reroute_name is None or d.topic == self.reroute_name:
            misplaced = self.misplaced(d, event)
            if misplaced is not None:
                raise ContractError(misplaced)
        if self.max_skew is not None:
            # the broker's append time on our topics; a topic stamped by its publishers (CreateTime) could carry the
            # same wrong clock as the event, so never later than now (a replay reads records older than now)
            stamped = min(_record_time(d), datetime.now(UTC))
            if event.time - stamped > self.max_skew:
                raise ContractError(
                    f"time {_iso(event.time)} is {event.time - stamped} ahead of the record's timestamp "
                    f"{_iso(stamped)}, more than CCXLIC_MAX_EVENT_SKEW ({self.max_skew}); is the publisher's clock "
                    "right? (simulated time: set CCXLIC_MAX_EVENT_SKEW=off)"
                )
        return event

    def misplaced(self, d: Delivery, event: Event) -> str | None:
        """Why a well-formed event is not where its subject's events are (its key is not the subject, or it sits on
        another partition than murmur2 of the subject gives), or None."""
        if isinstance(event, ClockTicked) and event.subject == ALL_INSTANCES:
            return None  # every partition has a copy, and each ticks the instances of its own
        if d.key != event.subject.encode():
            key = "no key" if d.key is None else f"key {d.key[:80].decode('utf-8', 'replace')!r}"
            return f"{key}: the key must be the subject ({event.subject!r}), so one instance's events stay in order"
        n = self.partitions(d.topic) if self.partitions is not None else None
        if n and d.partition != partition_for(event.subject, n):
            return (
                f"partition {d.partition}: {event.subject!r} belongs on partition "
                f"{partition_for(event.subject, n)} of {n} (Kafka's default murmur2 partitioner on the key)"
            )
        return None


class RecordProcessor:
    """The error policy, around one application."""

    def __init__(
        self,
        *,
        service: str,
        inputs: Sequence[Topic],
        prefix: str,
        db: UnitsOfWork,
        app: Application,
        metrics: RuntimeMetrics,
        stop: asyncio.Event,
        partitions: Callable[[str], int | None] | None = None,
        max_skew: timedelta | None = None,
        max_attempts: int = 3,
        max_backoff: float = 5.0,
        reroute: Topic | None = None,
        hold: float = 0.0,
    ) -> None:
        self.service = service
        self.hold = hold
        self.reroute = reroute
        self.decoder = Decoder(inputs, prefix, partitions=partitions, max_skew=max_skew, reroute=reroute)
        self.db = db
        self.app = app
        self.metrics = metrics
        self.stop = stop
        self.max_attempts = max_attempts
        self.max_backoff = max_backoff
        self.retrying_since: float | None = None
        """Monotonic time since which a batch keeps failing transiently (None: it is not): /readyz says so."""
        self.retrying_reason = ""
        self._lettered: list[tuple[str, int, int, str]] = []  # dead letters of the unit of work, told once committed
        self._rerouted: list[str] = []  # topics of the records rerouted in the unit of work, counted once committed

    def decode(self, d: Delivery) -> Event | ContractError:
        """The record's event, or why it is refused. Never raises."""
        return self.decoder.decode(d)

    def _to_reroute(self, d: Delivery, ev: Event) -> bool:
        name = self.decoder.reroute_name
        return name is not None and d.topic != name and self.decoder.misplaced(d, ev) is not None

    async def _reroute(self, uow: Transaction, d: Delivery, event: Event) -> None:
        """Publish a misplaced event on the reroute topic, keyed by its subject, once per record."""
        assert self.reroute is not None
        if await uow.claim(f"reroute:{self.service}:{_safe(d.topic, 249)}:{d.partition}:{d.offset}"):
            await uow.emit(event, topic=self.reroute)
            self._rerouted.append(d.topic)

    # ------------------------------------------------------------ the unit of work

    async def process(self, d: Delivery) -> None:
        await self.process_batch([(d, self.decode(d))])

    async def process_batch(self, items: Sequence[Record]) -> None:
        """Handle decoded records in one transaction; on a non-transient failure, one transaction per record."""
        if not items:
            return
        started = time.perf_counter()
        if not await self._attempt_batch(items):
            log.warning("batch failed; replaying it one record at a time")
            for item in items:
                await self._one_by_one(item)
        elapsed = time.perf_counter() - started
        newest: dict[str, int] = {}
        handled: Counter[tuple[str, str]] = Counter()
        for d, ev in items:
            if d.timestamp_ms is not None:
                newest[d.topic] = max(newest.get(d.topic, 0), d.timestamp_ms)
            if not isinstance(ev, ContractError):
                handled[(d.topic, ev.type)] += 1
        for (topic, kind), n in handled.items():
            self.metrics.processed.labels(self.service, topic, kind).inc(n)
        for topic, ms in newest.items():
            self.metrics.consumed_timestamp.labels(self.service, topic).set(ms / 1000)
        per_event = self.metrics.latency.labels(self.service)
        for _ in items:  # the histogram counts events: a batch of 500 is 500 observations of its mean
            per_event.observe(elapsed / len(items))
        self.metrics.batch.labels(self.service).observe(elapsed)

    async def _attempt_batch(self, items: Sequence[Record]) -> bool:
        """True once the batch committed; False when it failed for a reason other than a transient one."""
        backoff = 0.1
        while True:
            try:
                async with self._unit() as uow:
                    # one round trip claims every event of the batch (a duplicate id within it counts once)
                    rerouting = {
                        i
                        for i, (d, ev) in enumerate(items)
                        if not isinstance(ev, ContractError) and self._to_reroute(d, ev)
                    }
                    fresh = await uow.claim_many(
                        [
                            claim_key(ev, d)
                            for i, (d, ev) in enumerate(items)
                            if not isinstance(ev, ContractError) and i not in rerouting
                        ]
                    )
                    for i, (d, ev) in enumerate(items):
                        if isinstance(ev, ContractError):
                            await self._dead_letter(uow, d, str(ev))
                        elif i in rerouting:
                            await self._reroute(uow, d, ev)
                        elif claim_key(ev, d) in fresh:
                            fresh.discard(claim_key(ev, d))
                            await self.app.handle(uow, ev, d)
                    await self.app.finish(uow)
                self._committed()
                return True
            except TRANSIENT_ERRORS as exc:
                await self._transient(exc, backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception as exc:
                self.app.abort()
                if len(items) > 1:
                    log.warning("batch failed", extra={"error": repr(exc)})
                    return False
                await self._one_by_one(items[0], first_error=exc)
                return True

    async def _one_by_one(self, item: Record, first_error: Exception | None = None) -> None:
        d, ev = item
        if isinstance(ev, ContractError):
            await self._refuse(d, str(ev), None)
            return
        attempts = 1 if first_error is not None else 0
        error = first_error
        backoff = 0.1
        while True:
            if error is not None and (isinstance(error, PermanentError) or attempts >= self.max_attempts):
                reason = (
                    f"{ev.type} {ev.id} rejected: {error}"
                    if isinstance(error, PermanentError)
                    else f"handling {ev.type} {ev.id} failed {attempts} times: {type(error).__name__}: {error}"
                )
                log.error("dead-lettering an input that cannot be handled", extra={"reason": reason})
                await self._refuse(d, reason, ev)
                return
            try:
                async with self._unit() as uow:
                    if self._to_reroute(d, ev):
                        await self._reroute(uow, d, ev)
                    elif await uow.claim(claim_key(ev, d)):
                        await self.app.handle(uow, ev, d)
                    await self.app.finish(uow)
                self._committed()
                return
            except TRANSIENT_ERRORS as exc:
                await self._transient(exc, backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception as exc:
                self.app.abort()
                attempts += 1
                error = exc
                self.metrics.retries.labels(self.service).inc()
                log.warning("handling failed", extra={"error": repr(exc), "attempt": attempts, "offset": d.offset})

    async def _refuse(self, d: Delivery, reason: str, ev: Event | None) -> None:
        """Dead-letter a record, in a transaction of its own (with `failed` for an event the application could not
        handle), retrying while the failure is transient: the record is never passed over without its dead letter.
        A permanent failure of `failed` or of claiming the event (what the store cannot hold) is the record's own:
        its dead letter then goes alone, saying so."""
        backoff = 0.1
        tell = ev is not None
        while True:
            try:
                async with self._unit() as uow:
                    await self._dead_letter(uow, d, reason)
                    if tell and ev is not None:
                        await uow.claim(claim_key(ev, d))  # a later duplicate is a duplicate, not a second failure
                        await self.app.failed(uow, ev, reason)
                    await self.app.finish(uow)
                self._committed()
                return
            except TRANSIENT_ERRORS as exc:
                await self._transient(exc, backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception as exc:
                self.app.abort()
                if tell:
                    tell = False
                    reason = f"{reason}; recording the failure for downstream failed too: {type(exc).__name__}: {exc}"
                    log.error("recording a failure failed; dead-lettering the record alone", extra={"error": repr(exc)})
                    continue
                # the dead letter alone cannot be written: the store is broken, not the record; keep it and retry
                await self._transient(exc, backoff)
                backoff = min(backoff * 2, self.max_backoff)

    @asynccontextmanager
    async def _unit(self) -> AsyncIterator[Transaction]:
        self._lettered = []
        self._rerouted = []
        gauge = self.metrics.unit_open.labels(self.service)
        async with self.db.transaction() as uow:
            gauge.set(1)
            try:
                self.app.begin(uow)
                yield uow
                if self.hold:  # tests only: a slow unit of work, and a window in which `make chaos` kills it
                    await asyncio.sleep(self.hold)
            finally:
                gauge.set(0)

    def _committed(self) -> None:
        self.retrying_since = None
        for topic, partition, offset, reason in self._lettered:  # counted and logged once, when they are durable
            self.metrics.dead_lettered.labels(self.service, topic).inc()
            log.warning(
                "dead-lettered", extra={"topic": topic, "partition": partition, "offset": offset, "reason": reason}
            )
        self._lettered = []
        for topic in self._rerouted:
            self.metrics.rerouted.labels(self.service, topic).inc()
        self._rerouted = []
        try:
            self.app.committed()
        except Exception:  # the work is committed; a listener's bug must not make it run again
            log.exception("after-commit work failed")

    async def _transient(self, exc: BaseException, backoff: float) -> None:
        self.app.abort()
        self.metrics.retries.labels(self.service).inc()
        if self.retrying_since is None:
            self.retrying_since = time.monotonic()
        self.retrying_reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        delay = random.uniform(backoff / 2, backoff)  # jitter: workers that failed together do not retry together
        log.warning("transient failure; retrying", extra={"error": repr(exc), "retry_in_s": round(delay, 3)})
        if self.stop.is_set():
            raise Stopping() from None
        await asyncio.sleep(delay)

    async def _dead_letter(self, uow: Transaction, d: Delivery, reason: str) -> None:
        """Queue the record for the dead-letter topic, with the reason and (a bounded prefix of) the original bytes,
        exactly once."""
        if not await uow.claim(f"dlq:{self.service}:{_safe(d.topic, 249)}:{d.partition}:{d.offset}"):
            return
        await uow.emit(dead_letter(self.service, d, reason))
        self._lettered.append((d.topic, d.partition, d.offset, reason[:500]))


def claim_key(event: Event, d: Delivery) -> str:
    """The dedup record of an input: its id; a tick for every instance is one input per partition (it is sent to
    every partition, and each copy ticks the instances of its own)."""
    if isinstance(event, ClockTicked) and event.subject == ALL_INSTANCES:
        return f"{event.id}@{d.partition}"
    return event.id


def dead_letter(service: str, d: Delivery, reason: str) -> DeadLettered:
    """A dead letter that always fits the broker and can always be built: at most MAX_DEAD_LETTER_PAYLOAD bytes of
    the record, with the size and SHA-256 of the whole of it (find the original by topic, partition and offset).
    Text the contract cannot carry (NUL, what is not UTF-8) is escaped; should anything still be refused, the last
    resort keeps only the topic, partition, offset, size and hash."""
    try:
        return _dead_letter(service, d, reason)
    except Exception as exc:
        log.exception("a dead letter could not be built in full; keeping what identifies the record")
        return _bare_dead_letter(service, d, f"{_safe(reason, 3000)} (its key and headers could not be kept: {exc!r})")


def _dead_letter(service: str, d: Delivery, reason: str) -> DeadLettered:
    value = d.value
    key_text = d.key.decode("utf-8", "replace") if d.key is not None else None
    subject = key_text if key_text is not None and _INSTANCE_ID.fullmatch(key_text) else "unknown"
    return DeadLettered(
        id=_dead_letter_id(service, d),
        source=f"urn:ccxlic:{service}",
        time=_record_time(d),
        subject=subject,
        data=DeadLetterData(
            topic=_safe(d.topic, 249) or "unknown",
            partition=_bounded(d.partition, 2**31 - 1),
            offset=_bounded(d.offset, 2**63 - 1),
            key=None if key_text is None else _safe(key_text, 1024),
            error=_safe(reason, 4000) or "refused",
            payload_base64=base64.b64encode((value or b"")[:MAX_DEAD_LETTER_PAYLOAD]).decode(),
            payload_size=None if value is None else len(value),
            payload_sha256=None if value is None else hashlib.sha256(value).hexdigest(),
            payload_truncated=value is not None and len(value) > MAX_DEAD_LETTER_PAYLOAD,
            headers=tuple(
                DeadLetterHeader(
                    name=_safe(name if isinstance(name, str) else bytes(name).decode("utf-8", "replace"), 256),
                    value_base64=None if v is None else base64.b64encode(bytes(v)[:1024]).decode(),
                )
                for name, v in list(d.headers)[:64]
            ),
        ),
    )


def _bare_dead_letter(service: str, d: Delivery, reason: str) -> DeadLettered:
    """The last resort: what identifies the record, and no text of it."""
    value = d.value if isinstance(d.value, bytes) else None
    return DeadLettered(
        id=_dead_letter_id(service, d),
        source=f"urn:ccxlic:{service}",
        time=_record_time(d),
        subject="unknown",
        data=DeadLetterData(
            topic=_safe(str(d.topic), 249) or "unknown",
            partition=_bounded(d.partition, 2**31 - 1),
            offset=_bounded(d.offset, 2**63 - 1),
            key=None,
            error=_safe(reason, 4000) or "refused",
            payload_base64="",
            payload_size=None if value is None else len(value),
            payload_sha256=None if value is None else hashlib.sha256(value).hexdigest(),
            payload_truncated=value is not None and len(value) > 0,
        ),
    )


def _dead_letter_id(service: str, d: Delivery) -> str:
    return str(uuid.uuid5(DEAD_LETTER_NAMESPACE, f"{service}:{_safe(str(d.topic), 249)}:{d.partition}:{d.offset}"))


def _safe(text: str, limit: int) -> str:
    """Text the contract can carry, at most `limit` characters: NUL and what is not UTF-8 (lone surrogates) escaped."""
    cleaned = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return cleaned[:limit]


def _bounded(n: int, top: int) -> int:
    return n if isinstance(n, int) and 0 <= n <= top else 0


def _record_time(d: Delivery) -> datetime:
    """The record's timestamp (the broker's append time on our topics), or now when it has none or is absurd."""
    if d.timestamp_ms is not None and d.timestamp_ms >= 0:
        try:
            stamped = datetime.fromtimestamp(d.timestamp_ms / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            stamped = None
        if stamped is not None and MIN_YEAR <= stamped.year <= MAX_YEAR - 1:
            return stamped
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")
