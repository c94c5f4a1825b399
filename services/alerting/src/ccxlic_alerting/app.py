"""Alerting's composition root: its adapters, built once, the runtime that runs them, one delivery loop per channel
and the HTTP API (alerts, silences).

It reads one ordered stream per instance, `licensing.compliance` (transitions, and the failures and time compliance
forwards), and publishes `licensing.alert.*` on `licensing.alerts`. The rules are pure (machine.py, decider.py);
rendering is ccxlic_runtime.channels; sending is ccxlic_runtime.delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Annotated

from aiohttp import web
from ccxlic_contract.events import INSTANCE_ID_PATTERN, AlertName
from ccxlic_contract.topics import ALERTS, COMPLIANCE
from ccxlic_runtime.auditlog import add_log_routes
from ccxlic_runtime.auth import PgAuthStore, auth_middleware, identity, open_auth, writes_need_admin
from ccxlic_runtime.db import Database
from ccxlic_runtime.delivery import Deliverer
from ccxlic_runtime.http import BadRequest, check_instance, int_param, json_response, problem
from ccxlic_runtime.instances import Instances, Store
from ccxlic_runtime.metrics import InstanceLabels
from ccxlic_runtime.service import run_service, service_database
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from ccxlic_alerting import views
from ccxlic_alerting.decider import AlertingDecider, Output
from ccxlic_alerting.handler import AUDIT, publish
from ccxlic_alerting.machine import Notice, Silence, State
from ccxlic_alerting.settings import AlertingSettings
from ccxlic_alerting.store import PgAlertingStore

log = logging.getLogger(__name__)
SERVICE = "alerting"
INPUTS = (COMPLIANCE,)
MIGRATIONS = resources.files("ccxlic_alerting") / "migrations"


class AlertingMetrics:
    def __init__(self, registry: CollectorRegistry, label: InstanceLabels | None = None) -> None:
        self.label = label or InstanceLabels()
        self.active = Gauge(
            "ccxlic_alerts_active",
            "1 while the alert is active",
            ["product_instance", "alert", "severity"],
            registry=registry,
        )
        self.notifications = Counter(
            "ccxlic_notifications_total",
            "Notification deliveries by channel and outcome (sent, retry: failed and will retry, failed: gave up)",
            ["channel", "outcome"],
            registry=registry,
        )

    def observe(self, before: State | None, after: State) -> None:
        if before is not None:
            for name, a in before.active.items():
                if name not in after.active:
                    with contextlib.suppress(KeyError):
                        self.active.remove(self.label(after.instance), a.alert, a.severity)
        for a in after.active.values():
            self.active.labels(self.label(after.instance), a.alert, a.severity).set(1)

    def outcome(self, channel: str, outcome: str) -> None:
        self.notifications.labels(channel, outcome).inc()


def build(
    settings: AlertingSettings,
    metrics: AlertingMetrics,
    wake: Callable[[], None],
    store: Store[State, Output, list[Silence]],
) -> Instances[State, Output, list[Silence]]:
    """The decider, the store and the mapping to wire events, put together (tests pass an in-memory store)."""

    def committed(instance: str, before: State | None, after: State, outputs: Sequence[Output]) -> None:
        metrics.observe(before, after)
        if any(isinstance(o.action, Notice) for o in outputs):
            wake()

    return Instances(AlertingDecider(settings.rules()), store, publish, ALERTS, on_commit=committed, audit=AUDIT)


async def run(settings: AlertingSettings, stop: asyncio.Event, *, ready: Callable[[int], None] | None = None) -> None:
    """Run alerting until `stop` is set."""
    channels = settings.channels()
    if not channels:
        log.warning("no notification channel configured: alerts are recorded and published, not delivered")
    async with (
        service_database(settings, SERVICE, settings.schema_name, MIGRATIONS) as db,
        open_auth(settings.database_url, settings.auth_schema) as auth,
    ):
        registry = CollectorRegistry()
        metrics = AlertingMetrics(registry, InstanceLabels(settings.metrics_max_instances))
        for state in await views.states(db):  # the gauges start from what is stored
            metrics.observe(None, state)
        wakes = [asyncio.Event() for _ in channels]

        def wake_all() -> None:
            for w in wakes:
                w.set()

        deliverers = [
            Deliverer(
                db,
                c,
                give_up_after=settings.delivery_give_up_after.total_seconds(),
                backoff=settings.delivery_backoff_seconds,
                max_backoff=settings.delivery_max_backoff_seconds,
                lease=2 * settings.delivery_timeout_seconds + 5,
                wake=w,
                on_outcome=metrics.outcome,
            )
            for c, w in zip(channels, wakes, strict=True)
        ]
        await run_service(
            service=SERVICE,
            settings=settings,
            db=db,
            inputs=INPUTS,
            group_id=settings.group_id,
            app=build(settings, metrics, wake_all, PgAlertingStore([c.name for c in channels])),
            registry=registry,
            http_port=settings.http_port,
            routes=lambda app: add_routes(app, db, auth),
            stop=stop,
            tasks=[d.run for d in deliverers],
            ready=ready,
        )


# ---------------------------------------------------------------- HTTP

InstanceField = Annotated[str, StringConstraints(pattern=INSTANCE_ID_PATTERN)]


MAX_SILENCE = timedelta(days=90)
"""The longest silence: an alert silenced for ever is an alert nobody sees again."""


class SilenceRequest(BaseModel):
    """POST /v1/silences (an admin's bearer token or console session). Times are RFC 3339 with an offset and are
    compared with event time; the author is the caller."""

    model_config = ConfigDict(extra="forbid")

    instance: InstanceField | None = None
    alert: AlertName | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime
    comment: Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")] | None = None

    @model_validator(mode="after")
    def _selects_something(self) -> SilenceRequest:
        if self.instance is None and self.alert is None:
            raise ValueError("a silence selects by `instance`, `alert` or both; give at least one")
        starts = self.starts_at or datetime.now(UTC)
        if self.ends_at <= starts:
            raise ValueError("`ends_at` must be after `starts_at` (which defaults to now)")
        if self.ends_at - starts > MAX_SILENCE:
            raise ValueError(
                f"a silence lasts at most {MAX_SILENCE.days} days (`ends_at` - `starts_at`); set a new one when it ends"
            )
        return self


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


SILENCES = "/v1/silences"


def add_routes(app: web.Application, db: Database, auth: PgAuthStore) -> None:
    add_log_routes(app, db, "alerting")

    """The alerts (anyone on the bind address reads them) and the silences (a viewer reads, an admin changes)."""
    app.middlewares.append(auth_middleware(auth, writes_need_admin((SILENCES,))))

    async def list_alerts(request: web.Request) -> web.Response:
        state = request.query.get("state")
        instance = request.query.get("instance")
        try:
            if state not in (None, "active", "resolved"):
                raise BadRequest(f"`state` must be active or resolved; got {state!r}")
            if instance is not None:
                check_instance(instance)
            limit = int_param(request, "limit", 500, 1, 10000)
        except BadRequest as exc:
            return problem(400, str(exc))
        return json_response({"alerts": await views.alerts(db, state, instance, limit)})

    async def get_alert(request: web.Request) -> web.Response:
        alert_id = request.match_info["alert_id"]
        body = await views.alert(db, alert_id)
        if body is None:
            return problem(404, f"no alert with id {alert_id!r}")
        return json_response(body)

    async def add_silence(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return problem(415, f"a silence is sent as application/json; got {request.content_type or 'no type'}")
        who = identity(request)
        assert who is not None  # the middleware let only a signed-in admin through
        try:
            raw = await request.read()
            req = SilenceRequest.model_validate_json(raw or b"null")
        except ValidationError as exc:
            return problem(400, f"invalid silence: {_validation_message(exc)}")
        silence = Silence(
            id=req.id or str(uuid.uuid4()),
            instance=req.instance,
            alert=req.alert,
            starts_at=(req.starts_at or datetime.now(UTC)).astimezone(UTC),
            ends_at=req.ends_at.astimezone(UTC),
            author=who.user,
            comment=req.comment,
        )
        if not await views.add_silence(db, silence):
            return problem(409, f"a silence with id {silence.id!r} exists")
        log.info("silence added", extra={"silence": silence.id, "author": silence.author})
        return json_response(
            {
                "id": silence.id,
                "instance": silence.instance,
                "alert": silence.alert,
                "starts_at": silence.starts_at,
                "ends_at": silence.ends_at,
                "author": silence.author,
                "comment": silence.comment,
            },
            status=201,
        )

    async def list_silences(_: web.Request) -> web.Response:
        return json_response({"silences": await views.list_silences(db)})

    async def delete_silence(request: web.Request) -> web.Response:
        if not await views.delete_silence(db, request.match_info["silence_id"]):
            return problem(404, f"no silence with id {request.match_info['silence_id']!r}")
        return web.Response(status=204)

    app.router.add_get("/v1/alerts", list_alerts)
    app.router.add_get("/v1/alerts/{alert_id}", get_alert)
    app.router.add_post(SILENCES, add_silence)
    app.router.add_get(SILENCES, list_silences)
    app.router.add_delete(SILENCES + "/{silence_id}", delete_silence)


__all__ = ["SERVICE", "AlertingMetrics", "SilenceRequest", "add_routes", "run"]
