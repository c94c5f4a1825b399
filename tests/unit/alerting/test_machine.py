"""The alerting rules, pure: catalogue, dedup, escalation, repeats, inhibition, silences, evaluation reminders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ccxlic_alerting.machine import (
    CATALOGUE,
    Action,
    Active,
    Held,
    Notice,
    Raised,
    Resolved,
    Rules,
    Silence,
    State,
    replay,
    step,
)
from ccxlic_contract.codec import Event
from ccxlic_testing.build import Build
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)
RULES = Rules()


def _kinds(actions: list[Action]) -> list[tuple[str, str]]:
    out = []
    for a in actions:
        if isinstance(a, Raised):
            out.append(("raised", a.alert.alert))
        elif isinstance(a, Resolved):
            out.append(("resolved", a.alert.alert))
        elif isinstance(a, Notice):
            out.append((f"notify:{a.kind}", a.alert.alert))
        elif isinstance(a, Held):
            out.append(("held", a.alert.alert))
    return out


FORECAST = {
    "made_at": T0,
    "start": T0 + 48 * H,
    "end": T0 + 56 * H,
    "over": {"standard": 0, "premium": 2, "ivr_ports": 0},
}

CATALOGUE_CASES = [
    (
        "RenewAuthorizationFailed",
        "major",
        lambda b: b.failure("authorization", T0),
        lambda b: b.authorization_renewed(T0 + H),
    ),
    (
        "RenewRegistrationFailed",
        "major",
        lambda b: b.failure("registration", T0),
        lambda b: b.registration_renewed(T0 + H),
    ),
    ("LicenseComputationFailed", "major", lambda b: b.failure("consumption", T0), lambda b: b.usage(T0 + H, 1, 1)),
    (
        "UsageReportingFailed",
        "warning",
        lambda b: b.failure("reporting", T0),
        lambda b: b.reporting_succeeded(T0 + H),
    ),
    (
        "EntitlementReportingFailed",
        "warning",
        lambda b: b.failure("entitlements", T0),
        lambda b: b.entitle(T0 + H, 10, 10),
    ),
    (
        "LicenseControlBreach",
        "major",
        lambda b: b.breach(T0, ivr_ports=2),
        lambda b: b.usage(T0 + H, 1, 1),
    ),
    (
        "ReservationBreach",
        "major",
        lambda b: b.breach(T0, premium=2, limit="reservation"),
        lambda b: b.usage(T0 + H, 1, 1),
    ),
    (
        "RequiredLicenseMissing",
        "major",
        lambda b: b.compliance(T0, missing=("server",)),
        lambda b: b.compliance(T0 + H),
    ),
    ("SmartAgentInitFailed", "critical", lambda b: b.failure("agent_init", T0), lambda b: b.agent_initialized(T0 + H)),
    (
        "OutOfComplianceForecast",
        "warning",
        lambda b: b.compliance(T0, forecast=FORECAST),
        lambda b: b.compliance(T0 + H),
    ),
    (
        "OutOfComplianceDetected",
        "warning",
        lambda b: b.compliance(T0, over_stage="detected", deficit=(0, 1, 0), ooc_at=T0 + 45 * timedelta(minutes=1)),
        lambda b: b.compliance(T0 + H),
    ),
    (
        "OutOfComplianceImminent",
        "major",
        lambda b: b.compliance(T0, over_stage="imminent", over_since=T0 - 30 * timedelta(minutes=1)),
        lambda b: b.compliance(T0 + H),
    ),
    (
        "OutOfCompliance",
        "critical",
        lambda b: b.compliance(T0, "out_of_compliance", ooc_since=T0, enforcement_at=T0 + 90 * D),
        lambda b: b.compliance(T0 + H),
    ),
    (
        "EnforcementMode",
        "critical",
        lambda b: b.compliance(T0, "evaluation_expired", enforcement=("evaluation_expired",)),
        lambda b: b.compliance(T0 + H),
    ),
    (
        "EvaluationExpiring",
        "warning",
        lambda b: b.compliance(T0, "evaluation", evaluation_ends_at=T0 + 10 * D),
        lambda b: b.compliance(T0 + H, "authorized"),
    ),
]


@pytest.mark.parametrize(
    ("alert", "severity", "raise_", "resolve_"), CATALOGUE_CASES, ids=[c[0] for c in CATALOGUE_CASES]
)
def test_catalogue_raise_and_resolve(alert: str, severity: str, raise_, resolve_) -> None:  # type: ignore[no-untyped-def]
    b = Build("i")
    state, actions = replay("i", [raise_(b)], RULES)
    assert _kinds(actions) == [("raised", alert), ("notify:raised", alert)]
    assert state.active[alert].severity == severity
    state, actions = replay("i", [raise_(b), resolve_(b)], RULES)
    assert _kinds(actions)[2:] == [("resolved", alert), ("notify:resolved", alert)]
    assert state.active == {}


def test_the_same_condition_again_raises_nothing_new() -> None:
    b = Build("i")
    _, actions = replay("i", [b.failure("authorization", T0), b.failure("authorization", T0 + H)], RULES)
    assert _kinds(actions) == [("raised", "RenewAuthorizationFailed"), ("notify:raised", "RenewAuthorizationFailed")]


def test_registering_again_resolves_the_failed_renewals() -> None:
    """An expired registration needs a new registration: that resolves RenewRegistrationFailed (and the
    authorization it renews)."""
    b = Build("i")
    events = [b.failure("registration", T0), b.failure("authorization", T0 + H), b.register(T0 + 2 * H)]
    state, actions = replay("i", events, RULES)
    assert state.active == {}
    assert {a.alert.alert for a in actions if isinstance(a, Resolved)} == {
        "RenewRegistrationFailed",
        "RenewAuthorizationFailed",
    }


def test_an_expired_authorization_does_not_resolve_out_of_compliance() -> None:
    b = Build("i")
    events = [
        b.compliance(T0, "out_of_compliance", ooc_since=T0),
        b.compliance(T0 + 90 * D, "authorization_expired", ooc_since=T0),
    ]
    state, actions = replay("i", events, RULES)
    assert "OutOfCompliance" in state.active
    assert not [a for a in actions if isinstance(a, Resolved)]


def test_a_license_control_breach_stays_while_usage_is_over() -> None:
    b = Build("i")
    events = [b.breach(T0, premium=1), b.usage(T0 + H, 0, 11, breach=(0, 1, 0)), b.usage(T0 + 2 * H, 0, 10)]
    _, actions = replay("i", events, RULES)
    assert [(k, a) for k, a in _kinds(actions) if k in ("raised", "resolved")] == [
        ("raised", "LicenseControlBreach"),
        ("resolved", "LicenseControlBreach"),
    ]
    assert [a.at for a in actions if isinstance(a, Resolved)] == [T0 + 2 * H]


def test_a_reservation_breach_is_its_own_alert_never_license_control() -> None:
    """The vendor: License Control does not apply to a reservation; usage above one is the reservation's breach."""
    b = Build("i")
    state, _ = replay("i", [b.breach(T0, standard=3, limit="reservation")], RULES)
    assert set(state.active) == {"ReservationBreach"}


