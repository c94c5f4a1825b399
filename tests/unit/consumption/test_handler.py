"""The consumption handler with fakes: the runtime's transaction in memory (FakeTransaction) and the in-memory store
(FakeConsumptionStore, held to PostgreSQL's behaviour by tests/integration/test_consumption_store.py).

What is tested here is the shell around the pure rules: what is published per batch, when intervals close and are
revised, what is saved (so a restarted handler continues exactly), and that nothing leaks from a transaction that
did not commit.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from ccxlic_consumption.handler import ConsumptionHandler
from ccxlic_consumption.machine import Rules
from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    ConsumptionChanged,
    ConsumptionFailed,
    IntervalClosed,
    SignInRejected,
)
from ccxlic_runtime.db import ConcurrentUpdate
from ccxlic_testing.build import Build
from ccxlic_testing.fakes import DELIVERY, FakeTransaction, HandlerHarness
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.consumption.fakes import FakeConsumptionStore

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # the start of a reporting interval (8 h, aligned to 00:00)
RULES = Rules()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Harness(HandlerHarness):
    def __init__(self) -> None:
        self.rejected: list[tuple[str, str]] = []
        store = FakeConsumptionStore()
        super().__init__(
            store, lambda: ConsumptionHandler(RULES, store, on_reject=lambda i, lic: self.rejected.append((i, lic)))
        )
        self.store: FakeConsumptionStore = store


def of(events: list[Event], cls: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, cls)]


async def test_one_batch_publishes_one_change_with_the_final_counts() -> None:
    h, b = Harness(), Build("cc-1")
    out = await h.batch(
        b.entitle(at(0), 40, 10),
        b.sign_in(at(1), "a1", "inbound_voice"),
        b.sign_in(at(2), "a2", "chat"),
        b.sign_in(at(3), "a3", supervisor=True),
    )
    [changed] = of(out, ConsumptionChanged)
    assert (changed.data.standard, changed.data.premium) == (1, 2)
    assert (changed.data.headroom.standard, changed.data.headroom.premium) == (47, 8)
    assert changed.time == at(3) and changed.subject == "cc-1"


async def test_a_sign_in_that_changes_no_count_publishes_nothing_and_a_class_change_does() -> None:
    h, b = Harness(), Build("cc-1")
    await h.batch(b.sign_in(at(1), "a1", "inbound_voice"))
    assert await h.batch(b.sign_in(at(2), "a1", "outbound_direct_preview")) == []
    [changed] = of(await h.batch(b.sign_in(at(3), "a1", "email")), ConsumptionChanged)
    assert (changed.data.standard, changed.data.premium) == (0, 1)


async def test_a_rejection_is_published_and_reported_only_once_committed() -> None:
    h, b = Harness(), Build("cc-1")
    await h.batch(b.entitle(at(0), 1, 1, overage_allowed=False), b.sign_in(at(1), "a1", "chat"))
    over = b.sign_in(at(2), "a2", "email")
    [rejected] = of(await h.batch(over, commit=False), SignInRejected)
    assert (rejected.data.agent_id, rejected.data.license) == ("a2", "premium")
    assert h.rejected == []  # that transaction never committed
    assert of(await h.batch(over), SignInRejected) == [rejected]  # the same id: consumers dedupe a redelivery
    assert h.rejected == [("cc-1", "premium")]
    assert (await h.store.load(None, "cc-1")) is not None
    state, _ = await h.store.load(None, "cc-1")  # type: ignore[misc]
    assert state.usage().premium == 1  # a rejected sign-in is not counted


async def test_an_uncommitted_batch_leaves_the_store_and_the_cache_as_they_were() -> None:
    h, b = Harness(), Build("cc-1")
    await h.batch(b.sign_in(at(1), "a1"))
    before = await h.store.load(None, "cc-1")
    await h.batch(b.sign_in(at(2), "a2"), b.sign_in(at(3), "a4"), commit=False)
    assert await h.store.load(None, "cc-1") == before
    [changed] = of(await h.batch(b.sign_in(at(4), "a3")), ConsumptionChanged)
    assert changed.data.standard == 2  # a1 and a3: the uncommitted batch left no trace in the cache


async def test_an_interval_closes_when_the_watermark_passes_its_end_plus_lateness() -> None:
    h, b = Harness(), Build("cc-1")
    await h.batch(b.sign_in(at(60), "a1"), b.sign_in(at(90), "a2", "chat"), b.sign_out(at(120), "a1"))
    assert of(await h.batch(b.tick(at(8 * 60 + 4))), IntervalClosed) == []
    [closed] = of(await h.batch(b.tick(at(8 * 60 + 5))), IntervalClosed)
    d = closed.data
    assert (d.interval_start, d.interval_end, d.revision) == (T0, at(8 * 60), 1)
    assert (d.peak.standard, d.peak.premium, d.peak.agents) == (1, 1, 2)
    assert d.witness.agents.at == at(90)
    assert {a.agent_id for a in d.witness.agents.agents} == {"a1", "a2"}
    assert of(await h.batch(b.tick(at(9 * 60))), IntervalClosed) == []  # closed once


async def test_a_late_event_revises_a_closed_interval_and_one_that_changes_nothing_does_not() -> None:
    h, b = Harness(), Build("cc-1")
    await h.batch(b.sign_in(at(60), "a1"), b.tick(at(8 * 60 + 5)))
    [revised] = of(await h.batch(b.sign_in(at(30), "a2")), IntervalClosed)  # late, and before a1
    assert (revised.data.revision, revised.data.peak.standard) == (2, 2)
    assert of(await h.batch(b.sign_in(at(200), "a1")), IntervalClosed) == []  # a1 was in anyway: same peaks
    reports = await h.store.reports(None, "cc-1", T0, at(8 * 60))
    assert [r["revision"] for r in reports] == [1, 2]


async def test_a_tick_for_an_instance_never_heard_of_does_nothing() -> None:
    h, b = Harness(), Build("nobody")
    assert await h.batch(b.tick(at(600))) == []
    assert await h.store.instance_ids(None) == []


async def test_an_every_instance_tick_reaches_instances_only_the_store_knows() -> None:
    h, east, west = Harness(), Build("cc-east"), Build("cc-west")
    await h.batch(east.sign_in(at(10), "a1"), west.sign_in(at(20), "b1"))
    h.restart()  # the cache is gone; the store remembers both
    closed = of(await h.batch(east.tick(at(8 * 60 + 6), every_instance=True)), IntervalClosed)
    assert sorted(c.subject for c in closed) == ["cc-east", "cc-west"]


async def test_roster_reconciliation_is_saved_for_every_agent_it_changed() -> None:
    h, b = Harness(), Build("cc-1")
    await h.batch(b.sign_in(at(1), "a1"), b.sign_in(at(2), "a2"))
    [changed] = of(await h.batch(b.roster(at(3), "a2", ("a3", ("chat",))), b.ports(at(3), 7)), ConsumptionChanged)
    assert (changed.data.standard, changed.data.premium, changed.data.ivr_ports) == (1, 1, 7)
    h.restart()
    state, _ = await h.store.load(None, "cc-1")  # type: ignore[misc]
    assert state.agents["a1"].signed_in is False and state.agents["a1"].cause == "reconciled"
    assert {a for a, s in state.agents.items() if s.signed_in} == {"a2", "a3"}


async def test_a_failure_is_published_for_its_instance_and_never_for_every_instance() -> None:
    b = Build("cc-1")
    tx = FakeTransaction()
    handler = ConsumptionHandler(RULES, FakeConsumptionStore())
    await handler.on_failure(tx, DELIVERY, b.sign_in(at(1), "a1"), "state is corrupt")
    await handler.on_failure(tx, DELIVERY, b.tick(at(2), every_instance=True), "no")
    [failed] = await tx.commit()
    assert isinstance(failed, ConsumptionFailed) and failed.subject == "cc-1"
    assert failed.data.reason == "state is corrupt"


async def test_two_workers_of_a_group_never_overwrite_each_other() -> None:
    """Worker a has cc-1 cached; worker b changes it (it got the partition in a rebalance, or it owns the clock
    partition and handles a `*` tick). a's next save is refused and its batch retried on what b wrote."""
    store, claimed = FakeConsumptionStore(), set[str]()
    a, b = (HandlerHarness(store, lambda: ConsumptionHandler(RULES, store), claimed) for _ in "ab")
    e = Build("cc-1")
    await a.process(e.sign_in(at(1), "a1"))
    await b.process(e.sign_in(at(2), "a2", "chat"))
    [changed] = of(await a.process(e.sign_in(at(3), "a3")), ConsumptionChanged)
    assert (changed.data.standard, changed.data.premium, a.retries) == (2, 1, 1)
    [closed] = of(await b.process(e.tick(at(9 * 60), every_instance=True)), IntervalClosed)
    assert closed.data.peak.agents == 3
    [changed] = of(await a.process(e.sign_out(at(9 * 60 + 1), "a1")), ConsumptionChanged)
    assert (changed.data.standard, a.retries) == (1, 2)
    state, _ = await store.load(None, "cc-1")  # type: ignore[misc]
    assert {x for x, s in state.agents.items() if s.signed_in} == {"a2", "a3"}


