"""Merging input partitions by event time, as Kafka Streams does (KIP-353, KIP-695). Pure: what the broker said and
when is a parameter.

A service that reads several topics keyed alike (co-partitioned: the same partition count, keyed by instance)
reads partition p of every topic together, as one *task*. Records wait in a buffer per topic-partition; the task
hands out the head record with the smallest event time among its partitions, ties broken by the topic's rank (its
place in the service's input list) and then by offset. Within a partition, records keep their log order.

A task hands out its head record only when every other partition of it has a record buffered, or is known to have
nothing written before that record:
- a partition behind its high watermark (data is on the broker, not fetched yet) is waited for, as long as that
  takes: this is what makes a replay, where every record is already in the log, come out in the same order whatever
  the fetches do;
- an empty partition counts as caught up only on evidence newer than the head record: an end offset asked of the
  broker after that record arrived, which the consumer's position has reached (`set_ends`; the task says which
  partitions it needs, `Waiting.needs`). A publisher that wrote to it before writing the head record is then seen
  first, however late the fetches come under load: a clock tick never overtakes the data written before it. A
  high watermark from a fetch is no such evidence (that fetch may have been answered before the head was written).
Once caught up on that evidence, a partition is not waited for: a record written to it later is handled late.
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
    """A buffered record: where it came from, its event time (None: it did not decode), what it carries, and which
    fetch brought it (the consumer loop counts them: evidence about other partitions must be newer)."""

    tp: TP
    offset: int
    time: datetime | None
    value: T
    arrival: int = 0


@dataclass(frozen=True, slots=True)
class Waiting:
    """Why a task hands out nothing now; `needs`: the partitions whose end offset, asked now, would settle it."""

    task: int
    reason: str
    needs: tuple[TP, ...] = ()


@dataclass
class _Partition(Generic[T]):
    rank: int
    buffer: deque[Item[T]] = field(default_factory=deque)
    lag: int | None = None  # records on the broker not fetched yet (None: unknown)
    evidence: int = -1  # the fetch count as of which the broker said the lag is 0 (-1: never)


class Task(Generic[T]):
    """Partition p of every input topic."""

    def __init__(self, number: int, topics: Iterable[str]) -> None:
        self.number = number
        self.partitions: dict[TP, _Partition[T]] = {
            (topic, number): _Partition(rank) for rank, topic in enumerate(topics)
        }

    def add(self, item: Item[T]) -> None:
        self.partitions[item.tp].buffer.append(item)

    def buffered(self, tp: TP) -> int:
        return len(self.partitions[tp].buffer)

    def _head(self) -> tuple[_Partition[T] | None, Item[T] | None]:
        """The partition whose head record goes next, by (event time, topic rank, offset)."""
        best: tuple[datetime, int, int] | None = None
        chosen: _Partition[T] | None = None
        for p in self.partitions.values():
            if not p.buffer:
                continue
            head = p.buffer[0]
            key = (head.time or _NO_TIME, p.rank, head.offset)
            if best is None or key < best:
                best, chosen = key, p
        return chosen, None if chosen is None else chosen.buffer[0]

    def ready(self) -> Waiting | None:
        """None when the head can be handed out; else why not."""
        _, head = self._head()
        if head is None:
            return Waiting(self.number, "no record buffered")
        needs: list[TP] = []
        for tp, p in self.partitions.items():
            if p.buffer:
                continue
            if p.lag is not None and p.lag > 0:
                return Waiting(self.number, f"{tp[0]}[{tp[1]}]: {p.lag} record(s) on the broker not fetched yet")
            if p.lag is None or p.evidence < head.arrival:
                needs.append(tp)
        if needs:
            names = ", ".join(f"{t}[{n}]" for t, n in needs)
            return Waiting(
                self.number,
                f"{names}: caught up only as of before the record at {head.tp[0]}[{head.tp[1]}] offset "
                f"{head.offset} arrived; asking the broker",
                tuple(needs),
            )
        return None

    def take(self) -> Item[T]:
        """The head with the smallest (event time, topic rank, offset)."""
        chosen, _ = self._head()
        assert chosen is not None
        return chosen.buffer.popleft()


class Merge(Generic[T]):
    """Every task of a service's assigned partitions. Feed it records, lags and end offsets; take records in merged
    order."""

    def __init__(self, topics: Iterable[str]) -> None:
        self.topics = list(topics)
        self.tasks: dict[int, Task[T]] = {}

    def assign(self, tps: Iterable[TP]) -> None:
        """The partitions this worker reads from now on. Every buffer is dropped: the consumer fetches again from
        the committed offsets, which are those of the records handled."""
        numbers = {p for t, p in tps if t in self.topics}
        self.tasks = {n: Task(n, self.topics) for n in sorted(numbers)}

    def add(self, tp: TP, items: Iterable[Item[T]]) -> bool:
        """Buffer fetched records; False (nothing buffered) when `tp` is not assigned as far as the merge knows."""
        task = self.tasks.get(tp[1])
        if task is None or tp not in task.partitions:
            return False
        for item in items:
            task.add(item)
        return True

    def _partition(self, tp: TP) -> _Partition[T] | None:
        task = self.tasks.get(tp[1])
        return None if task is None else task.partitions.get(tp)

    def set_lags(self, lags: Mapping[TP, int | None]) -> None:
        """What the last fetches said: records behind the high watermark (not evidence of being caught up)."""
        for tp, lag in lags.items():
            p = self._partition(tp)
            if p is not None:
                p.lag = lag

    def set_ends(self, lags: Mapping[TP, int], evidence: int) -> None:
        """What the broker said of the partitions' end offsets when asked after fetch number `evidence`: the records
        between the consumer's position and the end offset (0: caught up as of that fetch)."""
        for tp, lag in lags.items():
            p = self._partition(tp)
            if p is not None:
                p.lag = lag
                if lag == 0:
                    p.evidence = max(p.evidence, evidence)

    def buffered(self, tp: TP) -> int:
        task = self.tasks.get(tp[1])
        return 0 if task is None or tp not in task.partitions else task.buffered(tp)

    def take(self, limit: int) -> tuple[list[Item[T]], list[Waiting]]:
        """Up to `limit` records in merged order per task (tasks are independent: their instances differ), and why
        the tasks that stopped early stopped."""
        out: list[Item[T]] = []
        waiting: dict[int, Waiting] = {}
        active = list(self.tasks.values())
        while active and len(out) < limit:
            for task in list(active):  # a record from each task in turn: one busy task does not starve the others
                why = task.ready()
                if why is not None:
                    waiting[task.number] = why
                    active.remove(task)
                elif len(out) < limit:
                    out.append(task.take())
        return out, list(waiting.values())
