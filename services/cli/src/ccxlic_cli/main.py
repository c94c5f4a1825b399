"""`ccxlic`: run the services, simulate a contact center, publish events, and watch and report what comes out.

Kafka and the services are named by the same environment as the services (KAFKA_BOOTSTRAP_SERVERS,
CCXLIC_TOPIC_PREFIX) plus CCXLIC_CONSUMPTION_URL / CCXLIC_COMPLIANCE_URL / CCXLIC_ALERTING_URL; the defaults are
the `make up` stack and the services' default ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import typer
from ccxlic_contract import ContractError, Event, decode
from ccxlic_contract.events import (
    MAX_AGENTS_LIMIT,
    ClockTicked,
    EntitlementsSet,
    EntitlementsSetData,
    InstanceConfigured,
    InstanceConfiguredData,
)
from ccxlic_rules import Entitlement
from ccxlic_rules import ova as ova_profiles
from ccxlic_rules import report as report_mod
from ccxlic_rules.exits import exits
from ccxlic_runtime.client import ServiceError, Urls, report_inputs, snapshot
from ccxlic_runtime.kafka import Broker, KafkaUnavailable, wait_for_kafka
from rich.console import Console
from rich.live import Live

from ccxlic_cli import admin as admin_commands
from ccxlic_cli import agent as agent_commands
from ccxlic_cli import audit as audit_commands
from ccxlic_cli import authority as authority_commands
from ccxlic_cli import common
from ccxlic_cli import container as container_commands
from ccxlic_cli import forecast as forecast_commands
from ccxlic_cli import kafka as kafka_commands
from ccxlic_cli import plan as plan_commands
from ccxlic_cli import whatif as whatif_commands
from ccxlic_cli.common import (
    DEFAULT_PORTS,
    PORT_VARS,
    SERVICES,
    SOURCE,
    CliSettings,
    err,
)
from ccxlic_cli.common import fail as _fail
from ccxlic_cli.common import instance as _instance
from ccxlic_cli.common import producer as _producer
from ccxlic_cli.common import publish as _publish
from ccxlic_cli.common import said as _said
from ccxlic_cli.common import settings as _settings
from ccxlic_cli.common import time as _time
from ccxlic_cli.container import ticker as _ticker
from ccxlic_cli.lifecycle import KINDS, lifecycle_event
from ccxlic_cli.scenario import ScenarioError, load, shipped
from ccxlic_cli.simulator import generate
from ccxlic_cli.status import render

app = typer.Typer(
    help="ccx-licensing: license consumption and compliance tracking for contact centers.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
entitlements_app = typer.Typer(
    help="Set an instance's entitlements (licensing.entitlements.set).", no_args_is_help=True
)
app.add_typer(entitlements_app, name="entitlements")
agent_commands.add_commands(app)
forecast_commands.add_commands(app)
whatif_commands.add_commands(app)
plan_commands.add_commands(app)
audit_commands.add_commands(app)
app.add_typer(authority_commands.app, name="authority")
app.add_typer(admin_commands.app, name="admin")
app.add_typer(admin_commands.silence_app, name="silence")
app.add_typer(kafka_commands.app, name="kafka")
container_commands.add_commands(app)


# ---------------------------------------------------------------- publish, entitlements, lifecycle, tick


@app.command()
def publish(
    file: Annotated[str, typer.Argument(help="a file of JSON lines (one CloudEvent per line), or - for stdin")],
) -> None:
    """Publish CloudEvents from JSON lines. Each line is validated against the contract; every bad line is reported
    with its line number, and the valid lines are still published (exit 1 if any line was bad).

    Example: ccxlic publish events.jsonl    |    ccxlic simulate --dry-run | ccxlic publish -
    """
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror}") from None
    good: list[Event] = []
    bad = 0
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            good.append(decode(line))
        except ContractError as exc:
            bad += 1
            err.print(f"line {n}: {exc}", highlight=False)
    if good:
        asyncio.run(_publish(_settings(), good))
    err.print(f"published {len(good)} event(s); {bad} bad line(s)", highlight=False)
    if bad:
        raise typer.Exit(1)


@entitlements_app.command("set")
def entitlements_set(
    instance: Annotated[str, typer.Argument(help="the product instance id")],
    standard: Annotated[int, typer.Option("--standard", min=0, help="Flex Standard seats")],
    premium: Annotated[int, typer.Option("--premium", min=0, help="Flex Premium seats")],
    ivr_ports: Annotated[int, typer.Option("--ivr-ports", min=0, help="IVR ports")] = 0,
    no_overage: Annotated[
        bool, typer.Option("--no-overage", help="License Control: refuse sign-ins over the count")
    ] = False,
    lab: Annotated[
        bool,
        typer.Option(
            "--lab",
            "--non-production",
            help="the license type Lab (non-production: no License Control, never enforced unless CCXLIC_ENFORCE_LAB)",
        ),
    ] = False,
    server: Annotated[
        int | None, typer.Option("--server", min=0, help="Server licenses held (0: missing, alerted on)")
    ] = None,
    warm_standby: Annotated[
        int | None, typer.Option("--warm-standby", min=0, help="Warm Standby licenses held (0: missing)")
    ] = None,
    at: Annotated[str | None, typer.Option(help="event time, RFC 3339 (default: now)")] = None,
) -> None:
    """Set an instance's purchased seats and ports (they are its limits once it is registered: unregistered, it is
    in evaluation, unlimited).

    Example: ccxlic entitlements set cc-east --standard 40 --premium 10 --ivr-ports 20 --no-overage
    """
    event = EntitlementsSet(
        id=str(uuid.uuid4()),
        source=SOURCE,
        time=_time(at),
        subject=_instance(instance),
        data=EntitlementsSetData(
            standard_seats=standard,
            premium_seats=premium,
            ivr_ports=ivr_ports,
            overage_allowed=not no_overage,
            deployment="lab" if lab else "production",
            server=server,
            warm_standby=warm_standby,
        ),
    )
    asyncio.run(_publish(_settings(), [event]))
    _said(event)


LifecycleKind = Enum("LifecycleKind", {k.replace("-", "_"): k for k in KINDS}, type=str)  # type: ignore[misc]


@app.command()
def lifecycle(
    instance: Annotated[str, typer.Argument(help="the product instance id")],
    kind: Annotated[LifecycleKind, typer.Argument(help="what happened", case_sensitive=False)],
    reason: Annotated[str, typer.Option(help="why it failed (the *-failed kinds)")] = "",
    account: Annotated[str, typer.Option(help="virtual account (register)")] = "default",
    standard: Annotated[int | None, typer.Option(min=0, help="reserved Standard seats (reserve)")] = None,
    premium: Annotated[int | None, typer.Option(min=0, help="reserved Premium seats (reserve)")] = None,
    ivr_ports: Annotated[int | None, typer.Option("--ivr-ports", min=0, help="reserved IVR ports (reserve)")] = None,
    at: Annotated[str | None, typer.Option(help="event time, RFC 3339 (default: now)")] = None,
) -> None:
    """Publish a lifecycle event: register, deregister, renew-auth, renew-auth-failed, renew-registration,
    renew-registration-failed, report, report-failed, agent-init, agent-init-failed, reserve, return-reservation,
    classic, migrate-to-smart.

    Examples: ccxlic lifecycle cc-east register --account va-1 | ccxlic lifecycle cc-east renew-auth-failed
    --reason "SSM unreachable" | ccxlic lifecycle cc-lab reserve --standard 10 --premium 2
    """
    name = kind.value
    try:
        event = lifecycle_event(
            name,
            _instance(instance),
            _time(at),
            str(uuid.uuid4()),
            SOURCE,
            reason=reason,
            account=account,
            standard=standard,
            premium=premium,
            ivr_ports=ivr_ports,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    asyncio.run(_publish(_settings(), [event]))
    _said(event)


@app.command()
def ova(
    instance: Annotated[str, typer.Argument(help="the product instance id")],
    profile: Annotated[
        str | None, typer.Argument(help=f"the OVA profile: {', '.join(ova_profiles.PROFILES)}", show_default=False)
    ] = None,
    max_agents: Annotated[
        int | None,
        typer.Option(
            "--max-agents", min=1, max=MAX_AGENTS_LIMIT, help="the maximum of signed-in agents, if not a profile's"
        ),
    ] = None,
    no_limit: Annotated[bool, typer.Option("--no-limit", help="forget the limit")] = False,
    at: Annotated[str | None, typer.Option(help="event time, RFC 3339 (default: now)")] = None,
) -> None:
    """Set the maximum of signed-in agents the instance's OVA allows (licensing.instance.configured): a sign-in beyond
    it is refused, whatever the licenses.

    Examples: ccxlic ova cc-east 300-agents | ccxlic ova cc-east --max-agents 150 | ccxlic ova cc-east --no-limit
    """
    if sum((profile is not None, max_agents is not None, no_limit)) != 1:
        raise _fail("give one of: a PROFILE, --max-agents N, or --no-limit")
    limit = max_agents
    if profile is not None:
        try:
            limit = ova_profiles.max_agents(profile)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    event = InstanceConfigured(
        id=str(uuid.uuid4()),
        source=SOURCE,
        time=_time(at),
        subject=_instance(instance),
        data=InstanceConfiguredData(max_agents=limit, ova_profile=profile),
    )
    asyncio.run(_publish(_settings(), [event]))
    _said(event)


@app.command()
def tick(
    at: Annotated[str | None, typer.Option(help="the time the clock moves to, RFC 3339 (default: now)")] = None,
    instance: Annotated[str, typer.Option(help="tick one instance (default: every instance)")] = "*",
) -> None:
    """Move the services' clock: deadlines, repeats and interval closes happen at the first input that passes them.

    Example: ccxlic tick --at 2026-06-01T00:00:00Z
    """
    subject = instance if instance == "*" else _instance(instance)
    event = ClockTicked(id=str(uuid.uuid4()), source=SOURCE, time=_time(at), subject=subject)
    asyncio.run(_publish(_settings(), [event]))
    _said(event)


# ---------------------------------------------------------------- simulate


@app.command()
def simulate(
    scenario: Annotated[str, typer.Option(help="a shipped scenario name or a YAML/JSON file")] = "demo",
    speed: Annotated[
        float | None, typer.Option(min=0.001, help="simulated seconds per wall second (default: the scenario's)")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="simulated start, RFC 3339 (default: the scenario's, else now)")
    ] = None,
    duration: Annotated[float | None, typer.Option(min=0.01, help="simulated hours (default: the scenario's)")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the events as JSON lines instead of publishing")
    ] = False,
    list_: Annotated[bool, typer.Option("--list", help="list the shipped scenarios and exit")] = False,
) -> None:
    """Publish realistic contact-center traffic: shifts, breaks, re-logins after a crash, supervisors, Premium
    agents, IVR load on a daily curve, roster snapshots, the scenario's lifecycle events, and clock ticks, with
    time compressed by --speed (1440 = a day per minute).

    Examples: ccxlic simulate --list | ccxlic simulate --scenario demo --speed 120 | ccxlic simulate --scenario
    my.yaml --dry-run > events.jsonl
    """
    if list_:
        for name, description in shipped().items():
            typer.echo(f"{name}: {description}")
        return
    try:
        sc = load(scenario)
    except ScenarioError as exc:
        raise _fail(str(exc)) from None
    if duration is not None:
        sc = sc.model_copy(update={"duration": timedelta(hours=duration)})
    begin = _time(start, "--start") if start else sc.starts_at(datetime.now(UTC).replace(microsecond=0))
    settings = _settings()
    token = asyncio.run(common.scenario_token(settings)) if not dry_run and (sc.authority or sc.faults) else ""
    tokens = {} if dry_run else asyncio.run(authority_commands.prepare(settings.urls().authority, sc, begin, token))
    events = generate(sc, begin, tokens)
    if dry_run:
        for e in events:
            typer.echo(e.model_dump_json())
        return
    ahead = (events[-1].time - datetime.now(UTC)) if events else timedelta(0)
    if ahead > timedelta(minutes=5):
        err.print(
            f"simulate: this run ends {ahead.total_seconds() / 3600:.1f} h ahead of the wall clock; the "
            "consumption computer dead-letters events more than CCXLIC_MAX_EVENT_SKEW (default 5 min) ahead: run it "
            "with CCXLIC_MAX_EVENT_SKEW=off (`ccxlic run --scenario` does), or start the simulation earlier (--start)",
            highlight=False,
        )
    faults = authority_commands.fault_changes(sc, begin)
    asyncio.run(_simulate(settings, events, begin, speed or sc.speed, sc.name, faults=faults, token=token))


async def _simulate(
    settings: CliSettings,
    events: list[Event],
    begin: datetime,
    speed: float,
    name: str,
    stop: asyncio.Event | None = None,
    quiet: bool = False,
    faults: list[tuple[datetime, dict[str, Any]]] | None = None,
    token: str = "",
) -> None:
    faults = list(faults or [])
    producer = await _producer(settings)
    stop = stop or asyncio.Event()
    started = time.monotonic()
    last_report = 0.0
    sent = 0
    try:
        first = min(begin, events[0].time) if events else begin
        i = 0
        while i < len(events) and not stop.is_set():
            sim_now = first + timedelta(seconds=(time.monotonic() - started) * speed)
            while faults and faults[0][0] <= sim_now:
                _, body = faults.pop(0)
                await authority_commands.set_fault(settings.urls().authority, body, token)
                if not quiet:
                    err.print(f"simulate {name}: the authority's fault is now {body}", highlight=False)
            due = []
            while i < len(events) and events[i].time <= sim_now:
                due.append(events[i])
                i += 1
            if due:
                await producer.publish_many(due)
                sent += len(due)
            if not quiet and time.monotonic() - last_report >= 5:
                last_report = time.monotonic()
                err.print(
                    f"simulate {name}: simulated {sim_now.isoformat()[:19]}Z, {sent}/{len(events)} events published",
                    highlight=False,
                )
            if i < len(events):
                wait = (events[i].time - sim_now).total_seconds() / speed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=max(0.01, min(wait, 1.0)))
        if not quiet:
            err.print(f"simulate {name}: done, {sent} events published", highlight=False)
    finally:
        await producer.stop()


# ---------------------------------------------------------------- status and report


@app.command()
def status(
    instance: Annotated[str | None, typer.Argument(help="one instance (default: every instance)")] = None,
    once: Annotated[bool, typer.Option("--once", help="print one snapshot and exit")] = False,
    json_: Annotated[bool, typer.Option("--json", help="print one machine-readable snapshot and exit")] = False,
    every: Annotated[float, typer.Option(min=0.2, help="refresh period of the live view, seconds")] = 2.0,
) -> None:
    """A live view per instance: usage against entitlement with headroom, the compliance state with its next
    deadline, and the active alerts. Ctrl-C leaves it.

    Examples: ccxlic status | ccxlic status cc-east --once | ccxlic status --json
    """
    settings = _settings()
    urls = settings.urls()
    if instance is not None:
        _instance(instance)
    if json_:
        snap = asyncio.run(snapshot(urls, instance))
        for entry in snap["instances"]:
            entry["exits"] = exits(entry["compliance"]) if entry["compliance"] else []
        typer.echo(json.dumps(snap, indent=2, default=str))
        if snap["errors"]:
            raise typer.Exit(1)
        return
    if once:
        snap = asyncio.run(snapshot(urls, instance))
        Console().print(render(snap))
        if snap["errors"]:
            raise typer.Exit(1)
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_live(urls, instance, every, asyncio.Event()))


async def _live(
    urls: Urls, instance: str | None, every: float, stop: asyncio.Event, title: str = "ccx-licensing"
) -> None:
    with Live(render(await snapshot(urls, instance), title), refresh_per_second=4, screen=False) as live:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)
            live.update(render(await snapshot(urls, instance), title))


class Format(StrEnum):
    csv = "csv"
    json = "json"


@app.command()
def report(
    instance: Annotated[str, typer.Argument(help="the product instance id")],
    from_: Annotated[str, typer.Option("--from", help="first interval start, RFC 3339")],
    to: Annotated[str, typer.Option("--to", help="end (exclusive), RFC 3339")],
    format: Annotated[Format, typer.Option(help="csv or json")] = Format.json,
) -> None:
    """The License Consumption report: peaks per reporting interval (latest revision) with the Premium witness, the
    deficit per license against the current entitlements, and what to buy to stay compliant at those peaks.

    Example: ccxlic report cc-east --from 2026-03-01T00:00:00Z --to 2026-04-01T00:00:00Z --format csv
    """
    since, until = _time(from_, "--from"), _time(to, "--to")
    if until <= since:
        raise _fail("--to must be after --from")
    urls = _settings().urls()
    try:
        body, usage = asyncio.run(report_inputs(urls, _instance(instance), since, until))
    except ServiceError as exc:
        raise _fail(str(exc), 1) from None
    ent = usage.get("entitled") if usage else None
    entitled = Entitlement(ent["standard"], ent["premium"], ent["ivr_ports"]) if ent else None
    table = report_mod.rows(body["reports"], entitled)
    if format is Format.csv:
        typer.echo(report_mod.as_csv(table), nl=False)
        buy = report_mod.to_buy(table, entitled)
        err.print(
            f"to buy: Standard {buy['standard']}, Premium {buy['premium']}, IVR ports {buy['ivr_ports']}",
            highlight=False,
        )
    else:
        typer.echo(json.dumps(report_mod.as_json(instance, table, entitled), indent=2))


# ---------------------------------------------------------------- run


class Service(StrEnum):
    consumption = "consumption"
    compliance = "compliance"
    alerting = "alerting"
    agent = "agent"
    authority = "authority"
    console = "console"
    all = "all"


@app.command()
def run(
    service: Annotated[
        Service, typer.Argument(help="consumption, compliance, alerting, agent, authority, console or all")
    ] = Service.all,
    no_ticker: Annotated[bool, typer.Option("--no-ticker", help="do not publish a clock tick every minute")] = False,
    tick_every: Annotated[float, typer.Option(min=1, help="seconds between ticks")] = 60.0,
    scenario: Annotated[
        str | None, typer.Option(help="also simulate this scenario once the services are ready")
    ] = None,
    speed: Annotated[
        float | None, typer.Option(min=0.001, help="the simulation's speed (default: the scenario's)")
    ] = None,
    show_status: Annotated[
        bool, typer.Option("--status", help="show the live status view (logs go to --logs)")
    ] = False,
    logs: Annotated[
        Path | None, typer.Option(help="write each service's log here (default: stderr, or .ccxlic/logs with --status)")
    ] = None,
) -> None:
    """Run the services as separate processes against KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, with a ticker
    publishing licensing.clock.tick every minute. SIGTERM or Ctrl-C stops them cleanly.

    Examples: ccxlic run all | ccxlic run compliance --no-ticker | ccxlic run all --scenario demo --status
    """
    settings = _settings()
    names = SERVICES if service is Service.all else (service.value,)
    if show_status and logs is None:
        logs = Path(".ccxlic/logs")
    sc = None
    if scenario is not None:
        try:
            sc = load(scenario)
        except ScenarioError as exc:
            raise _fail(str(exc)) from None
    try:
        asyncio.run(wait_for_kafka(Broker.of(settings), timeout=30))
    except KafkaUnavailable as exc:
        raise _fail(str(exc), 1) from None
    # A simulation runs ahead of the wall clock: the consumption computer must not refuse its future events. The
    # agent talks to the authority this run starts (unless CCXLIC_AUTHORITY_URL says otherwise).
    # The authority it starts takes the simulation's clock too (simulation mode: it says so).
    extra = {"CCXLIC_MAX_EVENT_SKEW": "off", "CCXLIC_AUTHORITY_CALLER_CLOCK": "true"} if sc is not None else {}
    if "CCXLIC_AUTHORITY_URL" not in os.environ:
        extra["CCXLIC_AUTHORITY_URL"] = settings.urls().authority
    procs, files = _spawn(names, logs, extra)
    try:
        code = asyncio.run(_run(settings, procs, not no_ticker, tick_every, sc, speed, show_status))
    finally:
        for f in files:
            f.close()
    raise typer.Exit(code)


def _spawn(
    names: Sequence[str], logs: Path | None, env: dict[str, str]
) -> tuple[dict[str, subprocess.Popen[bytes]], list[Any]]:
    """Start each service as its own process (its own session: Ctrl-C reaches ccxlic, which stops them in order)."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    files: list[Any] = []
    for name in names:
        out: Any = None
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
            out = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - closed when the run ends
            files.append(out)
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", f"ccxlic_{name}"], stderr=out, start_new_session=True, env={**os.environ, **env}
        )
        port = os.environ.get(PORT_VARS[name], str(DEFAULT_PORTS[name]))
        where = f", log {logs / (name + '.log')}" if logs else ""
        err.print(
            f"ccxlic run: started {name} (pid {procs[name].pid}, http://127.0.0.1:{port}{where})", highlight=False
        )
    return procs, files


