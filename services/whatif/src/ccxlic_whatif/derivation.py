"""The derivation check of an audit bundle: the compliance transitions and the alerts follow from the interval reports
and the lifecycle events in it, decided again by the services' own deciders. Pure.

Compliance's log holds every input compliance decided from (usage, interval reports, lifecycle and reservation events,
and the ticks that fired a deadline) and, after each, the transitions it published; alerting's log holds the same
for alerting. Each log is decided again input by input (`ccxlic_whatif.replay.Stage`, with the rules the bundle
names), and what comes out must be, entry by entry, what the log holds after that input. Then the logs must agree
with each other: the interval reports compliance decided from are the consumption computer's, and the transitions
alerting decided from are compliance's (one log may run ahead of the other: a prefix).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from ccxlic_alerting.decider import AlertingDecider
from ccxlic_alerting.handler import AUDIT as ALERTING_AUDIT
from ccxlic_alerting.handler import publish as alerting_publish
from ccxlic_alerting.machine import Rules as AlertingRules
from ccxlic_audit.bundle import Check
from ccxlic_audit.log import Entry, canonical
from ccxlic_compliance.decider import ComplianceDecider
from ccxlic_compliance.handler import AUDIT as COMPLIANCE_AUDIT
from ccxlic_compliance.handler import publish as compliance_publish
from ccxlic_compliance.machine import Rules as ComplianceRules
from ccxlic_contract import ContractError, encode
from ccxlic_contract.codec import Event, decode
from ccxlic_runtime.instances import Audit

from ccxlic_whatif.replay import Stage

INTERVAL = "licensing.consumption.interval_closed"
TRANSITION = "licensing.compliance.changed"


def rules_json(rules: ComplianceRules | AlertingRules) -> dict[str, Any]:
    """A service's rules as a bundle carries them (durations in seconds)."""

    def plain(v: Any) -> Any:
        if isinstance(v, timedelta):
            return {"seconds": v.total_seconds()}
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        return v

    return {f.name: plain(getattr(rules, f.name)) for f in dataclasses.fields(rules)}


def rules_of(cls: type[Any], value: Any) -> Any:
    """`rules_json` read back; ValueError when it is not that."""

    def typed(v: Any) -> Any:
        if isinstance(v, Mapping):
            if set(v) == {"seconds"}:
                return timedelta(seconds=float(v["seconds"]))
            return {k: typed(x) for k, x in v.items()}
        if isinstance(v, list):
            return tuple(typed(x) for x in v)
        return v

    if not isinstance(value, Mapping):
        raise ValueError(f"the bundle's {cls.__module__.split('.')[0]} rules are not an object")
    try:
        return cls(**{k: typed(v) for k, v in value.items()})
    except TypeError as exc:
        raise ValueError(f"the bundle's rules cannot be read: {exc}") from None


def derivation(bundle: Mapping[str, Any]) -> Check:
    """The derivation check of a bundle (its other checks: ccxlic_audit.bundle.verify)."""
    try:
        instance = str(bundle["instance"])
        logs = {str(lg["origin"]).rsplit("/", 1)[-1]: [Entry.of(e) for e in lg["entries"]] for lg in bundle["logs"]}
        rules = bundle.get("rules", {})
        compliance_rules = rules_of(ComplianceRules, rules.get("compliance", {}))
        alerting_rules = rules_of(AlertingRules, rules.get("alerting", {}))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return Check("derivation", False, f"the bundle cannot be read: {exc}")
    stages: list[tuple[str, Audit, Stage[Any, Any, Any], str, str, str, str]] = [
        # (the log, what it logs, its decider, the log upstream, what both hold, its name, what it counts)
        (
            "compliance",
            COMPLIANCE_AUDIT,
            Stage(instance, ComplianceDecider(compliance_rules), compliance_publish, None),
            "consumption",
            INTERVAL,
            "the consumption computer",
            "transitions",
        ),
        (
            "alerting",
            ALERTING_AUDIT,
            Stage(instance, AlertingDecider(alerting_rules), alerting_publish, ()),
            "compliance",
            TRANSITION,
            "compliance",
            "alert transitions",
        ),
    ]
    done: list[str] = []
    for service, audit, stage, upstream, shared, source, counted in stages:
        if service not in logs:
            continue
        bad = _again(logs[service], audit, stage.handle, service)
        if bad is None and upstream in logs:
            bad = _agree(logs[upstream], logs[service], shared, service, source)
        if bad is not None:
            return bad
        done.append(f"{sum(e.kind in audit.outputs for e in logs[service])} {counted}")
    if not done:
        return Check("derivation", False, "the bundle holds neither compliance's log nor alerting's")
    return Check("derivation", True, f"{' and '.join(done)} decided again from the logged inputs: the same")


def _again(
    entries: Sequence[Entry],
    audit: Audit,
    handle: Callable[[Event], tuple[list[Any], list[Event]]],
    service: str,
) -> Check | None:
    """Decide the log's inputs again; the first entry that is not what deciding gives, named (None: all are)."""
    expected: list[Event] = []  # what the inputs so far published that the log must hold next
    for e in entries:
        try:
            event = decode(canonical(e.body))
        except ContractError as exc:
            return _bad(service, e, f"its event cannot be read: {exc}")
        if e.kind != event.type:
            return _bad(service, e, f"its kind {e.kind} is not its event's type {event.type}")
        if e.kind in audit.outputs:
            if not expected:
                return _bad(service, e, f"{e.kind} {event.id} follows from no input logged before it")
            want = expected.pop(0)
            if canonical(e.body) != canonical(_plain(want)):
                return _bad(service, e, f"deciding the inputs again gives another {e.kind} (id {want.id})")
            continue
        if expected:
            return _bad(service, e, f"{expected[0].type} {expected[0].id} is missing before it")
        _, published = handle(event)
        expected = [p for p in published if p.type in audit.outputs]
    if expected:
        return Check(
            "derivation",
            False,
            f"{service}: the last input gives {expected[0].type} {expected[0].id}, not in the log",
            entries[-1].seq + 1,
            service,
        )
    return None


def _agree(
    upstream: Sequence[Entry], downstream: Sequence[Entry], kind: str, service: str, source: str
) -> Check | None:
    """The `kind` entries `service` logged as inputs are those `source` logged as outputs, in order (a prefix)."""
    theirs = [e for e in upstream if e.kind == kind]
    for n, e in enumerate(d for d in downstream if d.kind == kind):
        if n >= len(theirs):
            return None  # the upstream log was read before it had these
        if canonical(e.body) != canonical(theirs[n].body):
            return _bad(service, e, f"this {kind} is not the one {source} logged ({theirs[n].body.get('id')})")
    return None


def _plain(event: Event) -> Any:
    return json.loads(encode(event))


def _bad(service: str, e: Entry, why: str) -> Check:
    return Check("derivation", False, f"{service}: entry {e.seq}: {why}", e.seq, service)
