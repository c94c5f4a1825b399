"""Order does not matter: the whole chain, as the runtime runs it, over fakes. Inputs on the five topics of the
consumption computer arrive in any interleaving that keeps each partition's order (fetched in any chunks), are
handled in batches of any size with restarts between them, and every stage's output feeds the next the same way:
what every output topic carries (consumption, compliance, alerts) is always the same."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from ccxlic_alerting.app import INPUTS as ALERTING_INPUTS
from ccxlic_alerting.app import AlertingMetrics
from ccxlic_alerting.app import build as build_alerting
from ccxlic_alerting.settings import AlertingSettings
from ccxlic_compliance.app import INPUTS as COMPLIANCE_INPUTS
from ccxlic_compliance.app import ComplianceMetrics
from ccxlic_compliance.app import build as build_compliance
from ccxlic_compliance.settings import ComplianceSettings
from ccxlic_consumption.app import INPUTS as CONSUMPTION_INPUTS
from ccxlic_consumption.app import ConsumptionMetrics
from ccxlic_consumption.app import build as build_consumption
from ccxlic_consumption.settings import ConsumptionSettings
from ccxlic_contract import Event, topic_for
from ccxlic_runtime.merge import Item, Merge
from ccxlic_runtime.policy import Delivery
from ccxlic_runtime.settings import load_settings
from ccxlic_testing.build import Build
from ccxlic_testing.fakes import FakeDatabase, Worker, delivery
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.unit.alerting.fakes import FakeAlertingStore
from tests.unit.compliance.fakes import FakeComplianceStore
from tests.unit.consumption.fakes import FakeConsumptionStore

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
M = timedelta(minutes=1)
CONSUMPTION = load_settings(ConsumptionSettings)
COMPLIANCE = load_settings(ComplianceSettings)
ALERTING = load_settings(AlertingSettings)


def stage(name: str) -> Worker:
    if name == "consumption":
        store: Any = FakeConsumptionStore()
        return Worker(
            FakeDatabase(store),
            lambda: build_consumption(CONSUMPTION, ConsumptionMetrics(CollectorRegistry()), store),
            CONSUMPTION_INPUTS,
        )
    if name == "compliance":
        store = FakeComplianceStore()
        return Worker(
            FakeDatabase(store),
            lambda: build_compliance(COMPLIANCE, ComplianceMetrics(CollectorRegistry()), store),
            COMPLIANCE_INPUTS,
        )
    store = FakeAlertingStore(["email"])
    return Worker(
        FakeDatabase(store),
        lambda: build_alerting(ALERTING, AlertingMetrics(CollectorRegistry()), lambda: None, store),
        ALERTING_INPUTS,
    )


# ---------------------------------------------------------------- inputs: two instances, five topics

KINDS = ("in", "out", "ports", "entitle", "register", "renew_failed", "renewed", "tick", "tick_all")


def inputs(script: list[tuple[str, int, int]]) -> list[Event]:
    """Each instance's events in time order per topic (as a publisher sends them)."""
    builds = {"a": Build("cc-a"), "b": Build("cc-b")}
    events: list[Event] = [
        builds["a"].entitle(T0, 2, 1, overage_allowed=False),
        builds["b"].entitle(T0, 1, 1),
        builds["b"].register(T0),
    ]
    for kind, minute, n in sorted(script, key=lambda s: s[1]):
        events.append(_event(builds["a" if n % 2 else "b"], kind, T0 + minute * M, n))
    return events


def _event(b: Build, kind: str, t: datetime, n: int) -> Event:
    if kind == "in":
        return b.sign_in(t, f"p{n % 4}", *(("chat",) if n % 3 else ()))
    if kind == "out":
        return b.sign_out(t, f"p{n % 4}")
    if kind == "ports":
        return b.ports(t, n % 5)
    if kind == "entitle":
        return b.entitle(t, n % 3, n % 2, overage_allowed=n % 4 != 0)
    if kind == "register":
        return b.register(t)
    if kind == "renew_failed":
        return b.failure("authorization", t)
    if kind == "renewed":
        return b.authorization_renewed(t)
    return b.tick(t, every_instance=kind == "tick_all")


