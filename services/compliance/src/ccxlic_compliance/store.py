"""PostgreSQL adapter of compliance: the state per instance and the transition history."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ccxlic_runtime.db import ConcurrentUpdate

from ccxlic_compliance.machine import State, Transition

if TYPE_CHECKING:
    from ccxlic_runtime.db import Connection


class ComplianceStore(Protocol):
    """Where compliance keeps each instance's state and history, on the transaction's connection. One suite of
    adapter tests runs against `PgComplianceStore` and the in-memory fake."""

    async def load(self, conn: Connection, instance: str) -> tuple[State, int, int] | None:
        """The state, the number of its last transition and the row's version, or None."""
        ...

    async def instance_ids(self, conn: Connection) -> list[str]:
        """Every instance with saved state, sorted."""
        ...

    async def save(
        self, conn: Connection, state: State, seq: int, transitions: Sequence[Transition], version: int
    ) -> int:
        """Write the state over the row's `version` (0: a new instance) and append its new transitions (numbered up
        to `seq`); return the new version. Raise ConcurrentUpdate when the row is no longer at `version`."""
        ...

    async def current(self, conn: Connection, instance: str) -> dict[str, Any] | None:
        """The last published view, its number and the instance's "now", or None."""
        ...

    async def history(self, conn: Connection, instance: str, after: int, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` transitions numbered after `after`, oldest first."""
        ...


class PgComplianceStore:
    async def load(self, conn: Connection, instance: str) -> tuple[State, int, int] | None:
        row = await conn.fetchrow("select state, seq, version from instances where instance = $1", instance)
        if row is None:
            return None
        return State.model_validate_json(row["state"]), int(row["seq"]), int(row["version"])

    async def instance_ids(self, conn: Connection) -> list[str]:
        return [r["instance"] for r in await conn.fetch("select instance from instances order by instance")]

    async def save(
        self, conn: Connection, state: State, seq: int, transitions: Sequence[Transition], version: int
    ) -> int:
        view = transitions[-1].view.model_dump_json() if transitions else None
        if version == 0:
            new = await conn.fetchval(
                "insert into instances(instance, state, view, seq, version)"
                " values ($1, $2, coalesce($3::jsonb, '{}'::jsonb), $4, 1) on conflict (instance) do nothing"
                " returning version",
                state.instance,
                state.model_dump_json(),
                view,
                seq,
            )
        else:
            new = await conn.fetchval(
                "update instances set state = $2, view = coalesce($3::jsonb, view), seq = $4, updated_at = now(),"
                " version = version + 1 where instance = $1 and version = $5 returning version",
                state.instance,
                state.model_dump_json(),
                view,
                seq,
                version,
            )
        if new is None:  # checked before the history is appended, so a lost race is a retry, not a duplicate key
            raise ConcurrentUpdate("compliance.instances", state.instance)
        first = seq - len(transitions) + 1
        if transitions:
            await conn.executemany(
                "insert into transitions(instance, seq, at, cause_id, cause_type, evidence, view)"
                " values ($1, $2, $3, $4, $5, $6, $7)",
                [
                    (state.instance, first + i, t.at, t.cause_id, t.cause_type, t.evidence, t.view.model_dump_json())
                    for i, t in enumerate(transitions)
                ],
            )
        return int(new)

    async def current(self, conn: Connection, instance: str) -> dict[str, Any] | None:
        row = await conn.fetchrow("select view, seq, state from instances where instance = $1", instance)
        if row is None:
            return None
        state = json.loads(row["state"])
        return {"view": json.loads(row["view"]), "seq": row["seq"], "as_of": state.get("now")}

    async def history(self, conn: Connection, instance: str, after: int, limit: int) -> list[dict[str, Any]]:
        rows = await conn.fetch(
            "select seq, at, cause_id, cause_type, evidence, view from transitions"
            " where instance = $1 and seq > $2 order by seq limit $3",
            instance,
            after,
            limit,
        )
        return [
            {
                "seq": r["seq"],
                "at": r["at"],
                "cause": {"id": r["cause_id"], "type": r["cause_type"]},
                "evidence": r["evidence"],
                "state": json.loads(r["view"]),
            }
            for r in rows
        ]
