"""The purchase-or-move plan of a virtual account: the cheapest way for its instances to stay within its licenses at
what they need (their peaks, their forecast and a headroom), first by moving what other virtual accounts of the same
smart account hold beyond their own needs (free), then by buying (at the prices given). Pure.

Needs and holdings follow the Flex pool rule (`pool.py`): an idle Premium license covers Standard demand, so a
Standard shortfall can also be met by moving or buying Premium, and a sibling's Premium that covers its own Standard
demand is not free to move.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from ccxlic_rules.forecast import WEEK, forecast, interval_history
from ccxlic_rules.pool import Entitlement, Usage, deficit, headroom

LICENSES: tuple[str, ...] = ("standard", "premium", "ivr_ports")
NAMES = {"standard": "Flex Standard", "premium": "Flex Premium", "ivr_ports": "IVR ports"}


@dataclass(frozen=True, slots=True)
class Source:
    """Where an instance's need of one license comes from: an interval's peak (with its witness, the agents signed
    in then as that license), the forecast of a coming interval (an estimate), or the peak it last reported to the
    authority (when its history is not at hand)."""

    kind: Literal["peak", "forecast", "reported"]
    value: int
    interval_start: datetime | None = None
    agents: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Need:
    instance: str
    counts: Mapping[str, int]  # per license, headroom included
    sources: Mapping[str, Source]  # per license, what the count rests on (before the headroom)


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    holds: Mapping[str, int]  # the licenses its instances may use (purchased, less what reservations hold)
    needs: tuple[Need, ...] = ()

    def need(self) -> dict[str, int]:
        return {lic: sum(n.counts.get(lic, 0) for n in self.needs) for lic in LICENSES}


@dataclass(frozen=True, slots=True)
class Line:
    action: Literal["move", "buy"]
    license: str
    quantity: int
    covers: str  # the license whose shortfall it meets (a Premium bought or moved may cover Standard)
    source: str | None = None  # the virtual account it moves from
    cost: float | None = None
    because: tuple[tuple[str, Source], ...] = ()  # the instances whose needs make it necessary, biggest first


@dataclass(frozen=True, slots=True)
class Plan:
    account: str
    need: dict[str, int]
    holds: dict[str, int]
    short: dict[str, int]
    lines: tuple[Line, ...] = ()
    cost: float | None = None
    free: dict[str, dict[str, int]] = field(default_factory=dict)  # what each sibling could give, before the plan


def with_headroom(value: int, percent: float) -> int:
    """A need with `percent` more, rounded up to a whole license."""
    return math.ceil(value * (1 + percent / 100) - 1e-9) if value else 0


def movable(account: Account) -> dict[str, int]:
    """What a virtual account can give away and still cover its own needs (the Flex pool rule)."""
    need = account.need()
    used = Usage(need["standard"], need["premium"], need["ivr_ports"])
    holds = Entitlement(
        account.holds.get("standard", 0), account.holds.get("premium", 0), account.holds.get("ivr_ports", 0)
    )
    room = headroom(used, holds)
    return {
        "standard": max(0, holds.standard - used.standard),
        "premium": room.premium or 0,
        "ivr_ports": max(0, holds.ivr_ports - used.ivr_ports),
    }


def plan(target: Account, siblings: Sequence[Account], prices: Mapping[str, float] | None = None) -> Plan:
    """What `target` must move in from `siblings` and buy so that what it holds covers what its instances need."""
    need = target.need()
    holds = {lic: target.holds.get(lic, 0) for lic in LICENSES}
    d = deficit(
        Usage(need["standard"], need["premium"], need["ivr_ports"]), Entitlement(*(holds[lic] for lic in LICENSES))
    )
    short = {"standard": d.standard, "premium": d.premium, "ivr_ports": d.ivr_ports}
    free = {s.name: movable(s) for s in sorted(siblings, key=lambda s: s.name)}
    left = {name: dict(f) for name, f in free.items()}
    lines: list[Line] = []

    def because(lic: str) -> tuple[tuple[str, Source], ...]:
        mine = [(n.instance, n.sources[lic]) for n in target.needs if n.counts.get(lic, 0) and lic in n.sources]
        return tuple(sorted(mine, key=lambda x: (-x[1].value, x[0])))

    def move(lic: str, covers: str, wanted: int) -> int:
        """Move up to `wanted` of `lic` in, the siblings with most to give first; what is still wanted."""
        for name in sorted(left, key=lambda n: (-left[n][lic], n)):
            if wanted == 0:
                break
            n = min(wanted, left[name][lic])
            if n:
                left[name][lic] -= n
                wanted -= n
                lines.append(Line("move", lic, n, covers, source=name, because=because(covers)))
        return wanted

    def buy(lic: str, covers: str, n: int) -> None:
        if n:
            cost = None if prices is None else prices.get(lic, 0.0) * n
            lines.append(Line("buy", lic, n, covers, cost=cost, because=because(covers)))

    buy("premium", "premium", move("premium", "premium", short["premium"]))
    still = move("standard", "standard", short["standard"])
    still = move("premium", "standard", still)  # an idle Premium covers Standard demand
    cheaper = (
        "premium"
        if prices is not None and prices.get("premium", math.inf) < prices.get("standard", math.inf)
        else "standard"
    )
    buy(cheaper, "standard", still)
    buy("ivr_ports", "ivr_ports", move("ivr_ports", "ivr_ports", short["ivr_ports"]))
    total = None if prices is None else sum(line.cost or 0.0 for line in lines)
    return Plan(target.name, need, holds, short, tuple(lines), total, free)


def need_of(
    instance: str,
    reports: Sequence[Mapping[str, Any]],
    weeks: int = 4,
    percent: float = 0.0,
    interval: timedelta = timedelta(hours=8),
) -> Need | None:
    """An instance's need per license from its interval reports (as the consumption computer serves them): the
    highest of its peaks over its last `weeks` weeks (to the end of its latest interval: its own time) and of the p90
    forecast of its coming week, with `percent` more. None without a report."""
    latest: dict[datetime, Mapping[str, Any]] = {}
    for r in reports:
        start = _time(r["interval_start"])
        if start not in latest or int(r.get("revision", 1)) > int(latest[start].get("revision", 1)):
            latest[start] = r
    if not latest:
        return None
    until = max(latest) + interval
    since = until - weeks * WEEK
    best: dict[str, Source] = {lic: Source("peak", 0) for lic in LICENSES}
    for start in sorted(latest):
        if start < since:
            continue
        r = latest[start]
        for lic in LICENSES:
            value = int(r["peak"][lic])
            if value > best[lic].value:
                best[lic] = Source("peak", value, start, _witness(r.get("witness"), lic))
    ahead = forecast(interval_history(reports, until, interval), until, step=interval)
    for start, _p50, p90 in ahead.intervals(interval):
        for lic in LICENSES:
            if p90[lic] > best[lic].value:
                best[lic] = Source("forecast", p90[lic], start)
    return Need(instance, {lic: with_headroom(best[lic].value, percent) for lic in LICENSES}, best)


def reported_need(instance: str, usage: Mapping[str, int], percent: float = 0.0) -> Need:
    """An instance whose history is not at hand: the peaks it last reported to the authority."""
    sources = {lic: Source("reported", int(usage.get(lic, 0))) for lic in LICENSES}
    return Need(instance, {lic: with_headroom(s.value, percent) for lic, s in sources.items()}, sources)


def _witness(witness: Any, lic: str) -> tuple[str, ...]:
    """The agents signed in as `lic` at the instant of that license's peak (the witness of a report)."""
    if not isinstance(witness, Mapping) or lic not in ("standard", "premium"):
        return ()
    agents = (witness.get(lic) or {}).get("agents") or ()
    return tuple(sorted(str(a["agent_id"]) for a in agents if a.get("license") == lic))


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def as_json(p: Plan) -> dict[str, Any]:
    """A plan as the CLI's `--format json` and the console show it."""

    def source(instance: str, s: Source) -> dict[str, Any]:
        return {
            "instance": instance,
            "kind": s.kind,
            "value": s.value,
            "interval_start": None if s.interval_start is None else s.interval_start.isoformat(),
            "agents": list(s.agents),
            "estimate": s.kind == "forecast",
        }

    return {
        "virtual_account": p.account,
        "need": p.need,
        "holds": p.holds,
        "short": p.short,
        "lines": [
            {
                "action": line.action,
                "license": line.license,
                "name": NAMES[line.license],
                "quantity": line.quantity,
                "covers": line.covers,
                "from": line.source,
                "cost": line.cost,
                "because": [source(i, s) for i, s in line.because],
            }
            for line in p.lines
        ],
        "cost": p.cost,
        "free_in_siblings": p.free,
    }
