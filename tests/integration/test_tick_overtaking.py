"""A tick never overtakes the data written before it, however loaded the consumer is: the consumption computer on the
real broker, slowed (CCXLIC_TEST_BATCH_DELAY) and fed 20 scenarios at once, each a burst of 5 Standard sign-ins, then
3 Premium, then a tick past the interval's end on the clock topic, each step acknowledged before the next. The merge
goes past an empty partition only on an end offset asked of the broker after the tick arrived, so every interval's
first report already has all 8 agents: no first revision differs from the last."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from ccxlic_consumption.app import run
from ccxlic_consumption.settings import ConsumptionSettings
from ccxlic_contract.events import IntervalClosed
from ccxlic_contract.topics import CONSUMPTION
from ccxlic_runtime.kafka import EventProducer
from ccxlic_testing.build import Build
from ccxlic_testing.plugin import InProcess, ReadTopic, Stack, drop_schema, service_settings, wait_for_topic

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
    """Published in this order, each step acknowledged before the next: written before the tick."""
    await producer.publish_many([b.sign_in(T0 + k * M, f"s{k}", "inbound_voice") for k in range(5)])
    await producer.publish_many([b.sign_in(T0 + (5 + k) * M, f"p{k}", "chat") for k in range(3)])
    await producer.publish(b.tick(T0 + timedelta(hours=8, minutes=10)))


async def test_under_load_every_first_revision_of_an_interval_report_equals_its_last(
    slow_consumption: None,
    producer: EventProducer,
    read_topic: ReadTopic,
    contract_topics: dict[str, str],
    instance_id: str,
) -> None:
    instances = [f"{instance_id}-{n:02d}" for n in range(SCENARIOS)]
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
