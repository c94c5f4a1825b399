"""The consumption computer on real Kafka and PostgreSQL: inputs published, outputs read back from the broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from ccxlic_consumption.app import run
from ccxlic_consumption.settings import ConsumptionSettings
from ccxlic_contract import Event
from ccxlic_contract.events import (
    AgentRoster,
    AgentRosterData,
    AgentSignedIn,
    AgentSignedInData,
    AgentSignedOut,
    AgentSignedOutData,
    ClockTicked,
    ConsumptionChanged,
    EntitlementsSet,
    EntitlementsSetData,
    InstanceRegistered,
    InstanceRegisteredData,
    IntervalClosed,
    RosterAgent,
    SignInRejected,
)
from ccxlic_contract.topics import CONSUMPTION
from ccxlic_runtime.kafka import EventProducer
from ccxlic_testing.plugin import (
    InProcess,
    ReadTopic,
    Stack,
    drop_schema,
    free_port,
    service_settings,
    until_ready,
    wait_for_topic,
)

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class Inputs:
    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.n = 0

    def _env(self, cls: type, t: datetime, data: Any, id: str | None = None) -> Event:
        self.n += 1
        return cls(id=id or f"{self.instance}-{self.n}", source="urn:test", time=t, subject=self.instance, data=data)  # type: ignore[no-any-return]

    def sign_in(self, agent: str, minute: float, *caps: str, supervisor: bool = False, id: str | None = None) -> Event:
        data = AgentSignedInData(agent_id=agent, capabilities=caps, supervisor=supervisor)  # type: ignore[arg-type]
        return self._env(AgentSignedIn, T0 + timedelta(minutes=minute), data, id)

    def sign_out(self, agent: str, minute: float) -> Event:
        return self._env(AgentSignedOut, T0 + timedelta(minutes=minute), AgentSignedOutData(agent_id=agent))

    def entitle(self, standard: int, premium: int, overage: bool) -> Event:
        data = EntitlementsSetData(
            standard_seats=standard, premium_seats=premium, ivr_ports=10, overage_allowed=overage
        )
        return self._env(EntitlementsSet, T0 - timedelta(hours=1), data)

    def register(self) -> Event:
        data = InstanceRegisteredData(virtual_account="va-test")
        return self._env(InstanceRegistered, T0 - timedelta(hours=1), data)

    def roster(self, minute: float, *agents: str) -> Event:
        data = AgentRosterData(agents=tuple(RosterAgent(agent_id=a) for a in agents))
        return self._env(AgentRoster, T0 + timedelta(minutes=minute), data)

    def tick(self, minute: float) -> Event:
        return self._env(ClockTicked, T0 + timedelta(minutes=minute), {})


@pytest.fixture
def settings(stack: Stack, topic_prefix: str, pg_schema: str) -> ConsumptionSettings:
    return service_settings(ConsumptionSettings, stack, topic_prefix, pg_schema)


@pytest_asyncio.fixture
async def service(settings: ConsumptionSettings, contract_topics: dict[str, str]) -> AsyncIterator[int]:
    """The consumption computer running in this process; yields its HTTP port."""
    service = InProcess(run, settings)
    yield await service.started()
    await service.stopped()
    await _drop_schema(settings)


async def _drop_schema(settings: ConsumptionSettings) -> None:
    await drop_schema(settings.database_url, settings.schema_name)


async def _outputs(
    read_topic: ReadTopic, topics: dict[str, str], until: Callable[[list[Event]], bool], timeout: float = 30
) -> list[Event]:
    return await wait_for_topic(read_topic, topics[CONSUMPTION.name], until, timeout)


def _last_changed(events: list[Event]) -> ConsumptionChanged | None:
    """The latest consumption.changed: all of an instance's outputs share its key, so Kafka keeps their order."""
    changed = [e for e in events if isinstance(e, ConsumptionChanged)]
    return changed[-1] if changed else None


async def _until_usage(port: int, instance: str, ok: Callable[[dict[str, Any]], bool], timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    while loop.time() < deadline:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/v1/instances/{instance}/usage") as r,
        ):
            last = await r.json() if r.status == 200 else r.status
        if isinstance(last, dict) and ok(last):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"usage never matched; last answer: {last}")


