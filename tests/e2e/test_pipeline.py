"""End to end: the three services as separate processes on the real stack; contact-center inputs go in, alerts come
out by email (a real SMTP server) and syslog (a real UDP listener). Simulated time: clock ticks.

The walks wait (over HTTP) for an input's effect where they read a time from it (`over_since`) or assert on a step
in between; the order itself is the chain's: the consumption computer merges its inputs by event time."""

from __future__ import annotations

import base64
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from ccxlic_contract.events import DeadLettered, SignInRejected
from ccxlic_contract.topics import AGENT_ACTIVITY, CONSUMPTION, DEAD_LETTER
from ccxlic_runtime.kafka import EventProducer
from ccxlic_testing.build import Build
from ccxlic_testing.plugin import ReadTopic, wait_for_topic

from tests.e2e.conftest import Pipeline

pytestmark = pytest.mark.e2e
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
M = timedelta(minutes=1)
D = timedelta(days=1)


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _registered(p: Pipeline, producer: EventProducer, b: Build, standard: int, premium: int, **kw: bool) -> None:
    await producer.publish_many([b.entitle(T0 - 60 * M, standard, premium, **kw), b.register(T0 - 60 * M)])
    await p.until("compliance", f"/v1/instances/{b.instance}/compliance", lambda c: c["authorization"] == "authorized")
    await p.until("consumption", f"/v1/instances/{b.instance}/usage", lambda u: u["entitled"] is not None)


async def test_the_vendors_10_premium_40_standard_example(
    pipeline: Pipeline, producer: EventProducer, instance_id: str
) -> None:
    b = Build(instance_id)
    await _registered(pipeline, producer, b, 40, 10)
    sign_ins = [b.sign_in(T0 + k * 0.1 * M, f"p{k}", "chat") for k in range(5)]
    sign_ins += [b.sign_in(T0 + (1 + k * 0.1) * M, f"s{k}", "inbound_voice") for k in range(45)]
    await producer.publish_many(sign_ins)
    usage = await pipeline.until(
        "consumption", f"/v1/instances/{instance_id}/usage", lambda u: u["in_use"]["standard"] == 45
    )
    # 5 Premium in use: the 5 spare Premium seats cover Standard 41-45; nothing is over, nothing is left
    assert usage["in_use"]["premium"] == 5 and usage["deficit"] == {"standard": 0, "premium": 0, "ivr_ports": 0}
    assert usage["headroom"] == {"standard": 0, "premium": 0, "ivr_ports": 10}
    await producer.publish(b.sign_in(T0 + 10 * M, "s45", "inbound_voice"))  # the 46th Standard is one too many
    state = await pipeline.until(
        "compliance", f"/v1/instances/{instance_id}/compliance", lambda c: c["over_stage"] == "detected"
    )
    assert state["deficit"]["standard"] == 1
    await producer.publish(b.sign_out(T0 + 15 * M, "s45"))
    await pipeline.until("compliance", f"/v1/instances/{instance_id}/compliance", lambda c: c["over_stage"] is None)
    mails = await pipeline.mails(2)
    assert mails == [
        f"[ccx-licensing WARNING] System to enter OOC on {instance_id}",
        f"[ccx-licensing RESOLVED] System to enter OOC on {instance_id}",
    ]
    assert [" RAISED " in m for m in pipeline.sinks.udp] == [True, False]


async def test_license_control_refuses_sign_ins_over_the_count_so_nothing_goes_out_of_compliance(
    pipeline: Pipeline,
    producer: EventProducer,
    read_topic: ReadTopic,
    contract_topics: dict[str, str],
    instance_id: str,
) -> None:
    b = Build(instance_id)
    await _registered(pipeline, producer, b, 40, 10, overage_allowed=False)
    events = [b.sign_in(T0 + k * 0.1 * M, f"p{k}", "email") for k in range(11)]
    events += [b.sign_in(T0 + (2 + k * 0.1) * M, f"s{k}", "inbound_voice") for k in range(41)]
    await producer.publish_many(events)
    out = await wait_for_topic(
        read_topic,
        contract_topics[CONSUMPTION.name],
        lambda o: sum(isinstance(e, SignInRejected) and e.subject == instance_id for e in o) >= 2,
    )
    rejected = sorted(
        (e.data.agent_id, e.data.license) for e in out if isinstance(e, SignInRejected) and e.subject == instance_id
    )
    assert rejected == [("p10", "premium"), ("s40", "standard")]
    usage = await pipeline.until(
        "consumption", f"/v1/instances/{instance_id}/usage", lambda u: u["in_use"]["standard"] == 40
    )
    assert usage["in_use"]["premium"] == 10
    await producer.publish(b.tick(T0 + 2 * 60 * M))
    state = await pipeline.until(
        "compliance", f"/v1/instances/{instance_id}/compliance", lambda c: c["as_of"] >= "2026-03-02T11:00:00Z"
    )
    assert (state["authorization"], state["over_stage"]) == ("authorized", None)
    assert await pipeline.mails(0) == []


