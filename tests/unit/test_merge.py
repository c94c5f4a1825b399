"""The event-time merge (ccxlic_runtime.merge), pure: wall time is a parameter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ccxlic_runtime.merge import TP, Item, Merge
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
TOPICS = ["entitlements", "activity", "clock"]


def item(topic: str, offset: int, minute: int | None, partition: int = 0) -> Item[str]:
    time = None if minute is None else T0 + timedelta(minutes=minute)
    return Item((topic, partition), offset, time, f"{topic}@{offset}")


def drain(m: Merge[str], now: float = 0.0) -> list[str]:
    out, _ = m.take(now, 10_000)
    return [i.value for i in out]


def fresh(max_idle: float = 0.1) -> Merge[str]:
    m: Merge[str] = Merge(TOPICS, max_idle)
    m.assign([(t, 0) for t in TOPICS])
    return m


def test_the_head_with_the_smallest_event_time_goes_first_ties_by_topic_rank_then_offset() -> None:
    m = fresh(max_idle=0.0)
    m.add(("activity", 0), [item("activity", 0, 5), item("activity", 1, 10)])
    m.add(("clock", 0), [item("clock", 0, 5), item("clock", 1, 20)])
    m.add(("entitlements", 0), [item("entitlements", 0, 5)])
    m.set_lags({(t, 0): 0 for t in TOPICS})
    # entitlements (rank 0) wins the tie at :05, then activity (rank 1), then the clock
    assert drain(m) == ["entitlements@0", "activity@0", "clock@0", "activity@1", "clock@1"]


def test_records_keep_their_log_order_within_a_partition() -> None:
    m = fresh(max_idle=0.0)
    m.add(("activity", 0), [item("activity", 0, 30), item("activity", 1, 10)])  # a late record stays behind
    m.add(("clock", 0), [item("clock", 0, 20), item("clock", 1, 40)])
    m.add(("entitlements", 0), [item("entitlements", 0, 0), item("entitlements", 1, 50)])
    m.set_lags({(t, 0): 0 for t in TOPICS})
    assert drain(m) == ["entitlements@0", "clock@0", "activity@0", "activity@1", "clock@1", "entitlements@1"]


def test_a_partition_behind_its_high_watermark_is_waited_for_however_long_it_takes() -> None:
    m = fresh(max_idle=0.0)
    m.add(("activity", 0), [item("activity", 0, 10)])
    m.add(("entitlements", 0), [item("entitlements", 0, 0)])
    m.set_lags({("activity", 0): 0, ("entitlements", 0): 0, ("clock", 0): 3})
    assert drain(m, now=1_000_000.0) == []  # the clock lags: it may hold earlier records; wait, whatever the time
    _, why = m.take(1_000_000.0, 10)
    assert "clock[0]: 3 record(s) on the broker" in why[0].reason
    m.add(("clock", 0), [item("clock", 0, 5)])
    m.set_lags({("clock", 0): 0})
    assert drain(m, now=1_000_000.0) == ["entitlements@0", "clock@0", "activity@0"]


def test_an_unknown_high_watermark_is_waited_for() -> None:
    m = fresh()
    m.add(("activity", 0), [item("activity", 0, 10)])
    m.set_lags({("activity", 0): 0, ("entitlements", 0): 0})  # the clock's is not known yet
    assert drain(m, now=50.0) == []


def test_a_caught_up_partition_is_waited_for_at_most_max_idle_then_not_until_it_has_data_again() -> None:
    m = fresh(max_idle=0.25)
    m.add(("activity", 0), [item("activity", 0, 10), item("activity", 1, 11)])
    m.set_lags({(t, 0): 0 for t in TOPICS})
    assert drain(m, now=5.0) == []  # entitlements and clock caught up and empty: the idle starts now
    assert drain(m, now=5.125) == []
    assert drain(m, now=5.25) == ["activity@0", "activity@1"]
    m.add(("activity", 0), [item("activity", 2, 12)])
    assert drain(m, now=5.5) == ["activity@2"]  # still given up on: no new wait
    m.add(("clock", 0), [item("clock", 0, 13)])
    m.add(("activity", 0), [item("activity", 3, 14)])
    assert drain(m, now=6.0) == ["clock@0"]  # the clock had data again, ran dry again: a new wait
    assert drain(m, now=6.125) == []
    assert drain(m, now=6.25) == ["activity@3"]


def test_a_record_that_did_not_decode_goes_first() -> None:
    m = fresh()
    m.add(("activity", 0), [item("activity", 0, None), item("activity", 1, 10)])
    m.add(("clock", 0), [item("clock", 0, 0)])
    m.add(("entitlements", 0), [item("entitlements", 0, 0)])
    m.set_lags({(t, 0): 0 for t in TOPICS})
    assert drain(m)[:1] == ["activity@0"]


def test_tasks_are_independent_and_served_in_turn() -> None:
    m: Merge[str] = Merge(["activity"], 0.1)
    m.assign([("activity", 0), ("activity", 1)])
    m.add(("activity", 0), [item("activity", i, i, 0) for i in range(3)])
    m.add(("activity", 1), [item("activity", i, i, 1) for i in range(3)])
    m.set_lags({("activity", 0): 0, ("activity", 1): 0})
    out, _ = m.take(0.0, 4)
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
    between at any time (max_idle never matters: nothing is caught up while records remain): the order is always
    the one of fetching everything first."""
    records = {t: [item(t, i, minute) for i, minute in enumerate(minutes)] for t, minutes in logs.items()}

    def run(plan: list[tuple[str, int, bool]]) -> list[str]:
        m = fresh(max_idle=0.0)
        position = dict.fromkeys(TOPICS, 0)

        def lags() -> dict[TP, int | None]:
            return {(t, 0): len(records[t]) - position[t] for t in TOPICS}

        m.set_lags(lags())
        out: list[str] = []
        now = 0.0
        for topic, n, take in [*plan, *((t, 10**6, True) for t in TOPICS)]:
            chunk = records[topic][position[topic] : position[topic] + n]
            position[topic] += len(chunk)
            m.add((topic, 0), chunk)
            m.set_lags(lags())
            if take:
                now += 1.0
                out += drain(m, now)
        return out

    everything_first = run([])
    assert run(fetches) == everything_first
    assert sorted(everything_first) == sorted(i.value for r in records.values() for i in r)
