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

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

# ---------------------------------------------------------------- limits (README "Errors and limits")

MAX_MESSAGE_BYTES = 1_000_000
"""A Kafka record's value larger than this is refused before it is parsed (the broker's default limit is ~1 MB)."""
MAX_COUNT = 1_000_000
"""Seats, ports and other counts are integers from 0 to this."""
MAX_LIST = 10_000
"""Rosters and witnesses list at most this many agents."""
MAX_EXTENSIONS = 20
EXTENSION_NAME_PATTERN = r"^[a-z0-9]{1,20}$"
MAX_EXTENSION_CHARS = 2048
MAX_TEXT = 2000
"""Reasons, summaries and other free text."""
MIN_YEAR, MAX_YEAR = 1970, 2999

NO_NUL = r"^[^\u0000]*$"
"""Free text holds no NUL character (U+0000): PostgreSQL cannot store it in `text` or `jsonb`, so an event carrying
one could never be claimed or recorded. (Lone surrogates are refused by the JSON parser.) One pattern, the same in
the codec (pydantic's regex), in Python's `re` and in the JSON Schemas' ECMA 262."""
INSTANCE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
ALL_INSTANCES = "*"
TIME_PATTERN = (
    r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
"""RFC 3339 with an offset, years 1970-2999, at most 9 fractional digits, no leap second."""
_TIME = re.compile(TIME_PATTERN)
MEDIA_TYPE_PATTERN = r"^application/json( *;[ -~]{0,200})?$"
"""`datacontenttype`: JSON, with or without parameters (`application/json; charset=utf-8`)."""


def _rfc3339(value: object) -> object:
    """Parse an RFC 3339 string ourselves (pydantic's parser also takes numbers, a space for T, no seconds...).
    The year range is that of the time as written (its offset may carry it an hour into 3000 in UTC)."""
    if isinstance(value, str):
        if _TIME.fullmatch(value) is None:
            raise ValueError(
                "must be an RFC 3339 time with an offset (Z or +hh:mm) and seconds, years 1970-2999, "
                "e.g. 2026-03-02T08:00:00Z"
            )
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a date on the calendar") from None
    if not isinstance(value, datetime):
        raise ValueError("must be an RFC 3339 time string, e.g. 2026-03-02T08:00:00Z")
    if value.tzinfo is None:
        raise ValueError("must be an RFC 3339 time with an offset (Z or +hh:mm), e.g. 2026-03-02T08:00:00Z")
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError("is out of range (years 1970-2999)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_rfc3339), Field(json_schema_extra={"pattern": TIME_PATTERN})]
"""An RFC 3339 time with an offset, normalised to UTC. A time without an offset is an error."""

Count = Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)]
"""A count of seats or ports: an integer (never `true`, `"3"` or `2.0`) from 0 to MAX_COUNT."""


def free(min_length: int = 0, max_length: int = MAX_TEXT) -> Any:
    """The constraints of a free-text field of the contract: bounded, and without NUL (NO_NUL)."""
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=NO_NUL)


Text = Annotated[str, free(1, MAX_TEXT)]
InstanceId = Annotated[str, StringConstraints(pattern=INSTANCE_ID_PATTERN)]
"""A product instance id: 1-64 characters from [A-Za-z0-9._:-]."""

InstanceOrAll = Annotated[str, StringConstraints(pattern=r"^(\*|[A-Za-z0-9._:-]{1,64})$")]
AgentId = Annotated[str, free(1, 128)]
Reason = Text

