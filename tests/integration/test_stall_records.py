"""Three records that once stopped a partition for good, on the real broker and PostgreSQL, through the runtime's
consumer loop: a key that ends in a newline, an event id with a NUL character, and a header name that is not UTF-8
(sent with kcat, as librdkafka clients can; aiokafka cannot parse it). Each is dead-lettered with its reason, the
valid events around it are handled, and the offsets are committed past all of them: the partition moves on."""

from __future__ import annotations

import asyncio
import json

import pytest
from ccxlic_contract import encode
from ccxlic_contract.events import AgentSignedOut, AgentSignedOutData, DeadLettered
from ccxlic_contract.topics import AGENT_ACTIVITY, DEAD_LETTER
from ccxlic_runtime.db import Database, Relay
from ccxlic_runtime.kafka import EventProducer
from ccxlic_runtime.policy import partition_for
from ccxlic_testing.plugin import ReadTopic, Stack
from ccxlic_testing.publishers import kcat_publish

from tests.integration.test_foundation import _make_loop

pytestmark = pytest.mark.integration


def _sign_out(instance: str, n: int, event_id: str | None = None) -> AgentSignedOut:
    return AgentSignedOut(
        id=event_id or f"{instance}-{n}",
        source="urn:test",
        time="2026-03-02T08:00:00Z",  # type: ignore[arg-type]
        subject=instance,
        data=AgentSignedOutData(agent_id=f"a-{n}"),
    )


async def test_three_stall_records_are_dead_lettered_and_the_partition_moves_on(
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
    partition = partition_for(instance_id, 3)
    await producer.publish(_sign_out(instance_id, 1))
    # 1. a key that ends in a newline (Python's `$` once let it through, pydantic's pattern did not)
    kcat_publish(
        stack.broker, activity, encode(_sign_out(instance_id, 2)), key=instance_id.encode() + b"\n", partition=partition
    )
    # 2. an event id with a NUL character (PostgreSQL cannot store it)
    nul = json.loads(encode(_sign_out(instance_id, 3)))
    nul["id"] = f"{instance_id}-3\u0000x"
    kcat_publish(stack.broker, activity, json.dumps(nul).encode(), key=instance_id.encode(), partition=partition)
    # 3. a header name that is not UTF-8: aiokafka cannot parse the record at all
    kcat_publish(
        stack.broker,
        activity,
        encode(_sign_out(instance_id, 4)),
        key=instance_id.encode(),
        headers=((b"\xff\xfename", b"v"),),
        partition=partition,
    )
    await producer.publish(_sign_out(instance_id, 5))

    stop = asyncio.Event()
    loop = await _make_loop(stack, db, topic_prefix, group_id, stop)
    relay = asyncio.create_task(Relay(db, producer).run(stop))
    task = asyncio.create_task(loop.run(stop))
    try:
        dead = await read_topic(contract_topics[DEAD_LETTER.name], 3, timeout=60)
        for _ in range(200):
            if len(await db.fetch("select 1 from seen")) == 2:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await task
        await relay
    assert sorted(r["event_id"] for r in await db.fetch("select event_id from seen")) == [
        f"{instance_id}-1",
        f"{instance_id}-5",
    ]
    assert len(dead) == 3 and all(isinstance(d, DeadLettered) for d in dead)
    by_offset = {d.data.offset: d for d in dead}
    first = min(by_offset)
    newline, nul_id, header = by_offset[first], by_offset[first + 1], by_offset[first + 2]
    assert "the key must be the subject" in newline.data.error and newline.subject == "unknown"
    assert newline.data.key == instance_id + "\n"
    assert "must not contain a NUL character" in nul_id.data.error
    assert "could not parse the record" in header.data.error and header.data.payload_size is None

    # the offsets went past all three: the group's next worker receives nothing again
    stop2 = asyncio.Event()
    loop2 = await _make_loop(stack, db, topic_prefix, group_id, stop2)
    task2 = asyncio.create_task(loop2.run(stop2))
    await asyncio.sleep(3)
    stop2.set()
    await task2
    assert (await db.fetch("select count(*) as n from outbox"))[0]["n"] == 0
