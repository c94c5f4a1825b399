"""Alerting as the runtime runs it, without a broker or PostgreSQL: its Instances under the real RecordProcessor,
over a FakeDatabase and the in-memory store (held to PostgreSQL's behaviour by
tests/integration/test_alerting_store.py). The rules are tested in test_machine.py; here: what is recorded, queued
and published, silences from the store, restarts and failed commits."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from ccxlic_alerting.app import INPUTS, AlertingMetrics, build
from ccxlic_alerting.handler import AUDIT
from ccxlic_alerting.machine import Notice, Raised, Resolved, Silence, replay
from ccxlic_alerting.settings import AlertingSettings
from ccxlic_audit.log import Entry, broken_link
from ccxlic_contract.events import AlertRaised, AlertResolved
from ccxlic_runtime.instances import Instances
from ccxlic_runtime.settings import load_settings
from ccxlic_testing.build import Build
from ccxlic_testing.fakes import FakeDatabase, Worker
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.unit.alerting.fakes import FakeAlertingStore
from tests.unit.alerting.test_machine import INPUTS as SCRIPTS
from tests.unit.alerting.test_machine import T0, _events

M = timedelta(minutes=1)
H = timedelta(hours=1)
SETTINGS = load_settings(AlertingSettings)
RULES = SETTINGS.rules()
CHANNELS = ("email", "syslog", "webhook")


class Service(Worker):
    def __init__(self, db: FakeDatabase | None = None) -> None:
        self.wakes = 0
        self.store = FakeAlertingStore(CHANNELS) if db is None else db.store
        assert isinstance(self.store, FakeAlertingStore)
        super().__init__(db or FakeDatabase(self.store), self._app, INPUTS, service="alerting")

    def _app(self) -> Instances:  # type: ignore[type-arg]
        return build(SETTINGS, AlertingMetrics(CollectorRegistry()), self.wake, self.store)

    def wake(self) -> None:
        self.wakes += 1


async def test_an_alert_is_recorded_queued_for_every_channel_and_published_once() -> None:
    s, b = Service(), Build("cc-1")
    await s.batch(b.compliance(T0))
    failed = b.failure("authorization", T0 + M)
    [raised] = await s.batch(failed)
    assert isinstance(raised, AlertRaised) and raised.data.alert == "RenewAuthorizationFailed"
    assert [d["channel"] for d in s.store.deliveries] == list(CHANNELS)
    assert {d["kind"] for d in s.store.deliveries} == {"raised"} and s.wakes == 1
    assert s.store.history(raised.data.alert_id) == ["raised", "notified:raised"]
    assert await s.batch(failed) == []  # a duplicate: its id is in the dedup record
    [resolved] = await s.batch(b.authorization_renewed(T0 + 2 * M))
    assert isinstance(resolved, AlertResolved) and resolved.data.alert_id == raised.data.alert_id
    assert [d["kind"] for d in s.store.deliveries][-3:] == ["resolved"] * 3


async def test_a_failed_commit_records_queues_and_wakes_nothing_twice() -> None:
    s, b = Service(), Build("cc-1")
    await s.batch(b.compliance(T0))
    s.db.fail_at.add(s.db.transactions + 1)  # the runtime retries the batch: what the failed attempt did is gone
    [raised] = await s.batch(b.failure("authorization", T0 + M))
    assert len(s.store.alerts) == 1 and len(s.store.deliveries) == len(CHANNELS) and s.wakes == 1
    assert s.store.history(raised.data.alert_id) == ["raised", "notified:raised"]


async def test_a_silence_in_the_store_holds_the_notification_never_the_record() -> None:
    s, b = Service(), Build("cc-1")
    s.store.silence_rows["s-1"] = Silence("s-1", "cc-1", None, T0, T0 + H, "ops", "maintenance")
    await s.batch(b.compliance(T0))
    [raised] = await s.batch(b.failure("authorization", T0 + M))
    assert isinstance(raised, AlertRaised) and s.store.deliveries == [] and s.wakes == 0
    assert s.store.history(raised.data.alert_id) == ["raised", "held"]
    await s.batch(b.tick(T0 + 2 * H))  # the silence has ended: notified now
    assert [d["kind"] for d in s.store.deliveries] == ["raised"] * 3


async def test_a_tick_reaches_only_an_instance_heard_of() -> None:
    s = Service()
    assert await s.batch(Build("nobody").tick(T0)) == []
    assert s.store.rows == {}


async def test_two_workers_of_a_group_never_overwrite_each_other() -> None:
    """Worker a has cc-1 cached; worker b changes it. a's next save is refused and retried on b's state, so the
    alert b raised is resolved once, not raised again."""
    a = Service()
    b = Service(a.db)
    e = Build("cc-1")
    await a.batch(e.compliance(T0))
    [raised] = await b.batch(e.failure("authorization", T0 + M))
    [resolved] = await a.batch(e.authorization_renewed(T0 + 2 * M))
    assert isinstance(resolved, AlertResolved) and resolved.data.alert_id == raised.data.alert_id
    assert a.registry.get_sample_value("ccxlic_handler_retries_total", {"service": "alerting"}) == 1.0
    loaded = await a.store.load(None, "cc-1")
    assert loaded is not None and loaded[0].active == {}


@settings(max_examples=100, deadline=None)
@given(SCRIPTS, st.integers(1, 6), st.lists(st.integers(0, 40), max_size=3))
def test_any_batching_and_any_crashes_give_exactly_the_pure_replay(
    script: list[tuple[str, int]], size: int, crashes: list[int]
) -> None:
    events = _events(script)
    _, actions = replay("i", events, RULES)

    s = Service()
    published = asyncio.run(s.feed(events, size, crashes))
    assert [(type(e).__name__, e.data.alert_id, e.time) for e in published] == [  # type: ignore[attr-defined]
        (
            "AlertRaised" if isinstance(a, Raised) else "AlertResolved",
            a.alert.alert_id,
            a.alert.raised_at if isinstance(a, Raised) else a.at,
        )
        for a in actions
        if isinstance(a, Raised | Resolved)
    ]
    notices = [a for a in actions if isinstance(a, Notice)]
    assert [(d["alert_id"], d["kind"]) for d in s.store.deliveries] == [
        (n.alert.alert_id, n.kind) for n in notices for _ in CHANNELS
    ]


@settings(max_examples=60, deadline=None)
@given(SCRIPTS, st.integers(1, 6), st.lists(st.integers(0, 40), max_size=3))
def test_the_licensing_log_is_one_chain_whatever_the_batching_and_the_crashes(
    script: list[tuple[str, int]], size: int, crashes: list[int]
) -> None:
    """The log is written with the state, once: under any batching and crashes it is the log of one input at a time,
    chained, holding each alert published, in order, and every input but the ticks that changed nothing."""
    events = _events(script)
    s, one = Service(), Service()
    published = asyncio.run(s.feed(events, size, crashes))
    asyncio.run(one.feed(events, 1))
    rows = s.db.logs.get("i", [])
    assert rows == one.db.logs.get("i", [])
    entries = [Entry.of(json.loads(r[4])) for r in rows]
    assert broken_link(entries) is None and [e.hash for e in entries] == [r[5] for r in rows]
    assert [e.body["id"] for e in entries if e.kind in AUDIT.outputs] == [p.id for p in published]
    inputs = [e.body["id"] for e in entries if e.kind not in AUDIT.outputs]
    assert {e.id for e in events if e.type != "licensing.clock.tick"} <= set(inputs)
