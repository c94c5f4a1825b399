"""Compliance's composition root: its adapters, built once, and the runtime that runs them.

It reads one ordered stream per instance, `licensing.consumption` (usage, interval reports, and the entitlements,
lifecycle events and time the consumption computer forwards), and publishes on `licensing.compliance` its
transitions and what alerting needs. The rules are pure (machine.py, decider.py); the I/O policy is the runtime's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, get_args

from aiohttp import web
from ccxlic_contract.events import Authorization, Registration
from ccxlic_contract.topics import COMPLIANCE, CONSUMPTION
from ccxlic_runtime.auditlog import add_log_routes
from ccxlic_runtime.db import Database
from ccxlic_runtime.http import BadRequest, instance_param, int_param, json_response, problem
from ccxlic_runtime.instances import Instances, Store
from ccxlic_runtime.metrics import InstanceLabels
from ccxlic_runtime.service import run_service, service_database
from prometheus_client import CollectorRegistry, Gauge

from ccxlic_compliance import views
from ccxlic_compliance.decider import Compliance, ComplianceDecider, Output
from ccxlic_compliance.handler import AUDIT, publish
from ccxlic_compliance.machine import Rules, State
from ccxlic_compliance.settings import ComplianceSettings
from ccxlic_compliance.store import PgComplianceStore

log = logging.getLogger(__name__)
SERVICE = "compliance"
INPUTS = (CONSUMPTION,)
MIGRATIONS = resources.files("ccxlic_compliance") / "migrations"


class ComplianceMetrics:
    def __init__(self, registry: CollectorRegistry, label: InstanceLabels | None = None) -> None:
        self.label = label or InstanceLabels()
        self.registration = Gauge(
            "ccxlic_compliance_registration",
            "1 for the instance's registration state",
            ["product_instance", "state"],
            registry=registry,
        )
        self.authorization = Gauge(
            "ccxlic_compliance_authorization",
            "1 for the instance's authorization state",
            ["product_instance", "state"],
            registry=registry,
        )
        self.enforcement = Gauge(
            "ccxlic_compliance_enforcement_active",
            "1 while the instance is in enforcement",
            ["product_instance"],
            registry=registry,
        )
        self.deficit = Gauge(
            "ccxlic_compliance_deficit",
            "Seats or ports in use beyond the entitlements",
            ["product_instance", "license"],
            registry=registry,
        )
        self.deadline = Gauge(
            "ccxlic_compliance_deadline_seconds",
            "Seconds from the instance's latest event time to each pending deadline (negative: passed)",
            ["product_instance", "deadline"],
            registry=registry,
        )

        self.forecast_peak = Gauge(
            "ccxlic_compliance_forecast_peak",
            "An estimate: the highest p90 forecast of the coming week's reporting intervals, per license, from the"
            " instance's own interval peaks (absent with fewer than 3 full weeks of them)",
            ["product_instance", "license"],
            registry=registry,
        )

    def observe(self, state: State, rules: Rules) -> None:
        view, i = state.view(rules), self.label(state.instance)
        for reg in get_args(Registration):
            self.registration.labels(i, reg).set(1 if view.registration == reg else 0)
        for auth in get_args(Authorization):
            self.authorization.labels(i, auth).set(1 if view.authorization == auth else 0)
        self.enforcement.labels(i).set(1 if view.enforcement.active else 0)
        for lic in ("standard", "premium", "ivr_ports"):
            self.deficit.labels(i, lic).set(getattr(view.deficit, lic))
            if state.forecast_peak is not None:
                self.forecast_peak.labels(i, lic).set(getattr(state.forecast_peak, lic))
            else:
                with contextlib.suppress(KeyError):
                    self.forecast_peak.remove(i, lic)
        for name, seconds in views.seconds_to(view, state.now).items():
            if seconds is None:
                with contextlib.suppress(KeyError):
                    self.deadline.remove(i, name)
            else:
                self.deadline.labels(i, name).set(seconds)


def build(
    settings: ComplianceSettings, metrics: ComplianceMetrics, store: Store[Compliance, Output, None]
) -> Instances[Compliance, Output, None]:
    """The decider, the store and the mapping to wire events, put together (tests pass an in-memory store)."""
    rules = settings.rules()
    return Instances(
        ComplianceDecider(rules),
        store,
        publish,
        COMPLIANCE,
        on_commit=lambda instance, before, after, outputs: metrics.observe(after.state, rules),
        audit=AUDIT,
    )


async def run(settings: ComplianceSettings, stop: asyncio.Event, *, ready: Callable[[int], None] | None = None) -> None:
    """Run compliance until `stop` is set."""
    rules = settings.rules()
    async with service_database(settings, SERVICE, settings.schema_name, MIGRATIONS) as db:
        registry = CollectorRegistry()
        metrics = ComplianceMetrics(registry, InstanceLabels(settings.metrics_max_instances))
        for state in await views.states(db):  # the gauges start from what is stored, not from zero
            metrics.observe(state, rules)
        app = build(settings, metrics, PgComplianceStore(rules))
        await run_service(
            service=SERVICE,
            settings=settings,
            db=db,
            inputs=INPUTS,
            group_id=settings.group_id,
            app=app,
            registry=registry,
            http_port=settings.http_port,
            routes=lambda http: add_routes(http, db, rules),
            stop=stop,
            ready=ready,
        )


def add_routes(app: web.Application, db: Database, rules: Rules) -> None:
    add_log_routes(app, db, "compliance")

    async def instances(_: web.Request) -> web.Response:
        return json_response({"instances": await views.instances(db)})

    def instance_view(
        view: Callable[[Database, Rules, str], Awaitable[dict[str, Any] | None]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """An instance's view: 400 for a bad id, 404 for an instance compliance knows nothing of."""

        async def handler(request: web.Request) -> web.Response:
            try:
                instance = instance_param(request)
            except BadRequest as exc:
                return problem(400, str(exc))
            body = await view(db, rules, instance)
            if body is None:
                return problem(404, f"no compliance state known for instance {instance!r}")
            return json_response(body)

        return handler

    async def history(request: web.Request) -> web.Response:
        try:
            instance = instance_param(request)
            after = int_param(request, "after", 0, 0, 2**62)
            limit = int_param(request, "limit", 1000, 1, 10000)
        except BadRequest as exc:
            return problem(400, str(exc))
        items = await views.history(db, instance, after, limit)
        if items is None:
            return problem(404, f"no compliance state known for instance {instance!r}")
        body: dict[str, Any] = {"instance": instance, "transitions": items}
        if len(items) == limit:
            body["next"] = f"?after={items[-1]['seq']}&limit={limit}"
        return json_response(body)

    app.router.add_get("/v1/instances", instances)
    app.router.add_get("/v1/instances/{instance}/compliance", instance_view(views.compliance))
    app.router.add_get("/v1/instances/{instance}/compliance/history", history)
    app.router.add_get("/v1/instances/{instance}/provisioning", instance_view(views.provisioning_of))
