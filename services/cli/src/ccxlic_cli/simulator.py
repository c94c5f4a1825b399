"""A contact center, simulated: a pure, seeded generator of contract events in time order.

Per instance: agents (voice = Standard; chat/email/outbound and supervisors = Premium) sign in over a login spread
at the start of each daily shift, take a break mid-shift (sign out, sign in again), sometimes crash and sign in
again without signing out, and sign out at the shift's end. IVR port load follows a daily curve (peak at noon).
A roster snapshot lists who is signed in every `roster_every_minutes`. Under License Control (a registered production
instance with overage not allowed) the platform refuses a sign-in that would go over the entitlements: the sign-in
is still published (the consumption computer refuses it too), but that session does not happen, so the agent is not
in later rosters. Lifecycle events from the scenario are
injected at their offsets, and `licensing.clock.tick` (subject `*`) comes every `tick_every`.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    AgentCommand,
    AgentCommandData,
    AgentRoster,
    AgentRosterData,
    AgentSignedIn,
    AgentSignedInData,
    AgentSignedOut,
    AgentSignedOutData,
    Capability,
    ClockTicked,
    EntitlementsSet,
    EntitlementsSetData,
    InstanceConfigured,
    InstanceConfiguredData,
    InstanceRegistered,
    InstanceRegisteredData,
    PortsSampled,
    PortsSampledData,
    RosterAgent,
)
from ccxlic_rules import Entitlement, Usage, classify, deficit

from ccxlic_cli.lifecycle import lifecycle_event
from ccxlic_cli.scenario import Instance, Scenario

SOURCE = "urn:ccxlic:simulator"
PORT_SAMPLE_EVERY = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class SimAgent:
    agent_id: str
    capabilities: tuple[Capability, ...]
    supervisor: bool = False


def agents_of(instance: Instance) -> list[SimAgent]:
    a = instance.agents
    out = [SimAgent(f"{instance.id}-s{n:04d}", ("inbound_voice",)) for n in range(a.standard)]
    out += [
        SimAgent(f"{instance.id}-p{n:04d}", ("inbound_voice", "chat" if n % 2 == 0 else "email"))
        for n in range(a.premium)
    ]
    out += [
        SimAgent(f"{instance.id}-o{n:04d}", ("outbound_predictive" if n % 2 == 0 else "outbound_progressive",))
        for n in range(a.outbound)
    ]
    out += [SimAgent(f"{instance.id}-sup{n:03d}", ("inbound_voice",), supervisor=True) for n in range(a.supervisors)]
    return out


def _staff(inst: Instance, start: datetime, end: datetime) -> list[tuple[SimAgent, datetime]]:
    """The agents and when each joins: `agents` at the start, and with `growth_per_week` new ones (the same mix, in
    turn) joining evenly, `growth_per_week` x the starting staff a week."""
    first = agents_of(inst)
    out = [(a, start) for a in first]
    per_week = inst.growth_per_week * len(first)
    if per_week <= 0 or not first:
        return out
    weeks = (end - start) / timedelta(days=7)
    for n in range(math.floor(per_week * weeks)):
        model = first[n % len(first)]
        joins = start + timedelta(days=7) * ((n + 1) / per_week)
        out.append((SimAgent(f"{model.agent_id}-g{n:04d}", model.capabilities, model.supervisor), joins))
    return out


def _off(inst: Instance, day: datetime, rnd: random.Random) -> bool:
    """The agent is not on shift that day: a weekend without them, or an absence (a draw only when set)."""
    if day.weekday() >= 5 and inst.weekend_share < 1 and rnd.random() >= inst.weekend_share:
        return True
    return inst.absence_rate > 0 and rnd.random() < inst.absence_rate


def ivr_load(peak: int, at: datetime) -> int:
    """The daily curve: a floor of 5 % overnight, a sine from 06:00 to 18:00 UTC peaking at noon."""
    hour = at.hour + at.minute / 60
    curve = math.sin(math.pi * (hour - 6) / 12) if 6 <= hour <= 18 else 0.0
    return round(peak * max(0.05, curve))


class _Ids:
    def __init__(self, scenario: Scenario, start: datetime) -> None:
        self.ns = uuid.uuid5(uuid.NAMESPACE_URL, f"ccxlic-sim:{scenario.name}:{scenario.seed}:{start.isoformat()}")
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return str(uuid.uuid5(self.ns, str(self.n)))


def generate(scenario: Scenario, start: datetime, tokens: Mapping[str, str] | None = None) -> list[Event]:
    """Every event of the scenario from `start`, in time order (deterministic for a scenario, seed and start).
    `tokens`: instance -> the registration token its `register_with` registers with (from the authority; absent:
    a placeholder the authority will refuse)."""
    tokens = tokens or {}
    rnd = random.Random(scenario.seed)
    ids = _Ids(scenario, start)
    end = start + scenario.duration
    timed: list[tuple[datetime, int, Event]] = []

    def add(event: Event) -> None:
        if event.time <= end:
            timed.append((event.time, len(timed), event))

    for inst in scenario.instances:
        for event in _instance(inst, start, end, rnd, ids, _controlled(scenario, inst)):
            add(event)
        if inst.register_with is not None:
            before = start - timedelta(minutes=1)
            token = tokens.get(inst.id, "no-token-given")
            add(_command(ids, inst.id, before, "register", token=token))
            if not inst.overage_allowed or inst.deployment != "production":
                fields = {"deployment": inst.deployment, "overage_allowed": inst.overage_allowed}
                add(_command(ids, inst.id, before + timedelta(seconds=1), "set_license_type", **fields))
    for injected in scenario.events:
        if injected.command is not None:
            add(_command(ids, injected.instance, start + injected.at, injected.command))
            continue
        assert injected.event is not None
        add(
            lifecycle_event(
                injected.event,
                injected.instance,
                start + injected.at,
                ids.next(),
                SOURCE,
                reason=injected.reason,
                standard=injected.standard,
                premium=injected.premium,
                ivr_ports=injected.ivr_ports,
            )
        )
    t = start
    while t <= end:
        add(ClockTicked(id=ids.next(), source=SOURCE, time=t, subject="*"))
        t += scenario.tick_every
    timed.sort(key=lambda x: (x[0], x[1]))
    return [e for _, _, e in timed]


def _controlled(scenario: Scenario, inst: Instance) -> Entitlement | None:
    """The limits the platform's License Control holds the instance to (None: it does not apply)."""
    if inst.register_with is not None and scenario.authority is not None:
        if inst.overage_allowed or inst.deployment != "production":
            return None
        lic = scenario.authority.virtual_accounts[inst.register_with]
        return Entitlement(lic.standard, lic.premium, lic.ivr_ports)
    e = inst.entitlements
    if inst.registered and e is not None and not e.overage_allowed and e.deployment == "production":
        return Entitlement(e.standard, e.premium, e.ivr_ports)
    return None


