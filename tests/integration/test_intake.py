"""The whole intake over the real PostgreSQL: decode → claim → handle → dead letter, as the runtime's RecordProcessor
runs it, with generated keys, ids, headers and payloads. Whatever arrives, every record ends handled once or
dead-lettered with its reason, and the batch returns: the partition moves on. The application stores what it handles
in `text` columns, so what the store cannot hold would show here.

`make test` runs a bounded number of examples; `make fuzz` more (CCXLIC_FUZZ_EXAMPLES, a twentieth of them here: each
example is a few transactions on the real database)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ccxlic_contract import Event, encode
from ccxlic_contract.codec import STRUCTURED_CONTENT_TYPE
from ccxlic_contract.events import DeadLettered
from ccxlic_contract.topics import AGENT_ACTIVITY, TOPICS
from ccxlic_runtime.db import Database, Transaction, create_pool, migrate
from ccxlic_runtime.metrics import RuntimeMetrics
from ccxlic_runtime.policy import Delivery, RecordProcessor, partition_for
from ccxlic_testing.build import Build
from ccxlic_testing.plugin import Stack, drop_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
EXAMPLES = max(25, int(os.environ.get("CCXLIC_FUZZ_EXAMPLES", "300")) // 20)
INSTANCE = "cc-intake"
TOPIC = AGENT_ACTIVITY.name


class Storing:
    """An application that stores each event it handles in the database (what the store cannot hold would fail)."""

    def __init__(self) -> None:
        self.handled: list[tuple[int, str]] = []
        self._batch: list[tuple[int, str]] = []

    def begin(self, uow: Transaction) -> None:
        self._batch = []

    async def handle(self, uow: Transaction, event: Event, d: Delivery) -> None:
        await uow.conn.execute(
            "insert into seen (event_id, source, agent_id) values ($1, $2, $3)",
            event.id,
            event.source,
            getattr(event.data, "agent_id", ""),
        )
        self._batch.append((d.offset, event.id))

    async def finish(self, uow: Transaction) -> None:
        pass

    def committed(self) -> None:
        self.handled += self._batch

    def abort(self) -> None:
        self._batch = []

    async def failed(self, uow: Transaction, event: Event, reason: str) -> None:
        pass

    def forget(self) -> None:
        pass


_text = st.text(
    st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Z", "Cc"]) | st.sampled_from(["\x00", "\n"]),
    max_size=12,
)
_keys = st.one_of(
    st.just(INSTANCE.encode()),
    st.just(INSTANCE.encode() + b"\n"),
    st.none(),
    st.binary(max_size=12),
    _text.map(lambda t: t.encode("utf-8", "surrogatepass")),
)
_header_names = st.one_of(st.text(max_size=8), st.sampled_from(["content-type", "ce_id", "ce_type", "ce_source"]))
_headers = st.lists(st.tuples(_header_names, st.one_of(st.none(), st.binary(max_size=12))), max_size=4)


@st.composite
def record(draw: st.DrawFn, n: int) -> Delivery:
    """A record at offset n: a valid sign-in with one thing made awkward (key, id, source, agent, headers), or
    arbitrary bytes."""
    event = Build(INSTANCE).sign_in(T0 + timedelta(seconds=n), f"a{n}", "chat")
    doc: dict[str, Any] = json.loads(encode(event))
    doc["id"] = f"e{n}"
    what = draw(st.sampled_from(["valid", "key", "id", "source", "agent", "headers", "bytes", "cut"]))
    key: bytes | None = INSTANCE.encode()
    headers: list[tuple[str, bytes | None]] = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]
    if what == "key":
        key = draw(_keys)
    elif what == "id":
        doc["id"] = f"e{n}" + draw(_text)
    elif what == "source":
        doc["source"] = "urn:" + draw(_text)
    elif what == "agent":
        doc["data"]["agent_id"] = draw(_text)
    elif what == "headers":
        headers = draw(_headers)
    value: bytes | None = json.dumps(doc).encode()
    if what == "bytes":
        value = draw(st.one_of(st.none(), st.binary(max_size=40)))
    elif what == "cut" and value is not None:
        value = value[: draw(st.integers(0, len(value)))]
    return Delivery(TOPIC, partition_for(INSTANCE, 3), n, key, value, tuple(headers), None)


@st.composite
def traffic(draw: st.DrawFn) -> list[Delivery]:
    return [draw(record(n)) for n in range(draw(st.integers(1, 12)))]


@pytest.fixture
def schema(stack: Stack, pg_schema: str) -> Iterator[str]:
    yield pg_schema
    asyncio.run(drop_schema(stack.database_url, pg_schema))


async def _run(stack: Stack, schema: str, deliveries: list[Delivery], size: int) -> tuple[Storing, set[int]]:
    pool = await create_pool(stack.database_url, schema, max_size=2)
    try:
        await migrate(pool, schema)
        await pool.execute("create table if not exists seen (event_id text, source text, agent_id text)")
        app = Storing()
        db = Database(pool, schema, "")
        p = RecordProcessor(
            service="intake",
            inputs=TOPICS,
            prefix="",
            db=db,
            app=app,
            metrics=RuntimeMetrics(CollectorRegistry()),
            stop=asyncio.Event(),
            partitions=lambda topic: 3,
            max_backoff=0.0,
        )
        for start in range(0, len(deliveries), size):
            batch = deliveries[start : start + size]
            # the partition moves on: a batch that does not return in time is a stall
            await asyncio.wait_for(p.process_batch([(d, p.decode(d)) for d in batch]), timeout=60)
        rows = await pool.fetch("select value from outbox")
        letters = set()
        for r in rows:
            event = json.loads(bytes(r["value"]))
            if event["type"] == DeadLettered.model_fields["type"].default:
                letters.add(int(event["data"]["offset"]))
        await pool.execute("truncate outbox, seen, processed_events")
        return app, letters
    finally:
        await pool.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(traffic(), st.integers(1, 6))
def test_every_record_ends_handled_or_dead_lettered_and_the_partition_moves_on(
    stack: Stack, schema: str, deliveries: list[Delivery], size: int
) -> None:
    app, letters = asyncio.run(_run(stack, schema, deliveries, size))
    handled = {offset for offset, _ in app.handled}
    for d in deliveries:
        assert (d.offset in handled) != (d.offset in letters), (
            f"record {d.offset} ended {'both' if d.offset in handled else 'neither'} handled and dead-lettered: {d}"
        )
