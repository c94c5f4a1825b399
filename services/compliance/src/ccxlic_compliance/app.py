"""Compliance as a service: the runtime's aiokafka consumer loop, the outbox relay and the HTTP API. Thin: the
rules are in machine.py, and the I/O policy (dedup, dead letters, retries, one transaction per batch, offsets
committed after it) is the runtime's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from typing import Any, get_args

from aiohttp import web
from ccxlic_contract.events import Authorization, ComplianceChangedData, Registration
from ccxlic_contract.topics import CLOCK, CONSUMPTION, ENTITLEMENTS, LIFECYCLE
from ccxlic_runtime.db import Database
from ccxlic_runtime.http import BadRequest, instance_param, int_param, json_response, problem
from ccxlic_runtime.service import run_consumer_service, service_database
from prometheus_client import CollectorRegistry, Gauge

from ccxlic_compliance.handler import ComplianceHandler
from ccxlic_compliance.machine import Rules, State
from ccxlic_compliance.settings import ComplianceSettings

log = logging.getLogger(__name__)
SERVICE = "compliance"
INPUTS = (CONSUMPTION, ENTITLEMENTS, LIFECYCLE, CLOCK)
MIGRATIONS = resources.files("ccxlic_compliance") / "migrations"
DEADLINES = ("evaluation_ends_at", "ooc_at", "enforcement_at", "authorization_expires_at", "registration_expires_at")


class ComplianceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registration = Gauge(
            "ccxlic_compliance_registration",
            "1 for the instance's registration state",
            ["instance", "state"],
            registry=registry,
        )
        self.authorization = Gauge(
            "ccxlic_compliance_authorization",
            "1 for the instance's authorization state",
            ["instance", "state"],
            registry=registry,
        )
        self.enforcement = Gauge(
            "ccxlic_compliance_enforcement_active",
            "1 while the instance is in enforcement",
            ["instance"],
            registry=registry,
        )
        self.deficit = Gauge(
            "ccxlic_compliance_deficit",
            "Seats or ports in use beyond the entitlements",
            ["instance", "license"],
            registry=registry,
        )
        self.deadline = Gauge(
            "ccxlic_compliance_deadline_seconds",
            "Seconds from the instance's latest event time to each pending deadline (negative: passed)",
            ["instance", "deadline"],
            registry=registry,
        )

    def observe(self, state: State, rules: Rules) -> None:
        view, i = state.view(rules), state.instance
        for reg in get_args(Registration):
            self.registration.labels(i, reg).set(1 if view.registration == reg else 0)
        for auth in get_args(Authorization):
            self.authorization.labels(i, auth).set(1 if view.authorization == auth else 0)
        self.enforcement.labels(i).set(1 if view.enforcement.active else 0)
        for lic in ("standard", "premium", "ivr_ports"):
            self.deficit.labels(i, lic).set(getattr(view.deficit, lic))
        for name, seconds in seconds_to(view, state.now).items():
            if seconds is None:
                with contextlib.suppress(KeyError):
                    self.deadline.remove(i, name)
            else:
                self.deadline.labels(i, name).set(seconds)


def seconds_to(view: ComplianceChangedData, now: datetime | None) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in DEADLINES:
        at: datetime | None = getattr(view.deadlines, name)
        out[name] = None if at is None or now is None else (at - now).total_seconds()
    return out


async def run(settings: ComplianceSettings, stop: asyncio.Event, *, ready: Callable[[int], None] | None = None) -> None:
    """Run compliance until `stop` is set."""
    rules = settings.rules()
    async with service_database(settings, settings.schema_name, MIGRATIONS) as db:
        registry = CollectorRegistry()
        metrics = ComplianceMetrics(registry)
        handler = ComplianceHandler(rules, on_commit=metrics.observe)
        async with db.pool.acquire() as conn:  # the gauges start from what is stored, not from zero
            for instance in await handler.store.instance_ids(conn):
                found = await handler.store.load(conn, instance)
                if found is not None:
                    metrics.observe(found[0], rules)
        await run_consumer_service(
            service=SERVICE,
            settings=settings,
            db=db,
            inputs=INPUTS,
            group_id=settings.group_id,
            handler=handler,
            registry=registry,
            http_port=settings.http_port,
            routes=lambda app: add_routes(app, db, handler, rules),
            stop=stop,
            ready=ready,
        )


def add_routes(app: web.Application, db: Database, handler: ComplianceHandler, rules: Rules) -> None:

    async def instances(_: web.Request) -> web.Response:
        rows = await db.fetch("select instance, view from instances order by instance")
        out = []
        for r in rows:
            view = ComplianceChangedData.model_validate_json(r["view"])
            out.append(
                {
                    "instance": r["instance"],
                    "registration": view.registration,
                    "authorization": view.authorization,
                    "enforcement": view.enforcement.active,
                }
            )
        return json_response({"instances": out})

    async def compliance(request: web.Request) -> web.Response:
        try:
            instance = instance_param(request)
        except BadRequest as exc:
            return problem(400, str(exc))
        async with db.pool.acquire() as conn:
            found = await handler.store.load(conn, instance)  # not the cache: another worker may own it
        if found is None:
            return problem(404, f"no compliance state known for instance {instance!r}")
        state, seq, _ = found
        view = state.view(rules)
        return json_response(
            {
                "instance": instance,
                "as_of": state.now,
                "transitions": seq,
                **view.model_dump(mode="json"),
                "seconds_to": seconds_to(view, state.now),
            }
        )

    async def history(request: web.Request) -> web.Response:
        try:
            instance = instance_param(request)
            after = int_param(request, "after", 0, 0, 2**62)
            limit = int_param(request, "limit", 1000, 1, 10000)
        except BadRequest as exc:
            return problem(400, str(exc))
        async with db.pool.acquire() as conn:
            if await handler.store.load(conn, instance) is None:
                return problem(404, f"no compliance state known for instance {instance!r}")
            items = await handler.store.history(conn, instance, after, limit)
        body: dict[str, Any] = {"instance": instance, "transitions": items}
        if len(items) == limit:
            body["next"] = f"?after={items[-1]['seq']}&limit={limit}"
        return json_response(body)

    app.router.add_get("/v1/instances", instances)
    app.router.add_get("/v1/instances/{instance}/compliance", compliance)
    app.router.add_get("/v1/instances/{instance}/compliance/history", history)
