"""The compliance handler with fakes: the runtime's transaction in memory and the in-memory store (held to
PostgreSQL's behaviour by tests/integration/test_compliance_store.py). The pure machine is tested on its own in
test_machine.py; here it is the shell: numbering, what is saved, restarts, and failed commits."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from ccxlic_compliance.handler import IDS, ComplianceHandler
from ccxlic_compliance.machine import Rules, State, replay
from ccxlic_contract.codec import Event
from ccxlic_testing.build import Build
from ccxlic_testing.fakes import HandlerHarness
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.compliance.fakes import FakeComplianceStore
from tests.unit.compliance.test_machine import RULES, T0, _script, scenario, tick_times

M = timedelta(minutes=1)


class Harness(HandlerHarness):
    def __init__(self, rules: Rules = RULES) -> None:
        self.committed: list[State] = []
        store = FakeComplianceStore()
        super().__init__(
            store, lambda: ComplianceHandler(rules, store, on_commit=lambda s, _: self.committed.append(s))
        )
        self.store: FakeComplianceStore = store


def numbered(instance: str, *seqs: int) -> list[str]:
    return [str(uuid.uuid5(IDS, f"{instance}:{n}")) for n in seqs]


def over_consumption(b: Build) -> list[Event]:
    """Registered with 10 Standard, then 11 in use: over-consumption starts."""
    return [b.entitle(T0, 10, 0, 0), b.register(T0 + M), b.usage(T0 + 2 * M, 11, 0)]


async def test_transitions_are_numbered_per_instance_across_batches_and_restarts() -> None:
    h, b = Harness(), Build("cc-1")
    first = await h.batch(*over_consumption(b))
    assert [e.id for e in first] == numbered("cc-1", *range(1, len(first) + 1))
    h.restart()
    later = await h.batch(b.tick(T0 + 40 * M))  # the 30-minute warning
    n = len(first)
    assert [e.id for e in later] == numbered("cc-1", *range(n + 1, n + 1 + len(later))) and later
    assert later[0].time == T0 + 32 * M and later[0].data.over_stage == "imminent"
    history = await h.store.history(None, "cc-1", 0, 100)
    assert [r["seq"] for r in history] == list(range(1, n + len(later) + 1))
    current = await h.store.current(None, "cc-1")
    assert current is not None and current["seq"] == n + len(later)
    assert current["view"]["over_stage"] == "imminent"


async def test_a_failed_commit_leaves_no_trace_and_numbering_continues_where_it_was() -> None:
    h, b = Harness(), Build("cc-1")
    done = await h.batch(*over_consumption(b))
    before = (await h.store.load(None, "cc-1"), len(h.committed))
    lost = await h.batch(b.tick(T0 + 40 * M), commit=False)
    assert lost and (await h.store.load(None, "cc-1"), len(h.committed)) == before
    again = await h.batch(b.tick(T0 + 40 * M))  # redelivered: the dedup record did not commit either
    assert [e.id for e in again] == [e.id for e in lost]
    assert again[0].id == numbered("cc-1", len(done) + 1)[0]


async def test_a_tick_reaches_only_instances_heard_of() -> None:
    h, east, west = Harness(), Build("cc-east"), Build("cc-west")
    assert await h.batch(Build("nobody").tick(T0)) == []
    await h.batch(*over_consumption(east), *over_consumption(west))
    h.restart()  # the cache is gone; the store remembers both
    warned = await h.batch(east.tick(T0 + 40 * M, every_instance=True))
    assert sorted({e.subject for e in warned}) == ["cc-east", "cc-west"]
    assert await h.store.instance_ids(None) == ["cc-east", "cc-west"]


async def test_two_workers_of_a_group_never_overwrite_each_other() -> None:
    """Worker a has cc-1 cached; worker b, which owns the clock partition, handles a `*` tick for it. a's next save
    is refused and retried on b's state: one history, numbered without gaps, equal to the replay in that order."""
    store, claimed = FakeComplianceStore(), set[str]()
    a, b = (HandlerHarness(store, lambda: ComplianceHandler(RULES, store), claimed) for _ in "ab")
    e = Build("cc-1")
    inputs = over_consumption(e)
    await a.process(*inputs)
    tick, recovered = e.tick(T0 + 40 * M, every_instance=True), e.usage(T0 + 41 * M, 10, 0)
    await b.process(tick)
    await a.process(recovered)
    assert a.retries == 1
    _, expected = replay("cc-1", [*inputs, tick, recovered], RULES)
    history = await store.history(None, "cc-1", 0, 100)
    assert [(r["seq"], r["at"], r["cause"]["id"]) for r in history] == [
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

    published = asyncio.run(Harness().feed(events, size, crashes))
    assert [(e.time, e.data) for e in published] == [(t.at, t.view) for t in expected]
    assert [e.id for e in published] == numbered("i", *range(1, len(expected) + 1))
