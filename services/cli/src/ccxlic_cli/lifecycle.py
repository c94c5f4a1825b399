"""Lifecycle events by their CLI/scenario names (`register`, `renew-auth-failed`, ...)."""

from __future__ import annotations

from datetime import datetime

from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    AuthorizationRenewalFailed,
    AuthorizationRenewed,
    ClassicLicensingUsed,
    FailureReason,
    InstanceDeregistered,
    InstanceRegistered,
    InstanceRegisteredData,
    MigratedToSmart,
    RegistrationRenewalFailed,
    RegistrationRenewed,
    ReportingFailed,
    ReportingSucceeded,
    ReservationInstalled,
    ReservationInstalledData,
    ReservationReturned,
    SmartAgentInitFailed,
    SmartAgentInitialized,
)

KINDS: dict[str, tuple[type, str]] = {
    "register": (InstanceRegistered, "the instance registered with Cisco SSM (--account names the virtual account)"),
    "deregister": (InstanceDeregistered, "the instance deregistered"),
    "renew-auth": (AuthorizationRenewed, "the authorization was renewed"),
    "renew-auth-failed": (AuthorizationRenewalFailed, "the authorization renewal failed (--reason)"),
    "renew-registration": (RegistrationRenewed, "the registration (ID certificate) was renewed"),
    "renew-registration-failed": (RegistrationRenewalFailed, "the registration renewal failed (--reason)"),
    "report": (ReportingSucceeded, "usage reporting to SSM succeeded"),
    "report-failed": (ReportingFailed, "usage reporting to SSM failed (--reason)"),
    "agent-init": (SmartAgentInitialized, "the Smart Licensing agent initialized"),
    "agent-init-failed": (SmartAgentInitFailed, "the Smart Licensing agent failed to initialize (--reason)"),
    "reserve": (
        ReservationInstalled,
        "a Specific License Reservation was installed (--standard/--premium/--ivr-ports)",
    ),
    "return-reservation": (ReservationReturned, "the reservation was returned"),
    "classic": (ClassicLicensingUsed, "the instance stays on Classic Licensing (an upgrade)"),
    "migrate-to-smart": (MigratedToSmart, "the instance migrated to Smart Licensing (one way)"),
}


def lifecycle_event(
    kind: str,
    instance: str,
    at: datetime,
    event_id: str,
    source: str,
    *,
    reason: str = "",
    account: str = "default",
    standard: int | None = None,
    premium: int | None = None,
    ivr_ports: int | None = None,
) -> Event:
    """One lifecycle event; raises ValueError with what is missing."""
    if kind not in KINDS:
        raise ValueError(f"unknown lifecycle event {kind!r}; one of: {', '.join(KINDS)}")
    cls = KINDS[kind][0]
    if cls is InstanceRegistered:
        data: object = InstanceRegisteredData(virtual_account=account)
    elif cls is ReservationInstalled:
        if standard is None or premium is None:
            raise ValueError("reserve needs the reserved counts: --standard and --premium (and --ivr-ports)")
        data = ReservationInstalledData(standard_seats=standard, premium_seats=premium, ivr_ports=ivr_ports or 0)
    elif kind.endswith("-failed"):
        data = FailureReason(reason=reason or "failed (no reason given)")
    else:
        data = {}
    event: Event = cls(id=event_id, source=source, time=at, subject=instance, data=data)
    return event
