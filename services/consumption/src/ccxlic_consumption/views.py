"""The consumption computer's read side: what its HTTP views answer, read from PostgreSQL (any worker answers for
every instance)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ccxlic_runtime.db import Database

from ccxlic_consumption.store import load_consumption


async def usage(db: Database, instance: str) -> dict[str, Any] | None:
    """Live counts, entitlement, mode, License Control, headroom, deficit and the signed-in agents; None when the
    instance is unknown."""
    async with db.pool.acquire() as conn:
        found = await load_consumption(conn, instance)
    if found is None:
        return None
    state = found[0].live
    used, room, short, breach = state.usage(), state.headroom(), state.deficit(), state.control_breach()
    ent = state.limits.effective
    return {
        "instance": state.instance,
        "as_of": state.watermark,
        "in_use": {
            "standard": used.standard,
            "premium": used.premium,
            "ivr_ports": state.ports.ivr,
            "outbound_ports": state.ports.outbound_ports,
            "outbound_seats": state.ports.outbound_seats,
        },
        "entitled": None
        if ent is None
        else {"standard": ent.standard, "premium": ent.premium, "ivr_ports": ent.ivr_ports},
        "mode": state.limits.mode,
        "license_control": state.limits.controlled,
        "hard_limit": state.limits.hard,
        "max_agents": state.limits.max_agents,
        "breach": None
        if breach is None
        else {"standard": breach.standard, "premium": breach.premium, "ivr_ports": breach.ivr_ports},
        "headroom": {"standard": room.standard, "premium": room.premium, "ivr_ports": room.ivr_ports},
        "deficit": {"standard": short.standard, "premium": short.premium, "ivr_ports": short.ivr_ports},
        "agents": [
            {"agent_id": agent_id, "license": a.license, "why": a.why, "since": a.last[0]}
            for agent_id, a in sorted(state.agents.items())
            if a.signed_in
        ],
    }


async def intervals(db: Database, instance: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Reports of intervals starting in [since, until), every revision, by start and revision."""
    rows = await db.fetch(
        "select interval_start, interval_end, revision, peak::text as peak, witness::text as witness, closed_at"
        " from reports where instance = $1 and interval_start >= $2 and interval_start < $3"
        " order by interval_start, revision",
        instance,
        since,
        until,
    )
    return [
        {
            "interval_start": r["interval_start"],
            "interval_end": r["interval_end"],
            "revision": r["revision"],
            "peak": json.loads(r["peak"]),
            "witness": json.loads(r["witness"]),
            "closed_at": r["closed_at"],
        }
        for r in rows
    ]
