"""Running a service process: the entry point, JSON logs, the event loop, graceful shutdown on SIGTERM / Ctrl-C,
and the parts every service starts the same way (its database, and for aiokafka services the whole loop)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from importlib.resources.abc import Traversable
from typing import Any, TypeVar

import asyncpg
import uvloop
from aiohttp import web
from ccxlic_contract import Topic
from ccxlic_contract.access import PROGRAMS
from prometheus_client import CollectorRegistry

from ccxlic_runtime.db import Database, Relay, create_pool, migrate, prune_processed
from ccxlic_runtime.http import OpsServer, ops_app
from ccxlic_runtime.instances import Instances
from ccxlic_runtime.kafka import (
    Broker,
    EventProducer,
    check_co_partitioned,
    ensure_contract_topics,
    topic_name,
    wait_for_kafka,
)
from ccxlic_runtime.logs import configure_logging
from ccxlic_runtime.loop import ConsumerLoop
from ccxlic_runtime.metrics import RuntimeMetrics
from ccxlic_runtime.policy import RecordProcessor
from ccxlic_runtime.settings import ConfigError, RuntimeSettings, load_settings

log = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD = 50_000


def run_until_signalled(
    main: Callable[[asyncio.Event], Awaitable[None]], *, service: str, log_level: str, event_loop: str = "asyncio"
) -> int:
    """Run `main(stop)` until it returns, on `event_loop` ("uvloop" or "asyncio"); SIGTERM or SIGINT sets `stop`
    so it can finish its work and close."""
    configure_logging(service, log_level)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    # A service keeps many long-lived objects (the cached states) and allocates many short-lived ones per record;
    # Python's default young-generation threshold (700 allocations) then collects every few records. 50,000 cut
    # the consumption computer's CPU per event by a tenth in B1 (bench/README), for ~10 MB more RSS.
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    factory = uvloop.new_event_loop if event_loop == "uvloop" else None
    try:
        with asyncio.Runner(loop_factory=factory) as runner_:
            runner_.run(runner())
    except Exception as exc:
        log.exception("service stopped on an error")
        print(f"{service}: error: {exc}", file=sys.stderr)
        return 1
    log.info("stopped")
    return 0


S = TypeVar("S", bound=RuntimeSettings)


def main_for(settings_cls: type[S], run: Callable[[S, asyncio.Event], Awaitable[None]], *, service: str) -> int:
    """A service's `python -m` entry point: settings from the environment (a bad one exits 2 naming the
    variable), then `run(settings, stop)` until SIGTERM or Ctrl-C."""
    try:
        settings = load_settings(settings_cls)
    except ConfigError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        return 2
    return run_until_signalled(
        lambda stop: run(settings, stop), service=service, log_level=settings.log_level, event_loop=settings.event_loop
    )


@asynccontextmanager
async def service_database(
    settings: RuntimeSettings, program: str, schema: str, *migrations: Traversable
) -> AsyncIterator[Database]:
    """What every service does first: wait for Kafka, create the topics it reads and writes (`PROGRAMS[program]`)
    unless they exist, open its pool on its schema and apply its migrations. Yields its Database; closes the pool on
    the way out."""
    await wait_for_kafka(Broker.of(settings))
    await ensure_contract_topics(settings, PROGRAMS[program].topics)
    pool = await create_pool(settings.database_url, schema, max_size=settings.db_pool_size)
    pruner: asyncio.Task[None] | None = None
    try:
        await migrate(pool, schema, *migrations)
        db = Database(pool, schema, settings.topic_prefix)
        if settings.dedup_retention:
            pruner = asyncio.create_task(_prune_hourly(db, settings.dedup_retention))
        yield db
    finally:
        if pruner is not None:
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruner
        await pool.close()


async def _prune_hourly(db: Database, retention: timedelta, every: float = 3600.0) -> None:
    """CCXLIC_DEDUP_RETENTION: delete old dedup records now and then every hour. Supervised: whatever a round raises
    (the database away, or a bug), it is logged and the next round comes; the task ends only when cancelled."""
    while True:
        try:
            deleted = await prune_processed(db, retention)
            log.info("pruned dedup records", extra={"deleted": deleted, "older_than_s": retention.total_seconds()})
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("pruning dedup records failed; trying again in an hour", extra={"error": repr(exc)})
        except Exception:
            log.exception("pruning dedup records raised; trying again in an hour")
        await asyncio.sleep(every)


async def run_service(
    *,
    service: str,
    settings: RuntimeSettings,
    db: Database,
    inputs: Sequence[Topic],
    group_id: str,
    app: Instances[Any, Any, Any],
    registry: CollectorRegistry,
    http_port: int,
    routes: Callable[[web.Application], None],
    stop: asyncio.Event,
    tasks: Sequence[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = (),
    ready: Callable[[int], None] | None = None,
    max_skew: timedelta | None = None,
    reroute: Topic | None = None,
) -> None:
    """A service: the consumer loop (event-time merge + the error policy) feeding `app`, the outbox relay, the HTTP
    server (ops routes + the service's `routes`) and any extra `tasks`, until `stop` is set or one of them fails."""
    await check_co_partitioned(Broker.of(settings), [topic_name(t, settings.topic_prefix) for t in inputs])
    metrics = RuntimeMetrics(registry)
    loop: ConsumerLoop | None = None

    def partitions(topic: str) -> int | None:
        return loop.partitions(topic) if loop is not None else None

    processor = RecordProcessor(
        service=service,
        inputs=inputs,
        prefix=settings.topic_prefix,
        db=db,
        app=app,
        metrics=metrics,
        stop=stop,
        partitions=partitions,
        max_skew=max_skew,
        reroute=reroute,
        hold=settings.test_batch_delay.total_seconds(),
    )
    loop = ConsumerLoop(
        processor,
        broker=Broker.of(settings),
        group_id=f"{settings.topic_prefix}{group_id}",
        topics=[topic_name(t, settings.topic_prefix) for t in inputs],
        batch=settings.batch_size,
        on_assign=app.forget,
    )
    # linger 0: the relay hands the producer a whole batch of rows at once, so waiting for more only adds latency
    async with EventProducer(Broker.of(settings), settings.topic_prefix, client_id=service, linger_ms=0) as producer:
        relay = Relay(
            db,
            producer,
            on_failure=metrics.relay_failures.labels(service).inc,
            on_published=metrics.published.labels(service).inc,
        )
        consuming = loop

        async def kafka_ready() -> bool:
            return consuming.ready.is_set()

        async def consumer_progressing() -> bool | str:
            if processor.retrying_since is not None:
                return f"retrying a batch since {time.monotonic() - processor.retrying_since:.0f} s: {processor.retrying_reason}"
            return consuming.stalled() or True

        async def relay_publishing() -> bool | str:
            if relay.failing_since is not None:
                return f"failing: {relay.failure}"
            return True

        checks = {
            "database": db.ping,
            "kafka": kafka_ready,
            "consumer": consumer_progressing,
            "relay": relay_publishing,
        }
        app_http = ops_app(registry, checks)
        routes(app_http)
        server = OpsServer(app_http, settings.http_host, http_port)
        await server.start()
        running = {
            asyncio.create_task(loop.run(stop)),
            asyncio.create_task(relay.run(stop)),
            *(asyncio.create_task(t(stop)) for t in tasks),
        }
        log.info(f"{service} started", extra={"http_port": server.port})
        if ready is not None:
            ready(server.port)
        try:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a crashed loop is an error of the service, not a quiet stop
        finally:
            stop.set()
            await asyncio.gather(*running, return_exceptions=True)
            await server.stop()
