"""The Smart Agent's rules: pure functions of (state, input, outcome). The agent's decider.

The agent reads one ordered stream per instance: its commands (`licensing.agent.command`, from `ccxlic`) merged
by event time with the consumption computer's output (the instance's ticks and its closed interval reports). The
instance's *now* is the largest event time seen, so every schedule runs on event time and a simulation walks it.

Per input:
1. a command takes effect (settings, reservation steps) or asks for a call to the licensing authority;
2. a closed interval report waits to be reported (the latest revision of each interval);
3. whatever is due is called, one call at a time, each at the instance's now: the registration renewal
   (six months after registering or renewing), the authorization (30 days after the last success; on failure
   again after 1 h, 2 h, 4 h ... at most 24 h), and the usage report (every 8 hours, an hour after each interval
   ends, so the interval's report is in; it carries every report not sent yet).
A call is an output (`Requested`): the shell makes it once the unit of work that asked for it has committed, outside
any transaction, and publishes what came back (`licensing.agent.call_answered`, at the call's time) to the agent's
own input. Until the answer is heard, the instance's other inputs wait in its state, in order (`deferred`); the
answer becomes the lifecycle events of what happened (success, or failure with its reason, a timeout included) and
the next due time, and then the inputs that waited are taken in order. So each input is decided exactly as if the
call had been answered at once, and a replay of the topics (the answers included) decides the same, calling no one.
Every call moves its due time forward, so one input makes a bounded number of calls.

Each answer that carries the license type and the entitlements (registration, authorization, usage report) is a
fetch of them: one that cannot be had is `licensing.entitlements.fetch_failed` (the vendor's Entitlement Reporting
failure, "Failure to get license type or exception when trying to get entitlements"), and the next successful fetch
publishes the entitlements again, changed or not, which ends it.

A usage report carries what the vendor's document lists as reported to SSM: the agents signed in with Standard and
Premium licenses, per interval (and the IVR ports this authority judges too), and the Server and Warm Standby
licenses as 0 ("the Server License Usage reports to 0"). Outbound ports and seats are the document's "Data Stored":
kept in the interval reports and shown, not sent.

A reservation installs offline ("Ensure that the product instance is not connected to internet"): the authorization
code is verified here, with a key the instance already trusts (configured, or pinned when it first registered or
enabled the reservation), never one fetched at install time, and it must answer the instance's own request code.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from ccxlic_contract.codec import Event, decode, encode
from ccxlic_contract.events import (
    AgentCallAnswered,
    AgentCommand,
    AuthorizationRenewalFailed,
    AuthorizationRenewed,
    ClassicLicensingUsed,
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
    MigratedToSmart,
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
from ccxlic_rules.codes import AUTHORIZATION_CODE, CONFIRMATION_CODE, REQUEST_CODE, RETURN_CODE
from ccxlic_runtime.instances import Decision
from pydantic import BaseModel, ConfigDict

SOURCE = "urn:ccxlic:smart-agent"
IDS = uuid.UUID("6c1d8e2f-4b5a-4e9c-9f0d-3a2b1c7e5d84")
Status = Literal["unregistered", "registered", "reservation_enabled", "reserved", "classic"]
Operation = Literal["register", "authorize", "renew_registration", "report", "deregister", "probe", "pin_key"]
LICENSES = ("standard", "premium", "ivr_ports")
PRESENCE = ("server", "warm_standby")  # held, never consumed: reported as 0 in use
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Rules:
    interval: timedelta = timedelta(hours=8)
    report_offset: timedelta = timedelta(hours=1)  # after an interval ends (its report is closed by then)
    authorization_every: timedelta = timedelta(days=30)  # used when the authority does not say
    registration_renew_after: timedelta = timedelta(days=182)
    retry_first: timedelta = timedelta(hours=1)
    retry_max: timedelta = timedelta(hours=24)
    trusted_keys: tuple[str, ...] = ()  # the authority's public keys (PEM) configured for reservations

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
    entitlements_failed: bool = False  # the last fetch of the license type and entitlements failed
    reservation: dict[str, int] | None = None
    reservation_serial: str | None = None
    reservation_request: str | None = None  # the nonce of the request code an authorization code must answer
    reservation_issued_at: str | None = None  # when the installed authorization code was issued
    authority_key: str | None = None  # the authority's public key (PEM), pinned when the instance first registered
    seq: int = 0  # events published
    calls: int = 0
    last: Result | None = None
    command_id: str | None = None  # the command a call in flight answers
    token: str | None = None  # a registration token, only while its call is in flight
    requests: int = 0  # calls asked for
    in_flight: InFlight | None = None  # the call whose answer the instance waits for
    deferred: tuple[str, ...] = ()  # the inputs heard meanwhile, in order (as encoded on the wire)
    smart_used: bool = False  # it registered or installed a reservation: it is on Smart Licensing
    migrated: bool = False  # it migrated from Classic Licensing: one way


class Call(BaseModel):
    """A request to the licensing authority, made by the shell at the instance's now."""

    model_config = ConfigDict(frozen=True)

    operation: Operation
    at: datetime
    transport: Transport
    url: str | None
    proxy: str | None
    body: dict[str, Any] = {}


