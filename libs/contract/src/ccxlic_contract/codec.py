"""One codec for the whole contract: `encode(event) -> bytes` and `decode(bytes) -> Event`.

Decoding goes through a single discriminated-union TypeAdapter keyed on `type`. Messages in CloudEvents binary
mode (attributes in `ce_*` headers, `data` as the value) are accepted too, by `decode_message`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from ccxlic_contract.events import (
    AgentRoster,
    AgentSignedIn,
    AgentSignedOut,
    AlertRaised,
    AlertResolved,
    AuthorizationRenewalFailed,
    AuthorizationRenewed,
    ClockTicked,
    ComplianceChanged,
    ConsumptionChanged,
    ConsumptionFailed,
    DeadLettered,
    EntitlementsSet,
    InstanceDeregistered,
    InstanceRegistered,
    IntervalClosed,
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
)

Event = Annotated[
    AgentSignedIn
    | AgentSignedOut
    | AgentRoster
    | PortsSampled
    | EntitlementsSet
    | InstanceRegistered
    | InstanceDeregistered
    | AuthorizationRenewed
    | AuthorizationRenewalFailed
    | RegistrationRenewed
    | RegistrationRenewalFailed
    | ReportingSucceeded
    | ReportingFailed
    | SmartAgentInitialized
    | SmartAgentInitFailed
    | ReservationInstalled
    | ReservationReturned
    | ClockTicked
    | ConsumptionChanged
    | IntervalClosed
    | SignInRejected
    | ConsumptionFailed
    | ComplianceChanged
    | AlertRaised
    | AlertResolved
    | DeadLettered,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
MAX_ERRORS_SHOWN = 5


class ContractError(ValueError):
    """Bytes that are not a valid event of the contract. The message says what was wrong and where."""


def encode(event: Event) -> bytes:
    """The structured-mode JSON of an event (UTF-8)."""
    return event.model_dump_json().encode()


def decode(raw: bytes | str) -> Event:
    """Parse and validate one structured-mode CloudEvent; raise ContractError saying what is wrong."""
    try:
        return EVENT_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise ContractError(describe(exc)) from None


def decode_message(value: bytes | None, headers: Sequence[tuple[str, bytes]] = ()) -> Event:
    """Decode a Kafka record in either CloudEvents content mode.

    Structured mode is the default (our producers set `content-type: application/cloudevents+json`, plain
    publishers often set nothing). A record with `ce_type` and no structured content-type is binary mode.
    """
    header_map = {k.lower(): v for k, v in headers}
    content_type = header_map.get("content-type", b"").decode("latin-1").lower()
    if "ce_type" in header_map and not content_type.startswith("application/cloudevents"):
        return _decode_binary(value, header_map)
    if value is None:
        raise ContractError("message has no value (a tombstone or an empty record)")
    return decode(value)


def _decode_binary(value: bytes | None, headers: dict[str, bytes]) -> Event:
    attrs: dict[str, Any] = {}
    for name, raw in headers.items():
        if name.startswith("ce_"):
            try:
                attrs[name[3:]] = raw.decode()
            except UnicodeDecodeError:
                raise ContractError(f"header {name} is not UTF-8") from None
    if "content-type" in headers:
        attrs["datacontenttype"] = headers["content-type"].decode("latin-1").split(";")[0].strip()
    try:
        attrs["data"] = json.loads(value) if value else {}
    except ValueError as exc:
        raise ContractError(f"binary-mode data is not JSON: {exc}") from None
    try:
        return EVENT_ADAPTER.validate_python(attrs)
    except ValidationError as exc:
        raise ContractError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """A one-line, human-readable account of a validation error: `where: what` for each problem."""
    errors = exc.errors(include_url=False)
    parts = []
    for err in errors[:MAX_ERRORS_SHOWN]:
        loc = _location(err["loc"])
        msg = _FRIENDLIER.get(err["type"], err["msg"])
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = len(errors) - MAX_ERRORS_SHOWN
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


_FRIENDLIER = {
    "timezone_aware": "must be an RFC 3339 time with an offset (Z or +hh:mm), e.g. 2026-03-02T08:00:00Z",
}


def _location(loc: Iterable[int | str]) -> str:
    # The discriminated union puts the type's tag first in the location; a reader wants the field path.
    items = [str(x) for x in loc]
    if items and "." in items[0] and not items[0].startswith("data"):
        items = items[1:]
    return ".".join(items)
