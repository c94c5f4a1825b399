"""The faust adapter: agents per input topic, a timer, and the HTTP views. Thin: all rules are in machine.py and
peaks.py, and all I/O policy is the runtime's (RecordProcessor: dead letters, retries, one transaction per batch).

faust acks (and later commits) an event's offset only after the agent has handled its batch, i.e. after the
PostgreSQL transaction committed; a redelivered event finds its dedup record and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import faust
from aiohttp import web
from ccxlic_contract.topics import AGENT_ACTIVITY, CLOCK, ENTITLEMENTS, LIFECYCLE, PORT_USAGE, TOPICS
from ccxlic_runtime.consumer import TRANSIENT_ERRORS, Delivery, RecordProcessor
from ccxlic_runtime.db import Database, relay_outbox
from ccxlic_runtime.http import BadRequest, add_ops_routes, instance_param, json_response, problem, time_param
from ccxlic_runtime.kafka import EventProducer, topic_name
from ccxlic_runtime.metrics import RuntimeMetrics
from ccxlic_runtime.service import service_database
from ccxlic_runtime.settings import ConfigError
from prometheus_client import CollectorRegistry, Counter, Gauge

from ccxlic_consumption.handler import ConsumptionHandler
from ccxlic_consumption.machine import InstanceState
from ccxlic_consumption.settings import ConsumptionSettings

log = logging.getLogger(__name__)
SERVICE = "consumption"
INPUTS = (AGENT_ACTIVITY, PORT_USAGE, ENTITLEMENTS, LIFECYCLE, CLOCK)
MIGRATIONS = resources.files("ccxlic_consumption") / "migrations"


class ConsumptionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.in_use = Gauge("ccxlic_seats_in_use", "Agent seats in use now", ["instance", "license"], registry=registry)
        self.entitled = Gauge(
            "ccxlic_seats_entitled",
            "Seats or ports entitled (reservation counts while one is installed); absent in evaluation",
            ["instance", "license"],
            registry=registry,
        )
        self.ports = Gauge("ccxlic_ports_in_use", "Ports in use now", ["instance", "kind"], registry=registry)
        self.rejected = Counter(
            "ccxlic_sign_ins_rejected_total",
            "Sign-ins refused by License Control",
            ["instance", "license"],
            registry=registry,
        )

    def rejected_one(self, instance: str, license: str) -> None:
        self.rejected.labels(instance, license).inc()

    def observe(self, state: InstanceState) -> None:
        used = state.usage()
        i = state.instance
        self.in_use.labels(i, "standard").set(used.standard)
        self.in_use.labels(i, "premium").set(used.premium)
        self.ports.labels(i, "ivr").set(state.ports.ivr)
        self.ports.labels(i, "outbound").set(state.ports.outbound_ports)
        self.ports.labels(i, "outbound_seats").set(state.ports.outbound_seats)
        ent = state.limits.effective
        if ent is not None:
            self.entitled.labels(i, "standard").set(ent.standard)
            self.entitled.labels(i, "premium").set(ent.premium)
            self.entitled.labels(i, "ivr_ports").set(ent.ivr_ports)


def _delivery(event: Any) -> Delivery:
    m = event.message
    return Delivery(
        m.topic, m.partition, m.offset, m.key, m.value, tuple(m.headers or ()), int((m.timestamp or 0) * 1000)
    )


async def run(
    settings: ConsumptionSettings, stop: asyncio.Event, *, ready: Callable[[int], None] | None = None
) -> None:
    """Run the consumption computer until `stop` is set."""
    rules = settings.rules()
    async with service_database(settings, settings.schema_name, MIGRATIONS) as db:
        registry = CollectorRegistry()
        runtime_metrics = RuntimeMetrics(registry)
        metrics = ConsumptionMetrics(registry)
        handler = ConsumptionHandler(rules, on_commit=metrics.observe, on_reject=metrics.rejected_one)
        processor = RecordProcessor(
            service=SERVICE,
            topics=TOPICS,
            prefix=settings.topic_prefix,
            db=db,
            handler=handler,
            metrics=runtime_metrics,
            stop=stop,
            on_failure=handler.on_failure,
        )
        async with EventProducer(
            settings.kafka_bootstrap_servers, settings.topic_prefix, client_id=SERVICE
        ) as producer:
            app = build_app(settings, db, processor, handler, registry)
            relay = asyncio.create_task(relay_outbox(db, producer, stop))
            await app.start()
            log.info("consumption computer started", extra={"http_port": settings.http_port})
            if ready is not None:
                ready(settings.http_port)
            try:
                await stop.wait()
            finally:
                await app.stop()
                stop.set()
                await relay  # drains the outbox once more before returning


def data_dir(settings: ConsumptionSettings, app_id: str) -> str:
    """faust's data directory for the app, created (faust would create only its last level)."""
    path = settings.data_dir / app_id
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"CCXLIC_CONSUMPTION_DATA_DIR={str(settings.data_dir)!r}: cannot create {exc.filename}: {exc.strerror};"
            " point it at a directory this user can write"
        ) from None
    return str(path)


