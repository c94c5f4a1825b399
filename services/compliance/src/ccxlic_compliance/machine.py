"""The compliance state machine: pure functions of (state, input, rules).

Time is event time. An instance's "now" is the largest `time` among its inputs (ticks included). Each input is
handled in three moves:

1. the clock advances to the input's time: every deadline at or before it fires, in time order, each as its own
   transition stamped with the deadline itself (so the history does not depend on how often ticks come);
2. the input takes effect at its own time (a late input keeps its time: a late registration counts the evaluation
   used up to the registration, not up to "now");
3. the clock advances to "now" again: deadlines the effect created in the past (a late over-consumption) fire.

Every change of the published view (state, deficit or deadlines) is one `Transition`, with its cause (the input's
id and type) and its evidence in words.

The vendor's rules this module keeps (../shared/domain, "License States"):
- Evaluation is an unregistered, unreserved instance: 90 days of unlimited use, then enforcement; registering ends
  it ("Register the Product Instance with Cisco SSM to exit the evaluation expiry state").
- A registered instance over its entitlements for the 45-minute tolerance, or answered "out of compliance" by the
  licensing authority, is Out of Compliance; 90 days later it is in enforcement, and only a purchase ends that
  ("Purchase new licenses to exit the Enforcement state"): entitlements that cover the peaks that caused it
  (`required`). Usage that drops back does not.
- 90 days without communication expire the authorization and start enforcement; only an authorization renewal ends
  it ("Renew the license authorizations to exit the Authorization expiry state"), not a usage report.
- A reserved instance is never out of compliance from its usage ("Over-consumption of licenses is not allowed in
  Specific License Reservation"): the consumption computer refuses what would exceed it, and reports a roster or a
  sample above it as a breach.
- The licensing authority judges compliance per virtual account: an instance that registers into an account still
  out of compliance continues the account's clock.
- A Lab (non-production) instance is never put in enforcement: the document is silent, and this is our choice,
  a setting (`enforce_lab`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    Authorization,
    AuthorizationRenewed,
    ClassicLicensingUsed,
    ComplianceChangedData,
    ConsumptionChanged,
    Deadlines,
    Deficit,
    Deployment,
    Enforcement,
    EnforcementReason,
    EntitlementsSet,
    ForecastRisk,
    InstanceDeregistered,
    InstanceRegistered,
    IntervalClosed,
    LicenseCounts,
    MigratedToSmart,
    OverStage,
    PresenceLicense,
    Registration,
    RegistrationRenewed,
    ReportingSucceeded,
    ReportingSucceededData,
    ReservationInstalled,
    ReservationReturned,
)
from ccxlic_rules import Entitlement, Usage, deficit, interval_start
from ccxlic_rules.forecast import WEEK, forecast, risks
from ccxlic_rules.pool import over
from pydantic import BaseModel, ConfigDict

DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Rules:
    """The durations; the defaults are the vendor's."""

    evaluation: timedelta = 90 * DAY
    ooc_warning: timedelta = timedelta(minutes=30)
    ooc_tolerance: timedelta = timedelta(minutes=45)
    ooc_grace: timedelta = 90 * DAY
    authorization_valid: timedelta = 90 * DAY
    authorization_grace: timedelta = timedelta(0)  # README "Enforcement after authorization expiry": 90 d, not 180
    registration_valid: timedelta = 365 * DAY
    interval: timedelta = timedelta(hours=8)
    enforce_lab: bool = False  # ours, not the vendor's: the document does not say whether a Lab system is enforced
    forecast_weeks: int = 6  # ours: the interval peaks kept (and the weeks the forecast rests on at most)
    forecast_min_weeks: int = 3  # ours: fewer full weeks of peaks, no forecast


class Counts(BaseModel):
    model_config = ConfigDict(frozen=True)

    standard: int = 0
    premium: int = 0
    ivr_ports: int = 0

    def usage(self) -> Usage:
        return Usage(standard=self.standard, premium=self.premium, ivr_ports=self.ivr_ports)

    def entitlement(self) -> Entitlement:
        return Entitlement(standard=self.standard, premium=self.premium, ivr_ports=self.ivr_ports)

    def maximum(self, other: Counts) -> Counts:
        return Counts(
            standard=max(self.standard, other.standard),
            premium=max(self.premium, other.premium),
            ivr_ports=max(self.ivr_ports, other.ivr_ports),
        )

    def busy(self) -> bool:
        return self.standard > 0 or self.premium > 0 or self.ivr_ports > 0

    def covered_by(self, limits: Counts) -> bool:
        """These counts in use fit `limits` (idle Premium covering Standard)."""
        return not over(deficit(self.usage(), limits.entitlement()))

    def wire(self) -> LicenseCounts:
        return LicenseCounts(standard=self.standard, premium=self.premium, ivr_ports=self.ivr_ports)

    @classmethod
    def of(cls, c: LicenseCounts) -> Counts:
        return cls(standard=c.standard, premium=c.premium, ivr_ports=c.ivr_ports)


