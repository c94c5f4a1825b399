"""Compliance's outputs as wire events, on `licensing.compliance` (keyed by instance, in the order decided). A
transition's id is `instance:seq`, so a replay publishes the same events again."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import assert_never

from ccxlic_contract.codec import Event
from ccxlic_contract.events import ComplianceChanged
from ccxlic_runtime.instances import Forwarded, telling

from ccxlic_compliance.decider import Output, Transitioned

SOURCE = "urn:ccxlic:compliance"
IDS = uuid.UUID("3f0c9b7e-2d41-4f5a-8e6b-1a7c9d2e4b60")
AUDIT = telling(frozenset({"licensing.compliance.changed"}))
"""The licensing log: what compliance decided from (usage, interval reports, lifecycle and reservation events, and
the ticks that fired a deadline), and each transition."""


def publish(instance: str, output: Output) -> Sequence[Event]:
    match output:
        case Transitioned(seq=seq, transition=t):
            changed_id = str(uuid.uuid5(IDS, f"{instance}:{seq}"))
            return (ComplianceChanged(id=changed_id, source=SOURCE, time=t.at, subject=instance, data=t.view),)
        case Forwarded(event=event):
            return (event,)
        case _:
            assert_never(output)
