"""The per-instance processor: the one place that turns a service's pure decider into a unit of work.

A service supplies a `Decider` (pure: `initial`, `decide`, and `resume` when it asks to read something), a `Store`
(its tables, through the unit of work) and `publish` (its outputs as wire events). The runtime does the rest, for
every input of a batch, inside the policy's transaction (policy.py):
1. the instance's state comes from the cache, or the store, or `initial` (a clock tick never creates an instance;
   a tick for every instance, `*`, is handed to each instance of the partition it came on, as its own tick), as the
   decider's working copy: a decider may change that in place within the unit of work (the consumption computer
   does: copying its live state per input cost more than its rules); the committed state is never changed;
2. `decide(state, event, env)` gives the next state and the outputs, in order; when it asks to read (`need`), the
   outputs so far are written (so the read sees them) and `resume(state, answer)` goes on;
3. at the end of the batch each instance's state is saved over the version it was read at (another worker's newer
   save makes that a `ConcurrentUpdate`: transient, the batch is retried on fresh state), then its outputs are
   written and its events queued on the service's output topic (or, with none, each on its type's topic), in the
   order decided. The save comes first, so a
   worker that lost the race never writes an output (no duplicate history rows); when outputs must be written
   before a read, the state is saved first for the same reason (the row stays locked until COMMIT);
4. once committed, the cache holds the new state and `on_commit` hears of it (metrics, wake-ups).
Outputs are per input, never per batch, so what a service publishes does not depend on how its input was batched.

A service that keeps a licensing log (`Audit`) has the inputs and the published events it names appended to each
instance's chain (`audit_log`, ccxlic_audit's entries) in the same unit of work, in the order handled: the log is a
function of the service's ordered stream, as its state is, and exactly once with it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ccxlic_audit.log import Head, following
from ccxlic_contract import Event, Topic, encode
from ccxlic_contract.events import ALL_INSTANCES, ClockTicked

from ccxlic_runtime.db import ConcurrentUpdate, Transaction
from ccxlic_runtime.policy import Delivery

S = TypeVar("S")  # an instance's state
O = TypeVar("O")  # noqa: E741 - an output
E = TypeVar("E")  # what every decision of a batch reads besides the state
S_co = TypeVar("S_co", covariant=True)
O_co = TypeVar("O_co", covariant=True)
O_contra = TypeVar("O_contra", contravariant=True)
E_co = TypeVar("E_co", covariant=True)
E_contra = TypeVar("E_contra", contravariant=True)

TICKS = uuid.UUID("5b0e7d8a-1f3c-4a6e-9b2d-7c4e1a9f3b58")


@dataclass(frozen=True, slots=True)
class Decision(Generic[S_co, O_co]):
    """What a decider made of an input: the next state, its outputs in order, and what it needs read before it
    can go on (None: nothing)."""

    state: S_co
    outputs: tuple[O_co, ...] = ()
    need: object | None = None


@dataclass(frozen=True, slots=True)
class Forwarded:
    """An output that is the input itself, passed on unchanged downstream (in the order handled): how a service
    forwards the types its topic's registry entry names (`Topic.forwards`)."""

    event: Event


class Decider(Protocol[S, O_co, E_contra]):
    """A service's rules for one instance. Pure: no I/O, no clock, no randomness."""

    def initial(self, instance: str) -> S: ...

    def working(self, state: S) -> S:
        """The state a unit of work starts from: a copy that `decide` may change in place (a frozen state is its own
        working copy). The cache and the store keep the committed state; a rolled-back unit of work drops its copy."""
        ...

    def decide(self, state: S, event: Event, env: E_contra) -> Decision[S, O_co]: ...

    def resume(self, state: S, answer: object) -> Decision[S, O_co]:
        """Go on with what the store read for the decision's `need`."""
        ...

    def saved(self, state: S) -> S:
        """The state once the store has saved it (a decider that notes what is left to write forgets it here)."""
        ...