class State(BaseModel):
    """What compliance holds per instance: the facts the rules need, not the derived view."""

    model_config = ConfigDict(frozen=True)

    instance: str
    now: datetime | None = None
    deployment: Deployment = "production"
    entitled: Counts | None = None
    reserved: Counts | None = None
    usage: Counts = Counts()
    interval_start: datetime | None = None
    interval_peak: Counts = Counts()
    registration: Registration = "unregistered"
    ever_used: bool = False
    evaluation_used: timedelta = timedelta(0)
    evaluation_since: datetime | None = None  # the current unregistered stretch, while the evaluation clock runs
    evaluation_expired: bool = False
    last_communication: datetime | None = None
    registration_valid_until: datetime | None = None
    authorization_expired: bool = False
    over_since: datetime | None = None
    over_stage: OverStage | None = None
    ooc_since: datetime | None = None
    enforcement_reasons: tuple[EnforcementReason, ...] = ()
    enforcement_since: datetime | None = None
    # the highest usage of the current over-consumption episode, from its start until the out-of-compliance grace
    # ends (then frozen): what the entitlements must cover to end it for good (`required` in the view)
    over_peak: Counts | None = None
    missing: tuple[PresenceLicense, ...] = ()  # Server / Warm Standby licenses the last entitlements lacked
    computation_failed: bool = False  # a licensing.consumption.failed came and no consumption.changed since
    control_breached: bool = False  # a licensing.control.breached came and no consumption.changed without one since
    migrated: bool = False  # it migrated from Classic to Smart Licensing (one way)
    # the interval peaks of the last weeks, (start, revision, Standard, Premium, IVR ports), for the forecast
    peaks: tuple[tuple[datetime, int, int, int, int], ...] = ()
    forecast: ForecastRisk | None = None  # an estimate: the first coming run of intervals over what it may use
    forecast_peak: Counts | None = None  # an estimate: the highest p90 of the coming week (None: too little history)

    # ------------------------------------------------------------ derived

    def limits(self) -> Counts | None:
        """What usage is measured against: the reservation while one is installed, else the entitlements."""
        return self.reserved if self.registration == "reserved" else self.entitled

    def registered(self) -> bool:
        return self.registration in ("registered", "registration_expired")

    def evaluating(self) -> bool:
        return self.registration == "unregistered"

    def deficit(self) -> Counts:
        limits = self.limits()
        if not self.watched() or limits is None:
            return Counts()
        d = deficit(self.usage.usage(), limits.entitlement())
        return Counts(standard=d.standard, premium=d.premium, ivr_ports=d.ivr_ports)

    def watched(self) -> bool:
        """Usage is held to entitlements (the over-consumption ladder runs): registered. Not in evaluation
        (unlimited), and not under a reservation, which refuses over-consumption instead of tolerating it."""
        return self.registration in ("registered", "registration_expired")

    def enforceable(self, rules: Rules) -> bool:
        """Enforcement can happen: a production instance, or a Lab one where the site chose to enforce Lab."""
        return self.deployment == "production" or rules.enforce_lab

    def ooc_enforced(self) -> bool:
        """In enforcement for out-of-compliance expiry: only a purchase (entitlements that cover `over_peak`) ends
        it."""
        return "out_of_compliance_expired" in self.enforcement_reasons

    def authorization(self) -> Authorization:
        if self.registration == "reserved":
            return "reserved"
        if self.registration == "classic":
            return "classic"
        if self.evaluating():
            if self.evaluation_expired:
                return "evaluation_expired"
            return "evaluation" if self.ever_used else "no_licenses_in_use"
        if self.authorization_expired:
            return "authorization_expired"
        return "out_of_compliance" if self.ooc_since is not None else "authorized"

    def key(self, rules: Rules) -> tuple[Any, ...]:
        """What the published view is made of, as plain values: cheap to compare on every input (a transition is a
        change of it); `view` builds the event's data from it only when it changed."""
        limits = self.limits()
        if not self.watched() or limits is None:
            d: tuple[int, int, int] = (0, 0, 0)
        else:
            a = deficit(self.usage.usage(), limits.entitlement())
            d = (a.standard, a.premium, a.ivr_ports)
        enforcement_at = None
        if self.enforceable(rules):
            pending = _enforcement_deadlines(self, rules)
            enforcement_at = min(pending) if pending else None
        registered = self.registered()
        return (
            self.registration,
            self.authorization(),
            self.enforcement_reasons,
            self.enforcement_since,
            self.over_since,
            self.over_stage,
            self.ooc_since,
            d,
            self.over_peak if self.ooc_since is not None else None,
            self.missing if registered else (),
            self.evaluation_ends_at(rules),
            None if self.over_since is None else self.over_since + rules.ooc_tolerance,
            enforcement_at,
            self.last_communication + rules.authorization_valid
            if registered and self.last_communication is not None
            else None,
            self.registration_valid_until if registered else None,
            self.forecast,
        )

    def view(self, rules: Rules) -> ComplianceChangedData:
        return _view(self.key(rules))

    def evaluation_ends_at(self, rules: Rules) -> datetime | None:
        if self.evaluation_since is None or self.evaluation_expired:
            return None
        return self.evaluation_since + max(timedelta(0), rules.evaluation - self.evaluation_used)


