"""One suite, two stores: `PgAlertingStore` on real PostgreSQL and the in-memory `FakeAlertingStore` the handler
tests use. Whatever the fake does that PostgreSQL does not fails here, so the fake cannot drift."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from ccxlic_alerting.app import MIGRATIONS
from ccxlic_alerting.machine import Active, Raised, Rules, Silence, State, replay
from ccxlic_alerting.store import PgAlertingStore
from ccxlic_runtime.db import ConcurrentUpdate, Database
from ccxlic_testing.build import Build

from tests.integration.conftest import open_store
from tests.unit.alerting.fakes import FakeAlertingStore

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)
Store = PgAlertingStore | FakeAlertingStore


@pytest_asyncio.fixture
async def store(backend: Database | None) -> tuple[Store, Any]:
    return await open_store(backend, FakeAlertingStore, PgAlertingStore, MIGRATIONS)


async def queued(s: Store, conn: Any, alert_id: str) -> list[tuple[str, str, Any]]:
    """(channel, kind, notification) of the deliveries queued for an alert, oldest first."""
    if isinstance(s, FakeAlertingStore):
        return [(d["channel"], d["kind"], d["notification"]) for d in s.deliveries if d["alert_id"] == alert_id]
    rows = await conn.fetch(
        "select channel, kind, notification from deliveries where alert_id = $1 order by id", alert_id
    )
    return [(r["channel"], r["kind"], json.loads(r["notification"])) for r in rows]


def shown(alert: dict[str, Any] | None) -> dict[str, Any] | None:
    """The API's view of an alert without the wall-clock times PostgreSQL adds."""
    if alert is None:
        return None
    return {
        **alert,
        "deliveries": [
            {k: v for k, v in d.items() if k not in ("created_at", "finished_at")} for d in alert["deliveries"]
        ],
    }


def raised_alert() -> tuple[State, Active]:
    """A real state and alert: authorization renewal failed, as the rules raise it."""
    b = Build("cc-1")
    state, actions = replay("cc-1", [b.compliance(T0), b.failure("authorization", T0 + M)], Rules())
    [raised] = [a for a in actions if isinstance(a, Raised)]
    return state, raised.alert


async def test_nothing_is_known_at_first(store: tuple[Store, Any]) -> None:
    s, conn = store
    assert await s.load(conn, "cc-1") is None
    assert await s.instance_ids(conn) == []
    assert await s.silences(conn) == []
    assert await s.alert(conn, "nope") is None


async def test_the_rules_state_round_trips(store: tuple[Store, Any]) -> None:
    s, conn = store
    state, _ = raised_alert()
    assert state.active and state.compliance is not None
    assert await s.save(conn, state, 0) == 1
    await s.save(conn, State(instance="cc-0"), 0)
    assert await s.save(conn, state, 1) == 2
    assert await s.load(conn, "cc-1") == (state, 2)
    with pytest.raises(ConcurrentUpdate):
        await s.save(conn, state, 1)  # read before the last save: another worker's write is never overwritten
    with pytest.raises(ConcurrentUpdate):
        await s.save(conn, State(instance="cc-0"), 0)
    assert await s.instance_ids(conn) == ["cc-0", "cc-1"]


async def test_an_alert_is_raised_once_notified_counted_and_resolved(store: tuple[Store, Any]) -> None:
    s, conn = store
    _, a = raised_alert()
    await s.raised(conn, "cc-1", a)
    await s.raised(conn, "cc-1", a.model_copy(update={"summary": "again"}))  # recorded once: the first stays
    await s.history(conn, a.alert_id, a.raised_at, "raised", a.summary, "in-1")
    notified = a.model_copy(update={"notified_at": T0 + 2 * M, "summary": "still failing"})
    await s.notified(conn, notified)
    await s.notified(conn, notified.model_copy(update={"notified_at": T0 + 3 * M}))
    await s.history(conn, a.alert_id, T0 + 3 * M, "notified:repeat", "still failing", "in-2")
    await s.resolved(conn, a, T0 + 4 * M, "authorization renewed")
    body = shown(await s.alert(conn, a.alert_id))
    assert body is not None
    assert body["state"] == "resolved" and body["resolved_at"] == T0 + 4 * M
    assert body["resolve_reason"] == "authorization renewed"
    assert (body["notifications"], body["notified_at"], body["summary"]) == (2, T0 + 3 * M, "still failing")
    assert body["details"] == json.loads(json.dumps(a.details, default=str))
    assert [(h["kind"], h["cause_id"]) for h in body["history"]] == [("raised", "in-1"), ("notified:repeat", "in-2")]
    assert body["deliveries"] == []


async def test_a_notification_is_queued_once_per_channel(store: tuple[Store, Any]) -> None:
    s, conn = store
    _, a = raised_alert()
    await s.raised(conn, "cc-1", a)
    note = {"kind": "raised", "alert_id": a.alert_id, "at": T0, "details": {"n": 1}}
    await s.deliver(conn, a.alert_id, "raised", note, ["email", "syslog"])
    expected = {"kind": "raised", "alert_id": a.alert_id, "at": str(T0), "details": {"n": 1}}
    assert await queued(s, conn, a.alert_id) == [("email", "raised", expected), ("syslog", "raised", expected)]
    body = shown(await s.alert(conn, a.alert_id))
    assert body is not None
    assert body["deliveries"] == [
        {"channel": c, "kind": "raised", "status": "pending", "attempts": 0, "last_error": None}
        for c in ("email", "syslog")
    ]


async def test_history_and_deliveries_need_a_recorded_alert(store: tuple[Store, Any]) -> None:
    s, conn = store
    with pytest.raises((KeyError, asyncpg.ForeignKeyViolationError)):
        await s.history(conn, "nope", T0, "raised", "x", "in-1")
    with pytest.raises((KeyError, asyncpg.ForeignKeyViolationError)):
        await s.deliver(conn, "nope", "raised", {}, ["email"])


async def test_deleted_silences_are_gone(store: tuple[Store, Any]) -> None:
    s, conn = store
    keep = Silence("s-1", "cc-1", None, T0, T0 + M, "ops", "maintenance")
    drop = Silence("s-2", None, "AuthorizationRenewalFailed", T0, T0 + M, "ops", "known")
    await s.add_silence(conn, keep)
    await s.add_silence(conn, drop)
    assert await s.delete_silence(conn, "s-2") is True
    assert await s.delete_silence(conn, "s-2") is False
    assert await s.silences(conn) == [keep]
