"""End to end: the three services as separate processes on the real stack. Agent sign-ins go in at one end;
usage, compliance and alerts come out, and a webhook receiver gets the notifications."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from ccxlic_contract.events import (
    AgentSignedIn,
    AgentSignedInData,
    AlertRaised,
    AlertResolved,
    ClockTicked,
    EntitlementsSet,
    EntitlementsSetData,
    InstanceRegistered,
    InstanceRegisteredData,
)
from ccxlic_contract.topics import ALERTS
from ccxlic_runtime.kafka import EventProducer
from ccxlic_testing.plugin import ReadTopic, Stack, drop_schema, free_port, wait_for_topic

pytestmark = pytest.mark.e2e
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
M = timedelta(minutes=1)
SERVICES = ("consumption", "compliance", "alerting")


class Pipeline:
    def __init__(self, ports: dict[str, int], webhook: list[dict[str, Any]]) -> None:
        self.ports = ports
        self.webhook = webhook

    async def get(self, service: str, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.ports[service]}{path}") as r:
            return r.status, await r.json()

    async def until(self, service: str, path: str, ok: Callable[[Any], bool], timeout: float = 60) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        body: Any = None
        while loop.time() < deadline:
            try:
                status, body = await self.get(service, path)
            except aiohttp.ClientError:
                status = 0
            if status == 200 and ok(body):
                return body
            await asyncio.sleep(0.3)
        raise AssertionError(f"{service} {path} never matched; last answer: {body}")


@pytest_asyncio.fixture
async def pipeline(
    stack: Stack, topic_prefix: str, pg_schema: str, contract_topics: dict[str, str]
) -> AsyncIterator[Pipeline]:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()

    ports = {s: free_port() for s in SERVICES}
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "DATABASE_URL": stack.database_url,
        "CCXLIC_TOPIC_PREFIX": topic_prefix,
        "CCXLIC_WEBHOOK_URLS": f"http://127.0.0.1:{hook_port}/hook",
        "CCXLIC_DELIVERY_BACKOFF_SECONDS": "0.2",
    }
    for s in SERVICES:
        env[f"CCXLIC_{s.upper()}_SCHEMA"] = f"{pg_schema}_{s}"
        env[f"CCXLIC_{s.upper()}_HTTP_PORT"] = str(ports[s])
    procs = {
        s: subprocess.Popen([sys.executable, "-m", f"ccxlic_{s}"], env=env, stderr=subprocess.DEVNULL) for s in SERVICES
    }
    p = Pipeline(ports, received)
    try:
        for s in SERVICES:
            await p.until(s, "/readyz", lambda b: b["ready"], 90)
        yield p
    finally:
        for proc in procs.values():
            proc.terminate()
        for s, proc in procs.items():
            assert proc.wait(30) == 0, f"{s} did not stop cleanly on SIGTERM"
        for s in SERVICES:
            await drop_schema(stack.database_url, f"{pg_schema}_{s}")
        await runner.cleanup()


def _env(cls: type, n: int, instance: str, t: datetime, data: Any) -> Any:
    return cls(id=f"{instance}-e2e-{n}", source="urn:ccx:test", time=t, subject=instance, data=data)


async def test_sign_ins_over_the_entitlements_walk_the_ooc_ladder_to_alerts_and_back(
    pipeline: Pipeline,
    producer: EventProducer,
    read_topic: ReadTopic,
    contract_topics: dict[str, str],
    instance_id: str,
) -> None:
    i = instance_id
    compliance = f"/v1/instances/{i}/compliance"
    await producer.publish_many(
        [
            _env(
                EntitlementsSet,
                1,
                i,
                T0 - 60 * M,
                EntitlementsSetData(standard_seats=10, premium_seats=10, ivr_ports=5),
            ),
            _env(InstanceRegistered, 2, i, T0 - 60 * M, InstanceRegisteredData(virtual_account="va-e2e")),
        ]
    )
    await pipeline.until("compliance", compliance, lambda b: b["authorization"] == "authorized")
    # 11 agents with chat: Premium 11 > 10 (spare Standard seats cannot cover Premium)
    await producer.publish_many(
        [
            _env(AgentSignedIn, 10 + k, i, T0 + k * M, AgentSignedInData(agent_id=f"a{k}", capabilities=("chat",)))
            for k in range(11)
        ]
    )
    usage = await pipeline.until("consumption", f"/v1/instances/{i}/usage", lambda b: b["in_use"]["premium"] == 11)
    assert usage["deficit"]["premium"] == 1
    state = await pipeline.until("compliance", compliance, lambda b: b["over_stage"] == "detected")
    assert state["deficit"]["premium"] == 1
    over_since = datetime.fromisoformat(state["over_since"].replace("Z", "+00:00"))

    await producer.publish(_env(ClockTicked, 30, "*", over_since + 50 * M, {}))
    state = await pipeline.until("compliance", compliance, lambda b: b["authorization"] == "out_of_compliance")
    assert state["ooc_since"] == (over_since + 45 * M).isoformat().replace("+00:00", "Z")

    await producer.publish(
        _env(
            EntitlementsSet,
            40,
            i,
            over_since + 55 * M,
            EntitlementsSetData(standard_seats=10, premium_seats=12, ivr_ports=5),
        )
    )
    await pipeline.until("compliance", compliance, lambda b: b["authorization"] == "authorized")

    def ladder(out: list[Any]) -> list[tuple[str, str]]:
        return [
            ("raised" if isinstance(e, AlertRaised) else "resolved", e.data.alert)
            for e in out
            if isinstance(e, AlertRaised | AlertResolved) and e.subject == i
        ]

    out = await wait_for_topic(read_topic, contract_topics[ALERTS.name], lambda o: len(ladder(o)) >= 6, 60)
    assert ladder(out) == [
        ("raised", "OutOfComplianceDetected"),
        ("raised", "OutOfComplianceImminent"),
        ("resolved", "OutOfComplianceDetected"),
        ("raised", "OutOfCompliance"),
        ("resolved", "OutOfComplianceImminent"),
        ("resolved", "OutOfCompliance"),
    ]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while len(pipeline.webhook) < 6 and loop.time() < deadline:
        await asyncio.sleep(0.2)
    assert sorted((h["status"], h["commonLabels"]["alertname"]) for h in pipeline.webhook) == sorted(
        [
            ("firing", "OutOfComplianceDetected"),
            ("firing", "OutOfComplianceImminent"),
            ("firing", "OutOfCompliance"),
            ("resolved", "OutOfComplianceDetected"),
            ("resolved", "OutOfComplianceImminent"),
            ("resolved", "OutOfCompliance"),
        ]
    )
    _, alerts = await pipeline.get("alerting", f"/v1/alerts?instance={i}&state=resolved")
    assert len(alerts["alerts"]) == 3
    _, history = await pipeline.get("compliance", f"{compliance}/history")
    assert "Premium 11 > 10" in " ".join(t["evidence"] for t in history["transitions"])
