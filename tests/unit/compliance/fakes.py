"""An in-memory `ComplianceStore`. tests/integration/test_compliance_store.py runs one suite against it and against
`PgComplianceStore`, so what the handler tests learn from it holds for PostgreSQL too."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from ccxlic_compliance.machine import State, Transition
from ccxlic_runtime.db import ConcurrentUpdate
from ccxlic_testing.fakes import InMemoryStore


class FakeComplianceStore(InMemoryStore):
    def __init__(self) -> None:
        # Like the tables: the state as JSON (so what does not survive JSON does not survive here either), the
        # last published view and its number; and the history.
        self.instances: dict[str, dict[str, Any]] = {}
        self.transitions: dict[tuple[str, int], dict[str, Any]] = {}

    async def load(self, conn: Any, instance: str) -> tuple[State, int, int] | None:
        row = self.instances.get(instance)
        return None if row is None else (State.model_validate_json(row["state"]), row["seq"], row["version"])

    async def instance_ids(self, conn: Any) -> list[str]:
        return sorted(self.instances)

    async def save(self, conn: Any, state: State, seq: int, transitions: Sequence[Transition], version: int) -> int:
        if self.instances.get(state.instance, {"version": 0})["version"] != version:
            raise ConcurrentUpdate("compliance.instances", state.instance)
        first = seq - len(transitions) + 1
        for i, t in enumerate(transitions):
            key = (state.instance, first + i)
            if key in self.transitions:
                raise KeyError(f"transition {key} exists")  # the primary key in PostgreSQL
            self.transitions[key] = {
                "seq": first + i,
                "at": t.at,
                "cause": {"id": t.cause_id, "type": t.cause_type},
                "evidence": t.evidence,
                "state": json.loads(t.view.model_dump_json()),
            }
        old = self.instances.get(state.instance, {"view": {}})
        view = json.loads(transitions[-1].view.model_dump_json()) if transitions else old["view"]
        self.instances[state.instance] = {
            "state": state.model_dump_json(),
            "view": view,
            "seq": seq,
            "version": version + 1,
        }
        return version + 1

    async def current(self, conn: Any, instance: str) -> dict[str, Any] | None:
        row = self.instances.get(instance)
        if row is None:
            return None
        return {"view": copy.deepcopy(row["view"]), "seq": row["seq"], "as_of": json.loads(row["state"]).get("now")}

    async def history(self, conn: Any, instance: str, after: int, limit: int) -> list[dict[str, Any]]:
        keys = sorted(k for k in self.transitions if k[0] == instance and k[1] > after)[:limit]
        return [copy.deepcopy(self.transitions[k]) for k in keys]
