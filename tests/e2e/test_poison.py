"""Poison on the real topics: every kind of input that once stopped a service, looped it or was lost ends on the
dead-letter topic with its reason (an id with a NUL and a header name that is not UTF-8 among them, sent with kcat);
well-formed events on the wrong partition, with no key or with a key that is not their subject (once refused) are
heard; the three services stay up and handle the valid events after it, and an over-consumption published after the
poison still raises its alert, by email."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from ccxlic_contract import encode
from ccxlic_contract.codec import STRUCTURED_CONTENT_TYPE
from ccxlic_contract.events import DeadLettered
from ccxlic_contract.topics import AGENT_ACTIVITY, DEAD_LETTER
from ccxlic_runtime.kafka import EventProducer
from ccxlic_runtime.policy import partition_for
from ccxlic_testing.build import Build
from ccxlic_testing.plugin import ReadTopic, Stack, wait_for_topic
from ccxlic_testing.publishers import kcat_publish

from tests.e2e.conftest import SERVICES, Pipeline

pytestmark = pytest.mark.e2e
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
M = timedelta(minutes=1)
D = timedelta(days=1)
CT = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]


async def test_poison_of_every_kind_is_dead_lettered_and_everything_after_it_still_works(
    pipeline: Pipeline,
    producer: EventProducer,
    stack: Stack,
    read_topic: ReadTopic,
    contract_topics: dict[str, str],
    instance_id: str,
) -> None:
    activity = contract_topics[AGENT_ACTIVITY.name]
    b = Build(instance_id)
    lab = Build(f"{instance_id}-lab")
    part = partition_for(instance_id, 3)
    key = instance_id.encode()

    def doc(**changes: object) -> bytes:
        event = json.loads(encode(b.sign_in(T0, "poison")))
        event.update(changes)
        return json.dumps(event).encode()

    huge = doc(padding="x" * 990_000)  # near the broker's limit; the extension is longer than the contract allows
    poison: list[tuple[bytes | None, list[tuple[str, bytes | None]], bytes | None, int, str]] = [
        # (value, headers, key, partition, what the dead letter says)
        (b"[" * 50_000 + b"]" * 50_000, [("ce_type", b"ccx.agent.signed_in")], key, part, "recursion limit"),
        (b"{}", [("ce_type", None)], key, part, "is not a type of the contract"),
        (doc(time="9999-12-31T23:59:59-01:00"), CT, key, part, "time: "),
        (doc(data={"agent_id": "x", "supervisor": "true"}), CT, key, part, "data.supervisor"),
        (doc(time="2100-01-01T00:00:00Z"), CT, key, part, "CCXLIC_MAX_EVENT_SKEW"),
        (huge, CT, key, part, "padding"),
    ]
    # well-formed but misplaced (no key, another partition, a key with a final newline): heard all the same, through
    # licensing.intake, never dead-lettered
    misplaced = [(encode(b.sign_in(T0, "keyless")), None, part), (encode(b.sign_in(T0, "elsewhere")), key, part + 1)]
    nul = json.loads(encode(b.sign_in(T0, "nul")))
    nul["id"] += "\u0000"
    # two records that once stopped a partition for good, sent by kcat as librdkafka clients send them:
    # (value, key, header name, what the dead letter says)
    stalls: list[tuple[bytes, bytes, bytes, str]] = [
        (json.dumps(nul).encode(), key, b"content-type", "must not contain a NUL character"),
        (encode(b.sign_in(T0, "header")), key, b"\xff\xfename", "could not parse the record"),
    ]
    raw = AIOKafkaProducer(**stack.broker.options(), max_request_size=2_000_000)
    await raw.start()
    try:
        for value, headers, k, p, _ in poison:
            await raw.send_and_wait(activity, value, key=k, partition=p, headers=headers)
        for value, k, header, _ in stalls:
            kcat_publish(stack.broker, activity, value, key=k, headers=((header, b"x"),), partition=part)
        for value, k, p in misplaced:
            await raw.send_and_wait(activity, value, key=k, partition=p % 3, headers=CT)
        kcat_publish(stack.broker, activity, encode(b.sign_in(T0, "newline")), key=key + b"\n", partition=part)
    finally:
        await raw.stop()

    # a non-production instance out of compliance past its 90-day grace (compliance once looped for ever here)
    await producer.publish_many(
        [lab.entitle(T0, 1, 1, deployment="non_production"), lab.register(T0), lab.sign_in(T0 + M, "l1", "chat")]
    )
    await producer.publish_many([lab.sign_in(T0 + 2 * M, "l2", "email"), lab.tick(T0 + 200 * D)])
    # valid events after all of it, one with a media-type parameter: an over-consumption that must raise its alert
    # five Standard seats: the three misplaced sign-ins fit; the Premium ones alone go over
    await producer.publish_many([b.entitle(T0, 5, 1), b.register(T0)])
    with_charset = json.loads(encode(b.sign_in(T0 + 10 * M, "p1", "chat")))
    with_charset["datacontenttype"] = "application/json; charset=utf-8"
    await producer.send_records([(activity, key, json.dumps(with_charset).encode())])
    await producer.publish(b.sign_in(T0 + 11 * M, "p2", "email"))  # a second Premium on one seat: over

    expected = [(v, says) for v, _, _, _, says in poison]
    expected += [(v if "parse" not in says else None, says) for v, _, _, says in stalls]
    dead = await wait_for_topic(read_topic, contract_topics[DEAD_LETTER.name], lambda o: len(o) >= len(expected), 90)
    letters = sorted((d for d in dead if isinstance(d, DeadLettered)), key=lambda d: d.data.offset)  # as published
    assert len(letters) == len(expected), [d.data.error for d in letters]
    for letter, (value, says) in zip(letters, expected, strict=True):
        assert says in letter.data.error, (says, letter.data.error)
        if value is None:  # a record the Kafka client cannot parse: only where it was is known
            assert letter.data.payload_size is None and letter.data.topic == activity
            continue
        assert letter.data.payload_size == len(value or b"")
        assert letter.data.payload_sha256 == hashlib.sha256(value or b"").hexdigest()
        assert base64.b64decode(letter.data.payload_base64) == (value or b"")[:65536]
    assert letters[5].data.payload_truncated  # the 990 KB one: a prefix, its size and hash; still a small record

    state = await pipeline.until(
        "compliance", f"/v1/instances/{instance_id}/compliance", lambda c: c["over_stage"] == "detected", 90
    )
    assert state["deficit"]["premium"] == 1
    usage = await pipeline.until(
        "consumption", f"/v1/instances/{instance_id}/usage", lambda u: u["in_use"]["standard"] == 3, 60
    )
    assert sorted(a["agent_id"] for a in usage["agents"]) == ["elsewhere", "keyless", "newline", "p1", "p2"]
    mails = await pipeline.mails(1, timeout=60)
    assert f"[ccx-licensing WARNING] System to enter OOC on {instance_id}" in mails
    lab_state = await pipeline.until(
        "compliance", f"/v1/instances/{instance_id}-lab/compliance", lambda c: c["as_of"].startswith("2026-09-18")
    )
    # out of compliance for 200 days (and its authorization expired): a lab is never enforced, and compliance got
    # there instead of looping on the grace that cannot end in enforcement
    assert lab_state["ooc_since"] is not None and lab_state["enforcement"]["active"] is False
    for service in SERVICES:
        assert pipeline.procs[service].poll() is None, f"{service} stopped"
        await pipeline.until(service, "/readyz", lambda r: r["ready"])