async def test_the_45_minute_tolerance_walk_up_to_enforcement_at_day_90(
    pipeline: Pipeline, producer: EventProducer, instance_id: str
) -> None:
    b = Build(instance_id)
    compliance = f"/v1/instances/{instance_id}/compliance"
    await _registered(pipeline, producer, b, 40, 10)
    await producer.publish_many([b.sign_in(T0 + k * 0.1 * M, f"p{k}", "chat") for k in range(11)])
    state = await pipeline.until("compliance", compliance, lambda c: c["over_stage"] == "detected")
    over = _t(state["over_since"])
    await producer.publish(b.tick(over + 31 * M))
    await pipeline.until("compliance", compliance, lambda c: c["over_stage"] == "imminent")
    await producer.publish(b.tick(over + 46 * M))
    state = await pipeline.until("compliance", compliance, lambda c: c["authorization"] == "out_of_compliance")
    assert _t(state["ooc_since"]) == over + 45 * M
    for day in (30, 60, 85):  # the product renews its authorization every 30 days
        await producer.publish(b.authorization_renewed(T0 + day * D))
        await pipeline.until("compliance", compliance, lambda c, day=day: _t(c["as_of"]) >= T0 + day * D)
    await producer.publish(b.tick(over + 45 * M + 90 * D + M))
    state = await pipeline.until("compliance", compliance, lambda c: c["enforcement"]["active"])
    assert state["enforcement"]["reasons"] == ["out_of_compliance_expired"]
    mails = Counter(await pipeline.mails(6))
    i = instance_id
    for subject in (
        f"[ccx-licensing WARNING] System to enter OOC on {i}",
        f"[ccx-licensing MAJOR] System to enter OOC shortly on {i}",
        f"[ccx-licensing RESOLVED] System to enter OOC on {i}",
        f"[ccx-licensing CRITICAL] OOC: system in Out of Compliance on {i}",
        f"[ccx-licensing RESOLVED] System to enter OOC shortly on {i}",
        f"[ccx-licensing CRITICAL] Enforcement Mode on {i}",
    ):
        assert mails[subject] >= 1, (subject, mails)
    # raised once, then repeated (critical: every 4 h of event time) at the renewals on days 30, 60 and 85; at day
    # 91 alerting reads compliance's enforcement before the tick that follows it (one stream, in order), and
    # Enforcement inhibits the ladder: no fifth
    assert mails[f"[ccx-licensing CRITICAL] OOC: system in Out of Compliance on {i}"] == 4
    assert mails[f"[ccx-licensing CRITICAL] Enforcement Mode on {i}"] == 1
    assert len(mails) == 6


async def test_evaluation_expiry(pipeline: Pipeline, producer: EventProducer, instance_id: str) -> None:
    b = Build(instance_id)
    compliance = f"/v1/instances/{instance_id}/compliance"
    await producer.publish(b.sign_in(T0, "a1", "inbound_voice"))
    state = await pipeline.until("compliance", compliance, lambda c: c["authorization"] == "evaluation")
    ends = _t(state["deadlines"]["evaluation_ends_at"])
    assert ends == T0 + 90 * D
    await producer.publish(b.tick(ends - 13 * D))
    await pipeline.until("alerting", f"/v1/alerts?instance={instance_id}&state=active", lambda a: len(a["alerts"]) == 1)
    await producer.publish(b.tick(ends))
    await pipeline.until("compliance", compliance, lambda c: c["authorization"] == "evaluation_expired")
    mails = await pipeline.mails(3)
    i = instance_id
    assert sorted(mails) == sorted(
        [
            f"[ccx-licensing WARNING] Evaluation period expiring on {i}",
            f"[ccx-licensing CRITICAL] Enforcement Mode on {i}",
            f"[ccx-licensing RESOLVED] Evaluation period expiring on {i}",
        ]
    )
    syslog = [m for m in pipeline.sinks.udp if 'alert="EnforcementMode"' in m]
    assert len(syslog) == 1 and syslog[0].startswith(f"<{16 * 8 + 2}>1 ")


