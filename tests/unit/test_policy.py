"""The runtime's error policy (ccxlic_runtime.policy.RecordProcessor) over a FakeDatabase: whatever the records and
whatever the application raises, every record ends handled once or dead-lettered with its reason, and nothing
escapes. `make test` runs a bounded fuzz; `make fuzz` a long one (CCXLIC_FUZZ_EXAMPLES)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ccxlic_contract import Event, decode, encode
from ccxlic_contract.events import MAX_DEAD_LETTER_PAYLOAD, DeadLettered
from ccxlic_contract.examples import golden_examples
from ccxlic_contract.topics import AGENT_ACTIVITY, CLOCK, DEAD_LETTER, INTAKE, TOPICS
from ccxlic_runtime.db import Transaction
from ccxlic_runtime.metrics import RuntimeMetrics
from ccxlic_runtime.policy import Delivery, PermanentError, RecordProcessor, dead_letter, partition_for
from ccxlic_testing.build import Build
from ccxlic_testing.fakes import FakeDatabase, InMemoryStore, delivery
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
FUZZ = int(os.environ.get("CCXLIC_FUZZ_EXAMPLES", "300"))


class Recording(InMemoryStore):
    """An application whose only state is what it handled (rolled back with a failed transaction)."""

    def __init__(self, poison: dict[str, BaseException] | None = None) -> None:
        self.handled: list[str] = []
        self.failures: list[tuple[str, str]] = []
        self.poison = poison or {}
        self._batch: list[str] = []

    def begin(self, uow: Transaction) -> None:
        self._batch = []

    async def handle(self, uow: Transaction, event: Event, d: Delivery) -> None:
        if event.id in self.poison:
            raise self.poison[event.id]
        self._batch.append(event.id)

    async def finish(self, uow: Transaction) -> None:
        self.handled += self._batch

    def committed(self) -> None:
        pass

    def abort(self) -> None:
        self._batch = []

    async def failed(self, uow: Transaction, event: Event, reason: str) -> None:
        self.failures.append((event.id, reason))

    def forget(self) -> None:
        pass


def processor(app: Recording, db: FakeDatabase, **kw: Any) -> RecordProcessor:
    return RecordProcessor(
        service="test",
        inputs=TOPICS,
        prefix="",
        db=db,
        app=app,
        metrics=RuntimeMetrics(CollectorRegistry()),
        stop=asyncio.Event(),
        max_backoff=0.0,
        **kw,
    )


def dead(db: FakeDatabase) -> dict[int, DeadLettered]:
    """Dead letters by the offset of the record they stand for."""
    return {e.data.offset: e for e in db.published() if isinstance(e, DeadLettered)}


# ---------------------------------------------------------------- single findings


async def test_an_exception_of_any_kind_from_the_application_dead_letters_that_record_and_the_rest_go_on() -> None:
    b = Build("cc-1")
    events = [b.sign_in(T0, f"a{n}") for n in range(6)]
    poison = {events[1].id: KeyError("boom"), events[3].id: PermanentError("never"), events[4].id: RecursionError()}
    app = Recording(poison)
    db = FakeDatabase(app)
    p = processor(app, db)
    records = [delivery(e, offset=n) for n, e in enumerate(events)]
    await p.process_batch([(d, p.decode(d)) for d in records])
    assert app.handled == [events[0].id, events[2].id, events[5].id]
    letters = dead(db)
    assert sorted(letters) == [1, 3, 4]
    assert "KeyError: 'boom'" in letters[1].data.error and "failed 3 times" in letters[1].data.error
    assert "rejected: never" in letters[3].data.error
    assert [i for i, _ in app.failures] == [events[1].id, events[3].id, events[4].id]


async def test_a_dead_letter_always_fits_the_broker_and_says_how_to_find_the_original() -> None:
    value = b"x" * 999_000
    d = Delivery("ccx.agent-activity", 2, 77, b"k" * 5000, value, (("h", None), ("x" * 300, b"v" * 5000)), None)
    letter = dead_letter("consumption", d, "r" * 10_000)
    data = letter.data
    assert data.payload_truncated and data.payload_size == len(value)
    assert base64.b64decode(data.payload_base64) == value[:MAX_DEAD_LETTER_PAYLOAD]
    assert data.payload_sha256 == hashlib.sha256(value).hexdigest()
    assert (data.topic, data.partition, data.offset) == ("ccx.agent-activity", 2, 77)
    assert len(data.error) == 4000 and data.key is not None and len(data.key) == 1024
    assert len(encode(letter)) < 100_000  # far under the broker's 1 MB


_any_text = st.text(st.characters(codec="utf-8") | st.sampled_from(["\x00", "\n", "\udcff", "\ud800"]), max_size=40)


@settings(max_examples=FUZZ, deadline=None)
@given(
    topic=_any_text,
    partition=st.integers(-(2**40), 2**40),
    offset=st.integers(-(2**70), 2**70),
    key=st.one_of(st.none(), st.binary(max_size=40), st.just(b"inst-1\n")),
    value=st.one_of(st.none(), st.binary(max_size=200)),
    headers=st.lists(
        st.tuples(st.one_of(_any_text, st.binary(max_size=10)), st.one_of(st.none(), st.binary(max_size=20))),
        max_size=70,
    ),
    timestamp=st.one_of(st.none(), st.integers(-(2**62), 2**62)),
    reason=_any_text,
)
def test_building_a_dead_letter_never_fails_and_it_is_always_a_valid_event(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[Any, bytes | None]],
    timestamp: int | None,
    reason: str,
) -> None:
    """Whatever the record (a key with a final newline, NUL and lone surrogates in any text, absurd numbers), its dead
    letter is built, and the codec reads it back: the refusal path has nothing left to fail on."""
    d = Delivery(topic, partition, offset, key, value, tuple(headers), timestamp)
    letter = dead_letter("test", d, reason)
    assert decode(encode(letter)) == letter
    assert letter.subject == "unknown" or key is not None


async def test_a_record_whose_failure_cannot_be_recorded_is_dead_lettered_alone() -> None:
    """`failed` (telling downstream) fails for this record whatever is retried: the dead letter goes alone and says
    so; the partition moves on."""

    class Deaf(Recording):
        async def failed(self, uow: Transaction, event: Event, reason: str) -> None:
            raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")

    b = Build("cc-1")
    events = [b.sign_in(T0, f"a{n}") for n in range(3)]
    app = Deaf({events[1].id: KeyError("boom")})
    db = FakeDatabase(app)
    p = processor(app, db)
    await asyncio.wait_for(
        p.process_batch([(d, p.decode(d)) for d in (delivery(e, offset=n) for n, e in enumerate(events))]), 10
    )
    assert app.handled == [events[0].id, events[2].id]
    [letter] = dead(db).values()
    assert "recording the failure for downstream failed too" in letter.data.error


async def test_a_dead_letter_is_counted_once_however_often_its_transaction_is_retried() -> None:
    app = Recording()
    db = FakeDatabase(app)
    p = processor(app, db)
    bad = Delivery(AGENT_ACTIVITY.name, 0, 5, b"cc-1", b"{not json", (), None)
    db.fail_at |= {1, 2}  # the first two COMMITs fail: the batch is retried twice
    await p.process_batch([(bad, p.decode(bad))])
    counted = p.metrics.registry.get_sample_value(
        "ccxlic_events_dead_lettered_total", {"service": "test", "topic": AGENT_ACTIVITY.name}
    )
    assert counted == 1.0 and len(dead(db)) == 1


async def test_an_event_too_far_ahead_of_the_records_timestamp_is_dead_lettered_with_the_reason() -> None:
    app = Recording()
    db = FakeDatabase(app)
    p = processor(app, db, max_skew=timedelta(days=1))
    b = Build("cc-1")
    stamped = int(T0.timestamp() * 1000)
    ok, ahead = b.sign_in(T0 + timedelta(hours=20), "a1"), b.sign_in(datetime(2100, 1, 1, tzinfo=UTC), "a2")
    records = [replace(delivery(e, offset=n), timestamp_ms=stamped) for n, e in enumerate([ok, ahead])]
    await p.process_batch([(d, p.decode(d)) for d in records])
    assert app.handled == [ok.id]
    assert "ahead of the record's timestamp" in dead(db)[1].data.error
    assert "CCXLIC_MAX_EVENT_SKEW" in dead(db)[1].data.error


async def test_a_record_stamped_in_the_future_by_its_publisher_does_not_widen_the_skew_check() -> None:
    app = Recording()
    db = FakeDatabase(app)
    p = processor(app, db, max_skew=timedelta(days=1))
    future = datetime(2100, 1, 1, tzinfo=UTC)
    event = Build("cc-1").sign_in(future, "a1")  # a CreateTime topic: the record carries the publisher's clock
    record = replace(delivery(event, offset=0), timestamp_ms=int(future.timestamp() * 1000))
    await p.process_batch([(record, p.decode(record))])
    assert app.handled == []
    assert "ahead of the record's timestamp" in dead(db)[0].data.error


async def test_a_tick_for_every_instance_is_one_input_per_partition() -> None:
    app = Recording()
    db = FakeDatabase(app)
    p = processor(app, db)
    tick = Build("x").tick(T0, every_instance=True)
    records = [delivery(tick, CLOCK, offset=0, partition=n) for n in range(3)] + [delivery(tick, CLOCK, 1, 0)]
    await p.process_batch([(d, p.decode(d)) for d in records])
    assert app.handled == [tick.id] * 3  # the copy on partition 0 came twice: handled once


async def test_a_key_that_is_not_the_subject_and_a_wrong_partition_are_refused() -> None:
    app = Recording()
    db = FakeDatabase(app)
    p = processor(app, db, partitions=lambda topic: 3)
    e = Build("cc-1").sign_in(T0, "a1")
    right = partition_for("cc-1", 3)
    records = [
        replace(delivery(e, offset=0, partition=right), key=b"other"),
        replace(delivery(e, offset=1, partition=(right + 1) % 3), key=b"cc-1"),
        replace(delivery(e, offset=2, partition=right), key=None),
    ]
    await p.process_batch([(d, p.decode(d)) for d in records])
    letters = dead(db)
    assert app.handled == [] and sorted(letters) == [0, 1, 2]
    assert "key 'other'" in letters[0].data.error and "belongs on partition" in letters[1].data.error
    assert "no key" in letters[2].data.error


async def test_a_misplaced_event_is_rerouted_keyed_by_its_subject_once_and_handled_when_it_comes_back() -> None:
    """Any publisher is heard: an event on another partition than its subject's, or with another key or none (as
    librdkafka's default partitioner or a keyless publisher puts them), is published on the reroute topic keyed by
    its subject, once, and handled when it comes back on the right partition; one misplaced on the reroute topic
    itself is dead-lettered (no loop)."""
    app = Recording()
    db = FakeDatabase(app)
    p = processor(app, db, partitions=lambda topic: 3, reroute=INTAKE)
    b = Build("cc-1")
    events = [b.sign_in(T0, "a1"), b.sign_in(T0, "a2"), b.sign_in(T0, "a3")]
    right = partition_for("cc-1", 3)
    records = [
        replace(delivery(events[0], offset=0, partition=right), key=b"other"),
        replace(delivery(events[1], offset=1, partition=(right + 1) % 3), key=b"cc-1"),
        replace(delivery(events[2], offset=2, partition=(right + 2) % 3), key=None),
    ]
    await p.process_batch([(d, p.decode(d)) for d in records])
    await p.process_batch([(d, p.decode(d)) for d in records])  # redelivered: nothing rerouted twice
    rerouted = [(topic, e) for topic, e in db.outbox if topic == INTAKE.name]
    assert app.handled == [] and dead(db) == {} and [e.id for _, e in rerouted] == [e.id for e in events]
    back = [delivery(e, INTAKE, offset=n, partition=right) for n, (_, e) in enumerate(rerouted)]
    await p.process_batch([(d, p.decode(d)) for d in back])
    assert app.handled == [e.id for e in events]
    wrong_here = replace(delivery(events[0], INTAKE, offset=9, partition=(right + 1) % 3))
    await p.process_batch([(wrong_here, p.decode(wrong_here))])
    assert "belongs on partition" in dead(db)[9].data.error
    counted = p.metrics.registry.get_sample_value(
        "ccxlic_events_rerouted_total", {"service": "test", "topic": AGENT_ACTIVITY.name}
    )
    assert counted == 3.0


# ---------------------------------------------------------------- a fuzz: any records, any failures

_golden = list(golden_examples().values())
_values = st.one_of(
    st.none(),
    st.binary(max_size=200),
    st.sampled_from(_golden),
    st.sampled_from(_golden).map(lambda raw: raw.replace(b'"', b"'", 1)),
    st.sampled_from(_golden).map(lambda raw: raw[: len(raw) // 2]),
)
_headers = st.lists(
    st.tuples(st.sampled_from(["content-type", "ce_type", "ce_id", "x"]), st.one_of(st.none(), st.binary(max_size=30))),
    max_size=4,
)
_failures = st.sampled_from(
    [None, None, None, PermanentError("no"), ValueError("bad"), KeyError("k"), AssertionError()]
)


@st.composite
def traffic(draw: st.DrawFn) -> tuple[list[Delivery], dict[str, BaseException]]:
    b = Build("cc-1")
    out: list[Delivery] = []
    poison: dict[str, BaseException] = {}
    for n in range(draw(st.integers(1, 25))):
        if draw(st.booleans()):
            e = b.sign_in(T0 + timedelta(seconds=n), f"a{n % 4}")
            if draw(st.booleans()) and out:  # a redelivered or duplicated event
                e = e.model_copy(update={"id": f"cc-1-{draw(st.integers(1, n))}"})
            failure = draw(_failures)
            if failure is not None:
                poison[e.id] = failure
            out.append(delivery(e, AGENT_ACTIVITY, n))
        else:
            out.append(
                Delivery(
                    AGENT_ACTIVITY.name,
                    0,
                    n,
                    draw(st.one_of(st.none(), st.binary(max_size=8))),
                    draw(_values),
                    tuple(draw(_headers)),
                    None,
                )
            )
    return out, poison


@settings(max_examples=FUZZ, deadline=None)
@given(traffic(), st.integers(1, 8))
def test_every_record_ends_handled_once_or_dead_lettered_and_nothing_escapes(
    records: tuple[list[Delivery], dict[str, BaseException]], size: int
) -> None:
    deliveries, poison = records
    app = Recording(poison)
    db = FakeDatabase(app)
    p = processor(app, db)

    async def run() -> None:
        for start in range(0, len(deliveries), size):
            batch = deliveries[start : start + size]
            await p.process_batch([(d, p.decode(d)) for d in batch])

    asyncio.run(run())
    letters = dead(db)
    handled_offsets = set()
    first_seen: dict[str, int] = {}
    for d in deliveries:
        decoded = p.decode(d)
        if isinstance(decoded, Exception):
            assert d.offset in letters, f"refused record {d.offset} has no dead letter"
            continue
        first = first_seen.setdefault(decoded.id, d.offset)
        if decoded.id in poison:
            if first == d.offset:
                assert d.offset in letters and decoded.id not in app.handled
            continue
        handled_offsets.add(first)
        assert d.offset not in letters
    # each valid event handled exactly once (duplicates and redeliveries are no-ops), in delivery order
    expected = [p.decode(d).id for d in deliveries if d.offset in handled_offsets]  # type: ignore[union-attr]
    assert app.handled == expected
    for letter in letters.values():
        assert letter.data.error and letter.data.topic == AGENT_ACTIVITY.name
    assert all(json.loads(encode(e)) for _, e in db.outbox)
    assert {t for t, _ in db.outbox} <= {DEAD_LETTER.name}


async def test_the_latency_histogram_counts_events_and_the_batch_one_batches() -> None:
    b = Build("cc-1")
    app = Recording()
    db = FakeDatabase(app)
    p = processor(app, db)
    for start in (0, 7):  # two batches, 7 and 5 records
        records = [delivery(b.sign_in(T0, f"a{n}"), offset=n) for n in range(start, start + (7 if start == 0 else 5))]
        await p.process_batch([(d, p.decode(d)) for d in records])
    sample = p.metrics.registry.get_sample_value
    assert sample("ccxlic_event_processing_seconds_count", {"service": "test"}) == 12
    assert sample("ccxlic_batch_processing_seconds_count", {"service": "test"}) == 2
