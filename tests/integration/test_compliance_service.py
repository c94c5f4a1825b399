"""Compliance on real Kafka and PostgreSQL: its one input stream, `licensing.consumption`, published as the
consumption computer forwards it (usage, entitlements, lifecycle events, the instance's ticks, in order),
`licensing.compliance.changed` read back from the broker, history read over HTTP. Simulated time: ticks walk 200
days in seconds."""

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
import asyncpg
import pytest
import pytest_asyncio
from ccxlic_compliance.app import run
from ccxlic_compliance.machine import replay
from ccxlic_compliance.settings import ComplianceSettings
from ccxlic_contract import Event
from ccxlic_contract.events import ComplianceChanged, DeadLettered
from ccxlic_contract.topics import COMPLIANCE, CONSUMPTION, DEAD_LETTER
from ccxlic_runtime.kafka import EventProducer
from ccxlic_testing.build import Build
from ccxlic_testing.plugin import (
    InProcess,
    ReadTopic,
    Stack,
    drop_schema,
    free_port,
    publish_on,
    service_settings,
    until_ready,
    wait_for_topic,
)

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
D = timedelta(days=1)
M = timedelta(minutes=1)


@pytest.fixture
def settings(stack: Stack, topic_prefix: str, pg_schema: str) -> ComplianceSettings:
    return service_settings(ComplianceSettings, stack, topic_prefix, pg_schema)


@pytest_asyncio.fixture
async def service(settings: ComplianceSettings, contract_topics: dict[str, str]) -> AsyncIterator[int]:
    """Compliance running in this process; yields its HTTP port."""
    service = InProcess(run, settings)
    yield await service.started()
    await service.stopped()
    await drop_schema(settings.database_url, settings.schema_name)


class Walk:
    """Publish an input, then wait until the instance's latest compliance state satisfies a check."""

    def __init__(self, producer: EventProducer, read_topic: ReadTopic, topics: dict[str, str], instance: str) -> None:
        self.producer, self.read_topic, self.topic = producer, read_topic, topics[COMPLIANCE.name]
        self.inputs = topics[CONSUMPTION.name]
        self.instance = instance
        self.b = Build(instance)

    def changes(self, out: list[Event]) -> list[ComplianceChanged]:
        return [e for e in out if isinstance(e, ComplianceChanged) and e.subject == self.instance]

    async def publish(self, *events: Event) -> None:
        await publish_on(self.producer, self.inputs, events)

    async def then(self, event: Event, check: Callable[[Any], bool], timeout: float = 30) -> list[ComplianceChanged]:
        await self.publish(event)
        out = await wait_for_topic(
            self.read_topic, self.topic, lambda o: bool(c := self.changes(o)) and check(c[-1].data), timeout
        )
        changes = self.changes(out)
        assert changes and check(changes[-1].data), f"after {event.type} at {event.time}: {changes[-1:]}"
        return changes


async def _get(port: int, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, await r.json()


async def _seen(port: int, instance: str, t: datetime) -> Any:
    """The compliance state once the instance's clock has reached t (a tick that changes nothing emits nothing)."""
    body: Any = None
    for _ in range(150):
        status, body = await _get(port, f"/v1/instances/{instance}/compliance")
        if status == 200 and body["as_of"] >= t.isoformat().replace("+00:00", "Z"):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"clock never reached {t}: {body}")


async def test_evaluation_expiry_enforcement_then_registration(
    service: int, producer: EventProducer, read_topic: ReadTopic, contract_topics: dict[str, str], instance_id: str
) -> None:
    w = Walk(producer, read_topic, contract_topics, instance_id)
    b = w.b
    await w.then(b.usage(T0, 3, 1), lambda v: v.authorization == "evaluation")
    await w.then(b.tick(T0 + 89 * D), lambda v: v.deadlines.evaluation_ends_at == T0 + 90 * D)
    changes = await w.then(b.tick(T0 + 90 * D), lambda v: v.enforcement.active)
    last = changes[-1]
    assert last.data.authorization == "evaluation_expired"
    assert last.data.enforcement.reasons == ("evaluation_expired",) and last.data.enforcement.since == T0 + 90 * D
    assert last.time == T0 + 90 * D
    await w.then(b.register(T0 + 95 * D), lambda v: v.authorization == "authorized" and not v.enforcement.active)
    status, body = await _get(service, f"/v1/instances/{instance_id}/compliance")
    assert status == 200
    assert body["registration"] == "registered" and body["authorization"] == "authorized"
    assert body["deadlines"]["authorization_expires_at"] == "2026-09-03T10:00:00Z"
    assert body["seconds_to"]["authorization_expires_at"] == 90 * 86400
    status, hist = await _get(service, f"/v1/instances/{instance_id}/compliance/history")
    steps = [(t["state"]["authorization"], t["cause"]["type"]) for t in hist["transitions"]]
    assert steps == [
        ("evaluation", "licensing.consumption.changed"),
        ("evaluation_expired", "licensing.clock.tick"),
        ("authorized", "licensing.instance.registered"),
    ]
    assert "used up" in hist["transitions"][1]["evidence"]


