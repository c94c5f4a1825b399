"""Fakes of the runtime's ports, for handler tests that run without PostgreSQL or Kafka.

`FakeTransaction` is the runtime's `Transaction` with the two statements that touch PostgreSQL replaced: claims
go to a set and emitted events to a list. Everything else (scratch, the before-commit flushes, the after-commit
callbacks) is the runtime's own code, so a handler behaves as it does inside `Database.transaction`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ccxlic_contract import Event
from ccxlic_runtime.db import Transaction


class FakeTransaction(Transaction):
    """One unit of work in memory. `await tx.commit()` runs the flushes and callbacks a real commit runs."""

    def __init__(self, claimed: set[str] | None = None) -> None:
        conn: Any = None  # the fake stores ignore the connection
        super().__init__(conn, "")
        self.claimed = claimed if claimed is not None else set()
        self.events: list[Event] = []

    async def claim(self, key: str) -> bool:
        return key in await self.claim_many([key])

    async def claim_many(self, keys: Sequence[str]) -> set[str]:
        new = set(keys) - self.claimed
        self.claimed |= new
        return new

    async def emit(self, *events: Event) -> None:
        self.events.extend(events)
        self.emitted += len(events)

    async def commit(self) -> list[Event]:
        """Finish as `Database.transaction` does; return what was emitted."""
        await self._finish()
        self._committed()
        return self.events

    async def fail_at_commit(self) -> list[Event]:
        """Run the before-commit work, then fail as a COMMIT can: no after-commit callback runs. (Undoing what the
        before-commit work wrote is the fake store's part.)"""
        await self._finish()
        return self.events
