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
import contextlib
import hashlib
import logging
import operator
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from ccxlic_audit.log import Head
from ccxlic_contract import Event, Topic, encode, key_for, topic_for
from ccxlic_contract.events import MAX_MESSAGE_BYTES
from pydantic import SecretStr

from ccxlic_runtime.kafka import EventProducer, topic_name
from ccxlic_runtime.settings import redact_url, url_secrets

log = logging.getLogger(__name__)

SCHEMA_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
if TYPE_CHECKING:
    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record] | asyncpg.Connection[asyncpg.Record]
RUNTIME_MIGRATIONS = resources.files("ccxlic_runtime") / "migrations"


class ConcurrentUpdate(RuntimeError):
    """Another worker changed an instance's row since this one read it (its partition moved in a rebalance while
    this worker still held the instance). Transient: the runtime retries the batch, and the processor, which dropped
    its cached copy, reads the row afresh."""

    def __init__(self, table: str, key: str) -> None:
        super().__init__(f"{table} row {key!r} was changed by another worker; retrying on fresh state")


class DatabaseError(RuntimeError):
    """The database could not be reached or migrated."""


class MigrationChanged(DatabaseError):
    """A migration file differs from the one applied: the service does not start on a schema it cannot trust."""


def check_schema(schema: str) -> str:
    if not SCHEMA_PATTERN.fullmatch(schema):
        raise ValueError(f"schema name {schema!r} must match {SCHEMA_PATTERN.pattern}")
    return schema


async def create_pool(dsn: str | SecretStr, schema: str, *, max_size: int = 5) -> asyncpg.Pool:
    """A pool whose connections see only `schema`."""
    dsn = dsn.get_secret_value() if isinstance(dsn, SecretStr) else dsn
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_size,
            server_settings={"search_path": check_schema(schema), "application_name": f"ccxlic-{schema}"},
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(
            f"cannot connect to PostgreSQL at {redact_url(dsn)}: {_without(str(exc), dsn)}; is it up? Try `make up`."
        ) from None
    assert pool is not None
    return pool


def _without(text: str, dsn: str) -> str:
    """`text` with the URL's passwords taken out, should a driver's message quote them."""
    for secret in url_secrets(dsn):
        text = text.replace(secret, "***")
    return text


class SchemaMissing(RuntimeError):
    """A program's schema does not exist and its role may not create it: the administrator must."""


async def migrate(pool: asyncpg.Pool, schema: str, *folders: Traversable, runtime: bool = True) -> list[str]:
    """Apply, in name order, the `*.sql` files not applied yet: the runtime's (unless `runtime` is False: a schema
    that holds no service's stream, such as `auth`), then each folder's.

    One small runner for every service; an advisory lock keeps two processes from migrating at once. Each applied
    file's SHA-256 is kept, and a file changed after it was applied stops the service (MigrationChanged): a
    migration is never edited, a new one is added.
    """
    check_schema(schema)
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("select pg_advisory_lock(hashtext($1))", schema)
        try:
            if not await conn.fetchval("select true from pg_namespace where nspname = $1", schema):
                try:
                    await conn.execute(f'create schema if not exists "{schema}"')
                except asyncpg.InsufficientPrivilegeError:
                    raise SchemaMissing(
                        f"schema {schema!r} does not exist, and this program's role may not create schemas in the "
                        f'database: its administrator makes it for the role (create schema "{schema}" authorization '
                        "<the program's role>), as deploy/pg-roles.sh does for the default names"
                    ) from None
            # A schema shared by several programs (`auth`) belongs to a group role they are members of: its tables
            # are made as that role, so every member can use them (made as the member, only it could).
            shared = await conn.fetchrow(
                "select nspowner::regrole::text, nspowner::regrole::text <> quote_ident(current_user)"
                " and pg_has_role(current_user, nspowner, 'MEMBER') from pg_namespace where nspname = $1",
                schema,
            )
            if shared is not None and shared[1]:  # owned by a group role this one is a member of
                await conn.execute(f"set role {shared[0]}")
            await conn.execute(
                "create table if not exists schema_migrations ("
                " name text primary key, applied_at timestamptz not null default now())"
            )
            await conn.execute("alter table schema_migrations add column if not exists checksum text")
            done = {r["name"]: r["checksum"] for r in await conn.fetch("select name, checksum from schema_migrations")}
            for folder in (RUNTIME_MIGRATIONS, *folders) if runtime else folders:
                scripts = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
                for script in scripts:
                    name = (
                        f"{folder.name}/{script.name}" if folder is not RUNTIME_MIGRATIONS else f"runtime/{script.name}"
                    )
                    text = script.read_text()
                    checksum = hashlib.sha256(text.encode()).hexdigest()
                    if name in done:
                        if done[name] is None:  # applied before checksums were kept: this file is the reference
                            await conn.execute(
                                "update schema_migrations set checksum = $2 where name = $1", name, checksum
                            )
                        elif done[name] != checksum:
                            raise MigrationChanged(
                                f"migration {name} of schema {schema!r} changed after it was applied (SHA-256 "
                                f"{done[name][:12]}... then, {checksum[:12]}... now): a migration is never edited; "
                                "restore it and add a new one"
                            )
                        continue
                    async with conn.transaction():
                        await conn.execute(text)
                        await conn.execute(
                            "insert into schema_migrations(name, checksum) values ($1, $2)", name, checksum
                        )
                    applied.append(name)
        finally:
            await conn.execute("reset role")
            await conn.execute("select pg_advisory_unlock(hashtext($1))", schema)
    if applied:
        log.info("migrated", extra={"schema": schema, "applied": applied})
    return applied


