"""One suite, two stores: `PgComplianceStore` on real PostgreSQL and the in-memory `FakeComplianceStore` the
handler tests use. Whatever the fake does that PostgreSQL does not fails here, so the fake cannot drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from ccxlic_compliance.app import MIGRATIONS
from ccxlic_compliance.machine import Rules, State, replay
from ccxlic_compliance.store import ComplianceStore, PgComplianceStore
from ccxlic_runtime.db import ConcurrentUpdate, Database
from ccxlic_testing.build import Build

from tests.integration.conftest import open_store
from tests.unit.compliance.fakes import FakeComplianceStore

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)


@pytest_asyncio.fixture
async def store(backend: Database | None) -> tuple[ComplianceStore, Any]:
    return await open_store(backend, FakeComplianceStore, PgComplianceStore, MIGRATIONS)


def walk(instance: str = "cc-1") -> tuple[State, list[Any]]:
    """A real history: entitled, registered, over-consumption, the 30- and 45-minute stages."""
    b = Build(instance)
    events = [b.entitle(T0, 10, 2, 5), b.register(T0 + M), b.usage(T0 + 2 * M, 11, 3, 1), b.tick(T0 + 50 * M)]
    return replay(instance, events, Rules())


async def test_an_unknown_instance_has_nothing(store: tuple[ComplianceStore, Any]) -> None:
    s, conn = store
    assert await s.load(conn, "cc-1") is None
    assert await s.current(conn, "cc-1") is None
    assert await s.history(conn, "cc-1", 0, 10) == []
    assert await s.instance_ids(conn) == []


async def test_state_history_and_current_round_trip(store: tuple[ComplianceStore, Any]) -> None:
    s, conn = store
    state, history = walk()
    assert len(history) >= 4
    assert await s.save(conn, state, 2, history[:2], 0) == 1
    assert await s.save(conn, state, len(history), history[2:], 1) == 2
    await s.save(conn, State(instance="cc-0", now=T0), 0, [], 0)  # an instance with no transition yet
    assert await s.load(conn, "cc-1") == (state, len(history), 2)
    assert await s.instance_ids(conn) == ["cc-0", "cc-1"]
    rows = await s.history(conn, "cc-1", 0, 100)
    assert [r["seq"] for r in rows] == list(range(1, len(history) + 1))
    assert [(r["at"], r["cause"], r["evidence"]) for r in rows] == [
        (t.at, {"id": t.cause_id, "type": t.cause_type}, t.evidence) for t in history
    ]
    assert rows[-1]["state"] == history[-1].view.model_dump(mode="json")
    current = await s.current(conn, "cc-1")
    assert current == {"view": rows[-1]["state"], "seq": len(history), "as_of": "2026-03-02T10:50:00Z"}
    assert await s.current(conn, "cc-0") == {"view": {}, "seq": 0, "as_of": "2026-03-02T10:00:00Z"}


async def test_a_save_without_transitions_keeps_the_last_view(store: tuple[ComplianceStore, Any]) -> None:
    s, conn = store
    state, history = walk()
    await s.save(conn, state, len(history), history, 0)
    later = state.model_copy(update={"now": T0 + 60 * M})
    await s.save(conn, later, len(history), [], 1)
    current = await s.current(conn, "cc-1")
    assert current is not None and current["view"] == history[-1].view.model_dump(mode="json")
    assert current["as_of"] == "2026-03-02T11:00:00Z"


async def test_history_pages(store: tuple[ComplianceStore, Any]) -> None:
    s, conn = store
    state, history = walk()
    await s.save(conn, state, len(history), history, 0)
    assert [r["seq"] for r in await s.history(conn, "cc-1", 1, 2)] == [2, 3]
    assert await s.history(conn, "cc-1", len(history), 10) == []


async def test_a_save_over_a_version_another_worker_replaced_is_refused(store: tuple[ComplianceStore, Any]) -> None:
    s, conn = store
    state, history = walk()
    await s.save(conn, state, 1, history[:1], 0)
    with pytest.raises(ConcurrentUpdate):
        await s.save(conn, state, 1, history[:1], 0)  # another worker stored the instance first
    await s.save(conn, state, 2, history[1:2], 1)
    with pytest.raises(ConcurrentUpdate):
        await s.save(conn, state, 2, history[1:2], 1)  # read before that save: refused before any history is added
    assert [r["seq"] for r in await s.history(conn, "cc-1", 0, 10)] == [1, 2]
    assert await s.load(conn, "cc-1") == (state, 2, 2)
