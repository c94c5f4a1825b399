"""The consumer loop every service runs: a consumer group, the event-time merge, the error policy, and offsets
committed after each batch's transaction.

The group uses Kafka's range assignor, which gives one worker partition p of every input topic together (the
topics are co-partitioned), so the merge (merge.py) sees all of one instance's inputs. Records are decoded as they
are fetched (the merge orders by event time); each batch the merge hands out goes to the policy (policy.py) and then
its offsets are committed: the next offset of every partition the batch came from. Records still buffered are not
committed; after a restart or a rebalance they are fetched again from the committed offsets.

A record the Kafka client itself cannot parse (a header name that is not UTF-8, which librdkafka clients can send)
makes aiokafka's fetch raise, and a fetch that raised has lost what it drained: the loop takes every partition back
to the record after the last one it buffered, finds the record that fails by reading the partitions one record at a
time, and passes it to the policy as a record that does not decode, so it is dead-lettered (with its topic,
partition and offset; the client gives nothing more of it) and the partition moves on. It is never a crash loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import IllegalStateError, KafkaError
from ccxlic_contract import ContractError

from ccxlic_runtime.kafka import Broker
from ccxlic_runtime.merge import TP, Item, Merge, Waiting
from ccxlic_runtime.policy import Delivery, Record, RecordProcessor, Stopping

log = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 50
"""How long the broker may hold a fetch that has no data. aiokafka leaves a partition out of the fetch in flight while
its records wait in the buffer, so a record that lands there next waits for that fetch to end: with Kafka's default
of 500 ms, each answer to the Smart Agent's calls was heard 500 ms after it was published (measured: 518 ms a call;
100 ms: 124; 50 ms: 72). An idle worker asks 20 times a second, which the broker does not notice."""
STALLED_AFTER = 30.0
"""Seconds a worker may wait for a lagging partition before /readyz reports it as not making progress."""


def delivery_of(rec: object) -> Delivery:
    """A Delivery from an aiokafka ConsumerRecord."""
    r: Any = rec
    timestamp = r.timestamp if isinstance(r.timestamp, int) and r.timestamp >= 0 else None
    return Delivery(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers or ()), timestamp)


class ConsumerLoop:
    """Consume `topics` with a consumer group; merge them by event time; process each batch; commit after it."""

    def __init__(
        self,
        processor: RecordProcessor,
        *,
        broker: Broker,
        group_id: str,
        topics: Sequence[str],
        batch: int = 500,
        on_assign: Callable[[], None] | None = None,
    ) -> None:
        self.processor = processor
        self.broker = broker
        self.group_id = group_id
        self.topics = list(topics)
        self.batch = batch
        self.on_assign = on_assign
        self.merge: Merge[Record] = Merge(self.topics)
        self.partition_counts: dict[str, int] = {}
        self.ready = asyncio.Event()
        self.waiting: list[Waiting] = []
        self.stalled_since: float | None = None
        self._lag_series: set[TP] = set()
        self._next: dict[TopicPartition, int] = {}  # per partition, the offset after the last record buffered
        self._arrivals = 0  # fetches that brought records: the merge's evidence is counted in them

    def partitions(self, topic: str) -> int | None:
        return self.partition_counts.get(topic)

    def stalled(self) -> str | None:
        """Why the loop has not made progress for STALLED_AFTER seconds, or None."""
        if self.stalled_since is not None and time.monotonic() - self.stalled_since > STALLED_AFTER:
            lagging = [w.reason for w in self.waiting if not w.needs and w.reason != "no record buffered"]
            return f"waiting for {', '.join(lagging) or 'records'} for {time.monotonic() - self.stalled_since:.0f} s"
        return None

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            **self.broker.options(),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.batch,
            partition_assignment_strategy=(RangePartitionAssignor,),
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        consumer.subscribe(self.topics, listener=_Listener(self, consumer))
        await consumer.start()
        try:
            while not stop.is_set():
                needs = sorted({tp for w in self.waiting for tp in w.needs})
                if needs:  # evidence that these are caught up, newer than every record buffered so far
                    await self._ask_ends(consumer, needs)
                items, self.waiting = self.merge.take(self.batch)
                if items:
                    self.stalled_since = None
                    await self._process(consumer, items)
                    wait = 0.0
                else:
                    if self.stalled_since is None and any(w.reason != "no record buffered" for w in self.waiting):
                        self.stalled_since = time.monotonic()
                    wait = 0.05 if any(w.needs for w in self.waiting) else 0.2
                await self._note_positions(consumer)
                try:
                    batches = await consumer.getmany(timeout_ms=int(wait * 1000), max_records=self.batch)
                except KafkaError:
                    raise
                except Exception as exc:  # a record the client cannot parse: never a crash loop
                    await self._skip_unparseable(consumer, exc)
                    batches = {}
                if consumer.assignment():  # ready once the group has given this member its partitions
                    self.ready.set()
                if any(batches.values()):
                    self._arrivals += 1
                for tp, records in batches.items():
                    self._buffer(consumer, tp, records)
                await self._update(consumer)
        except Stopping:
            log.info("stopping with a record still waiting for a retry; it will be redelivered")
        finally:
            self.ready.clear()
            await consumer.stop()

    async def _ask_ends(self, consumer: AIOKafkaConsumer, tps: Sequence[TP]) -> None:
        """Ask the broker for the end offsets of partitions the merge waits on, now, after every record buffered so
        far arrived: a partition whose position has reached its end offset is caught up as of this fetch count."""
        evidence = self._arrivals
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        wanted = [TopicPartition(*tp) for tp in tps if tp in assigned]
        if not wanted:
            return
        try:
            ends = await consumer.end_offsets(wanted)
            lags = {(tp.topic, tp.partition): max(0, end - await consumer.position(tp)) for tp, end in ends.items()}
        except (KafkaError, IllegalStateError) as exc:  # the broker is away or the partitions moved: no evidence yet
            log.warning("could not learn end offsets", extra={"error": repr(exc)})
            return
        self.merge.set_ends(lags, evidence)

    def _buffer(self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: Sequence[Any]) -> None:
        if not records:
            return
        if self.merge.add((tp.topic, tp.partition), [self._item(rec, self._arrivals) for rec in records]):
            self._next[tp] = records[-1].offset + 1
        else:
            consumer.seek(tp, records[0].offset)  # not ours as far as the merge knows: fetch it again

    async def _note_positions(self, consumer: AIOKafkaConsumer) -> None:
        """Where each newly assigned partition starts, before a fetch could drain and lose records of it."""
        for tp in consumer.assignment():
            if tp not in self._next:
                try:
                    self._next[tp] = await consumer.position(tp)
                except IllegalStateError:  # revoked meanwhile
                    continue

    async def _skip_unparseable(self, consumer: AIOKafkaConsumer, exc: Exception) -> None:
        """After a fetch the client could not parse: take every partition back to where the merge stands (what the
        failed fetch drained is lost with it), then read the partitions one record at a time until the record that
        fails is found; it goes to the merge as a record that does not decode (dead-lettered in order), and the
        partition is read on from the record after it."""
        log.error("the Kafka client could not parse a fetched record; finding it", extra={"error": repr(exc)})
        assigned = consumer.assignment()
        for tp in assigned:
            if tp in self._next:
                consumer.seek(tp, self._next[tp])
        for tp in sorted(assigned, key=lambda t: (t.topic, t.partition)):
            for _ in range(2 * self.batch):  # the failed fetch held at most `batch` records of each partition
                try:
                    position = await consumer.position(tp)
                    highwater = consumer.highwater(tp)
                    if highwater is not None and position >= highwater:
                        break  # caught up: nothing of this partition was in the failed fetch
                    got = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
                except IllegalStateError:
                    break  # revoked meanwhile
                except KafkaError:
                    raise
                except Exception as error:
                    self._unparseable(consumer, tp, position, error)
                    break
                records = got.get(tp, [])
                if not records:
                    break
                self._arrivals += 1
                self._buffer(consumer, tp, records)

    def _unparseable(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, error: Exception) -> None:
        reason = ContractError(
            f"the Kafka client could not parse the record at {tp.topic}[{tp.partition}] offset {offset}: "
            f"{type(error).__name__}: {str(error)[:300]} (a header name that is not UTF-8?); it was skipped"
        )
        d = Delivery(tp.topic, tp.partition, offset, None, None, (), None)
        self._arrivals += 1
        item: Item[Record] = Item((tp.topic, tp.partition), offset, None, (d, reason), self._arrivals)
        if self.merge.add((tp.topic, tp.partition), [item]):
            self._next[tp] = offset + 1
            consumer.seek(tp, offset + 1)
            log.error("skipping a record the Kafka client cannot parse", extra={"topic": tp.topic, "offset": offset})

    def _item(self, rec: object, arrival: int) -> Item[Record]:
        d = delivery_of(rec)
        decoded = self.processor.decode(d)
        when = None if isinstance(decoded, Exception) else decoded.time
        return Item((d.topic, d.partition), d.offset, when, (d, decoded), arrival)

    async def _process(self, consumer: AIOKafkaConsumer, items: list[Item[Record]]) -> None:
        await self.processor.process_batch([i.value for i in items])
        offsets: dict[TopicPartition, int] = {}
        for i in items:
            tp = TopicPartition(*i.tp)
            offsets[tp] = max(offsets.get(tp, 0), i.offset + 1)
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # A rebalance took the partitions away; the next owner redelivers and the dedup record absorbs it.
            log.warning("offset commit failed", extra={"error": repr(exc)})

    async def _update(self, consumer: AIOKafkaConsumer) -> None:
        """Lags from the consumer's positions and the high watermarks of the last fetches; pause partitions whose
        buffer is full (the merge waits on another one) and resume them when it drains."""
        lags: dict[TP, int | None] = {}
        pause, resume = [], []
        paused = consumer.paused()
        for tp in consumer.assignment():
            hw = consumer.highwater(tp)
            try:
                lags[(tp.topic, tp.partition)] = None if hw is None else max(0, hw - await consumer.position(tp))
            except IllegalStateError:  # revoked meanwhile
                continue
            unfetched = lags[(tp.topic, tp.partition)]
            if unfetched is not None:
                held = self.merge.buffered((tp.topic, tp.partition))
                self._lag_gauge(tp.topic, tp.partition).set(unfetched + held)
            full = self.merge.buffered((tp.topic, tp.partition)) >= 2 * self.batch
            if full and tp not in paused:
                pause.append(tp)
            elif not full and tp in paused:
                resume.append(tp)
        self.merge.set_lags(lags)
        if pause:
            consumer.pause(*pause)
        if resume:
            consumer.resume(*resume)

    def _lag_gauge(self, topic: str, partition: int) -> Any:
        self._lag_series.add((topic, partition))
        return self.processor.metrics.consumer_lag.labels(self.processor.service, topic, str(partition))

    def _assignment(self, consumer: AIOKafkaConsumer) -> None:
        assigned = consumer.assignment()
        self._next = {}  # the merge drops its buffers: every partition starts again from its committed offset
        for topic, partition in self._lag_series - {(tp.topic, tp.partition) for tp in assigned}:
            # another worker owns it now and reports its lag
            self.processor.metrics.consumer_lag.remove(self.processor.service, topic, str(partition))
        self._lag_series &= {(tp.topic, tp.partition) for tp in assigned}
        self.merge.assign((tp.topic, tp.partition) for tp in assigned)
        for topic in self.topics:
            parts = consumer.partitions_for_topic(topic)
            if parts:
                self.partition_counts[topic] = len(parts)
        if self.on_assign is not None:
            self.on_assign()
        log.info("partitions assigned", extra={"partitions": sorted(f"{t.topic}[{t.partition}]" for t in assigned)})


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka awaits these before it fetches for the new assignment, so no record of it is fetched before the
    merge knows its partitions."""

    def __init__(self, loop: ConsumerLoop, consumer: AIOKafkaConsumer) -> None:
        self.loop = loop
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: object) -> None:
        self.loop.ready.clear()

    async def on_partitions_assigned(self, assigned: object) -> None:
        self.loop._assignment(self.consumer)


async def read_partition(
    broker: Broker,
    names: Sequence[str],
    partition: int,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[Delivery]]:
    """Every record of one partition of each topic, from its start to its end as of now (no consumer group, nothing
    committed): a service's inputs for the instances of that partition, as they stand in the log. `progress(read,
    total)` hears of it now and then."""
    consumer = AIOKafkaConsumer(**broker.options(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(n, partition) for n in names]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        starts = {tp: await consumer.position(tp) for tp in tps}
        ends = await consumer.end_offsets(tps)
        total = sum(ends[tp] - starts[tp] for tp in tps)
        out: dict[str, list[Delivery]] = {n: [] for n in names}
        read = 0
        pending = {tp for tp in tps if ends[tp] > starts[tp]}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=10_000)
            for tp, records in batches.items():
                for r in records:
                    if r.offset < ends[tp]:
                        out[tp.topic].append(delivery_of(r))
                        read += 1
                if records and records[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
            if progress is not None:
                progress(read, total)
        return out
    finally:
        await consumer.stop()