def build_app(
    settings: ConsumptionSettings,
    db: Database,
    processor: RecordProcessor,
    handler: ConsumptionHandler,
    registry: CollectorRegistry,
) -> faust.App:
    prefix = settings.topic_prefix
    app_id = f"{prefix}{settings.group_id}"
    app = faust.App(
        app_id,
        datadir=data_dir(settings, app_id),
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        store="memory://",
        autodiscover=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        web_enabled=True,
        web_host=settings.http_host,
        web_port=settings.http_port,
        web_in_thread=False,
        producer_acks=-1,
    )
    lock = asyncio.Lock()  # one writer: batches from different topics must not interleave on an instance's state

    def agent_for(name: str) -> Callable[[Any], AsyncIterator[None]]:
        async def handle(stream: Any) -> AsyncIterator[None]:
            async for events in stream.take_events(settings.batch_size, within=0.05):
                async with lock:
                    await processor.process_batch([_delivery(e) for e in events])
                yield None

        handle.__name__ = handle.__qualname__ = name  # faust keys agents by name: one per topic
        return handle

    for topic in INPUTS:
        source = app.topic(topic_name(topic, prefix), value_serializer="raw", key_serializer="raw")
        name = f"on_{topic.name.replace('.', '_').replace('-', '_')}"
        app.agent(source, name=name)(agent_for(name))

    @app.timer(10.0)
    async def close_intervals() -> None:
        """Close intervals whose end + lateness the watermark has passed but no batch has closed yet (normally the
        input that moves the watermark closes them in its own transaction; this catches e.g. a shorter
        CCXLIC_LATENESS_SECONDS after a restart)."""
        for instance in handler.due():
            try:
                async with lock, db.transaction() as tx:
                    await handler.touch(tx, instance)
            except TRANSIENT_ERRORS as exc:  # e.g. another worker owns the instance now: it closes them itself
                log.info("closing intervals deferred", extra={"instance": instance, "error": repr(exc)})

    async def kafka_ready() -> bool:
        """Ready once the consumer group has given this worker its partitions."""
        try:
            return bool(app.consumer.assignment())
        except Exception:  # not started yet
            return False

    ready_checks = {"database": db.ping, "kafka": kafka_ready}

    def _routes(web_server: Any) -> None:
        router = web_server.web_app.router
        add_ops_routes(router, registry, ready_checks)
        router.add_get("/v1/instances/{instance}/usage", usage_view)
        router.add_get("/v1/instances/{instance}/intervals", intervals_view)

    app.on_webserver_init = _routes  # faust's hook: called with its web server before it starts serving

    async def usage_view(request: web.Request) -> web.Response:
        try:
            instance = instance_param(request)
        except BadRequest as exc:
            return problem(400, str(exc))
        async with db.pool.acquire() as conn:
            found = await handler.store.load(conn, instance)  # not the cache: another worker may own it
        if found is None:
            return problem(404, f"no usage known for instance {instance!r}")
        return json_response(usage_body(found[0]))

    async def intervals_view(request: web.Request) -> web.Response:
        try:
            instance = instance_param(request)
            since = time_param(request, "from", datetime(1970, 1, 1, tzinfo=UTC))
            until = time_param(request, "to", datetime(9999, 1, 1, tzinfo=UTC))
        except BadRequest as exc:
            return problem(400, str(exc))
        if until <= since:
            return problem(400, "`to` must be after `from`")
        async with db.pool.acquire() as conn:
            reports = await handler.store.reports(conn, instance, since, until)
        return json_response({"instance": instance, "reports": reports})

    return app


def usage_body(state: InstanceState) -> dict[str, Any]:
    used, room, short = state.usage(), state.headroom(), state.deficit()
    ent = state.limits.effective
    return {
        "instance": state.instance,
        "as_of": state.watermark,
        "in_use": {
            "standard": used.standard,
            "premium": used.premium,
            "ivr_ports": state.ports.ivr,
            "outbound_ports": state.ports.outbound_ports,
            "outbound_seats": state.ports.outbound_seats,
        },
        "entitled": None
        if ent is None
        else {"standard": ent.standard, "premium": ent.premium, "ivr_ports": ent.ivr_ports},
        "mode": "evaluation" if ent is None else ("reservation" if state.limits.reservation else "entitlements"),
        "license_control": state.limits.controlled,
        "headroom": {"standard": room.standard, "premium": room.premium, "ivr_ports": room.ivr_ports},
        "deficit": {"standard": short.standard, "premium": short.premium, "ivr_ports": short.ivr_ports},
        "agents": [
            {"agent_id": agent_id, "license": a.license, "why": a.why, "since": a.last[0]}
            for agent_id, a in sorted(state.agents.items())
            if a.signed_in
        ],
    }
