"""An in-memory `ConsumptionStore`. tests/integration/test_consumption_store.py runs one suite against it and
against `PgConsumptionStore`, so what the handler tests learn from it holds for PostgreSQL too."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from ccxlic_consumption.machine import Agent, Fact, InstanceState
from ccxlic_consumption.peaks import IntervalPeaks
from ccxlic_consumption.store import Book
from ccxlic_runtime.db import ConcurrentUpdate
from ccxlic_testing.fakes import InMemoryStore


class FakeConsumptionStore(InMemoryStore):
    def __init__(self) -> None:
        # Like the tables: the instance row without its agents, the sessions, the facts and the reports.
        self.instances: dict[str, tuple[InstanceState, Book]] = {}
        self.sessions: dict[str, dict[str, Agent]] = {}
        self.fact_rows: dict[tuple[str, datetime, str], Fact] = {}
        self.report_rows: dict[tuple[str, datetime, int], dict[str, Any]] = {}

    async def instance_ids(self, conn: Any) -> list[str]:
        return list(self.instances)

    async def load(self, conn: Any, instance: str) -> tuple[InstanceState, Book] | None:
        found = self.instances.get(instance)
        if found is None:
            return None
        state, book = found
        return replace(state, agents=dict(self.sessions.get(instance, {})), expiry_floor=None), book  # not stored

    async def save(self, conn: Any, state: InstanceState, book: Book, changed_agents: Iterable[str]) -> int:
        stored = self.instances.get(state.instance)
        if (stored[1].version if stored else 0) != book.version:
            raise ConcurrentUpdate("consumption.instances", state.instance)
        version = book.version + 1
        self.instances[state.instance] = (replace(state, agents={}), replace(book, version=version))
        sessions = self.sessions.setdefault(state.instance, {})
        for agent_id in changed_agents:
            sessions[agent_id] = state.agents[agent_id]
        return version

    async def add_facts(self, conn: Any, instance: str, facts: Sequence[Fact]) -> None:
        for f in facts:
            self.fact_rows.setdefault((instance, f.at, f.event_id), f)

    async def facts(self, conn: Any, instance: str, since: datetime, until: datetime) -> list[Fact]:
        return [f for (i, at, _), f in self.fact_rows.items() if i == instance and since <= at < until]

    async def latest_report(self, conn: Any, instance: str, start: datetime) -> tuple[int, str, str] | None:
        revisions = [r for (i, s, r) in self.report_rows if i == instance and s == start]
        if not revisions:
            return None
        row = self.report_rows[(instance, start, max(revisions))]
        return row["revision"], json.dumps(row["peak"]), json.dumps(row["witness"])

    async def add_report(
        self, conn: Any, instance: str, result: IntervalPeaks, revision: int, peak: str, witness: str, at: datetime
    ) -> None:
        key = (instance, result.start, revision)
        if key in self.report_rows:
            raise KeyError(f"report {key} exists")  # the primary key in PostgreSQL
        self.report_rows[key] = {
            "interval_start": result.start,
            "interval_end": result.end,
            "revision": revision,
            "peak": json.loads(peak),
            "witness": json.loads(witness),
            "closed_at": at,
        }

    async def reports(self, conn: Any, instance: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
        keys = sorted(k for k in self.report_rows if k[0] == instance and since <= k[1] < until)
        return [dict(self.report_rows[k]) for k in keys]
