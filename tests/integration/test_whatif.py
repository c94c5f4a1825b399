"""`ccxlic whatif` against the real broker and the chain's services: with no change, the in-process replay of an
instance's inputs, read from the log, equals what the services recorded, interval by interval and transition by
transition (`--check`); with a purchase, the out-of-compliance it shows is gone."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from ccxlic_cli.common import CliSettings
from ccxlic_cli.scenario import Agents, Entitlements, Instance, Scenario
from ccxlic_cli.simulator import generate
from ccxlic_contract import TOPICS
from ccxlic_runtime.client import Urls
from ccxlic_runtime.kafka import EventProducer, ensure_topics
from ccxlic_runtime.settings import load_settings
from ccxlic_testing.plugin import Stack
from ccxlic_whatif.replay import replay
from ccxlic_whatif.whatif import differences, read_inputs, recorded, service_rules

from tests.chain import Chain

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def scenario() -> Scenario:
    """Two registered instances, one with fewer Premium seats than Premium agents (it goes out of compliance)."""
    insts = tuple(
        Instance(
            id=f"wi-{i}",
            registered=True,
            entitlements=Entitlements(standard=8, premium=1 + 3 * i, ivr_ports=6),
            agents=Agents(standard=6, premium=3, supervisors=1),
            ivr_peak_ports=5,
            roster_every_minutes=180,
        )
        for i in range(2)
    )
    return Scenario(
        name="whatif", duration=timedelta(hours=40), tick_every=timedelta(minutes=20), seed=7, instances=insts
    )


async def test_the_unchanged_replay_equals_the_record_and_a_purchase_clears_it(stack: Stack) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    await ensure_topics(stack.broker, prefix, TOPICS, partitions=3)
    async with EventProducer(stack.broker, prefix) as producer:
        await producer.publish_many(list(generate(scenario(), T0)))
    chain = Chain(stack, prefix, f"s_{uuid.uuid4().hex[:8]}", overrides={"max_event_skew": None})
    env = {
        **stack.kafka_env(),
        "CCXLIC_TOPIC_PREFIX": prefix,
        "CCXLIC_MAX_EVENT_SKEW": "off",
    }
    try:
        await chain.start()
        await chain.drained(timeout=240)
        ports = [w.port for w in chain.running]
        urls = Urls(*(f"http://127.0.0.1:{p}" for p in ports))
        settings = load_settings(CliSettings, **stack.kafka_settings(), topic_prefix=prefix)
        for instance in ("wi-0", "wi-1"):
            inputs = await read_inputs(settings, instance)
            out = replay(instance, inputs, service_rules())
            reports, transitions = await recorded(urls, instance)
            assert reports and transitions
            assert differences(out, reports, transitions) == []
        env |= {"CCXLIC_CONSUMPTION_URL": urls.consumption, "CCXLIC_COMPLIANCE_URL": urls.compliance}
        checked = await _ccxlic(env, "whatif", "wi-0", "--check")
        assert checked.returncode == 0, checked.stderr
        assert "the replay equals the record" in checked.stderr
        base = json.loads((await _ccxlic(env, "whatif", "wi-0", "--format", "json")).stdout)
        assert base["replayed"]["ooc_episodes"] >= 1
        need = base["replayed"]["to_buy"]
        assert need["premium"] > 0
        bought = await _ccxlic(env, "whatif", "wi-0", "--premium", str(need["premium"]), "--format", "json")
        after = json.loads(bought.stdout)["what_if"]
        assert (after["ooc_episodes"], after["ooc_minutes"], after["to_buy"]["premium"]) == (0, 0, 0)
        table = (await _ccxlic(env, "whatif", "wi-0", "--premium", str(need["premium"]))).stdout
        assert "minutes out of compliance" in table and f"Premium +{need['premium']}" in table
        bad = await _ccxlic(env, "whatif", "wi-0", "--tolerance", "soon")
        assert bad.returncode == 2 and "--tolerance" in bad.stderr
        unknown = await _ccxlic(env, "whatif", "wi-9")
        assert unknown.returncode == 1 and "no input of instance 'wi-9'" in unknown.stderr
    finally:
        await chain.stop()
        await chain.drop()


async def _ccxlic(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`ccxlic ARGS` as a process (the chain keeps serving in this one's event loop meanwhile)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ccxlic_cli", *args],
        env={"PATH": "/usr/bin:/bin", **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
