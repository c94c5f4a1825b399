"""One suite, two stores: `PgComplianceStore` on real PostgreSQL and the in-memory `FakeComplianceStore` the
handler tests use, both through the runtime's `Store` port. Whatever the fake does that PostgreSQL does not fails
here, so the fake cannot drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from ccxlic_compliance.app import MIGRATIONS
from ccxlic_compliance.decider import Compliance, Transitioned
from ccxlic_compliance.machine import Rules, State, Transition, replay
from ccxlic_compliance.store import PgComplianceStore
from ccxlic_runtime.db import ConcurrentUpdate, Database, Transaction
from ccxlic_testing.build import Build

from tests.integration.conftest import open_store
from tests.unit.compliance.fakes import FakeComplianceStore

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)


@pytest_asyncio.fixture
async def store(backend: Database | None) -> tuple[Any, Any]:
    return await open_store(backend, FakeComplianceStore, lambda: PgComplianceStore(Rules()), MIGRATIONS)


def walk(instance: str = "cc-1") -> tuple[State, list[Transition]]:
    """A real history: entitled, registered, over-consumption, the 30- and 45-minute stages."""
    b = Build(instance)
    events = [b.entitle(T0, 10, 2, 5), b.register(T0 + M), b.usage(T0 + 2 * M, 11, 3, 1), b.tick(T0 + 50 * M)]
    return replay(instance, events, Rules())


async def test_an_unknown_instance_loads_as_none(store: tuple[Any, Any]) -> None:
    s, uow = store
    assert await s.load(uow, "cc-1") is None


async def test_state_and_its_numbering_round_trip(store: tuple[Any, Any]) -> None:
    s, uow = store
    state, history = walk()
    assert len(history) >= 4
    assert await s.save(uow, "cc-1", 0, None, Compliance(state, 2), 0) == 1
    await s.write(uow, "cc-1", [Transitioned(n, t) for n, t in enumerate(history[:2], 1)])
    assert await s.save(uow, "cc-1", 0, None, Compliance(state, len(history)), 1) == 2
    await s.write(uow, "cc-1", [Transitioned(n, t) for n, t in enumerate(history[2:], 3)])
    assert await s.load(uow, "cc-1") == (Compliance(state, len(history)), 2)


async def test_a_transition_is_recorded_once(store: tuple[Any, Any]) -> None:
    s, uow = store
    _, history = walk()
    await s.save(uow, "cc-1", 0, None, Compliance(State(instance="cc-1"), 1), 0)
    await s.write(uow, "cc-1", [Transitioned(1, history[0])])
    with pytest.raises((KeyError, asyncpg.UniqueViolationError)):
        await s.write(uow, "cc-1", [Transitioned(1, history[1])])
        await flushed(uow)


async def test_a_save_over_a_version_another_worker_replaced_is_refused(store: tuple[Any, Any]) -> None:
    s, uow = store
    state, _ = walk()

    async def save(after: Compliance, version: int) -> None:
        await s.save(uow, "cc-1", 0, None, after, version)
        await flushed(uow)

    await save(Compliance(state, 1), 0)
    with pytest.raises(ConcurrentUpdate):
        await save(Compliance(state, 1), 0)  # another worker stored the instance first
    await save(Compliance(state, 2), 1)
    with pytest.raises(ConcurrentUpdate):
        await save(Compliance(state, 9), 1)  # read before that save
    assert await s.load(uow, "cc-1") == (Compliance(state, 2), 2)


async def flushed(uow: Transaction | None) -> None:
    """PostgreSQL's store writes at the flush (every instance of a batch at once); the fake at once."""
    if uow is not None:
        await uow.flush()
