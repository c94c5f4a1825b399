"""The ccx-licensing event contract: CloudEvents 1.0, structured JSON mode.

Rules of the contract (it is public; see README "The event contract"):
- These names are fixed. A type may gain optional fields; a field never changes meaning. A breaking change is a
  new type.
- `id` is unique per event and is the idempotency key. `time` is RFC 3339 with an offset, normalised to UTC; it is
  the event time every computation uses. `subject` is the product instance id, which is also the Kafka key.
- The envelope accepts CloudEvents extension attributes (e.g. `partitionkey`) and keeps them; `data` is ours and is
  validated strictly: unknown fields there are an error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    StringConstraints,
    field_validator,
)

INSTANCE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
ALL_INSTANCES = "*"


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""An RFC 3339 time with an offset, normalised to UTC. A time without an offset is an error."""

InstanceId = Annotated[str, StringConstraints(pattern=INSTANCE_ID_PATTERN)]
"""A product instance id: 1-64 characters from [A-Za-z0-9._:-]."""

InstanceOrAll = Annotated[str, StringConstraints(pattern=r"^(\*|[A-Za-z0-9._:-]{1,64})$")]
AgentId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=2000)]

Capability = Literal[
    "inbound_voice",
    "outbound_direct_preview",
    "chat",
    "email",
    "outbound_predictive",
    "outbound_progressive",
]
License = Literal["standard", "premium"]
Deployment = Literal["production", "non_production"]
Registration = Literal["unregistered", "registered", "registration_expired", "reserved"]
Authorization = Literal[
    "no_licenses_in_use",
    "evaluation",
    "evaluation_expired",
    "authorized",
    "out_of_compliance",
    "authorization_expired",
    "reserved",
]
EnforcementReason = Literal["evaluation_expired", "out_of_compliance_expired", "authorization_expired"]
OverStage = Literal["detected", "imminent"]
AlertName = Literal[
    "RenewAuthorizationFailed",
    "RenewRegistrationFailed",
    "LicenseComputationFailed",
    "EntitlementReportingFailed",
    "OutOfComplianceDetected",
    "OutOfComplianceImminent",
    "OutOfCompliance",
    "EnforcementMode",
    "SmartAgentInitFailed",
    "EvaluationExpiring",
]
Severity = Literal["critical", "major", "warning"]


