"""Compliance's read side: what its HTTP views answer, read from PostgreSQL (any worker answers for every
instance)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ccxlic_contract.events import ComplianceChangedData
from ccxlic_rules.exits import exits
from ccxlic_runtime.db import Database

from ccxlic_compliance.machine import Rules, State
from ccxlic_compliance.store import load_compliance

DEADLINES = ("evaluation_ends_at", "ooc_at", "enforcement_at", "authorization_expires_at", "registration_expires_at")


def seconds_to(view: ComplianceChangedData, now: datetime | None) -> dict[str, float | None]:
    """Seconds from the instance's now (event time) to each pending deadline."""
    out: dict[str, float | None] = {}
    for name in DEADLINES:
        at: datetime | None = getattr(view.deadlines, name)
        out[name] = None if at is None or now is None else (at - now).total_seconds()
    return out


async def instances(db: Database) -> list[dict[str, Any]]:
    rows = await db.fetch("select instance, view::text as view from instances order by instance")
    out = []
    for r in rows:
        view = ComplianceChangedData.model_validate_json(r["view"])
        out.append(
            {
                "instance": r["instance"],
                "registration": view.registration,
                "authorization": view.authorization,
                "enforcement": view.enforcement.active,
            }
        )
    return out


async def compliance(db: Database, rules: Rules, instance: str) -> dict[str, Any] | None:
    async with db.pool.acquire() as conn:
        found = await load_compliance(conn, instance)
    if found is None:
        return None
    current = found[0]
    view = current.state.view(rules)
    return {
        "instance": instance,
        "as_of": current.state.now,
        "transitions": current.seq,
        **view.model_dump(mode="json"),
        "seconds_to": seconds_to(view, current.state.now),
    }


def provisioning(instance: str, view: ComplianceChangedData) -> dict[str, Any]:
    """Whether a platform may synchronise agent additions, changes and deletions (the vendor blocks
    synchronisation from Unified CM during enforcement), and why not."""
    e = view.enforcement
    allowed = not e.active
    leave = exits(view.model_dump(mode="json"))
    return {
        "instance": instance,
        "synchronisation_allowed": allowed,
        "reason": "not in enforcement"
        if allowed
        else f"enforcement since {e.since.isoformat() if e.since else '-'} ({', '.join(e.reasons)}): agent additions, "
        "changes and deletions are not synchronised",
        "to_leave_enforcement": [x["needed"] for x in leave],
        "exits": leave,
        "enforcement": e.model_dump(mode="json"),
    }


async def provisioning_of(db: Database, rules: Rules, instance: str) -> dict[str, Any] | None:
    async with db.pool.acquire() as conn:
        found = await load_compliance(conn, instance)
    return None if found is None else provisioning(instance, found[0].state.view(rules))


async def history(db: Database, instance: str, after: int, limit: int) -> list[dict[str, Any]] | None:
    """Up to `limit` transitions numbered after `after`, oldest first; None when the instance is unknown."""
    async with db.pool.acquire() as conn:
        if await conn.fetchval("select 1 from instances where instance = $1", instance) is None:
            return None
        rows = await conn.fetch(
            "select seq, at, cause_id, cause_type, evidence, view::text as view from transitions"
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


async def states(db: Database) -> list[State]:
    """Every instance's state (the gauges start from what is stored)."""
    return [State.model_validate_json(r["state"]) for r in await db.fetch("select state::text as state from instances")]
