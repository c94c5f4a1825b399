"""The consumption computer's composition root: its adapters, built once, and the runtime that runs them.

It reads the independent input topics (agent activity, port usage, entitlements, lifecycle, clock), merged by event
time per partition (the runtime's consumer loop), and publishes on `licensing.consumption` its outputs and, in
order, the inputs downstream needs. The rules are pure (machine.py, peaks.py, decider.py); the I/O policy is the
runtime's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import resources

from aiohttp import web
from ccxlic_contract.topics import AGENT_ACTIVITY, CLOCK, CONSUMPTION, ENTITLEMENTS, INTAKE, LIFECYCLE, PORT_USAGE
from ccxlic_runtime.auditlog import add_log_routes
from ccxlic_runtime.db import Database
from ccxlic_runtime.http import BadRequest, instance_param, json_response, problem, time_param
from ccxlic_runtime.instances import Instances, Store
from ccxlic_runtime.metrics import InstanceLabels
from ccxlic_runtime.service import run_service, service_database
from prometheus_client import CollectorRegistry, Counter, Gauge

from ccxlic_consumption import views
from ccxlic_consumption.decider import Consumption, ConsumptionDecider, Output, Rejected
from ccxlic_consumption.handler import AUDIT, failed, publish
from ccxlic_consumption.settings import ConsumptionSettings
from ccxlic_consumption.store import PgConsumptionStore

log = logging.getLogger(__name__)
SERVICE = "consumption"
INPUTS = (ENTITLEMENTS, LIFECYCLE, AGENT_ACTIVITY, PORT_USAGE, INTAKE, CLOCK)
"""In this order: at equal event times the merge takes entitlements first and the clock last (a tick follows the
data of its instant). INTAKE: inputs a publisher put on another partition than their subject's, re-keyed here."""
MIGRATIONS = resources.files("ccxlic_consumption") / "migrations"


class ConsumptionMetrics:
    def __init__(self, registry: CollectorRegistry, label: InstanceLabels | None = None) -> None:
        self.label = label or InstanceLabels()
        self.in_use = Gauge(
            "ccxlic_seats_in_use", "Agent seats in use now", ["product_instance", "license"], registry=registry
        )
        self.entitled = Gauge(
            "ccxlic_seats_entitled",
            "Seats or ports entitled (reservation counts while one is installed); absent in evaluation",
            ["product_instance", "license"],
            registry=registry,
        )
        self.ports = Gauge("ccxlic_ports_in_use", "Ports in use now", ["product_instance", "kind"], registry=registry)
        self.rejected = Counter(
            "ccxlic_sign_ins_rejected_total",
            "Sign-ins refused, by the limit that refused them (license_control, reservation, ova)",
            ["product_instance", "license", "limit"],
            registry=registry,
        )

    def committed(
        self, instance: str, before: Consumption | None, after: Consumption, outputs: Sequence[Output]
    ) -> None:
        for o in outputs:
            if isinstance(o, Rejected):
                self.rejected.labels(self.label(instance), o.license, o.limit).inc()
        state = after.live
        used = state.usage()
        self.in_use.labels(self.label(instance), "standard").set(used.standard)
        self.in_use.labels(self.label(instance), "premium").set(used.premium)
        self.ports.labels(self.label(instance), "ivr").set(state.ports.ivr)
        self.ports.labels(self.label(instance), "outbound").set(state.ports.outbound_ports)
        self.ports.labels(self.label(instance), "outbound_seats").set(state.ports.outbound_seats)
        ent = state.limits.effective
        for license in ("standard", "premium", "ivr_ports"):
            if ent is not None:
                self.entitled.labels(self.label(instance), license).set(getattr(ent, license))
            elif before is not None and before.live.limits.effective is not None:
                # back in evaluation (deregistered, a reservation returned): nothing is entitled, so no series
                with contextlib.suppress(KeyError):
                    self.entitled.remove(self.label(instance), license)


def build(
    settings: ConsumptionSettings, metrics: ConsumptionMetrics, store: Store[Consumption, Output, None]
) -> Instances[Consumption, Output, None]:
    """The decider, the store and the mapping to wire events, put together (tests pass an in-memory store)."""
    return Instances(
        ConsumptionDecider(settings.rules()),
        store,
        publish,
        CONSUMPTION,
        on_commit=metrics.committed,
        on_failure=failed,
        audit=AUDIT,
    )


async def run(
    settings: ConsumptionSettings, stop: asyncio.Event, *, ready: Callable[[int], None] | None = None
) -> None:
    """Run the consumption computer until `stop` is set."""
    async with service_database(settings, SERVICE, settings.schema_name, MIGRATIONS) as db:
        registry = CollectorRegistry()
        await run_service(
            service=SERVICE,
            settings=settings,
            db=db,
            inputs=INPUTS,
            group_id=settings.group_id,
            app=build(
                settings,
                ConsumptionMetrics(registry, InstanceLabels(settings.metrics_max_instances)),
                PgConsumptionStore(),
            ),
            registry=registry,
            http_port=settings.http_port,
            routes=lambda app: add_routes(app, db),
            stop=stop,
            ready=ready,
            max_skew=settings.max_event_skew,
            reroute=INTAKE,
        )


def add_routes(app: web.Application, db: Database) -> None:
    add_log_routes(app, db, "consumption")

    async def usage_view(request: web.Request) -> web.Response:
        try:
            instance = instance_param(request)
        except BadRequest as exc:
            return problem(400, str(exc))
        body = await views.usage(db, instance)
        if body is None:
            return problem(404, f"no usage known for instance {instance!r}")
        return json_response(body)

    async def intervals_view(request: web.Request) -> web.Response:
        try:
            instance = instance_param(request)
            since = time_param(request, "from", datetime(1970, 1, 1, tzinfo=UTC))
            until = time_param(request, "to", datetime(9999, 1, 1, tzinfo=UTC))
        except BadRequest as exc:
            return problem(400, str(exc))
        if until <= since:
            return problem(400, "`to` must be after `from`")
        return json_response({"instance": instance, "reports": await views.intervals(db, instance, since, until)})

    app.router.add_get("/v1/instances/{instance}/usage", usage_view)
    app.router.add_get("/v1/instances/{instance}/intervals", intervals_view)