def partitions(events: list[Event]) -> dict[str, list[Delivery]]:
    """One partition (0) of each input topic, in publishing order; a `*` tick goes on the clock's."""
    logs: dict[str, list[Delivery]] = {t.name: [] for t in CONSUMPTION_INPUTS}
    for e in events:
        log = logs[topic_for(e.type).name]
        log.append(delivery(e, offset=len(log)))
    return logs


# ---------------------------------------------------------------- running the chain


async def through(worker: Worker, logs: dict[str, list[Delivery]], rnd: random.Random | None) -> list[Event]:
    """Records fetched in random chunks per partition (all of them in the log: the lags say so), merged by event
    time, handled in random batches with a restart now and then; without `rnd`: all fetched first, one at a time."""
    merge: Merge[tuple[Delivery, Any]] = Merge(list(logs))
    merge.assign([(t, 0) for t in logs])
    position = dict.fromkeys(logs, 0)
    published: list[Event] = []
    fetches = 0

    def lags() -> dict[tuple[str, int], int | None]:
        return {(t, 0): len(log) - position[t] for t, log in logs.items()}

    def fetch(topic: str, n: int) -> None:
        nonlocal fetches
        chunk = logs[topic][position[topic] : position[topic] + n]
        position[topic] += len(chunk)
        fetches += 1 if chunk else 0
        decoded = [(d, worker.processor.decode(d)) for d in chunk]
        merge.add(
            (topic, 0),
            [Item((topic, 0), d.offset, getattr(ev, "time", None), (d, ev), fetches) for d, ev in decoded],
        )
        merge.set_lags(lags())

    merge.set_lags(lags())
    if rnd is None:
        for topic in logs:
            fetch(topic, 10**6)
    waiting: list[Any] = []
    while True:
        if rnd is not None:
            for topic in rnd.sample(list(logs), rnd.randint(0, len(logs))):
                fetch(topic, rnd.randint(1, 4))
        needs = {tp for w in waiting for tp in w.needs}
        if needs:  # as the consumer loop does: the broker's end offsets, asked after every fetch so far
            merge.set_ends({tp: lag for tp, lag in lags().items() if tp in needs and lag is not None}, fetches)
        items, waiting = merge.take(1 if rnd is None else rnd.randint(1, 7))
        if items:
            before = len(worker.db.outbox)
            await worker.processor.process_batch([i.value for i in items])
            published += worker.db.published(before)
            if rnd is not None and rnd.random() < 0.2:
                worker.restart()
        elif all(position[t] == len(log) for t, log in logs.items()) and not any(w.needs for w in waiting):
            break
    return published


def stream(events: list[Event], topic: str) -> dict[str, list[Delivery]]:
    """A stage's output as the next stage's one input partition."""
    return {topic: [delivery(e, offset=n) for n, e in enumerate(events)]}


async def chain(events: list[Event], rnd: random.Random | None) -> tuple[list[Event], list[Event], list[Event]]:
    consumption = await through(stage("consumption"), partitions(events), rnd)
    compliance = await through(stage("compliance"), stream(consumption, COMPLIANCE_INPUTS[0].name), rnd)
    alerts = await through(stage("alerting"), stream(compliance, ALERTING_INPUTS[0].name), rnd)
    return consumption, compliance, alerts


def per_instance(events: list[Event]) -> dict[str, list[tuple[str, Any, Any]]]:
    """What a topic carries, instance by instance (Kafka orders one instance's events; instances interleave)."""
    out: dict[str, list[tuple[str, Any, Any]]] = {}
    for e in events:
        out.setdefault(e.subject, []).append((e.id, e.time, e.data))
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 60 * 24 * 3), st.integers(0, 50)), max_size=30),
    st.integers(0, 2**32),
)
def test_every_output_topic_is_the_same_whatever_the_interleaving_batching_and_restarts(
    script: list[tuple[str, int, int]], seed: int
) -> None:
    events = inputs(script)
    reference = asyncio.run(chain(events, None))
    got = asyncio.run(chain(events, random.Random(seed)))  # the fetches, batches and restarts of this run
    for name, ref, out in zip(("consumption", "compliance", "alerts"), reference, got, strict=True):
        assert per_instance(out) == per_instance(ref), name
    assert reference[0]  # the chain did something
