"""Two workers of one consumer group on one PostgreSQL schema, through the runtime's RecordProcessor: a worker whose
cached copy of an instance is stale (another worker handled a `*` tick for it, or had its partition before a
rebalance) has its save refused (ConcurrentUpdate), and the runtime retries the batch on fresh state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from ccxlic_compliance.app import MIGRATIONS, run
from ccxlic_compliance.handler import ComplianceHandler
from ccxlic_compliance.machine import Rules, replay
from ccxlic_compliance.settings import ComplianceSettings
from ccxlic_contract import Event, encode
from ccxlic_contract.topics import TOPICS, topic_for
from ccxlic_runtime.consumer import Delivery, RecordProcessor
from ccxlic_runtime.db import Database, migrate
from ccxlic_runtime.kafka import EventProducer
from ccxlic_runtime.metrics import RuntimeMetrics
from ccxlic_testing.build import Build
from ccxlic_testing.plugin import InProcess, Stack, drop_schema, service_settings, until_ready
from prometheus_client import CollectorRegistry

from tests.unit.compliance.test_handler import T0, M, over_consumption

pytestmark = pytest.mark.integration


def worker(db: Database, name: str) -> tuple[RecordProcessor, RuntimeMetrics]:
    metrics = RuntimeMetrics(CollectorRegistry())
    processor = RecordProcessor(
        service=f"compliance-{name}",
        topics=TOPICS,
        prefix="",
        db=db,
        handler=ComplianceHandler(Rules()),
        metrics=metrics,
        stop=asyncio.Event(),
    )
    return processor, metrics


def delivered(events: list[Event]) -> list[Delivery]:
    return [Delivery(topic_for(e.type).name, 0, n, e.subject.encode(), encode(e), (), 0) for n, e in enumerate(events)]


async def test_a_stale_worker_retries_on_what_the_other_one_wrote(db: Database, instance_id: str) -> None:
    await migrate(db.pool, db.schema, MIGRATIONS)
    (a, a_metrics), (b, _) = worker(db, "a"), worker(db, "b")
    e = Build(instance_id)
    inputs = over_consumption(e)
    tick, recovered = e.tick(T0 + 40 * M, every_instance=True), e.usage(T0 + 41 * M, 10, 0)
    await a.process_batch(delivered(inputs))
    await b.process_batch(delivered([tick]))  # b owns the clock partition: it handles the tick for a's instance
    await a.process_batch(delivered([recovered]))
    assert a_metrics.retries.labels("compliance-a")._value.get() == 1
    _, expected = replay(instance_id, [*inputs, tick, recovered], Rules())
    rows = await db.fetch("select seq, at, cause_id from transitions where instance = $1 order by seq", instance_id)
    assert [(r["seq"], r["at"], r["cause_id"]) for r in rows] == [
        (n, t.at, t.cause_id) for n, t in enumerate(expected, 1)
    ]
    published = await db.fetch("select count(*) as n from outbox")
    assert published[0]["n"] == len(expected)  # every transition published once, none twice


# ---------------------------------------------------------------- two compliance processes' worth, on the broker


@pytest.fixture
def compliance_settings(stack: Stack, topic_prefix: str, pg_schema: str) -> ComplianceSettings:
    return service_settings(ComplianceSettings, stack, topic_prefix, pg_schema)


async def _state(port: int, instance: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/v1/instances/{instance}/compliance") as r,
    ):
        return await r.json() if r.status == 200 else None


async def _until(port: int, instances: list[str], check: Callable[[Any], bool], what: str) -> None:
    for _ in range(300):
        states = [await _state(port, i) for i in instances]
        if all(s is not None and check(s) for s in states):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not every instance reached {what}: {states}")


async def test_two_workers_in_one_group_keep_one_exact_history_per_instance(
    compliance_settings: ComplianceSettings,
    contract_topics: dict[str, str],
    producer: EventProducer,
    instance_id: str,
) -> None:
    """Two workers share the partitions; the one holding the clock partition handles a `*` tick for every instance,
    including the other's, which then finds its cached copies stale. Every instance still ends with exactly the
    history of its inputs replayed in order, and either worker's HTTP view answers for every instance."""
    a, b = InProcess(run, compliance_settings), InProcess(run, compliance_settings)
    try:
        ports = [await a.started(), await b.started()]
        for port in ports:
            await until_ready(f"http://127.0.0.1:{port}")
        builds = [Build(f"{instance_id}-{n}") for n in range(6)]  # spread over the 3 partitions
        inputs: dict[str, list[Event]] = {x.instance: [] for x in builds}

        async def each(make: Callable[[Build], Event], check: Callable[[Any], bool], what: str) -> None:
            for x in builds:
                event = make(x)
                inputs[x.instance].append(event)
                await producer.publish(event)
            await _until(ports[0], [x.instance for x in builds], check, what)

        await each(lambda x: x.entitle(T0, 10, 0, 0), lambda s: True, "entitled")
        await each(lambda x: x.register(T0 + M), lambda s: s["authorization"] == "authorized", "registered")
        await each(lambda x: x.usage(T0 + 2 * M, 11, 0), lambda s: s["over_stage"] == "detected", "over")
        tick = builds[0].tick(T0 + 50 * M, every_instance=True)
        for x in builds:
            inputs[x.instance].append(tick)
        await producer.publish(tick)
        await _until(ports[1], [x.instance for x in builds], lambda s: s["authorization"] == "out_of_compliance", "OOC")
        await each(lambda x: x.usage(T0 + 60 * M, 10, 0), lambda s: s["deficit"]["standard"] == 0, "recovered")
        for x in builds:
            _, expected = replay(x.instance, inputs[x.instance], Rules())
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{ports[1]}/v1/instances/{x.instance}/compliance/history"
                async with http.get(url) as r:
                    history = (await r.json())["transitions"]
            assert [(h["seq"], h["cause"]["id"], h["state"]["authorization"]) for h in history] == [
                (n, t.cause_id, t.view.authorization) for n, t in enumerate(expected, 1)
            ], x.instance
    finally:
        await a.stopped()
        await b.stopped()
        await drop_schema(compliance_settings.database_url, compliance_settings.schema_name)
