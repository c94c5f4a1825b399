"""One suite, two stores: `PgConsumptionStore` on real PostgreSQL and the in-memory `FakeConsumptionStore` the
handler tests use, both through the runtime's `Store` port. Whatever the fake does that PostgreSQL does not fails
here, so the fake cannot drift."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from ccxlic_consumption.app import MIGRATIONS
from ccxlic_consumption.decider import Consumption, Recorded, Reported, Window, published
from ccxlic_consumption.machine import (
    Agent,
    Fact,
    InstanceState,
    Limits,
    Ports,
    PortsFact,
    RosterFact,
    SignInFact,
    SignOutFact,
)
from ccxlic_consumption.store import PgConsumptionStore
from ccxlic_contract.events import IntervalClosedData, Peak, PeakWitness, Witness
from ccxlic_rules import Entitlement
from ccxlic_runtime.db import ConcurrentUpdate, Database
from ccxlic_testing.build import Build

from tests.integration.conftest import open_store
from tests.unit.consumption.fakes import FakeConsumptionStore

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
TICK = Build("cc-1").tick(T0)
H = timedelta(hours=1)


@pytest_asyncio.fixture
async def store(backend: Database | None) -> tuple[Any, Any]:
    return await open_store(backend, FakeConsumptionStore, PgConsumptionStore, MIGRATIONS)


def a_state(instance: str = "cc-1") -> Consumption:
    live = InstanceState(
        instance=instance,
        watermark=T0 + 2 * H,
        agents={
            "a1": Agent(True, "standard", "inbound_voice only", (T0, "e1"), "signed_in"),
            "a2": Agent(True, "premium", "supervisor", (T0 + H, "e2"), "signed_in"),
            "a3": Agent(False, "premium", "chat", (T0 + 2 * H, "e3"), "reconciled"),
        },
        roster_last=(T0 + 2 * H, "e3"),
        ports=Ports(ivr=7, outbound_ports=2, outbound_seats=1, last=(T0 + H, "e4")),
        limits=Limits(
            entitlement=Entitlement(standard=40, premium=10, ivr_ports=20),
            overage_allowed=False,
            production=True,
            entitlement_last=(T0, "e0"),
            reservation=Entitlement(standard=5, premium=1, ivr_ports=2),
            reservation_last=(T0 + H, "e5"),
        ),
    )
    return Consumption(live, next_close=T0, last_fact_at=T0 + H, change_seq=3, published=published(live))


async def test_an_unknown_instance_loads_as_none(store: tuple[Any, Any]) -> None:
    s, uow = store
    assert await s.load(uow, "cc-1") is None
    assert await s.instances(uow, 0) == []


async def test_state_round_trips_and_instances_are_found_by_partition(store: tuple[Any, Any]) -> None:
    s, uow = store
    state = a_state()
    assert await s.save(uow, "cc-1", 2, None, state, 0) == 1
    bare = Consumption(InstanceState("cc-2"))
    assert await s.save(uow, "cc-2", 0, None, bare, 0) == 1
    loaded = await s.load(uow, "cc-1")
    assert loaded == (state, 1) and loaded[0].live.expiry_floor is None  # derived, never stored
    assert await s.load(uow, "cc-2") == (bare, 1)
    assert await s.instances(uow, 2) == ["cc-1"] and await s.instances(uow, 1) == []


async def test_a_save_writes_the_sessions_the_state_says_are_unsaved(store: tuple[Any, Any]) -> None:
    s, uow = store
    state = a_state()
    await s.save(uow, "cc-1", 0, None, state, 0)  # a new instance: every session
    a1 = Agent(False, "standard", "inbound_voice only", (T0 + 3 * H, "e6"), "signed_out")
    a2 = Agent(False, "premium", "supervisor", (T0 + 3 * H, "e7"), "signed_out")
    moved = {**state.live.agents, "a1": a1, "a2": a2}
    later = replace(state, live=replace(state.live, agents=moved, seats=None), unsaved=frozenset({"a1"}))
    assert await s.save(uow, "cc-1", 0, state, later, 1) == 2
    loaded = await s.load(uow, "cc-1")
    assert loaded is not None
    assert loaded[0].live.agents == {**state.live.agents, "a1": a1}  # a2 was not said to be unsaved: as before


async def test_facts_are_recorded_once_and_read_by_window(store: tuple[Any, Any]) -> None:
    s, uow = store
    facts = [
        Fact(T0, "e1", SignInFact("a1", "standard", "inbound_voice only")),
        Fact(T0 + H, "e2", SignOutFact("a1")),
        Fact(T0 + 2 * H, "e3", RosterFact((SignInFact("a2", "premium", "chat"), SignInFact("a3", "standard", "-")))),
        Fact(T0 + 3 * H, "e4", PortsFact(5, 1, 0)),
    ]
    await s.write(uow, "cc-1", [Recorded(f) for f in facts])
    await s.write(uow, "cc-1", [Recorded(facts[0]), Recorded(Fact(T0, "e1", SignOutFact("other")))])  # same key: kept
    await s.write(uow, "cc-2", [Recorded(Fact(T0, "x", SignOutFact("z")))])

    async def window(since: datetime, until: datetime) -> list[Fact]:
        stored = await s.read(uow, "cc-1", Window(since, until, (), None, TICK))
        return sorted(stored.facts, key=lambda f: f.order)

    assert await window(T0, T0 + 4 * H) == facts
    assert await window(T0 + H, T0 + 3 * H) == facts[1:3]  # [since, until)
    assert await window(T0 - H, T0) == []


def report(start: datetime, revision: int, standard: int) -> Reported:
    none = PeakWitness(at=None)
    witness = Witness(
        standard=none, premium=none, agents=none, ivr_ports=none, outbound_ports=none, outbound_seats=none
    )
    peak = Peak(standard=standard, premium=0, agents=standard, ivr_ports=0, outbound_ports=0, outbound_seats=0)
    data = IntervalClosedData(
        interval_start=start, interval_end=start + 8 * H, revision=revision, peak=peak, witness=witness
    )
    return Reported(data, start + 9 * H)


async def test_reports_keep_every_revision_and_the_latest_is_read_back(store: tuple[Any, Any]) -> None:
    s, uow = store
    await s.write(uow, "cc-1", [report(T0, 1, 1), report(T0, 2, 2), report(T0 + 8 * H, 1, 0)])
    stored = await s.read(uow, "cc-1", Window(T0, T0 + 16 * H, (T0, T0 + 8 * H, T0 + 16 * H), None, TICK))
    assert stored.latest[T0][0] == 2 and stored.latest[T0][1].standard == 2
    assert stored.latest[T0 + 8 * H][0] == 1 and T0 + 16 * H not in stored.latest
    with pytest.raises((KeyError, asyncpg.UniqueViolationError)):
        await s.write(uow, "cc-1", [report(T0, 2, 5)])
        await uow.flush()  # PostgreSQL's store writes its queued rows at the flush, before COMMIT


async def test_a_save_over_a_version_another_worker_replaced_is_refused(store: tuple[Any, Any]) -> None:
    s, uow = store

    async def save(before: Consumption | None, after: Consumption, version: int) -> int:
        new = int(await s.save(uow, "cc-1", 0, before, after, version))
        if uow is not None:
            await uow.flush()  # PostgreSQL's store saves at the flush (all instances of a batch at once)
        return new

    state = a_state()
    assert await save(None, state, 0) == 1
    with pytest.raises(ConcurrentUpdate):
        await save(None, state, 0)  # another worker stored the instance first
    assert await save(state, replace(state, change_seq=4), 1) == 2
    with pytest.raises(ConcurrentUpdate):
        await save(state, replace(state, change_seq=9), 1)  # read before that save
    loaded = await s.load(uow, "cc-1")
    assert loaded is not None and (loaded[0].change_seq, loaded[1]) == (4, 2)
