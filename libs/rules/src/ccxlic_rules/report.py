"""The License Consumption report: the peaks per reporting interval with their witness, the deficit per license
against the entitlements, and what to buy to stay compliant at those peaks. Pure: the CLI fetches, this computes.

Outbound ports and seats are in it as the vendor's "Data Stored" (the product keeps them; they are not reported to
SSM, and no license is judged on them)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ccxlic_rules.pool import Entitlement, Usage, deficit


@dataclass(frozen=True, slots=True)
class Row:
    interval_start: str
    interval_end: str
    revision: int
    standard: int
    premium: int
    agents: int
    ivr_ports: int
    outbound_ports: int
    outbound_seats: int
    deficit_standard: int
    deficit_premium: int
    deficit_ivr_ports: int
    premium_at: str
    premium_agents: str


def latest_revisions(reports: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The latest revision of each interval, in interval order."""
    latest: dict[str, Mapping[str, Any]] = {}
    for r in reports:
        key = str(r["interval_start"])
        if key not in latest or int(r["revision"]) > int(latest[key]["revision"]):
            latest[key] = r
    return [latest[k] for k in sorted(latest)]


NOTHING = Entitlement(0, 0, 0)


def rows(reports: Sequence[Mapping[str, Any]], entitled: Entitlement | None) -> list[Row]:
    """One row per interval (its latest revision). Nothing purchased yet (`entitled` None, evaluation): the whole
    peak is the deficit, since that is what a purchase must cover."""
    entitled = NOTHING if entitled is None else entitled
    out = []
    for r in latest_revisions(reports):
        p = r["peak"]
        d = deficit(Usage(p["standard"], p["premium"], p["ivr_ports"]), entitled)
        w = r.get("witness", {}).get("premium", {})
        out.append(
            Row(
                interval_start=str(r["interval_start"]),
                interval_end=str(r["interval_end"]),
                revision=int(r["revision"]),
                standard=p["standard"],
                premium=p["premium"],
                agents=p["agents"],
                ivr_ports=p["ivr_ports"],
                outbound_ports=p.get("outbound_ports", 0),
                outbound_seats=p.get("outbound_seats", 0),
                deficit_standard=d.standard,
                deficit_premium=d.premium,
                deficit_ivr_ports=d.ivr_ports,
                premium_at=str(w.get("at") or ""),
                premium_agents=" ".join(a["agent_id"] for a in w.get("agents", ())),
            )
        )
    return out


def to_buy(table: Sequence[Row], entitled: Entitlement | None) -> dict[str, int]:
    """The fewest extra seats and ports that cover every interval's peaks: Premium first (it covers Standard
    too), then Standard with the spare Premium counted. Nothing purchased yet (evaluation): all of it."""
    entitled = NOTHING if entitled is None else entitled
    premium = max((max(0, r.premium - entitled.premium) for r in table), default=0)
    more = Entitlement(entitled.standard, entitled.premium + premium, entitled.ivr_ports)
    standard = max((deficit(Usage(r.standard, r.premium, r.ivr_ports), more).standard for r in table), default=0)
    ivr = max((max(0, r.ivr_ports - entitled.ivr_ports) for r in table), default=0)
    return {"standard": standard, "premium": premium, "ivr_ports": ivr}


def as_json(instance: str, table: Sequence[Row], entitled: Entitlement | None) -> dict[str, Any]:
    return {
        "instance": instance,
        "entitled": None
        if entitled is None
        else {"standard": entitled.standard, "premium": entitled.premium, "ivr_ports": entitled.ivr_ports},
        "intervals": [_row_dict(r) for r in table],
        "to_buy": to_buy(table, entitled),
    }


def _row_dict(r: Row) -> dict[str, Any]:
    return {f: getattr(r, f) for f in Row.__slots__}


def as_csv(table: Sequence[Row]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(Row.__slots__)
    for r in table:
        writer.writerow([getattr(r, f) for f in Row.__slots__])
    return buf.getvalue()