async def test_over_consumption_that_recovers_within_30_minutes(
    service: int, producer: EventProducer, read_topic: ReadTopic, contract_topics: dict[str, str], instance_id: str
) -> None:
    w = Walk(producer, read_topic, contract_topics, instance_id)
    b = w.b
    await w.then(b.register(T0), lambda v: v.authorization == "authorized")
    await w.then(b.entitle(T0, 10, 10), lambda v: True)
    await w.then(b.usage(T0 + 60 * M, 0, 11), lambda v: v.over_stage == "detected")
    await w.then(b.usage(T0 + 80 * M, 0, 10), lambda v: v.over_since is None)
    await w.publish(b.tick(T0 + 200 * M))
    body = await _seen(service, instance_id, T0 + 200 * M)
    assert (body["authorization"], body["over_stage"], body["ooc_since"]) == ("authorized", None, None)
    _, hist = await _get(service, f"/v1/instances/{instance_id}/compliance/history")
    assert "Premium 11 > 10 since 2026-03-02 11:00:00Z" in hist["transitions"][-2]["evidence"]
    assert hist["transitions"][-1]["evidence"].endswith("back within entitlements")


async def test_ooc_ladder_grace_enforcement_and_raised_licenses(
    service: int, producer: EventProducer, read_topic: ReadTopic, contract_topics: dict[str, str], instance_id: str
) -> None:
    w = Walk(producer, read_topic, contract_topics, instance_id)
    b = w.b
    await w.then(b.register(T0), lambda v: v.authorization == "authorized")
    await w.then(b.entitle(T0, 10, 10), lambda v: True)
    await w.then(b.usage(T0 + 60 * M, 0, 11), lambda v: v.over_stage == "detected")
    await w.then(b.tick(T0 + 90 * M), lambda v: v.over_stage == "imminent")
    await w.then(b.tick(T0 + 105 * M), lambda v: v.authorization == "out_of_compliance")
    for day in (30, 60, 85):  # authorization renews every 30 d, as the product does
        await w.then(
            b.authorization_renewed(T0 + day * D),
            lambda v, day=day: v.deadlines.authorization_expires_at == T0 + (day + 90) * D,
        )
    changes = await w.then(b.tick(T0 + 91 * D), lambda v: v.enforcement.active)
    assert changes[-1].data.enforcement.reasons == ("out_of_compliance_expired",)
    assert changes[-1].data.enforcement.since == T0 + 105 * M + 90 * D
    assert changes[-1].data.required is not None and changes[-1].data.required.premium == 11
    # usage back within the entitlements does not end it (the vendor: "Purchase new licenses to exit")
    await w.then(b.usage(T0 + 91 * D + M, 0, 9), lambda v: v.deficit.premium == 0 and v.enforcement.active)
    _, provisioning = await _get(service, f"/v1/instances/{instance_id}/provisioning")
    assert provisioning["exits"][0]["action"] == "purchase" and "Premium 11" in provisioning["exits"][0]["needed"]
    await w.then(
        b.entitle(T0 + 91 * D + 2 * M, 10, 11), lambda v: v.authorization == "authorized" and not v.enforcement.active
    )
    _, hist = await _get(service, f"/v1/instances/{instance_id}/compliance/history")
    assert "they cover the peaks that caused the out-of-compliance enforcement" in hist["transitions"][-1]["evidence"]


