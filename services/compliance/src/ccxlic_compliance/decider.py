"""Compliance's decider: one instance's stream from the consumption computer becomes its transitions and, in
order, what alerting needs. Pure.

Per input, `machine.step` gives the transitions (numbered per instance: the numbers make the published ids); then
what alerting needs is forwarded unchanged: the lifecycle failures and their recoveries, `licensing.consumption.failed`
and the first `licensing.consumption.changed` after it (which resolves it), `licensing.control.breached` and the
first `licensing.consumption.changed` back within License Control's limits, and a clock tick that moves the
instance's time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ccxlic_contract.codec import Event
from ccxlic_contract.events import ClockTicked, ConsumptionChanged, ConsumptionFailed, LicenseControlBreached
from ccxlic_contract.topics import COMPLIANCE
from ccxlic_runtime.instances import Decision, Forwarded

from ccxlic_compliance.machine import Rules, State, Transition, step


@dataclass(frozen=True, slots=True)
class Compliance:
    """An instance: the machine's state and the number of its last transition (and, in memory only, the state's
    view key when the last step knew it: `machine.step` then need not compute it again)."""

    state: State
    seq: int = 0
    key: tuple[Any, ...] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Transitioned:
    seq: int
    transition: Transition


Output = Transitioned | Forwarded


class ComplianceDecider:
    def __init__(self, rules: Rules) -> None:
        self.rules = rules

    def initial(self, instance: str) -> Compliance:
        return Compliance(State(instance=instance))

    def working(self, state: Compliance) -> Compliance:
        return state  # frozen: its own working copy

    def decide(self, current: Compliance, event: Event, env: None) -> Decision[Compliance, Output]:
        before = current.state
        result = step(before, event, self.rules, current.key)
        key = result.key
        outputs: list[Output] = [Transitioned(current.seq + n, t) for n, t in enumerate(result.transitions, 1)]
        state = result.state
        if isinstance(event, ConsumptionChanged):
            breach = event.data.control_breach
            within = breach is None or not (breach.standard or breach.premium or breach.ivr_ports)
            # the first usage after a failure resolves LicenseComputationFailed; the first within License Control's
            # limits after a breach resolves LicenseControlBreach
            if state.computation_failed or (state.control_breached and within):
                outputs.append(Forwarded(event))
                update = {"computation_failed": False} | ({"control_breached": False} if within else {})
                state, key = state.model_copy(update=update), None
        elif isinstance(event, ClockTicked):
            if before.now is None or event.time > before.now:
                outputs.append(Forwarded(event))
        elif event.type in COMPLIANCE.forwards:  # the failures alerting raises alerts for, and their recoveries
            outputs.append(Forwarded(event))
            if isinstance(event, ConsumptionFailed):
                state, key = state.model_copy(update={"computation_failed": True}), None
            elif isinstance(event, LicenseControlBreached):
                state, key = state.model_copy(update={"control_breached": True}), None
        return Decision(Compliance(state, current.seq + len(result.transitions), key), tuple(outputs))

    def saved(self, current: Compliance) -> Compliance:
        return current

    def resume(self, current: Compliance, answer: object) -> Decision[Compliance, Output]:
        raise NotImplementedError("compliance never asks to read")
