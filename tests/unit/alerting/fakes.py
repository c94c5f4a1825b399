"""An in-memory alerting store (the runtime's `Store` port). tests/integration/test_alerting_store.py runs one suite
against it and against `PgAlertingStore`, so what the handler tests learn from it holds for PostgreSQL too."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ccxlic_alerting.decider import Output
from ccxlic_alerting.handler import notification
from ccxlic_alerting.machine import Held, Notice, Raised, Resolved, Silence, State
from ccxlic_runtime.db import ConcurrentUpdate
from ccxlic_testing.fakes import InMemoryStore


class FakeAlertingStore(InMemoryStore):
    def __init__(self, channels: Sequence[str]) -> None:
        # Like the tables (JSON columns hold JSON, so what does not survive JSON does not survive here either).
        self.channels = list(channels)
        self.rows: dict[str, tuple[str, int]] = {}
        self.alerts: dict[str, dict[str, Any]] = {}
        self.history_rows: list[dict[str, Any]] = []
        self.silence_rows: dict[str, Silence] = {}
        self.deliveries: list[dict[str, Any]] = []

    def _recorded(self, alert_id: str) -> None:
        if alert_id not in self.alerts:
            raise KeyError(f"alert {alert_id} is not recorded")  # the foreign key in PostgreSQL

    async def load(self, uow: Any, instance: str) -> tuple[State, int] | None:
        row = self.rows.get(instance)
        return None if row is None else (State.model_validate_json(row[0]), row[1])

    async def save(
        self, uow: Any, instance: str, partition: int, before: State | None, after: State, version: int
    ) -> int:
        if (self.rows[instance][1] if instance in self.rows else 0) != version:
            raise ConcurrentUpdate("alerting.instances", instance)
        self.rows[instance] = (after.model_dump_json(), version + 1)
        return version + 1

    async def write(self, uow: Any, instance: str, outputs: Sequence[Output]) -> None:
        reasons = {o.action.alert.alert_id: o.action.reason for o in outputs if isinstance(o.action, Resolved)}
        for o in outputs:
            action, cause = o.action, o.cause_id
            a = action.alert
            if isinstance(action, Raised):
                self.alerts.setdefault(
                    a.alert_id,
                    {
                        "alert_id": a.alert_id,
                        "instance": instance,
                        "alert": a.alert,
                        "severity": a.severity,
                        "state": "active",
                        "raised_at": a.raised_at,
                        "resolved_at": None,
                        "resolve_reason": None,
                        "summary": a.summary,
                        "deadline": a.deadline,
                        "details": json.loads(json.dumps(a.details, default=str)),
                        "notified_at": None,
                        "notifications": 0,
                    },
                )
                self._history(a.alert_id, a.raised_at, "raised", a.summary, cause)
            elif isinstance(action, Resolved):
                if a.alert_id in self.alerts:
                    self.alerts[a.alert_id].update(
                        state="resolved", resolved_at=action.at, resolve_reason=action.reason
                    )
                self._history(a.alert_id, action.at, "resolved", action.reason, cause)
            elif isinstance(action, Notice):
                row = self.alerts.get(a.alert_id)
                if action.kind != "resolved" and row is not None:
                    row.update(
                        notified_at=a.notified_at,
                        notifications=row["notifications"] + 1,
                        summary=a.summary,
                        deadline=a.deadline,
                    )
                self._history(a.alert_id, action.at, f"notified:{action.kind}", action.text, cause)
                body = json.loads(json.dumps(notification(instance, action, reasons.get(a.alert_id)), default=str))
                for channel in self.channels:
                    self.deliveries.append(
                        {"alert_id": a.alert_id, "channel": channel, "kind": action.kind, "notification": body}
                    )
            elif isinstance(action, Held):
                self._history(a.alert_id, action.at, "held", action.why, cause)

    def _history(self, alert_id: str, at: Any, kind: str, text: str, cause: str) -> None:
        self._recorded(alert_id)
        self.history_rows.append({"alert_id": alert_id, "at": at, "kind": kind, "text": text, "cause_id": cause})

    async def read(self, uow: Any, instance: str, need: object) -> object:
        raise NotImplementedError

    async def instances(self, uow: Any, partition: int) -> list[str]:
        return []

    async def env(self, uow: Any) -> list[Silence]:
        return list(self.silence_rows.values())

    def history(self, alert_id: str) -> list[str]:
        return [h["kind"] for h in self.history_rows if h["alert_id"] == alert_id]
