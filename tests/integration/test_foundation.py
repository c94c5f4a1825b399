"""The foundation on the real broker and database: round trips, the consumer loop, dead letters, the outbox."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from ccxlic_contract import TOPICS, Event, decode
from ccxlic_contract.events import AgentSignedOut, AgentSignedOutData, DeadLettered
from ccxlic_contract.examples import golden_examples
from ccxlic_contract.topics import AGENT_ACTIVITY, DEAD_LETTER
from ccxlic_runtime.consumer import ConsumerLoop, Delivery, PermanentError, RecordProcessor
from ccxlic_runtime.db import Database, Transaction, migrate, prune_processed, relay_outbox
from ccxlic_runtime.http import OpsServer, ops_app
from ccxlic_runtime.kafka import EventProducer
from ccxlic_runtime.metrics import RuntimeMetrics
from ccxlic_testing.plugin import ReadTopic, Stack
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


async def test_every_event_type_round_trips_through_the_broker(
    producer: EventProducer, contract_topics: dict[str, str], read_topic: ReadTopic
) -> None:
    examples = {t: decode(raw) for t, raw in golden_examples().items()}
    await producer.publish_many(list(examples.values()))
    received: dict[str, Event] = {}
    for topic in TOPICS:
        expected = [e for e in examples.values() if topic.allows(e.type)]
        records = await read_topic(contract_topics[topic.name], len(expected), raw=True)
        for rec in records:
            assert rec.key == b"inst-1" or rec.key == b"*"
            assert dict(rec.headers)["content-type"].startswith(b"application/cloudevents+json")
            event = decode(rec.value)
            received[event.type] = event
    assert received == examples


class Recorder:
    """A handler that records each event in PostgreSQL, in the transaction that holds its dedup record."""

    def __init__(self, db: Database, fail_on: str | None = None) -> None:
        self.db = db
        self.fail_on = fail_on

    async def __call__(self, tx: Transaction, event: Event, d: Delivery) -> None:
        if event.id == self.fail_on:
            raise PermanentError("this input is poison")
        await tx.conn.execute("insert into seen(event_id, offs) values ($1, $2)", event.id, d.offset)


async def _make_loop(
    stack: Stack, db: Database, prefix: str, group: str, stop: asyncio.Event, fail_on: str | None = None
) -> ConsumerLoop:
    processor = RecordProcessor(
        service="test",
        topics=TOPICS,
        prefix=prefix,
        db=db,
        handler=Recorder(db, fail_on),
        metrics=RuntimeMetrics(CollectorRegistry()),
        stop=stop,
    )
    return ConsumerLoop(processor, bootstrap=stack.bootstrap, group_id=group, topics=[f"{prefix}{AGENT_ACTIVITY.name}"])


def _sign_out(instance: str, n: int) -> AgentSignedOut:
    return AgentSignedOut(
        id=f"{instance}-{n}",
        source="urn:test",
        time="2026-03-02T08:00:00Z",  # type: ignore[arg-type]
        subject=instance,
        data=AgentSignedOutData(agent_id=f"a-{n}"),
    )


async def test_malformed_message_is_dead_lettered_and_the_loop_goes_on(
    stack: Stack,
    db: Database,
    producer: EventProducer,
    contract_topics: dict[str, str],
    topic_prefix: str,
    group_id: str,
    instance_id: str,
    read_topic: ReadTopic,
) -> None:
    await db.pool.execute("create table seen(event_id text primary key, offs bigint)")
    activity = contract_topics[AGENT_ACTIVITY.name]
    raw = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await raw.start()
    await producer.publish(_sign_out(instance_id, 1))
    await raw.send_and_wait(activity, b"{not json", key=instance_id.encode(), partition=0)
    await raw.send_and_wait(
        activity, json.dumps({"type": "ccx.agent.signed_out"}).encode(), key=b"bad key!", partition=0
    )
    # the right event on the wrong topic is dead-lettered too
    await raw.send_and_wait(activity, golden_examples()["licensing.clock.tick"], partition=0)
    await raw.stop()
    await producer.publish(_sign_out(instance_id, 2))
    await producer.publish(_sign_out(instance_id, 1))  # a duplicate: same id

    stop = asyncio.Event()
    loop = await _make_loop(stack, db, topic_prefix, group_id, stop)
    relay = asyncio.create_task(relay_outbox(db, producer, stop))
    task = asyncio.create_task(loop.run(stop))
    try:
        dead = await read_topic(contract_topics[DEAD_LETTER.name], 3)
        for _ in range(100):
            if len(await db.fetch("select 1 from seen")) == 2:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await task
        await relay
    assert sorted(r["event_id"] for r in await db.fetch("select event_id from seen")) == [
        f"{instance_id}-1",
        f"{instance_id}-2",
    ]
    assert len(dead) == 3 and all(isinstance(d, DeadLettered) for d in dead)
    by_payload = {base64.b64decode(d.data.payload_base64): d for d in dead}
    not_json = by_payload[b"{not json"]
    assert not_json.data.topic == activity and "Invalid JSON" in not_json.data.error
    assert not_json.subject == instance_id and not_json.data.key == instance_id
    bad_key = by_payload[json.dumps({"type": "ccx.agent.signed_out"}).encode()]
    assert bad_key.subject == "unknown" and "id: Field required" in bad_key.data.error
    wrong_topic = by_payload[golden_examples()["licensing.clock.tick"]]
    assert "does not belong on topic ccx.agent-activity" in wrong_topic.data.error

    # Offsets were committed: a new loop in the same group receives nothing again and dead-letters nothing twice.
    stop2 = asyncio.Event()
    loop2 = await _make_loop(stack, db, topic_prefix, group_id, stop2)
    task2 = asyncio.create_task(loop2.run(stop2))
    await asyncio.sleep(3)
    stop2.set()
    await task2
    assert (await db.fetch("select count(*) as n from outbox"))[0]["n"] == 0
    assert len(await read_topic(contract_topics[DEAD_LETTER.name], 4, timeout=3)) == 3


async def test_handler_poison_is_dead_lettered_and_later_input_still_handled(
    stack: Stack,
    db: Database,
    producer: EventProducer,
    contract_topics: dict[str, str],
    topic_prefix: str,
    group_id: str,
    instance_id: str,
    read_topic: ReadTopic,
) -> None:
    await db.pool.execute("create table seen(event_id text primary key, offs bigint)")
    started = time.time()
    for n in range(1, 4):
        await producer.publish(_sign_out(instance_id, n))
    stop = asyncio.Event()
    loop = await _make_loop(stack, db, topic_prefix, group_id, stop, fail_on=f"{instance_id}-2")
    relay = asyncio.create_task(relay_outbox(db, producer, stop))
    task = asyncio.create_task(loop.run(stop))
    dead = await read_topic(contract_topics[DEAD_LETTER.name], 1)
    for _ in range(100):
        if len(await db.fetch("select 1 from seen")) == 2:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await task
    await relay
    assert "this input is poison" in dead[0].data.error
    assert sorted(r["event_id"] for r in await db.fetch("select event_id from seen")) == [
        f"{instance_id}-1",
        f"{instance_id}-3",
    ]
    # how far behind the service is: the broker's timestamp of the newest record handled
    newest = loop.processor.metrics.consumed_timestamp.labels("test", contract_topics[AGENT_ACTIVITY.name])
    assert started - 5 < newest._value.get() <= time.time()


async def test_outbox_publishes_only_what_committed(
    db: Database, producer: EventProducer, contract_topics: dict[str, str], instance_id: str, read_topic: ReadTopic
) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.emit(_sign_out(instance_id, 1))
            raise RuntimeError("rolled back")
    async with db.transaction() as tx:
        assert await tx.claim("input-1")
        await tx.emit(_sign_out(instance_id, 2))
    async with db.transaction() as tx:
        assert not await tx.claim("input-1")
    stop = asyncio.Event()
    stop.set()  # drain once and return
    await relay_outbox(db, producer, stop)
    got = await read_topic(contract_topics[AGENT_ACTIVITY.name], 2, timeout=4)
    assert [e.id for e in got] == [f"{instance_id}-2"]


async def test_old_dedup_records_are_pruned_a_chunk_at_a_time(db: Database) -> None:
    await db.pool.executemany(
        "insert into processed_events(event_key, processed_at) values ($1, now() - $2::interval)",
        [(f"old-{n}", timedelta(days=31)) for n in range(5)] + [(f"new-{n}", timedelta(days=29)) for n in range(3)],
    )
    assert await prune_processed(db, timedelta(days=30), chunk=2) == 5
    left = await db.fetch("select event_key from processed_events order by event_key")
    assert [r["event_key"] for r in left] == ["new-0", "new-1", "new-2"]


async def test_migrations_apply_once(db: Database) -> None:
    assert await migrate(db.pool, db.schema) == []
    names = [r["name"] for r in await db.fetch("select name from schema_migrations")]
    assert names == ["runtime/0001_runtime.sql"]


async def test_ops_server_serves_metrics_health_and_readiness(db: Database) -> None:
    registry = CollectorRegistry()
    metrics = RuntimeMetrics(registry)
    metrics.processed.labels("svc", "t", "x").inc()
    ready = {"db": db.ping, "kafka": lambda: asyncio.sleep(0, result=False)}
    server = OpsServer(ops_app(registry, ready), "127.0.0.1", 0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{server.port}"
            async with http.get(f"{base}/metrics") as r:
                assert r.status == 200
                assert 'ccxlic_events_processed_total{service="svc",topic="t",type="x"} 1.0' in await r.text()
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 503
                assert await r.json() == {"ready": False, "checks": {"db": True, "kafka": False}}
    finally:
        await server.stop()


def test_make_up_says_which_port_is_taken(tmp_path: Path, stack: Stack) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "KAFKA_PORT": str(port), "CCXLIC_STACK_DIR": str(tmp_path)}
        proc = subprocess.run(
            ["bash", str(REPO / "deploy" / "stack.sh"), "up"], env=env, capture_output=True, text=True
        )
    assert proc.returncode != 0
    assert f"port {port} (for the Kafka broker) is already taken" in proc.stderr
    assert "KAFKA_PORT=<port>" in proc.stderr


def test_make_up_is_idempotent(stack: Stack) -> None:
    if stack.origin != "local stack":
        pytest.skip("only the local stack is started by deploy/stack.sh")
    proc = subprocess.run(["bash", str(REPO / "deploy" / "stack.sh"), "up"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "already running" in proc.stdout