class Store(Protocol[S, O_contra, E_co]):
    """A service's tables, through the unit of work. One adapter suite runs on the PostgreSQL store and the fake."""

    async def load(self, uow: Transaction, instance: str) -> tuple[S, int] | None:
        """The instance's state as last saved, and the row's version; None when it was never saved."""
        ...

    async def save(
        self, uow: Transaction, instance: str, partition: int, before: S | None, after: S, version: int
    ) -> int:
        """Save the state over the row's `version` (0: a new instance) and return the new version; raise
        ConcurrentUpdate when the row is at another version (here, or at the unit of work's flush when the store
        queues the save: `Transaction.save`). `before` is the state as loaded, or as saved earlier in
        this unit of work (to save only what changed; a decider that changes its working copy in place notes what
        changed itself, and `before` may then be that same object)."""
        ...

    async def write(self, uow: Transaction, instance: str, outputs: Sequence[O_contra]) -> None:
        """Record what the outputs say to record (history, facts, deliveries...)."""
        ...

    async def read(self, uow: Transaction, instance: str, need: object) -> object:
        """Answer a decider's `need`."""
        ...

    async def instances(self, uow: Transaction, partition: int) -> list[str]:
        """The instances saved from input `partition` (for `*` ticks)."""
        ...

    async def env(self, uow: Transaction) -> E_co:
        """What every decision of a batch reads besides the state (alerting: the silences)."""
        ...


Publish = Callable[[str, O], Sequence[Event]]
"""An output as the events it publishes (none for what is only recorded)."""


@dataclass(frozen=True, slots=True)
class Audit:
    """What a service appends to an instance's licensing log: each input `inputs` picks (given the events that input
    published; None: no input), then each event it published whose type is in `outputs`; an entry's kind is the
    event's type and its body the CloudEvent as JSON, so a verifier decodes it and decides it again."""

    inputs: Callable[[Event, Sequence[Event]], bool] | None
    outputs: frozenset[str]


def telling(outputs: frozenset[str]) -> Audit:
    """A log of every input and the published events of the `outputs` types, but for a clock tick that published none
    of them: such a tick only moved the instance's time, and the next input moves it as far (a deadline fires
    stamped with itself, not with the input that passed it), so a verifier deciding the logged inputs again comes to
    the same outputs without it."""

    def inputs(event: Event, published: Sequence[Event]) -> bool:
        return not isinstance(event, ClockTicked) or any(e.type in outputs for e in published)

    return Audit(inputs, outputs)


@dataclass
class _Work(Generic[S, O]):
    instance: str
    partition: int
    before: S | None  # as loaded
    state: S
    version: int
    saved: S | None = None  # as saved in this transaction so far (None: as loaded)
    locked: bool = False  # saved once in this transaction: the row is ours until COMMIT
    outputs: list[O] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # what outputs[:published] publish, in order
    published: int = 0
    written: int = 0  # outputs[:written] are written already (before a read)
    logged: list[Event] = field(default_factory=list)  # what goes into the instance's licensing log