def _view(key: tuple[Any, ...]) -> ComplianceChangedData:
    registration, authorization, reasons, since, over_since, over_stage, ooc_since, d, required, missing, *deadlines = (
        key
    )
    ends, ooc_at, enforcement_at, authorization_expires_at, registration_expires_at, forecast_risk = deadlines
    return ComplianceChangedData(
        registration=registration,
        authorization=authorization,
        enforcement=Enforcement(active=bool(reasons), reasons=reasons, since=since),
        deficit=Deficit(standard=d[0], premium=d[1], ivr_ports=d[2]),
        over_since=over_since,
        over_stage=over_stage,
        ooc_since=ooc_since,
        required=None if required is None else required.wire(),
        missing_licenses=missing,
        deadlines=Deadlines(
            evaluation_ends_at=ends,
            ooc_at=ooc_at,
            enforcement_at=enforcement_at,
            authorization_expires_at=authorization_expires_at,
            registration_expires_at=registration_expires_at,
        ),
        forecast=forecast_risk,
    )


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of the published view, with its cause."""

    at: datetime
    cause_id: str
    cause_type: str
    evidence: str
    view: ComplianceChangedData


@dataclass(frozen=True, slots=True)
class Step:
    state: State
    transitions: tuple[Transition, ...]
    key: tuple[Any, ...] | None = None  # state.key(rules), when the step knows it (the next step need not compute it)


# ---------------------------------------------------------------- deadlines

Fire = Callable[[State, datetime, Rules], tuple[State, str]]


def _enforcement_deadlines(s: State, rules: Rules) -> list[datetime]:
    """When enforcement would start, for each reason not active yet."""
    out: list[datetime] = []
    ends = s.evaluation_ends_at(rules)
    if ends is not None and "evaluation_expired" not in s.enforcement_reasons:
        out.append(ends)
    if s.ooc_since is not None and "out_of_compliance_expired" not in s.enforcement_reasons:
        out.append(s.ooc_since + rules.ooc_grace)
    if s.registered() and s.last_communication is not None and "authorization_expired" not in s.enforcement_reasons:
        out.append(s.last_communication + rules.authorization_valid + rules.authorization_grace)
    return out


def _deadlines(s: State, rules: Rules) -> list[tuple[datetime, int, Fire]]:
    """Every deadline that is pending, with an order for ties (earlier stages first)."""
    out: list[tuple[datetime, int, Fire]] = []
    ends = s.evaluation_ends_at(rules)
    if ends is not None:
        out.append((ends, 0, _evaluation_expires))
    if s.over_since is not None:
        if s.over_stage == "detected":
            out.append((s.over_since + rules.ooc_warning, 1, _ooc_imminent))
        out.append((s.over_since + rules.ooc_tolerance, 2, _ooc_starts))
    # A grace that ends in enforcement is pending only where enforcement can happen: a deadline that
    # fires without changing anything would stay due for ever.
    production = s.enforceable(rules)
    if production and s.ooc_since is not None and "out_of_compliance_expired" not in s.enforcement_reasons:
        out.append((s.ooc_since + rules.ooc_grace, 3, _ooc_grace_ends))
    if s.forecast is not None:
        out.append((s.forecast.start, 6, _forecast_window_opens))
    if s.registered() and s.last_communication is not None:
        if not s.authorization_expired:
            out.append((s.last_communication + rules.authorization_valid, 4, _authorization_expires))
        elif production and "authorization_expired" not in s.enforcement_reasons:
            out.append(
                (
                    s.last_communication + rules.authorization_valid + rules.authorization_grace,
                    5,
                    _authorization_grace_ends,
                )
            )
    if s.registration == "registered" and s.registration_valid_until is not None:
        out.append((s.registration_valid_until, 6, _registration_expires))
    return out


def _enforce(s: State, reason: EnforcementReason, at: datetime, rules: Rules) -> State:
    if not s.enforceable(rules) or reason in s.enforcement_reasons:
        return s
    reasons = tuple(sorted((*s.enforcement_reasons, reason)))
    return s.model_copy(update={"enforcement_reasons": reasons, "enforcement_since": s.enforcement_since or at})


def _lift(s: State, *reasons: EnforcementReason) -> State:
    left = tuple(r for r in s.enforcement_reasons if r not in reasons)
    return s.model_copy(
        update={"enforcement_reasons": left, "enforcement_since": s.enforcement_since if left else None}
    )


def _forecast_window_opens(s: State, at: datetime, rules: Rules) -> tuple[State, str]:
    return s.model_copy(update={"forecast": None}), "the forecast's window began: live usage judges it from here"


def _evaluation_expires(s: State, at: datetime, rules: Rules) -> tuple[State, str]:
    s = s.model_copy(update={"evaluation_expired": True, "evaluation_used": rules.evaluation, "evaluation_since": None})
    return _enforce(
        s, "evaluation_expired", at, rules
    ), f"evaluation period ({_days(rules.evaluation)}) used up at {_t(at)}"


def _ooc_imminent(s: State, at: datetime, rules: Rules) -> tuple[State, str]:
    return s.model_copy(update={"over_stage": "imminent"}), (
        f"still over entitlements {_minutes(rules.ooc_warning)} after {_t(s.over_since)}: {_over_words(s)}"
    )


def _ooc_starts(s: State, at: datetime, rules: Rules) -> tuple[State, str]:
    words = _over_words(s)
    s = s.model_copy(update={"ooc_since": at, "over_since": None, "over_stage": None})  # over_peak carries on
    return s, f"over entitlements for the {_minutes(rules.ooc_tolerance)} tolerance: {words}"


def _ooc_grace_ends(s: State, at: datetime, rules: Rules) -> tuple[State, str]:
    return _enforce(s, "out_of_compliance_expired", at, rules), (
        f"out of compliance since {_t(s.ooc_since)}: the {_days(rules.ooc_grace)} grace ended at {_t(at)}; only a "
        f"purchase ends the enforcement: entitlements that cover {_usage_words(s.over_peak or s.usage)}"
    )


def _authorization_expires(s: State, at: datetime, rules: Rules) -> tuple[State, str]:
    return s.model_copy(update={"authorization_expired": True}), (
        f"no successful communication since {_t(s.last_communication)} ({_days(rules.authorization_valid)})"
    )


def _authorization_grace_ends(s: State, at: datetime, rules: Rules) -> tuple[State, str]:
    return _enforce(s, "authorization_expired", at, rules), (
        f"authorization expired and not renewed within {_days(rules.authorization_grace)}; "
        f"last successful communication {_t(s.last_communication)}"
    )


def _registration_expires(s: State, at: datetime, rules: Rules) -> tuple[State, str]:
    return s.model_copy(update={"registration": "registration_expired"}), (
        f"registration not renewed by {_t(s.registration_valid_until)}"
    )


# ---------------------------------------------------------------- the step


def step(state: State, event: Event, rules: Rules, key: tuple[Any, ...] | None = None) -> Step:
    """Apply one input to one instance's state. `key`: `state.key(rules)` when the caller has it (the last step's)."""
    t = event.time
    now = t if state.now is None or t > state.now else state.now
    out: list[Transition] = []
    s = _advance(state, t, event, rules, out)
    if state.now is None:
        before = None  # an instance's first input always makes history
    elif s is state and key is not None:
        before = key  # no deadline fired: the state is the one the caller knows
    else:
        before = s.key(rules)
    s, evidence = _effect(s, event, t, rules)
    if isinstance(event, _FORECAST_INPUTS):
        s, said = _forecast(s, rules, now)
        evidence += said
    s = s.model_copy(update={"now": now})
    after = s.key(rules)
    if after != before:  # a late input's effect is stamped when it is seen: history stays in time order
        out.append(Transition(now, event.id, event.type, evidence, _view(after)))
    final = _advance(s, now, event, rules, out)
    return Step(final, tuple(out), after if final is s else None)


MAX_FIRES = 16
"""Deadlines one input can fire: each kind at most twice (a handful exist). More means a deadline that does not
go away when it fires, a bug that would otherwise hold the service in a loop."""


class DeadlinesDidNotSettle(RuntimeError):
    """A deadline kept firing (see MAX_FIRES). The input is dead-lettered; the service goes on."""


def _advance(s: State, until: datetime, event: Event, rules: Rules, out: list[Transition]) -> State:
    for _ in range(MAX_FIRES):
        due = sorted((d for d in _deadlines(s, rules) if d[0] <= until), key=lambda d: (d[0], d[1]))
        if not due:
            return s
        at, _, fire = due[0]
        before = s.key(rules)
        s, evidence = fire(s, at, rules)
        after = s.key(rules)
        if after != before:
            out.append(Transition(at, event.id, event.type, evidence, _view(after)))
    raise DeadlinesDidNotSettle(
        f"{s.instance}: deadlines still due after {MAX_FIRES} fired, at {event.type} {event.id}"
    )


def _effect(s: State, event: Event, t: datetime, rules: Rules) -> tuple[State, str]:
    """The input's own effect, at its own time t."""
    if isinstance(event, ConsumptionChanged):
        d = event.data
        usage = Counts(standard=d.standard, premium=d.premium, ivr_ports=d.ivr_ports)
        s = _observe_usage(s, usage, t, rules)
        if s.evaluating() and not s.ever_used and usage.busy():
            s = s.model_copy(update={"ever_used": True, "evaluation_since": t})
            s, words = _check_over(s, t)
            return s, f"first usage ({_usage_words(usage)}): evaluation starts"
        s, words = _check_over(s, t)
        return s, words or f"usage now {_usage_words(usage)}"
    if isinstance(event, EntitlementsSet):
        return _entitlements(s, event, t, rules)
    if isinstance(event, IntervalClosed):
        d3 = event.data
        peak = Counts(standard=d3.peak.standard, premium=d3.peak.premium, ivr_ports=d3.peak.ivr_ports)
        s = _keep_peak(s, d3.interval_start, d3.revision, peak)
        limits = s.limits()
        words = f"interval from {_t(d3.interval_start)} closed (revision {d3.revision}), peak {_usage_words(peak)}"
        episode = s.over_since or (s.ooc_since - rules.ooc_tolerance if s.ooc_since is not None else None)
        if episode is not None and d3.interval_end > episode:
            s = _episode_peak(s, peak)
        if (
            s.ooc_since is not None
            and d3.interval_start >= s.ooc_since
            and limits is not None
            and peak.covered_by(limits)
        ):
            if s.ooc_enforced():
                words += f", within entitlements {_usage_words(limits)}, but enforcement ends only with a purchase"
            else:
                s = _leave_ooc(s)
                words += f", within entitlements {_usage_words(limits)}"
        s, over_words = _check_over(s, t)
        return s, words + (f"; {over_words}" if over_words else "")
    if isinstance(event, InstanceRegistered):
        if s.registration == "reserved":
            return s, "registration ignored: a reservation is installed (return it first)"
        s = _stop_evaluation(s, t, rules)
        s = s.model_copy(
            update={
                "registration": "registered",
                "evaluation_expired": False,
                "authorization_expired": False,
                "last_communication": _later(s.last_communication, t),
                "registration_valid_until": t + rules.registration_valid,
            }
        )
        s = _lift(s, "evaluation_expired", "authorization_expired")
        words = f"registered with virtual account {event.data.virtual_account!r}"
        since = event.data.out_of_compliance_since
        if since is not None:
            required = None if event.data.required is None else Counts.of(event.data.required)
            s, carried = _account_ooc(s, since, required, t, rules)
            words += f"; {carried}"
        s, over_words = _check_over(s, t)
        return s, words + (f"; {over_words}" if over_words else "")
    if isinstance(event, AuthorizationRenewed | ReportingSucceeded | RegistrationRenewed):
        if not s.registered():
            return s, f"{event.type} ignored: the instance is {s.registration}"
        if s.registration == "registration_expired":
            return s, f"{event.type} refused: the registration expired; register the instance again"
        if s.authorization_expired and isinstance(event, ReportingSucceeded):
            # the vendor: "Renew the license authorizations to exit the Authorization expiry state"
            words = "usage report accepted; the authorization is still expired: it ends only with a renewal"
            if event.data.verdict is not None:
                s, verdict = _verdict(s, event.data, t, rules)
                words += f"; {verdict}"
            return s, words
        last = _later(s.last_communication, t)
        s = s.model_copy(update={"last_communication": last})
        words = f"successful communication at {_t(t)}"
        now = s.now if s.now is not None and s.now > t else t
        if s.authorization_expired and last + rules.authorization_valid > now:
            s = _lift(s.model_copy(update={"authorization_expired": False}), "authorization_expired")
            words += ": authorization renewed"
        if isinstance(event, RegistrationRenewed):
            valid = _later(s.registration_valid_until, t + rules.registration_valid)
            s = s.model_copy(update={"registration_valid_until": valid})
            words += f"; registration valid until {_t(valid)}"
        if isinstance(event, ReportingSucceeded) and event.data.verdict is not None:
            s, verdict = _verdict(s, event.data, t, rules)
            words += f"; {verdict}"
        return s, words
    if isinstance(event, ReservationInstalled):
        if s.registered():
            return (
                s,
                "reservation ignored: a reservation is installed only on an unregistered instance (deregister first)",
            )
        d4 = event.data
        reserved = Counts(standard=d4.standard_seats, premium=d4.premium_seats, ivr_ports=d4.ivr_ports)
        s = _stop_evaluation(s, t, rules)
        s = s.model_copy(
            update={
                "registration": "reserved",
                "reserved": reserved,
                "evaluation_expired": False,
                "authorization_expired": False,
            }
        )
        s = _lift(s, "evaluation_expired", "authorization_expired")
        return s, (
            f"specific license reservation installed: {_usage_words(reserved)} (over-consumption is not allowed: "
            "sign-ins beyond it are refused, never out of compliance)"
        )
    if isinstance(event, ClassicLicensingUsed):
        if s.migrated:
            return s, "classic licensing ignored: once migrated to Smart Licensing, it cannot use Classic Licensing"
        if s.registration != "unregistered":
            return s, f"classic licensing ignored: the instance uses Smart Licensing ({s.registration})"
        s = _stop_evaluation(s, t, rules)
        s = _lift(s.model_copy(update={"registration": "classic", "evaluation_expired": False}), "evaluation_expired")
        return s, "Classic Licensing: no Smart Licensing evaluation, registration or enforcement"
    if isinstance(event, MigratedToSmart):
        if s.registration != "classic":
            return s.model_copy(
                update={"migrated": True}
            ), f"migration to Smart Licensing: already on it ({s.registration})"
        s = s.model_copy(update={"registration": "unregistered", "migrated": True})
        if s.ever_used or s.usage.busy():
            s = s.model_copy(update={"ever_used": True})
            if s.evaluation_used >= rules.evaluation:
                s = _enforce(s.model_copy(update={"evaluation_expired": True}), "evaluation_expired", t, rules)
                return s, "migrated to Smart Licensing: the evaluation period is used up"
            s = s.model_copy(update={"evaluation_since": t})
            return (
                s,
                f"migrated to Smart Licensing: evaluation runs, {_days(rules.evaluation - s.evaluation_used)} left",
            )
        return s, "migrated to Smart Licensing: evaluation starts with the first usage"
    if isinstance(event, InstanceDeregistered | ReservationReturned):
        what = "deregistered" if isinstance(event, InstanceDeregistered) else "reservation returned"
        s = s.model_copy(
            update={
                "registration": "unregistered",
                "reserved": None,
                "authorization_expired": False,
                "last_communication": None,
                "registration_valid_until": None,
                "ooc_since": None,
                "over_since": None,
                "over_stage": None,
                "over_peak": None,
            }
        )
        s = _lift(s, "authorization_expired", "out_of_compliance_expired")
        if s.ever_used or s.usage.busy():
            s = s.model_copy(update={"ever_used": True})
            if s.evaluation_used >= rules.evaluation:
                s = _enforce(s.model_copy(update={"evaluation_expired": True}), "evaluation_expired", t, rules)
                return s, f"{what}: the evaluation period is used up"
            s = s.model_copy(update={"evaluation_since": t})
            left = rules.evaluation - s.evaluation_used
            return s, f"{what}: evaluation resumes with {_days(left)} left"
        return s, what
    return s, f"time {_t(t)}"