def test_enforcement_says_how_each_cause_ends() -> None:
    b = Build("i")
    state, _ = replay(
        "i", [b.compliance(T0, "out_of_compliance", ooc_since=T0, enforcement=("out_of_compliance_expired",))], RULES
    )
    assert "purchase licenses" in state.active["EnforcementMode"].summary


def test_a_resolve_without_an_active_alert_does_nothing() -> None:
    b = Build("i")
    _, actions = replay("i", [b.authorization_renewed(T0), b.compliance(T0)], RULES)
    assert actions == []


def test_alert_ids_are_stable_and_new_per_occurrence() -> None:
    events = lambda b: [b.failure("reporting", T0), b.reporting_succeeded(T0 + H), b.failure("reporting", T0 + 2 * H)]  # noqa: E731
    _, first = replay("i", events(Build("i")), RULES)
    _, again = replay("i", events(Build("i")), RULES)
    ids = [a.alert.alert_id for a in first if isinstance(a, Raised)]
    assert ids == [a.alert.alert_id for a in again if isinstance(a, Raised)]
    assert len(set(ids)) == 2


def test_the_ooc_ladder_escalates_each_step_resolving_the_one_before() -> None:
    b = Build("i")
    m = timedelta(minutes=1)
    events = [
        b.compliance(T0, over_stage="detected", deficit=(0, 1, 0)),
        b.compliance(T0 + 30 * m, over_stage="imminent", over_since=T0, deficit=(0, 1, 0)),
        b.compliance(T0 + 45 * m, "out_of_compliance", ooc_since=T0 + 45 * m, deficit=(0, 1, 0)),
    ]
    state, actions = replay("i", events, RULES)
    assert _kinds(actions) == [
        ("raised", "OutOfComplianceDetected"),
        ("notify:raised", "OutOfComplianceDetected"),
        ("raised", "OutOfComplianceImminent"),
        ("resolved", "OutOfComplianceDetected"),
        ("notify:resolved", "OutOfComplianceDetected"),
        ("notify:raised", "OutOfComplianceImminent"),
        ("raised", "OutOfCompliance"),
        ("resolved", "OutOfComplianceImminent"),
        ("notify:resolved", "OutOfComplianceImminent"),
        ("notify:raised", "OutOfCompliance"),
    ]
    reasons = [a.reason for a in actions if isinstance(a, Resolved)]
    assert reasons == ["escalated to OutOfComplianceImminent", "escalated to OutOfCompliance"]
    assert list(state.active) == ["OutOfCompliance"]
    detected = next(a for a in actions if isinstance(a, Raised))
    assert "Premium short by 1" in detected.alert.summary