class Instances(Generic[S, O, E]):
    """The runtime's `Application`: a decider and a store, per instance, in the policy's unit of work."""

    def __init__(
        self,
        decider: Decider[S, O, E],
        store: Store[S, O, E],
        publish: Publish[O],
        output: Topic | None,
        *,
        on_commit: Callable[[str, S | None, S, Sequence[O]], None] | None = None,
        on_failure: Callable[[Event, str], Sequence[Event]] | None = None,
        audit: Audit | None = None,
    ) -> None:
        self.decider = decider
        self.store = store
        self.publish = publish
        self.output = output
        self.on_commit = on_commit
        self.on_failure = on_failure
        self.audit = audit
        self.cache: dict[str, tuple[S, int]] = {}
        self.heads: dict[str, Head] = {}  # where each instance's log stands, as committed
        self._heads: dict[str, Head] = {}  # as this unit of work leaves them
        self._work: dict[str, _Work[S, O]] = {}
        self._env: tuple[E] | None = None
        self._saved: list[tuple[str, S | None, S, int, list[O]]] = []

    # ------------------------------------------------------------ Application

    def begin(self, uow: Transaction) -> None:
        self._reset()

    async def handle(self, uow: Transaction, event: Event, delivery: Delivery) -> None:
        if isinstance(event, ClockTicked) and event.subject == ALL_INSTANCES:
            known = set(await self.store.instances(uow, delivery.partition))
            known |= {w.instance for w in self._work.values() if w.partition == delivery.partition}
            for instance in sorted(known):
                await self._one(uow, instance, delivery.partition, tick_for(event, instance))
        else:
            await self._one(uow, event.subject, delivery.partition, event)

    async def finish(self, uow: Transaction) -> None:
        events: list[Event] = []
        for w in self._work.values():
            await self._save(uow, w)
            await self._write(uow, w)
            self._publish(w)
            if self.audit is not None and self.audit.inputs is None:
                w.logged = [e for e in w.events if e.type in self.audit.outputs]
            if w.logged:
                await self._log(uow, w)
            self._saved.append((w.instance, w.before, w.state, w.version, w.outputs))
            events.extend(w.events)
        await uow.emit(*events, topic=self.output)

    def committed(self) -> None:
        for instance, before, after, version, outputs in self._saved:
            self.cache[instance] = (after, version)
            if self.on_commit is not None:
                self.on_commit(instance, before, after, outputs)
        self.heads.update(self._heads)
        self._reset()

    def abort(self) -> None:
        for instance in self._work:  # another worker may have appended to its log: read its head afresh
            self.heads.pop(instance, None)
        self._reset()

    async def failed(self, uow: Transaction, event: Event, reason: str) -> None:
        if self.on_failure is not None:
            await uow.emit(*self.on_failure(event, reason), topic=self.output)

    def forget(self) -> None:
        """Drop the cache (the partitions moved: another worker may change these instances now)."""
        self.cache.clear()
        self.heads.clear()

    # ------------------------------------------------------------ per instance

    def _reset(self) -> None:
        self._work, self._env, self._saved, self._heads = {}, None, [], {}

    async def _one(self, uow: Transaction, instance: str, partition: int, event: Event) -> None:
        w = self._work.get(instance)
        if w is None:
            found = self.cache.get(instance) or await self.store.load(uow, instance)
            if found is None:
                if isinstance(event, ClockTicked):
                    return  # a tick for an instance nothing has been heard of
                w = _Work(instance, partition, None, self.decider.initial(instance), 0)
            else:
                w = _Work(instance, partition, found[0], self.decider.working(found[0]), found[1])
            self._work[instance] = w
        if self._env is None:
            self._env = (await self.store.env(uow),)
        decision = self.decider.decide(w.state, event, self._env[0])
        while True:
            w.state = decision.state
            w.outputs.extend(decision.outputs)
            if decision.need is None:
                break
            await self._save(uow, w)  # the row is ours (or this is a lost race: nothing is written)
            await self._write(uow, w)  # the read sees everything decided so far
            answer = await self.store.read(uow, instance, decision.need)
            decision = self.decider.resume(w.state, answer)
        if self.audit is not None and self.audit.inputs is not None:  # the log interleaves inputs and outputs
            published = self._publish(w)
            if self.audit.inputs(event, published):
                w.logged.append(event)
            w.logged.extend(e for e in published if e.type in self.audit.outputs)

    def _publish(self, w: _Work[S, O]) -> list[Event]:
        """The events of the outputs not published yet (in order), now noted as published."""
        new = [e for out in w.outputs[w.published :] for e in self.publish(w.instance, out)]
        w.published = len(w.outputs)
        w.events.extend(new)
        return new

    async def _save(self, uow: Transaction, w: _Work[S, O]) -> None:
        previous = w.saved if w.locked else w.before
        try:
            w.version = await self.store.save(uow, w.instance, w.partition, previous, w.state, w.version)
        except ConcurrentUpdate:
            self.cache.pop(w.instance, None)  # the retry reads what the other worker saved
            self.heads.pop(w.instance, None)
            raise
        w.state = self.decider.saved(w.state)
        w.saved, w.locked = w.state, True

    async def _log(self, uow: Transaction, w: _Work[S, O]) -> None:
        """Append what the unit of work logged to the instance's chain, after its last committed entry."""
        head = self._heads.get(w.instance) or self.heads.get(w.instance)
        if head is None:
            head = await uow.log_head(w.instance)
        rows = []
        for e in w.logged:
            text = following(head.seq, head.hash, e.type, e.time, json.loads(encode(e))).bytes()
            head = head.after(text)
            rows.append((w.instance, head.seq, e.type, e.time, text.decode(), head.hash))
        uow.append_log(w.instance, rows, head)
        self._heads[w.instance] = head

    async def _write(self, uow: Transaction, w: _Work[S, O]) -> None:
        if w.written < len(w.outputs):
            await self.store.write(uow, w.instance, w.outputs[w.written :])
            w.written = len(w.outputs)


def tick_for(tick: ClockTicked, instance: str) -> ClockTicked:
    """A `*` tick as one instance's own tick, with an id of its own (stable: a replay gives the same one)."""
    return ClockTicked(
        id=str(uuid.uuid5(TICKS, f"{tick.id}:{instance}")),
        source=tick.source,
        time=tick.time,
        subject=instance,
    )