class InFlight(BaseModel):
    """The call an instance waits for the answer to."""

    model_config = ConfigDict(frozen=True)

    id: str
    call: Call


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


@dataclass(frozen=True, slots=True)
class Requested:
    """A call to make once this unit of work has committed; its answer comes back as an input."""

    id: str
    call: Call


Output = Emitted | Called | Requested

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
        if isinstance(event, AgentCallAnswered):
            return self._answered(state, event)
        if state.in_flight is not None:  # it waits for the answer: decided after it, in order
            return Decision(state.model_copy(update={"deferred": (*state.deferred, encode(event).decode())}))
        s, out = self._input(state, event)
        return Decision(s, tuple(out))

    def resume(self, state: State, answer: object) -> Decision[State, Output]:
        raise AssertionError("the Smart Agent reads nothing within a unit of work: its calls are outputs")

    def _input(self, state: State, event: Event) -> tuple[State, list[Output]]:
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
        return self._ask(s, call or self._due(s), out)

    def _ask(self, s: State, call: Call | None, out: list[Output]) -> tuple[State, list[Output]]:
        if call is None:
            return s, out
        n = s.requests + 1
        request = InFlight(id=str(uuid.uuid5(IDS, f"{s.instance}:request:{n}")), call=call)
        out.append(Requested(request.id, call))
        return s.model_copy(update={"requests": n, "in_flight": request}), out

    def _answered(self, state: State, event: AgentCallAnswered) -> Decision[State, Output]:
        """The answer to the call in flight: what happened, the next call due, then the inputs that waited."""
        asked, d = state.in_flight, event.data
        if asked is None or d.call_id != asked.id:
            return Decision(state)  # heard twice, or the answer to a call this instance no longer waits for
        s = state.model_copy(update={"calls": state.calls + 1, "token": None, "in_flight": None})
        o = Outcome(asked.call, d.ok, dict(d.answer), d.reason)
        out: list[Output] = []
        try:
            after = self._outcome(s, o, out)
        except (KeyError, TypeError, ValueError) as exc:  # an answer without what it must hold: the call failed
            o = Outcome(
                asked.call, False, reason=f"the licensing authority's answer was not understood: {exc!r}"[:1000]
            )
            out = []
            after = self._outcome(s, o, out)
        out.append(Called(after.calls, asked.call.at, asked.call.operation, o.ok, o.reason or "ok"))
        s, out = self._ask(after.model_copy(update={"command_id": None}), self._due(after), out)
        while s.in_flight is None and s.deferred:
            waited, rest = s.deferred[0], s.deferred[1:]
            s, more = self._input(s.model_copy(update={"deferred": rest}), decode(waited))
            out += more
        return Decision(s, tuple(out))

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
                    "peak": {**p.peak, **dict.fromkeys(PRESENCE, 0)},
                }
                for p in sorted(s.pending.values(), key=lambda p: p.interval_start)
            ]
            return self._call(s, "report", {**cert, "reports": reports})
        return None

    def _call(self, s: State, operation: Operation, body: dict[str, Any]) -> Call:
        assert s.now is not None
        return Call(
            operation=operation,
            at=s.now,
            transport=s.transport,
            url=s.url,
            proxy=s.proxy,
            body={**body, "at": s.now.isoformat()},
        )

    # ------------------------------------------------------------ commands

    def _command(self, s: State, command: AgentCommand, out: list[Output]) -> tuple[State, Call | None]:
        d = command.data
        op = d.operation
        s = s.model_copy(update={"command_id": command.id})

        def refuse(message: str) -> tuple[State, Call | None]:
            return self._result(s, op, False, message), None

        if op == "use_classic":
            if s.migrated:
                return refuse(
                    "the instance migrated to Smart Licensing: once migrated, it cannot use Classic Licensing"
                )
            if s.status == "classic":
                return refuse("the instance already uses Classic Licensing")
            if s.status != "unregistered" or s.smart_used:
                return refuse(
                    f"the instance uses Smart Licensing ({s.status}): Classic Licensing is for an upgrade that stays "
                    "on it, before any registration or reservation"
                )
            s = self._emit(s.model_copy(update={"status": "classic"}), ClassicLicensingUsed, {}, out)
            return self._result(s, op, True, "Classic Licensing: no evaluation, no registration"), None
        if op == "migrate_to_smart":
            if s.status != "classic":
                return refuse(f"the instance is not on Classic Licensing ({s.status}): nothing to migrate")
            s = s.model_copy(update={"status": "unregistered", "migrated": True})
            s = self._emit(s, MigratedToSmart, {}, out)
            return self._result(
                s, op, True, "migrated to Smart Licensing (one way): in evaluation until it registers"
            ), None
        if s.status == "classic" and op not in ("set_license_type", "set_transport"):
            return refuse(
                "the instance uses Classic Licensing: migrate it to Smart Licensing first (ccxlic licensing "
                f"{s.instance} smart)"
            )

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
            if not self.rules.trusted_keys and s.authority_key is None:
                # nothing to verify an authorization code with: pin the authority's key now, while it is reachable
                return s, self._call(s, "pin_key", {})
            return self._enable(s), None
        if op == "reservation_request":
            if s.status not in ("reservation_enabled", "reserved"):
                return refuse("enable reservation first")
            code = codes.product_code(REQUEST_CODE, {"instance": s.instance, "nonce": command.id})
            s = s.model_copy(update={"reservation_request": command.id})
            return self._result(s, op, True, "enter this request code at the licensing authority", code), None
        if op == "reservation_install":
            if s.status not in ("reservation_enabled", "reserved"):
                return refuse("enable reservation first")
            assert d.code is not None
            return self._install(s, d.code, out), None
        if op == "reservation_return":
            if s.status != "reserved" or s.reservation_serial is None:
                return refuse("no reservation is installed")
            code = codes.product_code(RETURN_CODE, {"instance": s.instance, "serial": s.reservation_serial})
            s = s.model_copy(
                update={
                    "status": "reservation_enabled",
                    "reservation": None,
                    "reservation_serial": None,
                    "reservation_issued_at": None,
                }
            )
            s = self._emit(s, ReservationReturned, {}, out)
            return self._result(
                s, op, True, "reservation returned: enter this return code at the authority", code
            ), None
        # reservation_disable
        if s.status == "reserved":
            return refuse("a reservation is installed: return it first")
        s = s.model_copy(
            update={"status": "unregistered", "reservation_request": None} if s.status == "reservation_enabled" else {}
        )
        return self._result(s, op, True, "reservation disabled"), None

    def _enable(self, s: State) -> State:
        if s.status == "unregistered":
            s = s.model_copy(update={"status": "reservation_enabled"})
        return self._result(s, "reservation_enable", True, "reservation enabled")

    def _install(self, s: State, code: str, out: list[Output]) -> State:
        """Install an authorization code, offline: its signature checked with a key the instance already trusts, and
        it must answer this instance's request code (and be newer than the one installed)."""
        op = "reservation_install"
        keys = (*self.rules.trusted_keys, *((s.authority_key,) if s.authority_key else ()))
        if not keys:
            return self._result(s, op, False, "no trusted key to verify the authorization code with")
        payload: dict[str, Any] | None = None
        for key in keys:
            try:
                payload = codes.verify(key, code, AUTHORIZATION_CODE, "the authorization code")
                break
            except codes.CodeError:
                continue
        if payload is None:
            try:
                codes.peek(code)
            except (codes.CodeError, ValueError):
                return self._result(s, op, False, "refused: the authorization code is not one: was it copied whole?")
            return self._result(
                s,
                op,
                False,
                "refused: the authorization code was not signed by a licensing authority this instance "
                "trusts (or was changed after it was signed)",
            )
        if payload.get("instance") != s.instance:
            return self._result(s, op, False, f"refused: the authorization code is for {payload.get('instance')!r}")
        if s.reservation_request is None or payload.get("request") != s.reservation_request:
            return self._result(
                s,
                op,
                False,
                "refused: the authorization code does not answer this instance's request code "
                "(make a request code and reserve with it)",
            )
        issued = str(payload.get("issued_at", ""))
        if s.reservation_issued_at is not None and issued <= s.reservation_issued_at:
            return self._result(s, op, False, "refused: this authorization code is not newer than the one installed")
        counts = {lic: int(payload["counts"].get(lic, 0)) for lic in LICENSES}
        s = s.model_copy(
            update={
                "status": "reserved",
                "smart_used": True,
                "reservation": counts,
                "reservation_serial": payload["serial"],
                "reservation_issued_at": issued,
            }
        )
        installed = ReservationInstalledData(
            standard_seats=counts["standard"], premium_seats=counts["premium"], ivr_ports=counts["ivr_ports"]
        )
        s = self._emit(s, ReservationInstalled, installed, out)
        confirmation = codes.product_code(CONFIRMATION_CODE, {"instance": s.instance, "serial": payload["serial"]})
        return self._result(s, op, True, "installed: enter this confirmation code at the authority", confirmation)

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
                    "smart_used": True,
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
            if s.authority_key is None and isinstance(a.get("public_key_pem"), str):
                s = s.model_copy(update={"authority_key": a["public_key_pem"]})  # pinned at the first registration
            short = a.get("required")
            registered = InstanceRegisteredData(
                virtual_account=a["virtual_account"],
                out_of_compliance_since=a.get("out_of_compliance_since"),
                required=None if short is None else LicenseCounts(**{k: short[k] for k in LICENSES}),
            )
            s = self._emit(s, InstanceRegistered, registered, out)
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
            short, required = a.get("shortfall"), a.get("required")
            data = ReportingSucceededData(
                verdict=a.get("verdict"),
                shortfall=None if short is None else LicenseCounts(**{k: short[k] for k in LICENSES}),
                reports=len(sent),
                out_of_compliance_since=a.get("out_of_compliance_since"),
                required=None if required is None else LicenseCounts(**{k: required[k] for k in LICENSES}),
            )
            s = self._emit(s, ReportingSucceeded, data, out)
            if "entitlements" in a or "entitlements_error" in a:  # a deposit is seen at the next report too
                s = self._answer_entitlements(s, a, out)
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
        if op == "pin_key":
            key = a.get("public_key_pem")
            if not o.ok or not isinstance(key, str):
                why = o.reason or "the answer had no public key"
                return self._result(
                    s,
                    "reservation_enable",
                    False,
                    f"cannot pin the licensing authority's key to verify the "
                    f"authorization code with ({why}): configure CCXLIC_AGENT_TRUSTED_KEYS, or enable while the "
                    "authority is reachable",
                )
            return self._enable(s.model_copy(update={"authority_key": key}))
        if op == "probe":
            if not o.ok:
                s = self._emit(s, SmartAgentInitFailed, FailureReason(reason=f"transport settings: {o.reason}"), out)
                return self._result(s, "set_transport", False, o.reason)
            s = self._emit(s, SmartAgentInitialized, {}, out)
            return self._result(s, "set_transport", True, f"transport {s.transport} works")
        raise AssertionError(f"no outcome rule for {op}")

    def _answer_entitlements(self, s: State, a: dict[str, Any], out: list[Output]) -> State:
        """The license type and entitlements in an authority's answer: published when they changed, or when the fetch
        before failed (that ends the failure); a failure to get them is the vendor's Entitlement Reporting
        failure."""
        ent = a.get("entitlements")
        if a.get("license_type") != "flex" or not isinstance(ent, dict):
            reason = str(a.get("entitlements_error") or "")[:1000] or (
                f"no Flex entitlements in the answer (license type {a.get('license_type')!r})"
            )
            s = s.model_copy(update={"entitlements_failed": True})
            return self._emit(s, EntitlementsFetchFailed, FailureReason(reason=reason), out)
        held = {lic: int(ent.get(lic, 0)) for lic in LICENSES}
        held |= {lic: int(ent[lic]) for lic in PRESENCE if lic in ent}
        return self._entitlements(s, held, out, force=s.entitlements_failed)

    def _entitlements(self, s: State, ent: dict[str, int], out: list[Output], force: bool = False) -> State:
        if ent == s.entitlements and not force:
            return s
        data = EntitlementsSetData(
            standard_seats=ent["standard"],
            premium_seats=ent["premium"],
            ivr_ports=ent["ivr_ports"],
            overage_allowed=s.overage_allowed,
            deployment=s.deployment,
            server=ent.get("server"),
            warm_standby=ent.get("warm_standby"),
        )
        s = s.model_copy(update={"entitlements": ent, "entitlements_failed": False})
        return self._emit(s, EntitlementsSet, data, out)

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
