"""The chain in this process: one instance's inputs through the three services' own deciders (consumption computer ->
compliance -> alerting), with the consumption computer's facts and reports kept in memory. No broker, no database,
no clock: what the services would record from these inputs, computed again. Pure.

The runtime's `Instances` is followed where it bears on the result: a tick for an instance nothing has been heard of
does nothing, a tick for every instance (`*`) is the instance's own tick, an input whose id was handled before is
skipped, and an input whose handling raises is dead-lettered (the consumption computer tells downstream with
`licensing.consumption.failed`) while the state stays as it was before it. Everything else is the deciders' and
their `publish` mappings': the same code the services run, so the same inputs give the same reports, transitions and
alerts (tests/integration/test_whatif.py holds the services to that).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from ccxlic_alerting.decider import Acted, AlertingDecider
from ccxlic_alerting.handler import publish as alerting_publish
from ccxlic_alerting.machine import Rules as AlertingRules
from ccxlic_compliance.decider import ComplianceDecider, Transitioned
from ccxlic_compliance.handler import publish as compliance_publish
from ccxlic_compliance.machine import Rules as ComplianceRules
from ccxlic_consumption.decider import (
    Breached,
    ConsumptionDecider,
    Recorded,
    Rejected,
    Reported,
    Stored,
    Window,
)
from ccxlic_consumption.handler import failed as consumption_failed
from ccxlic_consumption.handler import publish as consumption_publish
from ccxlic_consumption.machine import Fact
from ccxlic_consumption.machine import Rules as ConsumptionRules
from ccxlic_contract import ContractError
from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    ALL_INSTANCES,
    ClockTicked,
    ConsumptionChanged,
    EntitlementsSet,
    InstanceDeregistered,
    InstanceRegistered,
    IntervalClosedData,
    Peak,
    ReservationInstalled,
    ReservationReturned,
    Witness,
)
from ccxlic_rules import Entitlement
from ccxlic_runtime.instances import Decider, tick_for
from ccxlic_runtime.merge import Item, Merge
from ccxlic_runtime.policy import Decoder, Delivery

S = TypeVar("S")
O = TypeVar("O")  # noqa: E741 - an output
E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class ChainRules:
    """Each service's rules, as its settings give them."""

    consumption: ConsumptionRules = field(default_factory=ConsumptionRules)
    compliance: ComplianceRules = field(default_factory=ComplianceRules)
    alerting: AlertingRules = field(default_factory=AlertingRules)


class MemoryFacts:
    """The consumption computer's facts and reports, in memory: what its `read` answers a `Window` with."""

    def __init__(self) -> None:
        self.keys: list[tuple[datetime, str]] = []  # sorted
        self.facts: dict[tuple[datetime, str], Fact] = {}
        self.latest: dict[datetime, tuple[int, Peak, Witness]] = {}

    def clear(self) -> None:
        self.keys, self.facts, self.latest = [], {}, {}

    def write(self, outputs: Sequence[object]) -> None:
        for o in outputs:
            if isinstance(o, Recorded):
                key = (o.fact.at, o.fact.event_id)
                if key not in self.facts:  # (instance, at, event_id) is the table's key
                    self.facts[key] = o.fact
                    if not self.keys or key > self.keys[-1]:
                        self.keys.append(key)
                    else:
                        bisect.insort(self.keys, key)
            elif isinstance(o, Reported):
                d = o.data
                self.latest[d.interval_start] = (d.revision, d.peak, d.witness)

    def read(self, need: object) -> Stored:
        assert isinstance(need, Window)
        lo = bisect.bisect_left(self.keys, (need.since, ""))
        hi = bisect.bisect_left(self.keys, (need.until, ""))
        facts = tuple(self.facts[k] for k in self.keys[lo:hi])
        latest = {s: self.latest[s] for s in need.revise if s in self.latest}
        return Stored(need, facts, latest)