async def _run(
    settings: CliSettings,
    procs: dict[str, subprocess.Popen[bytes]],
    ticker: bool,
    tick_every: float,
    sc: Any,
    speed: float | None,
    show_status: bool,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    urls = settings.urls()
    tasks: list[asyncio.Task[Any]] = []
    code = 0
    try:
        ready = await _wait_ready(urls, list(procs), procs, stop)
        if not ready:
            code = 0 if stop.is_set() else 1
            return code
        err.print("ccxlic run: ready" + ("; Ctrl-C stops" if not show_status else ""), highlight=False)
        if ticker:
            tasks.append(asyncio.create_task(_ticker(settings, tick_every, stop)))
        if sc is not None:
            begin = sc.starts_at(datetime.now(UTC).replace(microsecond=0))
            token = await common.scenario_token(settings) if "authority" in procs else ""
            tokens = await authority_commands.prepare(urls.authority, sc, begin, token) if token else {}
            events = generate(sc, begin, tokens)
            faults = authority_commands.fault_changes(sc, begin)
            simulation = _simulate(
                settings,
                events,
                begin,
                speed or sc.speed,
                sc.name,
                stop,
                quiet=show_status,
                faults=faults,
                token=token,
            )
            tasks.append(asyncio.create_task(simulation))
        if show_status:
            title = "ccx-licensing" + (f" - scenario {sc.name}" if sc is not None else "") + " - Ctrl-C stops"
            tasks.append(asyncio.create_task(_live(urls, None, 2.0, stop, title)))
        while not stop.is_set():
            for name, p in procs.items():
                if p.poll() is not None:
                    err.print(
                        f"[red]ccxlic run: {name} exited with code {p.returncode}; stopping the others[/red]",
                        highlight=False,
                    )
                    code = 1
                    stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in procs.items():
            try:
                await asyncio.to_thread(p.wait, 30)
            except subprocess.TimeoutExpired:
                err.print(f"ccxlic run: {name} did not stop within 30 s; killing it", highlight=False)
                p.kill()
        err.print("ccxlic run: stopped", highlight=False)
    return code


async def _wait_ready(
    urls: Urls, names: Sequence[str], procs: dict[str, subprocess.Popen[bytes]], stop: asyncio.Event
) -> bool:
    pending = set(names)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while pending and not stop.is_set():
            for name in sorted(pending):
                if procs[name].poll() is not None:
                    err.print(
                        f"[red]ccxlic run: {name} exited with code {procs[name].returncode} while starting[/red]",
                        highlight=False,
                    )
                    return False
                try:
                    async with http.get(f"{getattr(urls, name)}/readyz") as r:
                        if r.status == 200:
                            pending.discard(name)
                except (aiohttp.ClientError, TimeoutError):
                    pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
    return not pending
