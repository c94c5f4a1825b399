"""Live seats per product instance, and License Control: `apply(state, event, rules) -> Step`, pure; `update` is the
same rules changing a state in place, for the decider's private copy within one unit of work.

Rules:
- One seat per signed-in agent_id. A second sign-in of a signed-in agent updates the class; it never counts twice.
- Each agent's live state follows its latest event by (time, id). A stale event (older than the agent's latest,
  or than a later roster) leaves the live state alone but is still a fact: it counts toward the past intervals
  it covers (see peaks.py).
- A sign-out of an agent who is not signed in changes nothing.
- A roster at T signs in every listed agent (with the listed capabilities) and signs out, cause `reconciled`, every
  agent it does not list. A roster reports what the platform has: it is never rejected.
- A session with no event for longer than `max_session` ends at its latest event + max_session, cause `expired`.
- Ports: the latest sample by time is the current value.
- Limits, one meaning of evaluation: an instance that is neither registered nor reserved is in evaluation,
  unlimited ("unlimited number of licenses"), whatever entitlements were set; a registered one is held to the latest
  `licensing.entitlements.set`; a reserved one to its reservation's counts.
- Registration: `licensing.instance.registered` to `licensing.instance.deregistered`. A reservation is installed
  only on an unregistered instance, and a registration is ignored while a reservation is installed (the vendor's
  order: return the reservation first).
- Hard limits refuse sign-ins; a refused sign-in is not counted and not a fact:
  - the OVA's maximum of signed-in agents (`licensing.instance.configured`), whatever the licenses ("Sign in
    additional agents ... up to the maximum limit that is configured in your OVA");
  - a reservation's counts, whatever the overage setting ("Over-consumption of licenses is not allowed in Specific
    License Reservation"): a sign-in that would create (or grow) a Premium or Standard deficit against them;
  - License Control, on a registered production instance with `overage_allowed` false: the same rule against the
    entitlements. Not during evaluation, not under a reservation, not on a Lab system (the vendor: "License Control
    is not applicable: For Non Production Systems License, For License Reservation").
  Rosters and port samples are observed, not asked for: they are counted as the platform's truth, and usage above a
  reservation's or License Control's limits is a breach (see `control_breach`), never out of compliance.
- The watermark is the largest event time seen, or a clock tick; sessions expire as it passes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    AgentRoster,
    AgentSignedIn,
    AgentSignedOut,
    EntitlementsSet,
    HardLimit,
    InstanceConfigured,
    InstanceDeregistered,
    InstanceRegistered,
    License,
    PortsSampled,
    ReservationInstalled,
    ReservationReturned,
)
from ccxlic_rules import Entitlement, Usage, classify, deficit, headroom, intervals
from ccxlic_rules.pool import Amounts, Room

Mode = Literal["evaluation", "entitlements", "reservation"]
Order = tuple[datetime, str]
"""(time, event id): the order of facts. Ties in time are broken by id, so every arrival order agrees."""


@dataclass(frozen=True, slots=True)
class Rules:
    interval: timedelta = timedelta(hours=8)
    lateness: timedelta = timedelta(minutes=5)
    max_session: timedelta = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Agent:
    """An agent's live state and the order of the latest event about them."""

    signed_in: bool
    license: License
    why: str
    last: Order
    cause: str


@dataclass(frozen=True, slots=True)
class Ports:
    ivr: int = 0
    outbound_ports: int = 0
    outbound_seats: int = 0
    last: Order | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    entitlement: Entitlement | None = None
    overage_allowed: bool = True
    production: bool = True
    entitlement_last: Order | None = None
    reservation: Entitlement | None = None
    reservation_last: Order | None = None
    registered: bool = False
    registered_last: Order | None = None
    max_agents: int | None = None  # the OVA's maximum of signed-in agents (None: no limit known)
    configured_last: Order | None = None

    @property
    def mode(self) -> Mode:
        """Reservation, entitlements (registered) or evaluation (neither): the one meaning every service shares."""
        if self.reservation is not None:
            return "reservation"
        return "entitlements" if self.registered else "evaluation"

    @property
    def effective(self) -> Entitlement | None:
        """What usage is measured against: None in evaluation (unlimited), or while registered with none known."""
        if self.reservation is not None:
            return self.reservation
        return self.entitlement if self.registered else None

    @property
    def controlled(self) -> bool:
        """License Control applies: a registered production instance, entitlements set, overage off, no
        reservation."""
        return (
            self.registered
            and self.reservation is None
            and self.entitlement is not None
            and not self.overage_allowed
            and self.production
        )

    @property
    def hard(self) -> Literal["license_control", "reservation"] | None:
        """The limit that refuses sign-ins and makes a roster or sample above it a breach, if any."""
        if self.reservation is not None:
            return "reservation"
        return "license_control" if self.controlled else None


