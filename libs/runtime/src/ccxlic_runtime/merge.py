"""Merging input partitions by event time, as Kafka Streams does (KIP-353, KIP-695). Pure: wall time is a
parameter.

A service that reads several topics keyed alike (co-partitioned: the same partition count, keyed by instance)
reads partition p of every topic together, as one *task*. Records wait in a buffer per topic-partition; the task
hands out the head record with the smallest event time among its partitions, ties broken by the topic's rank (its
place in the service's input list) and then by offset. Within a partition, records keep their log order.

A task hands out a record only when every partition of it has a record buffered, or is known to have none to come:
- a partition whose high watermark is not known yet, or which is behind it (data is on the broker, not fetched
  yet), is waited for, as long as that takes: this is what makes a replay, where every record is already in the
  log, come out in the same order whatever the fetches do;
- a partition that is caught up (its position is its high watermark) is waited for at most `max_idle` seconds,
  from when it was found empty, so that a record its publisher is sending at this moment is not overtaken; after
  that the task goes on without it until it has data again (a record that arrives later is handled late).
A record that does not decode has no event time: it comes first, to be dead-lettered at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

T = TypeVar("T")
TP = tuple[str, int]
"""A topic-partition: (topic, partition)."""

_NO_TIME = datetime.min.replace(tzinfo=UTC)  # a record with no event time sorts first


@dataclass(frozen=True, slots=True)
class Item(Generic[T]):
    """A buffered record: where it came from, its event time (None: it did not decode) and what it carries."""

    tp: TP
    offset: int
    time: datetime | None
    value: T


@dataclass(frozen=True, slots=True)
class Waiting:
    """Why a task hands out nothing now."""

    task: int
    reason: str
    until: float | None = None  # when a caught-up partition stops being waited for (None: as long as it lags)


@dataclass
class _Partition(Generic[T]):
    rank: int
    buffer: deque[Item[T]] = field(default_factory=deque)
    lag: int | None = None  # records on the broker not fetched yet (None: unknown)
    idle_deadline: float | None = None


class Task(Generic[T]):
    """Partition p of every input topic."""

    def __init__(self, number: int, topics: Iterable[str], max_idle: float) -> None:
        self.number = number
        self.max_idle = max_idle
        self.partitions: dict[TP, _Partition[T]] = {
            (topic, number): _Partition(rank) for rank, topic in enumerate(topics)
        }

    def add(self, item: Item[T]) -> None:
        p = self.partitions[item.tp]
        p.buffer.append(item)
        p.idle_deadline = None

    def buffered(self, tp: TP) -> int:
        return len(self.partitions[tp].buffer)

    def ready(self, now: float) -> Waiting | None:
        """None when the head can be handed out; else why not."""
        caught_up: list[tuple[TP, _Partition[T]]] = []
        for tp, p in self.partitions.items():
            if p.buffer:
                continue
            if p.lag is None:
                p.idle_deadline = None
                return Waiting(self.number, f"{tp[0]}[{tp[1]}]: its high watermark is not known yet")
            if p.lag > 0:
                p.idle_deadline = None
                return Waiting(self.number, f"{tp[0]}[{tp[1]}]: {p.lag} record(s) on the broker not fetched yet")
            caught_up.append((tp, p))
        if len(caught_up) == len(self.partitions):
            return Waiting(self.number, "no record buffered")
        waiting_for = []
        for tp, p in caught_up:
            if p.idle_deadline is None:
                p.idle_deadline = now + self.max_idle
            if now < p.idle_deadline:
                waiting_for.append((p.idle_deadline, tp))
        if waiting_for:  # once a deadline passed, the task goes on without that partition until it has data again
            until, tp = max(waiting_for)
            return Waiting(self.number, f"{tp[0]}[{tp[1]}]: caught up; waiting for new records", until)
        return None

    def take(self) -> Item[T]:
        """The head with the smallest (event time, topic rank, offset)."""
        best: tuple[datetime, int, int] | None = None
        chosen: _Partition[T] | None = None
        for p in self.partitions.values():
            if not p.buffer:
                continue
            head = p.buffer[0]
            key = (head.time or _NO_TIME, p.rank, head.offset)
            if best is None or key < best:
                best, chosen = key, p
        assert chosen is not None
        return chosen.buffer.popleft()


class Merge(Generic[T]):
    """Every task of a service's assigned partitions. Feed it records and lags; take records in merged order."""

    def __init__(self, topics: Iterable[str], max_idle: float) -> None:
        self.topics = list(topics)
        self.max_idle = max_idle
        self.tasks: dict[int, Task[T]] = {}

    def assign(self, tps: Iterable[TP]) -> None:
        """The partitions this worker reads from now on. Every buffer is dropped: the consumer fetches again from
        the committed offsets, which are those of the records handled."""
        numbers = {p for t, p in tps if t in self.topics}
        self.tasks = {n: Task(n, self.topics, self.max_idle) for n in sorted(numbers)}

    def add(self, tp: TP, items: Iterable[Item[T]]) -> bool:
        """Buffer fetched records; False (nothing buffered) when `tp` is not assigned as far as the merge knows."""
        task = self.tasks.get(tp[1])
        if task is None or tp not in task.partitions:
            return False
        for item in items:
            task.add(item)
        return True

    def set_lags(self, lags: Mapping[TP, int | None]) -> None:
        for tp, lag in lags.items():
            task = self.tasks.get(tp[1])
            if task is not None and tp in task.partitions:
                task.partitions[tp].lag = lag

    def buffered(self, tp: TP) -> int:
        task = self.tasks.get(tp[1])
        return 0 if task is None or tp not in task.partitions else task.buffered(tp)

    def take(self, now: float, limit: int) -> tuple[list[Item[T]], list[Waiting]]:
        """Up to `limit` records in merged order per task (tasks are independent: their instances differ), and why
        the tasks that stopped early stopped."""
        out: list[Item[T]] = []
        waiting: dict[int, Waiting] = {}
        active = list(self.tasks.values())
        while active and len(out) < limit:
            for task in list(active):  # a record from each task in turn: one busy task does not starve the others
                why = task.ready(now)
                if why is not None:
                    waiting[task.number] = why
                    active.remove(task)
                elif len(out) < limit:
                    out.append(task.take())
        return out, list(waiting.values())
