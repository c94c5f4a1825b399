"""PostgreSQL adapter of the consumption computer: instance state, sessions, facts and reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ccxlic_contract.events import ConsumptionChangedData, Peak, Witness
from ccxlic_rules import Entitlement
from ccxlic_runtime.db import Rows, Transaction, Versioned

if TYPE_CHECKING:
    from ccxlic_runtime.db import Connection

from ccxlic_consumption.decider import Consumption, Output, Recorded, Reported, Stored, Window
from ccxlic_consumption.machine import (
    Agent,
    Fact,
    InstanceState,
    Limits,
    Order,
    Ports,
    PortsFact,
    RosterFact,
    SignInFact,
    SignOutFact,
)


def _order(value: Any) -> Order | None:
    return None if value is None else (datetime.fromisoformat(value[0]), value[1])


def _order_json(order: Order | None) -> list[str] | None:
    return None if order is None else [order[0].isoformat(), order[1]]


def _ent(value: Any) -> Entitlement | None:
    return None if value is None else Entitlement(value["standard"], value["premium"], value["ivr_ports"])


def _ent_json(ent: Entitlement | None) -> dict[str, int] | None:
    return None if ent is None else {"standard": ent.standard, "premium": ent.premium, "ivr_ports": ent.ivr_ports}


def limits_json(limits: Limits) -> str:
    return json.dumps(
        {
            "entitlement": _ent_json(limits.entitlement),
            "overage_allowed": limits.overage_allowed,
            "production": limits.production,
            "entitlement_last": _order_json(limits.entitlement_last),
            "reservation": _ent_json(limits.reservation),
            "reservation_last": _order_json(limits.reservation_last),
            "registered": limits.registered,
            "registered_last": _order_json(limits.registered_last),
            "max_agents": limits.max_agents,
            "configured_last": _order_json(limits.configured_last),
        }
    )


def _limits(raw: str) -> Limits:
    v = json.loads(raw)
    if not v:
        return Limits()
    return Limits(
        entitlement=_ent(v["entitlement"]),
        overage_allowed=v["overage_allowed"],
        production=v["production"],
        entitlement_last=_order(v["entitlement_last"]),
        reservation=_ent(v["reservation"]),
        reservation_last=_order(v["reservation_last"]),
        registered=v.get("registered", False),  # absent in rows written before registration was tracked
        registered_last=_order(v.get("registered_last")),
        max_agents=v.get("max_agents"),  # absent in rows written before the OVA limit was tracked
        configured_last=_order(v.get("configured_last")),
    )


def _ports_json(p: Ports) -> str:
    return json.dumps(
        {
            "ivr": p.ivr,
            "outbound_ports": p.outbound_ports,
            "outbound_seats": p.outbound_seats,
            "last": _order_json(p.last),
        }
    )


def _ports(raw: str) -> Ports:
    v = json.loads(raw)
    if not v:
        return Ports()
    return Ports(v["ivr"], v["outbound_ports"], v["outbound_seats"], _order(v["last"]))


INSTANCES = Versioned(
    "instances",
    "instance",
    (
        ("watermark", "timestamptz"),
        ("roster_at", "timestamptz"),
        ("roster_id", "text"),
        ("ports", "jsonb"),
        ("limits", "jsonb"),
        ("next_close", "timestamptz"),
        ("change_seq", "bigint"),
        ("published", "jsonb"),
        ("partition", "int"),
        ("last_fact_at", "timestamptz"),
    ),
)
SESSIONS = Rows(
    "sessions",
    (
        ("instance", "text"),
        ("agent_id", "text"),
        ("signed_in", "boolean"),
        ("license", "text"),
        ("why", "text"),
        ("last_at", "timestamptz"),
        ("last_id", "text"),
        ("cause", "text"),
    ),
    key=("instance", "agent_id"),
    update=True,
)
FACTS = Rows(
    "facts",
    (
        ("instance", "text"),
        ("at", "timestamptz"),
        ("event_id", "text"),
        ("kind", "text"),
        ("agent_id", "text"),
        ("license", "text"),
        ("why", "text"),
        ("body", "jsonb"),
    ),
    key=("instance", "at", "event_id"),
)
REPORTS = Rows(
    "reports",
    (
        ("instance", "text"),
        ("interval_start", "timestamptz"),
        ("revision", "int"),
        ("interval_end", "timestamptz"),
        ("peak", "jsonb"),
        ("witness", "jsonb"),
        ("closed_at", "timestamptz"),
    ),
)


class PgConsumptionStore:
    """The consumption computer's tables, through the unit of work (the runtime's `Store` port)."""

    # The instance rows, sessions, facts and reports are queued in the unit of work (one statement per table per
    # batch); a read in it flushes them first, so it sees what was written.

    async def load(self, uow: Transaction, instance: str) -> tuple[Consumption, int] | None:
        await uow.flush()
        return await load_consumption(uow.conn, instance)

    async def save(
        self,
        uow: Transaction,
        instance: str,
        partition: int,
        before: Consumption | None,
        after: Consumption,
        version: int,
    ) -> int:
        live = after.live
        values = (
            live.watermark,
            live.roster_last[0] if live.roster_last else None,
            live.roster_last[1] if live.roster_last else None,
            _ports_json(live.ports),
            limits_json(live.limits),
            after.next_close,
            after.change_seq,
            None if after.published is None else after.published.model_dump_json(),
            partition,
            after.last_fact_at,
        )
        new = uow.save(INSTANCES, instance, values, version)
        # the sessions that changed since the last save (all of them for an instance not saved before)
        changed = live.agents.keys() if before is None else after.unsaved
        rows = [
            (instance, agent_id, a.signed_in, a.license, a.why, a.last[0], a.last[1], a.cause)
            for agent_id in changed
            if (a := live.agents[agent_id])
        ]
        uow.queue(SESSIONS, rows)
        return new

    async def write(self, uow: Transaction, instance: str, outputs: Sequence[Output]) -> None:
        facts = [o.fact for o in outputs if isinstance(o, Recorded)]
        uow.queue(FACTS, [_fact_row(instance, f) for f in facts])
        reports = [o for o in outputs if isinstance(o, Reported)]
        if reports:
            uow.queue(
                REPORTS,
                [
                    (
                        instance,
                        r.data.interval_start,
                        r.data.revision,
                        r.data.interval_end,
                        r.data.peak.model_dump_json(),
                        r.data.witness.model_dump_json(),
                        r.at,
                    )
                    for r in reports
                ],
            )

    async def read(self, uow: Transaction, instance: str, need: object) -> Stored:
        assert isinstance(need, Window)
        await uow.flush()
        rows = await uow.conn.fetch(
            "select at, event_id, kind, agent_id, license, why, body from facts"
            " where instance = $1 and at >= $2 and at < $3",
            instance,
            need.since,
            need.until,
        )
        latest: dict[datetime, tuple[int, Peak, Witness]] = {}
        if need.revise:
            for r in await uow.conn.fetch(
                "select distinct on (interval_start) interval_start, revision, peak::text as peak,"
                " witness::text as witness from reports where instance = $1 and interval_start = any($2::timestamptz[])"
                " order by interval_start, revision desc",
                instance,
                list(need.revise),
            ):
                latest[r["interval_start"]] = (
                    r["revision"],
                    Peak.model_validate_json(r["peak"]),
                    Witness.model_validate_json(r["witness"]),
                )
        return Stored(need, tuple(_fact(r) for r in rows), latest)

    async def instances(self, uow: Transaction, partition: int) -> list[str]:
        await uow.flush()
        return [
            r["instance"]
            for r in await uow.conn.fetch("select instance from instances where partition = $1", partition)
        ]

    async def env(self, uow: Transaction) -> None:
        return None


async def load_consumption(conn: Connection, instance: str) -> tuple[Consumption, int] | None:
    """An instance's state as saved, and its row's version (the store's load; the HTTP views read it too)."""
    row = await conn.fetchrow("select * from instances where instance = $1", instance)
    if row is None:
        return None
    agents = {
        r["agent_id"]: Agent(r["signed_in"], r["license"], r["why"], (r["last_at"], r["last_id"]), r["cause"])
        for r in await conn.fetch("select * from sessions where instance = $1", instance)
    }
    roster_last = (row["roster_at"], row["roster_id"]) if row["roster_at"] is not None else None
    live = InstanceState(
        instance=instance,
        watermark=row["watermark"],
        agents=agents,
        roster_last=roster_last,
        ports=_ports(row["ports"]),
        limits=_limits(row["limits"]),
    )
    published = None if row["published"] is None else ConsumptionChangedData.model_validate_json(row["published"])
    state = Consumption(live, row["next_close"], row["last_fact_at"], row["change_seq"], published)
    return state, int(row["version"])


def _fact_row(instance: str, f: Fact) -> tuple[Any, ...]:
    b = f.body
    if isinstance(b, SignInFact):
        return (instance, f.at, f.event_id, "i", b.agent_id, b.license, b.why, None)
    if isinstance(b, SignOutFact):
        return (instance, f.at, f.event_id, "o", b.agent_id, None, None, None)
    if isinstance(b, RosterFact):
        return (
            instance,
            f.at,
            f.event_id,
            "r",
            None,
            None,
            None,
            json.dumps([[a.agent_id, a.license, a.why] for a in b.agents]),
        )
    return (instance, f.at, f.event_id, "p", None, None, None, json.dumps([b.ivr, b.outbound_ports, b.outbound_seats]))


def _fact(r: Any) -> Fact:
    kind = r["kind"]
    body: SignInFact | SignOutFact | RosterFact | PortsFact
    if kind == "i":
        body = SignInFact(r["agent_id"], r["license"], r["why"])
    elif kind == "o":
        body = SignOutFact(r["agent_id"])
    elif kind == "r":
        body = RosterFact(tuple(SignInFact(a, lic, why) for a, lic, why in json.loads(r["body"])))
    else:
        ivr, op, os_ = json.loads(r["body"])
        body = PortsFact(ivr, op, os_)
    return Fact(r["at"], r["event_id"], body)
