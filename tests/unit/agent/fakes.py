"""An in-memory Smart Agent store with a fake licensing authority (its answers have the real one's shape; the
integration suite runs the agent against the real authority). The store keeps the calls asked for, as the requests
table does; `answer_all` makes them as the caller does and gives the answers to hear."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ccxlic_agent.caller import answered
from ccxlic_agent.machine import Call, Called, Outcome, Output, Requested, State
from ccxlic_authority.core import verdict
from ccxlic_contract.events import AgentCallAnswered
from ccxlic_rules import codes
from ccxlic_runtime.db import ConcurrentUpdate
from ccxlic_testing.fakes import InMemoryStore

KEY = codes.load_key(codes.new_key())


@dataclass
class FakeAuthority:
    pool: dict[str, int] = field(default_factory=lambda: {"standard": 40, "premium": 10, "ivr_ports": 20})
    mode: str = "up"  # up | unreachable | timeout | refuse | entitlements
    calls: list[tuple[str, Any]] = field(default_factory=list)
    reports: list[Any] = field(default_factory=list)  # the bodies of the usage reports
    serial: int = 0

    def answer(self, call: Call) -> Outcome:
        self.calls.append((call.operation, call.at))
        if self.mode == "unreachable":
            return Outcome(call, False, reason="unreachable: ClientConnectorError: connection refused")
        if self.mode == "timeout":
            return Outcome(call, False, reason="timeout: the licensing authority did not answer within 10 s")
        if self.mode == "refuse":
            return Outcome(call, False, reason="refused (503): the licensing authority refused: maintenance")
        at = call.at
        base: dict[str, Any] = {
            "authorized_until": (at + timedelta(days=90)).isoformat(),
            "renew_authorization_at": (at + timedelta(days=30)).isoformat(),
        }
        if self.mode == "entitlements":
            base["entitlements_error"] = "the licensing authority could not give the entitlements: SDK exception"
        else:
            base |= {"entitlements": dict(self.pool), "license_type": "flex"}
        if call.operation in ("register", "renew_registration"):
            if call.operation == "register" and call.body.get("token") != "good":
                return Outcome(call, False, reason="refused (403): unknown registration token")
            self.serial += 1
            return Outcome(
                call,
                True,
                {
                    **base,
                    "virtual_account": "east",
                    "identity_certificate": f"cert-{self.serial}",
                    "registration_valid_until": (at + timedelta(days=365)).isoformat(),
                    "renew_registration_at": (at + timedelta(days=182)).isoformat(),
                    "public_key_pem": codes.public_pem(KEY),
                },
            )
        if call.operation == "authorize":
            return Outcome(call, True, base)
        if call.operation == "report":
            self.reports.append(call.body)
            used = {"standard": 0, "premium": 0, "ivr_ports": 0}
            for r in call.body["reports"]:
                used = {k: max(used[k], r["peak"][k]) for k in used}
            return Outcome(call, True, {**verdict(self.pool, used), **base})
        if call.operation == "deregister":
            return Outcome(call, True, {"status": "deregistered"})
        assert call.operation in ("probe", "pin_key"), call.operation  # an install never calls the authority
        return Outcome(call, True, {"public_key_pem": codes.public_pem(KEY)})


class FakeAgentStore(InMemoryStore):
    def __init__(self, authority: FakeAuthority) -> None:
        self.authority = authority
        self.rows: dict[str, tuple[State, int, int]] = {}
        self.calls: list[tuple[str, int, str, bool, str]] = []
        self.requests: dict[str, tuple[str, Call]] = {}  # id -> (instance, call), in the order asked

    async def load(self, uow: Any, instance: str) -> tuple[State, int] | None:
        found = self.rows.get(instance)
        return None if found is None else (found[0], found[1])

    async def save(
        self, uow: Any, instance: str, partition: int, before: State | None, after: State, version: int
    ) -> int:
        if (self.rows[instance][1] if instance in self.rows else 0) != version:
            raise ConcurrentUpdate("agent.instances", instance)
        self.rows[instance] = (after, version + 1, partition)
        return version + 1

    async def write(self, uow: Any, instance: str, outputs: Sequence[Output]) -> None:
        self.calls += [(instance, o.seq, o.operation, o.ok, o.message) for o in outputs if isinstance(o, Called)]
        self.requests |= {o.id: (instance, o.call) for o in outputs if isinstance(o, Requested)}

    def answer_all(self) -> list[AgentCallAnswered]:
        """Make every call asked for, as the caller does, and give the answers."""
        answers = [answered(i, rid, self.authority.answer(call)) for rid, (i, call) in self.requests.items()]
        self.requests.clear()
        return answers

    async def read(self, uow: Any, instance: str, need: object) -> object:
        raise AssertionError("the agent reads nothing within a unit of work")

    async def instances(self, uow: Any, partition: int) -> list[str]:
        return [i for i, (_, _, p) in self.rows.items() if p == partition]

    async def env(self, uow: Any) -> None:
        return None
