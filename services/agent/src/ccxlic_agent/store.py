"""The agent's PostgreSQL adapter (the runtime's `Store` port): its state per instance and a log of its calls.
A decider's `need` is a call to the licensing authority: `read` makes it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ccxlic_runtime.db import Rows, Transaction, Versioned

from ccxlic_agent.machine import Call, Called, Outcome, Output, State

if TYPE_CHECKING:
    from ccxlic_runtime.db import Connection

    from ccxlic_agent.client import AuthorityClient

INSTANCES = Versioned("instances", "instance", (("state", "jsonb"), ("partition", "int")), touched="updated_at")
CALLS = Rows(
    "calls",
    (
        ("instance", "text"),
        ("seq", "bigint"),
        ("at", "timestamptz"),
        ("operation", "text"),
        ("ok", "boolean"),
        ("message", "text"),
    ),
    key=("instance", "seq"),
)


class PgAgentStore:
    def __init__(self, client: AuthorityClient) -> None:
        self.client = client

    async def load(self, uow: Transaction, instance: str) -> tuple[State, int] | None:
        await uow.flush()
        return await load_agent(uow.conn, instance)

    async def save(
        self, uow: Transaction, instance: str, partition: int, before: State | None, after: State, version: int
    ) -> int:
        return uow.save(INSTANCES, instance, (after.model_dump_json(), partition), version)

    async def write(self, uow: Transaction, instance: str, outputs: Sequence[Output]) -> None:
        uow.queue(
            CALLS,
            [(instance, o.seq, o.at, o.operation, o.ok, o.message) for o in outputs if isinstance(o, Called)],
        )

    async def read(self, uow: Transaction, instance: str, need: object) -> object:
        assert isinstance(need, Call)
        outcome: Outcome = await self.client.perform(need)
        return outcome

    async def instances(self, uow: Transaction, partition: int) -> list[str]:
        await uow.flush()
        rows = await uow.conn.fetch("select instance from instances where partition = $1", partition)
        return [r["instance"] for r in rows]

    async def env(self, uow: Transaction) -> None:
        return None


async def load_agent(conn: Connection, instance: str) -> tuple[State, int] | None:
    row = await conn.fetchrow("select state, version from instances where instance = $1", instance)
    return None if row is None else (State.model_validate_json(row["state"]), int(row["version"]))
