"""Peaks against a brute-force oracle: any arrival order of the same facts gives the same peaks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ccxlic_consumption.machine import Fact, PortsFact, RosterFact, SignInFact, SignOutFact
from ccxlic_consumption.peaks import sweep
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
MAX = timedelta(hours=5)
AGENTS = ["a", "b", "c", "d"]


def usage_at(facts: list[Fact], t: datetime, max_session: timedelta) -> tuple[dict[str, int], dict[str, str]]:
    """Usage at instant t straight from the definition, and who is signed in (agent -> license)."""
    known = [f for f in facts if f.at <= t]
    signed: dict[str, str] = {}
    for agent in set(AGENTS):
        about = [
            f
            for f in known
            if isinstance(f.body, RosterFact)
            or (isinstance(f.body, SignInFact | SignOutFact) and f.body.agent_id == agent)
        ]
        if not about:
            continue
        latest = max(about, key=lambda f: (f.at, f.event_id))
        body = latest.body
        if isinstance(body, SignInFact) and t < latest.at + max_session:
            signed[agent] = body.license
        if isinstance(body, RosterFact):
            for a in body.agents:
                if a.agent_id == agent and t < latest.at + max_session:
                    signed[agent] = a.license
    ports = [f for f in known if isinstance(f.body, PortsFact)]
    ivr = outp = outs = 0
    if ports:
        last = max(ports, key=lambda f: (f.at, f.event_id)).body
        assert isinstance(last, PortsFact)
        ivr, outp, outs = last.ivr, last.outbound_ports, last.outbound_seats
    premium = sum(1 for v in signed.values() if v == "premium")
    now = {
        "standard": len(signed) - premium,
        "premium": premium,
        "agents": len(signed),
        "ivr_ports": ivr,
        "outbound_ports": outp,
        "outbound_seats": outs,
    }
    return now, signed


def instants(facts: list[Fact], start: datetime, end: datetime, max_session: timedelta) -> list[datetime]:
    """Every instant of [start, end) where usage can change."""
    every = {start} | {f.at for f in facts} | {f.at + max_session for f in facts}
    return sorted(x for x in every if start <= x < end)


def oracle(facts: list[Fact], start: datetime, end: datetime, max_session: timedelta) -> dict[str, int]:
    """Evaluate usage at every instant where it can change, straight from the definition."""
    best = dict.fromkeys(("standard", "premium", "agents", "ivr_ports", "outbound_ports", "outbound_seats"), 0)
    for t in instants(facts, start, end, max_session):
        now, _ = usage_at(facts, t, max_session)
        best = {k: max(best[k], now[k]) for k in best}
    return best


def witness_oracle(
    facts: list[Fact], start: datetime, end: datetime, max_session: timedelta
) -> dict[str, tuple[datetime | None, list[tuple[str, str]]]]:
    """Per seat quantity: the first instant it reaches its peak, and who was signed in then (none for a 0 peak)."""
    best = oracle(facts, start, end, max_session)
    out: dict[str, tuple[datetime | None, list[tuple[str, str]]]] = {}
    for q in ("standard", "premium", "agents"):
        out[q] = (None, [])
        if best[q] == 0:
            continue
        for t in instants(facts, start, end, max_session):
            now, signed = usage_at(facts, t, max_session)
            if now[q] == best[q]:
                out[q] = (t, sorted(signed.items()))
                break
    return out


licenses = st.sampled_from(["standard", "premium"])
sign_in = st.builds(lambda a, lic: SignInFact(a, lic, lic), st.sampled_from(AGENTS), licenses)
sign_out = st.builds(SignOutFact, st.sampled_from(AGENTS))
roster = st.builds(
    lambda picked, lic: RosterFact(tuple(SignInFact(a, lic, lic) for a in sorted(picked))),
    st.sets(st.sampled_from(AGENTS), max_size=4),
    licenses,
)
ports = st.builds(PortsFact, st.integers(0, 9), st.integers(0, 3), st.integers(0, 3))
body = st.one_of(sign_in, sign_in, sign_out, roster, ports)
fact_lists = st.lists(st.builds(lambda m, b: (m, b), st.integers(0, 24 * 60 // 30), body), max_size=25).map(
    lambda xs: [Fact(T0 + timedelta(minutes=30 * m), f"e{i:03d}", b) for i, (m, b) in enumerate(xs)]
)


@settings(max_examples=300, deadline=None)
@given(fact_lists, st.randoms())
def test_peaks_match_the_oracle_in_any_order(facts: list[Fact], rnd: object) -> None:
    starts = [T0 + i * 4 * HOUR for i in range(7)]
    shuffled = list(facts)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    got = sweep(shuffled, starts, 4 * HOUR, MAX)
    for result in got:
        assert result.values() == oracle(facts, result.start, result.end, MAX), result.start


@settings(max_examples=200, deadline=None)
@given(fact_lists, st.randoms())
def test_each_witness_is_who_was_signed_in_when_the_peak_was_first_reached(facts: list[Fact], rnd: object) -> None:
    starts = [T0 + i * 4 * HOUR for i in range(7)]
    shuffled = list(facts)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    for result in sweep(shuffled, starts, 4 * HOUR, MAX):
        expected = witness_oracle(facts, result.start, result.end, MAX)
        for q, (at, who) in expected.items():
            peak = result.peaks[q]
            assert (peak.at, sorted((a.agent_id, a.license) for a in peak.agents)) == (at, who), (q, result.start)


@settings(max_examples=100, deadline=None)
@given(fact_lists)
def test_duplicate_facts_change_nothing(facts: list[Fact]) -> None:
    starts = [T0 + i * 8 * HOUR for i in range(4)]
    once = [r.values() for r in sweep(facts, starts, 8 * HOUR, MAX)]
    twice = [r.values() for r in sweep(facts + facts, starts, 8 * HOUR, MAX)]
    assert once == twice


def test_witness_names_who_was_signed_in_at_the_peak() -> None:
    facts = [
        Fact(T0 + HOUR, "1", SignInFact("a", "premium", "supervisor")),
        Fact(T0 + 2 * HOUR, "2", SignInFact("b", "standard", "inbound_voice only")),
        Fact(T0 + 3 * HOUR, "3", SignOutFact("a")),
        Fact(T0 + 4 * HOUR, "4", SignInFact("c", "standard", "inbound_voice only")),
    ]
    (result,) = sweep(facts, [T0], 8 * HOUR, timedelta(hours=24))
    assert result.values()["agents"] == 2
    agents = result.peaks["agents"]
    assert agents.at == T0 + 2 * HOUR
    assert [(s.agent_id, s.license, s.why) for s in agents.agents] == [
        ("a", "premium", "supervisor"),
        ("b", "standard", "inbound_voice only"),
    ]
    assert result.peaks["premium"].at == T0 + HOUR
    assert result.peaks["ivr_ports"].value == 0 and result.peaks["ivr_ports"].at is None


def test_peak_of_total_is_not_the_sum_of_peaks() -> None:
    facts = [
        Fact(T0 + HOUR, "1", SignInFact("a", "premium", "chat")),
        Fact(T0 + 2 * HOUR, "2", SignOutFact("a")),
        Fact(T0 + 3 * HOUR, "3", SignInFact("b", "standard", "x")),
    ]
    (result,) = sweep(facts, [T0], 8 * HOUR, timedelta(hours=24))
    assert result.values()["premium"] == 1 and result.values()["standard"] == 1
    assert result.values()["agents"] == 1


def test_session_without_events_expires_after_max_session() -> None:
    facts = [Fact(T0 + HOUR, "1", SignInFact("a", "standard", "x"))]
    day = timedelta(hours=24)
    results = sweep(facts, [T0 + i * 8 * HOUR for i in range(5)], 8 * HOUR, day)
    assert [r.values()["agents"] for r in results] == [1, 1, 1, 1, 0]


def test_sign_out_exactly_at_the_interval_start_is_not_counted_in_it() -> None:
    facts = [Fact(T0 + HOUR, "1", SignInFact("a", "standard", "x")), Fact(T0 + 8 * HOUR, "2", SignOutFact("a"))]
    results = sweep(facts, [T0, T0 + 8 * HOUR], 8 * HOUR, timedelta(hours=24))
    assert [r.values()["agents"] for r in results] == [1, 0]
