"""One suite, two stores: `PgConsumptionStore` on real PostgreSQL and the in-memory `FakeConsumptionStore` the
handler tests use. Whatever the fake does that PostgreSQL does not fails here, so the fake cannot drift."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from ccxlic_consumption.app import MIGRATIONS
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
from ccxlic_consumption.peaks import IntervalPeaks
from ccxlic_consumption.store import Book, ConsumptionStore, PgConsumptionStore
from ccxlic_rules import Entitlement
from ccxlic_runtime.db import ConcurrentUpdate, Database

from tests.integration.conftest import open_store
from tests.unit.consumption.fakes import FakeConsumptionStore

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)


@pytest_asyncio.fixture
async def store(backend: Database | None) -> tuple[ConsumptionStore, Any]:
    return await open_store(backend, FakeConsumptionStore, PgConsumptionStore, MIGRATIONS)


def a_state(instance: str = "cc-1") -> InstanceState:
    return InstanceState(
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


async def test_an_unknown_instance_loads_as_none(store: tuple[ConsumptionStore, Any]) -> None:
    s, conn = store
    assert await s.load(conn, "cc-1") is None
    assert await s.instance_ids(conn) == []


async def test_state_and_book_round_trip(store: tuple[ConsumptionStore, Any]) -> None:
    s, conn = store
    state, book = a_state(), Book(next_close=T0, change_seq=3, published='{"standard": 1}')
    assert await s.save(conn, state, book, state.agents) == 1
    assert await s.save(conn, a_state("cc-2"), Book(), ()) == 1
    loaded = await s.load(conn, "cc-1")
    assert loaded is not None
    assert loaded[0] == state and loaded[0].expiry_floor is None  # derived, never stored
    assert (loaded[1].next_close, loaded[1].change_seq, loaded[1].version) == (T0, 3, 1)
    assert json.loads(loaded[1].published or "") == {"standard": 1}
    assert sorted(await s.instance_ids(conn)) == ["cc-1", "cc-2"]
    assert (await s.load(conn, "cc-2")) == (InstanceState("cc-2", **_no_agents(a_state("cc-2"))), Book(version=1))


def _no_agents(state: InstanceState) -> dict[str, Any]:
    return {
        "watermark": state.watermark,
        "roster_last": state.roster_last,
        "ports": state.ports,
        "limits": state.limits,
    }


async def test_only_the_changed_agents_sessions_are_written(store: tuple[ConsumptionStore, Any]) -> None:
    s, conn = store
    state = a_state()
    await s.save(conn, state, Book(), state.agents)
    moved = {**state.agents}
    moved["a1"] = Agent(False, "standard", "inbound_voice only", (T0 + 3 * H, "e6"), "signed_out")
    moved["a2"] = Agent(False, "premium", "supervisor", (T0 + 3 * H, "e7"), "signed_out")
    await s.save(conn, InstanceState("cc-1", agents=moved), Book(version=1), ["a1"])
    loaded = await s.load(conn, "cc-1")
    assert loaded is not None
    assert loaded[0].agents["a1"] == moved["a1"]
    assert loaded[0].agents["a2"] == state.agents["a2"]  # not listed as changed: as saved before
    assert loaded[0].limits == Limits() and loaded[0].watermark is None  # the instance row is always written


async def test_facts_are_recorded_once_and_read_by_window(store: tuple[ConsumptionStore, Any]) -> None:
    s, conn = store
    facts = [
        Fact(T0, "e1", SignInFact("a1", "standard", "inbound_voice only")),
        Fact(T0 + H, "e2", SignOutFact("a1")),
        Fact(T0 + 2 * H, "e3", RosterFact((SignInFact("a2", "premium", "chat"), SignInFact("a3", "standard", "-")))),
        Fact(T0 + 3 * H, "e4", PortsFact(5, 1, 0)),
    ]
    await s.add_facts(conn, "cc-1", facts)
    await s.add_facts(conn, "cc-1", [facts[0], Fact(T0, "e1", SignOutFact("other"))])  # same time and id: kept
    await s.add_facts(conn, "cc-2", [Fact(T0, "x", SignOutFact("z"))])
    assert _sorted(await s.facts(conn, "cc-1", T0, T0 + 4 * H)) == facts
    assert _sorted(await s.facts(conn, "cc-1", T0 + H, T0 + 3 * H)) == facts[1:3]  # [since, until)
    assert await s.facts(conn, "cc-1", T0 - H, T0) == []


def _sorted(facts: list[Fact]) -> list[Fact]:
    return sorted(facts, key=lambda f: f.order)


async def test_reports_keep_every_revision(store: tuple[ConsumptionStore, Any]) -> None:
    s, conn = store
    first, second = IntervalPeaks(T0, T0 + 8 * H, {}), IntervalPeaks(T0 + 8 * H, T0 + 16 * H, {})
    assert await s.latest_report(conn, "cc-1", T0) is None
    await s.add_report(conn, "cc-1", first, 1, '{"standard": 1}', '{"standard": {"at": null}}', T0 + 9 * H)
    await s.add_report(conn, "cc-1", first, 2, '{"standard": 2}', '{"standard": {"at": null}}', T0 + 10 * H)
    await s.add_report(conn, "cc-1", second, 1, '{"standard": 0}', "{}", T0 + 17 * H)
    latest = await s.latest_report(conn, "cc-1", T0)
    assert latest is not None
    assert (latest[0], json.loads(latest[1]), json.loads(latest[2])) == (2, {"standard": 2}, {"standard": {"at": None}})
    reports = await s.reports(conn, "cc-1", T0, T0 + 24 * H)
    assert [(r["interval_start"], r["revision"]) for r in reports] == [(T0, 1), (T0, 2), (T0 + 8 * H, 1)]
    assert reports[1] == {
        "interval_start": T0,
        "interval_end": T0 + 8 * H,
        "revision": 2,
        "peak": {"standard": 2},
        "witness": {"standard": {"at": None}},
        "closed_at": T0 + 10 * H,
    }
    assert await s.reports(conn, "cc-1", T0 + H, T0 + 8 * H) == []  # by interval start, [since, until)
    with pytest.raises((KeyError, asyncpg.UniqueViolationError)):
        await s.add_report(conn, "cc-1", first, 2, "{}", "{}", T0)


async def test_a_save_over_a_version_another_worker_replaced_is_refused(store: tuple[ConsumptionStore, Any]) -> None:
    s, conn = store
    state = a_state()
    assert await s.save(conn, state, Book(), state.agents) == 1
    with pytest.raises(ConcurrentUpdate):
        await s.save(conn, state, Book(), ())  # another worker stored the instance first
    assert await s.save(conn, state, Book(change_seq=1, version=1), ()) == 2
    with pytest.raises(ConcurrentUpdate):
        await s.save(conn, state, Book(change_seq=9, version=1), ())  # read before that save
    loaded = await s.load(conn, "cc-1")
    assert loaded is not None and (loaded[1].change_seq, loaded[1].version) == (1, 2)
