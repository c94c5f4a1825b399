"""The alerting rules: pure functions of (state, input, rules, silences).

An alert is identified by its fingerprint (instance, alert). Per input, for one instance:
1. the input starts or ends conditions: an alert is raised once when its condition starts (the same condition again
   raises nothing) and resolved once when it ends; the OOC ladder escalates (Detected -> Imminent ->
   OutOfCompliance), each step resolving the one before it;
2. every newly raised alert is notified unless it is inhibited (an inhibiting alert is active on the same instance)
   or silenced (a silence matches it at the input's time); either way it is recorded. A resolve is always notified;
3. with the clock moved, active alerts are notified again when their repeat interval has passed since the last
   notification, and alerts that were held back (inhibited or silenced) are notified once that no longer holds;
   `EvaluationExpiring` is raised 14 d before the evaluation ends and notified again at 7 d and 1 d.

The shell records every `Action` (history, `licensing.alert.*` events) and turns every `Notice` into one delivery
per channel.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    AlertName,
    AuthorizationRenewalFailed,
    AuthorizationRenewed,
    ComplianceChanged,
    ComplianceChangedData,
    ConsumptionChanged,
    ConsumptionFailed,
    DetailValue,
    EntitlementsFetchFailed,
    EntitlementsSet,
    InstanceRegistered,
    LicenseControlBreached,
    RegistrationRenewalFailed,
    RegistrationRenewed,
    ReportingFailed,
    ReportingSucceeded,
    Severity,
    SmartAgentInitFailed,
    SmartAgentInitialized,
)
from ccxlic_rules.exits import exits
from pydantic import BaseModel, ConfigDict

IDS = uuid.UUID("9a3e51c2-6f0d-4b7a-8c1e-2d4f6a8b0c13")
LADDER: tuple[AlertName, ...] = ("OutOfComplianceDetected", "OutOfComplianceImminent", "OutOfCompliance")


@dataclass(frozen=True, slots=True)
class Spec:
    severity: Severity
    title: str  # the vendor's words
    action: str  # what the operator should do


CATALOGUE: Mapping[AlertName, Spec] = {
    "RenewAuthorizationFailed": Spec(
        "major",
        "Renew Authorization failed",
        "Renew the authorization manually (Smart Licensing > Renew Authorization) and check the connection to Cisco "
        "SSM or SSM On-Prem; the authorization expires if no communication succeeds.",
    ),
    "RenewRegistrationFailed": Spec(
        "major",
        "Renew Registration failed",
        "Renew the registration manually (Smart Licensing > Renew Registration) and check the connection to Cisco "
        "SSM; an expired registration needs a new registration token.",
    ),
    "LicenseComputationFailed": Spec(
        "major",
        "License computation failed",
        "An input could not be turned into usage: find it on the dead-letter topic (same instance) and fix the "
        "publisher; usage resumes with the next valid input.",
    ),
    "EntitlementReportingFailed": Spec(
        "warning",
        "Entitlement Reporting failed",
        "The Smart Agent could not get the license type or the entitlements: check the virtual account's licenses "
        "and the connection to Cisco SSM or SSM On-Prem.",
    ),
    "UsageReportingFailed": Spec(
        "warning",
        "Usage reporting failed",
        "Check the connection to Cisco SSM; usage is reported every 8 hours and the authorization expires if no "
        "communication succeeds.",
    ),
    "LicenseControlBreach": Spec(
        "major",
        "License Control breached",
        "Usage the platform reports (a roster or IVR ports) is above License Control's limits: sign agents out, "
        "free ports, or add licenses.",
    ),
    "ReservationBreach": Spec(
        "major",
        "Specific License Reservation exceeded",
        "Usage the platform reports (a roster or IVR ports) is above the reserved licenses, and over-consumption is "
        "not allowed in Specific License Reservation: sign agents out, free ports, or reserve more (a new "
        "authorization code from the licensing authority).",
    ),
    "RequiredLicenseMissing": Spec(
        "major",
        "Required license missing",
        "The Server and Warm Standby licenses are never consumed but must be present: deposit the missing one in the "
        "virtual account; the Smart Agent sees it at its next authorization or usage report.",
    ),
    "OutOfComplianceDetected": Spec(
        "warning",
        "System to enter OOC",
        "Sign agents out or add licenses before the 45-minute tolerance ends to stay in compliance.",
    ),
    "OutOfComplianceImminent": Spec(
        "major",
        "System to enter OOC shortly",
        "Sign agents out or add licenses now: the system enters Out of Compliance at the deadline.",
    ),
    "OutOfCompliance": Spec(
        "critical",
        "OOC: system in Out of Compliance",
        "Purchase additional licenses (or reduce usage) before the 90-day grace ends, or the system enters "
        "Enforcement.",
    ),
    "EnforcementMode": Spec(
        "critical",
        "Enforcement Mode",
        "System functions are restricted, and each cause has its own exit: register the product instance "
        "(evaluation expired), purchase licenses that cover the peaks that caused it (out of compliance expired: "
        "usage that drops back does not end it) or renew the authorization (authorization expired).",
    ),
    "SmartAgentInitFailed": Spec(
        "critical",
        "Smart Licensing agent initialization failed",
        "Check the licensing service on the product instance and restart it; renewals and reporting cannot run "
        "until it initializes.",
    ),
    "OutOfComplianceForecast": Spec(
        "warning",
        "Out of Compliance forecast (an estimate; ours, not the vendor's)",
        "The forecast of the coming intervals' peaks (p90) is over what the instance may use: buy or move licenses "
        "before then, or plan the staffing; `ccxlic forecast INSTANCE` shows each coming interval.",
    ),
    "EvaluationExpiring": Spec(
        "warning",
        "Evaluation period expiring",
        "Register the product instance with Cisco SSM or SSM On-Prem before the evaluation ends, or it enters "
        "Enforcement.",
    ),
}

INHIBITS: Mapping[AlertName, tuple[AlertName, ...]] = {
    "EnforcementMode": (*LADDER, "OutOfComplianceForecast"),
    "OutOfCompliance": ("OutOfComplianceForecast",),  # the live verdict says more than the estimate
    "SmartAgentInitFailed": (
        "RenewAuthorizationFailed",
        "RenewRegistrationFailed",
        "EntitlementReportingFailed",
        "UsageReportingFailed",
    ),
}

# (raises, resolves) per input type outside compliance
_FAILURES: Mapping[type, AlertName] = {
    AuthorizationRenewalFailed: "RenewAuthorizationFailed",
    RegistrationRenewalFailed: "RenewRegistrationFailed",
    ConsumptionFailed: "LicenseComputationFailed",
    EntitlementsFetchFailed: "EntitlementReportingFailed",
    ReportingFailed: "UsageReportingFailed",
    SmartAgentInitFailed: "SmartAgentInitFailed",
}  # and licensing.control.breached: LicenseControlBreach or ReservationBreach, by the limit it breached
_RECOVERIES: Mapping[type, tuple[AlertName, ...]] = {
    AuthorizationRenewed: ("RenewAuthorizationFailed",),
    RegistrationRenewed: ("RenewRegistrationFailed",),
    InstanceRegistered: ("RenewRegistrationFailed", "RenewAuthorizationFailed"),  # a new identity and authorization
    ConsumptionChanged: ("LicenseComputationFailed",),
    EntitlementsSet: ("EntitlementReportingFailed",),
    ReportingSucceeded: ("UsageReportingFailed",),
    SmartAgentInitialized: ("SmartAgentInitFailed",),
}


@dataclass(frozen=True, slots=True)
class Rules:
    repeat: Mapping[Severity, timedelta] = field(
        default_factory=lambda: {
            "critical": timedelta(hours=4),
            "major": timedelta(hours=12),
            "warning": timedelta(hours=24),
        }
    )
    evaluation_warnings: tuple[timedelta, ...] = (timedelta(days=14), timedelta(days=7), timedelta(days=1))
    severity: Mapping[AlertName, Severity] = field(default_factory=dict)  # overrides of the catalogue's

    def severity_of(self, alert: AlertName) -> Severity:
        return self.severity.get(alert, CATALOGUE[alert].severity)


@dataclass(frozen=True, slots=True)
class Silence:
    """Suppresses notifications (never recording) of the alerts it selects while starts_at <= time < ends_at."""

    id: str
    instance: str | None
    alert: AlertName | None
    starts_at: datetime
    ends_at: datetime
    author: str
    comment: str

    def matches(self, instance: str, alert: AlertName, at: datetime) -> bool:
        return (
            (self.instance is None or self.instance == instance)
            and (self.alert is None or self.alert == alert)
            and self.starts_at <= at < self.ends_at
        )


class Active(BaseModel):
    """An alert that is raised and not resolved yet."""

    model_config = ConfigDict(frozen=True)

    alert_id: str
    alert: AlertName
    severity: Severity
    raised_at: datetime
    summary: str
    details: dict[str, DetailValue] = {}
    deadline: datetime | None = None
    notified_at: datetime | None = None  # the last notification; None while held back
    stage: int = 0  # EvaluationExpiring: how many warning thresholds have passed
    notified_stage: int = 0


class State(BaseModel):
    model_config = ConfigDict(frozen=True)

    instance: str
    now: datetime | None = None
    active: dict[str, Active] = {}
    compliance: ComplianceChangedData | None = None


NoticeKind = Literal["raised", "repeat", "reminder", "resolved"]


@dataclass(frozen=True, slots=True)
class Notice:
    """Notify every channel."""

    kind: NoticeKind
    alert: Active
    at: datetime
    text: str


@dataclass(frozen=True, slots=True)
class Raised:
    alert: Active


@dataclass(frozen=True, slots=True)
class Resolved:
    alert: Active
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Held:
    """A notification held back: recorded, not sent."""

    alert: Active
    at: datetime
    why: str


Action = Raised | Resolved | Notice | Held


@dataclass(frozen=True, slots=True)
class Step:
    state: State
    actions: tuple[Action, ...]


# ---------------------------------------------------------------- the step


def step(state: State, event: Event, rules: Rules, silences: Sequence[Silence] = ()) -> Step:
    t = event.time
    now = t if state.now is None or t > state.now else state.now
    active = dict(state.active)
    compliance = state.compliance
    raised: list[Active] = []
    resolved: list[Resolved] = []

    def raise_(
        alert: AlertName, summary: str, details: dict[str, DetailValue], deadline: datetime | None, stage: int = 0
    ) -> None:
        if alert in active:
            return
        a = Active(
            alert_id=str(uuid.uuid5(IDS, f"{state.instance}:{alert}:{event.id}")),
            alert=alert,
            severity=rules.severity_of(alert),
            raised_at=t,
            summary=summary,
            details=details,
            deadline=deadline,
            stage=stage,
        )
        active[alert] = a
        raised.append(a)

    def resolve(alert: AlertName, reason: str) -> None:
        a = active.pop(alert, None)
        if a is not None:
            resolved.append(Resolved(a, now, reason))

    failed = _breach_alert(event) if isinstance(event, LicenseControlBreached) else _FAILURES.get(type(event))
    if failed is not None:
        reason = (
            event.data.cause if isinstance(event, LicenseControlBreached) else str(getattr(event.data, "reason", ""))
        )
        raise_(
            failed,
            f"{CATALOGUE[failed].title} on {state.instance}: {reason}",
            {"reason": reason},
            _deadline_for(failed, compliance),
        )
    for recovered in _RECOVERIES.get(type(event), ()):
        resolve(recovered, f"{event.type} at {_t(t)}")
    if isinstance(event, ConsumptionChanged):
        b = event.data.control_breach
        if b is None or not (b.standard or b.premium or b.ivr_ports):
            resolve("LicenseControlBreach", f"usage within License Control's limits at {_t(t)}")
            resolve("ReservationBreach", f"usage within the reserved licenses at {_t(t)}")
    if isinstance(event, ComplianceChanged):
        compliance = event.data
        _ladder(state.instance, compliance, raise_, resolve)
        _missing(state.instance, compliance, raise_, resolve)
        _forecast(state.instance, compliance, raise_, resolve)
    _evaluation(state.instance, compliance, now, rules, active, raise_, resolve)

    # notices: new alerts, resolves, then what the clock made due
    actions: list[Action] = [Raised(a) for a in raised]
    actions += resolved
    for r in resolved:
        actions.append(Notice("resolved", r.alert, now, f"RESOLVED {r.alert.alert} on {state.instance}: {r.reason}"))
    for alert in sorted(active):
        a = active[alert]
        kind: NoticeKind | None = None
        if a.notified_at is None:
            kind = "raised"
        elif a.notified_stage < a.stage:
            kind = "reminder"
        elif now >= a.notified_at + rules.repeat[a.severity]:
            kind = "repeat"
        if kind is None:
            continue
        why = _held(state.instance, a, active, silences, now)
        if why is not None:
            if a in raised:
                actions.append(Held(a, now, why))
            continue
        notified = a.model_copy(update={"notified_at": now, "notified_stage": a.stage})
        active[alert] = notified
        actions.append(Notice(kind, notified, now, f"{kind.upper()} {a.alert} on {state.instance}: {a.summary}"))
    new_state = state.model_copy(update={"now": now, "active": active, "compliance": compliance})
    return Step(new_state, tuple(actions))


def _breach_alert(event: LicenseControlBreached) -> AlertName:
    return "ReservationBreach" if event.data.limit == "reservation" else "LicenseControlBreach"


def _missing(instance: str, c: ComplianceChangedData, raise_: Any, resolve: Any) -> None:
    """RequiredLicenseMissing while a registered instance lacks the Server or Warm Standby license."""
    if c.missing_licenses:
        names = " and ".join({"server": "Server", "warm_standby": "Warm Standby"}[m] for m in c.missing_licenses)
        raise_(
            "RequiredLicenseMissing",
            f"{instance} has no {names} license: it is never consumed, but it must be present",
            {"missing": tuple(c.missing_licenses)},
            None,
        )
    else:
        resolve("RequiredLicenseMissing", "the Server and Warm Standby licenses are present")


def _forecast(instance: str, c: ComplianceChangedData, raise_: Any, resolve: Any) -> None:
    """OutOfComplianceForecast while compliance's forecast has a coming run over the limits (an estimate)."""
    f = c.forecast
    if f is None:
        resolve("OutOfComplianceForecast", "the forecast clears, or its window began")
        return
    over = {lic: n for lic, n in f.over.model_dump().items() if n}
    words = ", ".join(f"{lic} {n}" for lic, n in over.items())
    lead = f.start - f.made_at
    raise_(
        "OutOfComplianceForecast",
        f"{instance} may go over its licenses from {_t(f.start)} to {_t(f.end)} (p90 over by {words}; forecast "
        f"{lead.total_seconds() / 3600:.0f} h ahead, an estimate)",
        {"from": _t(f.start), "to": _t(f.end), "over": over, "lead_hours": int(lead.total_seconds() // 3600)},
        f.start,
    )


def _ladder(instance: str, c: ComplianceChangedData, raise_: Any, resolve: Any) -> None:
    """The OOC ladder and enforcement, from one compliance state (a condition 'becomes' true when its alert is not
    active yet)."""
    deficit = _deficit_words(c)
    want: dict[AlertName, bool] = {
        "OutOfComplianceDetected": c.over_stage == "detected",
        "OutOfComplianceImminent": c.over_stage == "imminent",
        "OutOfCompliance": c.ooc_since is not None,  # also while the authorization is expired: it does not hide OOC
        "EnforcementMode": c.enforcement.active,
    }
    over = {"deficit": c.deficit.model_dump(), "over_since": _t(c.over_since)}
    raising: dict[AlertName, tuple[str, dict[str, Any], datetime | None]] = {
        "OutOfComplianceDetected": (
            f"System to enter OOC on {instance}: {deficit} since {_t(c.over_since)}",
            over,
            c.deadlines.ooc_at,
        ),
        "OutOfComplianceImminent": (
            f"System to enter OOC shortly on {instance}: {deficit} since {_t(c.over_since)}",
            over,
            c.deadlines.ooc_at,
        ),
        "OutOfCompliance": (
            f"{instance} is Out of Compliance since {_t(c.ooc_since)}; {deficit} now",
            {"deficit": c.deficit.model_dump(), "ooc_since": _t(c.ooc_since)},
            c.deadlines.enforcement_at,
        ),
        "EnforcementMode": (
            _enforcement_words(instance, c),
            {"reasons": tuple(c.enforcement.reasons), "since": _t(c.enforcement.since)},
            None,
        ),
    }
    for alert, (summary, details, deadline) in raising.items():
        if want[alert]:
            raise_(alert, summary, dict(details), deadline)
    for i, alert in enumerate(LADDER):
        if want[alert]:
            continue
        later = [x for x in LADDER[i + 1 :] if want[x]]
        if later:
            resolve(alert, f"escalated to {later[0]}")
        elif alert == "OutOfCompliance":
            resolve(alert, f"left Out of Compliance ({c.authorization})")
        else:
            resolve(alert, "over-consumption cleared")
    if not want["EnforcementMode"]:
        resolve("EnforcementMode", "enforcement cleared")


def _enforcement_words(instance: str, c: ComplianceChangedData) -> str:
    """EnforcementMode's summary: since when, why, and how each cause ends (only worded while enforcement is on)."""
    if not c.enforcement.active:
        return ""
    leave = "; ".join(f"{x['cause']}: {x['needed']}" for x in exits(c.model_dump(mode="json")))
    return f"{instance} is in Enforcement since {_t(c.enforcement.since)} ({', '.join(c.enforcement.reasons)}); {leave}"


def _evaluation(
    instance: str,
    c: ComplianceChangedData | None,
    now: datetime,
    rules: Rules,
    active: dict[str, Active],
    raise_: Any,
    resolve: Any,
) -> None:
    ends = c.deadlines.evaluation_ends_at if c is not None and c.authorization == "evaluation" else None
    if ends is None or now >= ends:
        if "EvaluationExpiring" in active:
            why = (
                "evaluation expired"
                if c is not None and c.authorization == "evaluation_expired"
                else (f"evaluation over ({c.authorization if c is not None else 'unknown'})")
            )
            resolve("EvaluationExpiring", why)
        return
    left = ends - now
    stage = sum(1 for w in rules.evaluation_warnings if left <= w)
    if stage == 0:
        return
    summary = f"The evaluation of {instance} ends at {_t(ends)} ({_left(left)} left)"
    current = active.get("EvaluationExpiring")
    if current is None:
        raise_("EvaluationExpiring", summary, {"evaluation_ends_at": _t(ends)}, ends, stage)
    elif stage > current.stage:
        active["EvaluationExpiring"] = current.model_copy(update={"stage": stage, "summary": summary, "deadline": ends})


def _held(
    instance: str, a: Active, active: Mapping[str, Active], silences: Iterable[Silence], at: datetime
) -> str | None:
    for inhibitor, targets in INHIBITS.items():
        if a.alert in targets and inhibitor in active:
            return f"inhibited by {inhibitor}"
    for s in silences:
        if s.matches(instance, a.alert, at):
            return f"silenced by {s.id} ({s.author}: {s.comment})"
    return None


def _deadline_for(alert: AlertName, c: ComplianceChangedData | None) -> datetime | None:
    if c is None:
        return None
    if alert in ("RenewAuthorizationFailed", "EntitlementReportingFailed", "UsageReportingFailed"):
        return c.deadlines.authorization_expires_at
    if alert == "RenewRegistrationFailed":
        return c.deadlines.registration_expires_at
    return None


def _deficit_words(c: ComplianceChangedData) -> str:
    d = c.deficit
    parts = [
        f"{n} short by {v}"
        for n, v in (("Standard", d.standard), ("Premium", d.premium), ("IVR ports", d.ivr_ports))
        if v
    ]
    return ", ".join(parts) or "no deficit"


def _t(t: datetime | None) -> str:
    return "-" if t is None else t.strftime("%Y-%m-%d %H:%M:%SZ")


def _left(d: timedelta) -> str:
    if d >= timedelta(days=1):
        return f"{d.days} d {d.seconds // 3600} h"
    return f"{d.seconds // 3600} h {d.seconds % 3600 // 60} min"


def replay(
    instance: str, events: Sequence[Event], rules: Rules, silences: Sequence[Silence] = ()
) -> tuple[State, list[Action]]:
    s = State(instance=instance)
    out: list[Action] = []
    for e in events:
        r = step(s, e, rules, silences)
        s = r.state
        out.extend(r.actions)
    return s, out
