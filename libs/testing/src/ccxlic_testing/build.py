"""Build contract events tersely, for tests, the simulator and benchmarks: `Build("inst-1").usage(t, 3, 1)`.

Ids are `<instance>-<n>` in creation order, so a rebuilt scenario has the same ids (replays are comparable).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    AgentCommand,
    AgentCommandData,
    AgentRoster,
    AgentRosterData,
    AgentSignedIn,
    AgentSignedInData,
    AgentSignedOut,
    AgentSignedOutData,
    AuthorizationRenewalFailed,
    AuthorizationRenewed,
    ClassicLicensingUsed,
    ClockTicked,
    ComplianceChanged,
    ComplianceChangedData,
    ConsumptionChanged,
    ConsumptionChangedData,
    ConsumptionFailed,
    ControlBreachData,
    Deadlines,
    Deficit,
    Deployment,
    Enforcement,
    EnforcementReason,
    EntitlementsFetchFailed,
    EntitlementsSet,
    EntitlementsSetData,
    FailureReason,
    Headroom,
    InstanceConfigured,
    InstanceConfiguredData,
    InstanceDeregistered,
    InstanceRegistered,
    InstanceRegisteredData,
    IntervalClosed,
    IntervalClosedData,
    LicenseControlBreached,
    LicenseCounts,
    MigratedToSmart,
    Peak,
    PeakWitness,
    PortsSampled,
    PortsSampledData,
    RegistrationRenewalFailed,
    RegistrationRenewed,
    ReportingFailed,
    ReportingSucceeded,
    ReportingSucceededData,
    ReservationInstalled,
    ReservationInstalledData,
    ReservationReturned,
    SmartAgentInitFailed,
    SmartAgentInitialized,
    Witness,
)


def _counts(standard: int, premium: int, ivr_ports: int) -> LicenseCounts:
    return LicenseCounts(standard=standard, premium=premium, ivr_ports=ivr_ports)


class Build:
    def __init__(self, instance: str, source: str = "urn:ccxlic:test", prefix: str | None = None) -> None:
        self.instance = instance
        self.source = source
        self.prefix = prefix or instance
        self.n = 0

    def _event(self, cls: type[Any], t: datetime, data: Any, subject: str | None = None) -> Event:
        self.n += 1
        event: Event = cls(
            id=f"{self.prefix}-{self.n}", source=self.source, time=t, subject=subject or self.instance, data=data
        )
        return event

    def sign_in(self, t: datetime, agent: str, *capabilities: str, supervisor: bool = False) -> Event:
        data = AgentSignedInData.model_validate(
            {"agent_id": agent, "capabilities": capabilities, "supervisor": supervisor}
        )
        return self._event(AgentSignedIn, t, data)

    def sign_out(self, t: datetime, agent: str) -> Event:
        return self._event(AgentSignedOut, t, AgentSignedOutData(agent_id=agent))

    def roster(self, t: datetime, *agents: tuple[str, tuple[str, ...]] | str) -> Event:
        """The complete set signed in at t: agent ids, or (agent id, capabilities) pairs."""
        listed = [
            {"agent_id": a, "capabilities": ()} if isinstance(a, str) else {"agent_id": a[0], "capabilities": a[1]}
            for a in agents
        ]
        return self._event(AgentRoster, t, AgentRosterData.model_validate({"agents": tuple(listed)}))

    def ports(self, t: datetime, ivr: int, outbound_ports: int = 0, outbound_seats: int = 0) -> Event:
        data = PortsSampledData(inbound_ivr_ports=ivr, outbound_ports=outbound_ports, outbound_seats=outbound_seats)
        return self._event(PortsSampled, t, data)

    def usage(
        self, t: datetime, standard: int, premium: int, ivr_ports: int = 0, breach: tuple[int, int, int] | None = None
    ) -> Event:
        """A licensing.consumption.changed; `breach` (Standard, Premium, IVR ports) is License Control's excess."""
        data = ConsumptionChangedData(
            standard=standard,
            premium=premium,
            ivr_ports=ivr_ports,
            outbound_ports=0,
            outbound_seats=0,
            headroom=Headroom(standard=None, premium=None, ivr_ports=None),
            control_breach=None if breach is None else _counts(*breach),
        )
        return self._event(ConsumptionChanged, t, data)

    def breach(
        self,
        t: datetime,
        standard: int = 0,
        premium: int = 0,
        ivr_ports: int = 0,
        limit: Literal["license_control", "reservation"] = "license_control",
    ) -> Event:
        """A licensing.control.breached: usage over limits of 40 Standard, 10 Premium, 12 IVR ports by this much
        (License Control's, or a reservation's)."""
        limits = _counts(40, 10, 12)
        usage = _counts(
            40 + standard if standard else 0, 10 + premium if premium else 0, 12 + ivr_ports if ivr_ports else 0
        )
        data = ControlBreachData(
            usage=usage,
            limits=limits,
            excess=_counts(standard, premium, ivr_ports),
            cause="a roster over the cap",
            limit=limit,
        )
        return self._event(LicenseControlBreached, t, data)

    def entitle(
        self,
        t: datetime,
        standard: int,
        premium: int,
        ivr_ports: int = 10,
        deployment: Deployment = "production",
        overage_allowed: bool = True,
        server: int | None = None,
        warm_standby: int | None = None,
    ) -> Event:
        data = EntitlementsSetData(
            standard_seats=standard,
            premium_seats=premium,
            ivr_ports=ivr_ports,
            deployment=deployment,
            overage_allowed=overage_allowed,
            server=server,
            warm_standby=warm_standby,
        )
        return self._event(EntitlementsSet, t, data)

    def closed(
        self, t: datetime, start: datetime, end: datetime, standard: int, premium: int, revision: int = 1
    ) -> Event:
        none = PeakWitness(at=None)
        peak = Peak(
            standard=standard,
            premium=premium,
            agents=standard + premium,
            ivr_ports=0,
            outbound_ports=0,
            outbound_seats=0,
        )
        witness = Witness(
            standard=none, premium=none, agents=none, ivr_ports=none, outbound_ports=none, outbound_seats=none
        )
        data = IntervalClosedData(interval_start=start, interval_end=end, revision=revision, peak=peak, witness=witness)
        return self._event(IntervalClosed, t, data)

    def register(
        self,
        t: datetime,
        account: str = "va-test",
        ooc_since: datetime | None = None,
        required: tuple[int, int, int] | None = None,
    ) -> Event:
        """A registration; `ooc_since` and `required` (Standard, Premium, IVR ports): the account is still out of
        compliance, as the licensing authority says."""
        data = InstanceRegisteredData(
            virtual_account=account,
            out_of_compliance_since=ooc_since,
            required=None if required is None else _counts(*required),
        )
        return self._event(InstanceRegistered, t, data)

    def configure(self, t: datetime, max_agents: int | None, ova_profile: str | None = None) -> Event:
        """A licensing.instance.configured: the OVA's maximum of signed-in agents."""
        return self._event(
            InstanceConfigured, t, InstanceConfiguredData(max_agents=max_agents, ova_profile=ova_profile)
        )

    def deregister(self, t: datetime) -> Event:
        return self._event(InstanceDeregistered, t, {})

    def authorization_renewed(self, t: datetime) -> Event:
        return self._event(AuthorizationRenewed, t, {})

    def registration_renewed(self, t: datetime) -> Event:
        return self._event(RegistrationRenewed, t, {})

    def reporting_succeeded(
        self,
        t: datetime,
        verdict: str | None = None,
        standard: int = 0,
        premium: int = 0,
        ivr_ports: int = 0,
        *,
        ooc_since: datetime | None = None,
        required: tuple[int, int, int] | None = None,
    ) -> Event:
        """A usage report accepted; with `verdict`, the authority's answer (the counts are the shortfall; `ooc_since`
        and `required`, the account's out-of-compliance start and what its licenses must cover)."""
        if verdict is None:
            return self._event(ReportingSucceeded, t, {})
        shortfall = {"standard": standard, "premium": premium, "ivr_ports": ivr_ports}
        data: dict[str, Any] = {"verdict": verdict, "shortfall": shortfall, "reports": 1}
        if ooc_since is not None:
            data["out_of_compliance_since"] = ooc_since
        if required is not None:
            data["required"] = _counts(*required)
        return self._event(ReportingSucceeded, t, ReportingSucceededData.model_validate(data))

    def reserve(self, t: datetime, standard: int, premium: int, ivr_ports: int = 10) -> Event:
        data = ReservationInstalledData(standard_seats=standard, premium_seats=premium, ivr_ports=ivr_ports)
        return self._event(ReservationInstalled, t, data)

    def reservation_returned(self, t: datetime) -> Event:
        return self._event(ReservationReturned, t, {})

    def classic(self, t: datetime) -> Event:
        return self._event(ClassicLicensingUsed, t, {})

    def migrated(self, t: datetime) -> Event:
        return self._event(MigratedToSmart, t, {})

    def failure(self, kind: str, t: datetime, reason: str = "simulated failure") -> Event:
        """A failure event: authorization | registration | reporting | entitlements | agent_init | consumption."""
        cls = {
            "authorization": AuthorizationRenewalFailed,
            "registration": RegistrationRenewalFailed,
            "reporting": ReportingFailed,
            "entitlements": EntitlementsFetchFailed,
            "agent_init": SmartAgentInitFailed,
            "consumption": ConsumptionFailed,
        }[kind]
        return self._event(cls, t, FailureReason(reason=reason))

    def command(self, t: datetime, operation: str, **fields: Any) -> Event:
        """A licensing.agent.command, e.g. `command(t, "register", token="...")`."""
        return self._event(AgentCommand, t, AgentCommandData.model_validate({"operation": operation, **fields}))

    def agent_initialized(self, t: datetime) -> Event:
        return self._event(SmartAgentInitialized, t, {})

    def compliance(
        self,
        t: datetime,
        authorization: str = "authorized",
        *,
        registration: str | None = None,
        over_stage: str | None = None,
        over_since: datetime | None = None,
        ooc_since: datetime | None = None,
        enforcement: tuple[EnforcementReason, ...] = (),
        enforcement_since: datetime | None = None,
        deficit: tuple[int, int, int] = (0, 0, 0),
        missing: tuple[str, ...] = (),
        forecast: dict[str, Any] | None = None,
        **deadlines: datetime | None,
    ) -> Event:
        """A licensing.compliance.changed, as compliance would publish it (`forecast`: a ForecastRisk's fields)."""
        if registration is None:
            registration = (
                "unregistered"
                if "evaluation" in authorization or authorization == "no_licenses_in_use"
                else ("reserved" if authorization == "reserved" else "registered")
            )
        data = ComplianceChangedData.model_validate(
            {
                "registration": registration,
                "authorization": authorization,
                "enforcement": Enforcement(
                    active=bool(enforcement),
                    reasons=enforcement,
                    since=enforcement_since or (t if enforcement else None),
                ),
                "deficit": Deficit(standard=deficit[0], premium=deficit[1], ivr_ports=deficit[2]),
                "over_since": over_since or (t if over_stage else None),
                "over_stage": over_stage,
                "ooc_since": ooc_since,
                "deadlines": Deadlines(**deadlines),
                "missing_licenses": missing,
                "forecast": forecast,
            }
        )
        return self._event(ComplianceChanged, t, data)

    def tick(self, t: datetime, every_instance: bool = False) -> Event:
        return self._event(ClockTicked, t, {}, subject="*" if every_instance else None)
