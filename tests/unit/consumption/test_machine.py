"""Live seats and License Control, as pure functions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from ccxlic_consumption.machine import InstanceState, Rules, apply, closable, interval_start
from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    AgentRoster,
    AgentRosterData,
    AgentSignedIn,
    AgentSignedInData,
    AgentSignedOut,
    AgentSignedOutData,
    ClockTicked,
    EntitlementsSet,
    EntitlementsSetData,
    InstanceConfigured,
    InstanceConfiguredData,
    InstanceDeregistered,
    InstanceRegistered,
    InstanceRegisteredData,
    PortsSampled,
    PortsSampledData,
    ReservationInstalled,
    ReservationInstalledData,
    RosterAgent,
)
from ccxlic_rules import Entitlement, Usage, classify, deficit, headroom
from hypothesis import given
from hypothesis import strategies as st

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
RULES = Rules()
_n = iter(range(10**9))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def env(cls: type, t: datetime, data: object) -> Event:
    return cls(id=f"e{next(_n):06d}", source="urn:t", time=t, subject="i", data=data)  # type: ignore[no-any-return]


def sign_in(agent: str, t: datetime, *caps: str, supervisor: bool = False) -> Event:
    return env(AgentSignedIn, t, AgentSignedInData(agent_id=agent, capabilities=caps, supervisor=supervisor))  # type: ignore[arg-type]


def sign_out(agent: str, t: datetime) -> Event:
    return env(AgentSignedOut, t, AgentSignedOutData(agent_id=agent))


def entitle(t: datetime, standard: int, premium: int, overage: bool = True, deployment: str = "production") -> Event:
    return env(
        EntitlementsSet,
        t,
        EntitlementsSetData(
            standard_seats=standard,
            premium_seats=premium,
            ivr_ports=10,
            overage_allowed=overage,
            deployment=deployment,  # type: ignore[arg-type]
        ),
    )


def run(events: list[Event], state: InstanceState | None = None) -> tuple[InstanceState, list[str]]:
    state = state or InstanceState("i")
    rejected = []
    for e in events:
        step = apply(state, e, RULES)
        state = step.state
        if step.rejection:
            rejected.append(step.rejection.agent_id)
    return state, rejected


@pytest.mark.parametrize(
    ("caps", "supervisor", "license"),
    [
        ((), False, "standard"),
        (("inbound_voice",), False, "standard"),
        (("inbound_voice", "outbound_direct_preview"), False, "standard"),
        (("chat",), False, "premium"),
        (("email",), False, "premium"),
        (("outbound_predictive",), False, "premium"),
        (("outbound_progressive",), False, "premium"),
        (("inbound_voice",), True, "premium"),
        ((), True, "premium"),
    ],
)
def test_classification(caps: tuple[str, ...], supervisor: bool, license: str) -> None:
    assert classify(caps, supervisor)[0] == license  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("p", "s", "premium_deficit", "standard_deficit", "premium_room", "standard_room"),
    [
        (0, 0, 0, 0, 10, 50),
        (10, 40, 0, 0, 0, 0),
        (11, 0, 1, 0, 0, 40),
        (0, 50, 0, 0, 0, 0),
        (0, 51, 0, 1, 0, 0),
        (5, 45, 0, 0, 0, 0),
        (5, 46, 0, 1, 0, 0),
        (5, 44, 0, 0, 1, 1),
        (6, 45, 0, 1, 0, 0),
    ],
)
def test_pool_arithmetic(
    p: int, s: int, premium_deficit: int, standard_deficit: int, premium_room: int, standard_room: int
) -> None:
    ent = Entitlement(standard=40, premium=10, ivr_ports=0)
    d = deficit(Usage(standard=s, premium=p), ent)
    r = headroom(Usage(standard=s, premium=p), ent)
    assert (d.premium, d.standard, r.premium, r.standard) == (
        premium_deficit,
        standard_deficit,
        premium_room,
        standard_room,
    )


@given(st.integers(0, 60), st.integers(0, 60), st.integers(0, 30), st.integers(0, 60))
def test_pool_total_is_conserved(p: int, s: int, big_p: int, big_s: int) -> None:
    """The seats in use that the pool covers (in use - deficit) + the free seats (Standard headroom, which counts
    spare Premium) = the seats entitled; Premium headroom never exceeds Standard's (a free Premium seat is free for
    either)."""
    d = deficit(Usage(s, p), Entitlement(big_s, big_p, 0))
    r = headroom(Usage(s, p), Entitlement(big_s, big_p, 0))
    assert r.standard is not None and r.premium is not None
    assert (p + s) - (d.premium + d.standard) + r.standard == big_p + big_s
    assert r.premium <= r.standard


def test_evaluation_is_unlimited() -> None:
    assert headroom(Usage(100, 100), None).standard is None
    assert deficit(Usage(100, 100), None).premium == 0


def register(t: datetime) -> Event:
    return env(InstanceRegistered, t, InstanceRegisteredData(virtual_account="va"))


def reserve(t: datetime, standard: int, premium: int, ivr: int = 0) -> Event:
    return env(
        ReservationInstalled, t, ReservationInstalledData(standard_seats=standard, premium_seats=premium, ivr_ports=ivr)
    )


def _controlled() -> list[Event]:
    return [entitle(at(0), standard=40, premium=10, overage=False), register(at(0))]


def test_at_most_ten_premium() -> None:
    state, rejected = run(_controlled() + [sign_in(f"p{i}", at(1 + i), "chat") for i in range(11)])
    assert state.usage().premium == 10 and rejected == ["p10"]


def test_fifty_standard_when_no_premium() -> None:
    state, rejected = run(_controlled() + [sign_in(f"s{i}", at(1 + i), "inbound_voice") for i in range(51)])
    assert state.usage().standard == 50 and rejected == ["s50"]


def test_five_premium_then_at_most_45_standard() -> None:
    events = _controlled() + [sign_in(f"p{i}", at(1), "email") for i in range(5)]
    events += [sign_in(f"s{i}", at(2 + i), "inbound_voice") for i in range(46)]
    state, rejected = run(events)
    assert (state.usage().premium, state.usage().standard) == (5, 45) and rejected == ["s45"]


def test_45_standard_then_at_most_5_premium() -> None:
    events = _controlled() + [sign_in(f"s{i}", at(1), "inbound_voice") for i in range(45)]
    events += [sign_in(f"p{i}", at(2 + i), "chat") for i in range(6)]
    state, rejected = run(events)
    assert (state.usage().premium, state.usage().standard) == (5, 45) and rejected == ["p5"]


def test_overage_allowed_or_non_production_never_rejects() -> None:
    for first in (entitle(at(0), 1, 1, overage=True), entitle(at(0), 1, 1, overage=False, deployment="non_production")):
        state, rejected = run([first, register(at(0))] + [sign_in(f"p{i}", at(1 + i), "chat") for i in range(3)])
        assert rejected == [] and state.usage().premium == 3
        assert state.deficit().premium == 2 and state.control_breach() is None


def test_license_control_does_not_apply_during_evaluation() -> None:
    """The vendor: evaluation has an "unlimited number of licenses". Unregistered with overage off: nobody is
    refused; once registered, Control applies; deregistered (evaluation again), it does not."""
    events = [entitle(at(0), 0, 1, overage=False)] + [sign_in(f"p{i}", at(1 + i), "chat") for i in range(3)]
    state, rejected = run(events)
    assert rejected == [] and state.usage().premium == 3 and state.control_breach() is None
    state, rejected = run([register(at(10)), sign_in("late", at(11), "chat")], state)
    assert rejected == ["late"] and state.control_breach() is not None and state.control_breach().premium == 2  # type: ignore[union-attr]
    state, rejected = run([env(InstanceDeregistered, at(12), {}), sign_in("late", at(13), "chat")], state)
    assert rejected == [] and state.usage().premium == 4


def _reserved(overage: bool) -> list[Event]:
    """The vendor's Specific License Reservation example: 10 Flex Premium + 40 Flex Standard reserved."""
    return [entitle(at(0), 0, 0, overage=overage), reserve(at(0), 40, 10)]