@dataclass(frozen=True, slots=True)
class Rows:
    """How queued rows of one table are written: `columns` as (name, PostgreSQL type); `key`, the columns of its
    unique key. Under a key the first row is kept (one queued before, or the table's), or with `update` the last one
    is: as row-by-row inserts `on conflict do nothing` / `do update` would leave the table."""

    table: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...] = ()
    update: bool = False

    def statement(self) -> str:
        names = ", ".join(f'"{c}"' for c, _ in self.columns)
        arrays = ", ".join(f"${i}::{t}[]" for i, (_, t) in enumerate(self.columns, 1))
        sql = f'insert into "{self.table}" ({names}) select * from unnest({arrays})'
        if self.key:
            keys = ", ".join(f'"{c}"' for c in self.key)
            changes = ", ".join(f'"{c}" = excluded."{c}"' for c, _ in self.columns if c not in self.key)
            sql += f" on conflict ({keys}) " + (f"do update set {changes}" if self.update and changes else "do nothing")
        return sql


@dataclass(frozen=True, slots=True)
class Versioned:
    """Rows saved over the version they were read at (an instance's state): `key`, a text primary key; `columns`,
    the others as (name, PostgreSQL type); the table's `version` column counts the saves. Saved at the flush, all in
    two statements, before any other queued row; a row another worker saved meanwhile is `ConcurrentUpdate`."""

    table: str
    key: str
    columns: tuple[tuple[str, str], ...]
    touched: str | None = None  # a column set to the transaction's time by every save (its default on insert)

    def insert(self) -> str:
        names = ", ".join(f'"{c}"' for c in (self.key, *(c for c, _ in self.columns), "version"))
        types = ("text", *(t for _, t in self.columns), "bigint")
        arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, 1))
        return (
            f'insert into "{self.table}" ({names}) select * from unnest({arrays})'
            f' on conflict ("{self.key}") do nothing returning "{self.key}"'
        )

    def update(self) -> str:
        types = ("text", "bigint", "bigint", *(t for _, t in self.columns))
        arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, 1))
        aliases = ", ".join(f'"{c}"' for c in ("_key", "_read", "_saved", *(c for c, _ in self.columns)))
        changes = ", ".join(f'"{c}" = u."{c}"' for c, _ in self.columns)
        if self.touched:
            changes += f', "{self.touched}" = now()'
        return (
            f'update "{self.table}" as t set {changes}, version = u._saved from unnest({arrays}) as u({aliases})'
            f' where t."{self.key}" = u._key and t.version = u._read returning t."{self.key}"'
        )