class Stage(Generic[S, O, E]):
    """One service's decider for one instance, as the runtime drives it (instances.py)."""

    def __init__(
        self,
        instance: str,
        decider: Decider[S, O, E],
        publish: Callable[[str, O], Sequence[Event]],
        env: E,
        *,
        facts: MemoryFacts | None = None,
        on_failure: Callable[[Event, str], Sequence[Event]] | None = None,
    ) -> None:
        self.instance = instance
        self.decider = decider
        self.publish = publish
        self.env = env
        self.facts = facts
        self.on_failure = on_failure
        self.state: S | None = None
        self.seen: set[str] = set()
        self.handled: list[Event] = []  # kept only for a decider that changes its state in place (to undo a failure)
        self.in_place = False
        self.failures: list[tuple[Event, str]] = []

    def handle(self, event: Event) -> tuple[list[O], list[Event]]:
        """The outputs of one input and the events they publish, in order."""
        key = event.id  # the dedup record: a duplicate changes nothing (a `*` tick is one input per partition)
        if key in self.seen:
            return [], []
        if isinstance(event, ClockTicked) and event.subject == ALL_INSTANCES:
            if self.state is None:
                return [], []
            event = tick_for(event, self.instance)
        if self.state is None:
            if isinstance(event, ClockTicked):
                return [], []  # a tick for an instance nothing has been heard of
            self.state = self.decider.initial(self.instance)
            self.in_place = self.decider.working(self.state) is not self.state
        before = self.state
        try:
            outputs = self._decide(event)
        except Exception as exc:  # the services dead-letter it; the state is as before it
            self.failures.append((event, f"{type(exc).__name__}: {exc}"))
            self._undo(before)
            told = self.on_failure(event, str(exc)) if self.on_failure is not None else ()
            return [], list(told)
        self.seen.add(key)
        if self.in_place:
            self.handled.append(event)
        events: list[Event] = []
        for o in outputs:
            events.extend(self.publish(self.instance, o))
        return outputs, events

    def _decide(self, event: Event) -> list[O]:
        assert self.state is not None
        decision = self.decider.decide(self.state, event, self.env)
        outputs: list[O] = []
        written = 0
        while True:
            self.state = decision.state
            outputs.extend(decision.outputs)
            if decision.need is None:
                break
            assert self.facts is not None, "only the consumption computer asks to read"
            self.facts.write(outputs[written:])  # the read sees everything decided so far
            written = len(outputs)
            decision = self.decider.resume(self.state, self.facts.read(decision.need))
        if self.facts is not None:
            self.facts.write(outputs[written:])
        self.state = self.decider.saved(self.state)
        return outputs

    def _undo(self, before: S) -> None:
        if not self.in_place:
            self.state = before
            return
        # the state was changed in place: build it again from the inputs handled before (a failure is rare)
        handled, self.handled, self.seen = self.handled, [], set()
        self.state = self.decider.initial(self.instance)
        if self.facts is not None:
            self.facts.clear()
        for e in handled:
            self._decide(e)
            self.seen.add(e.id)
            self.handled.append(e)


@dataclass
class Outcome:
    """What the services would record for the instance: every output of the three deciders, in order."""

    inputs: int = 0
    reports: list[IntervalClosedData] = field(default_factory=list)  # every revision, in the order closed
    rejected: list[Rejected] = field(default_factory=list)
    breaches: list[Breached] = field(default_factory=list)
    changes: int = 0  # licensing.consumption.changed published
    transitions: list[Transitioned] = field(default_factory=list)
    actions: list[Acted] = field(default_factory=list)
    failures: list[tuple[str, Event, str]] = field(default_factory=list)  # (service, input, reason)
    published: dict[str, list[Event]] | None = None  # with `keep`: each service's published events, in order
    limits: list[tuple[datetime, Entitlement | None]] = field(default_factory=list)
    """What usage was measured against from when (the entitlements while registered, a reservation; None: none)."""


_LIMITS = (EntitlementsSet, InstanceRegistered, InstanceDeregistered, ReservationInstalled, ReservationReturned)
"""The inputs that change what usage is measured against."""