async def _usage(port: int, instance: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/v1/instances/{instance}/usage") as r:
        assert r.status == 200, await r.text()
        return await r.json()  # type: ignore[no-any-return]


async def test_license_control_worked_example_and_rejections(
    service: int, producer: EventProducer, contract_topics: dict[str, str], read_topic: ReadTopic, instance_id: str
) -> None:
    inputs = Inputs(instance_id)
    # Entitlements travel on their own topic: wait until they apply before signing agents in.
    await producer.publish_many([inputs.entitle(40, 10, overage=False), inputs.register()])  # Control: registered
    await _outputs(
        read_topic, contract_topics, lambda o: (c := _last_changed(o)) is not None and c.data.headroom.premium == 10
    )
    events = [inputs.sign_in(f"p{i}", 1 + i, "email") for i in range(5)]
    events += [inputs.sign_in(f"s{i}", 10 + i, "inbound_voice") for i in range(46)]
    events += [inputs.sign_in("sup", 60, supervisor=True)]
    await producer.publish_many(events)

    def done(out: list[Event]) -> bool:
        last = _last_changed(out)
        return sum(isinstance(e, SignInRejected) for e in out) == 2 and last is not None and last.data.standard == 45

    out = await _outputs(read_topic, contract_topics, done)
    rejected = sorted((e.data.agent_id, e.data.license) for e in out if isinstance(e, SignInRejected))
    assert rejected == [("s45", "standard"), ("sup", "premium")]
    reason = next(e for e in out if isinstance(e, SignInRejected)).data.reason
    assert "License Control" in reason
    last = _last_changed(out)
    assert last is not None
    assert (last.data.premium, last.data.standard) == (5, 45)
    assert (last.data.headroom.premium, last.data.headroom.standard) == (0, 0)
    usage = await _usage(service, instance_id)
    assert usage["in_use"]["premium"] == 5 and usage["license_control"] is True
    assert {"agent_id": "p0", "license": "premium", "why": "email"}.items() <= usage["agents"][0].items()


async def test_duplicates_out_of_order_roster_close_and_revision(
    service: int, producer: EventProducer, contract_topics: dict[str, str], read_topic: ReadTopic, instance_id: str
) -> None:
    inputs = Inputs(instance_id)
    a_in = inputs.sign_in("a", 0, "chat")
    events = [
        inputs.sign_in("b", 30),
        a_in,
        a_in,  # duplicate id
        inputs.sign_out("b", 20),  # arrives after the later sign-in of b: stale for the live state
        inputs.roster(60, "a", "c"),
    ]
    # the tick that closes [08:00, 16:00) goes on another topic, right behind the activity: the merge by event time
    # handles the activity first (the tick does not overtake it), so this walk has exactly one first report
    await producer.publish_many(events)
    await producer.publish(inputs.tick(8 * 60 + 5))

    def closed(out: list[Event]) -> list[IntervalClosed]:
        return [e for e in out if isinstance(e, IntervalClosed)]

    out = await _outputs(read_topic, contract_topics, lambda o: len(closed(o)) >= 1)
    (first,) = closed(out)
    assert first.data.revision == 1
    assert first.data.interval_start == T0 and first.data.interval_end == T0 + timedelta(hours=8)
    # a (chat: premium) at 08:00, b at 08:30 (the sign-out at 08:20 is older, so it does not end it); the roster at
    # 09:00 lists a and c with no capabilities (both standard now) and signs b out.
    assert (first.data.peak.premium, first.data.peak.standard, first.data.peak.agents) == (1, 2, 2)
    assert first.data.witness.agents.at == T0 + timedelta(minutes=30)
    assert [w.agent_id for w in first.data.witness.agents.agents] == ["a", "b"]
    usage = await _usage(service, instance_id)
    assert sorted(a["agent_id"] for a in usage["agents"]) == ["a", "c"]

    # Late sign-ins inside the closed interval raise its peak: each one revises the report.
    await producer.publish_many([inputs.sign_in("d", 61), inputs.sign_in("e", 62)])
    out = await _outputs(read_topic, contract_topics, lambda o: len(closed(o)) >= 3)
    assert [(c.data.revision, c.data.peak.agents) for c in closed(out)[1:]] == [(2, 3), (3, 4)]
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"http://127.0.0.1:{service}/v1/instances/{instance_id}/intervals", params={"from": "2026-03-02T00:00:00Z"}
        ) as r,
    ):
        body = await r.json()
    assert [x["revision"] for x in body["reports"]] == [1, 2, 3]


async def test_http_answers_bad_requests_clearly(service: int) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{service}/v1/instances/nobody/usage") as r:
            assert r.status == 404
        async with http.get(f"http://127.0.0.1:{service}/v1/instances/bad%20id/usage") as r:
            assert r.status == 400
        async with http.get(f"http://127.0.0.1:{service}/v1/instances/x/intervals?from=yesterday") as r:
            assert r.status == 400 and "RFC 3339" in (await r.json())["error"]
        async with http.get(f"http://127.0.0.1:{service}/metrics") as r:
            assert "ccxlic_events_processed_total" in await r.text()
    ready = await until_ready(f"http://127.0.0.1:{service}")
    assert ready["checks"] == {"database": True, "kafka": True, "consumer": True, "relay": True}


async def test_kill_9_in_mid_stream_then_restart_gives_the_uninterrupted_result(
    stack: Stack,
    settings: ConsumptionSettings,
    producer: EventProducer,
    contract_topics: dict[str, str],
    read_topic: ReadTopic,
    instance_id: str,
) -> None:
    inputs = Inputs(instance_id)
    events = [inputs.sign_in(f"a{i}", i * 0.5, "chat" if i % 3 == 0 else "inbound_voice") for i in range(300)]
    events += [inputs.sign_out(f"a{i}", 200 + i) for i in range(0, 300, 2)]
    env = {
        **os.environ,
        **stack.kafka_env(),
        "DATABASE_URL": stack.database_url,
        "CCXLIC_TOPIC_PREFIX": settings.topic_prefix,
        "CCXLIC_CONSUMPTION_SCHEMA": settings.schema_name,
        "CCXLIC_CONSUMPTION_HTTP_PORT": str(free_port()),
        "CCXLIC_BATCH_SIZE": "20",
    }
    worker = subprocess.Popen([sys.executable, "-m", "ccxlic_consumption"], env=env, stderr=subprocess.DEVNULL)
    try:
        await producer.publish_many(events[:200])
        await asyncio.sleep(4)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        await producer.publish_many(events[200:])
        worker = subprocess.Popen([sys.executable, "-m", "ccxlic_consumption"], env=env, stderr=subprocess.DEVNULL)
        out = await _outputs(
            read_topic,
            contract_topics,
            lambda o: (c := _last_changed(o)) is not None and c.data.standard + c.data.premium == 150,
            60,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        await _drop_schema(settings)
    last = _last_changed(out)
    assert last is not None
    # 150 agents remain signed in: the odd ones; a third of all were chat (premium).
    remaining = [i for i in range(300) if i % 2 == 1]
    assert last.data.premium == sum(1 for i in remaining if i % 3 == 0)
    assert last.data.standard == len(remaining) - last.data.premium
