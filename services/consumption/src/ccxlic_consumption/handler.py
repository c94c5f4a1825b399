"""The consumption computer's handler: load, decide (machine.py, peaks.py), save, emit; inside the runtime's
transaction, so the dedup record, the state, the facts, the reports and the outgoing events commit together.

Per input: the pure step gives the next live state, the fact to record and any rejection. Once per batch and
instance (just before commit): changed sessions are saved; intervals the watermark has passed are closed (revision 1);
closed intervals that late facts touched are re-swept and, when their report changed, re-issued (revision + 1); and
`licensing.consumption.changed` is emitted when the live counts or headroom changed (changes within a batch are
coalesced; the last one published always equals the live state).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    ALL_INSTANCES,
    ClockTicked,
    ConsumptionChanged,
    ConsumptionChangedData,
    ConsumptionFailed,
    FailureReason,
    Headroom,
    IntervalClosed,
    IntervalClosedData,
    Peak,
    PeakWitness,
    SignInRejected,
    SignInRejectedData,
    Witness,
    WitnessAgent,
)
from ccxlic_rules import headroom
from ccxlic_runtime.consumer import Delivery
from ccxlic_runtime.db import ConcurrentUpdate, Transaction

from ccxlic_consumption.machine import Fact, InstanceState, Rules, apply, closable, interval_start
from ccxlic_consumption.peaks import IntervalPeaks, PeakOf, sweep
from ccxlic_consumption.store import Book, ConsumptionStore, PgConsumptionStore

SOURCE = "urn:ccxlic:consumption"
IDS = uuid.UUID("0b8f2d1e-7a44-4c1e-9d0f-5e3a6c2b1f77")


def _id(*parts: object) -> str:
    return str(uuid.uuid5(IDS, ":".join(str(p) for p in parts)))


@dataclass
class _Work:
    """What one batch changed for one instance (lives in the transaction's scratch)."""

    state: InstanceState
    book: Book
    changed_agents: set[str] = field(default_factory=set)
    facts: list[Fact] = field(default_factory=list)
    revise: set[datetime] = field(default_factory=set)


Listener = Callable[[InstanceState], None]
RejectListener = Callable[[str, str], None]


class ConsumptionHandler:
    def __init__(
        self,
        rules: Rules,
        store: ConsumptionStore | None = None,
        on_commit: Listener | None = None,
        on_reject: RejectListener | None = None,
    ) -> None:
        self.rules = rules
        self.store: ConsumptionStore = store or PgConsumptionStore()
        self.cache: dict[str, tuple[InstanceState, Book]] = {}
        self.on_commit = on_commit
        self.on_reject = on_reject

    def due(self) -> list[str]:
        """Instances (in the cache) with an interval the watermark has passed that is not closed yet."""
        return [i for i, (s, b) in self.cache.items() if closable(b.next_close, s.watermark, self.rules)]

    async def touch(self, tx: Transaction, instance: str) -> None:
        """Flush an instance in this transaction: closes what is due, emits what changed."""
        await self._work(tx, instance, create=False)

    async def __call__(self, tx: Transaction, event: Event, d: Delivery) -> None:
        if isinstance(event, ClockTicked) and event.subject == ALL_INSTANCES:
            for instance in sorted(await self._known(tx)):
                await self._one(tx, instance, event)
        else:
            await self._one(tx, event.subject, event)

    async def on_failure(self, tx: Transaction, d: Delivery, event: Event, reason: str) -> None:
        """A failure to compute usage for an instance is published, so alerting can raise it."""
        if event.subject == ALL_INSTANCES:
            return
        await tx.emit(
            ConsumptionFailed(
                id=_id("failed", event.id),
                source=SOURCE,
                time=event.time,
                subject=event.subject,
                data=FailureReason(reason=reason[:2000]),
            )
        )

    async def _known(self, tx: Transaction) -> set[str]:
        known = set(self.cache) | {k[1] for k in tx.scratch if isinstance(k, tuple) and k[0] == "consumption"}
        known |= set(await self.store.instance_ids(tx.conn))
        return known

    async def _work(self, tx: Transaction, instance: str, create: bool) -> _Work | None:
        key = ("consumption", instance)
        work: _Work | None = tx.scratch.get(key)
        if work is None:
            cached = self.cache.get(instance) or await self.store.load(tx.conn, instance)
            if cached is None:
                if not create:
                    return None
                cached = (InstanceState(instance), Book())
            work = _Work(cached[0], cached[1])
            tx.scratch[key] = work
            bound = work

            async def flush(t: Transaction) -> None:
                await self._flush(t, bound)

            tx.before_commit(key, flush)
        return work

    async def _one(self, tx: Transaction, instance: str, event: Event) -> None:
        work = await self._work(tx, instance, create=not isinstance(event, ClockTicked))
        if work is None:
            return  # a tick for an instance nothing has been heard of
        step = apply(work.state, event, self.rules)
        work.state = step.state
        work.changed_agents |= step.changed_agents
        if step.fact is not None:
            self._record(work, step.fact)
        if step.rejection is not None:
            r = step.rejection
            if self.on_reject is not None:
                listener = self.on_reject
                tx.after_commit(lambda: listener(instance, r.license))
            await tx.emit(
                SignInRejected(
                    id=_id("rejected", event.id),
                    source=SOURCE,
                    time=event.time,
                    subject=instance,
                    data=SignInRejectedData(agent_id=r.agent_id, license=r.license, reason=r.reason),
                )
            )

    def _record(self, work: _Work, fact: Fact) -> None:
        work.facts.append(fact)
        first = interval_start(fact.at, self.rules)
        if work.book.next_close is None:
            work.book = replace(work.book, next_close=first)
            return
        # A fact changes usage only in [at, at + max_session): re-sweep the intervals there already closed (or
        # never opened because this fact is older than the first one seen).
        start = first
        while start < fact.at + self.rules.max_session and start < work.book.next_close:
            work.revise.add(start)
            start += self.rules.interval

    async def _flush(self, tx: Transaction, work: _Work) -> None:
        state, instance = work.state, work.state.instance
        if work.facts:
            await self.store.add_facts(tx.conn, instance, work.facts)
        starts = sorted(work.revise)
        to_close = closable(work.book.next_close, state.watermark, self.rules)
        if starts or to_close:
            everything = sorted(set(starts) | set(to_close))
            facts = await self.store.facts(
                tx.conn, instance, everything[0] - self.rules.max_session, everything[-1] + self.rules.interval
            )
            for result in sweep(facts, everything, self.rules.interval, self.rules.max_session):
                await self._report(tx, instance, result, state.watermark or result.end)
            if to_close:
                work.book = replace(work.book, next_close=to_close[-1] + self.rules.interval)
        published = self._published(state)
        seq = work.book.change_seq
        if published != work.book.published and state.watermark is not None:
            seq += 1
            await tx.emit(
                ConsumptionChanged(
                    id=_id("changed", instance, seq),
                    source=SOURCE,
                    time=state.watermark,
                    subject=instance,
                    data=ConsumptionChangedData.model_validate_json(published),
                )
            )
        work.book = replace(work.book, change_seq=seq, published=published)
        try:
            version = await self.store.save(tx.conn, state, work.book, work.changed_agents)
        except ConcurrentUpdate:
            self.cache.pop(instance, None)  # the retry reads what the other worker wrote
            raise
        work.book = replace(work.book, version=version)
        final = (state, work.book)

        def commit() -> None:
            self.cache[instance] = final
            if self.on_commit is not None:
                self.on_commit(state)

        tx.after_commit(commit)

    async def _report(self, tx: Transaction, instance: str, result: IntervalPeaks, now: datetime) -> None:
        peak = Peak(**result.values())
        witness = Witness(**{q: _witness(p) for q, p in result.peaks.items()})
        peak_json, witness_json = peak.model_dump_json(), witness.model_dump_json()
        latest = await self.store.latest_report(tx.conn, instance, result.start)
        if latest is not None and (json.loads(latest[1]), json.loads(latest[2])) == (
            json.loads(peak_json),
            json.loads(witness_json),
        ):
            return
        revision = 1 if latest is None else latest[0] + 1
        await self.store.add_report(tx.conn, instance, result, revision, peak_json, witness_json, now)
        await tx.emit(
            IntervalClosed(
                id=_id("interval", instance, result.start.isoformat(), revision),
                source=SOURCE,
                time=now,
                subject=instance,
                data=IntervalClosedData(
                    interval_start=result.start, interval_end=result.end, revision=revision, peak=peak, witness=witness
                ),
            )
        )

    @staticmethod
    def _published(state: InstanceState) -> str:
        used = state.usage()
        room = headroom(used, state.limits.effective)
        return ConsumptionChangedData(
            standard=used.standard,
            premium=used.premium,
            ivr_ports=state.ports.ivr,
            outbound_ports=state.ports.outbound_ports,
            outbound_seats=state.ports.outbound_seats,
            headroom=Headroom(standard=room.standard, premium=room.premium, ivr_ports=room.ivr_ports),
        ).model_dump_json()


def _witness(p: PeakOf) -> PeakWitness:
    return PeakWitness(
        at=p.at, agents=tuple(WitnessAgent(agent_id=s.agent_id, license=s.license, why=s.why) for s in p.agents)
    )
