"""The alerting handler with fakes: the runtime's transaction in memory and the in-memory store (held to
PostgreSQL's behaviour by tests/integration/test_alerting_store.py). The rules are tested on their own in
test_machine.py; here it is the shell: what is recorded, queued and published, restarts and failed commits."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from ccxlic_alerting.handler import AlertingHandler
from ccxlic_alerting.machine import Notice, Raised, Resolved, Rules, Silence, replay
from ccxlic_contract.events import AlertRaised, AlertResolved
from ccxlic_testing.build import Build
from ccxlic_testing.fakes import HandlerHarness
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.alerting.fakes import FakeAlertingStore
from tests.unit.alerting.test_machine import INPUTS, T0, _events

M = timedelta(minutes=1)
H = timedelta(hours=1)
RULES = Rules()
CHANNELS = ("email", "syslog", "webhook")


class Harness(HandlerHarness):
    def __init__(self) -> None:
        self.wakes = 0
        store = FakeAlertingStore()
        super().__init__(store, lambda: AlertingHandler(RULES, CHANNELS, store, on_notice=self.wake))
        self.store: FakeAlertingStore = store

    def wake(self) -> None:
        self.wakes += 1


async def test_an_alert_is_recorded_queued_for_every_channel_and_published_once() -> None:
    h, b = Harness(), Build("cc-1")
    await h.batch(b.compliance(T0))
    failed = b.failure("authorization", T0 + M)
    [raised] = await h.batch(failed)
    assert isinstance(raised, AlertRaised) and raised.data.alert == "RenewAuthorizationFailed"
    assert [d["channel"] for d in h.store.deliveries] == list(CHANNELS)
    assert {d["kind"] for d in h.store.deliveries} == {"raised"} and h.wakes == 1
    alert = await h.store.alert(None, raised.data.alert_id)
    assert alert is not None and [x["kind"] for x in alert["history"]] == ["raised", "notified:raised"]
    assert await h.batch(failed) == []  # a duplicate: its id is in the dedup record
    [resolved] = await h.batch(b.authorization_renewed(T0 + 2 * M))
    assert isinstance(resolved, AlertResolved) and resolved.data.alert_id == raised.data.alert_id
    assert [d["kind"] for d in h.store.deliveries][-3:] == ["resolved"] * 3


async def test_a_failed_commit_records_queues_and_wakes_nothing() -> None:
    h, b = Harness(), Build("cc-1")
    await h.batch(b.compliance(T0))
    failed = b.failure("authorization", T0 + M)
    lost = await h.batch(failed, commit=False)
    assert lost and h.store.alerts == {} and h.store.deliveries == [] and h.wakes == 0
    again = await h.batch(failed)  # redelivered; the handler's cache must not remember the lost batch either
    assert [e.id for e in again] == [e.id for e in lost] and len(h.store.deliveries) == len(CHANNELS)


async def test_a_silence_in_the_store_holds_the_notification_never_the_record() -> None:
    h, b = Harness(), Build("cc-1")
    await h.store.add_silence(None, Silence("s-1", "cc-1", None, T0, T0 + H, "ops", "maintenance"))
    await h.batch(b.compliance(T0))
    [raised] = await h.batch(b.failure("authorization", T0 + M))
    assert isinstance(raised, AlertRaised) and h.store.deliveries == [] and h.wakes == 0
    alert = await h.store.alert(None, raised.data.alert_id)
    assert alert is not None and [x["kind"] for x in alert["history"]] == ["raised", "held"]
    await h.batch(b.tick(T0 + 2 * H))  # the silence has ended: notified now
    assert [d["kind"] for d in h.store.deliveries] == ["raised"] * 3


async def test_ticks_reach_only_instances_heard_of_and_every_instance_after_a_restart() -> None:
    h, east, west = Harness(), Build("cc-east"), Build("cc-west")
    assert await h.batch(Build("nobody").tick(T0)) == []
    for b in (east, west):
        await h.batch(b.compliance(T0), b.failure("authorization", T0 + M))
    h.restart()
    await h.batch(east.tick(T0 + 13 * H, every_instance=True))  # major repeats every 12 h
    repeats = [d for d in h.store.deliveries if d["kind"] == "repeat"]
    assert sorted({d["notification"]["instance"] for d in repeats}) == ["cc-east", "cc-west"]


async def test_two_workers_of_a_group_never_overwrite_each_other() -> None:
    """Worker a has cc-1 cached; worker b changes it. a's next save is refused and retried on b's state, so the
    alert b raised is resolved once, not raised again."""
    store, claimed = FakeAlertingStore(), set[str]()
    a, b = (HandlerHarness(store, lambda: AlertingHandler(RULES, CHANNELS, store), claimed) for _ in "ab")
    e = Build("cc-1")
    await a.process(e.compliance(T0))
    [raised] = await b.process(e.failure("authorization", T0 + M))
    [resolved] = await a.process(e.authorization_renewed(T0 + 2 * M))
    assert isinstance(resolved, AlertResolved) and resolved.data.alert_id == raised.data.alert_id
    assert a.retries == 1
    loaded = await store.load(None, "cc-1")
    assert loaded is not None and loaded[0].active == {}


@settings(max_examples=100, deadline=None)
@given(INPUTS, st.integers(1, 6), st.lists(st.integers(0, 40), max_size=3))
def test_any_batching_and_any_crashes_give_exactly_the_pure_replay(
    script: list[tuple[str, int]], size: int, crashes: list[int]
) -> None:
    events = _events(script)
    _, actions = replay("i", events, RULES)

    h = Harness()
    published = asyncio.run(h.feed(events, size, crashes))
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
    assert [(d["alert_id"], d["kind"]) for d in h.store.deliveries] == [
        (n.alert.alert_id, n.kind) for n in notices for _ in CHANNELS
    ]
