"""The forecast of an instance's concurrency, pure: hourly peaks per license for the coming week, an estimate.

The method (the README says it in these five steps):
1. history: per past hour and license (Standard, Premium, IVR ports), from the instance's usage, its peak (for the
   interval peaks) and the level it held for the 45-minute tolerance (for the risk of out of compliance);
2. the weekly level: the mean of each full past week (at most `weeks`); a least-squares line through those means gives
   the level of each coming week (the trend);
3. the seasonal index of each hour of the week: that hour's peak divided by its week's level, averaged over the weeks;
4. p50 = level x index; the band: p90 = p50 + q x sqrt(p50), q the 90th percentile of the errors of the same fit
   over the past weeks' busy hours, each divided by the square root of its fitted value (a count of agents varies
   like its square root: each one there or not); both rounded up to whole seats;
5. an 8-hour reporting interval's peak is the highest of its hours.
Fewer than `min_weeks` full weeks of history: no forecast at all (`Forecast.reason` says why).

The risk the `OutOfComplianceForecast` alert raises on: coming hours whose p90 of the level held for the 45-minute
tolerance is, under the Flex pool rule (idle Premium covers Standard), over what the instance may use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ccxlic_rules.pool import Entitlement, Usage, deficit

HOUR = timedelta(hours=1)
WEEK = timedelta(days=7)
HOURS_A_WEEK = 168
LICENSES = ("standard", "premium", "ivr_ports")
EPOCH_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)  # weeks start on Monday 00:00 UTC


def hour_of(t: datetime) -> datetime:
    """The hour `t` is in (UTC)."""
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def week_of(t: datetime) -> datetime:
    """The Monday 00:00 UTC of `t`'s week."""
    return EPOCH_MONDAY + ((t - EPOCH_MONDAY) // WEEK) * WEEK


def hourly_peaks(
    changes: Sequence[tuple[datetime, Mapping[str, int]]], until: datetime
) -> dict[datetime, dict[str, int]]:
    """The peak of every hour from the first change's hour up to `until`'s hour (excluded), per license: usage holds
    its last value until it changes."""
    out: dict[datetime, dict[str, int]] = {}
    if not changes:
        return out
    ordered = sorted(changes, key=lambda c: c[0])
    level = dict.fromkeys(LICENSES, 0)
    i = 0
    hour = hour_of(ordered[0][0])
    end = hour_of(until)
    while hour < end:
        peak = dict(level)
        while i < len(ordered) and ordered[i][0] < hour + HOUR:
            level = {lic: int(ordered[i][1].get(lic, 0)) for lic in LICENSES}
            peak = {lic: max(peak[lic], level[lic]) for lic in LICENSES}
            i += 1
        out[hour] = peak
        hour += HOUR
    return out


def interval_history(
    reports: Sequence[Mapping[str, Any]], until: datetime, length: timedelta = timedelta(hours=8)
) -> dict[datetime, dict[str, int]]:
    """Each reporting interval's peaks (the latest revision of each) from the first report's interval to `until`; an
    interval with no report had no usage (0). `reports` as the consumption computer serves them."""
    latest: dict[datetime, tuple[int, dict[str, int]]] = {}
    for r in reports:
        start = datetime.fromisoformat(str(r["interval_start"]).replace("Z", "+00:00"))
        revision = int(r.get("revision", 1))
        if start not in latest or revision > latest[start][0]:
            latest[start] = (revision, {lic: int(r["peak"][lic]) for lic in LICENSES})
    if not latest:
        return {}
    t, out = min(latest), {}
    while t + length <= until:
        out[t] = latest[t][1] if t in latest else dict.fromkeys(LICENSES, 0)
        t += length
    return out


def hourly_held(
    changes: Sequence[tuple[datetime, Mapping[str, int]]], until: datetime, hold: timedelta = timedelta(minutes=45)
) -> dict[datetime, dict[str, int]]:
    """Per hour, per license, the highest level usage held for `hold` from a moment in that hour: what an
    over-consumption that lasts the tolerance needs (a peak of a few minutes is not one)."""
    out: dict[datetime, dict[str, int]] = {}
    if not changes:
        return out
    ordered = sorted(changes, key=lambda c: c[0])
    times = [t for t, _ in ordered]
    levels = [{lic: int(u.get(lic, 0)) for lic in LICENSES} for _, u in ordered]
    zero = dict.fromkeys(LICENSES, 0)

    def level_at(i: int) -> dict[str, int]:
        return levels[i] if i >= 0 else zero

    hour, end = hour_of(times[0]), hour_of(until)
    i = 0  # the first change at or after `hour`
    while hour < end:
        while i < len(times) and times[i] < hour:
            i += 1
        starts = [(hour, i - 1)] + [(times[j], j) for j in range(i, len(times)) if times[j] < hour + HOUR]
        best = dict(zero)
        for t0, j in starts:
            low = dict(level_at(j))
            k = j + 1
            while k < len(times) and times[k] < t0 + hold:
                low = {lic: min(low[lic], levels[k][lic]) for lic in LICENSES}
                k += 1
            best = {lic: max(best[lic], low[lic]) for lic in LICENSES}
        out[hour] = best
        hour += HOUR
    return out


@dataclass(frozen=True, slots=True)
class Hour:
    """One coming step (an hour, or an interval): its p50 and p90 per license."""

    start: datetime
    p50: dict[str, int]
    p90: dict[str, int]


@dataclass(frozen=True, slots=True)
class Forecast:
    """The coming hours from `start` (an estimate), or none and why (`reason`)."""

    made_at: datetime
    hours: tuple[Hour, ...]
    weeks: int  # the full weeks of history it rests on
    reason: str | None = None

    def intervals(
        self, length: timedelta = timedelta(hours=8)
    ) -> list[tuple[datetime, dict[str, int], dict[str, int]]]:
        """Each coming reporting interval (aligned to 00:00 UTC): its start, p50 and p90 peaks (the highest hour)."""
        out: dict[datetime, tuple[dict[str, int], dict[str, int]]] = {}
        for h in self.hours:
            start = h.start - (h.start - EPOCH_MONDAY) % length
            p50, p90 = out.get(start, (dict.fromkeys(LICENSES, 0), dict.fromkeys(LICENSES, 0)))
            out[start] = (
                {lic: max(p50[lic], h.p50[lic]) for lic in LICENSES},
                {lic: max(p90[lic], h.p90[lic]) for lic in LICENSES},
            )
        return [(start, p50, p90) for start, (p50, p90) in sorted(out.items())]


def forecast(
    history: Mapping[datetime, Mapping[str, int]],
    now: datetime,
    *,
    horizon: timedelta = WEEK,
    weeks: int = 6,
    min_weeks: int = 3,
    step: timedelta = HOUR,
) -> Forecast:
    """The coming `horizon` from the first step that starts at or after `now`, step by step (an hour; or 8 hours, the reporting intervals),
    from the full weeks of `history` (keyed by each step's start) before `now`."""
    slots = int(WEEK / step)
    start = week_of(now) - ((week_of(now) - now) // step) * step  # the first step that starts at or after now
    this_week = week_of(now)
    full = [this_week - k * WEEK for k in range(weeks, 0, -1)]
    full = [w for w in full if all(w + n * step in history for n in range(slots))]
    if len(full) < min_weeks:
        why = f"too little history: {len(full)} full week(s) of usage, a forecast needs {min_weeks}"
        return Forecast(now, (), len(full), why)
    p50: dict[str, list[float]] = {}
    p90: dict[str, list[float]] = {}
    steps = int(horizon / step)
    for lic in LICENSES:
        weekly = [[float(history[w + n * step].get(lic, 0)) for n in range(slots)] for w in full]
        levels = [sum(v) / slots for v in weekly]
        xs = [(w - this_week) / WEEK for w in full]  # -weeks .. -1: the weeks before this one
        slope, intercept = _line(xs, levels)
        index = [
            sum(v[n] / lv for v, lv in zip(weekly, levels, strict=True) if lv > 0)
            / max(1, sum(lv > 0 for lv in levels))
            for n in range(slots)
        ]
        fitted = [
            ((intercept + slope * x) * index[n], v[n]) for x, v in zip(xs, weekly, strict=True) for n in range(slots)
        ]
        # counts vary like their square root (each agent there or not): errors scaled by it, busy hours only
        errors = sorted((actual - fit) / math.sqrt(fit) for fit, actual in fitted if fit >= 1)
        spread = max(0.0, errors[int(0.9 * (len(errors) - 1))]) if errors else 0.0
        p50[lic], p90[lic] = [], []
        for k in range(steps):
            t = start + k * step
            level = max(0.0, intercept + slope * ((week_of(t) - this_week) / WEEK))
            mid = level * index[int((t - week_of(t)) / step)]
            p50[lic].append(mid)
            p90[lic].append(mid + spread * math.sqrt(mid))
    hours = tuple(
        Hour(start + k * step, {lic: _up(p50[lic][k]) for lic in LICENSES}, {lic: _up(p90[lic][k]) for lic in LICENSES})
        for k in range(steps)
    )
    return Forecast(now, hours, len(full))


def _up(x: float) -> int:
    """Whole seats, rounded up (a forecast of 9.2 agents is 10 seats), with float noise ignored."""
    return max(0, math.ceil(round(x, 6)))


def _line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least squares y = intercept + slope * x; one point: flat."""
    n = len(ys)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if n < 2 or sxx == 0:
        return 0.0, my
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return slope, my - slope * mx


@dataclass(frozen=True, slots=True)
class Risk:
    """The first run of coming hours whose p90 is over what the instance may use: from when, until when, by how much
    at most per license."""

    start: datetime
    end: datetime
    over: dict[str, int]


def risks(f: Forecast, may_use: Entitlement | None) -> list[Risk]:
    """Every run of coming hours whose p90 is over `may_use` (the Flex pool rule), in time order; none with no limit
    (evaluation)."""
    if may_use is None:
        return []
    out: list[Risk] = []
    run: list[tuple[Hour, dict[str, int]]] = []
    for h in (*f.hours, None):
        short: dict[str, int] = {}
        if h is not None:
            d = deficit(Usage(h.p90["standard"], h.p90["premium"], h.p90["ivr_ports"]), may_use)
            short = {"standard": d.standard, "premium": d.premium, "ivr_ports": d.ivr_ports}
        if h is not None and any(short.values()):
            run.append((h, short))
            continue
        if run:
            over = {lic: max(s[lic] for _, s in run) for lic in LICENSES}
            out.append(Risk(run[0][0].start, run[-1][0].start + HOUR, over))
            run = []
    return out


def risk(f: Forecast, may_use: Entitlement | None) -> Risk | None:
    """The first run of hours over `may_use`, or None."""
    found = risks(f, may_use)
    return found[0] if found else None
