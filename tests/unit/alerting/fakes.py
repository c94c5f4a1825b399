"""An in-memory alerting store. tests/integration/test_alerting_store.py runs one suite against it and against
`PgAlertingStore`, so what the handler tests learn from it holds for PostgreSQL too."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ccxlic_alerting.machine import Active, Silence, State
from ccxlic_runtime.db import ConcurrentUpdate
from ccxlic_testing.fakes import InMemoryStore


class FakeAlertingStore(InMemoryStore):
    def __init__(self) -> None:
        # Like the tables (JSON columns hold JSON, so what does not survive JSON does not survive here either).
        self.instances: dict[str, tuple[str, int]] = {}
        self.alerts: dict[str, dict[str, Any]] = {}
        self.history_rows: list[dict[str, Any]] = []
        self.silence_rows: dict[str, Silence] = {}
        self.deliveries: list[dict[str, Any]] = []

    def _recorded(self, alert_id: str) -> None:
        if alert_id not in self.alerts:
            raise KeyError(f"alert {alert_id} is not recorded")  # the foreign key in PostgreSQL

    async def load(self, conn: Any, instance: str) -> tuple[State, int] | None:
        row = self.instances.get(instance)
        return None if row is None else (State.model_validate_json(row[0]), row[1])

    async def save(self, conn: Any, state: State, version: int) -> int:
        if self.instances.get(state.instance, ("", 0))[1] != version:
            raise ConcurrentUpdate("alerting.instances", state.instance)
        self.instances[state.instance] = (state.model_dump_json(), version + 1)
        return version + 1

    async def instance_ids(self, conn: Any) -> list[str]:
        return sorted(self.instances)

    async def silences(self, conn: Any) -> list[Silence]:
        return list(self.silence_rows.values())

    async def add_silence(self, conn: Any, s: Silence) -> None:
        self.silence_rows[s.id] = s

    async def delete_silence(self, conn: Any, silence_id: str) -> bool:
        return self.silence_rows.pop(silence_id, None) is not None

    async def raised(self, conn: Any, instance: str, a: Active) -> None:
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

    async def resolved(self, conn: Any, a: Active, at: datetime, reason: str) -> None:
        if a.alert_id in self.alerts:
            self.alerts[a.alert_id].update(state="resolved", resolved_at=at, resolve_reason=reason)

    async def notified(self, conn: Any, a: Active) -> None:
        row = self.alerts.get(a.alert_id)
        if row is not None:
            row.update(
                notified_at=a.notified_at,
                notifications=row["notifications"] + 1,
                summary=a.summary,
                deadline=a.deadline,
            )

    async def history(self, conn: Any, alert_id: str, at: datetime, kind: str, text: str, cause: str) -> None:
        self._recorded(alert_id)
        self.history_rows.append({"alert_id": alert_id, "at": at, "kind": kind, "text": text, "cause_id": cause})

    async def deliver(
        self, conn: Any, alert_id: str, kind: str, notification: dict[str, Any], channels: Sequence[str]
    ) -> None:
        self._recorded(alert_id)
        body = json.loads(json.dumps(notification, default=str))
        for channel in channels:
            self.deliveries.append(
                {"alert_id": alert_id, "channel": channel, "kind": kind, "notification": body, "status": "pending"}
            )

    async def alert(self, conn: Any, alert_id: str) -> dict[str, Any] | None:
        """As the API shows it (without the wall-clock times PostgreSQL adds)."""
        row = self.alerts.get(alert_id)
        if row is None:
            return None
        body = copy.deepcopy(row)
        body["history"] = [
            {k: h[k] for k in ("at", "kind", "text", "cause_id")}
            for h in self.history_rows
            if h["alert_id"] == alert_id
        ]
        body["deliveries"] = [
            {"channel": d["channel"], "kind": d["kind"], "status": d["status"], "attempts": 0, "last_error": None}
            for d in self.deliveries
            if d["alert_id"] == alert_id
        ]
        return body