def _entitlements(s: State, event: EntitlementsSet, t: datetime, rules: Rules) -> tuple[State, str]:
    """New entitlements: the limits of a registered instance, its license type, and the Server and Warm Standby
    licenses it must hold. A purchase that covers the peaks that caused an out-of-compliance enforcement ends it."""
    d = event.data
    ent = Counts(standard=d.standard_seats, premium=d.premium_seats, ivr_ports=d.ivr_ports)
    held: tuple[tuple[PresenceLicense, int | None], ...] = (("server", d.server), ("warm_standby", d.warm_standby))
    missing = tuple(name for name, n in held if n is not None and n < 1)
    s = s.model_copy(update={"entitled": ent, "deployment": d.deployment, "missing": missing})
    words = f"entitlements set to {_usage_words(ent)} ({d.deployment})"
    if missing and s.registered():
        words += f"; missing: {', '.join(_PRESENCE[m] for m in missing)}"
    if not s.enforceable(rules):
        s = _lift(s, "evaluation_expired", "out_of_compliance_expired", "authorization_expired")
    if s.ooc_since is not None and s.watched():
        if s.ooc_enforced():
            need = s.over_peak or s.usage
            if need.covered_by(ent):
                s = _leave_ooc(s)
                words += f"; they cover the peaks that caused the out-of-compliance enforcement ({_usage_words(need)})"
        else:
            peak = s.interval_peak.maximum(s.usage)
            if peak.covered_by(ent):
                s = _leave_ooc(s)
                words += f"; they cover live usage and this interval's peak so far ({_usage_words(peak)})"
    s, over_words = _check_over(s, t)
    return s, words + (f"; {over_words}" if over_words else "")


