"""PostgreSQL adapter of alerting: rules state, alerts, history, silences and deliveries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ccxlic_runtime.db import ConcurrentUpdate

from ccxlic_alerting.machine import Active, Silence, State

if TYPE_CHECKING:
    from ccxlic_runtime.db import Connection


class AlertingStore(Protocol):
    """What the handler writes and reads, on the transaction's connection. One suite of adapter tests runs against
    `PgAlertingStore` and the in-memory fake."""

    async def load(self, conn: Connection, instance: str) -> tuple[State, int] | None:
        """The rules' state for the instance and the row's version, or None."""
        ...

    async def save(self, conn: Connection, state: State, version: int) -> int:
        """Write the state over the row's `version` (0: a new instance); return the new version. Raise
        ConcurrentUpdate when the row is no longer at `version`."""
        ...

    async def instance_ids(self, conn: Connection) -> list[str]:
        """Every instance with saved state, sorted."""
        ...

    async def silences(self, conn: Connection) -> list[Silence]:
        """The silences not deleted (whatever their times)."""
        ...

    async def raised(self, conn: Connection, instance: str, a: Active) -> None:
        """Record a raised alert; one already recorded is left as it is."""
        ...

    async def resolved(self, conn: Connection, a: Active, at: datetime, reason: str) -> None: ...

    async def notified(self, conn: Connection, a: Active) -> None:
        """Count a notification; summary and deadline as the notification gave them."""
        ...

    async def history(self, conn: Connection, alert_id: str, at: datetime, kind: str, text: str, cause: str) -> None:
        """Append to a recorded alert's history."""
        ...

    async def deliver(
        self, conn: Connection, alert_id: str, kind: str, notification: dict[str, Any], channels: Sequence[str]
    ) -> None:
        """Queue the notification for every channel (delivery.py sends it after commit)."""
        ...