@pytest.mark.parametrize("overage", [True, False])
def test_a_reservation_refuses_the_51st_sign_in_whatever_the_overage_setting(overage: bool) -> None:
    """The vendor: "Over-consumption of licenses is not allowed in Specific License Reservation": at most 50 sign-ins
    (10 Premium + 40 Standard). It is the reservation's own limit, not License Control (which does not apply to a
    reservation), so it holds with overage allowed too."""
    state, rejected = run([*_reserved(overage), *(sign_in(f"s{i}", at(1 + i), "inbound_voice") for i in range(51))])
    assert state.usage().standard == 50 and rejected == ["s50"]
    step = apply(state, sign_in("one-more", at(60), "inbound_voice"), RULES)
    assert step.rejection is not None and step.rejection.limit == "reservation"
    assert "Specific License Reservation" in step.rejection.reason and step.fact is None
    assert state.limits.controlled is False  # License Control itself does not apply under a reservation


def test_a_reservation_allows_at_most_ten_premium_and_45_standard_beside_5_premium() -> None:
    """The vendor's worked example: at most 10 Premium; with 5 Premium, at most 45 Standard; with 45 Standard, at most
    5 Premium."""
    state, rejected = run([*_reserved(True), *(sign_in(f"p{i}", at(1 + i), "chat") for i in range(11))])
    assert state.usage().premium == 10 and rejected == ["p10"]
    events = [*_reserved(True), *(sign_in(f"p{i}", at(1), "email") for i in range(5))]
    events += [sign_in(f"s{i}", at(2 + i), "inbound_voice") for i in range(46)]
    state, rejected = run(events)
    assert (state.usage().premium, state.usage().standard) == (5, 45) and rejected == ["s45"]
    events = [*_reserved(True), *(sign_in(f"s{i}", at(1), "inbound_voice") for i in range(45))]
    events += [sign_in(f"p{i}", at(2 + i), "chat") for i in range(6)]
    state, rejected = run(events)
    assert (state.usage().premium, state.usage().standard) == (5, 45) and rejected == ["p5"]