Capability = Literal[
    "inbound_voice",
    "outbound_direct_preview",
    "chat",
    "email",
    "outbound_predictive",
    "outbound_progressive",
]
License = Literal["standard", "premium"]
Deployment = Literal["production", "lab", "non_production"]
"""The vendor's main license types: Production, or Lab (a non-production system; `non_production` is the same, the
name this contract used first)."""
Registration = Literal["unregistered", "registered", "registration_expired", "reserved", "classic"]
"""`classic`: the instance runs Classic Licensing (an upgrade that stayed on it), not Smart Licensing."""
Authorization = Literal[
    "no_licenses_in_use",
    "evaluation",
    "evaluation_expired",
    "authorized",
    "out_of_compliance",
    "authorization_expired",
    "reserved",
    "classic",
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
    "UsageReportingFailed",
    "LicenseControlBreach",
    "ReservationBreach",
    "RequiredLicenseMissing",
    "OutOfComplianceForecast",
]
Severity = Literal["critical", "major", "warning"]
HardLimit = Literal["license_control", "reservation", "ova"]
"""What refuses a sign-in: License Control (overage off), a Specific License Reservation (over-consumption is never
allowed there), or the maximum of signed-in agents configured in the instance's OVA."""
PresenceLicense = Literal["server", "warm_standby"]
"""Licenses that must be present and are never consumed (the vendor: "The Server or Warm Standby license never shows
to be a consumed unit; however, it is required to be present")."""