def test_over_consumption_that_clears_resolves_the_ladder_step() -> None:
    b = Build("i")
    _, actions = replay("i", [b.compliance(T0, over_stage="detected"), b.compliance(T0 + H)], RULES)
    assert [a.reason for a in actions if isinstance(a, Resolved)] == ["over-consumption cleared"]


@pytest.mark.parametrize(
    ("severity_alert", "make", "every"),
    [
        ("critical", lambda b, t: b.failure("agent_init", t), 4 * H),
        ("major", lambda b, t: b.failure("authorization", t), 12 * H),
        ("warning", lambda b, t: b.failure("reporting", t), 24 * H),
    ],
)
def test_repeats_follow_severity_by_event_time(severity_alert: str, make, every: timedelta) -> None:  # type: ignore[no-untyped-def]
    b = Build("i")
    events = [
        make(b, T0),
        b.tick(T0 + every - timedelta(seconds=1)),
        b.tick(T0 + every),
        b.tick(T0 + every + H),
        b.tick(T0 + 2 * every),
    ]
    _, actions = replay("i", events, RULES)
    notices = [(a.kind, a.at) for a in actions if isinstance(a, Notice)]
    assert notices == [("raised", T0), ("repeat", T0 + every), ("repeat", T0 + 2 * every)]


def test_enforcement_inhibits_the_ooc_ladder() -> None:
    b = Build("i")
    events = [
        b.compliance(T0, "out_of_compliance", ooc_since=T0),
        b.compliance(T0 + 90 * D, "out_of_compliance", ooc_since=T0, enforcement=("out_of_compliance_expired",)),
        b.tick(T0 + 90 * D + H),  # OutOfCompliance would repeat (critical, 4 h) but is inhibited
    ]
    state, actions = replay("i", events, RULES)
    assert _kinds(actions)[2:] == [("raised", "EnforcementMode"), ("notify:raised", "EnforcementMode")]
    assert set(state.active) == {"OutOfCompliance", "EnforcementMode"}


