"""The Smart Agent's caller on the real PostgreSQL: a call asked for is made once the state that asked for it has
committed, outside any transaction, and its answer queued on the outbox in the transaction that deletes the request;
two workers make each call once; a worker that dies mid-call leaves it to be made again when its lease runs out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from ccxlic_agent.app import MIGRATIONS
from ccxlic_agent.caller import Caller
from ccxlic_agent.machine import Call, Outcome
from ccxlic_contract import decode
from ccxlic_contract.events import AgentCallAnswered
from ccxlic_runtime.db import Database, migrate

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)


def call(n: int) -> Call:
    return Call(operation="authorize", at=T0, transport="direct", url=None, proxy=None, body={"n": n})


async def ask(db: Database, *ids: str) -> None:
    await migrate(db.pool, db.schema, MIGRATIONS)
    for n, rid in enumerate(ids):
        await db.pool.execute(
            "insert into requests (id, instance, call) values ($1, $2, $3::jsonb)",
            rid,
            "cc-1",
            call(n).model_dump_json(),
        )


async def answers(db: Database) -> list[AgentCallAnswered]:
    rows = await db.fetch("select value from outbox order by seq")
    found = [decode(bytes(r["value"])) for r in rows]
    assert all(isinstance(e, AgentCallAnswered) for e in found)
    return found  # type: ignore[return-value]


async def test_a_call_is_made_outside_any_transaction_and_answered_with_its_request_deleted(db: Database) -> None:
    await ask(db, "r-1")
    seen: list[int] = []

    async def perform(c: Call) -> Outcome:
        # while the authority is being called, nothing of the agent's is in a transaction
        open_ = await db.pool.fetchval(
            "select count(*) from pg_stat_activity where state like 'idle in transaction%' and datname = current_database()"
        )
        seen.append(int(open_))
        return Outcome(c, True, {"authorized_until": "2026-06-01T08:00:00+00:00"})

    made = await Caller(db, perform, lease=30, wake=asyncio.Event()).once()
    assert made == 1 and seen == [0]
    [answer] = await answers(db)
    assert answer.data.call_id == "r-1" and answer.data.ok and answer.time == T0 and answer.subject == "cc-1"
    assert await db.fetch("select id from requests") == []


async def test_two_workers_make_each_call_once_however_slow_the_authority(db: Database) -> None:
    await ask(db, *(f"r-{n}" for n in range(6)))
    made: list[int] = []

    async def slow(c: Call) -> Outcome:
        made.append(c.body["n"])
        await asyncio.sleep(0.2)
        return Outcome(c, True, {})

    one, two = (Caller(db, slow, lease=30, wake=asyncio.Event()) for _ in range(2))
    counts = await asyncio.gather(one.once(), two.once())
    assert sum(counts) == 6 and sorted(made) == list(range(6))  # each once, shared between them
    assert sorted(a.data.call_id for a in await answers(db)) == [f"r-{n}" for n in range(6)]


async def test_a_worker_that_dies_mid_call_leaves_it_to_be_made_again_when_the_lease_runs_out(db: Database) -> None:
    await ask(db, "r-1")
    started = asyncio.Event()

    async def hangs(c: Call) -> Outcome:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("never")

    dying = asyncio.create_task(Caller(db, hangs, lease=0.5, wake=asyncio.Event()).once())
    await started.wait()
    dying.cancel()  # as kill -9 would: the request stays, leased
    with pytest.raises(asyncio.CancelledError):
        await dying

    async def answers_at_once(c: Call) -> Outcome:
        return Outcome(c, False, reason="timeout: the licensing authority did not answer within 1 s")

    other = Caller(db, answers_at_once, lease=30, wake=asyncio.Event())
    assert await other.once() == 0  # leased by the worker that died
    await asyncio.sleep(0.6)
    assert await other.once() == 1
    [answer] = await answers(db)
    assert not answer.data.ok and answer.data.reason.startswith("timeout")
