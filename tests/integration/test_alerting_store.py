"""One suite, two stores: `PgAlertingStore` on real PostgreSQL and the in-memory `FakeAlertingStore` the handler
tests use, both through the runtime's `Store` port. Whatever the fake does that PostgreSQL does not fails here, so
the fake cannot drift. On PostgreSQL, what was recorded is read back through the read side (views.py)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from ccxlic_alerting import views
from ccxlic_alerting.app import MIGRATIONS
from ccxlic_alerting.decider import Acted
from ccxlic_alerting.machine import Active, Held, Notice, Raised, Resolved, Rules, Silence, State, replay
from ccxlic_alerting.store import PgAlertingStore
from ccxlic_runtime.channels import DeliveryError, notification_id
from ccxlic_runtime.db import ConcurrentUpdate, Database, Transaction, migrate
from ccxlic_runtime.delivery import Deliverer
from ccxlic_testing.build import Build

from tests.integration.conftest import open_store
from tests.unit.alerting.fakes import FakeAlertingStore

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)
CHANNELS = ("email", "syslog")


@pytest_asyncio.fixture
async def store(backend: Database | None) -> tuple[Any, Any, Database | None]:
    s, uow = await open_store(
        backend, lambda: FakeAlertingStore(CHANNELS), lambda: PgAlertingStore(CHANNELS), MIGRATIONS
    )
    return s, uow, backend


async def recorded(s: Any, db: Database | None, alert_id: str) -> dict[str, Any] | None:
    """An alert as recorded: its row, its history (kind, cause) and its deliveries (channel, kind, notification)."""
    if db is None:
        row = s.alerts.get(alert_id)
        if row is None:
            return None
        history = [(h["kind"], h["cause_id"]) for h in s.history_rows if h["alert_id"] == alert_id]
        deliveries = [(d["channel"], d["kind"], d["notification"]) for d in s.deliveries if d["alert_id"] == alert_id]
        return {**row, "history": history, "deliveries": deliveries}
    body = await views.alert(db, alert_id)
    if body is None:
        return None
    rows = await db.fetch(
        "select channel, kind, notification from deliveries where alert_id = $1 order by id", alert_id
    )
    body["history"] = [(h["kind"], h["cause_id"]) for h in body["history"]]
    body["deliveries"] = [(r["channel"], r["kind"], json.loads(r["notification"])) for r in rows]
    return body


def raised_alert() -> tuple[State, Active]:
    """A real state and alert: authorization renewal failed, as the rules raise it."""
    b = Build("cc-1")
    state, actions = replay("cc-1", [b.compliance(T0), b.failure("authorization", T0 + M)], Rules())
    [raised] = [a for a in actions if isinstance(a, Raised)]
    return state, raised.alert


async def test_nothing_is_known_at_first(store: tuple[Any, Any, Database | None]) -> None:
    s, uow, db = store
    assert await s.load(uow, "cc-1") is None
    assert await s.env(uow) == []
    assert await recorded(s, db, "nope") is None


async def test_the_rules_state_round_trips(store: tuple[Any, Any, Database | None]) -> None:
    s, uow, _ = store
    state, _ = raised_alert()
    assert state.active and state.compliance is not None
    assert await s.save(uow, "cc-1", 0, None, state, 0) == 1
    await s.save(uow, "cc-0", 0, None, State(instance="cc-0"), 0)
    assert await s.save(uow, "cc-1", 0, None, state, 1) == 2
    assert await s.load(uow, "cc-1") == (state, 2)
    with pytest.raises(ConcurrentUpdate):
        await s.save(uow, "cc-1", 0, None, state, 1)  # read before the last save: never overwritten
    with pytest.raises(ConcurrentUpdate):
        await s.save(uow, "cc-0", 0, None, State(instance="cc-0"), 0)


async def test_an_alert_is_raised_once_notified_counted_queued_and_resolved(
    store: tuple[Any, Any, Database | None],
) -> None:
    s, uow, db = store
    _, a = raised_alert()
    notified = a.model_copy(update={"notified_at": T0 + 2 * M, "summary": "still failing"})
    await s.write(uow, "cc-1", [Acted(Raised(a), "in-1"), Acted(Notice("raised", notified, T0 + M, "RAISED"), "in-1")])
    again = a.model_copy(update={"summary": "again"})
    await s.write(uow, "cc-1", [Acted(Raised(again), "in-2")])  # recorded once: the first stays
    await s.write(uow, "cc-1", [Acted(Held(a, T0 + 2 * M, "inhibited"), "in-3")])
    await s.write(
        uow,
        "cc-1",
        [
            Acted(Resolved(a, T0 + 4 * M, "authorization renewed"), "in-4"),
            Acted(Notice("resolved", a, T0 + 4 * M, "RESOLVED"), "in-4"),
        ],
    )
    body = await recorded(s, db, a.alert_id)
    assert body is not None
    assert body["state"] == "resolved" and body["resolved_at"] == T0 + 4 * M
    assert body["resolve_reason"] == "authorization renewed"
    assert (body["notifications"], body["notified_at"], body["summary"]) == (1, T0 + 2 * M, "still failing")
    assert body["details"] == json.loads(json.dumps(a.details, default=str))
    assert body["history"] == [
        ("raised", "in-1"),
        ("notified:raised", "in-1"),
        ("raised", "in-2"),
        ("held", "in-3"),
        ("resolved", "in-4"),
        ("notified:resolved", "in-4"),
    ]
    assert [(c, k) for c, k, _ in body["deliveries"]] == [
        ("email", "raised"),
        ("syslog", "raised"),
        ("email", "resolved"),
        ("syslog", "resolved"),
    ]
    resolve_note = body["deliveries"][-1][2]
    assert resolve_note["kind"] == "resolved" and resolve_note["reason"] == "authorization renewed"


async def test_history_and_deliveries_need_a_recorded_alert(store: tuple[Any, Any, Database | None]) -> None:
    s, uow, _ = store
    _, a = raised_alert()
    with pytest.raises((KeyError, asyncpg.ForeignKeyViolationError)):
        await s.write(uow, "cc-1", [Acted(Held(a, T0, "x"), "in-1")])


async def test_silences_not_deleted_are_what_every_decision_reads(store: tuple[Any, Any, Database | None]) -> None:
    s, uow, db = store
    keep = Silence("s-1", "cc-1", None, T0, T0 + M, "ops", "maintenance")
    drop = Silence("s-2", None, "RenewAuthorizationFailed", T0, T0 + M, "ops", "known")
    if db is None:
        s.silence_rows = {keep.id: keep}
    else:
        assert await views.add_silence(db, keep) and await views.add_silence(db, drop)
        assert not await views.add_silence(db, drop)  # the id is taken
        assert await views.delete_silence(db, "s-2") is True
        assert await views.delete_silence(db, "s-2") is False
    assert await s.env(uow) == [keep]


class Counting:
    """A channel that takes a while to send and counts what it sent."""

    name = "email"

    def __init__(self, sent: list[str]) -> None:
        self.sent = sent

    async def send(self, n: Any) -> None:
        await asyncio.sleep(0.01)
        self.sent.append(n["alert_id"])


async def raise_and_notify(db: Database, alert_ids: list[str]) -> None:
    """Alerts raised and notified (one email delivery each), as the service writes them."""
    s = PgAlertingStore(["email"])
    uow = Transaction(db.pool, "")  # type: ignore[arg-type]
    for alert_id in alert_ids:
        _, a = raised_alert()
        a = a.model_copy(update={"alert_id": alert_id})
        await s.write(uow, "cc-1", [Acted(Raised(a), "in"), Acted(Notice("raised", a, T0, "RAISED"), "in")])


async def test_two_workers_delivery_loops_send_each_notification_once(db: Database) -> None:
    """Two alerting workers share the deliveries table: each takes a lease on the rows it sends, so an email or a
    webhook goes out once, not once per worker."""
    await migrate(db.pool, db.schema, MIGRATIONS)
    await raise_and_notify(db, [f"al-{n}" for n in range(40)])
    sent: list[str] = []
    loops = [
        Deliverer(db, Counting(sent), give_up_after=60, backoff=0.1, max_backoff=1, lease=30, wake=asyncio.Event())
        for _ in range(2)
    ]
    while len(sent) < 40:
        done = await asyncio.gather(*(loop.once(limit=7) for loop in loops))
        assert sum(done) > 0
    assert sorted(sent) == sorted(f"al-{n}" for n in range(40))  # every one once
    rows = await db.fetch("select status, attempts from deliveries")
    assert {(r["status"], r["attempts"]) for r in rows} == {("sent", 1)}


class Down:
    """A channel that is down until told otherwise."""

    name = "email"

    def __init__(self) -> None:
        self.up = False
        self.sent: list[str] = []

    async def send(self, n: Any) -> None:
        if not self.up:
            raise DeliveryError("connection refused")
        self.sent.append(notification_id(n))


async def test_a_failing_delivery_is_retried_until_the_channel_is_back_then_given_up_only_when_too_old(
    db: Database,
) -> None:
    await migrate(db.pool, db.schema, MIGRATIONS)
    await raise_and_notify(db, ["down-0", "down-1"])
    channel = Down()
    loop = Deliverer(db, channel, give_up_after=3600, backoff=0.01, max_backoff=0.05, lease=30, wake=asyncio.Event())
    for _ in range(12):  # far more attempts than the old bound of 8: still pending, never given up
        await loop.once()
        await asyncio.sleep(0.06)
    rows = await db.fetch("select status, attempts from deliveries order by id")
    assert [r["status"] for r in rows] == ["pending", "pending"] and min(r["attempts"] for r in rows) >= 10
    channel.up = True
    await asyncio.sleep(0.06)
    await loop.once()
    assert len(channel.sent) == 2 and len(set(channel.sent)) == 2  # each with its own stable id
    assert {r["status"] for r in await db.fetch("select status from deliveries")} == {"sent"}
    # a delivery older than give_up_after is marked failed at its next failure
    await raise_and_notify(db, ["too-old"])
    await db.fetch("update deliveries set created_at = now() - interval '2 hours' where status = 'pending'")
    channel.up = False
    await loop.once()
    row = await db.fetch("select status, last_error from deliveries where status <> 'sent'")
    assert [(r["status"], r["last_error"]) for r in row] == [("failed", "connection refused")]


class Slow(Counting):
    """A sink slower than one lease over a page of rows."""

    async def send(self, n: Any) -> None:
        await asyncio.sleep(0.15)
        self.sent.append(n["alert_id"])


async def test_a_slow_sink_outliving_a_lease_over_many_rows_still_gets_each_notification_once(db: Database) -> None:
    """Each row is leased just before it is sent: a sink slower than the lease over a page of rows does not let
    another worker take the rows still waiting (once 50 rows shared one lease, and a slow sink got some twice)."""
    await migrate(db.pool, db.schema, MIGRATIONS)
    await raise_and_notify(db, [f"al-{n}" for n in range(8)])
    sent: list[str] = []
    loops = [
        Deliverer(db, Slow(sent), give_up_after=60, backoff=0.1, max_backoff=1, lease=0.5, wake=asyncio.Event())
        for _ in range(2)
    ]
    stop = asyncio.Event()
    running = [asyncio.create_task(loop.run(stop)) for loop in loops]  # each polls while the other sends
    for _ in range(100):
        await asyncio.sleep(0.1)
        if len(sent) >= 8 and not await db.fetch("select 1 from deliveries where status = 'pending'"):
            break
    await asyncio.sleep(1.0)  # a second send of anything would come within a lease
    stop.set()
    await asyncio.gather(*running)
    assert sorted(sent) == sorted(f"al-{n}" for n in range(8))  # every one, once