def test_an_inhibited_alert_is_recorded_not_notified_then_notified_when_the_inhibitor_ends() -> None:
    b = Build("i")
    events = [b.failure("agent_init", T0), b.failure("reporting", T0 + H), b.agent_initialized(T0 + 2 * H)]
    state, actions = replay("i", events, RULES)
    assert _kinds(actions) == [
        ("raised", "SmartAgentInitFailed"),
        ("notify:raised", "SmartAgentInitFailed"),
        ("raised", "UsageReportingFailed"),
        ("held", "UsageReportingFailed"),
        ("resolved", "SmartAgentInitFailed"),
        ("notify:resolved", "SmartAgentInitFailed"),
        ("notify:raised", "UsageReportingFailed"),
    ]
    held = next(a for a in actions if isinstance(a, Held))
    assert held.why == "inhibited by SmartAgentInitFailed"
    assert "UsageReportingFailed" in state.active


def test_a_silence_holds_notifications_but_never_the_resolve() -> None:
    b = Build("i")
    silence = Silence("s1", "i", "RenewAuthorizationFailed", T0 - H, T0 + 2 * D, "ops", "maintenance")
    events = [b.failure("authorization", T0), b.tick(T0 + 13 * H), b.authorization_renewed(T0 + 14 * H)]
    _, actions = replay("i", events, RULES, [silence])
    assert _kinds(actions) == [
        ("raised", "RenewAuthorizationFailed"),
        ("held", "RenewAuthorizationFailed"),
        ("resolved", "RenewAuthorizationFailed"),
        ("notify:resolved", "RenewAuthorizationFailed"),
    ]
    assert "silenced by s1 (ops: maintenance)" in next(a for a in actions if isinstance(a, Held)).why


def test_a_silence_selects_by_instance_and_alert_and_time() -> None:
    s = Silence("s", "i", None, T0, T0 + H, "a", "c")
    assert s.matches("i", "OutOfCompliance", T0)
    assert not s.matches("j", "OutOfCompliance", T0)
    assert not s.matches("i", "OutOfCompliance", T0 + H)
    any_instance = Silence("s", None, "EvaluationExpiring", T0, T0 + H, "a", "c")
    assert any_instance.matches("x", "EvaluationExpiring", T0) and not any_instance.matches("x", "OutOfCompliance", T0)


def test_an_alert_silenced_at_raise_is_notified_when_the_silence_ends() -> None:
    b = Build("i")
    silence = Silence("s1", None, None, T0, T0 + H, "ops", "window")
    _, actions = replay("i", [b.failure("agent_init", T0), b.tick(T0 + 2 * H)], RULES, [silence])
    assert [(a.kind, a.at) for a in actions if isinstance(a, Notice)] == [("raised", T0 + 2 * H)]


def test_evaluation_expiring_at_14_7_and_1_days_then_resolved_by_expiry() -> None:
    b = Build("i")
    ends = T0 + 90 * D
    events = [
        b.compliance(T0, "evaluation", evaluation_ends_at=ends),
        b.tick(ends - 15 * D),
        b.tick(ends - 14 * D),
        b.tick(ends - 10 * D),
        b.tick(ends - 7 * D),
        b.tick(ends - 1 * D),
        b.compliance(ends, "evaluation_expired", enforcement=("evaluation_expired",)),
    ]
    _, actions = replay("i", events, RULES)
    expiring = [
        (k, a.at) for a in actions if isinstance(a, Notice) for k in [a.kind] if a.alert.alert == "EvaluationExpiring"
    ]
    assert expiring == [
        ("raised", ends - 14 * D),
        ("repeat", ends - 10 * D),  # a warning repeats every 24 h like any other
        ("reminder", ends - 7 * D),
        ("reminder", ends - D),
        ("resolved", ends),
    ]
    resolved = next(a for a in actions if isinstance(a, Resolved) and a.alert.alert == "EvaluationExpiring")
    assert resolved.reason == "evaluation expired"


