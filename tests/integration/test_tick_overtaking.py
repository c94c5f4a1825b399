"""A tick never overtakes the data written before it, however loaded the consumer is: the consumption computer on the
real broker, slowed (CCXLIC_TEST_BATCH_DELAY) and fed 20 scenarios at once, each a burst of 5 Standard sign-ins, then
3 Premium, then a tick past the interval's end on the clock topic, each step acknowledged before the next. The merge
goes past an empty partition only on an end offset asked of the broker after the tick arrived, so every interval's
first report already has all 8 agents: no first revision differs from the last."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from ccxlic_consumption.app import run
from ccxlic_consumption.settings import ConsumptionSettings
from ccxlic_contract.events import IntervalClosed
from ccxlic_contract.topics import AGENT_ACTIVITY, CLOCK, CONSUMPTION
from ccxlic_runtime.db import Database
from ccxlic_runtime.kafka import EventProducer
from ccxlic_runtime.loop import ConsumerLoop
from ccxlic_runtime.metrics import RuntimeMetrics
from ccxlic_runtime.policy import RecordProcessor
from ccxlic_testing.build import Build
from ccxlic_testing.plugin import InProcess, ReadTopic, Stack, drop_schema, service_settings, wait_for_topic
from prometheus_client import CollectorRegistry

from tests.integration.test_foundation import Recorder

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
M = timedelta(minutes=1)
SCENARIOS = 20


@pytest_asyncio.fixture
async def slow_consumption(
    stack: Stack, topic_prefix: str, pg_schema: str, contract_topics: dict[str, str]
) -> AsyncIterator[None]:
    settings = service_settings(
        ConsumptionSettings, stack, topic_prefix, pg_schema, test_batch_delay=timedelta(milliseconds=150)
    )
    service = InProcess(run, settings)
    await service.started()
    yield
    await service.stopped()
    await drop_schema(settings.database_url, settings.schema_name)


async def _scenario(producer: EventProducer, b: Build) -> None:
    """Published in this order by one producer (sent in order, acknowledged together)."""
    await producer.publish_many(
        [
            *(b.sign_in(T0 + k * M, f"s{k}", "inbound_voice") for k in range(5)),
            *(b.sign_in(T0 + (5 + k) * M, f"p{k}", "chat") for k in range(3)),
            b.tick(T0 + timedelta(hours=8, minutes=10)),
        ]
    )


async def test_under_load_every_first_revision_of_an_interval_report_equals_its_last(
    slow_consumption: None,
    producer: EventProducer,
    read_topic: ReadTopic,
    contract_topics: dict[str, str],
    instance_id: str,
) -> None:
    instances = [f"{instance_id}-{n:02d}" for n in range(SCENARIOS)]
    # a backlog first, on every partition: the consumer is busy (and pauses full partitions) while the scenarios come
    noise = [Build(f"{instance_id}-noise-{n}") for n in range(12)]
    backlog = [
        nb.sign_in(T0 - timedelta(hours=1) + k * timedelta(seconds=1), f"n{k % 40}") for nb in noise for k in range(400)
    ]
    await producer.publish_many(backlog)
    await asyncio.gather(*(_scenario(producer, Build(i)) for i in instances))

    def reports(events: list[object]) -> dict[str, list[IntervalClosed]]:
        out: dict[str, list[IntervalClosed]] = {}
        for e in events:
            if isinstance(e, IntervalClosed) and e.subject in instances:
                out.setdefault(e.subject, []).append(e)
        return out

    await wait_for_topic(
        read_topic, contract_topics[CONSUMPTION.name], lambda o: len(reports(o)) == SCENARIOS, timeout=120
    )
    await asyncio.sleep(3)  # a late revision, had a tick overtaken anything, would follow within the second
    got = reports(await read_topic(contract_topics[CONSUMPTION.name], 10**6, timeout=5))
    first = {i: (r[0].data.revision, r[0].data.peak.standard, r[0].data.peak.premium) for i, r in got.items()}
    last = {i: (r[-1].data.peak.standard, r[-1].data.peak.premium) for i, r in got.items()}
    assert first == dict.fromkeys(instances, (1, 5, 3)), first
    assert last == dict.fromkeys(instances, (5, 3))


class LateFetch(ConsumerLoop):
    """A consumer whose fetches of one topic come late: its partitions stay paused while `late` is set (as a busy
    consumer's next fetch of a partition can come long after its last one)."""

    def __init__(self, *args: Any, late_topic: str, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.late_topic = late_topic
        self.late = asyncio.Event()

    async def _update(self, consumer: Any) -> None:
        await super()._update(consumer)
        late = [tp for tp in consumer.assignment() if tp.topic == self.late_topic]
        if self.late.is_set():
            consumer.pause(*late)
        else:
            consumer.resume(*late)


async def test_a_tick_waits_for_sign_ins_written_before_it_whose_fetch_comes_late(
    stack: Stack,
    db: Database,
    producer: EventProducer,
    contract_topics: dict[str, str],
    topic_prefix: str,
    group_id: str,
    instance_id: str,
) -> None:
    """The activity partition was caught up at its last fetch; then sign-ins are written to it and a tick to the
    clock. The tick arrives; the sign-ins' fetch comes a second later. The tick must wait for them: the last fetch's
    high watermark is older than the tick, the broker's end offset asked after the tick says 3 records wait."""
    await db.pool.execute("create table seen(n bigserial, event_id text primary key, offs bigint)")
    activity, clock = contract_topics[AGENT_ACTIVITY.name], contract_topics[CLOCK.name]
    processor = RecordProcessor(
        service="test",
        inputs=[AGENT_ACTIVITY, CLOCK],
        prefix=topic_prefix,
        db=db,
        app=Recorder(),
        metrics=RuntimeMetrics(CollectorRegistry()),
        stop=(stop := asyncio.Event()),
    )
    loop = LateFetch(processor, broker=stack.broker, group_id=group_id, topics=[activity, clock], late_topic=activity)
    task = asyncio.create_task(loop.run(stop))
    b = Build(instance_id)
    try:
        await producer.publish_many([b.sign_in(T0 - M, "early"), b.tick(T0 - M)])  # both partitions fetched once
        await _until(db, 2)
        loop.late.set()
        await asyncio.sleep(0.5)  # the activity partition is paused now: its next fetch comes late
        await producer.publish_many([b.sign_in(T0 + k * M, f"s{k}") for k in range(3)])
        await producer.publish(b.tick(T0 + timedelta(hours=9)))
        await asyncio.sleep(1.5)  # the tick is here; the sign-ins' fetch is not
        loop.late.clear()
        await _until(db, 6)
    finally:
        stop.set()
        await task
    order = [r["event_id"] for r in await db.fetch("select event_id from seen order by n")]
    assert order[2:] == [f"{instance_id}-{n}" for n in (3, 4, 5, 6)], order  # the sign-ins, then the tick


async def _until(db: Database, rows: int) -> None:
    for _ in range(300):
        if len(await db.fetch("select 1 from seen")) >= rows:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {rows} events handled")
