"""The chain on the real broker and PostgreSQL, all three services in this process: scale-out keeps the result,
and lag in the consumption computer never makes a verdict."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from ccxlic_cli.scenario import Agents, Entitlements, Instance, Scenario
from ccxlic_cli.simulator import generate
from ccxlic_contract import TOPICS
from ccxlic_contract.events import AlertRaised, ClockTicked, ComplianceChanged
from ccxlic_runtime.kafka import EventProducer, ensure_topics
from ccxlic_testing.build import Build
from ccxlic_testing.plugin import Stack

from tests.chain import Chain

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def scenario(instances: int) -> Scenario:
    insts = tuple(
        Instance(
            id=f"sc-{i:02d}",
            registered=i % 2 == 0,
            entitlements=Entitlements(standard=6, premium=2, ivr_ports=4) if i % 3 else None,
            agents=Agents(standard=6, premium=3, supervisors=1),
            ivr_peak_ports=5,
            roster_every_minutes=120,
        )
        for i in range(instances)
    )
    return Scenario(
        name="scale", duration=timedelta(hours=30), tick_every=timedelta(minutes=30), seed=11, instances=insts
    )


async def _run(stack: Stack, workers: int, events: list, partitions: int) -> dict[str, dict[str, list]]:  # type: ignore[type-arg]
    """Publish everything first (a replay: the order the chain sees is the log's, whatever the fetches), then run
    the chain with `workers` workers per service until it drains; return each service's outputs per instance."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    await ensure_topics(stack.broker, prefix, TOPICS, partitions=partitions)
    async with EventProducer(stack.broker, prefix) as producer:
        await producer.publish_many(events)
    chain = Chain(stack, prefix, f"s_{uuid.uuid4().hex[:8]}", workers=workers, overrides={"max_event_skew": None})
    try:
        await chain.start()
        await chain.drained(timeout=240)
        return {s: await chain.outputs(s) for s in ("consumption", "compliance", "alerting")}
    finally:
        await chain.stop()
        await chain.drop()


def _comparable(outputs: dict[str, dict[str, list]]) -> dict[str, dict[str, list]]:  # type: ignore[type-arg]
    return {
        service: {i: [(e.id, e.type, e.time, e.data) for e in events] for i, events in per.items()}
        for service, per in outputs.items()
    }


async def test_two_workers_per_service_on_six_partitions_give_what_one_gives(stack: Stack) -> None:
    sc = scenario(8)
    last = Build("any").tick(T0 + timedelta(days=3), every_instance=True)  # after everything: it moves every clock
    events = [*generate(sc, T0), last]
    one = await _run(stack, 1, events, partitions=6)
    two = await _run(stack, 2, events, partitions=6)
    assert _comparable(two) == _comparable(one)
    # the `*` tick reached every instance, with one worker or two: each forwarded it as its own tick
    for outputs in (one, two):
        assert sorted(outputs["consumption"]) == [i.id for i in sc.instances]
        for instance, forwarded in outputs["consumption"].items():
            assert [e.time for e in forwarded if isinstance(e, ClockTicked)][-1:] == [last.time], instance
    assert any(isinstance(e, AlertRaised) for per in one["alerting"].values() for e in per)


async def test_a_slow_consumption_computer_with_ticks_far_ahead_makes_no_verdict_the_usage_does_not_justify(
    stack: Stack,
) -> None:
    """An over-consumption from 01:02 that ends at 01:20, inside the 45-minute tolerance, and three days of ticks,
    published at once in time order while the consumption computer handles 5 inputs every 0.2 s: the ticks reach
    the broker far ahead of what it has handled. Time reaches compliance only behind the usage before it, so no
    out-of-compliance, no OOC alert and no enforcement follow (read from the topics themselves)."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    await ensure_topics(stack.broker, prefix, TOPICS)
    b = Build("slow-1")
    setup = [b.entitle(T0, 10, 2, 0), b.register(T0)]
    usage = [b.sign_in(T0 + 60 * M + n * M, f"p{n}", "chat") for n in range(3)]  # the third puts Premium over
    usage += [b.sign_out(T0 + 80 * M, "p2")]  # back within the entitlements after 18 minutes
    ticks = [b.tick(T0 + 60 * M + k * 10 * M) for k in range(1, 6 * 24 * 3)]
    chain = Chain(
        stack,
        prefix,
        f"s_{uuid.uuid4().hex[:8]}",
        overrides={"max_event_skew": None, "test_batch_delay": timedelta(seconds=0.2), "batch_size": 5},
    )
    try:
        await chain.start()
        async with EventProducer(stack.broker, prefix) as producer:
            await producer.publish_many(sorted(setup + usage + ticks, key=lambda e: e.time))
        await chain.drained(timeout=240)
        compliance = (await chain.outputs("compliance"))["slow-1"]
        alerts = (await chain.outputs("alerting")).get("slow-1", [])
    finally:
        await chain.stop()
        await chain.drop()
    views = [e.data for e in compliance if isinstance(e, ComplianceChanged)]
    assert any(v.over_stage == "detected" for v in views)  # the over-consumption was seen
    assert all(v.authorization != "out_of_compliance" and not v.enforcement.active for v in views)
    assert compliance[-1].time == ticks[-1].time  # the whole three days went by
    raised = {e.data.alert for e in alerts if isinstance(e, AlertRaised)}
    assert "OutOfCompliance" not in raised and "EnforcementMode" not in raised
    assert "OutOfComplianceDetected" in raised