class Transaction:
    """One unit of work: the dedup records, the state and the outgoing events, committed together.

    Rows are queued (`queue`) and written per table in one statement (`flush`): before COMMIT, and by a store before
    it reads what they may hold, so a batch costs a statement per table, not one per row or per instance."""

    def __init__(self, conn: Connection, producer_prefix: str) -> None:
        self.conn = conn
        self._prefix = producer_prefix
        self.emitted = 0
        self._queued: dict[Rows, dict[object, tuple[Any, ...]]] = {}
        self._versioned: dict[Versioned, dict[str, tuple[int, int, tuple[Any, ...]]]] = {}
        self._sequence = 0

    def save(self, rows: Versioned, key: str, values: tuple[Any, ...], version: int) -> int:
        """Save a row over `version` (0: a new row) at the next flush; return its version then."""
        pending = self._versioned.setdefault(rows, {})
        first = pending.get(key)
        read = first[0] if first is not None else version  # saved again before the flush: still over what was read
        pending[key] = (read, version + 1, values)
        return version + 1

    def queue(self, rows: Rows, values: Iterable[tuple[Any, ...]]) -> None:
        """Write these rows of `rows.table` at the next flush (in the order queued)."""
        pending = self._queued.setdefault(rows, {})
        if rows.key:
            key_of = operator.itemgetter(*(i for i, (c, _) in enumerate(rows.columns) if c in rows.key))
            for v in values:
                k = key_of(v)
                if rows.update:
                    pending.pop(k, None)  # the later row wins, in the later row's place
                    pending[k] = v
                elif k not in pending:
                    pending[k] = v
        else:
            for v in values:
                self._sequence += 1
                pending[self._sequence] = v

    async def flush(self) -> None:
        """Write every queued row: one statement per table, the versioned saves first (a lost race then raises
        ConcurrentUpdate before any other row can clash with the other worker's)."""
        versioned, self._versioned = self._versioned, {}
        for v, saves in versioned.items():
            for fresh in (True, False):
                keys = [k for k, (read, _, _) in saves.items() if (read == 0) == fresh]
                if not keys:
                    continue
                cols = [list(c) for c in zip(*(saves[k][2] for k in keys), strict=True)]
                versions = [saves[k][1] for k in keys]
                if fresh:
                    done = await self.conn.fetch(v.insert(), keys, *cols, versions)
                else:
                    done = await self.conn.fetch(v.update(), keys, [saves[k][0] for k in keys], versions, *cols)
                if len(done) != len(keys):
                    lost = sorted(set(keys) - {r[0] for r in done})
                    raise ConcurrentUpdate(v.table, lost[0])
        queued, self._queued = self._queued, {}
        for rows, pending in queued.items():
            if pending:
                await self.conn.execute(rows.statement(), *(list(col) for col in zip(*pending.values(), strict=True)))

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

    async def emit(self, *events: Event, topic: Topic | None = None) -> None:
        """Queue events for publication, in order, on `topic` (default: the topic of each event's type); they go out
        only if this transaction commits. An event larger than the broker takes is refused here, not at the relay,
        where it would block every event after it."""
        if not events:
            return
        rows = []
        for e in events:
            destination = topic or topic_for(e.type)
            if not destination.allows(e.type):
                raise ValueError(f"{e.type} does not belong on {destination.name}")
            value = encode(e)
            if len(value) > MAX_MESSAGE_BYTES:
                raise ValueError(f"{e.type} {e.id} is {len(value):,} bytes, more than {MAX_MESSAGE_BYTES:,}")
            rows.append((topic_name(destination, self._prefix), key_for(e), value))
        await self._queue(rows)
        self.emitted += len(events)

    async def _queue(self, rows: Sequence[tuple[str, bytes, bytes]]) -> None:
        self.queue(OUTBOX, rows)

    async def log_head(self, instance: str) -> Head:
        """Where the instance's licensing log stands (`Head()`: it has no entry)."""
        row = await self.conn.fetchrow("select seq, hash, frontier from audit_heads where instance = $1", instance)
        if row is not None:
            return Head.unpacked(int(row["seq"]), str(row["hash"]), bytes(row["frontier"]))
        head = Head()  # a log from before audit_heads: its head from its entries, once
        for r in await self.conn.fetch("select entry from audit_log where instance = $1 order by seq", instance):
            head = head.after(str(r["entry"]).encode())
        return head

    def append_log(self, instance: str, rows: Sequence[LogRow], head: Head) -> None:
        """Append entries to an instance's licensing log at the next flush ((instance, seq, kind, at, entry, hash)
        each), and `head`, where they leave it."""
        self.queue(AUDIT_LOG, rows)
        self.queue(AUDIT_HEADS, [(instance, head.seq, head.hash, head.packed())])


