"""The loop of a worker that makes the effects a committed unit of work asked for, outside it: alerting's
deliveries, the Smart Agent's calls. Each such worker keeps its work as rows written in the unit of work, leases one
row just before it acts on it (`lease_one`), and is woken when a commit adds rows (`until_stopped`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg

from ccxlic_runtime.db import Database

log = logging.getLogger(__name__)


async def until_stopped(
    once: Callable[[], Awaitable[int]], wake: asyncio.Event, stop: asyncio.Event, what: str, idle: float = 0.5
) -> None:
    """Run `once` (how many rows it acted on) while it finds work; then wait for `wake`, `stop`, or `idle` seconds.
    The database away is waited for, never fatal."""
    while not stop.is_set():
        wake.clear()  # before the rows are read: a commit that adds one meanwhile sets it again
        try:
            done = await once()
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning(f"{what} waits for the database", extra={"error": repr(exc)})
            done = 0
        if done:
            continue
        waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())}
        await asyncio.wait(waiters, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()


async def lease_one(
    db: Database, table: str, *, where: str, order: str, lease: float, returning: str, args: tuple[object, ...] = ()
) -> Mapping[str, Any] | None:
    """Lease the first due row of `table` (`where`, on `$2`... for `args`; first by `order`) for `lease` seconds: its
    `next_attempt_at` moves ahead, so another worker skips it until then, and a worker that dies mid-act leaves it to
    be acted on again. The row's columns in `returning`, or None when no row is due."""
    rows = await db.fetch(
        f'update "{table}" set next_attempt_at = now() + make_interval(secs => $1) where id = ('
        f' select id from "{table}" where next_attempt_at <= now() and ({where}) order by {order}'
        f" limit 1 for update skip locked) returning {returning}",
        lease,
        *args,
    )
    return dict(rows[0]) if rows else None