@dataclass(slots=True)
class InstanceState:
    """An instance's live state. Mutable: `update` changes it in place, on a copy private to one unit of work
    (`copy`), so an input costs what it changes, not a copy of every agent; `apply` is the pure form."""

    instance: str
    watermark: datetime | None = None
    agents: dict[str, Agent] = field(default_factory=dict)
    roster_last: Order | None = None
    ports: Ports = Ports()
    limits: Limits = Limits()
    # A lower bound on when the next signed-in session can expire (its last event + max session); None: unknown.
    # It lets `advance` skip the scan of every agent on each input. Derived, so not part of equality or storage.
    expiry_floor: datetime | None = field(default=None, compare=False)
    # (Standard, Premium) seats in use: derived from `agents`, kept up to date by `_set_agents` so that each input
    # costs what it changes, not a count over every agent. None (a state built from its agents) counts them once.
    seats: tuple[int, int] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.seats is None:
            self.seats = _count(self.agents.values())

    def copy(self) -> InstanceState:
        """A copy to change in place (the agents are frozen values: the dict is copied, not each agent)."""
        return InstanceState(
            self.instance,
            self.watermark,
            dict(self.agents),
            self.roster_last,
            self.ports,
            self.limits,
            self.expiry_floor,
            self.seats,
        )

    def usage(self) -> Usage:
        assert self.seats is not None
        return Usage(standard=self.seats[0], premium=self.seats[1], ivr_ports=self.ports.ivr)

    def headroom(self) -> Room:
        return headroom(self.usage(), self.limits.effective)

    def deficit(self) -> Amounts:
        return deficit(self.usage(), self.limits.effective)

    def control_breach(self) -> Amounts | None:
        """By how much usage exceeds a hard limit, a reservation's or License Control's (None: none applies)."""
        return self.deficit() if self.limits.hard is not None else None


@dataclass(frozen=True, slots=True)
class SignInFact:
    agent_id: str
    license: License
    why: str


@dataclass(frozen=True, slots=True)
class SignOutFact:
    agent_id: str


@dataclass(frozen=True, slots=True)
class RosterFact:
    agents: tuple[SignInFact, ...]


@dataclass(frozen=True, slots=True)
class PortsFact:
    ivr: int
    outbound_ports: int
    outbound_seats: int


FactBody = SignInFact | SignOutFact | RosterFact | PortsFact


@dataclass(frozen=True, slots=True)
class Fact:
    """An accepted input that counts toward peaks, whatever order it arrived in."""

    at: datetime
    event_id: str
    body: FactBody

    @property
    def order(self) -> Order:
        return (self.at, self.event_id)


@dataclass(frozen=True, slots=True)
class Rejection:
    agent_id: str
    license: License
    reason: str
    limit: HardLimit


_NONE: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Step:
    state: InstanceState
    fact: Fact | None = None
    rejection: Rejection | None = None
    changed_agents: frozenset[str] = _NONE


def apply(state: InstanceState, event: Event, rules: Rules) -> Step:
    """The next live state of an instance after one input, with the fact to record and any rejection. Pure: `state`
    is not changed."""
    return update(state.copy(), event, rules)


