"""The consumption computer as the runtime runs it, without a broker or PostgreSQL: its Instances (decider, store,
mapping) under the real RecordProcessor, over a FakeDatabase and the in-memory store (held to PostgreSQL's
behaviour by tests/integration/test_consumption_store.py). The pure rules are tested in test_machine.py and
test_peaks.py; here: what is published and in which order, intervals, forwarding, restarts and failed commits."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from ccxlic_consumption.app import INPUTS, ConsumptionMetrics, build
from ccxlic_consumption.handler import failed
from ccxlic_consumption.settings import ConsumptionSettings
from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    ClockTicked,
    ConsumptionChanged,
    ConsumptionFailed,
    EntitlementsSet,
    InstanceRegistered,
    IntervalClosed,
    LicenseControlBreached,
    SignInRejected,
)
from ccxlic_runtime.instances import Instances
from ccxlic_runtime.settings import load_settings
from ccxlic_testing.build import Build
from ccxlic_testing.fakes import FakeDatabase, Worker
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.unit.consumption.fakes import FakeConsumptionStore

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # the start of a reporting interval (8 h, aligned to 00:00)
SETTINGS = load_settings(ConsumptionSettings)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Service(Worker):
    """The consumption computer on the fake database; `metrics` as app.py builds them."""

    def __init__(self, db: FakeDatabase | None = None) -> None:
        self.store = FakeConsumptionStore() if db is None else db.store
        assert isinstance(self.store, FakeConsumptionStore)
        super().__init__(db or FakeDatabase(self.store), self._app, INPUTS, service="consumption")

    def _app(self) -> Instances:  # type: ignore[type-arg]
        self.metrics_registry = CollectorRegistry()
        return build(SETTINGS, ConsumptionMetrics(self.metrics_registry), self.store)

    def rejected(self, instance: str, license: str) -> float:
        value = self.metrics_registry.get_sample_value(
            "ccxlic_sign_ins_rejected_total",
            {"product_instance": instance, "license": license, "limit": "license_control"},
        )
        return value or 0.0


def of(events: list[Event], cls: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, cls)]


async def test_every_input_that_changes_the_counts_publishes_its_change_in_order() -> None:
    s, b = Service(), Build("cc-1")
    out = await s.batch(
        b.entitle(at(0), 40, 10),
        b.register(at(0)),
        b.sign_in(at(1), "a1", "inbound_voice"),
        b.sign_in(at(2), "a2", "chat"),
        b.sign_in(at(3), "a3", supervisor=True),
    )
    # the entitlements and the registration are forwarded; registered, the entitlements are the limits: the headroom
    # changes (before, in evaluation, it was unlimited)
    assert [type(e).__name__ for e in out] == [
        "EntitlementsSet",
        "ConsumptionChanged",
        "InstanceRegistered",
        *["ConsumptionChanged"] * 4,
    ]
    changes = of(out, ConsumptionChanged)
    assert changes[0].data.headroom.premium is None and changes[1].data.headroom.premium == 10
    counts = [(c.time, c.data.standard, c.data.premium) for c in changes]
    assert counts == [(at(0), 0, 0), (at(0), 0, 0), (at(1), 1, 0), (at(2), 1, 1), (at(3), 1, 2)]
    assert (out[-1].data.headroom.standard, out[-1].data.headroom.premium) == (47, 8)


async def test_a_sign_in_that_changes_no_count_publishes_nothing_and_a_class_change_does() -> None:
    s, b = Service(), Build("cc-1")
    await s.batch(b.sign_in(at(1), "a1", "inbound_voice"))
    assert await s.batch(b.sign_in(at(2), "a1", "outbound_direct_preview")) == []
    [changed] = of(await s.batch(b.sign_in(at(3), "a1", "email")), ConsumptionChanged)
    assert (changed.data.standard, changed.data.premium) == (0, 1)


async def test_entitlements_lifecycle_events_and_ticks_that_move_time_are_forwarded_in_order() -> None:
    s, b = Service(), Build("cc-1")
    entitle, register = b.entitle(at(0), 5, 5), b.register(at(1))
    out = await s.batch(entitle, register, b.sign_in(at(2), "a1"), b.tick(at(3)), b.tick(at(3)), b.tick(at(2)))
    forwarded = [e for e in out if isinstance(e, EntitlementsSet | InstanceRegistered)]
    assert [e.id for e in forwarded] == [entitle.id, register.id]
    assert out.index(forwarded[0]) == 0  # each input first, then what it changed
    ticks = of(out, ClockTicked)
    assert [t.time for t in ticks] == [at(3)]  # the second tick at 3 and the one at 2 did not move time
    assert out.index(ticks[0]) > out.index(of(out, ConsumptionChanged)[0])  # time follows the usage before it


async def test_a_rejection_is_published_and_counted_once_committed() -> None:
    s, b = Service(), Build("cc-1")
    await s.batch(b.entitle(at(0), 1, 1, overage_allowed=False), b.register(at(0)), b.sign_in(at(1), "a1", "chat"))
    s.db.fail_at.add(s.db.transactions + 1)  # the COMMIT fails: the runtime retries the batch
    [rejected] = of(await s.batch(b.sign_in(at(2), "a2", "email")), SignInRejected)
    assert (rejected.data.agent_id, rejected.data.license) == ("a2", "premium")
    assert s.rejected("cc-1", "premium") == 1.0  # counted once: the failed attempt never committed
    state, _ = await s.store.load(None, "cc-1")  # type: ignore[misc]
    assert state.live.usage().premium == 1  # a rejected sign-in is not counted


async def test_a_roster_or_a_port_sample_over_the_cap_is_published_as_a_breach_once() -> None:
    """License Control's breach: `licensing.control.breached` when usage goes over, the level on every
    `licensing.consumption.changed`, and nothing new while it stays over."""
    s, b = Service(), Build("cc-1")
    await s.batch(b.entitle(at(0), 40, 10, overage_allowed=False, ivr_ports=12), b.register(at(0)))
    out = await s.batch(b.ports(at(1), 14))
    [breached] = of(out, LicenseControlBreached)
    assert breached.data.excess.ivr_ports == 2 and "ports sample" in breached.data.cause
    assert out.index(breached) < out.index(of(out, ConsumptionChanged)[0])
    out = await s.batch(b.ports(at(2), 15), b.ports(at(3), 12))
    assert of(out, LicenseControlBreached) == []
    breach = [c.data.control_breach for c in of(out, ConsumptionChanged)]
    assert [x.ivr_ports for x in breach if x is not None] == [3, 0]
    roster = b.roster(at(4), *[(f"p{n}", ("chat",)) for n in range(11)])
    [breached] = of(await s.batch(roster), LicenseControlBreached)
    assert breached.data.excess.premium == 1 and breached.data.usage.premium == 11


async def test_a_reservation_refuses_the_51st_sign_in_and_a_roster_above_it_is_a_reservation_breach() -> None:
    """A reservation's own hard limit, through the runtime: the refusal is published with its limit and counted under
    it, and a roster above the reservation is a breach of the reservation (never License Control's)."""
    s, b = Service(), Build("cc-1")
    await s.batch(b.reserve(at(0), 40, 10))
    out = await s.batch(*(b.sign_in(at(1 + n), f"s{n}", "inbound_voice") for n in range(51)))
    [rejected] = of(out, SignInRejected)
    assert rejected.data.agent_id == "s50" and rejected.data.limit == "reservation"
    value = s.metrics_registry.get_sample_value(
        "ccxlic_sign_ins_rejected_total", {"product_instance": "cc-1", "license": "standard", "limit": "reservation"}
    )
    assert value == 1.0
    roster = b.roster(at(60), *[f"s{n}" for n in range(50)], *[(f"p{n}", ("chat",)) for n in range(2)])
    out = await s.batch(roster)
    [breached] = of(out, LicenseControlBreached)
    assert breached.data.limit == "reservation" and breached.data.excess.standard == 2
    assert "reservation" in breached.data.cause
    assert of(out, ConsumptionChanged)[-1].data.control_breach.standard == 2  # type: ignore[union-attr]


async def test_a_failed_commit_leaves_no_trace_in_the_store_or_the_cache() -> None:
    s, b = Service(), Build("cc-1")
    await s.batch(b.sign_in(at(1), "a1"))
    s.db.fail_at.add(s.db.transactions + 1)
    out = await s.batch(b.sign_in(at(2), "a2"), b.sign_in(at(3), "a4"))
    assert [c.data.standard for c in of(out, ConsumptionChanged)] == [2, 3]  # the retry started from a1 alone
    assert len(s.db.outbox) == 3


async def test_an_interval_closes_when_the_watermark_passes_its_end_plus_lateness() -> None:
    s, b = Service(), Build("cc-1")
    await s.batch(b.sign_in(at(60), "a1"), b.sign_in(at(90), "a2", "chat"), b.sign_out(at(120), "a1"))
    assert of(await s.batch(b.tick(at(8 * 60 + 4))), IntervalClosed) == []
    out = await s.batch(b.tick(at(8 * 60 + 5)))
    [closed] = of(out, IntervalClosed)
    d = closed.data
    assert (d.interval_start, d.interval_end, d.revision) == (T0, at(8 * 60), 1)
    assert (d.peak.standard, d.peak.premium, d.peak.agents) == (1, 1, 2)
    assert d.witness.agents.at == at(90)
    assert {a.agent_id for a in d.witness.agents.agents} == {"a1", "a2"}
    assert [type(e) for e in out] == [ClockTicked, IntervalClosed]
    assert of(await s.batch(b.tick(at(9 * 60))), IntervalClosed) == []  # closed once


async def test_closing_does_not_depend_on_the_batch_a_later_input_shares() -> None:
    """The input that passes the close closes it with the facts up to it: a late fact in the same batch after it is
    a revision, as it is when it comes in the next batch."""
    b = Build("cc-1")
    inputs = [b.sign_in(at(60), "a1"), b.tick(at(8 * 60 + 5)), b.sign_in(at(30), "a2"), b.sign_in(at(8 * 60 + 6), "a3")]
    together = await Service().batch(*inputs)
    one_by_one = Service()
    apart = [e for i in inputs for e in await one_by_one.batch(i)]
    assert [(e.id, e.data) for e in together] == [(e.id, e.data) for e in apart]
    assert [c.data.revision for c in of(together, IntervalClosed)] == [1, 2]


async def test_a_late_event_revises_a_closed_interval_and_one_that_changes_nothing_does_not() -> None:
    s, b = Service(), Build("cc-1")
    await s.batch(b.sign_in(at(60), "a1"), b.tick(at(8 * 60 + 5)))
    [revised] = of(await s.batch(b.sign_in(at(30), "a2")), IntervalClosed)  # late, and before a1
    assert (revised.data.revision, revised.data.peak.standard) == (2, 2)
    assert of(await s.batch(b.sign_in(at(200), "a1")), IntervalClosed) == []  # a1 was in anyway: same peaks
    assert [r.revision for r in s.store.reports("cc-1")] == [1, 2]


async def test_a_clock_that_jumps_years_ahead_reports_only_the_intervals_that_had_data() -> None:
    s, b = Service(), Build("cc-1")
    await s.batch(b.sign_in(at(60), "a1"), b.ports(at(70), 3))
    out = await s.batch(b.tick(datetime(2100, 1, 1, tzinfo=UTC)))
    closed = of(out, IntervalClosed)
    # a1's session lasts until it expires (24 h): the intervals it covers are reported; the 80,000 after are quiet
    assert [c.data.interval_start for c in closed] == [T0 + timedelta(hours=8 * i) for i in range(4)]
    state, _ = await s.store.load(None, "cc-1")  # type: ignore[misc]
    assert state.next_close == datetime(2099, 12, 31, 16, tzinfo=UTC)  # up to the interval the clock is in
    late = of(await s.batch(b.sign_in(datetime(2050, 6, 1, 9, tzinfo=UTC), "a2")), IntervalClosed)
    # quiet intervals that now have data: a2's session covers 24 h from 09:00, four intervals, first reports
    assert [(c.data.interval_start, c.data.revision, c.data.peak.agents) for c in late] == [
        (datetime(2050, 6, 1, 8, tzinfo=UTC) + timedelta(hours=8 * i), 1, 1) for i in range(4)
    ]


async def test_a_tick_for_an_instance_never_heard_of_does_nothing() -> None:
    s, b = Service(), Build("nobody")
    assert await s.batch(b.tick(at(600))) == []
    assert s.store.rows == {}


async def test_an_every_instance_tick_reaches_the_instances_of_its_partition_only_the_store_knows() -> None:
    s, east, west = Service(), Build("cc-east"), Build("cc-west")
    await s.batch(east.sign_in(at(10), "a1"), west.sign_in(at(20), "b1"))
    s.restart()  # the cache is gone; the store remembers both (both came on partition 0 here)
    closed = of(await s.batch(east.tick(at(8 * 60 + 6), every_instance=True)), IntervalClosed)
    assert sorted(c.subject for c in closed) == ["cc-east", "cc-west"]
    [tick] = s.records([east.tick(at(20 * 60), every_instance=True)])
    assert await s.deliver([replace(tick, partition=1)]) == []  # on partition 1: no instance of this test lives there


async def test_roster_reconciliation_is_saved_for_every_agent_it_changed() -> None:
    s, b = Service(), Build("cc-1")
    await s.batch(b.sign_in(at(1), "a1"), b.sign_in(at(2), "a2"))
    changes = of(await s.batch(b.roster(at(3), "a2", ("a3", ("chat",))), b.ports(at(3), 7)), ConsumptionChanged)
    assert (changes[-1].data.standard, changes[-1].data.premium, changes[-1].data.ivr_ports) == (1, 1, 7)
    s.restart()
    state, _ = await s.store.load(None, "cc-1")  # type: ignore[misc]
    assert state.live.agents["a1"].signed_in is False and state.live.agents["a1"].cause == "reconciled"
    assert {a for a, x in state.live.agents.items() if x.signed_in} == {"a2", "a3"}


def test_a_failure_is_published_for_its_instance_and_never_for_every_instance() -> None:
    b = Build("cc-1")
    [failure] = failed(b.sign_in(at(1), "a1"), "state is corrupt")
    assert isinstance(failure, ConsumptionFailed) and failure.subject == "cc-1"
    assert failure.data.reason == "state is corrupt"
    assert failed(b.tick(at(2), every_instance=True), "no") == ()


async def test_two_workers_of_a_group_never_overwrite_each_other() -> None:
    """Worker a has cc-1 cached; worker b changes it (it got the partition in a rebalance). a's next save is
    refused and its batch retried on what b wrote."""
    a = Service()
    b = Service(a.db)
    e = Build("cc-1")
    await a.batch(e.sign_in(at(1), "a1"))
    await b.batch(e.sign_in(at(2), "a2", "chat"))
    [changed] = of(await a.batch(e.sign_in(at(3), "a3")), ConsumptionChanged)
    assert (changed.data.standard, changed.data.premium) == (2, 1)
    assert a.registry.get_sample_value("ccxlic_handler_retries_total", {"service": "consumption"}) == 1.0
    [closed] = of(await b.batch(e.tick(at(9 * 60))), IntervalClosed)
    assert closed.data.peak.agents == 3
    state, _ = await a.store.load(None, "cc-1")  # type: ignore[misc]
    assert {x for x, st_ in state.live.agents.items() if st_.signed_in} == {"a1", "a2", "a3"}


# ---------------------------------------------------------------- batching and restarts change nothing

AGENTS = ("a1", "a2", "a3", "a4")
CAPS = ((), ("inbound_voice",), ("chat",), ("outbound_predictive",))
step = st.one_of(
    st.tuples(st.just("in"), st.sampled_from(AGENTS), st.sampled_from(CAPS), st.integers(0, 1500)),
    st.tuples(st.just("out"), st.sampled_from(AGENTS), st.just(()), st.integers(0, 1500)),
    st.tuples(st.just("ports"), st.just(""), st.just(()), st.integers(0, 1500)),
    st.tuples(st.just("tick"), st.just(""), st.just(()), st.integers(0, 1500)),
    st.tuples(st.just("entitle"), st.just(""), st.just(()), st.integers(0, 1500)),
)


def script_events(script: list[tuple[str, str, tuple[str, ...], int]]) -> list[Event]:
    b = Build("cc-1")
    events = [b.entitle(at(0), 2, 1, overage_allowed=False), b.register(at(0))]
    for kind, agent, caps, minute in script:
        t = at(minute)
        if kind == "in":
            events.append(b.sign_in(t, agent, *caps))
        elif kind == "out":
            events.append(b.sign_out(t, agent))
        elif kind == "ports":
            events.append(b.ports(t, minute % 5))
        elif kind == "entitle":
            events.append(b.entitle(t, minute % 3, minute % 2, overage_allowed=minute % 2 == 0))
        else:
            events.append(b.tick(t))
    return events


@settings(max_examples=150, deadline=None)
@given(st.lists(step, min_size=1, max_size=30), st.integers(1, 6), st.lists(st.integers(0, 30), max_size=3))
def test_any_batching_and_crashes_anywhere_publish_what_one_input_at_a_time_publishes(
    script: list[tuple[str, str, tuple[str, ...], int]], size: int, crashes: list[int]
) -> None:
    """Outputs are per input, never per batch: batches of any size, a process that dies at any COMMIT and gets its
    batch again, publish exactly what handling one input at a time does, and leave the same state."""
    events = script_events(script)
    one, many = Service(), Service()
    reference = asyncio.run(one.feed(events, 1))
    got = asyncio.run(many.feed(events, size, crashes))
    assert [(e.id, e.time, e.data) for e in got] == [(e.id, e.time, e.data) for e in reference]
    assert asyncio.run(many.store.load(None, "cc-1"))[0] == asyncio.run(one.store.load(None, "cc-1"))[0]  # type: ignore[index]
    assert many.store.report_rows == one.store.report_rows


@settings(max_examples=100, deadline=None)
@given(
    st.lists(step, min_size=1, max_size=20),
    st.lists(st.tuples(st.integers(0, 19), st.integers(1, 80 * 365)), max_size=3),
)
def test_clock_jumps_of_any_size_cost_work_for_the_intervals_with_data_only(
    script: list[tuple[str, str, tuple[str, ...], int]], jumps: list[tuple[int, int]]
) -> None:
    """Ticks that move the clock up to 80 years ahead, anywhere in the inputs: every input returns, and the reports
    are bounded by the facts (each fact bears on at most 4 intervals of 8 h within its 24 h, when it closes them and
    when it revises them), not by the 87,600 intervals in 80 years."""
    events = script_events(script)
    b = Build("cc-1", prefix="jump")
    for position, days in sorted(jumps, reverse=True):
        events.insert(min(position, len(events)), b.tick(at(0) + timedelta(days=days)))
    published = asyncio.run(Service().feed(events, 4))
    facts = sum(1 for e in events if not isinstance(e, EntitlementsSet | ClockTicked))
    assert len(of(published, IntervalClosed)) <= 8 * facts
