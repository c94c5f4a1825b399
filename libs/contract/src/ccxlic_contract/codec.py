"""One codec for the whole contract: `encode(event) -> bytes` and `decode(bytes) -> Event`.

Decoding goes through a single discriminated-union TypeAdapter keyed on `type`. Messages in CloudEvents binary
mode (attributes in `ce_*` headers, `data` as the value) are accepted too, by `decode_message`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError
from pydantic_core import from_json

from ccxlic_contract.events import (
    MAX_MESSAGE_BYTES,
    NO_NUL,
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
)

Event = Annotated[
    AgentSignedIn
    | AgentSignedOut
    | AgentRoster
    | PortsSampled
    | EntitlementsSet
    | InstanceRegistered
    | InstanceDeregistered
    | InstanceConfigured
    | AuthorizationRenewed
    | AuthorizationRenewalFailed
    | RegistrationRenewed
    | RegistrationRenewalFailed
    | ReportingSucceeded
    | ReportingFailed
    | EntitlementsFetchFailed
    | SmartAgentInitialized
    | SmartAgentInitFailed
    | ReservationInstalled
    | ReservationReturned
    | ClassicLicensingUsed
    | MigratedToSmart
    | AgentCommand
    | AgentCallAnswered
    | ClockTicked
    | ConsumptionChanged
    | IntervalClosed
    | SignInRejected
    | LicenseControlBreached
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

Headers = Sequence[tuple[str | bytes, bytes | None]]
"""Kafka record headers as a client delivers them: a value may be null."""


class ContractError(ValueError):
    """Bytes that are not a valid event of the contract. The message says what was wrong and where."""


def encode(event: Event) -> bytes:
    """The structured-mode JSON of an event (UTF-8)."""
    return event.model_dump_json().encode()


def decode(raw: bytes | str) -> Event:
    """Parse and validate one structured-mode CloudEvent; raise ContractError saying what is wrong.

    Total: whatever the bytes, the answer is an event or a ContractError."""
    size = len(raw)
    if size > MAX_MESSAGE_BYTES:
        raise ContractError(f"message of {size:,} bytes is larger than the limit of {MAX_MESSAGE_BYTES:,} bytes")
    try:
        return EVENT_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise ContractError(describe(exc)) from None
    except Exception as exc:  # the codec is total: anything else the parser meets is a refusal with its reason
        raise ContractError(f"cannot decode the message: {type(exc).__name__}: {str(exc)[:200]}") from None


def decode_message(value: bytes | None, headers: Headers = ()) -> Event:
    """Decode a Kafka record in either CloudEvents content mode; raise ContractError saying what is wrong.

    Structured mode is the default (our producers set `content-type: application/cloudevents+json`, plain
    publishers often set nothing). A record with `ce_type` and no structured content-type is binary mode. Total:
    whatever the value and headers (null header values included), the answer is an event or a ContractError.
    """
    header_map: dict[str, bytes] = {}
    for name, raw in headers:
        key = (name.decode("latin-1") if isinstance(name, bytes) else str(name)).lower()
        header_map[key] = raw if isinstance(raw, bytes) else b""
    size = (len(value) if value is not None else 0) + sum(len(k) + len(v) for k, v in header_map.items())
    if size > MAX_MESSAGE_BYTES:
        raise ContractError(f"message of {size:,} bytes is larger than the limit of {MAX_MESSAGE_BYTES:,} bytes")
    content_type = header_map.get("content-type", b"").decode("latin-1").strip()
    if "ce_type" in header_map and not content_type.lower().startswith("application/cloudevents"):
        return _decode_binary(value, header_map, content_type)
    if value is None:
        raise ContractError("message has no value (a tombstone or an empty record)")
    return decode(value)


def _decode_binary(value: bytes | None, headers: dict[str, bytes], content_type: str) -> Event:
    """Binary mode: attributes from `ce_*` headers, `data` the value. The two are put together as one structured
    document (the value embedded as it is, once it is known to be one JSON value) and decoded as such, so both
    modes go through the same validation."""
    attrs: dict[str, str] = {}
    for name, raw in headers.items():
        if not name.startswith("ce_"):
            continue
        attribute = name[3:]
        if attribute == "data":
            raise ContractError("header ce_data: in binary mode the data is the record's value, not a header")
        try:
            attrs[attribute] = raw.decode()
        except UnicodeDecodeError:
            raise ContractError(f"header {name} is not UTF-8") from None
    if content_type:
        attrs["datacontenttype"] = content_type
    document = json.dumps(attrs).encode()
    if value:
        try:
            from_json(value)
        except ValueError as exc:
            raise ContractError(f"binary-mode data is not one JSON value: {str(exc)[:200]}") from None
        document = document[:-1] + (b', "data": ' if attrs else b'"data": ') + value + b"}"
    return decode(document)


def describe(exc: ValidationError) -> str:
    """A one-line, human-readable account of a validation error: `where: what` for each problem."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = []
    for err in errors[:MAX_ERRORS_SHOWN]:
        loc = _location(err["loc"])
        kind = err["type"]
        if kind == "string_pattern_mismatch" and (err.get("ctx") or {}).get("pattern") == NO_NUL:
            msg = "must not contain a NUL character (U+0000): it cannot be stored"
        elif kind in _FRIENDLIER:
            msg = _FRIENDLIER[kind]
            if kind == "union_tag_invalid":
                msg = msg.format(tag=str((err.get("ctx") or {}).get("tag", ""))[:80])
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append((f"{loc}: {msg}" if loc else msg)[:300])
    more = len(errors) - MAX_ERRORS_SHOWN
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


_FRIENDLIER = {
    "timezone_aware": "must be an RFC 3339 time with an offset (Z or +hh:mm), e.g. 2026-03-02T08:00:00Z",
    "union_tag_invalid": "type: {tag!r} is not a type of the contract (docs/schemas/index.json lists them)",
    "union_tag_not_found": "type: missing; every event names its type",
}


def _location(loc: Iterable[int | str]) -> str:
    # The discriminated union puts the type's tag first in the location; a reader wants the field path.
    items = [str(x) for x in loc]
    if items and "." in items[0] and not items[0].startswith("data"):
        items = items[1:]
    return ".".join(items)