async def test_a_bad_message_is_dead_lettered_and_processing_goes_on(
    pipeline: Pipeline,
    producer: EventProducer,
    read_topic: ReadTopic,
    contract_topics: dict[str, str],
    instance_id: str,
) -> None:
    b = Build(instance_id)
    topic = contract_topics[AGENT_ACTIVITY.name]
    bad = b'{"specversion": "1.0", "type": "ccx.agent.signed_in", "id": "x1", "source": "urn:x", "subject": "' + (
        instance_id.encode() + b'", "time": "2026-03-02T09:00:00", "data": {"agent_id": "a"}}'
    )
    await producer.send_records([(topic, instance_id.encode(), bad)])
    await producer.publish(b.sign_in(T0, "a1", "chat"))
    usage = await pipeline.until(
        "consumption", f"/v1/instances/{instance_id}/usage", lambda u: u["in_use"]["premium"] == 1
    )
    assert [a["agent_id"] for a in usage["agents"]] == ["a1"]
    dead = await wait_for_topic(read_topic, contract_topics[DEAD_LETTER.name], lambda o: len(o) >= 1)
    (letter,) = [d for d in dead if isinstance(d, DeadLettered)]
    assert letter.subject == instance_id and letter.data.topic == topic
    assert "time" in letter.data.error and "offset" in letter.data.error
    assert base64.b64decode(letter.data.payload_base64) == bad


async def test_a_restart_of_each_service_in_mid_scenario_loses_and_repeats_no_alert(
    pipeline: Pipeline, producer: EventProducer, instance_id: str
) -> None:
    b = Build(instance_id)
    compliance = f"/v1/instances/{instance_id}/compliance"
    await _registered(pipeline, producer, b, 40, 10)
    await producer.publish_many([b.sign_in(T0 + k * 0.1 * M, f"p{k}", "chat") for k in range(8)])
    await pipeline.restart("consumption", kill=True)  # with sign-ins still to come
    await producer.publish_many([b.sign_in(T0 + (1 + k * 0.1) * M, f"q{k}", "email") for k in range(3)])
    state = await pipeline.until("compliance", compliance, lambda c: c["over_stage"] == "detected")
    over = _t(state["over_since"])
    await pipeline.mails(1)
    await pipeline.restart("alerting", kill=True)
    await producer.publish(b.tick(over + 31 * M))
    await pipeline.until("compliance", compliance, lambda c: c["over_stage"] == "imminent")
    await pipeline.restart("compliance", kill=True)
    await producer.publish(b.tick(over + 46 * M))
    await pipeline.until("compliance", compliance, lambda c: c["authorization"] == "out_of_compliance")
    await pipeline.mails(5)
    await pipeline.restart("alerting", kill=False)
    await producer.publish(b.entitle(over + 50 * M, 40, 12))
    await pipeline.until("compliance", compliance, lambda c: c["authorization"] == "authorized")
    mails = await pipeline.mails(6)
    i = instance_id
    assert sorted(mails) == sorted(
        [
            f"[ccx-licensing WARNING] System to enter OOC on {i}",
            f"[ccx-licensing MAJOR] System to enter OOC shortly on {i}",
            f"[ccx-licensing RESOLVED] System to enter OOC on {i}",
            f"[ccx-licensing CRITICAL] OOC: system in Out of Compliance on {i}",
            f"[ccx-licensing RESOLVED] System to enter OOC shortly on {i}",
            f"[ccx-licensing RESOLVED] OOC: system in Out of Compliance on {i}",
        ]
    )
