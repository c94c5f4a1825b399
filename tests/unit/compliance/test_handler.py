"""Compliance as the runtime runs it, without a broker or PostgreSQL: its Instances under the real RecordProcessor,
over a FakeDatabase and the in-memory store (held to PostgreSQL's behaviour by
tests/integration/test_compliance_store.py). The pure machine is tested in test_machine.py; here: numbering, what
is forwarded to alerting, what is saved, restarts and failed commits."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from ccxlic_compliance.app import INPUTS, ComplianceMetrics, build
from ccxlic_compliance.handler import IDS
from ccxlic_compliance.machine import replay
from ccxlic_compliance.settings import ComplianceSettings
from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    AuthorizationRenewalFailed,
    ClockTicked,
    ComplianceChanged,
    ConsumptionChanged,
    ConsumptionFailed,
)
from ccxlic_runtime.instances import Instances
from ccxlic_runtime.settings import load_settings
from ccxlic_testing.build import Build
from ccxlic_testing.fakes import FakeDatabase, Worker
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.unit.compliance.fakes import FakeComplianceStore
from tests.unit.compliance.test_machine import RULES, T0, _script, scenario, tick_times

M = timedelta(minutes=1)
SETTINGS = load_settings(ComplianceSettings)
assert SETTINGS.rules() == RULES


class Service(Worker):
    def __init__(self, db: FakeDatabase | None = None) -> None:
        self.store = FakeComplianceStore() if db is None else db.store
        assert isinstance(self.store, FakeComplianceStore)
        super().__init__(db or FakeDatabase(self.store), self._app, INPUTS, service="compliance")

    def _app(self) -> Instances:  # type: ignore[type-arg]
        return build(SETTINGS, ComplianceMetrics(CollectorRegistry()), self.store)


def numbered(instance: str, *seqs: int) -> list[str]:
    return [str(uuid.uuid5(IDS, f"{instance}:{n}")) for n in seqs]


def changes(events: list[Event]) -> list[ComplianceChanged]:
    return [e for e in events if isinstance(e, ComplianceChanged)]


def over_consumption(b: Build) -> list[Event]:
    """Registered with 10 Standard, then 11 in use: over-consumption starts."""
    return [b.entitle(T0, 10, 0, 0), b.register(T0 + M), b.usage(T0 + 2 * M, 11, 0)]


async def test_transitions_are_numbered_per_instance_across_batches_and_restarts() -> None:
    s, b = Service(), Build("cc-1")
    first = changes(await s.batch(*over_consumption(b)))
    assert [e.id for e in first] == numbered("cc-1", *range(1, len(first) + 1))
    s.restart()
    later = changes(await s.batch(b.tick(T0 + 40 * M)))  # the 30-minute warning
    n = len(first)
    assert [e.id for e in later] == numbered("cc-1", *range(n + 1, n + 1 + len(later))) and later
    assert later[0].time == T0 + 32 * M and later[0].data.over_stage == "imminent"
    assert [seq for seq, _ in s.store.history("cc-1")] == list(range(1, n + len(later) + 1))


async def test_a_failed_commit_leaves_no_trace_and_numbering_continues_where_it_was() -> None:
    s, b = Service(), Build("cc-1")
    done = changes(await s.batch(*over_consumption(b)))
    s.db.fail_at.add(s.db.transactions + 1)  # the runtime retries the batch on what was committed
    again = changes(await s.batch(b.tick(T0 + 40 * M)))
    assert again[0].id == numbered("cc-1", len(done) + 1)[0]
    assert [seq for seq, _ in s.store.history("cc-1")] == list(range(1, len(done) + len(again) + 1))


async def test_what_alerting_needs_is_forwarded_after_the_transitions_of_the_same_input() -> None:
    s, b = Service(), Build("cc-1")
    await s.batch(*over_consumption(b))
    failure = b.failure("authorization", T0 + 3 * M)
    broken = b.failure("consumption", T0 + 4 * M)
    usage, later = b.usage(T0 + 5 * M, 11, 0), b.usage(T0 + 6 * M, 10, 0)
    tick = b.tick(T0 + 60 * M)
    out = await s.batch(failure, broken, usage, later, tick, b.tick(T0 + 30 * M))
    forwarded = [e for e in out if not isinstance(e, ComplianceChanged)]
    # the failures, the first usage after the computation failed (it resolves that alert; the next is not
    # needed), and the tick that moved time (not the older one)
    assert [e.id for e in forwarded] == [failure.id, broken.id, usage.id, tick.id]
    assert [type(e) for e in forwarded] == [
        AuthorizationRenewalFailed,
        ConsumptionFailed,
        ConsumptionChanged,
        ClockTicked,
    ]
    assert out[-1] == tick and changes(out)  # the tick fired deadlines (OOC at +45 min): they come before it


async def test_two_workers_of_a_group_never_overwrite_each_other() -> None:
    """Worker a has cc-1 cached; worker b took its partition over in a rebalance and handled a tick. a's next save
    is refused and retried on b's state: one history, numbered without gaps, equal to the replay in that order."""
    a = Service()
    b = Service(a.db)
    e = Build("cc-1")
    inputs = over_consumption(e)
    await a.batch(*inputs)
    tick, recovered = e.tick(T0 + 40 * M), e.usage(T0 + 41 * M, 10, 0)
    await b.batch(tick)
    await a.batch(recovered)
    assert a.registry.get_sample_value("ccxlic_handler_retries_total", {"service": "compliance"}) == 1.0
    _, expected = replay("cc-1", [*inputs, tick, recovered], RULES)
    assert [(seq, t.at, t.cause_id) for seq, t in a.store.history("cc-1")] == [
        (n, t.at, t.cause_id) for n, t in enumerate(expected, 1)
    ]


@settings(max_examples=100, deadline=None)
@given(scenario, tick_times, st.integers(1, 6), st.lists(st.integers(0, 40), max_size=3))
def test_any_batching_and_any_crashes_publish_exactly_the_pure_replay(
    steps: list[tuple[str, int, int]], ticks: list[int], size: int, crashes: list[int]
) -> None:
    b, events = _script(steps)
    events += [b.tick(T0 + m * M) for m in sorted(ticks)]
    _, expected = replay("i", events, RULES)

    published = changes(asyncio.run(Service().feed(events, size, crashes)))
    assert [(e.time, e.data) for e in published] == [(t.at, t.view) for t in expected]
    assert [e.id for e in published] == numbered("i", *range(1, len(expected) + 1))
