"""The Smart Agent's rules: pure functions of (state, input, outcome). The agent's decider.

The agent reads one ordered stream per instance: its commands (`licensing.agent.command`, from `ccxlic`) merged
by event time with the consumption computer's output (the instance's ticks and its closed interval reports). The
instance's *now* is the largest event time seen, so every schedule runs on event time and a simulation walks it.

Per input:
1. a command takes effect (settings, reservation steps) or asks for a call to the licensing authority;
2. a closed interval report waits to be reported (the latest revision of each interval);
3. whatever is due is called, one call at a time (`need`), each at the instance's now: the registration renewal
   (six months after registering or renewing), the authorization (30 days after the last success; on failure
   again after 1 h, 2 h, 4 h ... at most 24 h), and the usage report (every 8 hours, an hour after each interval
   ends, so the interval's report is in; it carries every report not sent yet).
The call's outcome (`resume`) becomes the lifecycle events of what happened (success, or failure with its reason,
a timeout included), and the next due time. Every call moves its due time forward, so one input makes a bounded
number of calls.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    AgentCommand,
    AuthorizationRenewalFailed,
    AuthorizationRenewed,
    Deployment,
    EntitlementsFetchFailed,
    EntitlementsSet,
    EntitlementsSetData,
    FailureReason,
    InstanceDeregistered,
    InstanceRegistered,
    InstanceRegisteredData,
    IntervalClosed,
    LicenseCounts,
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
    Transport,
)
from ccxlic_rules import codes
from ccxlic_rules.codes import CONFIRMATION_CODE, REQUEST_CODE, RETURN_CODE
from ccxlic_runtime.instances import Decision
from pydantic import BaseModel, ConfigDict

SOURCE = "urn:ccxlic:smart-agent"
IDS = uuid.UUID("6c1d8e2f-4b5a-4e9c-9f0d-3a2b1c7e5d84")
Status = Literal["unregistered", "registered", "reservation_enabled", "reserved"]
Operation = Literal[
    "register", "authorize", "renew_registration", "report", "deregister", "probe", "install_reservation"
]
LICENSES = ("standard", "premium", "ivr_ports")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Rules:
    interval: timedelta = timedelta(hours=8)
    report_offset: timedelta = timedelta(hours=1)  # after an interval ends (its report is closed by then)
    authorization_every: timedelta = timedelta(days=30)  # used when the authority does not say
    registration_renew_after: timedelta = timedelta(days=182)
    retry_first: timedelta = timedelta(hours=1)
    retry_max: timedelta = timedelta(hours=24)

    def backoff(self, failures: int) -> timedelta:
        delay: timedelta = self.retry_first * 2 ** min(max(0, failures - 1), 30)
        return min(self.retry_max, delay)

    def next_report(self, after: datetime) -> datetime:
        """The first report slot strictly after `after`: an interval boundary (aligned to 00:00 UTC) + offset."""
        n = (after - self.report_offset - EPOCH) // self.interval + 1
        return EPOCH + n * self.interval + self.report_offset


class Pending(BaseModel):
    """A closed interval's report, waiting to be sent."""

    model_config = ConfigDict(frozen=True)

    interval_start: datetime
    interval_end: datetime
    revision: int
    peak: dict[str, int]


class Result(BaseModel):
    """The outcome of the instance's last command, as an admin reads it (`ccxlic register` waits for it)."""

    model_config = ConfigDict(frozen=True)

    command_id: str | None
    operation: str
    at: datetime
    ok: bool
    message: str
    code: str | None = None  # a reservation request, confirmation or return code to hand to the authority


class State(BaseModel):
    model_config = ConfigDict(frozen=True)

    instance: str
    now: datetime | None = None
    status: Status = "unregistered"
    transport: Transport = "direct"
    url: str | None = None
    proxy: str | None = None
    deployment: Deployment = "production"
    overage_allowed: bool = True
    virtual_account: str | None = None
    identity: str | None = None
    registration_valid_until: datetime | None = None
    next_authorization: datetime | None = None
    authorization_failures: int = 0
    next_registration_renewal: datetime | None = None
    registration_failures: int = 0
    next_report: datetime | None = None
    report_failures: int = 0
    pending: dict[str, Pending] = {}
    entitlements: dict[str, int] | None = None  # as last published in licensing.entitlements.set
    reservation: dict[str, int] | None = None
    reservation_serial: str | None = None
    seq: int = 0  # events published
    calls: int = 0
    last: Result | None = None
    command_id: str | None = None  # the command a call in flight answers
    token: str | None = None  # a registration token, only while its call is in flight


