"""An in-memory compliance store (the runtime's `Store` port). tests/integration/test_compliance_store.py runs one
suite against it and against `PgComplianceStore`, so what the handler tests learn from it holds for PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ccxlic_compliance.decider import Compliance, Output, Transitioned
from ccxlic_compliance.machine import State, Transition
from ccxlic_runtime.db import ConcurrentUpdate
from ccxlic_testing.fakes import InMemoryStore


class FakeComplianceStore(InMemoryStore):
    def __init__(self) -> None:
        # Like the tables: the state as JSON (so what does not survive JSON does not survive here either), and the
        # history.
        self.rows: dict[str, tuple[str, int, int]] = {}  # instance -> (state JSON, seq, version)
        self.transitions: dict[tuple[str, int], Transition] = {}

    async def load(self, uow: Any, instance: str) -> tuple[Compliance, int] | None:
        row = self.rows.get(instance)
        return None if row is None else (Compliance(State.model_validate_json(row[0]), row[1]), row[2])

    async def save(
        self, uow: Any, instance: str, partition: int, before: Compliance | None, after: Compliance, version: int
    ) -> int:
        if (self.rows[instance][2] if instance in self.rows else 0) != version:
            raise ConcurrentUpdate("compliance.instances", instance)
        self.rows[instance] = (after.state.model_dump_json(), after.seq, version + 1)
        return version + 1

    async def write(self, uow: Any, instance: str, outputs: Sequence[Output]) -> None:
        for o in outputs:
            if isinstance(o, Transitioned):
                if (instance, o.seq) in self.transitions:
                    raise KeyError(f"transition {instance}:{o.seq} exists")  # the primary key in PostgreSQL
                self.transitions[(instance, o.seq)] = o.transition

    async def read(self, uow: Any, instance: str, need: object) -> object:
        raise NotImplementedError

    async def instances(self, uow: Any, partition: int) -> list[str]:
        return []

    async def env(self, uow: Any) -> None:
        return None

    def history(self, instance: str) -> list[tuple[int, Transition]]:
        return sorted((seq, t) for (i, seq), t in self.transitions.items() if i == instance)
