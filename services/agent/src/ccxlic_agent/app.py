"""The Smart Agent's composition root: its decider, store, caller and authority client on the runtime, and its HTTP
views.

Why its own service, not inside compliance: the agent talks to the outside (the licensing authority). Inside
compliance, compliance's verdicts would depend on the authority's availability. As its own service it is an edge,
like the product's Smart Agent is: *when* it calls is a pure function of its stream (event time); the call is an
output, made by the caller once the unit of work that asked for it has committed; what came back is an input on the
agent's own topic; and what happened is published as lifecycle events, which the chain reads like any other input (a
replay of the topics gives the same verdicts, without calling anyone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web
from ccxlic_contract.topics import AGENT_CALLS, AGENT_COMMANDS, CONSUMPTION
from ccxlic_rules.codes import load_key
from ccxlic_runtime.db import Database
from ccxlic_runtime.http import BadRequest, instance_param, json_response, problem
from ccxlic_runtime.instances import Instances, Store
from ccxlic_runtime.service import run_service, service_database
from prometheus_client import CollectorRegistry, Counter

from ccxlic_agent.caller import Caller
from ccxlic_agent.client import AuthorityClient
from ccxlic_agent.machine import AgentDecider, Called, Emitted, Output, Requested, Rules, State
from ccxlic_agent.settings import AgentSettings
from ccxlic_agent.store import PgAgentStore, load_agent
from ccxlic_agent.witness import Witnessing, public_key_b64

SERVICE = "agent"
INPUTS = (CONSUMPTION, AGENT_COMMANDS, AGENT_CALLS)
"""At one instant: ticks and reports first (a command then sees them), and an answer after the input that asked for
its call (the call is made at that input's time)."""
MIGRATIONS = resources.files("ccxlic_agent") / "migrations"


def publish(instance: str, output: Output) -> tuple[Any, ...]:
    return (output.event,) if isinstance(output, Emitted) else ()


def build(
    registry: CollectorRegistry,
    store: Store[State, Output, None],
    rules: Rules | None = None,
    wake: asyncio.Event | None = None,
) -> Instances[State, Output, None]:
    """The agent on the runtime; `wake` is set when a committed unit of work asked for a call (the caller makes it)."""
    calls = Counter(
        "ccxlic_agent_calls",
        "Calls to the licensing authority, by operation and outcome",
        ["operation", "ok"],
        registry=registry,
    )

    def observe(instance: str, before: State | None, after: State, outputs: Any) -> None:
        for o in outputs:
            if isinstance(o, Called):
                calls.labels(o.operation, str(o.ok).lower()).inc()
            elif isinstance(o, Requested) and wake is not None:
                wake.set()

    return Instances(AgentDecider(rules or Rules()), store, publish, None, on_commit=observe)


def view(state: State) -> dict[str, Any]:
    return {
        "instance": state.instance,
        "as_of": state.now,
        "status": state.status,
        "transport": {"mode": state.transport, "url": state.url, "proxy": state.proxy},
        "license_type": state.deployment,
        "overage_allowed": state.overage_allowed,
        "virtual_account": state.virtual_account,
        "registration_valid_until": state.registration_valid_until,
        "next": {
            "authorization": state.next_authorization,
            "registration_renewal": state.next_registration_renewal,
            "report": state.next_report,
        },
        "failures": {
            "authorization": state.authorization_failures,
            "registration": state.registration_failures,
            "report": state.report_failures,
        },
        "reports_waiting": len(state.pending),
        "entitlements": state.entitlements,
        "reservation": state.reservation,
        "authority_key_pinned": state.authority_key is not None,
        "entitlements_failed": state.entitlements_failed,
        "calls": state.calls,
        "waiting_for": None
        if state.in_flight is None
        else {"operation": state.in_flight.call.operation, "since": state.in_flight.call.at},
        "deferred": len(state.deferred),
        "last": None if state.last is None else state.last.model_dump(mode="json"),
    }


def add_routes(app: web.Application, db: Database, witnessing: Witnessing) -> None:
    async def instances(_: web.Request) -> web.Response:
        rows = await db.fetch("select state::text as state from instances order by instance")
        return json_response({"instances": [view(State.model_validate_json(r["state"])) for r in rows]})

    async def one(request: web.Request) -> web.Response:
        try:
            instance = instance_param(request)
        except BadRequest as exc:
            return problem(400, str(exc))
        async with db.pool.acquire() as conn:
            found = await load_agent(conn, instance)
        if found is None:
            return problem(404, f"the Smart Agent has heard nothing of instance {instance!r}")
        return json_response(view(found[0]))

    async def calls(request: web.Request) -> web.Response:
        try:
            instance = instance_param(request)
        except BadRequest as exc:
            return problem(400, str(exc))
        rows = await db.fetch(
            "select seq, at, operation, ok, message from calls where instance = $1 order by seq desc limit 100",
            instance,
        )
        return json_response({"instance": instance, "calls": [dict(r) for r in rows]})

    app.router.add_get("/v1/instances", instances)
    app.router.add_get("/v1/instances/{instance}/agent", one)

    async def checkpoints(request: web.Request) -> web.Response:
        try:
            instance = instance_param(request)
        except BadRequest as exc:
            return problem(400, str(exc))
        keys = await db.fetch("select private_pem from log_keys where instance = $1", instance)
        if not keys:
            return problem(404, f"the Smart Agent has signed no checkpoint of instance {instance!r} yet")
        rows = await db.fetch("select note from checkpoints where instance = $1 order by origin, size", instance)
        return json_response(
            {
                "instance": instance,
                "public_key": public_key_b64(load_key(str(keys[0]["private_pem"]))),
                "checkpoints": [str(r["note"]) for r in rows],
            }
        )

    app.router.add_get("/v1/instances/{instance}/agent/calls", calls)

    async def usage_bundle(request: web.Request) -> web.Response:
        try:
            instance = instance_param(request)
        except BadRequest as exc:
            return problem(400, str(exc))
        try:
            return json_response(await witnessing.usage_bundle(instance))
        except (ValueError, KeyError, TypeError) as exc:
            return problem(502, f"the usage bundle of {instance} cannot be made: {exc}")

    app.router.add_get("/v1/instances/{instance}/checkpoints", checkpoints)
    app.router.add_get("/v1/instances/{instance}/usage-bundle", usage_bundle)


async def run(settings: AgentSettings, stop: asyncio.Event, *, ready: Callable[[int], None] | None = None) -> None:
    """Run the Smart Agent until `stop` is set."""
    client = AuthorityClient(settings.authority_url, settings.authority_timeout.total_seconds(), settings.ca_file)
    try:
        async with service_database(settings, SERVICE, settings.schema_name, MIGRATIONS) as db:
            registry = CollectorRegistry()
            wake = asyncio.Event()
            lease = 2 * settings.authority_timeout.total_seconds() + 5
            witnessing = Witnessing(db, client.perform, settings.logs())
            caller = Caller(db, client.perform, lease=lease, wake=wake, perform_for=witnessing.perform)
            await run_service(
                service=SERVICE,
                settings=settings,
                db=db,
                inputs=INPUTS,
                group_id=settings.group_id,
                app=build(registry, PgAgentStore(), Rules(trusted_keys=settings.trusted_keys), wake),
                registry=registry,
                http_port=settings.http_port,
                routes=lambda http: add_routes(http, db, witnessing),
                tasks=[caller.run],
                stop=stop,
                ready=ready,
            )
    finally:
        await client.close()
