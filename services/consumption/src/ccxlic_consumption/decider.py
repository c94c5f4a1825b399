"""The consumption computer's decider: one instance's inputs, in event-time order, become its outputs. Pure.

Per input (machine.py gives the live state, the fact and any rejection):
1. what downstream needs from the input itself is forwarded: `licensing.entitlements.set`, every lifecycle event,
   and a clock tick that moves the instance's time (the chain's time travels in-band, after the usage before it);
2. a refusal (the OVA's agent limit, a reservation's counts, or License Control) is published;
3. an accepted fact is recorded; if it is older than intervals already closed, those are swept again
   (revisions);
4. the reporting intervals that the watermark has passed by their end + lateness are closed (revision 1). An
   interval with no fact in it or within `max_session` before it is *quiet*: no seat can be in use then, and it is
   not reported, so a clock that jumps far ahead costs work for the intervals that had data only;
5. `licensing.consumption.changed` follows when the live counts, headroom or breach changed, stamped with the
   watermark; `licensing.control.breached` comes first when usage went over a hard limit, a reservation's or License
   Control's (a roster or a port sample above the cap, or limits lowered under usage).
Closing and revising need the stored facts: the decision asks for them (`need`) and `resume` goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    ClockTicked,
    ConsumptionChangedData,
    ControlBreachData,
    HardLimit,
    Headroom,
    IntervalClosedData,
    License,
    LicenseCounts,
    Peak,
    PeakWitness,
    Witness,
    WitnessAgent,
)
from ccxlic_contract.topics import CLOCK, CONSUMPTION
from ccxlic_rules import headroom
from ccxlic_runtime.instances import Decision, Forwarded

from ccxlic_consumption.machine import Fact, InstanceState, Rules, interval_start, update
from ccxlic_consumption.peaks import IntervalPeaks, sweep

# ---------------------------------------------------------------- state and outputs


@dataclass(slots=True)
class Consumption:
    """An instance: its live state, and where its reporting and publishing stand. Mutable, like its live state:
    `decide` changes the copy that `working` gave the unit of work, in place (an input costs what it changes)."""

    live: InstanceState
    next_close: datetime | None = None  # the start of the first interval not closed yet (None: no fact yet)
    last_fact_at: datetime | None = None  # the latest time of an accepted fact
    change_seq: int = 0  # how many licensing.consumption.changed were published
    published: ConsumptionChangedData | None = None  # the last one's data
    unsaved: set[str] = field(default_factory=set)  # agents whose sessions changed since the state was last saved

    def copy(self) -> Consumption:
        return Consumption(
            self.live.copy(),
            self.next_close,
            self.last_fact_at,
            self.change_seq,
            self.published,
            set(self.unsaved),
        )


@dataclass(frozen=True, slots=True)
class Recorded:
    """A fact to store (it counts toward the peaks of the intervals it covers)."""

    fact: Fact


@dataclass(frozen=True, slots=True)
class Rejected:
    """A sign-in a hard limit refused."""

    cause_id: str
    at: datetime
    agent_id: str
    license: License
    reason: str
    limit: HardLimit


@dataclass(frozen=True, slots=True)
class Reported:
    """An interval's report (revision 1 when it closes, + 1 when a late fact changed it)."""

    data: IntervalClosedData
    at: datetime


@dataclass(frozen=True, slots=True)
class Changed:
    """The live counts or headroom changed."""

    seq: int
    at: datetime
    data: ConsumptionChangedData


@dataclass(frozen=True, slots=True)
class Breached:
    """Usage went over a hard limit (a reservation's or License Control's): it was within it (or none applied)
    before."""

    cause_id: str
    at: datetime
    data: ControlBreachData


Output = Recorded | Rejected | Forwarded | Reported | Changed | Breached


@dataclass(frozen=True, slots=True)
class Window:
    """A read the decider needs: the facts that bear on intervals to sweep, and the latest reports of `revise`."""

    since: datetime  # facts with since <= at < until
    until: datetime
    revise: tuple[datetime, ...]  # closed intervals a late fact changed
    close_until: datetime | None  # close the intervals from next_close up to (not including) this start
    cause: Event  # the input that made the read due


@dataclass(frozen=True, slots=True)
class Stored:
    """The answer to a Window."""

    window: Window
    facts: tuple[Fact, ...]
    latest: dict[datetime, tuple[int, Peak, Witness]]  # interval start -> its latest report, of those in `revise`


_FORWARDED = CONSUMPTION.forwards - CLOCK.types  # always; a tick only when it moves the instance's time


# ---------------------------------------------------------------- the decider


