"""The whole chain (consumption computer -> compliance -> alerting) in this process, for integration tests: any
number of workers per service, one topic prefix and schema per service, and a precise way to wait until it is
done: every consumer group has committed up to the end of its inputs and every outbox is empty."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from ccxlic_alerting.app import INPUTS as ALERTING_INPUTS
from ccxlic_alerting.app import run as run_alerting
from ccxlic_alerting.settings import AlertingSettings
from ccxlic_compliance.app import INPUTS as COMPLIANCE_INPUTS
from ccxlic_compliance.app import run as run_compliance
from ccxlic_compliance.settings import ComplianceSettings
from ccxlic_consumption.app import INPUTS as CONSUMPTION_INPUTS
from ccxlic_consumption.app import run as run_consumption
from ccxlic_consumption.settings import ConsumptionSettings
from ccxlic_contract import Event, decode_message
from ccxlic_contract.topics import ALERTS, COMPLIANCE, CONSUMPTION, Topic
from ccxlic_runtime.kafka import topic_name
from ccxlic_runtime.settings import RuntimeSettings, load_settings
from ccxlic_testing.plugin import InProcess, Stack, drop_schema

SERVICES: dict[str, tuple[type[RuntimeSettings], Any, tuple[Topic, ...]]] = {
    "consumption": (ConsumptionSettings, run_consumption, CONSUMPTION_INPUTS),
    "compliance": (ComplianceSettings, run_compliance, COMPLIANCE_INPUTS),
    "alerting": (AlertingSettings, run_alerting, ALERTING_INPUTS),
}
OUTPUTS = {"consumption": CONSUMPTION, "compliance": COMPLIANCE, "alerting": ALERTS}


@dataclass
class Chain:
    stack: Stack
    prefix: str
    schema: str  # each service's schema is `<schema>_<service>`
    workers: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)
    running: list[InProcess] = field(default_factory=list)
    kafka: dict[str, dict[str, str]] = field(default_factory=dict)
    """A service's own Kafka settings (`kafka_sasl_username`, ...), over the stack's (its admin, under ACLs)."""

    def settings(self, service: str) -> RuntimeSettings:
        cls = SERVICES[service][0]
        given: dict[str, Any] = {
            **self.stack.kafka_settings(),
            **self.kafka.get(service, {}),
            "database_url": self.stack.database_url,
            "topic_prefix": self.prefix,
            "schema_name": f"{self.schema}_{service}",
            "group_id": f"ccxlic-{service}",
            "http_port": 0,
            **{k: v for k, v in self.overrides.items() if k in cls.model_fields},
        }
        return load_settings(cls, **given)

    async def start(self) -> None:
        for service, (_, run, _) in SERVICES.items():
            for _ in range(self.workers):
                worker = InProcess(run, self.settings(service))
                await worker.started()
                self.running.append(worker)

    async def stop(self) -> None:
        for worker in reversed(self.running):
            await worker.stopped()
        self.running.clear()

    async def drop(self) -> None:
        for service in SERVICES:
            await drop_schema(self.stack.database_url, f"{self.schema}_{service}")

    async def drained(self, timeout: float = 120) -> None:
        """Wait until every group has committed to the end of its inputs and every outbox is empty, three times in a
        row (what one stage publishes is the next one's input)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        calm = 0
        last: Any = None
        while loop.time() < deadline:
            behind = await self._behind()
            last = behind
            calm = calm + 1 if not behind else 0
            if calm >= 3:
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"the chain did not drain within {timeout} s: {last}")

    async def _partitions(self, admin: AIOKafkaAdminClient, topics: list[str]) -> list[TopicPartition]:
        described = await admin.describe_topics(topics)
        return [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]

    async def _behind(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        conn = await asyncpg.connect(self.stack.database_url)
        try:
            for service in SERVICES:
                n = await conn.fetchval(f'select count(*) from "{self.schema}_{service}".outbox')
                if n:
                    out[f"{service} outbox"] = n
        finally:
            await conn.close()
        admin = AIOKafkaAdminClient(**self.stack.broker.options())
        probe = AIOKafkaConsumer(**self.stack.broker.options())
        await admin.start()
        await probe.start()
        try:
            for service, (_, _, inputs) in SERVICES.items():
                committed = await admin.list_consumer_group_offsets(f"{self.prefix}ccxlic-{service}")
                tps = await self._partitions(admin, [topic_name(t, self.prefix) for t in inputs])
                ends = await probe.end_offsets(tps)
                lag = {}
                for tp, end in ends.items():
                    done = committed[tp].offset if tp in committed else 0
                    if end > done:
                        lag[f"{tp.topic}[{tp.partition}]"] = end - done
                if lag:
                    out[service] = lag
        finally:
            await probe.stop()
            await admin.close()
        return out

    async def outputs(self, service: str) -> dict[str, list[Event]]:
        """Everything `service` published, per instance, in order (one instance's events share a partition)."""
        topic = topic_name(OUTPUTS[service], self.prefix)
        admin = AIOKafkaAdminClient(**self.stack.broker.options())
        await admin.start()
        try:
            tps = await self._partitions(admin, [topic])
        finally:
            await admin.close()
        consumer = AIOKafkaConsumer(**self.stack.broker.options(), auto_offset_reset="earliest")
        await consumer.start()
        out: dict[str, list[Event]] = defaultdict(list)
        try:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            position = dict.fromkeys(tps, 0)
            while any(position[tp] < end for tp, end in ends.items()):
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    for rec in records:
                        event = decode_message(rec.value, tuple(rec.headers or ()))
                        out[event.subject].append(event)
                        position[tp] = rec.offset + 1
        finally:
            await consumer.stop()
        return dict(out)
