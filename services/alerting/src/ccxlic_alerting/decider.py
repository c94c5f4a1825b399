"""Alerting's decider: one instance's stream from compliance becomes alert actions. Pure; the rules are
machine.py's, and the silences are what every decision of a batch reads besides the state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ccxlic_contract.codec import Event
from ccxlic_runtime.instances import Decision

from ccxlic_alerting.machine import Action, Rules, Silence, State, step


@dataclass(frozen=True, slots=True)
class Acted:
    """An action of the rules (raised, resolved, notified, held) and the input that caused it."""

    action: Action
    cause_id: str


Output = Acted


class AlertingDecider:
    def __init__(self, rules: Rules) -> None:
        self.rules = rules

    def initial(self, instance: str) -> State:
        return State(instance=instance)

    def working(self, state: State) -> State:
        return state  # frozen: its own working copy

    def decide(self, state: State, event: Event, silences: Sequence[Silence]) -> Decision[State, Output]:
        result = step(state, event, self.rules, silences)
        return Decision(result.state, tuple(Acted(a, event.id) for a in result.actions))

    def saved(self, state: State) -> State:
        return state

    def resume(self, state: State, answer: object) -> Decision[State, Output]:
        raise NotImplementedError("alerting never asks to read")