class ConsumptionDecider:
    def __init__(self, rules: Rules) -> None:
        self.rules = rules

    def initial(self, instance: str) -> Consumption:
        return Consumption(InstanceState(instance))

    def working(self, state: Consumption) -> Consumption:
        return state.copy()

    def decide(self, state: Consumption, event: Event, env: None) -> Decision[Consumption, Output]:
        before = state.live.watermark
        step = update(state.live, event, self.rules)
        outputs: list[Output] = []
        now = state.live.watermark
        moved = before is None or (now is not None and now > before)
        if event.type in _FORWARDED or (moved and isinstance(event, ClockTicked)):
            outputs.append(Forwarded(event))
        if step.rejection is not None:
            r = step.rejection
            outputs.append(Rejected(event.id, event.time, r.agent_id, r.license, r.reason, r.limit))
        if step.changed_agents:
            state.unsaved |= step.changed_agents
        revise: tuple[datetime, ...] = ()
        if step.fact is not None:
            outputs.append(Recorded(step.fact))
            revise = self._record(state, step.fact)
        window = self._window(state, revise, event)
        if window is not None:
            return Decision(state, tuple(outputs), need=window)
        self._publish(state, event, outputs)
        return Decision(state, tuple(outputs))

    def saved(self, state: Consumption) -> Consumption:
        state.unsaved = set()
        return state

    def resume(self, state: Consumption, answer: object) -> Decision[Consumption, Output]:
        assert isinstance(answer, Stored)
        window = answer.window
        closing = self._closable(state, answer.facts, window.close_until)
        now = state.live.watermark
        assert now is not None
        outputs: list[Output] = []
        starts = sorted({*window.revise, *closing})
        for result in sweep(answer.facts, starts, self.rules.interval, self.rules.max_session):
            peak, witness = report(result)
            latest = None if result.start in closing else answer.latest.get(result.start)
            if latest is not None and (latest[1], latest[2]) == (peak, witness):
                continue  # a late fact that did not change the report
            revision = 1 if latest is None else latest[0] + 1
            data = IntervalClosedData(
                interval_start=result.start, interval_end=result.end, revision=revision, peak=peak, witness=witness
            )
            outputs.append(Reported(data, now))
        if window.close_until is not None:
            state.next_close = window.close_until
        self._publish(state, window.cause, outputs)
        return Decision(state, tuple(outputs))

    # ------------------------------------------------------------ intervals

    def _record(self, state: Consumption, fact: Fact) -> tuple[datetime, ...]:
        """Note the fact's time; the closed intervals it changes (it changes usage in [at, at + max_session))."""
        if state.last_fact_at is None or fact.at > state.last_fact_at:
            state.last_fact_at = fact.at
        if state.next_close is None:
            state.next_close = interval_start(fact.at, self.rules)
            return ()
        if fact.at >= state.next_close:
            return ()  # the usual case: the fact is in an interval not closed yet
        first = interval_start(fact.at, self.rules)
        revise = []
        start = first
        while start < fact.at + self.rules.max_session and start < state.next_close:
            revise.append(start)
            start += self.rules.interval
        return tuple(revise)

    def _window(self, state: Consumption, revise: tuple[datetime, ...], cause: Event) -> Window | None:
        """The read that closing and revising need now, or None when nothing is due."""
        now = state.live.watermark
        close_until = None
        # the usual case, asked first (it needs no interval arithmetic): the interval after next_close has not begun
        if (
            state.next_close is not None
            and now is not None
            and now - self.rules.lateness >= state.next_close + (self.rules.interval)
        ):
            close_until = interval_start(now - self.rules.lateness, self.rules)
        if not revise and close_until is None:
            return None
        first = min([*revise, *([state.next_close] if close_until is not None and state.next_close else [])])
        last = max([*(s + self.rules.interval for s in revise), *([close_until] if close_until else [])])
        return Window(first - self.rules.max_session, last, revise, close_until, cause)

    def _closable(self, state: Consumption, facts: tuple[Fact, ...], close_until: datetime | None) -> set[datetime]:
        """The intervals in [next_close, close_until) that are not quiet: a fact lies in them or within max_session
        before them. Found from the facts, so the work is bounded by the data, not by how far the clock moved."""
        if close_until is None or state.next_close is None:
            return set()
        out: set[datetime] = set()
        every = (close_until - state.next_close) // self.rules.interval  # found them all: no fact can add one
        for f in facts:
            if f.at + self.rules.max_session <= state.next_close:
                continue  # its sessions end before the first interval to close
            start = max(interval_start(f.at, self.rules), state.next_close)
            while start < f.at + self.rules.max_session and start < close_until:
                out.add(start)
                start += self.rules.interval
            if len(out) == every:
                break
        return out

    # ------------------------------------------------------------ publishing

    def _publish(self, state: Consumption, cause: Event, outputs: list[Output]) -> None:
        """A `licensing.consumption.changed` when the counts, headroom or breach changed since the last one (in
        place), after a `licensing.control.breached` when usage just went over a hard limit."""
        now = state.live.watermark
        counts = _counts(state.live)
        before = state.published
        if now is None or (before is not None and counts == _published_counts(before)):
            return
        state.change_seq += 1
        state.published = _data(counts)
        breach = state.published.control_breach
        if (
            breach is not None
            and _any(breach)
            and (before is None or before.control_breach is None or not _any(before.control_breach))
        ):
            outputs.append(Breached(cause.id, now, _breach(state, breach, cause)))
        outputs.append(Changed(state.change_seq, now, state.published))