def update(state: InstanceState, event: Event, rules: Rules) -> Step:
    """`apply`, changing `state` in place (the Step's state is `state`): for a copy that only this caller holds."""
    order: Order = (event.time, event.id)
    fact: Fact | None = None
    rejection: Rejection | None = None
    changed: frozenset[str] = _NONE
    match event:
        case AgentSignedIn():
            fact, rejection, changed = _sign_in(state, event, order)
        case AgentSignedOut():
            fact, changed = _sign_out(state, event.data.agent_id, order)
        case AgentRoster():
            fact, changed = _roster(state, event, order)
        case PortsSampled():
            d = event.data
            fact = Fact(event.time, event.id, PortsFact(d.inbound_ivr_ports, d.outbound_ports, d.outbound_seats))
            if state.ports.last is None or order > state.ports.last:
                state.ports = Ports(d.inbound_ivr_ports, d.outbound_ports, d.outbound_seats, order)
        case EntitlementsSet():
            limits = state.limits
            if limits.entitlement_last is None or order > limits.entitlement_last:
                d2 = event.data
                state.limits = replace(
                    limits,
                    entitlement=Entitlement(d2.standard_seats, d2.premium_seats, d2.ivr_ports),
                    overage_allowed=d2.overage_allowed,
                    production=d2.deployment == "production",
                    entitlement_last=order,
                )
        case InstanceConfigured():
            limits = state.limits
            if limits.configured_last is None or order > limits.configured_last:
                state.limits = replace(limits, max_agents=event.data.max_agents, configured_last=order)
        case InstanceRegistered() | InstanceDeregistered():
            limits = state.limits
            registering = isinstance(event, InstanceRegistered)
            if (limits.registered_last is None or order > limits.registered_last) and not (
                registering and limits.reservation is not None
            ):
                state.limits = replace(limits, registered=registering, registered_last=order)
        case ReservationInstalled() | ReservationReturned():
            limits = state.limits
            installing = isinstance(event, ReservationInstalled)
            if (limits.reservation_last is None or order > limits.reservation_last) and not (
                installing and limits.registered
            ):
                reserved = (
                    Entitlement(event.data.standard_seats, event.data.premium_seats, event.data.ivr_ports)
                    if isinstance(event, ReservationInstalled)
                    else None
                )
                state.limits = replace(limits, reservation=reserved, reservation_last=order)
        case _:
            # A tick, or another lifecycle event (it shares the lifecycle topic): only time moves.
            pass
    if state.expiry_floor is not None and changed:
        # a session (re)started: the floor can only move earlier
        floor = state.expiry_floor
        for agent_id in changed:
            a = state.agents.get(agent_id)
            if a is not None and a.signed_in and a.last[0] + rules.max_session < floor:
                floor = a.last[0] + rules.max_session
        state.expiry_floor = floor
    expired = _advance(state, event.time, rules)
    return Step(state, fact, rejection, changed | expired if expired else changed)


def advance(state: InstanceState, now: datetime, rules: Rules) -> InstanceState:
    """Move the watermark to `now` (never back) and expire the sessions it passes. Pure."""
    after = state.copy()
    _advance(after, now, rules)
    return after


_NEVER = datetime.max.replace(tzinfo=UTC)


def _advance(state: InstanceState, now: datetime, rules: Rules) -> frozenset[str]:
    """In place: the watermark moves to `now` (never back); the sessions it passes expire. Returns who expired."""
    if state.watermark is None or now > state.watermark:
        state.watermark = now
    watermark = state.watermark
    if state.expiry_floor is not None and watermark < state.expiry_floor:
        return _NONE  # nothing can expire yet: no need to look at every agent
    expired = {
        agent_id: Agent(False, a.license, a.why, a.last, "expired")
        for agent_id, a in state.agents.items()
        if a.signed_in and a.last[0] + rules.max_session <= watermark
    }
    if expired:
        _set_agents(state, expired)
    state.expiry_floor = min(
        (a.last[0] + rules.max_session for a in state.agents.values() if a.signed_in),
        default=_NEVER,
    )
    return frozenset(expired) if expired else _NONE


def _count(agents: Iterable[Agent]) -> tuple[int, int]:
    standard = premium = 0
    for a in agents:
        if a.signed_in:
            if a.license == "premium":
                premium += 1
            else:
                standard += 1
    return standard, premium


def _seats_with(state: InstanceState, changes: Mapping[str, Agent]) -> tuple[int, int]:
    """The seats in use once `changes` are made to the agents (the counts move by what changes)."""
    old = _count(a for agent_id in changes if (a := state.agents.get(agent_id)) is not None)
    new = _count(changes.values())
    assert state.seats is not None
    return (state.seats[0] - old[0] + new[0], state.seats[1] - old[1] + new[1])


def _set_agents(state: InstanceState, changes: Mapping[str, Agent]) -> None:
    state.seats = _seats_with(state, changes)
    state.agents.update(changes)


def _is_stale(state: InstanceState, agent_id: str, order: Order) -> bool:
    current = state.agents.get(agent_id)
    latest = current.last if current is not None else None
    if state.roster_last is not None and (latest is None or state.roster_last > latest):
        latest = state.roster_last
    return latest is not None and order < latest