class Data(BaseModel):
    """Base of every `data` payload: frozen, and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Empty(Data):
    """`data` of the types that carry nothing: `{}`."""


class FailureReason(Data):
    reason: Reason


# ---------------------------------------------------------------- inputs from the contact center


class AgentSignedInData(Data):
    agent_id: AgentId
    capabilities: Annotated[tuple[Capability, ...], Field(max_length=6, json_schema_extra={"uniqueItems": True})] = ()
    supervisor: StrictBool = False

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
    """Every agent signed in on the platform at `time`. An agent listed twice counts once, as its last entry says
    (JSON Schema cannot say "unique by agent_id", and the codec accepts exactly what the schema does)."""

    agents: Annotated[tuple[RosterAgent, ...], Field(max_length=MAX_LIST)]


class PortsSampledData(Data):
    inbound_ivr_ports: Count
    outbound_ports: Count = 0
    outbound_seats: Count = 0


# ---------------------------------------------------------------- licensing control


class EntitlementsSetData(Data):
    """The licenses an instance may use, its license type (`deployment`: Production or Lab; `license_type`: the
    sub-type, Flex) and whether overage is allowed. `server` and `warm_standby`: how many Server and Warm Standby
    licenses the account holds (null: not reported; 0: missing, which is shown and alerted on)."""

    license_type: Literal["flex"] = "flex"
    standard_seats: Count
    premium_seats: Count
    ivr_ports: Count
    overage_allowed: StrictBool = True
    deployment: Deployment = "production"
    server: Count | None = None
    warm_standby: Count | None = None


class LicenseCounts(Data):
    """Counts per license: Flex Standard and Premium seats, IVR ports."""

    standard: Count
    premium: Count
    ivr_ports: Count


class InstanceRegisteredData(Data):
    """The instance registered with a virtual account. When the account is still out of compliance, the licensing
    authority says since when and what its licenses must cover (`required`): the instance continues that clock (it
    judges compliance per virtual account), it does not start a new one."""

    virtual_account: Annotated[str, free(1, 256)]
    out_of_compliance_since: UtcDatetime | None = None
    required: LicenseCounts | None = None


MAX_AGENTS_LIMIT = 100_000


class InstanceConfiguredData(Data):
    """How the product instance is installed: the maximum of signed-in agents its OVA allows (null: no limit known),
    and the OVA profile it came from (a name, for people)."""

    max_agents: Annotated[StrictInt, Field(ge=1, le=MAX_AGENTS_LIMIT)] | None = None
    ova_profile: Annotated[str, free(1, 64)] | None = None


Verdict = Literal["in_compliance", "out_of_compliance"]


class ReportingSucceededData(Data):
    """A usage report the licensing authority accepted, with its answer against the virtual account's pool when it
    gave one (`{}`: accepted, no answer). `shortfall` is by how much each license is out of compliance; with
    `out_of_compliance`, the authority may say since when the account is out of compliance and what its licenses
    must cover to end it (`required`: the peaks that caused it)."""

    verdict: Verdict | None = None
    shortfall: LicenseCounts | None = None
    out_of_compliance_since: UtcDatetime | None = None
    required: LicenseCounts | None = None
    reports: Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)] | None = None
    """How many interval reports it carried."""


class ReservationInstalledData(Data):
    standard_seats: Count
    premium_seats: Count
    ivr_ports: Count


# ---------------------------------------------------------------- commands to the Smart Agent

AgentOperation = Literal[
    "register",
    "reregister",
    "deregister",
    "renew_authorization",
    "renew_registration",
    "set_license_type",
    "set_transport",
    "reservation_enable",
    "reservation_request",
    "reservation_install",
    "reservation_return",
    "reservation_disable",
    "use_classic",
    "migrate_to_smart",
]
Transport = Literal["direct", "proxy", "onprem"]
URL_PATTERN = r"^https?://[A-Za-z0-9._~:/?#@!$&'()*+,;=%-]{1,2000}$"


_COMMAND_FIELDS = ("token", "transport", "url", "proxy", "deployment", "overage_allowed", "code")
_COMMAND_NEEDS: dict[str, tuple[str, ...]] = {
    "register": ("token",),
    "reregister": ("token",),
    "set_transport": ("transport",),
    "set_license_type": ("deployment",),
    "reservation_install": ("code",),
}
_COMMAND_TAKES: dict[str, frozenset[str]] = {
    "register": frozenset({"token", "transport", "url", "proxy"}),
    "reregister": frozenset({"token", "transport", "url", "proxy"}),
    "set_transport": frozenset({"transport", "url", "proxy"}),
    "set_license_type": frozenset({"deployment", "overage_allowed"}),
    "reservation_install": frozenset({"code"}),
}


def _command_schema(schema: dict[str, Any]) -> None:
    """The per-operation rules of `_fields_of_the_operation`, in JSON Schema (so schema and codec agree)."""
    rules: list[dict[str, Any]] = []
    for op in get_args(AgentOperation):
        needs = _COMMAND_NEEDS.get(op, ())
        takes = _COMMAND_TAKES.get(op, frozenset())
        then: dict[str, Any] = {
            "properties": {
                **{n: {"type": "null"} for n in _COMMAND_FIELDS if n not in takes},
                **{n: {"not": {"type": "null"}} for n in needs},
            }
        }
        if needs:
            then["required"] = list(needs)
        rules.append({"if": {"properties": {"operation": {"const": op}}}, "then": then})
    for transport, field in (("onprem", "url"), ("proxy", "proxy")):
        rules.append(
            {
                "if": {"properties": {"transport": {"const": transport}}, "required": ["transport"]},
                "then": {"properties": {field: {"not": {"type": "null"}}}, "required": [field]},
            }
        )
    schema["allOf"] = rules


class AgentCommandData(Data):
    """An operation an admin asks of an instance's Smart Agent. Which fields an operation takes:
    `register` / `reregister`: `token`, and optionally `transport`, `url`, `proxy`; `set_transport`: `transport`, and
    `url` (onprem) or `proxy` (proxy); `set_license_type`: `deployment`, optionally `overage_allowed`;
    `reservation_install`: `code` (the authorization code); the others nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, json_schema_extra=_command_schema)

    operation: AgentOperation
    token: Annotated[str, free(1, 200)] | None = None
    transport: Transport | None = None
    url: Annotated[str, StringConstraints(pattern=URL_PATTERN)] | None = None
    proxy: Annotated[str, StringConstraints(pattern=URL_PATTERN)] | None = None
    deployment: Deployment | None = None
    overage_allowed: StrictBool | None = None
    code: Annotated[str, free(1, 8192)] | None = None

    @model_validator(mode="after")
    def _fields_of_the_operation(self) -> AgentCommandData:
        op = self.operation
        for name in _COMMAND_NEEDS.get(op, ()):
            if getattr(self, name) is None:
                raise ValueError(f"{op} needs {name}")
        takes = _COMMAND_TAKES.get(op, frozenset())
        extra = [n for n in _COMMAND_FIELDS if getattr(self, n) is not None and n not in takes]
        if extra:
            raise ValueError(f"{op} takes no {extra[0]}")
        if self.transport == "onprem" and self.url is None:
            raise ValueError("the onprem transport needs the SSM On-Prem url")
        if self.transport == "proxy" and self.proxy is None:
            raise ValueError("the proxy transport needs the proxy url")
        return self


