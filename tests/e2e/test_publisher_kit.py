"""What a publishing team's integration test does with ccxlic_testing.containers, through its public API only: start
ccx-licensing, publish its own CloudEvent with its own Kafka client, and read the result over HTTP. There is no
Docker engine here, so the module runs on the local stack with the services as processes."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from ccxlic_testing.containers import CcxLicensing


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


async def until(url: str, ok: Any, timeout: float = 30) -> Any:
    body = None
    for _ in range(int(timeout / 0.2)):
        status, body = await asyncio.to_thread(get, url)
        if status == 200 and ok(body):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never matched; last: {body}")


async def test_a_publisher_signs_an_agent_in_and_sees_it_counted_and_judged() -> None:
    instance = f"pub-{uuid.uuid4().hex[:8]}"
    with CcxLicensing() as ccx:
        assert ccx.mode == "local"  # no Docker engine answers on this machine
        sign_in = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "urn:publisher:roster-sync",
            "type": "ccx.agent.signed_in",
            "subject": instance,
            "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "data": {"agent_id": "agent-1", "capabilities": ["inbound_voice", "chat"]},
        }
        producer = AIOKafkaProducer(**ccx.kafka_options())
        await producer.start()
        try:
            await producer.send_and_wait(
                ccx.topic("ccx.agent-activity"),
                json.dumps(sign_in).encode(),
                key=instance.encode(),
                headers=[("content-type", ccx.CONTENT_TYPE.encode())],
            )
        finally:
            await producer.stop()
        usage = await until(
            f"{ccx.url('consumption')}/v1/instances/{instance}/usage", lambda u: u["in_use"]["premium"] == 1
        )
        assert usage["in_use"]["standard"] == 0  # chat needs Premium
        compliance = await until(f"{ccx.url('compliance')}/v1/instances/{instance}/compliance", lambda c: True)
        assert compliance["authorization"] == "evaluation"
        assert ccx.kafka_env()["CCXLIC_TOPIC_PREFIX"] == ccx.topic("ccx.agent-activity").removesuffix(
            "ccx.agent-activity"
        )
        prefix = ccx.topic("ccx.agent-activity").removesuffix("ccx.agent-activity")
        options = ccx.kafka_options()
        with pytest.raises(ValueError, match="not a topic of the contract"):
            ccx.topic("agent-activity")
        with pytest.raises(KeyError, match="agent is not running here"):
            ccx.url("agent")
    # stopped: its services are gone and its topics deleted
    with pytest.raises(RuntimeError, match="not started"):
        ccx.kafka_options()
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        for _ in range(100):
            if not any(t.startswith(prefix) for t in await admin.list_topics()):
                break
            await asyncio.sleep(0.1)
        assert not any(t.startswith(prefix) for t in await admin.list_topics())
    finally:
        await admin.close()


def test_bad_arguments_are_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="unknown services \\['billing'\\]"):
        CcxLicensing(services=["consumption", "billing"])
    with pytest.raises(ValueError, match="at least one"):
        CcxLicensing(services=[])