def test_evaluation_expiring_resolved_by_registration() -> None:
    b = Build("i")
    ends = T0 + 5 * D
    _, actions = replay("i", [b.compliance(T0, "evaluation", evaluation_ends_at=ends), b.compliance(T0 + D)], RULES)
    assert _kinds(actions)[-2:] == [("resolved", "EvaluationExpiring"), ("notify:resolved", "EvaluationExpiring")]
    assert next(a for a in actions if isinstance(a, Resolved)).alert.deadline == ends


def test_failure_alerts_carry_the_deadline_they_threaten() -> None:
    b = Build("i")
    events = [b.compliance(T0, authorization_expires_at=T0 + 90 * D), b.failure("authorization", T0 + D)]
    state, _ = replay("i", events, RULES)
    assert state.active["RenewAuthorizationFailed"].deadline == T0 + 90 * D


def test_severity_can_be_overridden() -> None:
    b = Build("i")
    rules = Rules(severity={"UsageReportingFailed": "critical"})
    state, _ = replay("i", [b.failure("reporting", T0)], rules)
    assert state.active["UsageReportingFailed"].severity == "critical"


# ---------------------------------------------------------------- properties

INPUTS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "fail_auth",
                "ok_auth",
                "fail_init",
                "ok_init",
                "fail_rep",
                "ok_rep",
                "over",
                "imminent",
                "ooc",
                "enforce",
                "clear",
                "tick",
            ]
        ),
        st.integers(0, 60 * 24 * 10),
    ),
    max_size=40,
)


def _events(script: list[tuple[str, int]]) -> list[Event]:
    b = Build("i")
    m = timedelta(minutes=1)
    make = {
        "fail_auth": lambda t: b.failure("authorization", t),
        "ok_auth": lambda t: b.authorization_renewed(t),
        "fail_init": lambda t: b.failure("agent_init", t),
        "ok_init": lambda t: b.agent_initialized(t),
        "fail_rep": lambda t: b.failure("reporting", t),
        "ok_rep": lambda t: b.reporting_succeeded(t),
        "over": lambda t: b.compliance(t, over_stage="detected"),
        "imminent": lambda t: b.compliance(t, over_stage="imminent"),
        "ooc": lambda t: b.compliance(t, "out_of_compliance", ooc_since=t),
        "enforce": lambda t: b.compliance(
            t, "out_of_compliance", ooc_since=t, enforcement=("out_of_compliance_expired",)
        ),
        "clear": lambda t: b.compliance(t),
        "tick": lambda t: b.tick(t),
    }
    return [make[k](T0 + n * m) for k, n in sorted(script, key=lambda s: s[1])]


@settings(max_examples=200, deadline=None)
@given(INPUTS)
def test_raised_once_resolved_once_and_never_notified_while_held(script: list[tuple[str, int]]) -> None:
    s = State(instance="i")
    raised: dict[str, int] = {}
    resolved: dict[str, int] = {}
    for e in _events(script):
        r = step(s, e, RULES)
        for a in r.actions:
            if isinstance(a, Raised):
                assert a.alert.alert not in s.active  # raised only when not active
                raised[a.alert.alert_id] = raised.get(a.alert.alert_id, 0) + 1
            if isinstance(a, Resolved):
                resolved[a.alert.alert_id] = resolved.get(a.alert.alert_id, 0) + 1
            if isinstance(a, Notice) and a.kind != "resolved":
                active = r.state.active
                assert not (
                    a.alert.alert in ("OutOfComplianceDetected", "OutOfComplianceImminent", "OutOfCompliance")
                    and "EnforcementMode" in active
                )
                assert not (
                    a.alert.alert in ("RenewAuthorizationFailed", "EntitlementReportingFailed")
                    and "SmartAgentInitFailed" in active
                )
        s = r.state
        ladder = [x for x in ("OutOfComplianceDetected", "OutOfComplianceImminent", "OutOfCompliance") if x in s.active]
        assert len(ladder) <= 1  # one ladder step at a time
    assert all(n == 1 for n in raised.values()) and all(n == 1 for n in resolved.values())
    assert set(resolved) <= set(raised)