OUTBOX = Rows("outbox", (("topic", "text"), ("key", "bytea"), ("value", "bytea")))
AUDIT_LOG = Rows(
    "audit_log",
    (
        ("instance", "text"),
        ("seq", "bigint"),
        ("kind", "text"),
        ("at", "timestamptz"),
        ("entry", "text"),
        ("hash", "text"),
    ),
)
AUDIT_HEADS = Rows(
    "audit_heads",
    (("instance", "text"), ("seq", "bigint"), ("hash", "text"), ("frontier", "bytea")),
    key=("instance",),
    update=True,
)
LogRow = tuple[str, int, str, datetime, str, str]


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
                await tx.flush()
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


class Relay:
    """Publishes committed outbox rows in order, then deletes them, until stopped (then it drains once more).

    One relay publishes for a schema at a time (a PostgreSQL advisory lock): two workers of a service share its
    outbox, and two relays would each publish rows the other had not deleted yet. A failure (the broker or the
    database away) is retried with backoff, never fatal; `failing_since` tells /readyz, and the metrics count it.
    """

    def __init__(
        self,
        db: Database,
        producer: EventProducer,
        *,
        on_failure: Callable[[], None] | None = None,
        on_published: Callable[[int], None] | None = None,
        batch: int = 1000,
        max_backoff: float = 5.0,
    ) -> None:
        self.db = db
        self.producer = producer
        self.batch = batch
        self.max_backoff = max_backoff
        self.on_failure = on_failure
        self.on_published = on_published
        self.failing_since: float | None = None
        self.failure = ""

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        while True:
            # cleared before the rows are read: a commit while they are read sets it again, and the wait below sees it
            self.db.outbox_ready.clear()
            try:
                published = await self.once()
            except Exception as exc:  # a blip of the broker or the database: keep the rows, try again
                if self.failing_since is None:
                    self.failing_since = asyncio.get_running_loop().time()
                self.failure = f"{type(exc).__name__}: {str(exc)[:200]}"
                if self.on_failure is not None:
                    self.on_failure()
                log.warning("outbox relay failed; retrying", extra={"error": repr(exc), "retry_in_s": backoff})
                if stop.is_set():
                    log.error("stopping with outbox rows not published; they go out after the restart")
                    return
                await _sleep_or_stop(backoff, stop)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            self.failing_since, backoff = None, 0.1
            if published:
                continue
            if stop.is_set():
                return
            waiter = asyncio.ensure_future(self.db.outbox_ready.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()

    async def once(self) -> int:
        """Publish up to `batch` rows while holding the schema's relay lock; return how many went out."""
        async with self.db.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("select pg_try_advisory_xact_lock(hashtext($1))", f"outbox:{self.db.schema}"):
                return 0  # another worker's relay publishes this schema's outbox now
            rows = await conn.fetch("select seq, topic, key, value from outbox order by seq limit $1", self.batch)
            if not rows:
                return 0
            await self.producer.send_records([(r["topic"], r["key"], r["value"]) for r in rows])
            await conn.execute("delete from outbox where seq = any($1::bigint[])", [r["seq"] for r in rows])
        if self.on_published is not None:
            self.on_published(len(rows))
        return len(rows)


async def _sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


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
