"""The delivery worker: one loop per channel, so a broken channel never blocks the others or the consumer.

Deliveries are rows written in the same transaction as the alert that caused them; each loop sends the rows due
for its channel, records the outcome, and retries a failure with exponential backoff (up to a longest delay) until
the delivery is `give_up_after` seconds old: a channel that comes back after an outage gets every notification, within
the longest delay.
Several workers of alerting share the table: a loop takes a lease on each row just before it sends it (its next
attempt moves `lease` seconds ahead, a row another loop holds is skipped), so a notification is sent once however
slow the sink; if the worker dies mid-send, the lease runs out and another sends it (at least once).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from ccxlic_runtime.channels import Channel, DeliveryError
from ccxlic_runtime.db import Database
from ccxlic_runtime.effects import lease_one, until_stopped

log = logging.getLogger(__name__)

Outcome = Callable[[str, str], None]  # (channel, "sent" | "retry" | "failed")


class Deliverer:
    def __init__(
        self,
        db: Database,
        channel: Channel,
        *,
        give_up_after: float,
        backoff: float,
        max_backoff: float,
        lease: float,
        wake: asyncio.Event,
        on_outcome: Outcome | None = None,
    ) -> None:
        self.db = db
        self.channel = channel
        self.give_up_after = give_up_after
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.lease = lease
        self.wake = wake
        self.on_outcome = on_outcome

    async def run(self, stop: asyncio.Event) -> None:
        await until_stopped(self.once, self.wake, stop, f"the {self.channel.name} delivery loop")

    async def once(self, limit: int = 50) -> int:
        """Send what is due for this channel, one row at a time, each under its own lease taken just before it is
        sent (a lease over many rows would run out behind a slow sink, and another worker would send them again);
        return how many rows were attempted."""
        attempted = 0
        while attempted < limit:
            row = await lease_one(
                self.db,
                "deliveries",
                where="channel = $2 and status = 'pending'",
                order="id",
                lease=self.lease,
                returning="id, notification, attempts",
                args=(self.channel.name,),
            )
            if row is None:
                break
            await self._attempt(int(row["id"]), json.loads(row["notification"]), int(row["attempts"]) + 1)
            attempted += 1
        return attempted

    async def _attempt(self, delivery_id: int, notification: dict[str, object], attempt: int) -> None:
        try:
            await self.channel.send(notification)
        except DeliveryError as exc:
            await self._failed(delivery_id, attempt, str(exc))
            return
        except Exception as exc:  # a channel bug must not stop the loop
            await self._failed(delivery_id, attempt, f"unexpected: {exc!r}")
            return
        async with self.db.pool.acquire() as conn:
            await conn.execute(
                "update deliveries set status = 'sent', attempts = $2, finished_at = now(), last_error = null"
                " where id = $1",
                delivery_id,
                attempt,
            )
        self._outcome("sent")

    async def _failed(self, delivery_id: int, attempt: int, error: str) -> None:
        delay = min(self.max_backoff, self.backoff * 2 ** min(attempt - 1, 30))
        async with self.db.pool.acquire() as conn:
            status = await conn.fetchval(
                "update deliveries set attempts = $2, last_error = $3,"
                " status = case when now() - created_at >= make_interval(secs => $4) then 'failed' else 'pending' end,"
                " finished_at = case when now() - created_at >= make_interval(secs => $4) then now() end,"
                " next_attempt_at = now() + make_interval(secs => $5) where id = $1 returning status",
                delivery_id,
                attempt,
                error[:2000],
                self.give_up_after,
                delay,
            )
        final = status == "failed"
        log.warning(
            "delivery failed" + ("; giving up" if final else "; will retry"),
            extra={"channel": self.channel.name, "attempt": attempt, "error": error, "retry_in_s": delay},
        )
        self._outcome("failed" if final else "retry")

    def _outcome(self, outcome: str) -> None:
        if self.on_outcome is not None:
            self.on_outcome(self.channel.name, outcome)