@settings(max_examples=100, deadline=None)
@given(INPUTS)
def test_a_redelivered_input_changes_nothing_when_dedup_is_bypassed_for_conditions(
    script: list[tuple[str, int]],
) -> None:
    """Feeding a condition input twice in a row (as a broker redelivery would without the dedup record) raises and
    notifies nothing new: conditions are idempotent by fingerprint."""
    s = State(instance="i")
    for e in _events(script):
        s = step(s, e, RULES).state
        again = step(s, e, RULES)
        assert not any(isinstance(a, Raised | Resolved) for a in again.actions)
        assert again.state.active == s.active


# ---------------------------------------------------------------- termination, from any state

_ALERTS = sorted(CATALOGUE)
_times = st.integers(0, 60 * 24 * 400).map(lambda m: T0 + timedelta(minutes=m))
_active = st.builds(
    Active,
    alert_id=st.text("abc", min_size=1, max_size=4),
    alert=st.sampled_from(_ALERTS),
    severity=st.sampled_from(["critical", "major", "warning"]),
    raised_at=_times,
    summary=st.just("s"),
    deadline=st.none() | _times,
    notified_at=st.none() | _times,
    stage=st.integers(0, 3),
    notified_stage=st.integers(0, 3),
)
any_state = st.builds(
    State,
    instance=st.just("i"),
    now=st.none() | _times,
    active=st.lists(_active, max_size=6).map(lambda xs: {a.alert: a for a in xs}),
)


@settings(max_examples=int(__import__("os").environ.get("CCXLIC_FUZZ_EXAMPLES", "300")), deadline=None)
@given(
    any_state,
    INPUTS,
    st.lists(
        st.builds(
            Silence,
            st.just("s"),
            st.none() | st.just("i"),
            st.none() | st.sampled_from(_ALERTS),
            _times,
            _times,
            st.just("a"),
            st.just("c"),
        ),
        max_size=2,
    ),
)
def test_every_step_returns_from_any_state(
    state: State, script: list[tuple[str, int]], silences: list[Silence]
) -> None:
    """Whatever alerts are active, held or due, and whatever comes, `step` returns, and never leaves an alert both
    active and resolved in one step."""
    for event in [*_events(script), Build("i").tick(T0 + timedelta(days=900))]:
        result = step(state, event, Rules(), silences)
        resolved = {a.alert.alert for a in result.actions if isinstance(a, Resolved)}
        raised = {a.alert.alert for a in result.actions if isinstance(a, Raised)}
        assert not (resolved & set(result.state.active) - raised)
        state = result.state


def test_the_forecast_alert_says_when_by_how_much_and_the_lead_and_yields_to_the_live_verdict() -> None:
    b = Build("i")
    r = step(State(instance="i"), b.compliance(T0, forecast=FORECAST), RULES, [])
    [raised] = [a.alert for a in r.actions if isinstance(a, Raised)]
    assert raised.alert == "OutOfComplianceForecast" and raised.deadline == T0 + 48 * H
    assert raised.details["lead_hours"] == 48 and raised.details["over"] == {"premium": 2}
    assert "may go over its licenses" in raised.summary and "an estimate" in raised.summary
    # once out of compliance, the live verdict inhibits the estimate's notices
    ooc = b.compliance(T0, "out_of_compliance", ooc_since=T0 - H, forecast=FORECAST)
    r = step(State(instance="i"), ooc, RULES, [])
    assert ("held", "OutOfComplianceForecast") in _kinds(r.actions)
