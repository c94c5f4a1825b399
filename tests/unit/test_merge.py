"""The event-time merge (ccxlic_runtime.merge), pure: what the broker said, and after which fetch, is a parameter."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from ccxlic_runtime.merge import TP, Item, Merge
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
TOPICS = ["entitlements", "activity", "clock"]


def item(topic: str, offset: int, minute: int | None, partition: int = 0, arrival: int = 0) -> Item[str]:
    time = None if minute is None else T0 + timedelta(minutes=minute)
    return Item((topic, partition), offset, time, f"{topic}@{offset}", arrival)


def drain(m: Merge[str]) -> list[str]:
    out, _ = m.take(10_000)
    return [i.value for i in out]


def fresh() -> Merge[str]:
    m: Merge[str] = Merge(TOPICS)
    m.assign([(t, 0) for t in TOPICS])
    return m


def caught_up(m: Merge[str], evidence: int = 0, topics: list[str] | None = None) -> None:
    """The broker said, after fetch number `evidence`, that these partitions have nothing more."""
    m.set_ends({(t, 0): 0 for t in topics or TOPICS}, evidence)


def test_the_head_with_the_smallest_event_time_goes_first_ties_by_topic_rank_then_offset() -> None:
    m = fresh()
    m.add(("activity", 0), [item("activity", 0, 5), item("activity", 1, 10)])
    m.add(("clock", 0), [item("clock", 0, 5), item("clock", 1, 20)])
    m.add(("entitlements", 0), [item("entitlements", 0, 5)])
    caught_up(m)
    # entitlements (rank 0) wins the tie at :05, then activity (rank 1), then the clock
    assert drain(m) == ["entitlements@0", "activity@0", "clock@0", "activity@1", "clock@1"]


def test_records_keep_their_log_order_within_a_partition() -> None:
    m = fresh()
    m.add(("activity", 0), [item("activity", 0, 30), item("activity", 1, 10)])  # a late record stays behind
    m.add(("clock", 0), [item("clock", 0, 20), item("clock", 1, 40)])
    m.add(("entitlements", 0), [item("entitlements", 0, 0), item("entitlements", 1, 50)])
    caught_up(m)
    assert drain(m) == ["entitlements@0", "clock@0", "activity@0", "activity@1", "clock@1", "entitlements@1"]


def test_a_partition_behind_its_high_watermark_is_waited_for_however_long_it_takes() -> None:
    m = fresh()
    m.add(("activity", 0), [item("activity", 0, 10)])
    m.add(("entitlements", 0), [item("entitlements", 0, 0)])
    caught_up(m, topics=["activity", "entitlements"])
    m.set_lags({("clock", 0): 3})
    assert drain(m) == []  # the clock lags: it may hold earlier records; wait, however long
    _, why = m.take(10)
    assert "clock[0]: 3 record(s) on the broker" in why[0].reason and why[0].needs == ()
    m.add(("clock", 0), [item("clock", 0, 5)])
    caught_up(m, topics=["clock"])  # fetched, and the broker says it has nothing more
    assert drain(m) == ["entitlements@0", "clock@0", "activity@0"]


def test_an_unknown_end_offset_is_asked_for() -> None:
    m = fresh()
    m.add(("activity", 0), [item("activity", 0, 10)])
    caught_up(m, topics=["entitlements"])  # the clock's is not known yet
    assert drain(m) == []
    _, why = m.take(10)
    assert why[0].needs == (("clock", 0),)


def test_an_empty_partition_is_caught_up_only_on_evidence_newer_than_the_record_that_would_overtake_it() -> None:
    """A fetch's high watermark said 0 before the tick arrived: no evidence. The sign-ins written before the tick may
    not be fetched yet: wait, and ask the broker. Its answer, after the tick arrived, is the evidence."""
    m = fresh()
    m.set_lags({(t, 0): 0 for t in TOPICS})  # what the fetches said, long ago
    caught_up(m, evidence=3)  # and what the broker said after fetch 3
    m.add(("clock", 0), [item("clock", 0, 20, arrival=4)])  # a tick, in fetch 4
    assert drain(m) == []
    _, why = m.take(10)
    assert set(why[0].needs) == {("activity", 0), ("entitlements", 0)} and "asking the broker" in why[0].reason
    m.set_ends({("activity", 0): 2, ("entitlements", 0): 0}, evidence=4)  # asked after fetch 4: 2 sign-ins wait
    assert drain(m) == []
    m.add(("activity", 0), [item("activity", 0, 5, arrival=5), item("activity", 1, 6, arrival=5)])
    m.set_lags({("activity", 0): 0})
    assert drain(m) == []  # entitlements: caught up as of fetch 4, the sign-ins came in fetch 5
    caught_up(m, evidence=5, topics=["entitlements"])
    assert drain(m) == ["activity@0", "activity@1"]  # then activity ran dry: known caught up only as of fetch 3...
    assert drain(m) == []  # ... and the tick (fetch 4) waits for evidence newer than that
    caught_up(m, evidence=5, topics=["activity"])
    assert drain(m) == ["clock@0"]


def test_a_record_that_did_not_decode_goes_first() -> None:
    m = fresh()
    m.add(("activity", 0), [item("activity", 0, None), item("activity", 1, 10)])
    m.add(("clock", 0), [item("clock", 0, 0)])
    m.add(("entitlements", 0), [item("entitlements", 0, 0)])
    caught_up(m)
    assert drain(m)[:1] == ["activity@0"]


def test_tasks_are_independent_and_served_in_turn() -> None:
    m: Merge[str] = Merge(["activity"])
    m.assign([("activity", 0), ("activity", 1)])
    m.add(("activity", 0), [item("activity", i, i, 0) for i in range(3)])
    m.add(("activity", 1), [item("activity", i, i, 1) for i in range(3)])
    out, _ = m.take(4)
    assert [(i.tp[1], i.offset) for i in out] == [(0, 0), (1, 0), (0, 1), (1, 1)]


def test_a_new_assignment_drops_every_buffer() -> None:
    m = fresh()
    m.add(("activity", 0), [item("activity", 0, 10)])
    m.assign([(t, 0) for t in TOPICS] + [(t, 1) for t in TOPICS])
    assert m.buffered(("activity", 0)) == 0 and sorted(m.tasks) == [0, 1]


# ---------------------------------------------------------------- a replay comes out the same, however it is fetched

streams = st.fixed_dictionaries(
    {t: st.lists(st.integers(0, 30), max_size=12) for t in TOPICS}
)  # event minutes per topic, in log order (not sorted: records can be late)


@settings(max_examples=300, deadline=None)
@given(streams, st.lists(st.tuples(st.sampled_from(TOPICS), st.integers(1, 5), st.booleans()), max_size=60))
def test_a_replay_comes_out_in_the_same_order_whatever_the_fetches(
    logs: dict[str, list[int]], fetches: list[tuple[str, int, bool]]
) -> None:
    """Every record is in the log (a replay): the lags say so. Fetch them in any chunks and interleaving, take in
    between, with the broker's end offsets asked whenever the merge needs them: the order is always the one of
    fetching everything first."""
    records = {t: [item(t, i, minute) for i, minute in enumerate(minutes)] for t, minutes in logs.items()}

    def run(plan: list[tuple[str, int, bool]]) -> list[str]:
        m = fresh()
        position = dict.fromkeys(TOPICS, 0)

        def lags() -> dict[TP, int | None]:
            return {(t, 0): len(records[t]) - position[t] for t in TOPICS}

        m.set_lags(lags())
        out: list[str] = []
        fetches = 0
        for topic, n, take in [*plan, *((t, 10**6, True) for t in TOPICS)]:
            chunk = records[topic][position[topic] : position[topic] + n]
            position[topic] += len(chunk)
            if chunk:
                fetches += 1
            m.add((topic, 0), [replace(i, arrival=fetches) for i in chunk])
            m.set_lags(lags())
            if take:
                for _ in range(10):  # the consumer loop: take, ask the broker what the merge needs, take again
                    got, why = m.take(10_000)
                    out += [i.value for i in got]
                    needs = {tp for w in why for tp in w.needs}
                    if not needs:
                        break
                    m.set_ends({tp: lags()[tp] for tp in needs}, fetches)  # asked now: after every fetch so far
        return out

    everything_first = run([])
    assert run(fetches) == everything_first
    assert sorted(everything_first) == sorted(i.value for r in records.values() for i in r)