def _instance(
    inst: Instance, start: datetime, end: datetime, rnd: random.Random, ids: _Ids, controlled: Entitlement | None
) -> Iterator[Event]:
    before = start - timedelta(minutes=1)
    if inst.entitlements is not None:
        e = inst.entitlements
        yield EntitlementsSet(
            id=ids.next(),
            source=SOURCE,
            time=before,
            subject=inst.id,
            data=EntitlementsSetData(
                standard_seats=e.standard,
                premium_seats=e.premium,
                ivr_ports=e.ivr_ports,
                overage_allowed=e.overage_allowed,
                deployment=e.deployment,
            ),
        )
    if inst.max_agents is not None:
        yield InstanceConfigured(
            id=ids.next(),
            source=SOURCE,
            time=before,
            subject=inst.id,
            data=InstanceConfiguredData(max_agents=inst.max_agents),
        )
    if inst.registered:
        yield InstanceRegistered(
            id=ids.next(),
            source=SOURCE,
            time=before,
            subject=inst.id,
            data=InstanceRegisteredData(virtual_account=f"va-{inst.id}"),
        )
    # who is signed in when: intervals per agent, for sign-ins/outs and for the rosters
    sessions: list[tuple[SimAgent, datetime, datetime]] = []
    refused: set[int] = set()
    shift = timedelta(hours=inst.shift_hours)
    for agent, joins in _staff(inst, start, end):
        day = start
        while day < end:
            if day < joins or _off(inst, day, rnd):
                day += timedelta(days=1)
                continue
            login = day + timedelta(minutes=rnd.uniform(0, inst.login_spread_minutes))
            logout = login + shift
            mid = login + shift / 2
            if inst.break_minutes > 0:
                back = mid + timedelta(minutes=inst.break_minutes)
                sessions += [(agent, login, mid), (agent, back, logout)]
            else:
                sessions.append((agent, login, logout))
            day += timedelta(days=1)
    if controlled is not None or inst.max_agents is not None:
        refused = _refused(sessions, controlled, inst.max_agents)
    for n, (agent, signed_in, signed_out) in enumerate(sessions):
        if n in refused:
            yield _sign_in(agent, inst.id, signed_in, ids)  # refused by the platform: no session follows
            continue
        yield _sign_in(agent, inst.id, signed_in, ids)
        if rnd.random() < inst.crash_relogin_rate:  # the desktop crashed: the agent signs in again, no sign-out
            yield _sign_in(agent, inst.id, signed_in + (signed_out - signed_in) * rnd.uniform(0.1, 0.9), ids)
        yield AgentSignedOut(
            id=ids.next(),
            source=SOURCE,
            time=signed_out,
            subject=inst.id,
            data=AgentSignedOutData(agent_id=agent.agent_id),
        )
    t = start
    while t <= end:
        yield PortsSampled(
            id=ids.next(),
            source=SOURCE,
            time=t,
            subject=inst.id,
            data=PortsSampledData(
                inbound_ivr_ports=ivr_load(inst.ivr_peak_ports, t),
                outbound_ports=ivr_load(inst.outbound_peak_ports, t),
                outbound_seats=ivr_load(inst.outbound_peak_seats, t),
            ),
        )
        t += PORT_SAMPLE_EVERY
    every = timedelta(minutes=inst.roster_every_minutes)
    t = start + every
    while t <= end:
        present = {a.agent_id: a for n, (a, s, e) in enumerate(sessions) if s <= t < e and n not in refused}
        roster = tuple(
            RosterAgent(agent_id=a.agent_id, capabilities=a.capabilities, supervisor=a.supervisor)
            for _, a in sorted(present.items())
        )
        yield AgentRoster(id=ids.next(), source=SOURCE, time=t, subject=inst.id, data=AgentRosterData(agents=roster))
        t += every


