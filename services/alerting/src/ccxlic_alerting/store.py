"""PostgreSQL adapter of alerting: the rules' state, alerts, their history, silences and deliveries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ccxlic_runtime.db import ConcurrentUpdate, Transaction

from ccxlic_alerting.decider import Output
from ccxlic_alerting.handler import notification
from ccxlic_alerting.machine import Held, Notice, Raised, Resolved, Silence, State

if TYPE_CHECKING:
    from ccxlic_runtime.db import Connection


class PgAlertingStore:
    """Alerting's tables, through the unit of work (the runtime's `Store` port). Every notice becomes one delivery
    per channel, in the same transaction as the alert (delivery.py sends them after commit)."""

    def __init__(self, channels: Sequence[str]) -> None:
        self.channels = list(channels)

    async def load(self, uow: Transaction, instance: str) -> tuple[State, int] | None:
        row = await uow.conn.fetchrow("select state, version from instances where instance = $1", instance)
        return None if row is None else (State.model_validate_json(row["state"]), int(row["version"]))

    async def save(
        self, uow: Transaction, instance: str, partition: int, before: State | None, after: State, version: int
    ) -> int:
        if version == 0:
            new = await uow.conn.fetchval(
                "insert into instances(instance, state, version) values ($1, $2, 1)"
                " on conflict (instance) do nothing returning version",
                instance,
                after.model_dump_json(),
            )
        else:
            new = await uow.conn.fetchval(
                "update instances set state = $2, version = version + 1 where instance = $1 and version = $3"
                " returning version",
                instance,
                after.model_dump_json(),
                version,
            )
        if new is None:
            raise ConcurrentUpdate("alerting.instances", instance)
        return int(new)

    async def write(self, uow: Transaction, instance: str, outputs: Sequence[Output]) -> None:
        conn = uow.conn
        reasons = {o.action.alert.alert_id: o.action.reason for o in outputs if isinstance(o.action, Resolved)}
        history: list[tuple[str, Any, str, str, str]] = []
        deliveries: list[tuple[str, str, str, str]] = []
        for o in outputs:
            action, cause = o.action, o.cause_id
            if isinstance(action, Raised):
                a = action.alert
                await conn.execute(
                    "insert into alerts(alert_id, instance, alert, severity, state, raised_at, summary, deadline,"
                    " details) values ($1, $2, $3, $4, 'active', $5, $6, $7, $8) on conflict (alert_id) do nothing",
                    a.alert_id,
                    instance,
                    a.alert,
                    a.severity,
                    a.raised_at,
                    a.summary,
                    a.deadline,
                    json.dumps(a.details, default=str),
                )
                history.append((a.alert_id, a.raised_at, "raised", a.summary, cause))
            elif isinstance(action, Resolved):
                a = action.alert
                await conn.execute(
                    "update alerts set state = 'resolved', resolved_at = $2, resolve_reason = $3 where alert_id = $1",
                    a.alert_id,
                    action.at,
                    action.reason,
                )
                history.append((a.alert_id, action.at, "resolved", action.reason, cause))
            elif isinstance(action, Notice):
                a = action.alert
                if action.kind != "resolved":
                    await conn.execute(
                        "update alerts set notified_at = $2, notifications = notifications + 1, summary = $3,"
                        " deadline = $4 where alert_id = $1",
                        a.alert_id,
                        a.notified_at,
                        a.summary,
                        a.deadline,
                    )
                history.append((a.alert_id, action.at, f"notified:{action.kind}", action.text, cause))
                body = json.dumps(notification(instance, action, reasons.get(a.alert_id)), default=str)
                deliveries += [(a.alert_id, channel, action.kind, body) for channel in self.channels]
            elif isinstance(action, Held):
                history.append((action.alert.alert_id, action.at, "held", action.why, cause))
        if history:
            await conn.executemany(
                "insert into alert_history(alert_id, at, kind, text, cause_id) values ($1, $2, $3, $4, $5)", history
            )
        if deliveries:
            await conn.executemany(
                "insert into deliveries(alert_id, channel, kind, notification) values ($1, $2, $3, $4)", deliveries
            )

    async def read(self, uow: Transaction, instance: str, need: object) -> object:
        raise NotImplementedError("alerting never asks to read")

    async def instances(self, uow: Transaction, partition: int) -> list[str]:
        return []  # `*` ticks never reach alerting: it reads compliance's stream, one tick per instance

    async def env(self, uow: Transaction) -> list[Silence]:
        return await silences(uow.conn)


async def silences(conn: Connection) -> list[Silence]:
    """The silences not deleted (whatever their times)."""
    rows = await conn.fetch(
        "select id, instance, alert, starts_at, ends_at, author, comment from silences where deleted_at is null"
    )
    return [
        Silence(r["id"], r["instance"], r["alert"], r["starts_at"], r["ends_at"], r["author"], r["comment"])
        for r in rows
    ]