async def test_authorization_expiry_then_enforcement(
    service: int, producer: EventProducer, read_topic: ReadTopic, contract_topics: dict[str, str], instance_id: str
) -> None:
    w = Walk(producer, read_topic, contract_topics, instance_id)
    b = w.b
    await w.then(b.register(T0), lambda v: v.authorization == "authorized")
    status, body = await _get(service, f"/v1/instances/{instance_id}/provisioning")
    assert status == 200 and body["synchronisation_allowed"] is True
    changes = await w.then(b.tick(T0 + 120 * D), lambda v: v.enforcement.active)
    # 90 d without communication: the authorization expires, and enforcement follows at once (README: the 90-day
    # reading of the vendor's document)
    assert [(c.time, c.data.authorization, c.data.enforcement.active) for c in changes[-2:]] == [
        (T0 + 90 * D, "authorization_expired", False),
        (T0 + 90 * D, "authorization_expired", True),
    ]
    assert changes[-1].data.enforcement.reasons == ("authorization_expired",)
    status, body = await _get(service, f"/v1/instances/{instance_id}/provisioning")
    assert status == 200 and body["synchronisation_allowed"] is False
    assert body["exits"] == [
        {
            "cause": "authorization_expired",
            "action": "renew_authorization",
            "needed": "renew the authorization (a usage report does not end it)",
        }
    ]
    assert body["to_leave_enforcement"] == [body["exits"][0]["needed"]] and "not synchronised" in body["reason"]
    await w.then(
        b.authorization_renewed(T0 + 201 * D), lambda v: v.authorization == "authorized" and not v.enforcement.active
    )
    status, body = await _get(service, f"/v1/instances/{instance_id}/provisioning")
    assert body["synchronisation_allowed"] is True


async def test_reservation(
    service: int, producer: EventProducer, read_topic: ReadTopic, contract_topics: dict[str, str], instance_id: str
) -> None:
    w = Walk(producer, read_topic, contract_topics, instance_id)
    b = w.b
    await w.then(b.usage(T0, 2, 2), lambda v: v.authorization == "evaluation")
    await w.then(b.reserve(T0 + D, 5, 1), lambda v: v.authorization == "reserved" and v.registration == "reserved")
    # usage above a reservation (a roster the consumption computer counted) is a breach, never out of compliance:
    # "Over-consumption of licenses is not allowed in Specific License Reservation"
    await w.publish(b.usage(T0 + D + M, 3, 3))
    await w.publish(b.tick(T0 + 500 * D))
    body = await _seen(service, instance_id, T0 + 500 * D)
    assert (body["registration"], body["authorization"], body["enforcement"]["reasons"], body["ooc_since"]) == (
        "reserved",
        "reserved",
        [],
        None,
    )
    await w.then(b.reservation_returned(T0 + 501 * D), lambda v: v.registration == "unregistered")


async def test_a_duplicate_event_changes_nothing_and_bad_input_is_dead_lettered(
    service: int, producer: EventProducer, read_topic: ReadTopic, contract_topics: dict[str, str], instance_id: str
) -> None:
    w = Walk(producer, read_topic, contract_topics, instance_id)
    b = w.b
    register = b.register(T0)
    await w.then(register, lambda v: v.authorization == "authorized")
    await producer.send_records([(contract_topics[CONSUMPTION.name], instance_id.encode(), b"{not json")])
    await w.publish(register)  # the same id again
    await w.then(b.authorization_renewed(T0 + D), lambda v: v.deadlines.authorization_expires_at == T0 + 91 * D)
    _, hist = await _get(service, f"/v1/instances/{instance_id}/compliance/history")
    assert [t["cause"]["type"] for t in hist["transitions"]] == [
        "licensing.instance.registered",
        "licensing.authorization.renewed",
    ]
    dead = await wait_for_topic(read_topic, contract_topics[DEAD_LETTER.name], lambda o: len(o) >= 1)
    assert isinstance(dead[0], DeadLettered) and dead[0].subject == instance_id
    assert "not valid JSON" in dead[0].data.error or "JSON" in dead[0].data.error


async def test_http_answers_bad_requests_clearly(service: int) -> None:
    status, body = await _get(service, "/v1/instances/nobody/compliance")
    assert status == 404 and "nobody" in body["error"]
    status, body = await _get(service, "/v1/instances/bad%20id/compliance")
    assert status == 400 and "instance id" in body["error"]
    status, body = await _get(service, "/v1/instances/nobody/provisioning")
    assert status == 404 and "nobody" in body["error"]
    status, body = await _get(service, "/v1/instances/x/compliance/history?after=minus")
    assert status == 400 and "`after` must be an integer" in body["error"]
    ready = await until_ready(f"http://127.0.0.1:{service}")
    assert ready["checks"] == {"database": True, "kafka": True, "consumer": True, "relay": True}