class Chain:
    """The three deciders of one instance, each feeding the next with what it publishes."""

    def __init__(self, instance: str, rules: ChainRules, *, keep: bool = False) -> None:
        self.instance = instance
        self.consumption = Stage(
            instance,
            ConsumptionDecider(rules.consumption),
            consumption_publish,
            None,
            facts=MemoryFacts(),
            on_failure=consumption_failed,
        )
        self.compliance = Stage(instance, ComplianceDecider(rules.compliance), compliance_publish, None)
        self.alerting: Stage[Any, Acted, Any] = Stage(instance, AlertingDecider(rules.alerting), alerting_publish, ())
        self.outcome = Outcome(published={"consumption": [], "compliance": [], "alerting": []} if keep else None)

    def feed(self, event: Event) -> None:
        out = self.outcome
        out.inputs += 1
        outputs, events = self.consumption.handle(event)
        if isinstance(event, _LIMITS) and self.consumption.state is not None:
            limits = self.consumption.state.live.limits.effective
            if not out.limits or out.limits[-1][1] != limits:
                out.limits.append((event.time, limits))
        for o in outputs:
            if isinstance(o, Reported):
                out.reports.append(o.data)
            elif isinstance(o, Rejected):
                out.rejected.append(o)
            elif isinstance(o, Breached):
                out.breaches.append(o)
        kept = out.published
        for e in events:
            if isinstance(e, ConsumptionChanged):
                out.changes += 1
            transitions, forwarded = self.compliance.handle(e)
            out.transitions.extend(t for t in transitions if isinstance(t, Transitioned))
            for f in forwarded:
                acted, alerts = self.alerting.handle(f)
                out.actions.extend(acted)
                if kept is not None:
                    kept["alerting"].extend(alerts)
            if kept is not None:
                kept["compliance"].extend(forwarded)
        if kept is not None:
            kept["consumption"].extend(events)

    def run(self, events: Iterable[Event], progress: Callable[[int], None] | None = None) -> Outcome:
        """Feed every input; `progress(n)` hears how many were fed, every 10,000."""
        for n, e in enumerate(events, 1):
            self.feed(e)
            if progress is not None and n % 10_000 == 0:
                progress(n)
        for name, stage in (("consumption", self.consumption), ("compliance", self.compliance)):
            self.outcome.failures.extend((name, e, why) for e, why in stage.failures)
        self.outcome.failures.extend(("alerting", e, why) for e, why in self.alerting.failures)
        return self.outcome


def replay(
    instance: str,
    events: Iterable[Event],
    rules: ChainRules | None = None,
    *,
    keep: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Outcome:
    """The instance's inputs, in the order the consumption computer handles them, through the chain."""
    return Chain(instance, rules or ChainRules(), keep=keep).run(events, progress)


def merged(logs: Mapping[str, Sequence[Delivery]], decoder: Decoder, instance: str) -> list[Event]:
    """The instance's inputs in the order the consumption computer handles them: one partition of each of its input
    topics (`logs`, in its input order, every record of them), merged by event time as the runtime's merge does
    with every record already in the log, decoded as the service decodes them (what it dead-letters or reroutes is
    left out: a rerouted record comes back on the reroute topic, which is one of the logs)."""
    merge: Merge[Delivery] = Merge(list(logs))
    merge.assign({(d.topic, d.partition) for records in logs.values() for d in records})
    decoded: dict[tuple[str, int], Event] = {}
    for records in logs.values():
        items = []
        for d in records:
            ev = decoder.decode(d)
            if isinstance(ev, ContractError):
                items.append(Item((d.topic, d.partition), d.offset, None, d))
            else:
                decoded[(d.topic, d.offset)] = ev
                items.append(Item((d.topic, d.partition), d.offset, ev.time, d))
        if items:
            merge.add(items[0].tp, items)
    merge.set_ends({tp: 0 for task in merge.tasks.values() for tp in task.partitions}, 0)
    out: list[Event] = []
    while True:
        taken, _ = merge.take(10_000)
        if not taken:
            return out
        for item in taken:
            ev2 = decoded.get((item.value.topic, item.value.offset))
            if ev2 is not None and ev2.subject in (instance, ALL_INSTANCES):
                out.append(ev2)
