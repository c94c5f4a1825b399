"""The caller: makes the calls the agent asked for, outside any unit of work, and publishes each answer to the agent's
own input (`licensing.agent-calls`), where the instance that asked hears it.

A call is a row of `requests`, committed with the state that asked for it. The loop leases one row just before its
call (its next attempt moves `lease` seconds ahead, so another worker skips it), makes the call, and in one
transaction deletes the row and queues the answer on the outbox. A worker that dies mid-call leaves the row to be
called again when the lease runs out (at least once, as every call over a network is); the answer's id is the call's,
so the instance hears one answer. A call never holds a transaction open, and a retried batch never calls again.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable

from ccxlic_contract.events import AgentCallAnswered, CallAnsweredData
from ccxlic_contract.topics import AGENT_CALLS
from ccxlic_runtime.db import Database
from ccxlic_runtime.effects import lease_one, until_stopped
from pydantic import ValidationError

from ccxlic_agent.machine import IDS, SOURCE, Call, Outcome

Perform = Callable[[Call], Awaitable[Outcome]]
PerformFor = Callable[[str, Call], Awaitable[Outcome]]
"""A call made for a named instance (the usage report, which carries the instance's log checkpoints: witness.py)."""


def answered(instance: str, request_id: str, outcome: Outcome) -> AgentCallAnswered:
    """The answer as the event the instance hears, at the call's time. An answer the contract cannot carry (a NUL
    character, too many fields, JSON too deep) is the call's failure, with the reason."""
    call = outcome.call
    data: dict[str, object] = {
        "call_id": request_id,
        "operation": call.operation,
        "ok": outcome.ok,
        "answer": outcome.answer,
        "reason": outcome.reason[:2000],
    }
    event_id = str(uuid.uuid5(IDS, f"{request_id}:answer"))
    try:
        if "\\u0000" in json.dumps(outcome.answer):
            raise ValueError("the answer holds a NUL character")
        return AgentCallAnswered(
            id=event_id, source=SOURCE, time=call.at, subject=instance, data=CallAnsweredData.model_validate(data)
        )
    except (ValidationError, ValueError, TypeError) as exc:
        why = f"the licensing authority's answer cannot be used: {str(exc).splitlines()[0]}"[:2000]
        data |= {"ok": False, "answer": {}, "reason": why}
        return AgentCallAnswered(
            id=event_id, source=SOURCE, time=call.at, subject=instance, data=CallAnsweredData.model_validate(data)
        )


class Caller:
    def __init__(
        self,
        db: Database,
        perform: Perform,
        *,
        lease: float,
        wake: asyncio.Event,
        perform_for: PerformFor | None = None,
    ) -> None:
        self.db = db
        self.perform = perform
        self.perform_for = perform_for
        self.lease = lease
        self.wake = wake

    async def run(self, stop: asyncio.Event) -> None:
        await until_stopped(self.once, self.wake, stop, "the Smart Agent's caller")

    async def once(self, limit: int = 50) -> int:
        """Make the calls that are due, each under its own lease taken just before it is made; how many were made."""
        made = 0
        while made < limit:
            row = await lease_one(
                self.db,
                "requests",
                where="true",
                order="created",
                lease=self.lease,
                returning="id, instance, call::text as call",
            )
            if row is None:
                break
            rid, instance = str(row["id"]), str(row["instance"])
            call = Call.model_validate_json(str(row["call"]))
            try:
                if self.perform_for is not None:
                    outcome = await self.perform_for(instance, call)
                else:
                    outcome = await self.perform(call)
            except Exception as exc:  # a bug of the client must not stop the loop: the call failed, and says why
                outcome = Outcome(call, False, reason=f"unexpected: {exc!r}"[:1000])
            async with self.db.transaction() as uow:
                mine = await uow.conn.fetchval("delete from requests where id = $1 returning id", rid)
                if mine is not None:  # else another worker, after the lease ran out, answered it first
                    await uow.emit(answered(instance, rid, outcome), topic=AGENT_CALLS)
            made += 1
        return made