# ---------------------------------------------------------------- outputs of our services


class Headroom(Data):
    """Seats or ports still free. `null` means unlimited (evaluation: no entitlements set yet)."""

    standard: Count | None
    premium: Count | None
    ivr_ports: Count | None


class ConsumptionChangedData(Data):
    standard: Count
    premium: Count
    ivr_ports: Count
    outbound_ports: Count
    outbound_seats: Count
    headroom: Headroom
    control_breach: LicenseCounts | None = None
    """While a hard limit applies (License Control, or a Specific License Reservation): by how much usage exceeds it
    (a roster or a port sample above the cap is counted, as the platform's truth, and is a breach). Null when no hard
    limit applies."""


class ControlBreachData(Data):
    """Usage went over a hard limit (`limit`: License Control's, or the reservation's): what is in use, the limits,
    the excess, and what caused it."""

    usage: LicenseCounts
    limits: LicenseCounts
    excess: LicenseCounts
    cause: Reason
    limit: Literal["license_control", "reservation"] = "license_control"


class Peak(Data):
    standard: Count
    premium: Count
    agents: Count
    ivr_ports: Count
    outbound_ports: Count
    outbound_seats: Count


class WitnessAgent(Data):
    agent_id: AgentId
    license: License
    why: Annotated[str, free(0, 200)]


class PeakWitness(Data):
    """When a peak was first reached (null when it is 0) and, for seats, who was signed in at that instant."""

    at: UtcDatetime | None
    agents: Annotated[tuple[WitnessAgent, ...], Field(max_length=MAX_LIST)] = ()


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
    revision: Annotated[StrictInt, Field(ge=1, le=MAX_COUNT)]
    peak: Peak
    witness: Witness


class SignInRejectedData(Data):
    agent_id: AgentId
    license: License
    reason: Reason
    limit: HardLimit = "license_control"


class Enforcement(Data):
    active: StrictBool
    reasons: Annotated[tuple[EnforcementReason, ...], Field(max_length=3)] = ()
    since: UtcDatetime | None = None


class Deficit(Data):
    standard: Count
    premium: Count
    ivr_ports: Count


class Deadlines(Data):
    evaluation_ends_at: UtcDatetime | None = None
    ooc_at: UtcDatetime | None = None
    enforcement_at: UtcDatetime | None = None
    authorization_expires_at: UtcDatetime | None = None
    registration_expires_at: UtcDatetime | None = None


class ForecastRisk(Data):
    """An estimate, ours and not the vendor's: the first coming run of 8-hour reporting intervals whose forecast peak
    (p90) is over what the instance may use, by how much at most, and when the forecast was made (the end of the
    interval it last rests on)."""

    made_at: UtcDatetime
    start: UtcDatetime
    end: UtcDatetime
    over: LicenseCounts


class ComplianceChangedData(Data):
    """`required`: while out of compliance, what the entitlements must cover to end it for good (the peaks that
    caused it); enforcement for out-of-compliance expiry ends only when they do (a purchase). `missing_licenses`:
    licenses a registered instance must hold and does not (Server, Warm Standby). `forecast`: an estimate (see
    `ForecastRisk`), or null."""

    registration: Registration
    authorization: Authorization
    enforcement: Enforcement
    deficit: Deficit
    over_since: UtcDatetime | None = None
    over_stage: OverStage | None = None
    ooc_since: UtcDatetime | None = None
    deadlines: Deadlines
    required: LicenseCounts | None = None
    missing_licenses: Annotated[
        tuple[PresenceLicense, ...], Field(max_length=2, json_schema_extra={"uniqueItems": True})
    ] = ()
    forecast: ForecastRisk | None = None

    @field_validator("missing_licenses")
    @classmethod
    def _once_each(cls, value: tuple[PresenceLicense, ...]) -> tuple[PresenceLicense, ...]:
        if len(set(value)) != len(value):
            raise ValueError("missing_licenses must not repeat a license")
        return value


