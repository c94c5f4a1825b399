"""Alerting as a service: the runtime's aiokafka consumer loop, the outbox relay, one delivery loop per channel and
the HTTP API (alerts, silences). Thin: the rules are in machine.py, rendering in channels.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any

from aiohttp import web
from ccxlic_contract.events import INSTANCE_ID_PATTERN, AlertName
from ccxlic_contract.topics import CLOCK, COMPLIANCE, CONSUMPTION, LIFECYCLE, TOPICS
from ccxlic_runtime.consumer import ConsumerLoop, RecordProcessor
from ccxlic_runtime.db import Database, create_pool, migrate, relay_outbox
from ccxlic_runtime.http import BadRequest, OpsServer, check_instance, int_param, json_response, ops_app, problem
from ccxlic_runtime.kafka import EventProducer, ensure_topics, topic_name, wait_for_kafka
from ccxlic_runtime.metrics import RuntimeMetrics
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from ccxlic_alerting.delivery import Deliverer
from ccxlic_alerting.handler import AlertingHandler
from ccxlic_alerting.machine import Silence, State
from ccxlic_alerting.settings import AlertingSettings

log = logging.getLogger(__name__)
SERVICE = "alerting"
INPUTS = (COMPLIANCE, LIFECYCLE, CONSUMPTION, CLOCK)
MIGRATIONS = resources.files("ccxlic_alerting") / "migrations"


class AlertingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.active = Gauge(
            "ccxlic_alerts_active", "1 while the alert is active", ["instance", "alert", "severity"], registry=registry
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
                        self.active.remove(after.instance, a.alert, a.severity)
        for a in after.active.values():
            self.active.labels(after.instance, a.alert, a.severity).set(1)

    def outcome(self, channel: str, outcome: str) -> None:
        self.notifications.labels(channel, outcome).inc()


async def run(settings: AlertingSettings, stop: asyncio.Event, *, ready: Callable[[int], None] | None = None) -> None:
    """Run alerting until `stop` is set."""
    rules = settings.rules()
    channels = settings.channels()
    if not channels:
        log.warning("no notification channel configured: alerts are recorded and published, not delivered")
    await wait_for_kafka(settings.kafka_bootstrap_servers)
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_prefix, TOPICS)
    pool = await create_pool(settings.database_url, settings.schema_name, max_size=settings.db_pool_size)
    try:
        await migrate(pool, settings.schema_name, MIGRATIONS)
        db = Database(pool, settings.schema_name, settings.topic_prefix)
        registry = CollectorRegistry()
        metrics = AlertingMetrics(registry)
        wakes = [asyncio.Event() for _ in channels]

        def wake_all() -> None:
            for w in wakes:
                w.set()

        handler = AlertingHandler(rules, [c.name for c in channels], on_commit=metrics.observe, on_notice=wake_all)
        async with pool.acquire() as conn:  # the gauges start from what is stored
            for instance in await handler.store.instance_ids(conn):
                found = await handler.store.load(conn, instance)
                if found is not None:
                    metrics.observe(None, found)
        processor = RecordProcessor(
            service=SERVICE,
            topics=TOPICS,
            prefix=settings.topic_prefix,
            db=db,
            handler=handler,
            metrics=RuntimeMetrics(registry),
            stop=stop,
        )
        loop = ConsumerLoop(
            processor,
            bootstrap=settings.kafka_bootstrap_servers,
            group_id=f"{settings.topic_prefix}{settings.group_id}",
            topics=[topic_name(t, settings.topic_prefix) for t in INPUTS],
            batch=settings.batch_size,
        )
        deliverers = [
            Deliverer(
                db,
                c,
                max_attempts=settings.delivery_max_attempts,
                backoff=settings.delivery_backoff_seconds,
                max_backoff=settings.delivery_max_backoff_seconds,
                wake=w,
                on_outcome=metrics.outcome,
            )
            for c, w in zip(channels, wakes, strict=True)
        ]

        async def kafka_ready() -> bool:
            return loop.ready.is_set()

        server = OpsServer(
            build_http(db, handler, registry, {"database": db.ping, "kafka": kafka_ready}),
            settings.http_host,
            settings.http_port,
        )
        async with EventProducer(
            settings.kafka_bootstrap_servers, settings.topic_prefix, client_id=SERVICE
        ) as producer:
            await server.start()
            tasks = {
                asyncio.create_task(loop.run(stop)),
                asyncio.create_task(relay_outbox(db, producer, stop)),
                *(asyncio.create_task(d.run(stop)) for d in deliverers),
            }
            log.info("alerting started", extra={"http_port": server.port, "channels": [c.name for c in channels]})
            if ready is not None:
                ready(server.port)
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                await server.stop()
    finally:
        await pool.close()


# ---------------------------------------------------------------- HTTP

InstanceField = Annotated[str, StringConstraints(pattern=INSTANCE_ID_PATTERN)]


class SilenceRequest(BaseModel):
    """POST /v1/silences. Times are RFC 3339 with an offset and are compared with event time."""

    model_config = ConfigDict(extra="forbid")

    instance: InstanceField | None = None
    alert: AlertName | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime
    author: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    comment: Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")] | None = None

    @model_validator(mode="after")
    def _selects_something(self) -> SilenceRequest:
        if self.instance is None and self.alert is None:
            raise ValueError("a silence selects by `instance`, `alert` or both; give at least one")
        starts = self.starts_at or datetime.now(UTC)
        if self.ends_at <= starts:
            raise ValueError("`ends_at` must be after `starts_at` (which defaults to now)")
        return self


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def build_http(
    db: Database, handler: AlertingHandler, registry: CollectorRegistry, checks: dict[str, Any]
) -> web.Application:
    app = ops_app(registry, checks)
    store = handler.store

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
        async with db.pool.acquire() as conn:
            return json_response({"alerts": await store.alerts(conn, state, instance, limit)})

    async def get_alert(request: web.Request) -> web.Response:
        alert_id = request.match_info["alert_id"]
        async with db.pool.acquire() as conn:
            body = await store.alert(conn, alert_id)
        if body is None:
            return problem(404, f"no alert with id {alert_id!r}")
        return json_response(body)

    async def add_silence(request: web.Request) -> web.Response:
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
            author=req.author,
            comment=req.comment,
        )
        async with db.pool.acquire() as conn:
            if await conn.fetchval("select true from silences where id = $1", silence.id):
                return problem(409, f"a silence with id {silence.id!r} exists")
            await store.add_silence(conn, silence)
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
        async with db.pool.acquire() as conn:
            return json_response({"silences": await store.list_silences(conn)})

    async def delete_silence(request: web.Request) -> web.Response:
        silence_id = request.match_info["silence_id"]
        async with db.pool.acquire() as conn:
            deleted = await store.delete_silence(conn, silence_id)
        if not deleted:
            return problem(404, f"no silence with id {silence_id!r}")
        return web.Response(status=204)

    app.router.add_get("/v1/alerts", list_alerts)
    app.router.add_get("/v1/alerts/{alert_id}", get_alert)
    app.router.add_post("/v1/silences", add_silence)
    app.router.add_get("/v1/silences", list_silences)
    app.router.add_delete("/v1/silences/{silence_id}", delete_silence)
    return app


__all__ = ["SERVICE", "AlertingMetrics", "SilenceRequest", "build_http", "run"]