def _command(ids: _Ids, instance: str, t: datetime, operation: str, **fields: object) -> Event:
    data = AgentCommandData.model_validate({"operation": operation, **fields})
    return AgentCommand(id=ids.next(), source=SOURCE, time=t, subject=instance, data=data)


def _refused(
    sessions: list[tuple[SimAgent, datetime, datetime]], limits: Entitlement | None, max_agents: int | None
) -> set[int]:
    """The sessions the platform refuses, in time order: beyond the OVA's maximum of signed-in agents, or, under
    License Control, a sign-in that would create or grow a deficit."""
    moves = sorted(
        [(s, 1, n) for n, (_, s, _) in enumerate(sessions)] + [(e, 0, n) for n, (_, _, e) in enumerate(sessions)]
    )  # at one instant, sign-outs first
    seats = {"standard": 0, "premium": 0}
    refused: set[int] = set()
    for _, starts, n in moves:
        agent = sessions[n][0]
        license, _ = classify(agent.capabilities, agent.supervisor)
        if not starts:
            if n not in refused:
                seats[license] -= 1
            continue
        if max_agents is not None and seats["standard"] + seats["premium"] >= max_agents:
            refused.add(n)
            continue
        before = deficit(Usage(seats["standard"], seats["premium"]), limits)
        seats[license] += 1
        after = deficit(Usage(seats["standard"], seats["premium"]), limits)
        if after.standard > before.standard or after.premium > before.premium:
            seats[license] -= 1
            refused.add(n)
    return refused


def _sign_in(agent: SimAgent, instance: str, t: datetime, ids: _Ids) -> Event:
    return AgentSignedIn(
        id=ids.next(),
        source=SOURCE,
        time=t,
        subject=instance,
        data=AgentSignedInData(agent_id=agent.agent_id, capabilities=agent.capabilities, supervisor=agent.supervisor),
    )