async def test_the_close_timer_of_a_worker_that_lost_an_instance_changes_nothing() -> None:
    """Worker a still has cc-1 cached, due for closing, after b took its partition over and closed the interval.
    a's timer (one transaction per due instance, as app.py runs it) has its save refused and forgets cc-1."""
    store, claimed = FakeConsumptionStore(), set[str]()
    a, b = (HandlerHarness(store, lambda: ConsumptionHandler(RULES, store), claimed) for _ in "ab")
    e = Build("cc-1")
    await a.process(e.sign_in(at(1), "a1"), e.sign_in(at(2), "a2"))
    [closed] = of(await b.process(e.sign_out(at(9 * 60), "a2")), IntervalClosed)
    handler = a.handler
    assert isinstance(handler, ConsumptionHandler)
    state, book = handler.cache["cc-1"]
    handler.cache["cc-1"] = (replace(state, watermark=at(9 * 60)), book)  # what a would hold had it seen 17:00
    assert handler.due() == ["cc-1"]
    tx = FakeTransaction(set(claimed))
    with pytest.raises(ConcurrentUpdate), store.transaction():
        await handler.touch(tx, "cc-1")
        await tx.commit()
    assert handler.due() == [] and tx.events == []
    assert [r["revision"] for r in await store.reports(None, "cc-1", T0, at(8 * 60))] == [closed.data.revision]