DetailKey = Annotated[str, free(1, 64)]
DetailValue = (
    Annotated[str, free(0, MAX_TEXT)]
    | StrictInt
    | StrictBool
    | None
    | Annotated[tuple[Annotated[str, free(0, 64)], ...], Field(max_length=16)]
    | Annotated[dict[DetailKey, Count], Field(max_length=16)]
)
"""An alert detail: text, a number, a flag, a list of names, or counts by name."""


class AlertRaisedData(Data):
    alert_id: Annotated[str, free(1, 128)]
    alert: AlertName
    severity: Severity
    summary: Text
    details: Annotated[dict[DetailKey, DetailValue], Field(max_length=32)] = Field(default_factory=dict)


class AlertResolvedData(Data):
    alert_id: Annotated[str, free(1, 128)]
    alert: AlertName


MAX_DEAD_LETTER_PAYLOAD = 65536
"""A dead letter carries at most this many bytes of the refused record (a prefix; its size and SHA-256 say which)."""


class DeadLetterHeader(Data):
    name: Annotated[str, free(0, 256)]
    value_base64: Annotated[str, StringConstraints(max_length=1368)] | None  # 1 KiB of the value at most


class DeadLetterData(Data):
    topic: Annotated[str, free(1, 249)]
    partition: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]
    offset: Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]
    key: Annotated[str, free(0, 1024)] | None
    error: Annotated[str, free(1, 4000)]
    payload_base64: Annotated[str, StringConstraints(max_length=(MAX_DEAD_LETTER_PAYLOAD + 2) // 3 * 4)]
    payload_size: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] | None = None
    """The size of the original value in bytes (null: no value)."""
    payload_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None
    """SHA-256 of the whole original value, hex: find the original by topic, partition and offset."""
    payload_truncated: StrictBool = False
    headers: Annotated[tuple[DeadLetterHeader, ...], Field(max_length=64)] = ()


# ---------------------------------------------------------------- the envelope


ExtensionValue = (
    Annotated[str, free(0, MAX_EXTENSION_CHARS)] | Annotated[StrictInt, Field(ge=-(2**31), le=2**31 - 1)] | StrictBool
)
"""A CloudEvents extension attribute: a string, a 32-bit integer or a boolean."""


def _envelope_schema(schema: dict[str, Any]) -> None:
    """What the model enforces beyond its fields: extension names and count, and `type` (which tells the types
    apart, so the schema requires it although a model built in Python fills it in)."""
    schema["propertyNames"] = {"pattern": EXTENSION_NAME_PATTERN}
    schema["maxProperties"] = 8 + MAX_EXTENSIONS
    schema["required"] = sorted({*schema.get("required", ()), "type"})


class CloudEvent(BaseModel):
    """The CloudEvents 1.0 envelope every type shares. Extension attributes are accepted and kept: at most
    MAX_EXTENSIONS, named by 1-20 lowercase letters or digits."""

    model_config = ConfigDict(
        frozen=True,
        extra="allow",
        strict=True,
        json_schema_extra=_envelope_schema,
    )
    __pydantic_extra__: dict[str, ExtensionValue] = Field(init=False)

    specversion: Literal["1.0"] = "1.0"
    id: Annotated[str, free(1, 256)]
    source: Annotated[str, free(1, 1024)]
    time: UtcDatetime
    subject: InstanceId
    datacontenttype: Annotated[str, StringConstraints(pattern=MEDIA_TYPE_PATTERN)] = "application/json"

    @model_validator(mode="after")
    def _extensions(self) -> CloudEvent:
        extra = self.__pydantic_extra__
        if extra:
            if len(extra) > MAX_EXTENSIONS:
                raise ValueError(f"at most {MAX_EXTENSIONS} extension attributes; got {len(extra)}")
            for name in extra:
                if _EXTENSION_NAME.fullmatch(name) is None:
                    raise ValueError(f"extension attribute name {name[:40]!r} must be 1-20 lowercase letters or digits")
        return self


_EXTENSION_NAME = re.compile(EXTENSION_NAME_PATTERN)


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


class InstanceConfigured(CloudEvent):
    """How the product instance is installed (its OVA's agent limit); the latest by time holds."""

    type: Literal["licensing.instance.configured"] = "licensing.instance.configured"
    data: InstanceConfiguredData


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
    data: ReportingSucceededData = ReportingSucceededData()


class ReportingFailed(CloudEvent):
    type: Literal["licensing.reporting.failed"] = "licensing.reporting.failed"
    data: FailureReason


class EntitlementsFetchFailed(CloudEvent):
    """The Smart Agent could not get the license type or the entitlements from the licensing authority."""

    type: Literal["licensing.entitlements.fetch_failed"] = "licensing.entitlements.fetch_failed"
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


class ClassicLicensingUsed(CloudEvent):
    """The instance runs Classic Licensing (the document: an upgrade to 12.5 may "stay on Classic Licensing"): no
    evaluation period, no registration, its licenses from its classic license file."""

    type: Literal["licensing.instance.classic_licensing"] = "licensing.instance.classic_licensing"
    data: Empty = Empty()


class MigratedToSmart(CloudEvent):
    """The instance migrated from Classic to Smart Licensing, one way ("Once you migrate to Smart Licensing, you
    cannot use Classic Licensing"): it is unregistered, in evaluation until it registers."""

    type: Literal["licensing.instance.migrated_to_smart"] = "licensing.instance.migrated_to_smart"
    data: Empty = Empty()


AgentCall = Literal["register", "authorize", "renew_registration", "report", "deregister", "probe", "pin_key"]
"""The Smart Agent's calls to the licensing authority."""


class CallAnsweredData(Data):
    """What came back from one of the Smart Agent's calls to the licensing authority: `ok` and the authority's
    `answer` (its JSON body), or not `ok` and the `reason` (a timeout, a refusal, the authority unreachable)."""

    call_id: Annotated[str, free(1, 64)]
    operation: AgentCall
    ok: StrictBool
    answer: Annotated[dict[str, JsonValue], Field(max_length=100)] = {}
    reason: Annotated[str, free(0, MAX_TEXT)] = ""


class AgentCallAnswered(CloudEvent):
    """Internal to the Smart Agent: the answer to its call `data.call_id`, made outside its unit of work and heard
    back as an input, at the call's event `time` (so a replay hears it where the live run did)."""

    type: Literal["licensing.agent.call_answered"] = "licensing.agent.call_answered"
    data: CallAnsweredData


class AgentCommand(CloudEvent):
    """An operation for the Smart Agent of the instance named by `subject` (`ccxlic register`, ...)."""

    type: Literal["licensing.agent.command"] = "licensing.agent.command"
    data: AgentCommandData


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


class LicenseControlBreached(CloudEvent):
    type: Literal["licensing.control.breached"] = "licensing.control.breached"
    data: ControlBreachData


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
    InstanceConfigured,
    AuthorizationRenewed,
    AuthorizationRenewalFailed,
    RegistrationRenewed,
    RegistrationRenewalFailed,
    ReportingSucceeded,
    ReportingFailed,
    EntitlementsFetchFailed,
    SmartAgentInitialized,
    SmartAgentInitFailed,
    ReservationInstalled,
    ReservationReturned,
    ClassicLicensingUsed,
    MigratedToSmart,
    AgentCommand,
    AgentCallAnswered,
    ClockTicked,
    ConsumptionChanged,
    IntervalClosed,
    SignInRejected,
    LicenseControlBreached,
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
