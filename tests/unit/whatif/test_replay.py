"""The in-process chain (`ccxlic_whatif.replay`, what `ccxlic whatif` and B5 run) against the services as the runtime
runs them over fakes: from the same inputs it publishes the same events, service by service, instance by instance."""

from __future__ import annotations

import asyncio
from typing import Any

from ccxlic_consumption.app import INPUTS as CONSUMPTION_INPUTS
from ccxlic_consumption.decider import ConsumptionDecider
from ccxlic_contract.events import IntervalClosed
from ccxlic_runtime.policy import Decoder
from ccxlic_testing.build import Build
from ccxlic_whatif.replay import ChainRules, merged, replay
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_chain_order import ALERTING, COMPLIANCE, CONSUMPTION, KINDS, T0, chain, inputs, partitions

RULES = ChainRules(CONSUMPTION.rules(), COMPLIANCE.rules(), ALERTING.rules())
DECODER = Decoder(CONSUMPTION_INPUTS, "")


def _ids(events: list[Any]) -> list[tuple[str, Any, Any]]:
    return [(e.id, e.time, e.data) for e in events]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 60 * 24 * 3), st.integers(0, 50)), max_size=30))
def test_the_replay_publishes_what_the_services_publish(script: list[tuple[str, int, int]]) -> None:
    events = inputs(script)
    consumption, compliance, alerts = asyncio.run(chain(events, None))
    logs = {topic: records for topic, records in partitions(events).items()}
    for instance in ("cc-a", "cc-b"):
        out = replay(instance, merged(logs, DECODER, instance), RULES, keep=True)
        assert out.published is not None
        mine = [e for e in consumption if e.subject == instance]
        assert _ids(out.published["consumption"]) == _ids(mine)
        assert _ids(out.published["compliance"]) == _ids([e for e in compliance if e.subject == instance])
        assert _ids(out.published["alerting"]) == _ids([e for e in alerts if e.subject == instance])
        assert [r.interval_start for r in out.reports] == [
            e.data.interval_start for e in mine if isinstance(e, IntervalClosed)
        ]


def test_a_duplicate_input_changes_nothing_and_a_tick_alone_creates_nothing() -> None:
    b = Build("cc-x")
    entitle, sign_in = b.entitle(T0, 1, 1), b.sign_in(T0, "a1")
    once = replay("cc-x", [entitle, sign_in], RULES, keep=True)
    twice = replay("cc-x", [entitle, sign_in, sign_in], RULES, keep=True)
    assert once.published == twice.published
    assert once.changes == twice.changes == 2  # the entitlements (headroom), then the sign-in
    assert replay("cc-x", [b.tick(T0)], RULES).transitions == []


def test_a_failing_input_is_dead_lettered_and_the_state_is_as_before_it(monkeypatch: Any) -> None:
    b = Build("cc-y")
    events = [b.entitle(T0, 1, 1), b.sign_in(T0, "a1"), b.sign_in(T0, "a2"), b.sign_out(T0, "a1")]
    clean = replay("cc-y", [e for n, e in enumerate(events) if n != 2], RULES, keep=True)
    real = ConsumptionDecider.decide

    def decide(self: Any, state: Any, event: Any, env: Any) -> Any:
        result = real(self, state, event, env)  # changes the state in place, then fails
        if event.id == events[2].id:
            raise ValueError("a bug")
        return result

    monkeypatch.setattr(ConsumptionDecider, "decide", decide)
    got = replay("cc-y", events, RULES, keep=True)
    assert [(s, e.id) for s, e, _ in got.failures] == [("consumption", events[2].id)]
    assert got.published is not None and clean.published is not None
    failed = [e for e in got.published["consumption"] if e.type == "licensing.consumption.failed"]
    assert len(failed) == 1
    rest = [e for e in got.published["consumption"] if e.type != "licensing.consumption.failed"]
    assert _ids(rest) == _ids(clean.published["consumption"])


def test_a_long_replay_tells_its_progress() -> None:
    from datetime import timedelta

    b = Build("cc-p")
    events = [b.entitle(T0, 1, 1), *(b.tick(T0 + n * timedelta(minutes=1)) for n in range(1, 20_001))]
    heard: list[int] = []
    replay("cc-p", events, RULES, progress=heard.append)
    assert heard == [10_000, 20_000]