# ---------------------------------------------------------------- a restart anywhere changes nothing

AGENTS = ("a1", "a2", "a3", "a4")
CAPS = ((), ("inbound_voice",), ("chat",), ("outbound_predictive",))
step = st.one_of(
    st.tuples(st.just("in"), st.sampled_from(AGENTS), st.sampled_from(CAPS), st.integers(0, 1500)),
    st.tuples(st.just("out"), st.sampled_from(AGENTS), st.just(()), st.integers(0, 1500)),
    st.tuples(st.just("ports"), st.just(""), st.just(()), st.integers(0, 1500)),
    st.tuples(st.just("tick"), st.just(""), st.just(()), st.integers(0, 1500)),
)


def script_events(script: list[tuple[str, str, tuple[str, ...], int]]) -> list[Event]:
    b = Build("cc-1")
    events = [b.entitle(at(0), 2, 1, overage_allowed=False)]
    for kind, agent, caps, minute in script:
        t = at(minute)
        if kind == "in":
            events.append(b.sign_in(t, agent, *caps))
        elif kind == "out":
            events.append(b.sign_out(t, agent))
        elif kind == "ports":
            events.append(b.ports(t, minute % 5))
        else:
            events.append(b.tick(t))
    return events


@settings(max_examples=150, deadline=None)
@given(st.lists(step, min_size=1, max_size=30), st.integers(1, 5), st.lists(st.integers(0, 30), max_size=3))
def test_crashes_and_restarts_anywhere_change_nothing(
    script: list[tuple[str, str, tuple[str, ...], int]], size: int, crashes: list[int]
) -> None:
    """A commit that fails anywhere, a restart, the batch delivered again: the same output and state as a run
    without crashes."""
    events = script_events(script)
    h1, h2 = Harness(), Harness()
    plain = asyncio.run(h1.feed(events, size))
    crashed = asyncio.run(h2.feed(events, size, crashes))
    assert [(e.id, e.data) for e in crashed] == [(e.id, e.data) for e in plain]
    assert asyncio.run(h2.store.load(None, "cc-1")) == asyncio.run(h1.store.load(None, "cc-1"))
    assert h2.store.report_rows == h1.store.report_rows
