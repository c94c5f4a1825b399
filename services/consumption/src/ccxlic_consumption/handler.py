"""The consumption computer's outputs as wire events, on `licensing.consumption` (keyed by instance, in the order
decided). Ids are derived from what caused them, so a replay publishes the same events again."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    ALL_INSTANCES,
    ConsumptionChanged,
    ConsumptionFailed,
    FailureReason,
    IntervalClosed,
    LicenseControlBreached,
    SignInRejected,
    SignInRejectedData,
)
from ccxlic_runtime.instances import Audit, Forwarded

from ccxlic_consumption.decider import Breached, Changed, Output, Recorded, Rejected, Reported

SOURCE = "urn:ccxlic:consumption"
IDS = uuid.UUID("0b8f2d1e-7a44-4c1e-9d0f-5e3a6c2b1f77")
AUDIT = Audit(
    None,
    frozenset(
        {"licensing.consumption.interval_closed", "licensing.reservation.installed", "licensing.reservation.returned"}
    ),
)
"""The licensing log: every interval report (each revision) and the reservation events, as published."""


def _id(*parts: object) -> str:
    return str(uuid.uuid5(IDS, ":".join(str(p) for p in parts)))


def publish(instance: str, output: Output) -> Sequence[Event]:
    match output:
        case Recorded():
            return ()
        case Forwarded(event=event):
            return (event,)
        case Rejected():
            data = SignInRejectedData(
                agent_id=output.agent_id, license=output.license, reason=output.reason, limit=output.limit
            )
            rejected = SignInRejected(
                id=_id("rejected", output.cause_id), source=SOURCE, time=output.at, subject=instance, data=data
            )
            return (rejected,)
        case Breached():
            breach_id = _id("breached", instance, output.cause_id)
            return (
                LicenseControlBreached(id=breach_id, source=SOURCE, time=output.at, subject=instance, data=output.data),
            )
        case Reported(data=data, at=at):
            report_id = _id("interval", instance, data.interval_start.isoformat(), data.revision)
            return (IntervalClosed(id=report_id, source=SOURCE, time=at, subject=instance, data=data),)
        case Changed():
            changed_id = _id("changed", instance, output.seq)
            return (
                ConsumptionChanged(id=changed_id, source=SOURCE, time=output.at, subject=instance, data=output.data),
            )


def failed(event: Event, reason: str) -> Sequence[Event]:
    """An input the consumption computer could not compute usage for: alerting raises LicenseComputationFailed."""
    if event.subject == ALL_INSTANCES:
        return ()
    failure = ConsumptionFailed(
        id=_id("failed", event.id),
        source=SOURCE,
        time=event.time,
        subject=event.subject,
        data=FailureReason(reason=reason[:2000]),
    )
    return (failure,)
