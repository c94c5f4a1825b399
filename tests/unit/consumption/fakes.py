"""An in-memory consumption store (the runtime's `Store` port). tests/integration/test_consumption_store.py runs one
suite against it and against `PgConsumptionStore`, so what the handler tests learn from it holds for PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from ccxlic_consumption.decider import Consumption, Output, Recorded, Reported, Stored, Window
from ccxlic_consumption.machine import Agent, Fact
from ccxlic_contract.events import IntervalClosedData, Peak, Witness
from ccxlic_runtime.db import ConcurrentUpdate
from ccxlic_testing.fakes import InMemoryStore


class FakeConsumptionStore(InMemoryStore):
    def __init__(self) -> None:
        # Like the tables: the instance row without its agents, the sessions, the facts and the reports.
        self.rows: dict[
            str, tuple[Consumption, int, int]
        ] = {}  # instance -> (state without agents, version, partition)
        self.sessions: dict[str, dict[str, Agent]] = {}
        self.fact_rows: dict[tuple[str, datetime, str], Fact] = {}
        self.report_rows: dict[tuple[str, datetime, int], tuple[IntervalClosedData, datetime]] = {}

    async def load(self, uow: Any, instance: str) -> tuple[Consumption, int] | None:
        found = self.rows.get(instance)
        if found is None:
            return None
        state, version, _ = found
        # derived fields are not stored: counted again from the sessions
        live = replace(state.live, agents=dict(self.sessions.get(instance, {})), expiry_floor=None, seats=None)
        return replace(state, live=live), version

    async def save(
        self, uow: Any, instance: str, partition: int, before: Consumption | None, after: Consumption, version: int
    ) -> int:
        if (self.rows[instance][1] if instance in self.rows else 0) != version:
            raise ConcurrentUpdate("consumption.instances", instance)
        stored = replace(after, live=replace(after.live, agents={}, seats=None), unsaved=frozenset())
        self.rows[instance] = (stored, version + 1, partition)
        sessions = self.sessions.setdefault(instance, {})
        for agent_id in after.live.agents if before is None else after.unsaved:
            sessions[agent_id] = after.live.agents[agent_id]
        return version + 1

    async def write(self, uow: Any, instance: str, outputs: Sequence[Output]) -> None:
        for o in outputs:
            if isinstance(o, Recorded):
                self.fact_rows.setdefault((instance, o.fact.at, o.fact.event_id), o.fact)
            elif isinstance(o, Reported):
                key = (instance, o.data.interval_start, o.data.revision)
                if key in self.report_rows:
                    raise KeyError(f"report {key} exists")  # the primary key in PostgreSQL
                self.report_rows[key] = (o.data, o.at)

    async def read(self, uow: Any, instance: str, need: object) -> Stored:
        assert isinstance(need, Window)
        facts = tuple(f for (i, at, _), f in self.fact_rows.items() if i == instance and need.since <= at < need.until)
        latest: dict[datetime, tuple[int, Peak, Witness]] = {}
        for (i, start, revision), (data, _) in self.report_rows.items():
            if i == instance and start in need.revise and revision > latest.get(start, (0,))[0]:
                latest[start] = (revision, data.peak, data.witness)
        return Stored(need, facts, latest)

    async def instances(self, uow: Any, partition: int) -> list[str]:
        return [i for i, (_, _, p) in self.rows.items() if p == partition]

    async def env(self, uow: Any) -> None:
        return None

    def reports(self, instance: str) -> list[IntervalClosedData]:
        """Every report of the instance, by interval start and revision (what views.intervals lists)."""
        return [self.report_rows[k][0] for k in sorted(k for k in self.report_rows if k[0] == instance)]