def test_a_roster_or_a_port_sample_above_a_reservation_is_counted_and_is_a_breach() -> None:
    """Rosters and samples are the platform's truth: counted, and the excess over the reservation is a breach."""
    listed = tuple(RosterAgent(agent_id=f"p{n}", capabilities=("chat",)) for n in range(12))
    state, rejected = run([*_reserved(True), env(AgentRoster, at(5), AgentRosterData(agents=listed))])
    assert rejected == [] and state.usage().premium == 12
    breach = state.control_breach()
    assert breach is not None and breach.premium == 2 and state.limits.hard == "reservation"
    state, _ = run([reserve(at(0), 40, 10, ivr=4), env(PortsSampled, at(6), PortsSampledData(inbound_ivr_ports=6))])
    breach = state.control_breach()
    assert state.usage().ivr_ports == 6 and breach is not None and breach.ivr_ports == 2


def test_evaluation_means_unregistered_and_unreserved_whatever_entitlements_were_set() -> None:
    """One meaning of evaluation: entitlements set on an instance that is not registered are not its limits (the
    vendor: evaluation has an "unlimited number of licenses"); registered, they are; deregistered, evaluation again."""
    state, _ = run([entitle(at(0), 1, 1), *(sign_in(f"p{i}", at(1 + i), "chat") for i in range(3))])
    assert state.limits.mode == "evaluation" and state.limits.effective is None
    assert state.headroom().premium is None and state.deficit().premium == 0
    state, _ = run([register(at(10))], state)
    assert state.limits.mode == "entitlements" and state.deficit().premium == 2 and state.headroom().premium == 0
    state, _ = run([env(InstanceDeregistered, at(11), {})], state)
    assert state.limits.mode == "evaluation" and state.deficit().premium == 0 and state.headroom().premium is None
    state, _ = run([reserve(at(12), 5, 1)], state)
    assert state.limits.mode == "reservation" and state.deficit().premium == 2


