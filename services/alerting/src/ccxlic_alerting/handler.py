"""Alerting's outputs as wire events, on `licensing.alerts`, and as the notification every channel renders. Ids are
derived from the alert (itself derived from the input that raised it), so a replay publishes the same events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from ccxlic_contract.codec import Event
from ccxlic_contract.events import AlertRaised, AlertRaisedData, AlertResolved, AlertResolvedData
from ccxlic_runtime.channels import notification_id
from ccxlic_runtime.instances import telling

from ccxlic_alerting.decider import Output
from ccxlic_alerting.machine import CATALOGUE, Notice, Raised, Resolved

SOURCE = "urn:ccxlic:alerting"
IDS = uuid.UUID("c4d2a0e8-5b3f-4e71-9a6c-7f1b3d5e9a20")
AUDIT = telling(frozenset({"licensing.alert.raised", "licensing.alert.resolved"}))
"""The licensing log: what alerting decided from (compliance's transitions and the failures it forwards, and the ticks
that raised or resolved an alert), and each alert raised and resolved."""


def iso(value: Any) -> Any:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def publish(instance: str, output: Output) -> Sequence[Event]:
    action = output.action
    if isinstance(action, Raised):
        a = action.alert
        details = {**a.details, "action": CATALOGUE[a.alert].action, "deadline": iso(a.deadline)}
        data = AlertRaisedData(
            alert_id=a.alert_id, alert=a.alert, severity=a.severity, summary=a.summary, details=details
        )
        return (
            AlertRaised(
                id=str(uuid.uuid5(IDS, f"raised:{a.alert_id}")),
                source=SOURCE,
                time=a.raised_at,
                subject=instance,
                data=data,
            ),
        )
    if isinstance(action, Resolved):
        a = action.alert
        data2 = AlertResolvedData(alert_id=a.alert_id, alert=a.alert)
        return (
            AlertResolved(
                id=str(uuid.uuid5(IDS, f"resolved:{a.alert_id}")),
                source=SOURCE,
                time=action.at,
                subject=instance,
                data=data2,
            ),
        )
    return ()  # notices become deliveries; held notices history


def notification(instance: str, n: Notice, reason: str | None) -> dict[str, Any]:
    """What every channel renders (stored with each delivery)."""
    a = n.alert
    spec = CATALOGUE[a.alert]
    out = {
        "kind": n.kind,
        "alert_id": a.alert_id,
        "alert": a.alert,
        "title": spec.title,
        "severity": a.severity,
        "instance": instance,
        "summary": a.summary,
        "action": spec.action,
        "deadline": iso(a.deadline),
        "raised_at": iso(a.raised_at),
        "at": iso(n.at),
        "reason": reason,
        "details": a.details,
    }
    return {"notification_id": notification_id(out), **out}