def report(result: IntervalPeaks) -> tuple[Peak, Witness]:
    """An interval's peaks as the contract reports them."""
    witness = {
        q: PeakWitness(
            at=p.at, agents=tuple(WitnessAgent(agent_id=s.agent_id, license=s.license, why=s.why) for s in p.agents)
        )
        for q, p in result.peaks.items()
    }
    return Peak(**result.values()), Witness(**witness)


Counts = tuple[int, int, int, int, int, int | None, int | None, int | None, tuple[int, int, int] | None]


def _counts(live: InstanceState) -> Counts:
    """What `licensing.consumption.changed` says of a live state, as a tuple (cheap to compare on every input)."""
    used = live.usage()
    room = headroom(used, live.limits.effective)
    p = live.ports
    b = live.control_breach()
    return (
        used.standard,
        used.premium,
        p.ivr,
        p.outbound_ports,
        p.outbound_seats,
        room.standard,
        room.premium,
        room.ivr_ports,
        None if b is None else (b.standard, b.premium, b.ivr_ports),
    )


def _published_counts(d: ConsumptionChangedData) -> Counts:
    h = d.headroom
    b = d.control_breach
    breach = None if b is None else (b.standard, b.premium, b.ivr_ports)
    return (
        d.standard,
        d.premium,
        d.ivr_ports,
        d.outbound_ports,
        d.outbound_seats,
        h.standard,
        h.premium,
        h.ivr_ports,
        breach,
    )


def _any(c: LicenseCounts) -> bool:
    return c.standard > 0 or c.premium > 0 or c.ivr_ports > 0


def _breach(state: Consumption, excess: LicenseCounts, cause: Event) -> ControlBreachData:
    used = state.live.usage()
    limits = state.live.limits.effective
    hard = state.live.limits.hard
    # a hard limit applies only with counts to hold usage to
    assert limits is not None
    assert hard is not None
    what = {
        "ccx.agent.roster": "a roster",
        "ccx.ports.sampled": "a ports sample",
        "licensing.entitlements.set": "entitlements lowered",
        "licensing.instance.registered": "registration with overage not allowed",
        "licensing.reservation.installed": "a reservation below usage",
    }.get(cause.type, cause.type)
    whose = (
        "the reservation's limits (over-consumption is not allowed in Specific License Reservation)"
        if hard == "reservation"
        else "License Control's limits (overage not allowed)"
    )
    over = ", ".join(
        f"{name} {u} > {lim}"
        for name, u, lim, e in (
            ("Premium", used.premium, limits.premium, excess.premium),
            ("Standard", used.standard, limits.standard, excess.standard),
            ("IVR ports", used.ivr_ports, limits.ivr_ports, excess.ivr_ports),
        )
        if e
    )
    return ControlBreachData(
        usage=LicenseCounts(standard=used.standard, premium=used.premium, ivr_ports=used.ivr_ports),
        limits=LicenseCounts(standard=limits.standard, premium=limits.premium, ivr_ports=limits.ivr_ports),
        excess=excess,
        cause=f"{what} put usage over {whose}: {over}",
        limit=hard,
    )


def published(live: InstanceState) -> ConsumptionChangedData:
    """What `licensing.consumption.changed` says of a live state."""
    return _data(_counts(live))


def _data(c: Counts) -> ConsumptionChangedData:
    return ConsumptionChangedData(
        standard=c[0],
        premium=c[1],
        ivr_ports=c[2],
        outbound_ports=c[3],
        outbound_seats=c[4],
        headroom=Headroom(standard=c[5], premium=c[6], ivr_ports=c[7]),
        control_breach=None if c[8] is None else LicenseCounts(standard=c[8][0], premium=c[8][1], ivr_ports=c[8][2]),
    )