def configure(t: datetime, max_agents: int | None) -> Event:
    return env(InstanceConfigured, t, InstanceConfiguredData(max_agents=max_agents, ova_profile=None))


@pytest.mark.parametrize(
    "limits",
    [[], [entitle(at(0), 1000, 1000), register(at(0))], _reserved(True), [entitle(at(0), 1000, 1000, False)]],
)
def test_the_ova_limit_refuses_a_sign_in_beyond_it_whatever_the_licenses(limits: list[Event]) -> None:
    """The vendor: "Sign in additional agents to Unified CCX up to the maximum limit that is configured in your OVA":
    in evaluation, with licenses to spare, under a reservation alike."""
    events = [*limits, configure(at(0), 3), *(sign_in(f"a{i}", at(1 + i), "inbound_voice") for i in range(4))]
    state, rejected = run(events)
    assert state.usage().standard == 3 and rejected == ["a3"]
    step = apply(state, sign_in("a3", at(10)), RULES)
    assert step.rejection is not None and step.rejection.limit == "ova" and "OVA" in step.rejection.reason
    # an agent already signed in signs in again (a new class): not one more agent, not refused
    assert apply(state, sign_in("a0", at(11), "chat"), RULES).rejection is None
    # the limit raised (a bigger OVA profile), or cleared: the next one signs in
    assert apply(run([configure(at(12), 4)], state)[0], sign_in("a3", at(13)), RULES).rejection is None
    assert apply(run([configure(at(12), None)], state)[0], sign_in("a3", at(13)), RULES).rejection is None


def test_a_reservation_is_installed_only_on_an_unregistered_instance() -> None:
    state, _ = run([register(at(0)), reserve(at(1), 5, 5)])
    assert state.limits.reservation is None and state.limits.registered
    state, _ = run([reserve(at(0), 5, 5), register(at(1))])
    assert state.limits.reservation is not None and not state.limits.registered  # return it first


def test_a_roster_above_the_cap_is_counted_and_is_a_breach() -> None:
    """A roster is the platform's truth: it is counted, never refused; above License Control's cap it is a
    breach."""
    listed = tuple(RosterAgent(agent_id=f"p{n}", capabilities=("chat",)) for n in range(12))
    roster = env(AgentRoster, at(5), AgentRosterData(agents=listed))
    state, rejected = run([*_controlled(), roster])
    assert rejected == [] and state.usage().premium == 12
    assert state.control_breach() is not None and state.control_breach().premium == 2  # type: ignore[union-attr]


def test_an_ivr_sample_above_a_controlled_limit_is_a_breach() -> None:
    """Ports are observed, not signed in: the sample is counted and the excess is a breach."""
    sample = env(PortsSampled, at(5), PortsSampledData(inbound_ivr_ports=12))
    state, _ = run([*_controlled(), sample])
    breach = state.control_breach()
    assert state.usage().ivr_ports == 12 and breach is not None and breach.ivr_ports == 2
    state, _ = run([env(PortsSampled, at(6), PortsSampledData(inbound_ivr_ports=10))], state)
    assert state.control_breach() is not None and state.control_breach().ivr_ports == 0  # type: ignore[union-attr]


def test_second_sign_in_updates_class_and_never_counts_twice() -> None:
    state, _ = run([sign_in("a", at(1)), sign_in("a", at(2), "chat")])
    assert (state.usage().standard, state.usage().premium) == (0, 1)


def test_stale_event_does_not_change_live_state_but_is_a_fact() -> None:
    state, _ = run([sign_in("a", at(10)), sign_out("a", at(20))])
    step = apply(state, sign_in("a", at(15)), RULES)
    assert step.state.usage().standard == 0
    assert step.fact is not None