_PRESENCE: dict[PresenceLicense, str] = {"server": "the Server license", "warm_standby": "the Warm Standby license"}


def _episode_peak(s: State, peak: Counts) -> State:
    """Raise the episode's highest usage (until the out-of-compliance grace ends: then it is what caused it)."""
    if s.ooc_enforced():
        return s
    return s.model_copy(update={"over_peak": peak if s.over_peak is None else s.over_peak.maximum(peak)})


def _account_ooc(s: State, since: datetime, required: Counts | None, t: datetime, rules: Rules) -> tuple[State, str]:
    """The licensing authority says the virtual account is out of compliance since `since` (it judges per account):
    the instance continues that clock, and enters enforcement at once when the account's grace is over."""
    if s.ooc_since is not None and s.ooc_since <= since:
        since = s.ooc_since
    peak = required if required is not None else s.usage
    s = s.model_copy(update={"ooc_since": since, "over_since": None, "over_stage": None})
    s = _episode_peak(s, peak)
    words = f"the virtual account is out of compliance since {_t(since)}"
    if since + rules.ooc_grace <= t and not s.ooc_enforced() and s.enforceable(rules):
        s = _enforce(s, "out_of_compliance_expired", t, rules)
        words += f": its {_days(rules.ooc_grace)} grace ended at {_t(since + rules.ooc_grace)}: Enforcement"
    return s, words


