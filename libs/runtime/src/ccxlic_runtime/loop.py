"""The consumer loop every service runs: a consumer group, the event-time merge, the error policy, and offsets
committed after each batch's transaction.

The group uses Kafka's range assignor, which gives one worker partition p of every input topic together (the
topics are co-partitioned), so the merge (merge.py) sees all of one instance's inputs. Records are decoded as they
are fetched (the merge orders by event time); each batch the merge hands out goes to the policy (policy.py) and then
its offsets are committed: the next offset of every partition the batch came from. Records still buffered are not
committed; after a restart or a rebalance they are fetched again from the committed offsets.
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

from ccxlic_runtime.kafka import Broker
from ccxlic_runtime.merge import TP, Item, Merge, Waiting
from ccxlic_runtime.policy import Delivery, Record, RecordProcessor, Stopping

log = logging.getLogger(__name__)

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
        max_idle: float = 0.1,
        on_assign: Callable[[], None] | None = None,
        batch_delay: float = 0.0,
    ) -> None:
        self.processor = processor
        self.broker = broker
        self.group_id = group_id
        self.topics = list(topics)
        self.batch = batch
        self.batch_delay = batch_delay
        self.on_assign = on_assign
        self.merge: Merge[Record] = Merge(self.topics, max_idle)
        self.partition_counts: dict[str, int] = {}
        self.ready = asyncio.Event()
        self.waiting: list[Waiting] = []
        self.stalled_since: float | None = None
        self._lag_series: set[TP] = set()

    def partitions(self, topic: str) -> int | None:
        return self.partition_counts.get(topic)

    def stalled(self) -> str | None:
        """Why the loop has not made progress for STALLED_AFTER seconds, or None."""
        if self.stalled_since is not None and time.monotonic() - self.stalled_since > STALLED_AFTER:
            lagging = [w.reason for w in self.waiting if w.until is None]
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
        )
        consumer.subscribe(self.topics, listener=_Listener(self, consumer))
        await consumer.start()
        try:
            while not stop.is_set():
                items, self.waiting = self.merge.take(time.monotonic(), self.batch)
                if items:
                    self.stalled_since = None
                    await self._process(consumer, items)
                    wait = 0.0
                else:
                    if self.stalled_since is None and any(w.until is None for w in self.waiting):
                        self.stalled_since = time.monotonic()
                    wait = min([0.2, *(max(0.0, w.until - time.monotonic()) for w in self.waiting if w.until)])
                batches = await consumer.getmany(timeout_ms=int(wait * 1000), max_records=self.batch)
                if consumer.assignment():  # ready once the group has given this member its partitions
                    self.ready.set()
                for tp, records in batches.items():
                    if not self.merge.add((tp.topic, tp.partition), [self._item(rec) for rec in records]):
                        consumer.seek(tp, records[0].offset)  # not ours as far as the merge knows: fetch it again
                await self._update(consumer)
        except Stopping:
            log.info("stopping with a record still waiting for a retry; it will be redelivered")
        finally:
            self.ready.clear()
            await consumer.stop()

    def _item(self, rec: object) -> Item[Record]:
        d = delivery_of(rec)
        decoded = self.processor.decode(d)
        when = None if isinstance(decoded, Exception) else decoded.time
        return Item((d.topic, d.partition), d.offset, when, (d, decoded))

    async def _process(self, consumer: AIOKafkaConsumer, items: list[Item[Record]]) -> None:
        if self.batch_delay:
            await asyncio.sleep(self.batch_delay)  # a test's stand-in for a slow consumption computer
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
