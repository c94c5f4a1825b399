"""The topic registry: every topic of the contract, its key rule and the types it may carry.

Each type has one topic it is published to (`topic_for`). The chain's topics also carry, unchanged and in the order
handled, inputs the next service needs (`forwards`): the consumption computer forwards entitlements, lifecycle
events and each instance's clock ticks on `licensing.consumption`; compliance forwards the failures alerting
raises alerts for, their recoveries and the ticks on `licensing.compliance`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ccxlic_contract.events import (
    AgentCallAnswered,
    AgentCommand,
    AgentRoster,
    AgentSignedIn,
    AgentSignedOut,
    AlertRaised,
    AlertResolved,
    AuthorizationRenewalFailed,
    AuthorizationRenewed,
    ClassicLicensingUsed,
    ClockTicked,
    CloudEvent,
    ComplianceChanged,
    ConsumptionChanged,
    ConsumptionFailed,
    DeadLettered,
    EntitlementsFetchFailed,
    EntitlementsSet,
    InstanceConfigured,
    InstanceDeregistered,
    InstanceRegistered,
    IntervalClosed,
    LicenseControlBreached,
    MigratedToSmart,
    PortsSampled,
    RegistrationRenewalFailed,
    RegistrationRenewed,
    ReportingFailed,
    ReportingSucceeded,
    ReservationInstalled,
    ReservationReturned,
    SignInRejected,
    SmartAgentInitFailed,
    SmartAgentInitialized,
    type_name,
)

KeyRule = Literal["subject"]


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    types: frozenset[str]
    key: KeyRule
    publisher: str
    compacted: bool = False
    partitions: int = 3
    forwards: frozenset[str] = frozenset()

    def allows(self, event_type: str) -> bool:
        return event_type in self.types or event_type in self.forwards


def _types(*classes: type[CloudEvent]) -> frozenset[str]:
    return frozenset(type_name(c) for c in classes)


AGENT_ACTIVITY = Topic(
    "ccx.agent-activity", _types(AgentSignedIn, AgentSignedOut, AgentRoster), "subject", "contact-center services"
)
PORT_USAGE = Topic("ccx.port-usage", _types(PortsSampled), "subject", "telephony")
ENTITLEMENTS = Topic("licensing.entitlements", _types(EntitlementsSet), "subject", "admin", compacted=True)
LIFECYCLE = Topic(
    "licensing.lifecycle",
    _types(
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
    ),
    "subject",
    "smart agent / admin",
)
CLOCK = Topic("licensing.clock", _types(ClockTicked), "subject", "ticker")
AGENT_COMMANDS = Topic("licensing.agent-commands", _types(AgentCommand), "subject", "admin (ccxlic)")
AGENT_CALLS = Topic(
    "licensing.agent-calls",
    _types(AgentCallAnswered),
    "subject",
    "smart agent (the licensing authority's answers to its calls, read back by it)",
)
"""Internal: the Smart Agent calls the licensing authority outside its unit of work (a call is an output, made once
the unit of work that asked for it has committed) and hears the answer back here, as an input at the call's time."""
CONSUMPTION = Topic(
    "licensing.consumption",
    _types(ConsumptionChanged, IntervalClosed, SignInRejected, LicenseControlBreached, ConsumptionFailed),
    "subject",
    "consumption computer",
    forwards=ENTITLEMENTS.types | LIFECYCLE.types | CLOCK.types,
)
INTAKE = Topic(
    "licensing.intake",
    frozenset(),
    "subject",
    "consumption computer (inputs found on another partition than their subject's, re-keyed)",
    forwards=ENTITLEMENTS.types | LIFECYCLE.types | AGENT_ACTIVITY.types | PORT_USAGE.types | CLOCK.types,
)
"""Internal: a publisher with another partitioner than Kafka's default murmur2 (librdkafka's consistent_random: kcat,
confluent-kafka), or with no key, puts an instance's inputs on other partitions than its subject's. The consumption
computer publishes each such input here, unchanged and keyed by its subject, and reads it back on the right partition:
every well-formed input is heard, whatever the publisher's partitioner."""
COMPLIANCE = Topic(
    "licensing.compliance",
    _types(ComplianceChanged),
    "subject",
    "compliance",
    forwards=_types(
        AuthorizationRenewalFailed,
        AuthorizationRenewed,
        RegistrationRenewalFailed,
        RegistrationRenewed,
        ReportingFailed,
        ReportingSucceeded,
        EntitlementsFetchFailed,
        EntitlementsSet,
        InstanceRegistered,
        LicenseControlBreached,
        SmartAgentInitFailed,
        SmartAgentInitialized,
        ConsumptionFailed,
        ConsumptionChanged,
        ClockTicked,
    ),
)
ALERTS = Topic("licensing.alerts", _types(AlertRaised, AlertResolved), "subject", "alerting")
DEAD_LETTER = Topic("licensing.dead-letter", _types(DeadLettered), "subject", "any service", partitions=1)

TOPICS: tuple[Topic, ...] = (
    AGENT_ACTIVITY,
    PORT_USAGE,
    ENTITLEMENTS,
    LIFECYCLE,
    CLOCK,
    AGENT_COMMANDS,
    AGENT_CALLS,
    INTAKE,
    CONSUMPTION,
    COMPLIANCE,
    ALERTS,
    DEAD_LETTER,
)

_BY_TYPE = {t: topic for topic in TOPICS for t in topic.types}


def topic_for(event_type: str) -> Topic:
    """The one topic that carries a type. Raises KeyError for a type outside the contract."""
    return _BY_TYPE[event_type]


def key_for(event: CloudEvent) -> bytes:
    """The Kafka key of an event: its subject (the product instance id)."""
    return event.subject.encode()
