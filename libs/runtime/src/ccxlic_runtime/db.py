"""PostgreSQL for every service: one schema per service, SQL migrations, and effects exactly once.

Each service owns one schema; its pool's `search_path` is that schema alone, so its SQL is unqualified and it reads
no other. Every schema gets the runtime's two tables first:
- `processed_events`, the dedup ("tracking") record: one row per input handled, by its idempotency key;
- `outbox`, the events to publish.
A handler writes the dedup record, its new state and its outgoing events in one transaction (`Database.transaction`);
the outbox relay publishes committed rows to Kafka and deletes them; the consumer commits its Kafka offset only
after the transaction. Redelivery finds the dedup record and changes nothing; a crash before the relay has
published leaves the rows to publish after restart (consumers dedupe by event id).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from ccxlic_contract import Event, encode, key_for, topic_for

from ccxlic_runtime.kafka import EventProducer, topic_name

log = logging.getLogger(__name__)

SCHEMA_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
if TYPE_CHECKING:
    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record] | asyncpg.Connection[asyncpg.Record]
RUNTIME_MIGRATIONS = resources.files("ccxlic_runtime") / "migrations"


class ConcurrentUpdate(RuntimeError):
    """Another worker changed an instance's row since this one read it (a `*` tick handled by the worker that owns
    the clock partition, or a partition that moved in a rebalance). Transient: the runtime retries the batch, and
    the handler, which dropped its cached copy, reads the row afresh."""

    def __init__(self, table: str, key: str) -> None:
        super().__init__(f"{table} row {key!r} was changed by another worker; retrying on fresh state")


class DatabaseError(RuntimeError):
    """The database could not be reached or migrated."""


def check_schema(schema: str) -> str:
    if not SCHEMA_PATTERN.match(schema):
        raise ValueError(f"schema name {schema!r} must match {SCHEMA_PATTERN.pattern}")
    return schema


async def create_pool(dsn: str, schema: str, *, max_size: int = 5) -> asyncpg.Pool:
    """A pool whose connections see only `schema`."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_size,
            server_settings={"search_path": check_schema(schema), "application_name": f"ccxlic-{schema}"},
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(
            f"cannot connect to PostgreSQL at {_redact(dsn)}: {exc}; is it up? Try `make up`."
        ) from None
    assert pool is not None
    return pool


def _redact(dsn: str) -> str:
    return re.sub(r"://([^:@/]+):[^@/]*@", r"://\1:***@", dsn)


async def migrate(pool: asyncpg.Pool, schema: str, *folders: Traversable) -> list[str]:
    """Apply, in name order, the `*.sql` files not applied yet: the runtime's, then each folder's.

    One small runner for every service; an advisory lock keeps two processes from migrating at once.
    """
    check_schema(schema)
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("select pg_advisory_lock(hashtext($1))", schema)
        try:
            await conn.execute(f'create schema if not exists "{schema}"')
            await conn.execute(
                "create table if not exists schema_migrations ("
                " name text primary key, applied_at timestamptz not null default now())"
            )
            done = {r["name"] for r in await conn.fetch("select name from schema_migrations")}
            for folder in (RUNTIME_MIGRATIONS, *folders):
                scripts = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
                for script in scripts:
                    name = (
                        f"{folder.name}/{script.name}" if folder is not RUNTIME_MIGRATIONS else f"runtime/{script.name}"
                    )
                    if name in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(script.read_text())
                        await conn.execute("insert into schema_migrations(name) values ($1)", name)
                    applied.append(name)
        finally:
            await conn.execute("select pg_advisory_unlock(hashtext($1))", schema)
    if applied:
        log.info("migrated", extra={"schema": schema, "applied": applied})
    return applied


