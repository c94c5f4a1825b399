"""The derivation check of an audit bundle (`ccxlic_whatif.derivation`): the logs that compliance and alerting write
under the real runtime (over fakes) are decided again to the same transitions and alerts, whatever the inputs; a
log rewritten to say something else, and chained again so that no hash is broken, is caught and the entry named."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from ccxlic_alerting.machine import Rules as AlertingRules
from ccxlic_audit.log import Entry, following
from ccxlic_contract.codec import Event
from ccxlic_testing.build import Build
from ccxlic_whatif.derivation import derivation, rules_json, rules_of
from hypothesis import given, settings

from tests.unit.alerting.test_handler import Service as Alerting
from tests.unit.compliance.test_handler import Service as Compliance
from tests.unit.compliance.test_handler import over_consumption
from tests.unit.compliance.test_machine import RULES, T0, _script, scenario, tick_times

M = timedelta(minutes=1)


def entries(db: Any, instance: str = "i") -> list[Entry]:
    return [Entry.of(json.loads(r[4])) for r in db.logs.get(instance, [])]


def bundle(logs: dict[str, list[Entry]], instance: str = "i") -> dict[str, Any]:
    return {
        "instance": instance,
        "logs": [{"origin": f"ccxlic/{instance}/{s}", "entries": [e.as_json() for e in es]} for s, es in logs.items()],
        "rules": {"compliance": rules_json(RULES), "alerting": rules_json(AlertingRules())},
    }


def chained(es: list[Entry]) -> list[Entry]:
    """The entries linked again from the first: what a forger who rewrites the log does (no hash is broken)."""
    out: list[Entry] = []
    for e in es:
        prev = out[-1].hash if out else "0" * 64
        at = datetime.fromisoformat(e.at.replace("Z", "+00:00")).astimezone(UTC)
        out.append(following(len(out), prev, e.kind, at, e.body))
    return out


def logs_of(events: list[Event], size: int = 1) -> tuple[list[Entry], list[Entry]]:
    """Compliance's and alerting's logs of these inputs, alerting fed what compliance published."""
    c, a = Compliance(), Alerting()
    published = asyncio.run(c.feed(events, size))
    asyncio.run(a.feed(published, size))
    return entries(c.db), entries(a.db)


@settings(max_examples=60, deadline=None)
@given(scenario, tick_times)
def test_any_inputs_are_decided_again_to_the_logged_transitions_and_alerts(
    steps: list[tuple[str, int, int]], ticks: list[int]
) -> None:
    b, events = _script(steps)
    events += [b.tick(T0 + m * M) for m in sorted(ticks)]
    compliance, alerting = logs_of(events, size=3)
    check = derivation(bundle({"compliance": compliance, "alerting": alerting}))
    assert check.ok, check.detail


def story() -> tuple[list[Entry], list[Entry]]:
    """Over-consumption past the tolerance: transitions, and alerts raised."""
    b = Build("i")
    events = [*over_consumption(b), *(b.tick(T0 + m * M) for m in (20, 40, 50, 60))]
    return logs_of(events)


def test_the_story_passes_and_names_what_it_checked() -> None:
    compliance, alerting = story()
    check = derivation(bundle({"compliance": compliance, "alerting": alerting}))
    assert check.ok and "transitions" in check.detail and "alert" in check.detail


def test_a_rewritten_transition_is_named_though_every_hash_holds() -> None:
    compliance, _ = story()
    n = max(i for i, e in enumerate(compliance) if e.kind == "licensing.compliance.changed")
    e = compliance[n]
    body = json.loads(json.dumps(e.body))
    body["data"]["state"] = "authorized"
    compliance[n] = Entry(e.seq, e.kind, e.at, body, e.prev)
    check = derivation(bundle({"compliance": chained(compliance)}))
    assert (check.ok, check.first_bad, check.log) == (False, n + 1, "compliance")


def test_a_removed_input_or_alert_is_named() -> None:
    compliance, alerting = story()
    usage = next(i for i, e in enumerate(compliance) if e.kind == "licensing.consumption.changed" and i > 2)
    check = derivation(bundle({"compliance": chained(compliance[:usage] + compliance[usage + 1 :])}))
    assert not check.ok and check.first_bad is not None and check.first_bad >= usage
    raised = next(i for i, e in enumerate(alerting) if e.kind == "licensing.alert.raised")
    check = derivation(bundle({"alerting": chained(alerting[:raised] + alerting[raised + 1 :])}))
    assert (check.ok, check.first_bad) == (False, raised + 1)


def test_alerting_must_have_decided_from_compliances_transitions() -> None:
    compliance, alerting = story()
    b = Build("i")
    other, _ = logs_of([b.entitle(T0, 10, 0, 0), b.register(T0 + M), b.usage(T0 + 2 * M, 15, 0)])  # 4 more in use
    assert derivation(bundle({"compliance": compliance, "alerting": alerting})).ok
    check = derivation(bundle({"compliance": other, "alerting": alerting}))
    assert not check.ok and check.log == "alerting"


def test_rules_go_through_the_bundle_and_back() -> None:
    assert rules_of(type(RULES), json.loads(json.dumps(rules_json(RULES)))) == RULES
    assert rules_of(AlertingRules, json.loads(json.dumps(rules_json(AlertingRules())))) == AlertingRules()
    assert not derivation({"instance": "i", "logs": [], "rules": {"compliance": 3}}).ok
