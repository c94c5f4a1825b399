"""The foundation on the real broker and database: round trips, the consumer loop, dead letters, the outbox."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError
from ccxlic_contract import TOPICS, Event, decode, encode
from ccxlic_contract.events import AgentSignedOut, AgentSignedOutData, ClockTicked, DeadLettered
from ccxlic_contract.examples import golden_examples
from ccxlic_contract.topics import AGENT_ACTIVITY, CLOCK, DEAD_LETTER
from ccxlic_runtime.db import Database, MigrationChanged, Relay, Rows, Transaction, migrate, prune_processed
from ccxlic_runtime.http import OpsServer, ops_app
from ccxlic_runtime.kafka import EventProducer, TopicsNotCreated, delete_topics, ensure_contract_topics, ensure_topics
from ccxlic_runtime.loop import ConsumerLoop
from ccxlic_runtime.metrics import RuntimeMetrics
from ccxlic_runtime.policy import Delivery, PermanentError, RecordProcessor, partition_for
from ccxlic_runtime.settings import RuntimeSettings, load_settings
from ccxlic_testing.plugin import ReadTopic, Stack, free_port
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
        expected = [e for e in examples.values() if topic.types & {e.type}]
        if topic is CLOCK:
            expected *= 3  # a tick for every instance goes to every partition
        records = await read_topic(contract_topics[topic.name], len(expected), raw=True)
        assert len(records) == len(expected), topic.name
        for rec in records:
            assert rec.key == b"inst-1" or rec.key == b"*"
            assert dict(rec.headers)["content-type"].startswith(b"application/cloudevents+json")
            event = decode(rec.value)
            received[event.type] = event
    assert received == examples


class Recorder:
    """An application that records each event in PostgreSQL, in the transaction that holds its dedup record."""

    def __init__(self, fail_on: str | None = None, block_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.block_on = block_on
        self.blocked = asyncio.Event()

    def begin(self, uow: Transaction) -> None:
        pass

    async def handle(self, uow: Transaction, event: Event, d: Delivery) -> None:
        if event.id == self.fail_on:
            raise PermanentError("this input is poison")
        if event.id == self.block_on:
            self.blocked.set()
            await asyncio.Event().wait()  # for ever: the test kills the loop here, mid-batch
        await uow.conn.execute("insert into seen(event_id, offs) values ($1, $2)", event.id, d.offset)

    async def finish(self, uow: Transaction) -> None:
        pass

    def committed(self) -> None:
        pass

    def abort(self) -> None:
        pass

    async def failed(self, uow: Transaction, event: Event, reason: str) -> None:
        pass

    def forget(self) -> None:
        pass


async def _make_loop(
    stack: Stack, db: Database, prefix: str, group: str, stop: asyncio.Event, app: Recorder | None = None
) -> ConsumerLoop:
    processor = RecordProcessor(
        service="test",
        inputs=[AGENT_ACTIVITY],
        prefix=prefix,
        db=db,
        app=app or Recorder(),
        metrics=RuntimeMetrics(CollectorRegistry()),
        stop=stop,
    )
    return ConsumerLoop(processor, broker=stack.broker, group_id=group, topics=[f"{prefix}{AGENT_ACTIVITY.name}"])


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
    raw = AIOKafkaProducer(**stack.broker.options())
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
    relay = asyncio.create_task(Relay(db, producer).run(stop))
    task = asyncio.create_task(loop.run(stop))
    try:
        dead = await read_topic(contract_topics[DEAD_LETTER.name], 3)
        for _ in range(100):
            if len(await db.fetch("select 1 from seen")) == 2:
                break
            await asyncio.sleep(0.1)
        # every record handled or dead-lettered: nothing left behind on the partition the loop owns
        lag = {"service": "test", "topic": activity, "partition": "0"}
        for _ in range(50):
            if loop.processor.metrics.registry.get_sample_value("ccxlic_consumer_lag_records", lag) == 0:
                break
            await asyncio.sleep(0.1)
        assert loop.processor.metrics.registry.get_sample_value("ccxlic_consumer_lag_records", lag) == 0
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
    loop = await _make_loop(stack, db, topic_prefix, group_id, stop, Recorder(fail_on=f"{instance_id}-2"))
    relay = asyncio.create_task(Relay(db, producer).run(stop))
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
    await Relay(db, producer).run(stop)
    got = await read_topic(contract_topics[AGENT_ACTIVITY.name], 2, timeout=4)
    assert [e.id for e in got] == [f"{instance_id}-2"]


async def test_queued_rows_are_written_at_the_flush_as_row_by_row_inserts_would_leave_them(db: Database) -> None:
    """Transaction.queue: one statement per table at the flush; under a key the first row is kept (or with `update`
    the last); unkeyed rows keep their order; a second flush writes nothing again; a rollback drops them."""
    await db.pool.execute("create table kept (k text primary key, v int); create table seq (n bigserial, v text)")
    keep = Rows("kept", (("k", "text"), ("v", "int")), key=("k",))
    last = Rows("kept", (("k", "text"), ("v", "int")), key=("k",), update=True)
    ordered = Rows("seq", (("v", "text"),))
    await db.pool.execute("insert into kept values ('old', 0)")
    async with db.transaction() as tx:
        tx.queue(keep, [("old", 1), ("a", 1), ("a", 2)])
        tx.queue(ordered, [(c,) for c in "xyz"])
        tx.queue(ordered, [("w",)])
        assert await tx.conn.fetchval("select count(*) from kept") == 1  # nothing written before the flush
        await tx.flush()
        assert await tx.conn.fetchval("select v from kept where k = 'a'") == 1
        await tx.flush()
        tx.queue(last, [("b", 1), ("b", 2), ("old", 3)])
    rows = await db.fetch("select k, v from kept order by k")
    assert [(r["k"], r["v"]) for r in rows] == [("a", 1), ("b", 2), ("old", 3)]
    assert [r["v"] for r in await db.fetch("select v from seq order by n")] == ["x", "y", "z", "w"]
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            tx.queue(ordered, [("lost",)])
            raise RuntimeError("rolled back")
    assert await db.pool.fetchval("select count(*) from seq") == 4


async def test_topics_take_replication_and_min_insync_from_the_settings_and_a_refusal_says_why(stack: Stack) -> None:
    prefix = f"r{os.getpid()}x{time.monotonic_ns()}."
    settings = load_settings(RuntimeSettings, **stack.kafka_settings(), topic_prefix=prefix, min_insync_replicas=1)
    created = await ensure_contract_topics(settings)
    assert len(created) == len(TOPICS)
    admin = AIOKafkaAdminClient(**stack.broker.options())
    await admin.start()
    try:
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, created[0])])
        configs = {c[0]: c[1] for c in described[0].resources[0][4]}
        assert configs["min.insync.replicas"] == "1" and configs["message.timestamp.type"] == "LogAppendTime"
    finally:
        await admin.close()
    # the local stack has one broker: three copies cannot be made, and the error says so and which setting
    three = load_settings(
        RuntimeSettings,
        **stack.kafka_settings(),
        topic_prefix=f"{prefix}three.",
        replication_factor=3,
        min_insync_replicas=2,
    )
    with pytest.raises(TopicsNotCreated, match=r"refused to create topic .*only 1 broker.*CCXLIC_REPLICATION_FACTOR=3"):
        await ensure_contract_topics(three)
    await delete_topics(stack.broker, frozenset({prefix}))


async def test_the_topics_of_a_prefix_are_deleted_and_no_others(stack: Stack) -> None:
    """What the test session and the benchmark clean up after themselves with."""
    mine, other = f"t{os.getpid()}x{time.monotonic_ns()}.", f"u{os.getpid()}x{time.monotonic_ns()}."
    await ensure_topics(stack.broker, mine, TOPICS)
    await ensure_topics(stack.broker, other, TOPICS[:1])
    assert await delete_topics(stack.broker, frozenset({mine})) == len(TOPICS)
    admin = AIOKafkaAdminClient(**stack.broker.options())
    await admin.start()
    try:
        for _ in range(100):  # the broker deletes in the background
            names = await admin.list_topics()
            if not any(n.startswith(mine) for n in names):
                break
            await asyncio.sleep(0.1)
        assert not any(n.startswith(mine) for n in names)
        assert any(n.startswith(other) for n in names)
    finally:
        await admin.close()
    await delete_topics(stack.broker, frozenset({other}))


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
    assert names == ["runtime/0001_runtime.sql", "runtime/0002_audit_log.sql", "runtime/0003_audit_heads.sql"]


async def test_a_migration_changed_after_it_was_applied_stops_the_runner(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_t.sql").write_text("create table t (a int);")
    assert await migrate(db.pool, db.schema, folder) == ["migrations/0001_t.sql"]
    assert await migrate(db.pool, db.schema, folder) == []  # unchanged: nothing to do
    (folder / "0001_t.sql").write_text("create table t (a int, b int);")
    (folder / "0002_u.sql").write_text("create table u (a int);")
    with pytest.raises(
        MigrationChanged, match=r"migration migrations/0001_t.sql of schema .* changed after it was applied"
    ):
        await migrate(db.pool, db.schema, folder)
    assert await db.fetch("select 1 from information_schema.tables where table_name = 'u'") == []  # nothing after it
    # a schema migrated before checksums were kept takes the files as they are now, then holds them to that
    await db.pool.execute("update schema_migrations set checksum = null")
    assert await migrate(db.pool, db.schema, folder) == ["migrations/0002_u.sql"]
    stored = await db.fetch("select name, checksum from schema_migrations where name = 'migrations/0001_t.sql'")
    assert stored[0]["checksum"] == hashlib.sha256(b"create table t (a int, b int);").hexdigest()


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
                text = await r.text()
                assert 'ccxlic_events_processed_total{service="svc",topic="t",type="x"} 1.0' in text
                # what /readyz says, for Prometheus
                assert 'ccxlic_ready_check{check="db"} 1.0' in text
                assert 'ccxlic_ready_check{check="kafka"} 0.0' in text
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 503
                assert await r.json() == {
                    "ready": False,
                    "checks": {"db": True, "kafka": False},
                    "problems": {"kafka": "not ready"},
                }
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
    if not stack.origin.startswith("local stack"):
        pytest.skip("only the local stack is started by deploy/stack.sh")
    proc = subprocess.run(["bash", str(REPO / "deploy" / "stack.sh"), "up"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "already running" in proc.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallback is for root, whose clusters belong to the postgres user")
def test_make_up_from_a_directory_postgres_cannot_reach_is_idempotent_too(tmp_path: Path, stack: Stack) -> None:
    """A checkout in root's home: the postgres user cannot reach its `.stack`, so the cluster goes to the fallback
    directory. A second `up` finds it running there (it once looked elsewhere, found the port taken and failed every
    integration test of a clean clone in /root), and `down` stops it."""
    private = tmp_path / "home"  # /tmp/pytest-of-root is 0700: the postgres user cannot traverse it
    private.mkdir(mode=0o700)
    fallback = Path(tempfile.mkdtemp(prefix="ccxlic-pg-test-", dir="/var/tmp"))
    fallback.chmod(0o755)
    env = {
        **os.environ,
        "CCXLIC_STACK_DIR": str(private / ".stack"),
        "CCXLIC_PG_FALLBACK_DIR": str(fallback / "pg"),
        "PG_PORT": str(free_port()),
    }

    def stack_sh(*args: str) -> subprocess.CompletedProcess[str]:
        script = ["bash", str(REPO / "deploy" / "stack.sh"), *args]
        return subprocess.run(script, env=env, capture_output=True, text=True, timeout=120)

    try:
        first = stack_sh("up", "postgresql")
        assert first.returncode == 0, first.stderr
        assert f"keeping the cluster in {fallback / 'pg'}" in first.stdout
        second = stack_sh("up", "postgresql")
        assert second.returncode == 0, second.stderr
        assert "postgresql already running" in second.stdout
        down = stack_sh("down", "postgresql")
        assert f"stopping postgresql ({fallback / 'pg'})" in down.stdout
        assert not (fallback / "pg" / "data" / "postmaster.pid").exists()
    finally:
        stack_sh("down", "postgresql")
        shutil.rmtree(fallback, ignore_errors=True)


# ---------------------------------------------------------------- the loop: order, keys, kills; the relay: blips


async def _loop_over(
    stack: Stack, db: Database, prefix: str, group: str, stop: asyncio.Event, app: Recorder, topics: list[Any]
) -> ConsumerLoop:
    loop: ConsumerLoop | None = None
    processor = RecordProcessor(
        service="test",
        inputs=topics,
        prefix=prefix,
        db=db,
        app=app,
        metrics=RuntimeMetrics(CollectorRegistry()),
        stop=stop,
        partitions=lambda topic: loop.partitions(topic) if loop is not None else None,
    )
    loop = ConsumerLoop(processor, broker=stack.broker, group_id=group, topics=[f"{prefix}{t.name}" for t in topics])
    return loop


async def _until(db: Database, n: int, timeout: float = 30) -> list[Any]:
    for _ in range(int(timeout * 10)):
        rows = await db.fetch("select event_id, offs from seen order by seq")
        if len(rows) >= n:
            return rows
        await asyncio.sleep(0.1)
    return await db.fetch("select event_id, offs from seen order by seq")


async def test_inputs_on_two_topics_are_handled_in_event_time_order_whatever_the_log_order(
    stack: Stack,
    db: Database,
    producer: EventProducer,
    topic_prefix: str,
    group_id: str,
    instance_id: str,
    contract_topics: dict[str, str],
) -> None:
    """Published on two topics, the clock's all before the activity's, before the service starts (a replay):
    handled by event time, the tie (08:30) going to the topic listed first."""
    await db.pool.execute("create table seen(seq bigserial, event_id text, offs bigint)")
    t0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
    ticks = [
        ClockTicked(id=f"tick-{m}", source="urn:t", time=t0 + timedelta(minutes=m), subject=instance_id)
        for m in (10, 30, 40)
    ]
    outs = [
        AgentSignedOut(
            id=f"out-{m}",
            source="urn:t",
            time=t0 + timedelta(minutes=m),
            subject=instance_id,
            data=AgentSignedOutData(agent_id="a"),
        )
        for m in (5, 15, 30)
    ]
    await producer.publish_many(ticks)  # the clock first, in the log
    await producer.publish_many(outs)
    stop = asyncio.Event()
    loop = await _loop_over(stack, db, topic_prefix, group_id, stop, Recorder(), [AGENT_ACTIVITY, CLOCK])
    task = asyncio.create_task(loop.run(stop))
    rows = await _until(db, 6)
    stop.set()
    await task
    assert [r["event_id"] for r in rows] == ["out-5", "tick-10", "out-15", "out-30", "tick-30", "tick-40"]


async def test_a_record_whose_key_or_partition_is_not_its_subjects_is_dead_lettered_with_the_reason(
    stack: Stack,
    db: Database,
    producer: EventProducer,
    topic_prefix: str,
    group_id: str,
    instance_id: str,
    contract_topics: dict[str, str],
    read_topic: ReadTopic,
) -> None:
    await db.pool.execute("create table seen(seq bigserial, event_id text, offs bigint)")
    activity = contract_topics[AGENT_ACTIVITY.name]
    good = _sign_out(instance_id, 1)
    raw = AIOKafkaProducer(**stack.broker.options())
    await raw.start()
    right = partition_for(instance_id, 3)
    await raw.send_and_wait(activity, encode(_sign_out(instance_id, 2)), key=b"someone-else", partition=right)
    await raw.send_and_wait(
        activity, encode(_sign_out(instance_id, 3)), key=instance_id.encode(), partition=(right + 1) % 3
    )
    await raw.stop()
    await producer.publish(good)
    stop = asyncio.Event()
    loop = await _loop_over(stack, db, topic_prefix, group_id, stop, Recorder(), [AGENT_ACTIVITY])
    relay = asyncio.create_task(Relay(db, producer).run(stop))
    task = asyncio.create_task(loop.run(stop))
    dead = await read_topic(contract_topics[DEAD_LETTER.name], 2)
    rows = await _until(db, 1)
    stop.set()
    await asyncio.gather(task, relay)
    assert [r["event_id"] for r in rows] == [good.id]
    reasons = sorted(d.data.error for d in dead)
    assert "key 'someone-else': the key must be the subject" in reasons[0]
    assert f"partition {(right + 1) % 3}: {instance_id!r} belongs on partition {right} of 3" in reasons[1]


async def test_a_loop_killed_mid_batch_has_committed_no_offset_past_what_it_handled(
    stack: Stack,
    db: Database,
    producer: EventProducer,
    topic_prefix: str,
    group_id: str,
    instance_id: str,
    contract_topics: dict[str, str],
) -> None:
    """The application blocks on the 7th of 10 records; the loop is killed there (cancelled, as kill -9 stops a
    process between two instructions). The group's committed offset is at most the first record not handled, and a
    new worker handles every record exactly once."""
    await db.pool.execute("create table seen(seq bigserial, event_id text unique, offs bigint)")
    events = [_sign_out(instance_id, n) for n in range(10)]
    await producer.publish_many(events[:3])
    stop = asyncio.Event()
    first = await _loop_over(stack, db, topic_prefix, group_id, stop, Recorder(block_on=events[6].id), [AGENT_ACTIVITY])
    task = asyncio.create_task(first.run(stop))
    await _until(db, 3)  # a first batch, committed
    await producer.publish_many(events[3:])
    app = first.processor.app
    assert isinstance(app, Recorder)
    await asyncio.wait_for(app.blocked.wait(), 30)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    handled = {r["offs"] for r in await db.fetch("select offs from seen")}
    tp = TopicPartition(contract_topics[AGENT_ACTIVITY.name], partition_for(instance_id, 3))
    probe = AIOKafkaConsumer(**stack.broker.options(), group_id=group_id, enable_auto_commit=False)
    await probe.start()
    try:
        committed = await probe.committed(tp)
    finally:
        await probe.stop()
    assert committed is not None and all(offset in handled for offset in range(committed))
    assert 3 <= committed <= 6 and len(handled) < 10
    stop2 = asyncio.Event()
    second = await _loop_over(stack, db, topic_prefix, group_id, stop2, Recorder(), [AGENT_ACTIVITY])
    task2 = asyncio.create_task(second.run(stop2))
    rows = await _until(db, 10)
    stop2.set()
    await task2
    assert sorted(r["event_id"] for r in rows) == sorted(e.id for e in events)


class FlakyProducer:
    """A producer whose broker is away for the first `failures` sends."""

    def __init__(self, real: EventProducer, failures: int) -> None:
        self.real = real
        self.failures = failures

    async def send_records(self, records: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError("the broker is away")
        await self.real.send_records(records)


async def test_the_relay_outlives_a_broker_and_a_database_blip_and_says_so(
    db: Database, producer: EventProducer, contract_topics: dict[str, str], instance_id: str, read_topic: ReadTopic
) -> None:
    registry = CollectorRegistry()
    metrics = RuntimeMetrics(registry)
    flaky = FlakyProducer(producer, failures=3)
    relay = Relay(db, flaky, on_failure=metrics.relay_failures.labels("test").inc, max_backoff=0.2)  # type: ignore[arg-type]
    async with db.transaction() as tx:
        await tx.emit(_sign_out(instance_id, 1))
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    for _ in range(50):
        if relay.failing_since is not None:
            break
        await asyncio.sleep(0.02)
    assert relay.failing_since is not None and "the broker is away" in relay.failure  # /readyz says so
    got = await read_topic(contract_topics[AGENT_ACTIVITY.name], 1)
    assert [e.id for e in got] == [f"{instance_id}-1"]
    for _ in range(50):  # published; the relay notes its success right after the rows are deleted
        if relay.failing_since is None:
            break
        await asyncio.sleep(0.02)
    assert relay.failing_since is None, relay.failure
    assert registry.get_sample_value("ccxlic_outbox_relay_failures_total", {"service": "test"}) == 3
    # PostgreSQL drops every connection of the schema's pool (a restart, an admin): the relay goes on
    await db.pool.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1 and pid <> pg_backend_pid()",
        f"ccxlic-{db.schema}",
    )
    async with db.transaction() as tx:
        await tx.emit(_sign_out(instance_id, 2))
    got = await read_topic(contract_topics[AGENT_ACTIVITY.name], 2)
    assert [e.id for e in got] == [f"{instance_id}-1", f"{instance_id}-2"]
    assert not task.done()
    stop.set()
    await task


async def test_two_relays_on_one_outbox_publish_each_row_once_in_order(
    db: Database, producer: EventProducer, contract_topics: dict[str, str], instance_id: str, read_topic: ReadTopic
) -> None:
    async with db.transaction() as tx:
        await tx.emit(*(_sign_out(instance_id, n) for n in range(300)))
    stop = asyncio.Event()
    a, b = Relay(db, producer, batch=7), Relay(db, producer, batch=7)
    stop.set()  # each drains what is there and returns
    await asyncio.gather(a.run(stop), b.run(stop))
    got = await read_topic(contract_topics[AGENT_ACTIVITY.name], 301, timeout=5)
    assert [e.id for e in got] == [f"{instance_id}-{n}" for n in range(300)]
