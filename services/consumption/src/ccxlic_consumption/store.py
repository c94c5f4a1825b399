"""PostgreSQL adapter of the consumption computer: instance state, sessions, facts and reports."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ccxlic_rules import Entitlement
from ccxlic_runtime.db import ConcurrentUpdate

if TYPE_CHECKING:
    from ccxlic_runtime.db import Connection

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
from ccxlic_consumption.peaks import IntervalPeaks


@dataclass(frozen=True, slots=True)
class Book:
    """The shell's bookkeeping next to an instance's live state."""

    next_close: datetime | None = None
    change_seq: int = 0
    published: str | None = None  # JSON of the last published consumption data
    version: int = 0  # of the stored row this was read from (0: not stored yet); guards against other workers


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


class ConsumptionStore(Protocol):
    """Where the consumption computer keeps its state, on the transaction's connection. One suite of adapter tests
    runs against `PgConsumptionStore` and the in-memory fake, so the fake cannot drift from PostgreSQL."""

    async def instance_ids(self, conn: Connection) -> list[str]:
        """Every instance with saved state."""
        ...

    async def load(self, conn: Connection, instance: str) -> tuple[InstanceState, Book] | None:
        """The instance's live state and bookkeeping as last saved, or None."""
        ...

    async def save(self, conn: Connection, state: InstanceState, book: Book, changed_agents: Iterable[str]) -> int:
        """Save the instance row and the sessions of `changed_agents` (the others are as saved before); return the
        row's new version. Raise ConcurrentUpdate when the row is no longer at `book.version`."""
        ...

    async def add_facts(self, conn: Connection, instance: str, facts: Sequence[Fact]) -> None:
        """Record accepted facts; a fact already recorded (same time and event id) is left as it is."""
        ...

    async def facts(self, conn: Connection, instance: str, since: datetime, until: datetime) -> list[Fact]:
        """The facts with `since <= at < until`, in no particular order."""
        ...

    async def latest_report(self, conn: Connection, instance: str, start: datetime) -> tuple[int, str, str] | None:
        """(revision, peak JSON, witness JSON) of the interval's latest report, or None."""
        ...

    async def add_report(
        self,
        conn: Connection,
        instance: str,
        result: IntervalPeaks,
        revision: int,
        peak: str,
        witness: str,
        at: datetime,
    ) -> None:
        """Store a report; (instance, interval start, revision) is unique."""
        ...

    async def reports(self, conn: Connection, instance: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """Reports of intervals starting in [since, until), by start and revision, peak and witness as dicts."""
        ...


class PgConsumptionStore:
    """Reads and writes the consumption schema on the transaction's connection."""

    async def instance_ids(self, conn: Connection) -> list[str]:
        return [r["instance"] for r in await conn.fetch("select instance from instances")]

    async def load(self, conn: Connection, instance: str) -> tuple[InstanceState, Book] | None:
        row = await conn.fetchrow("select * from instances where instance = $1", instance)
        if row is None:
            return None
        agents = {
            r["agent_id"]: Agent(r["signed_in"], r["license"], r["why"], (r["last_at"], r["last_id"]), r["cause"])
            for r in await conn.fetch("select * from sessions where instance = $1", instance)
        }
        roster_last = (row["roster_at"], row["roster_id"]) if row["roster_at"] is not None else None
        state = InstanceState(
            instance=instance,
            watermark=row["watermark"],
            agents=agents,
            roster_last=roster_last,
            ports=_ports(row["ports"]),
            limits=_limits(row["limits"]),
        )
        book = Book(row["next_close"], row["change_seq"], row["published"], row["version"])
        return state, book

    async def save(self, conn: Connection, state: InstanceState, book: Book, changed_agents: Iterable[str]) -> int:
        values = (
            state.instance,
            state.watermark,
            state.roster_last[0] if state.roster_last else None,
            state.roster_last[1] if state.roster_last else None,
            _ports_json(state.ports),
            limits_json(state.limits),
            book.next_close,
            book.change_seq,
            book.published,
        )
        if book.version == 0:
            version = await conn.fetchval(
                """
                insert into instances (instance, watermark, roster_at, roster_id, ports, limits, next_close, change_seq,
                    published, version)
                values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1) on conflict (instance) do nothing returning version
                """,
                *values,
            )
        else:
            version = await conn.fetchval(
                """
                update instances set watermark = $2, roster_at = $3, roster_id = $4, ports = $5, limits = $6,
                    next_close = $7, change_seq = $8, published = $9, version = version + 1
                where instance = $1 and version = $10 returning version
                """,
                *values,
                book.version,
            )
        if version is None:
            raise ConcurrentUpdate("consumption.instances", state.instance)
        rows = []
        for agent_id in changed_agents:
            a = state.agents[agent_id]
            rows.append((state.instance, agent_id, a.signed_in, a.license, a.why, a.last[0], a.last[1], a.cause))
        if rows:
            await conn.executemany(
                """
                insert into sessions (instance, agent_id, signed_in, license, why, last_at, last_id, cause)
                values ($1, $2, $3, $4, $5, $6, $7, $8)
                on conflict (instance, agent_id) do update set signed_in = $3, license = $4, why = $5,
                    last_at = $6, last_id = $7, cause = $8
                """,
                rows,
            )
        return int(version)

    async def add_facts(self, conn: Connection, instance: str, facts: Sequence[Fact]) -> None:
        rows: list[tuple[Any, ...]] = []
        for f in facts:
            b = f.body
            if isinstance(b, SignInFact):
                rows.append((instance, f.at, f.event_id, "i", b.agent_id, b.license, b.why, None))
            elif isinstance(b, SignOutFact):
                rows.append((instance, f.at, f.event_id, "o", b.agent_id, None, None, None))
            elif isinstance(b, RosterFact):
                body = json.dumps([[a.agent_id, a.license, a.why] for a in b.agents])
                rows.append((instance, f.at, f.event_id, "r", None, None, None, body))
            else:
                body = json.dumps([b.ivr, b.outbound_ports, b.outbound_seats])
                rows.append((instance, f.at, f.event_id, "p", None, None, None, body))
        await conn.executemany(
            "insert into facts (instance, at, event_id, kind, agent_id, license, why, body)"
            " values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict do nothing",
            rows,
        )

    async def facts(self, conn: Connection, instance: str, since: datetime, until: datetime) -> list[Fact]:
        out: list[Fact] = []
        for r in await conn.fetch(
            "select at, event_id, kind, agent_id, license, why, body from facts"
            " where instance = $1 and at >= $2 and at < $3",
            instance,
            since,
            until,
        ):
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
            out.append(Fact(r["at"], r["event_id"], body))
        return out

    async def latest_report(self, conn: Connection, instance: str, start: datetime) -> tuple[int, str, str] | None:
        row = await conn.fetchrow(
            "select revision, peak::text as peak, witness::text as witness from reports"
            " where instance = $1 and interval_start = $2 order by revision desc limit 1",
            instance,
            start,
        )
        return None if row is None else (row["revision"], row["peak"], row["witness"])

    async def add_report(
        self,
        conn: Connection,
        instance: str,
        result: IntervalPeaks,
        revision: int,
        peak: str,
        witness: str,
        at: datetime,
    ) -> None:
        await conn.execute(
            "insert into reports (instance, interval_start, revision, interval_end, peak, witness, closed_at)"
            " values ($1, $2, $3, $4, $5, $6, $7)",
            instance,
            result.start,
            revision,
            result.end,
            peak,
            witness,
            at,
        )

    async def reports(self, conn: Connection, instance: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
        rows = await conn.fetch(
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
