"""The agent's PostgreSQL adapter (the runtime's `Store` port): its state per instance, a log of its calls, and the
calls asked for (`requests`, which the caller makes once they are committed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ccxlic_runtime.db import Rows, Transaction, Versioned

from ccxlic_agent.machine import Called, Output, Requested, State

if TYPE_CHECKING:
    from ccxlic_runtime.db import Connection

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
REQUESTS = Rows("requests", (("id", "text"), ("instance", "text"), ("call", "jsonb")), key=("id",))


class PgAgentStore:
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
        uow.queue(REQUESTS, [(o.id, instance, o.call.model_dump_json()) for o in outputs if isinstance(o, Requested)])

    async def read(self, uow: Transaction, instance: str, need: object) -> object:
        raise AssertionError("the Smart Agent reads nothing within a unit of work: its calls are outputs")

    async def instances(self, uow: Transaction, partition: int) -> list[str]:
        await uow.flush()
        rows = await uow.conn.fetch("select instance from instances where partition = $1", partition)
        return [r["instance"] for r in rows]

    async def env(self, uow: Transaction) -> None:
        return None


async def load_agent(conn: Connection, instance: str) -> tuple[State, int] | None:
    row = await conn.fetchrow("select state, version from instances where instance = $1", instance)
    return None if row is None else (State.model_validate_json(row["state"]), int(row["version"]))