def test_sign_out_of_unknown_agent_changes_nothing() -> None:
    state, _ = run([sign_in("a", at(1)), sign_out("zz", at(2))])
    assert state.usage().standard == 1


def test_roster_reconciles() -> None:
    roster = env(
        AgentRoster,
        at(30),
        AgentRosterData(agents=(RosterAgent(agent_id="b", capabilities=("chat",)), RosterAgent(agent_id="c"))),
    )
    state, _ = run([sign_in("a", at(1)), sign_in("b", at(2)), roster, sign_in("a", at(20))])
    assert {k for k, v in state.agents.items() if v.signed_in} == {"b", "c"}
    assert state.agents["a"].cause == "reconciled"
    assert state.agents["b"].license == "premium"


def test_lost_sign_out_expires_after_max_session() -> None:
    state, _ = run([sign_in("a", at(0)), sign_in("b", at(60 * 23))])
    tick = env(ClockTicked, at(60 * 24), {})
    step = apply(state, tick, RULES)
    assert step.state.agents["a"].signed_in is False and step.state.agents["a"].cause == "expired"
    assert "a" in step.changed_agents and step.state.usage().standard == 1


def test_intervals_align_to_midnight_and_close_after_lateness() -> None:
    assert interval_start(at(0), RULES) == T0
    assert interval_start(datetime(2026, 3, 2, 7, 59, tzinfo=UTC), RULES) == datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    assert closable(T0, T0 + timedelta(hours=8, minutes=4), RULES) == []
    assert closable(T0, T0 + timedelta(hours=8, minutes=5), RULES) == [T0]
    assert len(closable(T0, T0 + timedelta(days=1), RULES)) == 2


@given(
    st.lists(
        st.tuples(st.sampled_from(["in", "out", "tick", "roster"]), st.integers(0, 9), st.integers(0, 4 * 24 * 60)),
        max_size=60,
    )
)
def test_the_derived_shortcuts_change_nothing(script: list[tuple[str, int, int]]) -> None:
    """`advance` skips the scan of every agent while nothing can expire, and the seats in use are counted by what
    each input changed: scanning and counting every time gives the same. `apply` leaves its input alone (the rules
    change a copy in place)."""
    rules = Rules(max_session=timedelta(hours=24))
    fast = slow = InstanceState("i")
    for kind, agent, minute in script:
        t = at(minute)
        if kind == "in":
            e = sign_in(f"a{agent}", t, "chat" if agent % 2 else "inbound_voice")
        elif kind == "out":
            e = sign_out(f"a{agent}", t)
        elif kind == "roster":
            listed = tuple(RosterAgent(agent_id=f"a{n}", capabilities=("chat",) if n % 3 else ()) for n in range(agent))
            e = env(AgentRoster, t, AgentRosterData(agents=listed))
        else:
            e = env(ClockTicked, t, {})
        kept = fast.copy()
        f = apply(fast, e, rules)
        s = apply(replace(slow, expiry_floor=None, seats=None), e, rules)
        assert fast == kept and fast.seats == kept.seats, "apply changed its input"
        assert f.state == s.state and f.changed_agents == s.changed_agents
        # the seat counts kept up to date input by input are the count of the agents signed in
        assert f.state.usage() == InstanceState("i", agents=f.state.agents).usage()
        fast, slow = f.state, s.state


def test_a_lifecycle_event_that_is_not_a_reservation_only_moves_time() -> None:
    """The consumption computer reads the lifecycle topic for reservations; the other lifecycle events on it (seen
    first for a new instance in a replay, say) must still give the instance a clock."""
    registered = env(InstanceRegistered, at(5), InstanceRegisteredData(virtual_account="va"))
    step = apply(InstanceState("i"), registered, RULES)
    assert step.state.watermark == at(5) and step.state.agents == {} and step.fact is None