def _observe_usage(s: State, usage: Counts, t: datetime, rules: Rules) -> State:
    """Live usage, and the current interval's peak so far (and the episode's, while over or out of compliance)."""
    start = interval_start(t, rules.interval)
    if s.interval_start is None or start > s.interval_start:
        s = s.model_copy(update={"usage": usage, "interval_start": start, "interval_peak": usage})
    elif start == s.interval_start:
        s = s.model_copy(update={"usage": usage, "interval_peak": s.interval_peak.maximum(usage)})
    else:
        s = s.model_copy(update={"usage": usage})  # a late sample from an earlier interval: live usage only
    if s.over_since is not None or s.ooc_since is not None:
        s = _episode_peak(s, usage)
    return s


def _keep_peak(s: State, start: datetime, revision: int, peak: Counts) -> State:
    """The interval's peaks, unless a later revision of it is kept already."""
    held = [p for p in s.peaks if p[0] == start]
    if held and held[0][1] >= revision:
        return s
    entry = (start, revision, peak.standard, peak.premium, peak.ivr_ports)
    return s.model_copy(update={"peaks": tuple(sorted([*(p for p in s.peaks if p[0] != start), entry]))})


def _check_over(s: State, t: datetime) -> tuple[State, str]:
    """Start or clear the over-consumption ladder (only for a registered instance, outside OOC)."""
    limits = s.limits()
    is_over = s.watched() and s.ooc_since is None and limits is not None and not s.usage.covered_by(limits)
    if is_over and s.over_since is None:
        s = s.model_copy(update={"over_since": t, "over_stage": "detected", "over_peak": s.usage})
        return s, f"over entitlements: {_over_words(s)}"
    if not is_over and s.over_since is not None:
        s = s.model_copy(update={"over_since": None, "over_stage": None, "over_peak": None})
        return s, "back within entitlements"
    return s, ""


