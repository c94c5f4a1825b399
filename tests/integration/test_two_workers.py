"""Two workers of one consumer group on one PostgreSQL schema, through the runtime's RecordProcessor: a worker whose
cached copy of an instance is stale (another worker handled a `*` tick for it, or had its partition before a
rebalance) has its save refused (ConcurrentUpdate), and the runtime retries the batch on fresh state."""

from __future__ import annotations

import asyncio

import pytest
from ccxlic_compliance.app import MIGRATIONS
from ccxlic_compliance.handler import ComplianceHandler
from ccxlic_compliance.machine import Rules, replay
from ccxlic_contract import Event, encode
from ccxlic_contract.topics import TOPICS, topic_for
from ccxlic_runtime.consumer import Delivery, RecordProcessor
from ccxlic_runtime.db import Database, migrate
from ccxlic_runtime.metrics import RuntimeMetrics
from ccxlic_testing.build import Build
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
