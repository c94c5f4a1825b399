"""Alerting's handler: load, step (machine.py), record, emit; inside the runtime's transaction, so the dedup
record, the alerts, their history, the deliveries to make and the outgoing `licensing.alert.*` events commit
together. Delivery itself happens after commit (delivery.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    ALL_INSTANCES,
    AlertRaised,
    AlertRaisedData,
    AlertResolved,
    AlertResolvedData,
    ClockTicked,
)
from ccxlic_runtime.consumer import Delivery
from ccxlic_runtime.db import ConcurrentUpdate, Transaction

from ccxlic_alerting.machine import CATALOGUE, Active, Held, Notice, Raised, Resolved, Rules, Silence, State, step
from ccxlic_alerting.store import AlertingStore, PgAlertingStore

SOURCE = "urn:ccxlic:alerting"
IDS = uuid.UUID("c4d2a0e8-5b3f-4e71-9a6c-7f1b3d5e9a20")

Listener = Callable[[State | None, State], None]


@dataclass
class _Work:
    before: State | None
    state: State
    version: int  # of the stored row (0: not stored yet)


def _iso(value: Any) -> Any:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def notification(instance: str, n: Notice, reason: str | None) -> dict[str, Any]:
    a = n.alert
    spec = CATALOGUE[a.alert]
    return {
        "kind": n.kind,
        "alert_id": a.alert_id,
        "alert": a.alert,
        "title": spec.title,
        "severity": a.severity,
        "instance": instance,
        "summary": a.summary,
        "action": spec.action,
        "deadline": _iso(a.deadline),
        "raised_at": _iso(a.raised_at),
        "at": _iso(n.at),
        "reason": reason,
        "details": a.details,
    }


class AlertingHandler:
    def __init__(
        self,
        rules: Rules,
        channels: Sequence[str],
        store: AlertingStore | None = None,
        on_commit: Listener | None = None,
        on_notice: Callable[[], None] | None = None,
    ) -> None:
        self.rules = rules
        self.channels = list(channels)
        self.store: AlertingStore = store or PgAlertingStore()
        self.cache: dict[str, tuple[State, int]] = {}
        self.on_commit = on_commit
        self.on_notice = on_notice

    async def __call__(self, tx: Transaction, event: Event, d: Delivery) -> None:
        if isinstance(event, ClockTicked) and event.subject == ALL_INSTANCES:
            known = set(self.cache) | set(await self.store.instance_ids(tx.conn))
            known |= {k[1] for k in tx.scratch if isinstance(k, tuple) and k[0] == "alerting"}
            for instance in sorted(known):
                await self._one(tx, instance, event)
        else:
            await self._one(tx, event.subject, event)

    async def _silences(self, tx: Transaction) -> list[Silence]:
        if "silences" not in tx.scratch:
            tx.scratch["silences"] = await self.store.silences(tx.conn)
        silences: list[Silence] = tx.scratch["silences"]
        return silences

    async def _one(self, tx: Transaction, instance: str, event: Event) -> None:
        key = ("alerting", instance)
        work: _Work | None = tx.scratch.get(key)
        if work is None:
            found = self.cache.get(instance) or await self.store.load(tx.conn, instance)
            if found is None and isinstance(event, ClockTicked):
                return  # a tick for an instance nothing has been heard of
            work = _Work(found[0], found[0], found[1]) if found else _Work(None, State(instance=instance), 0)
            tx.scratch[key] = work
            bound = work

            async def flush(t: Transaction) -> None:
                await self._flush(t, bound)

            tx.before_commit(key, flush)
        result = step(work.state, event, self.rules, await self._silences(tx))
        work.state = result.state
        reasons = {a.alert.alert_id: a.reason for a in result.actions if isinstance(a, Resolved)}
        noticed = False
        for action in result.actions:
            if isinstance(action, Raised):
                await self._raised(tx, instance, action.alert, event)
            elif isinstance(action, Resolved):
                a = action.alert
                await self.store.resolved(tx.conn, a, action.at, action.reason)
                await self.store.history(tx.conn, a.alert_id, action.at, "resolved", action.reason, event.id)
                await tx.emit(
                    AlertResolved(
                        id=str(uuid.uuid5(IDS, f"resolved:{a.alert_id}")),
                        source=SOURCE,
                        time=action.at,
                        subject=instance,
                        data=AlertResolvedData(alert_id=a.alert_id, alert=a.alert),
                    )
                )
            elif isinstance(action, Notice):
                if action.kind != "resolved":
                    await self.store.notified(tx.conn, action.alert)
                await self.store.history(
                    tx.conn, action.alert.alert_id, action.at, f"notified:{action.kind}", action.text, event.id
                )
                body = notification(instance, action, reasons.get(action.alert.alert_id))
                await self.store.deliver(tx.conn, action.alert.alert_id, action.kind, body, self.channels)
                noticed = True
            elif isinstance(action, Held):
                await self.store.history(tx.conn, action.alert.alert_id, action.at, "held", action.why, event.id)
        if noticed and self.on_notice is not None:
            tx.after_commit(self.on_notice)

    async def _raised(self, tx: Transaction, instance: str, a: Active, event: Event) -> None:
        await self.store.raised(tx.conn, instance, a)
        await self.store.history(tx.conn, a.alert_id, a.raised_at, "raised", a.summary, event.id)
        details = {**a.details, "action": CATALOGUE[a.alert].action, "deadline": _iso(a.deadline)}
        await tx.emit(
            AlertRaised(
                id=str(uuid.uuid5(IDS, f"raised:{a.alert_id}")),
                source=SOURCE,
                time=a.raised_at,
                subject=instance,
                data=AlertRaisedData(
                    alert_id=a.alert_id, alert=a.alert, severity=a.severity, summary=a.summary, details=details
                ),
            )
        )

    async def _flush(self, tx: Transaction, work: _Work) -> None:
        before, after = work.before, work.state
        try:
            version = await self.store.save(tx.conn, after, work.version)
        except ConcurrentUpdate:
            self.cache.pop(after.instance, None)  # the retry reads what the other worker wrote
            raise

        def commit() -> None:
            self.cache[after.instance] = (after, version)
            if self.on_commit is not None:
                self.on_commit(before, after)

        tx.after_commit(commit)