def _verdict(s: State, data: ReportingSucceededData, t: datetime, rules: Rules) -> tuple[State, str]:
    """The licensing authority's answer to a usage report. Out of compliance enters OOC at once (the vendor: "If
    Cisco SSM reports out-of-compliance for the reported value, then the Product Instance is transitioned to Out
    of Compliance state"), from the account's own start when the authority gives it; in compliance leaves OOC when
    live usage is within the limits too, unless the grace is over (then only a purchase ends it)."""
    shortfall = None if data.shortfall is None else Counts.of(data.shortfall)
    short = "" if shortfall is None else f" ({_usage_words(shortfall)} short)"
    if data.verdict == "out_of_compliance":
        required = Counts.of(data.required) if data.required is not None else None
        if required is None and shortfall is not None and s.entitled is not None:
            # what the entitlements must reach: the entitlements and the shortfall
            required = Counts(
                standard=s.entitled.standard + shortfall.standard,
                premium=s.entitled.premium + shortfall.premium,
                ivr_ports=s.entitled.ivr_ports + shortfall.ivr_ports,
            )
        since = data.out_of_compliance_since if data.out_of_compliance_since is not None else t
        was = s.ooc_since
        s, words = _account_ooc(s, min(since, t), required, t, rules)
        if was is not None:
            return s, f"the licensing authority answered out of compliance{short}"
        return s, f"the licensing authority answered out of compliance{short}: Out of Compliance; {words}"
    limits = s.limits()
    if s.ooc_since is not None and limits is not None and s.usage.covered_by(limits):
        if s.ooc_enforced():
            return s, "the licensing authority answered in compliance; enforcement ends only with a purchase"
        return _leave_ooc(s), "the licensing authority answered in compliance, and live usage is within the limits"
    return s, "the licensing authority answered in compliance"