class PgAlertingStore:
    async def load(self, conn: Connection, instance: str) -> tuple[State, int] | None:
        row = await conn.fetchrow("select state, version from instances where instance = $1", instance)
        return None if row is None else (State.model_validate_json(row["state"]), int(row["version"]))

    async def save(self, conn: Connection, state: State, version: int) -> int:
        if version == 0:
            new = await conn.fetchval(
                "insert into instances(instance, state, version) values ($1, $2, 1)"
                " on conflict (instance) do nothing returning version",
                state.instance,
                state.model_dump_json(),
            )
        else:
            new = await conn.fetchval(
                "update instances set state = $2, version = version + 1 where instance = $1 and version = $3"
                " returning version",
                state.instance,
                state.model_dump_json(),
                version,
            )
        if new is None:
            raise ConcurrentUpdate("alerting.instances", state.instance)
        return int(new)

    async def instance_ids(self, conn: Connection) -> list[str]:
        return [r["instance"] for r in await conn.fetch("select instance from instances order by instance")]

    async def silences(self, conn: Connection) -> list[Silence]:
        rows = await conn.fetch(
            "select id, instance, alert, starts_at, ends_at, author, comment from silences where deleted_at is null"
        )
        return [
            Silence(r["id"], r["instance"], r["alert"], r["starts_at"], r["ends_at"], r["author"], r["comment"])
            for r in rows
        ]

    async def raised(self, conn: Connection, instance: str, a: Active) -> None:
        await conn.execute(
            "insert into alerts(alert_id, instance, alert, severity, state, raised_at, summary, deadline, details)"
            " values ($1, $2, $3, $4, 'active', $5, $6, $7, $8) on conflict (alert_id) do nothing",
            a.alert_id,
            instance,
            a.alert,
            a.severity,
            a.raised_at,
            a.summary,
            a.deadline,
            json.dumps(a.details, default=str),
        )

    async def resolved(self, conn: Connection, a: Active, at: datetime, reason: str) -> None:
        await conn.execute(
            "update alerts set state = 'resolved', resolved_at = $2, resolve_reason = $3 where alert_id = $1",
            a.alert_id,
            at,
            reason,
        )

    async def notified(self, conn: Connection, a: Active) -> None:
        await conn.execute(
            "update alerts set notified_at = $2, notifications = notifications + 1, summary = $3, deadline = $4"
            " where alert_id = $1",
            a.alert_id,
            a.notified_at,
            a.summary,
            a.deadline,
        )

    async def history(self, conn: Connection, alert_id: str, at: datetime, kind: str, text: str, cause: str) -> None:
        await conn.execute(
            "insert into alert_history(alert_id, at, kind, text, cause_id) values ($1, $2, $3, $4, $5)",
            alert_id,
            at,
            kind,
            text,
            cause,
        )

    async def deliver(
        self, conn: Connection, alert_id: str, kind: str, notification: dict[str, Any], channels: Sequence[str]
    ) -> None:
        body = json.dumps(notification, default=str)
        await conn.executemany(
            "insert into deliveries(alert_id, channel, kind, notification) values ($1, $2, $3, $4)",
            [(alert_id, c, kind, body) for c in channels],
        )

    # ------------------------------------------------------------ queries for the API

    async def alerts(
        self, conn: Connection, state: str | None, instance: str | None, limit: int
    ) -> list[dict[str, Any]]:
        rows = await conn.fetch(
            "select * from alerts where ($1::text is null or state = $1) and ($2::text is null or instance = $2)"
            " order by raised_at desc, alert_id limit $3",
            state,
            instance,
            limit,
        )
        return [_alert(r) for r in rows]

    async def alert(self, conn: Connection, alert_id: str) -> dict[str, Any] | None:
        row = await conn.fetchrow("select * from alerts where alert_id = $1", alert_id)
        if row is None:
            return None
        body = _alert(row)
        body["history"] = [
            {"at": h["at"], "kind": h["kind"], "text": h["text"], "cause_id": h["cause_id"]}
            for h in await conn.fetch("select * from alert_history where alert_id = $1 order by seq", alert_id)
        ]
        body["deliveries"] = [
            {
                "channel": d["channel"],
                "kind": d["kind"],
                "status": d["status"],
                "attempts": d["attempts"],
                "last_error": d["last_error"],
                "created_at": d["created_at"],
                "finished_at": d["finished_at"],
            }
            for d in await conn.fetch("select * from deliveries where alert_id = $1 order by id", alert_id)
        ]
        return body

    async def add_silence(self, conn: Connection, s: Silence) -> None:
        await conn.execute(
            "insert into silences(id, instance, alert, starts_at, ends_at, author, comment)"
            " values ($1, $2, $3, $4, $5, $6, $7)",
            s.id,
            s.instance,
            s.alert,
            s.starts_at,
            s.ends_at,
            s.author,
            s.comment,
        )

    async def list_silences(self, conn: Connection) -> list[dict[str, Any]]:
        rows = await conn.fetch("select * from silences where deleted_at is null order by starts_at, id")
        return [_silence(r) for r in rows]

    async def delete_silence(self, conn: Connection, silence_id: str) -> bool:
        done = await conn.fetchval(
            "update silences set deleted_at = now() where id = $1 and deleted_at is null returning true", silence_id
        )
        return done is True


def _alert(r: Any) -> dict[str, Any]:
    return {
        "alert_id": r["alert_id"],
        "instance": r["instance"],
        "alert": r["alert"],
        "severity": r["severity"],
        "state": r["state"],
        "raised_at": r["raised_at"],
        "resolved_at": r["resolved_at"],
        "resolve_reason": r["resolve_reason"],
        "summary": r["summary"],
        "deadline": r["deadline"],
        "details": json.loads(r["details"]),
        "notified_at": r["notified_at"],
        "notifications": r["notifications"],
    }


def _silence(r: Any) -> dict[str, Any]:
    return {
        "id": r["id"],
        "instance": r["instance"],
        "alert": r["alert"],
        "starts_at": r["starts_at"],
        "ends_at": r["ends_at"],
        "author": r["author"],
        "comment": r["comment"],
        "created_at": r["created_at"],
    }