class Transaction:
    """One unit of work: the dedup record, the state and the outgoing events, committed together."""

    def __init__(self, conn: Connection, producer_prefix: str) -> None:
        self.conn = conn
        self._prefix = producer_prefix
        self.emitted = 0
        self.scratch: dict[Any, Any] = {}
        """Working state of this transaction: later inputs of a batch see what earlier ones changed."""
        self._after_commit: list[Callable[[], None]] = []
        self._before_commit: dict[Any, Callable[[Transaction], Awaitable[None]]] = {}

    def before_commit(self, key: Any, callback: Callable[[Transaction], Awaitable[None]]) -> None:
        """Run `await callback(tx)` once, just before commit (one per key): batch-level work such as flushing the
        state that several inputs of a batch changed."""
        self._before_commit.setdefault(key, callback)

    async def _finish(self) -> None:
        while self._before_commit:
            key = next(iter(self._before_commit))
            await self._before_commit.pop(key)(self)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the transaction has committed (e.g. to update an in-memory cache); never on rollback."""
        self._after_commit.append(callback)

    def _committed(self) -> None:
        for callback in self._after_commit:
            callback()

    async def claim(self, key: str) -> bool:
        """Record that the input `key` is handled. False when it was handled before: then do nothing."""
        row = await self.conn.fetchval(
            "insert into processed_events(event_key) values ($1) on conflict do nothing returning true", key
        )
        return row is True

    async def claim_many(self, keys: Sequence[str]) -> set[str]:
        """Claim many inputs in one round trip; return the keys not handled before."""
        if not keys:
            return set()
        rows = await self.conn.fetch(
            "insert into processed_events(event_key) select distinct unnest($1::text[])"
            " on conflict do nothing returning event_key",
            list(keys),
        )
        return {r["event_key"] for r in rows}

    async def emit(self, *events: Event) -> None:
        """Queue events for publication; they go out only if this transaction commits."""
        if not events:
            return
        await self.conn.executemany(
            "insert into outbox(topic, key, value) values ($1, $2, $3)",
            [(topic_name(topic_for(e.type), self._prefix), key_for(e), encode(e)) for e in events],
        )
        self.emitted += len(events)


class Database:
    """A service's schema: its pool, its transactions, and the wake-up for its outbox relay."""

    def __init__(self, pool: asyncpg.Pool, schema: str, topic_prefix: str = "") -> None:
        self.pool = pool
        self.schema = schema
        self.topic_prefix = topic_prefix
        self.outbox_ready = asyncio.Event()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self.pool.acquire() as conn:
            tx = Transaction(conn, self.topic_prefix)
            async with conn.transaction():
                yield tx
                await tx._finish()
        tx._committed()
        if tx.emitted:
            self.outbox_ready.set()

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return list(await conn.fetch(sql, *args))

    async def ping(self) -> bool:
        try:
            async with self.pool.acquire(timeout=2) as conn:
                return bool(await conn.fetchval("select true"))
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False


async def relay_outbox(db: Database, producer: EventProducer, stop: asyncio.Event, *, batch: int = 1000) -> None:
    """Publish committed outbox rows in order, then delete them; runs until `stop` is set, then drains once more."""
    while True:
        published = await publish_outbox_once(db, producer, batch=batch)
        if published:
            continue
        if stop.is_set():
            return
        db.outbox_ready.clear()
        waiter = asyncio.ensure_future(db.outbox_ready.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopper}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()


async def publish_outbox_once(db: Database, producer: EventProducer, *, batch: int = 1000) -> int:
    """Publish up to `batch` rows; return how many went out."""
    rows: Sequence[asyncpg.Record] = await db.fetch(
        "select seq, topic, key, value from outbox order by seq limit $1", batch
    )
    if not rows:
        return 0
    await producer.send_records([(r["topic"], r["key"], r["value"]) for r in rows])
    async with db.pool.acquire() as conn:
        await conn.execute("delete from outbox where seq = any($1::bigint[])", [r["seq"] for r in rows])
    return len(rows)


async def prune_processed(db: Database, older_than: timedelta, *, chunk: int = 10000) -> int:
    """Delete dedup records handled longer ago than `older_than`, a chunk at a time (short transactions, no long
    lock); return how many went."""
    deleted = 0
    while True:
        status = await db.pool.execute(
            "delete from processed_events where event_key in (select event_key from processed_events"
            " where processed_at < now() - $1::interval limit $2)",
            older_than,
            chunk,
        )
        n = int(status.split()[-1])
        deleted += n
        if n < chunk:
            return deleted
