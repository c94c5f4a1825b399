"""Alerting's read and admin side: alerts and silences for the HTTP API, read from PostgreSQL (any worker answers
for every instance)."""

from __future__ import annotations

import json
from typing import Any

from ccxlic_runtime.db import Database

from ccxlic_alerting.machine import Silence, State


async def alerts(db: Database, state: str | None, instance: str | None, limit: int) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "select * from alerts where ($1::text is null or state = $1) and ($2::text is null or instance = $2)"
        " order by raised_at desc, alert_id limit $3",
        state,
        instance,
        limit,
    )
    return [_alert(r) for r in rows]


async def alert(db: Database, alert_id: str) -> dict[str, Any] | None:
    async with db.pool.acquire() as conn:
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


async def add_silence(db: Database, s: Silence) -> bool:
    """Store a silence; False when its id is taken."""
    done = await db.pool.fetchval(
        "insert into silences(id, instance, alert, starts_at, ends_at, author, comment)"
        " values ($1, $2, $3, $4, $5, $6, $7) on conflict (id) do nothing returning true",
        s.id,
        s.instance,
        s.alert,
        s.starts_at,
        s.ends_at,
        s.author,
        s.comment,
    )
    return done is True


async def list_silences(db: Database) -> list[dict[str, Any]]:
    rows = await db.fetch("select * from silences where deleted_at is null order by starts_at, id")
    return [
        {
            "id": r["id"],
            "instance": r["instance"],
            "alert": r["alert"],
            "starts_at": r["starts_at"],
            "ends_at": r["ends_at"],
            "author": r["author"],
            "comment": r["comment"],
            "created_at": r["created_at"],
        }
        for r in rows
    ]


async def delete_silence(db: Database, silence_id: str) -> bool:
    done = await db.pool.fetchval(
        "update silences set deleted_at = now() where id = $1 and deleted_at is null returning true", silence_id
    )
    return done is True


async def states(db: Database) -> list[State]:
    """Every instance's rules state (the gauges start from what is stored)."""
    return [State.model_validate_json(r["state"]) for r in await db.fetch("select state::text as state from instances")]


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
