"""PostgreSQL adapter of compliance: the state per instance and the transition history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ccxlic_runtime.db import Rows, Transaction, Versioned

from ccxlic_compliance.decider import Compliance, Output, Transitioned
from ccxlic_compliance.machine import Rules, State

if TYPE_CHECKING:
    from ccxlic_runtime.db import Connection


INSTANCES = Versioned(
    "instances", "instance", (("state", "jsonb"), ("view", "jsonb"), ("seq", "bigint")), touched="updated_at"
)
TRANSITIONS = Rows(
    "transitions",
    (
        ("instance", "text"),
        ("seq", "bigint"),
        ("at", "timestamptz"),
        ("cause_id", "text"),
        ("cause_type", "text"),
        ("evidence", "text"),
        ("view", "jsonb"),
    ),
)


class PgComplianceStore:
    """Compliance's tables, through the unit of work (the runtime's `Store` port)."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules  # the published view kept with the state is the state's view under these rules

    async def load(self, uow: Transaction, instance: str) -> tuple[Compliance, int] | None:
        await uow.flush()  # the saves and transitions of the batch are queued: one statement per table at the flush
        return await load_compliance(uow.conn, instance)

    async def save(
        self,
        uow: Transaction,
        instance: str,
        partition: int,
        before: Compliance | None,
        after: Compliance,
        version: int,
    ) -> int:
        state, view = after.state.model_dump_json(), after.state.view(self.rules).model_dump_json()
        return uow.save(INSTANCES, instance, (state, view, after.seq), version)

    async def write(self, uow: Transaction, instance: str, outputs: Sequence[Output]) -> None:
        rows = [
            (
                instance,
                o.seq,
                o.transition.at,
                o.transition.cause_id,
                o.transition.cause_type,
                o.transition.evidence,
                o.transition.view.model_dump_json(),
            )
            for o in outputs
            if isinstance(o, Transitioned)
        ]
        uow.queue(TRANSITIONS, rows)

    async def read(self, uow: Transaction, instance: str, need: object) -> object:
        raise NotImplementedError("compliance never asks to read")

    async def instances(self, uow: Transaction, partition: int) -> list[str]:
        return []  # `*` ticks never reach compliance: the consumption computer hands each instance its own

    async def env(self, uow: Transaction) -> None:
        return None


async def load_compliance(conn: Connection, instance: str) -> tuple[Compliance, int] | None:
    """An instance's state as saved, and its row's version (the store's load; the HTTP views read it too)."""
    row = await conn.fetchrow("select state, seq, version from instances where instance = $1", instance)
    if row is None:
        return None
    return Compliance(State.model_validate_json(row["state"]), int(row["seq"])), int(row["version"])