class Data(BaseModel):
    """Base of every `data` payload: frozen, and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Empty(Data):
    """`data` of the types that carry nothing: `{}`."""


class FailureReason(Data):
    reason: Reason


# ---------------------------------------------------------------- inputs from the contact center


class AgentSignedInData(Data):
    agent_id: AgentId
    capabilities: tuple[Capability, ...] = ()
    supervisor: bool = False

    @field_validator("capabilities")
    @classmethod
    def _no_repeats(cls, value: tuple[Capability, ...]) -> tuple[Capability, ...]:
        if len(set(value)) != len(value):
            raise ValueError("capabilities must not repeat a capability")
        return value


class AgentSignedOutData(Data):
    agent_id: AgentId


class RosterAgent(AgentSignedInData):
    """One agent of a roster snapshot: the same fields as a sign-in."""


class AgentRosterData(Data):
    agents: tuple[RosterAgent, ...]

    @field_validator("agents")
    @classmethod
    def _unique_agents(cls, value: tuple[RosterAgent, ...]) -> tuple[RosterAgent, ...]:
        ids = [a.agent_id for a in value]
        if len(set(ids)) != len(ids):
            raise ValueError("agents must list each agent_id once")
        return value


class PortsSampledData(Data):
    inbound_ivr_ports: NonNegativeInt
    outbound_ports: NonNegativeInt = 0
    outbound_seats: NonNegativeInt = 0


# ---------------------------------------------------------------- licensing control


class EntitlementsSetData(Data):
    license_type: Literal["flex"] = "flex"
    standard_seats: NonNegativeInt
    premium_seats: NonNegativeInt
    ivr_ports: NonNegativeInt
    overage_allowed: bool = True
    deployment: Deployment = "production"


class InstanceRegisteredData(Data):
    virtual_account: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class ReservationInstalledData(Data):
    standard_seats: NonNegativeInt
    premium_seats: NonNegativeInt
    ivr_ports: NonNegativeInt


# ---------------------------------------------------------------- outputs of our services


class Headroom(Data):
    """Seats or ports still free. `null` means unlimited (evaluation: no entitlements set yet)."""

    standard: NonNegativeInt | None
    premium: NonNegativeInt | None
    ivr_ports: NonNegativeInt | None


class ConsumptionChangedData(Data):
    standard: NonNegativeInt
    premium: NonNegativeInt
    ivr_ports: NonNegativeInt
    outbound_ports: NonNegativeInt
    outbound_seats: NonNegativeInt
    headroom: Headroom


class Peak(Data):
    standard: NonNegativeInt
    premium: NonNegativeInt
    agents: NonNegativeInt
    ivr_ports: NonNegativeInt
    outbound_ports: NonNegativeInt
    outbound_seats: NonNegativeInt


class WitnessAgent(Data):
    agent_id: AgentId
    license: License
    why: str


class PeakWitness(Data):
    """When a peak was first reached (null when it is 0) and, for seats, who was signed in at that instant."""

    at: UtcDatetime | None
    agents: tuple[WitnessAgent, ...] = ()


class Witness(Data):
    standard: PeakWitness
    premium: PeakWitness
    agents: PeakWitness
    ivr_ports: PeakWitness
    outbound_ports: PeakWitness
    outbound_seats: PeakWitness


class IntervalClosedData(Data):
    interval_start: UtcDatetime
    interval_end: UtcDatetime
    revision: Annotated[int, Field(ge=1)]
    peak: Peak
    witness: Witness


class SignInRejectedData(Data):
    agent_id: AgentId
    license: License
    reason: Reason


class Enforcement(Data):
    active: bool
    reasons: tuple[EnforcementReason, ...] = ()
    since: UtcDatetime | None = None


class Deficit(Data):
    standard: NonNegativeInt
    premium: NonNegativeInt
    ivr_ports: NonNegativeInt


class Deadlines(Data):
    evaluation_ends_at: UtcDatetime | None = None
    ooc_at: UtcDatetime | None = None
    enforcement_at: UtcDatetime | None = None
    authorization_expires_at: UtcDatetime | None = None
    registration_expires_at: UtcDatetime | None = None


class ComplianceChangedData(Data):
    registration: Registration
    authorization: Authorization
    enforcement: Enforcement
    deficit: Deficit
    over_since: UtcDatetime | None = None
    over_stage: OverStage | None = None
    ooc_since: UtcDatetime | None = None
    deadlines: Deadlines


class AlertRaisedData(Data):
    alert_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    alert: AlertName
    severity: Severity
    summary: str
    details: dict[str, Any] = Field(default_factory=dict)


class AlertResolvedData(Data):
    alert_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    alert: AlertName


class DeadLetterData(Data):
    topic: str
    partition: NonNegativeInt
    offset: NonNegativeInt
    key: str | None
    error: str
    payload_base64: str


# ---------------------------------------------------------------- the envelope


class CloudEvent(BaseModel):
    """The CloudEvents 1.0 envelope every type shares. Extension attributes are accepted and kept."""

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    source: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    time: UtcDatetime
    subject: InstanceId
    datacontenttype: Literal["application/json"] = "application/json"


class AgentSignedIn(CloudEvent):
    type: Literal["ccx.agent.signed_in"] = "ccx.agent.signed_in"
    data: AgentSignedInData


class AgentSignedOut(CloudEvent):
    type: Literal["ccx.agent.signed_out"] = "ccx.agent.signed_out"
    data: AgentSignedOutData


class AgentRoster(CloudEvent):
    type: Literal["ccx.agent.roster"] = "ccx.agent.roster"
    data: AgentRosterData


class PortsSampled(CloudEvent):
    type: Literal["ccx.ports.sampled"] = "ccx.ports.sampled"
    data: PortsSampledData


class EntitlementsSet(CloudEvent):
    type: Literal["licensing.entitlements.set"] = "licensing.entitlements.set"
    data: EntitlementsSetData


class InstanceRegistered(CloudEvent):
    type: Literal["licensing.instance.registered"] = "licensing.instance.registered"
    data: InstanceRegisteredData


class InstanceDeregistered(CloudEvent):
    type: Literal["licensing.instance.deregistered"] = "licensing.instance.deregistered"
    data: Empty = Empty()


class AuthorizationRenewed(CloudEvent):
    type: Literal["licensing.authorization.renewed"] = "licensing.authorization.renewed"
    data: Empty = Empty()


class AuthorizationRenewalFailed(CloudEvent):
    type: Literal["licensing.authorization.renewal_failed"] = "licensing.authorization.renewal_failed"
    data: FailureReason


class RegistrationRenewed(CloudEvent):
    type: Literal["licensing.registration.renewed"] = "licensing.registration.renewed"
    data: Empty = Empty()


class RegistrationRenewalFailed(CloudEvent):
    type: Literal["licensing.registration.renewal_failed"] = "licensing.registration.renewal_failed"
    data: FailureReason


class ReportingSucceeded(CloudEvent):
    type: Literal["licensing.reporting.succeeded"] = "licensing.reporting.succeeded"
    data: Empty = Empty()


class ReportingFailed(CloudEvent):
    type: Literal["licensing.reporting.failed"] = "licensing.reporting.failed"
    data: FailureReason


class SmartAgentInitialized(CloudEvent):
    type: Literal["licensing.agent.initialized"] = "licensing.agent.initialized"
    data: Empty = Empty()


class SmartAgentInitFailed(CloudEvent):
    type: Literal["licensing.agent.init_failed"] = "licensing.agent.init_failed"
    data: FailureReason


class ReservationInstalled(CloudEvent):
    type: Literal["licensing.reservation.installed"] = "licensing.reservation.installed"
    data: ReservationInstalledData


class ReservationReturned(CloudEvent):
    type: Literal["licensing.reservation.returned"] = "licensing.reservation.returned"
    data: Empty = Empty()


class ClockTicked(CloudEvent):
    """`time` is "now" for the instance named by `subject`, or for every instance when `subject` is `*`."""

    subject: InstanceOrAll
    type: Literal["licensing.clock.tick"] = "licensing.clock.tick"
    data: Empty = Empty()


class ConsumptionChanged(CloudEvent):
    type: Literal["licensing.consumption.changed"] = "licensing.consumption.changed"
    data: ConsumptionChangedData


class IntervalClosed(CloudEvent):
    type: Literal["licensing.consumption.interval_closed"] = "licensing.consumption.interval_closed"
    data: IntervalClosedData


class SignInRejected(CloudEvent):
    type: Literal["licensing.agent.sign_in_rejected"] = "licensing.agent.sign_in_rejected"
    data: SignInRejectedData


class ConsumptionFailed(CloudEvent):
    type: Literal["licensing.consumption.failed"] = "licensing.consumption.failed"
    data: FailureReason


class ComplianceChanged(CloudEvent):
    type: Literal["licensing.compliance.changed"] = "licensing.compliance.changed"
    data: ComplianceChangedData


class AlertRaised(CloudEvent):
    type: Literal["licensing.alert.raised"] = "licensing.alert.raised"
    data: AlertRaisedData


class AlertResolved(CloudEvent):
    type: Literal["licensing.alert.resolved"] = "licensing.alert.resolved"
    data: AlertResolvedData


class DeadLettered(CloudEvent):
    """A message some service could not decode or validate. `subject` is its key when that is an instance id,
    else `unknown`."""

    type: Literal["licensing.dead_letter"] = "licensing.dead_letter"
    data: DeadLetterData


EVENT_CLASSES: tuple[type[CloudEvent], ...] = (
    AgentSignedIn,
    AgentSignedOut,
    AgentRoster,
    PortsSampled,
    EntitlementsSet,
    InstanceRegistered,
    InstanceDeregistered,
    AuthorizationRenewed,
    AuthorizationRenewalFailed,
    RegistrationRenewed,
    RegistrationRenewalFailed,
    ReportingSucceeded,
    ReportingFailed,
    SmartAgentInitialized,
    SmartAgentInitFailed,
    ReservationInstalled,
    ReservationReturned,
    ClockTicked,
    ConsumptionChanged,
    IntervalClosed,
    SignInRejected,
    ConsumptionFailed,
    ComplianceChanged,
    AlertRaised,
    AlertResolved,
    DeadLettered,
)


def type_name(cls: type[CloudEvent]) -> str:
    """The CloudEvents `type` string of an event class."""
    default = cls.model_fields["type"].default
    assert isinstance(default, str)
    return default