async def test_kill_9_in_mid_stream_then_restart_gives_the_replayed_history(
    stack: Stack,
    settings: ComplianceSettings,
    producer: EventProducer,
    contract_topics: dict[str, str],
    instance_id: str,
) -> None:
    # One stream, one key: Kafka keeps this order, so the stored history must equal the pure replay.
    b = Build(instance_id)
    events: list[Event] = [b.register(T0)]
    for k in range(1, 400):
        t = T0 + k * D
        if k % 97 == 0:
            events.append(b.deregister(t))
        elif k % 97 == 3:
            events.append(b.register(t))
        elif k % 40 == 0:
            events.append(b.authorization_renewed(t))
        elif k % 7 == 0:
            events.append(b.reporting_succeeded(t))
        else:
            events.append(b.failure("reporting", t))
    env = {
        **os.environ,
        **stack.kafka_env(),
        "DATABASE_URL": stack.database_url,
        "CCXLIC_TOPIC_PREFIX": settings.topic_prefix,
        "CCXLIC_COMPLIANCE_SCHEMA": settings.schema_name,
        "CCXLIC_COMPLIANCE_HTTP_PORT": str(free_port()),
        "CCXLIC_BATCH_SIZE": "10",
    }
    cmd = [sys.executable, "-m", "ccxlic_compliance"]
    worker = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    port = int(env["CCXLIC_COMPLIANCE_HTTP_PORT"])
    try:
        await publish_on(producer, contract_topics[CONSUMPTION.name], events[:250])
        await asyncio.sleep(3)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        await publish_on(producer, contract_topics[CONSUMPTION.name], events[250:])
        worker = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        expected_state, expected = replay(instance_id, events, settings.rules())
        body: Any = None
        for _ in range(120):
            await asyncio.sleep(0.5)
            try:
                status, body = await _get(port, f"/v1/instances/{instance_id}/compliance")
            except aiohttp.ClientError:
                continue
            if status == 200 and body["as_of"] == expected_state.now.isoformat().replace("+00:00", "Z"):
                break
        assert body is not None and body["transitions"] == len(expected), body
        _, hist = await _get(port, f"/v1/instances/{instance_id}/compliance/history")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        await drop_schema(settings.database_url, settings.schema_name)
    got = [(t["at"], t["cause"]["id"], t["evidence"], t["state"]) for t in hist["transitions"]]
    want = [
        (t.at.isoformat().replace("+00:00", "Z"), t.cause_id, t.evidence, t.view.model_dump(mode="json"))
        for t in expected
    ]
    assert got == want


async def test_readiness_says_when_the_relay_cannot_publish_and_the_service_outlives_it(
    service: int,
    settings: ComplianceSettings,
    producer: EventProducer,
    read_topic: ReadTopic,
    contract_topics: dict[str, str],
    instance_id: str,
) -> None:
    """The outbox goes away under the relay (a table renamed: it cannot read what to publish): /readyz answers 503
    naming the relay and why, /metrics counts the failures; once it is back, the queued event goes out and the
    service is ready again. It never stopped."""
    w = Walk(producer, read_topic, contract_topics, instance_id)
    await w.then(w.b.register(T0), lambda v: v.authorization == "authorized")
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        await conn.execute(f'alter table "{settings.schema_name}".outbox rename to outbox_away')
        body: Any = None
        for _ in range(100):
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{service}/readyz") as r:
                body = await r.json()
                if r.status == 503:
                    break
            await asyncio.sleep(0.1)
        assert body["ready"] is False and body["checks"]["relay"] is False, body
        assert "outbox" in body["problems"]["relay"], body
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{service}/metrics") as r:
            assert 'ccxlic_outbox_relay_failures_total{service="compliance"}' in await r.text()
        await conn.execute(f'alter table "{settings.schema_name}".outbox_away rename to outbox')
    finally:
        await conn.close()
    await w.then(w.b.authorization_renewed(T0 + D), lambda v: v.deadlines.authorization_expires_at == T0 + 91 * D)
    await until_ready(f"http://127.0.0.1:{service}")
