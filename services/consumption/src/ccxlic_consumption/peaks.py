"""Exact peaks per reporting interval, with a witness, from the set of facts. Pure.

The usage at instant t is fixed by the facts alone, not by the order they arrived in: each agent is in the state of
its latest fact at or before t, ordered by (time, id), where a roster is a fact about every agent (listed: signed
in; not listed: signed out); a signed-in state ends `max_session` after the fact that set it (expiry); ports are the
latest sample. For each interval [start, end) the peak of each quantity is the maximum of that step function over
the interval, and its witness is the first instant it is reached, with the agents signed in then.

A fact at t can only change usage in [t, t + max_session), which bounds the facts a sweep needs.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ccxlic_consumption.machine import Fact, PortsFact, RosterFact, SignInFact, SignOutFact

QUANTITIES = ("standard", "premium", "agents", "ivr_ports", "outbound_ports", "outbound_seats")
SEAT_QUANTITIES = frozenset({"standard", "premium", "agents"})


Seat = SignInFact
"""A seat in a witness: who, which license, and why (the same triple a sign-in records)."""


@dataclass(frozen=True, slots=True)
class PeakOf:
    value: int
    at: datetime | None
    agents: tuple[Seat, ...] = ()


@dataclass(frozen=True, slots=True)
class IntervalPeaks:
    start: datetime
    end: datetime
    peaks: dict[str, PeakOf]

    def values(self) -> dict[str, int]:
        return {q: p.value for q, p in self.peaks.items()}


class _Sweep:
    def __init__(self, max_session: timedelta) -> None:
        self.max_session = max_session
        self.seats: dict[str, Seat] = {}
        self.since: dict[str, datetime] = {}
        self.expiry: list[tuple[datetime, str]] = []
        self.ports = (0, 0, 0)
        self.premium = 0  # the Premium seats among `seats`, kept as they change (counting them at every instant cost)

    def expire_until(self, t: datetime) -> None:
        while self.expiry and self.expiry[0][0] <= t:
            at, agent_id = heapq.heappop(self.expiry)
            since = self.since.get(agent_id)
            if since is not None and since + self.max_session == at:
                self.sign_out(agent_id)

    def sign_in(self, seat: Seat, at: datetime) -> None:
        held = self.seats.get(seat.agent_id)
        self.premium += (seat.license == "premium") - (held is not None and held.license == "premium")
        self.seats[seat.agent_id] = seat
        self.since[seat.agent_id] = at
        heapq.heappush(self.expiry, (at + self.max_session, seat.agent_id))

    def sign_out(self, agent_id: str) -> None:
        held = self.seats.pop(agent_id, None)
        if held is not None and held.license == "premium":
            self.premium -= 1
        self.since.pop(agent_id, None)

    def apply(self, fact: Fact) -> None:
        body = fact.body
        if isinstance(body, SignInFact):
            self.sign_in(body, fact.at)
        elif isinstance(body, SignOutFact):
            self.sign_out(body.agent_id)
        elif isinstance(body, RosterFact):
            listed = {a.agent_id for a in body.agents}
            for agent_id in [a for a in self.seats if a not in listed]:
                self.sign_out(agent_id)
            for a in body.agents:
                self.sign_in(a, fact.at)
        elif isinstance(body, PortsFact):
            self.ports = (body.ivr, body.outbound_ports, body.outbound_seats)

    def counts(self) -> dict[str, int]:
        premium = self.premium
        total = len(self.seats)
        return {
            "standard": total - premium,
            "premium": premium,
            "agents": total,
            "ivr_ports": self.ports[0],
            "outbound_ports": self.ports[1],
            "outbound_seats": self.ports[2],
        }


def sweep(
    facts: Iterable[Fact], starts: Sequence[datetime], length: timedelta, max_session: timedelta
) -> list[IntervalPeaks]:
    """Peaks of consecutive intervals `[start, start + length)`; `facts` may come in any order.

    Facts before the first start matter only within `max_session` of it; callers may pass just
    those from `starts[0] - max_session` on.
    """
    if not starts:
        return []
    ordered = sorted(facts, key=lambda f: (f.at, f.event_id))
    state = _Sweep(max_session)
    results: list[IntervalPeaks] = []
    i = 0
    n = len(ordered)
    for start in starts:
        end = start + length
        best: dict[str, PeakOf] = {}
        seats_at: dict[str, dict[str, Seat]] = {}  # the seats at each seat quantity's best instant so far

        def observe(
            t: datetime, best: dict[str, PeakOf] = best, seats_at: dict[str, dict[str, Seat]] = seats_at
        ) -> None:
            counts = state.counts()
            seats: dict[str, Seat] | None = None
            for q in QUANTITIES:
                current = best.get(q)
                if current is None or counts[q] > current.value:
                    best[q] = PeakOf(counts[q], t)
                    if q in SEAT_QUANTITIES:  # a copy now, sorted into the witness once the interval is done
                        if seats is None:
                            seats = dict(state.seats)
                        seats_at[q] = seats

        # Everything up to the interval's start (inclusive) sets the state at its start.
        while i < n and ordered[i].at <= start:
            state.expire_until(ordered[i].at)
            state.apply(ordered[i])
            i += 1
        state.expire_until(start)
        observe(start)
        # Then each instant inside it: facts at the same instant apply together, after the expiries due by then.
        while True:
            next_fact = ordered[i].at if i < n else None
            next_expiry = state.expiry[0][0] if state.expiry else None
            candidates = [t for t in (next_fact, next_expiry) if t is not None and t < end]
            if not candidates:
                break
            t = min(candidates)
            state.expire_until(t)
            while i < n and ordered[i].at == t:
                state.apply(ordered[i])
                i += 1
            observe(t)
        peaks = {}
        for q, p in best.items():
            if p.value == 0:
                peaks[q] = PeakOf(0, None)
            elif q in seats_at:
                peaks[q] = PeakOf(p.value, p.at, _witness(seats_at[q]))
            else:
                peaks[q] = p
        results.append(IntervalPeaks(start, end, peaks))
    return results


def _witness(seats: dict[str, Seat]) -> tuple[Seat, ...]:
    """Who was signed in, by agent id."""
    return tuple(sorted(seats.values(), key=lambda s: s.agent_id))