@dataclass(frozen=True, slots=True)
class Call:
    """A request to the licensing authority, made by the shell at the instance's now."""

    operation: Operation
    at: datetime
    transport: Transport
    url: str | None
    proxy: str | None
    body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What came back: the answer, or why there is none ("timeout: ...", "unreachable: ...", "refused (403): ...")."""

    call: Call
    ok: bool
    answer: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Emitted:
    event: Event


@dataclass(frozen=True, slots=True)
class Called:
    seq: int
    at: datetime
    operation: str
    ok: bool
    message: str


Output = Emitted | Called

_RETRIED: dict[str, tuple[str, str, type[Any], str]] = {
    # call -> (its failure counter, its due time, the event that says it failed, the operation's name)
    "authorize": ("authorization_failures", "next_authorization", AuthorizationRenewalFailed, "renew_authorization"),
    "renew_registration": (
        "registration_failures",
        "next_registration_renewal",
        RegistrationRenewalFailed,
        "renew_registration",
    ),
    "report": ("report_failures", "next_report", ReportingFailed, "report"),
}


class AgentDecider:
    """The runtime's Decider for the Smart Agent (frozen state: its own working copy)."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules

    def initial(self, instance: str) -> State:
        return State(instance=instance)

    def working(self, state: State) -> State:
        return state

    def saved(self, state: State) -> State:
        return state

    def decide(self, state: State, event: Event, env: None) -> Decision[State, Output]:
        now = event.time if state.now is None or event.time > state.now else state.now
        s = state.model_copy(update={"now": now})
        out: list[Output] = []
        call: Call | None = None
        if isinstance(event, AgentCommand):
            s, call = self._command(s, event, out)
        elif isinstance(event, IntervalClosed) and s.status == "registered":
            d = event.data
            key = d.interval_start.isoformat()
            if key not in s.pending or s.pending[key].revision < d.revision:
                peak = {lic: getattr(d.peak, lic) for lic in LICENSES}
                pending = {
                    **s.pending,
                    key: Pending(
                        interval_start=d.interval_start, interval_end=d.interval_end, revision=d.revision, peak=peak
                    ),
                }
                s = s.model_copy(update={"pending": pending})
        return Decision(s, tuple(out), need=call or self._due(s))

    def resume(self, state: State, answer: object) -> Decision[State, Output]:
        assert isinstance(answer, Outcome)
        out: list[Output] = []
        s = state.model_copy(update={"calls": state.calls + 1, "token": None})
        s = self._outcome(s, answer, out)
        out.append(Called(s.calls, answer.call.at, answer.call.operation, answer.ok, answer.reason or "ok"))
        return Decision(s.model_copy(update={"command_id": None}), tuple(out), need=self._due(s))

    # ------------------------------------------------------------ schedules

    def _due(self, s: State) -> Call | None:
        now = s.now
        if s.status != "registered" or s.identity is None or now is None:
            return None
        cert = {"identity_certificate": s.identity}
        if s.next_registration_renewal is not None and s.next_registration_renewal <= now:
            return self._call(s, "renew_registration", cert)
        if s.next_authorization is not None and s.next_authorization <= now:
            return self._call(s, "authorize", cert)
        if s.next_report is not None and s.next_report <= now:
            reports = [
                {
                    "interval_start": p.interval_start.isoformat(),
                    "interval_end": p.interval_end.isoformat(),
                    "revision": p.revision,
                    "peak": p.peak,
                }
                for p in sorted(s.pending.values(), key=lambda p: p.interval_start)
            ]
            return self._call(s, "report", {**cert, "reports": reports})
        return None

    def _call(self, s: State, operation: Operation, body: dict[str, Any]) -> Call:
        assert s.now is not None
        return Call(operation, s.now, s.transport, s.url, s.proxy, {**body, "at": s.now.isoformat()})

    # ------------------------------------------------------------ commands

    def _command(self, s: State, command: AgentCommand, out: list[Output]) -> tuple[State, Call | None]:
        d = command.data
        op = d.operation
        s = s.model_copy(update={"command_id": command.id})

        def refuse(message: str) -> tuple[State, Call | None]:
            return self._result(s, op, False, message), None

        if op in ("register", "reregister"):
            if s.status in ("reservation_enabled", "reserved"):
                return refuse("a license reservation is enabled: return it and disable reservation first")
            if op == "register" and s.status == "registered":
                return refuse("already registered: use reregister to register again")
            if d.transport is not None:
                s = s.model_copy(update={"transport": d.transport, "url": d.url, "proxy": d.proxy})
            s = s.model_copy(update={"token": d.token})
            return s, self._call(s, "register", {"token": d.token, "instance": s.instance})
        if op == "deregister":
            if s.status != "registered" or s.identity is None:
                return refuse(f"not registered ({s.status})")
            return s, self._call(s, "deregister", {"identity_certificate": s.identity})
        if op in ("renew_authorization", "renew_registration"):
            if s.status != "registered" or s.identity is None:
                return refuse(f"not registered ({s.status}): register first")
            kind: Operation = "authorize" if op == "renew_authorization" else "renew_registration"
            return s, self._call(s, kind, {"identity_certificate": s.identity})
        if op == "set_license_type":
            assert d.deployment is not None
            overage = s.overage_allowed if d.overage_allowed is None else d.overage_allowed
            s = s.model_copy(update={"deployment": d.deployment, "overage_allowed": overage})
            if s.entitlements is not None and s.status == "registered":
                s = self._entitlements(s, s.entitlements, out, force=True)
            words = f"license type {d.deployment}, overage {'allowed' if overage else 'not allowed (License Control)'}"
            return self._result(s, op, True, words), None
        if op == "set_transport":
            s = s.model_copy(update={"transport": d.transport, "url": d.url, "proxy": d.proxy})
            return s, self._call(s, "probe", {})
        if op == "reservation_enable":
            if s.status == "registered":
                return refuse("the instance is registered: deregister it before enabling reservation")
            if s.status == "unregistered":
                s = s.model_copy(update={"status": "reservation_enabled"})
            return self._result(s, op, True, "reservation enabled"), None
        if op == "reservation_request":
            if s.status not in ("reservation_enabled", "reserved"):
                return refuse("enable reservation first")
            code = codes.product_code(REQUEST_CODE, {"instance": s.instance, "nonce": command.id})
            return self._result(s, op, True, "enter this request code at the licensing authority", code), None
        if op == "reservation_install":
            if s.status not in ("reservation_enabled", "reserved"):
                return refuse("enable reservation first")
            return s, self._call(s, "install_reservation", {"code": d.code})
        if op == "reservation_return":
            if s.status != "reserved" or s.reservation_serial is None:
                return refuse("no reservation is installed")
            code = codes.product_code(RETURN_CODE, {"instance": s.instance, "serial": s.reservation_serial})
            s = s.model_copy(update={"status": "reservation_enabled", "reservation": None, "reservation_serial": None})
            s = self._emit(s, ReservationReturned, {}, out)
            return self._result(
                s, op, True, "reservation returned: enter this return code at the authority", code
            ), None
        # reservation_disable
        if s.status == "reserved":
            return refuse("a reservation is installed: return it first")
        s = s.model_copy(update={"status": "unregistered"} if s.status == "reservation_enabled" else {})
        return self._result(s, op, True, "reservation disabled"), None

    # ------------------------------------------------------------ outcomes

    def _outcome(self, s: State, o: Outcome, out: list[Output]) -> State:
        op, at, a, r = o.call.operation, o.call.at, o.answer, self.rules
        if not o.ok and op in _RETRIED:
            # a scheduled call that failed: say why, and try again after the backoff (on event time)
            failures, due, failed, name = _RETRIED[op]
            n = getattr(s, failures) + 1
            s = s.model_copy(update={failures: n, due: at + r.backoff(n)})
            s = self._emit(s, failed, FailureReason(reason=o.reason), out)
            return self._result(s, name, False, o.reason)
        if op == "register":
            if not o.ok:
                return self._result(s, "register", False, o.reason)
            s = s.model_copy(
                update={
                    "status": "registered",
                    "identity": a["identity_certificate"],
                    "virtual_account": a["virtual_account"],
                    "registration_valid_until": datetime.fromisoformat(a["registration_valid_until"]),
                    "next_registration_renewal": datetime.fromisoformat(a["renew_registration_at"]),
                    "next_authorization": datetime.fromisoformat(a["renew_authorization_at"]),
                    "next_report": r.next_report(at),
                    "authorization_failures": 0,
                    "registration_failures": 0,
                    "report_failures": 0,
                    "pending": {},
                }
            )
            s = self._emit(s, InstanceRegistered, InstanceRegisteredData(virtual_account=a["virtual_account"]), out)
            s = self._answer_entitlements(s, a, out)
            return self._result(s, "register", True, f"registered with virtual account {a['virtual_account']!r}")
        if op == "authorize":
            nxt = (
                datetime.fromisoformat(a["renew_authorization_at"])
                if "renew_authorization_at" in a
                else at + r.authorization_every
            )
            s = s.model_copy(update={"authorization_failures": 0, "next_authorization": nxt})
            s = self._emit(s, AuthorizationRenewed, {}, out)
            s = self._answer_entitlements(s, a, out)
            return self._result(s, "renew_authorization", True, f"authorized until {a.get('authorized_until')}")
        if op == "renew_registration":
            s = s.model_copy(
                update={
                    "identity": a["identity_certificate"],
                    "registration_valid_until": datetime.fromisoformat(a["registration_valid_until"]),
                    "next_registration_renewal": datetime.fromisoformat(a["renew_registration_at"]),
                    "next_authorization": datetime.fromisoformat(a["renew_authorization_at"]),
                    "registration_failures": 0,
                }
            )
            s = self._emit(s, RegistrationRenewed, {}, out)
            return self._result(
                s, "renew_registration", True, f"registration valid until {a['registration_valid_until']}"
            )
        if op == "report":
            sent = {rep["interval_start"]: rep["revision"] for rep in o.call.body.get("reports", [])}
            pending = {k: p for k, p in s.pending.items() if p.revision > sent.get(k, 0)}
            s = s.model_copy(update={"report_failures": 0, "next_report": r.next_report(at), "pending": pending})
            short = a.get("shortfall")
            data = ReportingSucceededData(
                verdict=a.get("verdict"),
                shortfall=None if short is None else LicenseCounts(**{k: short[k] for k in LICENSES}),
                reports=len(sent),
            )
            s = self._emit(s, ReportingSucceeded, data, out)
            return self._result(s, "report", True, f"{len(sent)} interval reports sent: {a.get('verdict')}")
        if op == "deregister":
            if not o.ok:
                return self._result(s, "deregister", False, o.reason)
            s = s.model_copy(
                update={
                    "status": "unregistered",
                    "identity": None,
                    "virtual_account": None,
                    "registration_valid_until": None,
                    "next_authorization": None,
                    "next_registration_renewal": None,
                    "next_report": None,
                    "pending": {},
                    "entitlements": None,
                }
            )
            s = self._emit(s, InstanceDeregistered, {}, out)
            return self._result(s, "deregister", True, "deregistered: the licenses are released")
        if op == "probe":
            if not o.ok:
                s = self._emit(s, SmartAgentInitFailed, FailureReason(reason=f"transport settings: {o.reason}"), out)
                return self._result(s, "set_transport", False, o.reason)
            s = self._emit(s, SmartAgentInitialized, {}, out)
            return self._result(s, "set_transport", True, f"transport {s.transport} works")
        # install_reservation: the shell verified the authorization code's signature
        if not o.ok:
            return self._result(s, "reservation_install", False, o.reason)
        if a.get("instance") != s.instance:
            return self._result(s, "reservation_install", False, f"the authorization code is for {a.get('instance')!r}")
        counts = {lic: int(a["counts"].get(lic, 0)) for lic in LICENSES}
        s = s.model_copy(update={"status": "reserved", "reservation": counts, "reservation_serial": a["serial"]})
        installed = ReservationInstalledData(
            standard_seats=counts["standard"], premium_seats=counts["premium"], ivr_ports=counts["ivr_ports"]
        )
        s = self._emit(s, ReservationInstalled, installed, out)
        code = codes.product_code(CONFIRMATION_CODE, {"instance": s.instance, "serial": a["serial"]})
        return self._result(
            s, "reservation_install", True, "installed: enter this confirmation code at the authority", code
        )

    def _answer_entitlements(self, s: State, a: dict[str, Any], out: list[Output]) -> State:
        """The license type and entitlements in an authority's answer: published when they changed; a failure to
        get them is the vendor's Entitlement Reporting failure."""
        ent = a.get("entitlements")
        if a.get("license_type") != "flex" or not isinstance(ent, dict):
            reason = f"no Flex entitlements in the answer (license type {a.get('license_type')!r})"
            return self._emit(s, EntitlementsFetchFailed, FailureReason(reason=reason), out)
        return self._entitlements(s, {lic: int(ent.get(lic, 0)) for lic in LICENSES}, out)

    def _entitlements(self, s: State, ent: dict[str, int], out: list[Output], force: bool = False) -> State:
        if ent == s.entitlements and not force:
            return s
        data = EntitlementsSetData(
            standard_seats=ent["standard"],
            premium_seats=ent["premium"],
            ivr_ports=ent["ivr_ports"],
            overage_allowed=s.overage_allowed,
            deployment=s.deployment,
        )
        return self._emit(s.model_copy(update={"entitlements": ent}), EntitlementsSet, data, out)

    def _emit(self, s: State, cls: type[Any], data: Any, out: list[Output]) -> State:
        assert s.now is not None
        seq = s.seq + 1
        event_id = str(uuid.uuid5(IDS, f"{s.instance}:{seq}"))
        out.append(Emitted(cls(id=event_id, source=SOURCE, time=s.now, subject=s.instance, data=data)))
        return s.model_copy(update={"seq": seq})

    def _result(self, s: State, operation: str, ok: bool, message: str, code: str | None = None) -> State:
        """The result of a command, for the admin who gave it (a scheduled call's outcome is in its events and in
        the calls log, and does not replace it)."""
        assert s.now is not None
        if s.command_id is None:
            return s
        result = Result(command_id=s.command_id, operation=operation, at=s.now, ok=ok, message=message, code=code)
        return s.model_copy(update={"last": result})
