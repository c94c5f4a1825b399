"""Compliance's handler: load, step (machine.py), save, emit; inside the runtime's transaction, so the dedup
record, the new state, the history and the outgoing `licensing.compliance.changed` events commit together."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ccxlic_contract.codec import Event
from ccxlic_contract.events import ALL_INSTANCES, ClockTicked, ComplianceChanged
from ccxlic_runtime.consumer import Delivery
from ccxlic_runtime.db import ConcurrentUpdate, Transaction

from ccxlic_compliance.machine import Rules, State, Transition, step
from ccxlic_compliance.store import ComplianceStore, PgComplianceStore

SOURCE = "urn:ccxlic:compliance"
IDS = uuid.UUID("3f0c9b7e-2d41-4f5a-8e6b-1a7c9d2e4b60")

Listener = Callable[[State, Rules], None]


@dataclass
class _Work:
    state: State
    seq: int
    version: int  # of the stored row (0: not stored yet)
    new: list[Transition] = field(default_factory=list)


class ComplianceHandler:
    def __init__(self, rules: Rules, store: ComplianceStore | None = None, on_commit: Listener | None = None) -> None:
        self.rules = rules
        self.store: ComplianceStore = store or PgComplianceStore()
        self.cache: dict[str, tuple[State, int, int]] = {}
        self.on_commit = on_commit

    async def __call__(self, tx: Transaction, event: Event, d: Delivery) -> None:
        if isinstance(event, ClockTicked) and event.subject == ALL_INSTANCES:
            for instance in sorted(await self._known(tx)):
                await self._one(tx, instance, event)
        else:
            await self._one(tx, event.subject, event)

    async def _known(self, tx: Transaction) -> set[str]:
        known = set(self.cache) | {k[1] for k in tx.scratch if isinstance(k, tuple) and k[0] == "compliance"}
        return known | set(await self.store.instance_ids(tx.conn))

    async def _one(self, tx: Transaction, instance: str, event: Event) -> None:
        key = ("compliance", instance)
        work: _Work | None = tx.scratch.get(key)
        if work is None:
            found = self.cache.get(instance) or await self.store.load(tx.conn, instance)
            if found is None:
                if isinstance(event, ClockTicked):
                    return  # a tick for an instance nothing has been heard of
                found = (State(instance=instance), 0, 0)
            work = _Work(*found)
            tx.scratch[key] = work
            bound = work

            async def flush(t: Transaction) -> None:
                await self._flush(t, bound)

            tx.before_commit(key, flush)
        result = step(work.state, event, self.rules)
        work.state = result.state
        work.new.extend(result.transitions)
        work.seq += len(result.transitions)

    async def _flush(self, tx: Transaction, work: _Work) -> None:
        state = work.state
        try:
            version = await self.store.save(tx.conn, state, work.seq, work.new, work.version)
        except ConcurrentUpdate:
            self.cache.pop(state.instance, None)  # the retry reads what the other worker wrote
            raise
        first = work.seq - len(work.new) + 1
        await tx.emit(
            *(
                ComplianceChanged(
                    id=str(uuid.uuid5(IDS, f"{state.instance}:{first + i}")),
                    source=SOURCE,
                    time=t.at,
                    subject=state.instance,
                    data=t.view,
                )
                for i, t in enumerate(work.new)
            )
        )
        final = (state, work.seq, version)

        def commit() -> None:
            self.cache[state.instance] = final
            if self.on_commit is not None:
                self.on_commit(state, self.rules)

        tx.after_commit(commit)