def _leave_ooc(s: State) -> State:
    return _lift(s.model_copy(update={"ooc_since": None, "over_peak": None}), "out_of_compliance_expired")


def _stop_evaluation(s: State, t: datetime, rules: Rules) -> State:
    """Bank the evaluation time used in the current unregistered stretch (up to t, the input's own time)."""
    if s.evaluation_since is None:
        return s
    used = min(rules.evaluation, s.evaluation_used + max(timedelta(0), t - s.evaluation_since))
    return s.model_copy(update={"evaluation_used": used, "evaluation_since": None})


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


# ---------------------------------------------------------------- words


def _t(t: datetime | None) -> str:
    return "-" if t is None else t.strftime("%Y-%m-%d %H:%M:%SZ")


def _days(d: timedelta) -> str:
    return f"{d.days} d" if d % DAY == timedelta(0) else f"{d.total_seconds() / 86400:.2f} d"


def _minutes(d: timedelta) -> str:
    return f"{int(d.total_seconds() // 60)} min"


def _usage_words(c: Counts) -> str:
    return f"Standard {c.standard}, Premium {c.premium}, IVR ports {c.ivr_ports}"


def _over_words(s: State) -> str:
    """E.g. "Premium 11 > 10 since 2026-03-02 10:02:00Z"."""
    limits = s.limits()
    if limits is None:
        return "no entitlements"
    d = deficit(s.usage.usage(), limits.entitlement())
    parts = []
    if d.premium:
        parts.append(f"Premium {s.usage.premium} > {limits.premium}")
    if d.standard:
        spare = max(0, limits.premium - s.usage.premium)
        cover = f" + {spare} spare Premium" if spare else ""
        parts.append(f"Standard {s.usage.standard} > {limits.standard}{cover}")
    if d.ivr_ports:
        parts.append(f"IVR ports {s.usage.ivr_ports} > {limits.ivr_ports}")
    since = f" since {_t(s.over_since)}" if s.over_since is not None else ""
    return (", ".join(parts) or "within entitlements") + since


_FORECAST_INPUTS = (
    IntervalClosed,
    EntitlementsSet,
    InstanceRegistered,
    InstanceDeregistered,
    ReservationInstalled,
    ReservationReturned,
    ClassicLicensingUsed,
    MigratedToSmart,
)
"""The inputs that change what the forecast rests on (the interval peaks) or what it is held against (the limits)."""


def _forecast(s: State, rules: Rules, now: datetime) -> tuple[State, str]:
    """Keep the interval peaks of the weeks the forecast needs; then the forecast of the coming week from them, as of
    the end of the latest interval, and its first run over the limits that starts after `now` (a run under way is the
    live rules' to judge), only where usage is held to limits (registered). Ours, not the vendor's: an estimate."""
    if not s.peaks:
        if s.forecast is None and s.forecast_peak is None:
            return s, ""
        return s.model_copy(update={"forecast": None, "forecast_peak": None}), ""
    last = max(p[0] for p in s.peaks) + rules.interval
    kept = tuple(p for p in s.peaks if p[0] >= last - (rules.forecast_weeks + 1) * WEEK)
    history = {p[0]: {"standard": p[2], "premium": p[3], "ivr_ports": p[4]} for p in kept}
    t, first = min(history), {}
    while t < last:  # an interval with no report had no usage
        first[t] = history.get(t, {"standard": 0, "premium": 0, "ivr_ports": 0})
        t += rules.interval
    limits = s.limits() if s.watched() else None
    risk = None
    f = forecast(first, last, step=rules.interval, weeks=rules.forecast_weeks, min_weeks=rules.forecast_min_weeks)
    highest = (
        Counts(**{lic: max(h.p90[lic] for h in f.hours) for lic in ("standard", "premium", "ivr_ports")})
        if f.hours
        else None
    )
    if limits is not None:
        found = [r for r in risks(f, limits.entitlement()) if r.start > now]
        if found:
            r = found[0]
            risk = ForecastRisk(made_at=last, start=r.start, end=r.end, over=LicenseCounts(**r.over))
    s = s.model_copy(update={"peaks": kept, "forecast": risk, "forecast_peak": highest})
    if risk is None:
        return s, ""
    return s, (
        f"; forecast (an estimate): p90 over the limits from {_t(risk.start)} to {_t(risk.end)}, by "
        f"{_usage_words(Counts.of(risk.over))}"
    )


def replay(instance: str, events: list[Event], rules: Rules) -> tuple[State, list[Transition]]:
    """Fold inputs in order (for tests and tools): the final state and the whole history."""
    s = State(instance=instance)
    history: list[Transition] = []
    for e in events:
        r = step(s, e, rules)
        s = r.state
        history.extend(r.transitions)
    return s, history


__all__ = ["Counts", "Rules", "State", "Step", "Transition", "replay", "step"]