def _sign_in(
    state: InstanceState, event: AgentSignedIn, order: Order
) -> tuple[Fact | None, Rejection | None, frozenset[str]]:
    d = event.data
    license, why = classify(d.capabilities, d.supervisor)
    fact = Fact(event.time, event.id, SignInFact(d.agent_id, license, why))
    if _is_stale(state, d.agent_id, order):
        return fact, None, _NONE
    change = {d.agent_id: Agent(True, license, why, order, "signed_in")}
    limits = state.limits
    if limits.max_agents is not None or limits.hard is not None:
        seats = _seats_with(state, change)
        used = Usage(standard=seats[0], premium=seats[1], ivr_ports=state.ports.ivr)
        rejection = _refusal(state, used, d.agent_id, license)
        if rejection is not None:
            return None, Rejection(d.agent_id, license, *rejection), _NONE
    _set_agents(state, change)
    return fact, None, frozenset(change)


def _refusal(before: InstanceState, used: Usage, agent_id: str, license: License) -> tuple[str, HardLimit] | None:
    """Why a hard limit refuses a sign-in that takes usage from `before` to `used` (the reason and the limit), or
    None when every limit allows it. The OVA's agent limit first: it holds whatever the licenses."""
    limits = before.limits
    signed_in = used.standard + used.premium
    current = before.agents.get(agent_id)
    already = current is not None and current.signed_in
    if limits.max_agents is not None and signed_in > limits.max_agents and not already:
        return (
            f"OVA limit: {signed_in - 1} agents are signed in, the most the instance's OVA allows "
            f"({limits.max_agents}), whatever the licenses",
            "ova",
        )
    hard = limits.hard
    if hard is None:
        return None
    ent = limits.effective
    assert ent is not None
    old, new = before.deficit(), deficit(used, ent)
    if new.premium <= old.premium and new.standard <= old.standard:
        return None
    grown = "Premium" if new.premium > old.premium else "Standard"
    counts = (
        f"Premium {used.premium}/{ent.premium}, Standard {used.standard}/{ent.standard} with unused Premium "
        "covering Standard"
    )
    if hard == "reservation":
        return (
            f"Specific License Reservation (over-consumption is not allowed): a {license.capitalize()} sign-in would "
            f"put {grown} over the reserved licenses ({counts})",
            "reservation",
        )
    return (
        f"License Control (overage not allowed): a {license.capitalize()} sign-in would put {grown} over its "
        f"entitlement ({counts})",
        "license_control",
    )


def _sign_out(state: InstanceState, agent_id: str, order: Order) -> tuple[Fact, frozenset[str]]:
    fact = Fact(order[0], order[1], SignOutFact(agent_id))
    if _is_stale(state, agent_id, order):
        return fact, _NONE
    current = state.agents.get(agent_id)
    if current is None:
        # Not signed in: changes nothing, but remember the order so an older sign-in arriving later is stale.
        _set_agents(state, {agent_id: Agent(False, "standard", "", order, "signed_out")})
    else:
        _set_agents(state, {agent_id: Agent(False, current.license, current.why, order, "signed_out")})
    return fact, frozenset((agent_id,))


def _roster(state: InstanceState, event: AgentRoster, order: Order) -> tuple[Fact, frozenset[str]]:
    listed = {}
    for a in event.data.agents:
        license, why = classify(a.capabilities, a.supervisor)
        listed[a.agent_id] = SignInFact(a.agent_id, license, why)
    fact = Fact(event.time, event.id, RosterFact(tuple(listed.values())))
    changes: dict[str, Agent] = {}
    for agent_id, current in state.agents.items():
        if current.last > order or agent_id in listed:
            continue
        changes[agent_id] = Agent(False, current.license, current.why, order, "reconciled")  # (replace() costs 4x)
    for agent_id, signed in listed.items():
        known = state.agents.get(agent_id)
        if known is not None and known.last > order:
            continue
        changes[agent_id] = Agent(True, signed.license, signed.why, order, "roster")
    if state.roster_last is None or order > state.roster_last:
        state.roster_last = order
    _set_agents(state, changes)
    return fact, frozenset(changes)


def interval_start(t: datetime, rules: Rules) -> datetime:
    """The start of the reporting interval holding t; intervals are aligned to 00:00 UTC."""
    return intervals.interval_start(t, rules.interval)


def closable(next_close: datetime | None, watermark: datetime | None, rules: Rules) -> list[datetime]:
    """Starts of the intervals, from `next_close` on, that the watermark has passed by their end + lateness."""
    if next_close is None or watermark is None:
        return []
    starts = []
    start = next_close
    while start + rules.interval + rules.lateness <= watermark:
        starts.append(start)
        start = start + rules.interval
    return starts
