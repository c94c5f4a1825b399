"""One suite, two stores: the Smart Agent's `PgAgentStore` on real PostgreSQL and the in-memory `FakeAgentStore` its
handler tests use, through the runtime's `Store` port (the fake cannot drift)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from ccxlic_agent.app import MIGRATIONS
from ccxlic_agent.machine import Call, Called, InFlight, Pending, Requested, State
from ccxlic_agent.store import PgAgentStore
from ccxlic_runtime.db import ConcurrentUpdate, Database, Transaction

from tests.integration.conftest import open_store
from tests.unit.agent.fakes import FakeAgentStore, FakeAuthority

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)


@pytest_asyncio.fixture
async def store(backend: Database | None) -> tuple[Any, Any]:
    return await open_store(
        backend,
        lambda: FakeAgentStore(FakeAuthority()),
        PgAgentStore,
        MIGRATIONS,
    )


async def flushed(uow: Transaction | None) -> None:
    if uow is not None:
        await uow.flush()


CALL = Call(operation="report", at=T0, transport="direct", url=None, proxy=None, body={"reports": [], "at": "x"})


def state() -> State:
    pending = {T0.isoformat(): Pending(interval_start=T0, interval_end=T0, revision=2, peak={"premium": 3})}
    return State(
        instance="cc-1",
        now=T0,
        status="registered",
        identity="cert",
        next_report=T0,
        pending=pending,
        in_flight=InFlight(id="r-1", call=CALL),
        deferred=('{"an": "input heard while the call was out"}',),
    )


async def test_the_state_round_trips_and_unknown_is_none(store: tuple[Any, Any]) -> None:
    s, uow = store
    assert await s.load(uow, "cc-1") is None
    assert await s.save(uow, "cc-1", 2, None, state(), 0) == 1
    await flushed(uow)
    assert await s.load(uow, "cc-1") == (state(), 1)
    assert await s.instances(uow, 2) == ["cc-1"] and await s.instances(uow, 0) == []


async def test_a_save_over_a_version_another_worker_replaced_is_refused(store: tuple[Any, Any]) -> None:
    s, uow = store

    async def save(version: int) -> None:
        await s.save(uow, "cc-1", 0, None, state(), version)
        await flushed(uow)

    await save(0)
    with pytest.raises(ConcurrentUpdate):
        await save(0)
    await save(1)


async def test_calls_are_logged(store: tuple[Any, Any]) -> None:
    s, uow = store
    await s.save(uow, "cc-1", 0, None, state(), 0)
    await s.write(uow, "cc-1", [Called(1, T0, "authorize", False, "timeout: ...")])
    await flushed(uow)
    if uow is None:
        assert s.calls == [("cc-1", 1, "authorize", False, "timeout: ...")]
    else:
        rows = await uow.conn.fetch("select seq, operation, ok, message from calls")
        assert [tuple(r) for r in rows] == [(1, "authorize", False, "timeout: ...")]


async def test_a_call_asked_for_is_kept_for_the_caller_once(store: tuple[Any, Any]) -> None:
    s, uow = store
    await s.save(uow, "cc-1", 0, None, state(), 0)
    await s.write(uow, "cc-1", [Requested("r-1", CALL), Requested("r-1", CALL)])
    await flushed(uow)
    if uow is None:
        assert s.requests == {"r-1": ("cc-1", CALL)}
    else:
        rows = await uow.conn.fetch("select id, instance, call::text as call from requests")
        assert [(r["id"], r["instance"], Call.model_validate_json(r["call"])) for r in rows] == [("r-1", "cc-1", CALL)]
