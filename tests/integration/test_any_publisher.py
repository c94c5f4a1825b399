"""Any publisher is heard, with its client's defaults: the consumption computer on the real broker, fed sign-ins by kcat
and by confluent-kafka-python (librdkafka's default partitioner, consistent_random, is not Kafka's murmur2: most of an
instance's records land on other partitions than its subject's) and by a publisher that sends no key. Every one is
counted (a misplaced one is published again keyed by its subject and read back on the right partition); none is
dead-lettered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
import pytest_asyncio
from ccxlic_consumption.app import run
from ccxlic_consumption.settings import ConsumptionSettings
from ccxlic_contract import encode
from ccxlic_contract.topics import AGENT_ACTIVITY
from ccxlic_testing.build import Build
from ccxlic_testing.plugin import InProcess, Stack, drop_schema, service_settings
from ccxlic_testing.publishers import kcat_publish, librdkafka_config

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest_asyncio.fixture
async def consumption(
    stack: Stack, topic_prefix: str, pg_schema: str, contract_topics: dict[str, str]
) -> AsyncIterator[int]:
    settings = service_settings(ConsumptionSettings, stack, topic_prefix, pg_schema)
    service = InProcess(run, settings)
    port = await service.started()
    yield port
    await service.stopped()
    await drop_schema(settings.database_url, settings.schema_name)


def _confluent_publish(stack: Stack, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """confluent-kafka-python's Producer with its defaults (partitioner consistent_random)."""
    from confluent_kafka import Producer

    producer = Producer(librdkafka_config(stack.broker))
    for key, value in records:
        producer.produce(topic, value=value, key=key, headers=[("content-type", b"application/cloudevents+json")])
    assert producer.flush(30) == 0


async def test_kcat_confluent_kafka_and_keyless_publishers_at_their_defaults_are_all_counted(
    consumption: int, stack: Stack, contract_topics: dict[str, str], instance_id: str
) -> None:
    activity = contract_topics[AGENT_ACTIVITY.name]
    b = Build(instance_id)
    key = instance_id.encode()
    signs = [b.sign_in(T0 + n * timedelta(seconds=1), f"a{n}", "inbound_voice") for n in range(24)]
    for e in signs[:10]:  # kcat, keyed, at librdkafka's default partitioner
        kcat_publish(stack.broker, activity, encode(e), key=key)
    for e in signs[10:16]:  # kcat with no key at all
        kcat_publish(stack.broker, activity, encode(e))
    _confluent_publish(stack, activity, [(key, encode(e)) for e in signs[16:]])

    base = f"http://127.0.0.1:{consumption}"
    usage = None
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            async with http.get(f"{base}/v1/instances/{instance_id}/usage") as r:
                usage = await r.json() if r.status == 200 else None
            if usage is not None and usage["in_use"]["standard"] == 24:
                break
            await asyncio.sleep(0.2)
        async with http.get(f"{base}/metrics") as r:
            metrics = await r.text()
    assert usage is not None and usage["in_use"]["standard"] == 24, usage
    rerouted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("ccxlic_events_rerouted_total{") and activity in line
    )
    dead = [line for line in metrics.splitlines() if line.startswith("ccxlic_events_dead_lettered_total{")]
    assert rerouted > 0 and not any(activity in line and not line.endswith(" 0.0") for line in dead)
