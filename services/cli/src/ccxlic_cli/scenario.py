"""Simulation scenarios: YAML or JSON files that set the instances (agents, entitlements, License Control,
registration) and the lifecycle events to inject. Shipped scenarios live next to this module (`ccxlic simulate
--list`)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from ccxlic_contract.events import INSTANCE_ID_PATTERN, AgentOperation, Deployment
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

InstanceId = Annotated[str, StringConstraints(pattern=INSTANCE_ID_PATTERN)]
LifecycleKind = Literal[
    "register",
    "deregister",
    "renew-auth",
    "renew-auth-failed",
    "renew-registration",
    "renew-registration-failed",
    "report",
    "report-failed",
    "agent-init",
    "agent-init-failed",
    "reserve",
    "return-reservation",
]


class ScenarioError(ValueError):
    """A scenario that cannot be read or is invalid; the message names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Agents(_Model):
    standard: int = Field(20, ge=0, le=5000, description="agents with voice only")
    premium: int = Field(0, ge=0, le=5000, description="agents with chat or email (Premium)")
    outbound: int = Field(0, ge=0, le=5000, description="agents on predictive/progressive outbound (Premium)")
    supervisors: int = Field(0, ge=0, le=500)


class Entitlements(_Model):
    standard: int = Field(ge=0)
    premium: int = Field(ge=0)
    ivr_ports: int = Field(0, ge=0)
    overage_allowed: bool = True
    deployment: Deployment = "production"


class Licenses(_Model):
    standard: int = Field(0, ge=0)
    premium: int = Field(0, ge=0)
    ivr_ports: int = Field(0, ge=0)
    server: int = Field(1, ge=0, description="the Server license: never consumed, must be present (0: missing)")
    warm_standby: int = Field(1, ge=0, description="the Warm Standby license: never consumed, must be present")


class Authority(_Model):
    """Accounts to set up at the licensing authority before the simulation: licenses per virtual account."""

    smart_account: str = "demo"
    virtual_accounts: dict[Annotated[str, StringConstraints(pattern=INSTANCE_ID_PATTERN)], Licenses]


class Instance(_Model):
    id: InstanceId
    agents: Agents = Agents()
    entitlements: Entitlements | None = None
    registered: bool = False
    register_with: str | None = Field(
        None, description="a virtual account of `authority`: the Smart Agent registers the instance with a token of it"
    )
    overage_allowed: bool = Field(True, description="with register_with: false puts it under License Control")
    deployment: Deployment = "production"
    ivr_peak_ports: int = Field(10, ge=0, le=100000, description="IVR ports in use at the daily peak (noon)")
    outbound_peak_ports: int = Field(
        0, ge=0, le=100000, description="outbound ports in use at the daily peak (stored and shown, not reported)"
    )
    outbound_peak_seats: int = Field(0, ge=0, le=100000, description="outbound seats in use at the daily peak")
    max_agents: int | None = Field(
        None, ge=1, le=100000, description="the OVA's maximum of signed-in agents (licensing.instance.configured)"
    )
    shift_hours: float = Field(8.0, gt=0, le=24)
    login_spread_minutes: float = Field(20.0, ge=0, le=600, description="agents sign in over this many minutes")
    break_minutes: float = Field(15.0, ge=0, le=120)
    crash_relogin_rate: float = Field(0.05, ge=0, le=1, description="share of agents who crash and sign in again")
    roster_every_minutes: float = Field(60.0, gt=0)
    weekend_share: float = Field(1.0, ge=0, le=1, description="the share of agents on shift on Saturday and Sunday")
    growth_per_week: float = Field(
        0.0, ge=0, le=10, description="the staff grows by this share of `agents` a week (new agents join)"
    )
    absence_rate: float = Field(0.0, ge=0, le=1, description="the chance an agent misses a given day")


class Injected(_Model):
    """At an offset from the start: a lifecycle event (`event`, typed by hand, e.g. "instance b fails to renew its
    authorization on day 3"), or a Smart Agent operation (`command`, e.g. renew_authorization)."""

    at: timedelta
    instance: InstanceId
    event: LifecycleKind | None = None
    command: AgentOperation | None = None
    reason: str = "simulated failure"
    standard: int | None = Field(None, ge=0)  # reserve
    premium: int | None = Field(None, ge=0)
    ivr_ports: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_of(self) -> Injected:
        if (self.event is None) == (self.command is None):
            raise ValueError("give either event (a lifecycle event) or command (a Smart Agent operation)")
        return self


class Fault(_Model):
    """The licensing authority misbehaves from `at` to `until` (offsets from the start), for one instance or all."""

    at: timedelta
    until: timedelta
    mode: Literal["unreachable", "slow", "refuse", "entitlements"]
    reason: str = "refused on demand"
    instance: InstanceId | None = None


class Scenario(_Model):
    name: str
    description: str = ""
    start: AwareDatetime | None = None  # default: now
    duration: timedelta = timedelta(hours=8)
    speed: float = Field(60.0, gt=0, description="simulated seconds per wall second")
    tick_every: timedelta = timedelta(minutes=1)
    seed: int = 1
    authority: Authority | None = None
    instances: tuple[Instance, ...]
    events: tuple[Injected, ...] = ()
    faults: tuple[Fault, ...] = ()

    @model_validator(mode="after")
    def _known_instances(self) -> Scenario:
        ids = [i.id for i in self.instances]
        if len(set(ids)) != len(ids):
            raise ValueError("instance ids must be unique")
        for e in self.events:
            if e.instance not in ids:
                raise ValueError(f"event at {e.at} names instance {e.instance!r}, which is not in `instances`")
        accounts = set(self.authority.virtual_accounts) if self.authority is not None else set()
        for i in self.instances:
            if i.register_with is not None:
                if i.register_with not in accounts:
                    raise ValueError(
                        f"{i.id}: register_with {i.register_with!r} is not a virtual account of `authority`"
                    )
                if i.registered or i.entitlements is not None:
                    raise ValueError(
                        f"{i.id}: register_with gets registration and entitlements from the authority; drop "
                        "`registered` and `entitlements`"
                    )
        return self

    def starts_at(self, now: datetime) -> datetime:
        return self.start or now


def shipped() -> dict[str, str]:
    """Name -> description of the scenarios shipped with the CLI."""
    out = {}
    for f in sorted(resources.files("ccxlic_cli.scenarios").iterdir(), key=lambda p: p.name):
        if f.name.endswith((".yaml", ".yml", ".json")):
            s = _parse(f.read_text(), f.name)
            out[f.name.rsplit(".", 1)[0]] = s.description
    return out


def load(name_or_path: str) -> Scenario:
    """A shipped scenario by name, or a YAML/JSON file by path."""
    path = Path(name_or_path)
    if path.exists():
        return _parse(path.read_text(), str(path))
    for ext in (".yaml", ".yml", ".json"):
        f = resources.files("ccxlic_cli.scenarios") / f"{name_or_path}{ext}"
        if f.is_file():
            return _parse(f.read_text(), f.name)
    known = ", ".join(shipped()) or "none"
    raise ScenarioError(f"no scenario file {name_or_path!r} and no shipped scenario by that name (shipped: {known})")


def _parse(text: str, where: str) -> Scenario:
    try:
        raw = json.loads(text) if where.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{where}: not valid {'JSON' if where.endswith('.json') else 'YAML'}: {exc}") from None
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        parts = []
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"]) or "(top)"
            parts.append(f"{loc}: {str(err['msg']).removeprefix('Value error, ')}")
        raise ScenarioError(f"{where}: " + "; ".join(parts)) from None
