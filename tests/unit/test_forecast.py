"""The forecast, pure: hourly peaks from usage changes, the weekly level, trend and seasonal index, the band, the
interval peaks, too little history, and the first run of hours over what the instance may use."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

from ccxlic_rules.forecast import HOUR, forecast, hourly_peaks, risk
from ccxlic_rules.pool import Entitlement
from hypothesis import given, settings
from hypothesis import strategies as st

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)
D = timedelta(days=1)


def curve(t: datetime, base: float = 20, growth: float = 2) -> float:
    """Weekdays busy 08:00-17:00 (a sine), weekends at 30 %, growing `growth` a week."""
    weeks = (t - MONDAY) / timedelta(days=7)
    shape = max(0.0, math.sin(math.pi * (t.hour - 7) / 11)) if 7 <= t.hour <= 18 else 0.0
    return (base + growth * weeks) * (1.0 if t.weekday() < 5 else 0.3) * shape


def history(weeks: int, noise: float = 0.0, seed: int = 1) -> dict[datetime, dict[str, int]]:
    rng = random.Random(seed)
    out = {}
    for n in range(weeks * 168):
        t = MONDAY + n * HOUR
        v = curve(t) * (1 + rng.gauss(0, noise))
        out[t] = {"standard": max(0, round(v)), "premium": max(0, round(v / 4)), "ivr_ports": 0}
    return out


def test_too_little_history_forecasts_nothing_and_says_why() -> None:
    f = forecast(history(2), MONDAY + 14 * D)
    assert f.hours == () and f.weeks == 2 and f.reason is not None and "too little history" in f.reason
    assert forecast(history(3), MONDAY + 21 * D).reason is None


def test_the_weekly_pattern_and_its_growth_are_carried_into_the_coming_week() -> None:
    f = forecast(history(6), MONDAY + 42 * D)
    assert len(f.hours) == 168 and f.hours[0].start == MONDAY + 42 * D  # the first hour at or after now
    for h in f.hours:
        truth = curve(h.start)
        assert abs(h.p50["standard"] - truth) <= max(2.0, 0.08 * truth), (h.start, h.p50, truth)
        assert h.p90["standard"] >= h.p50["standard"] >= 0
    noon = next(h for h in f.hours if h.start == MONDAY + 42 * D + 12 * HOUR + D)  # Tuesday noon, week 7
    assert noon.p50["standard"] > max(v["standard"] for v in history(6).values()) - 1  # grows past the history


def test_the_band_widens_with_noise() -> None:
    calm = forecast(history(6, noise=0.01), MONDAY + 42 * D)
    noisy = forecast(history(6, noise=0.2), MONDAY + 42 * D)
    width = lambda f: sum(h.p90["standard"] - h.p50["standard"] for h in f.hours)  # noqa: E731
    assert width(noisy) > 2 * width(calm)


def test_a_forecast_by_reporting_interval_has_21_a_week() -> None:
    by_interval = {
        t: max((p for h, p in history(4).items() if t <= h < t + 8 * HOUR), key=lambda p: p["standard"])
        for t in (MONDAY + n * 8 * HOUR for n in range(4 * 21))
    }
    f = forecast(by_interval, MONDAY + 28 * D + 3 * HOUR, step=8 * HOUR)
    assert len(f.hours) == 21 and f.hours[0].start == MONDAY + 28 * D + 8 * HOUR  # the next interval
    day = f.hours[0]  # Monday 08:00-16:00, week 5
    assert abs(day.p50["standard"] - curve(MONDAY + 28 * D + 12 * HOUR)) <= 3


def test_an_interval_peak_is_its_highest_hour() -> None:
    f = forecast(history(3), MONDAY + 21 * D)
    for start, p50, p90 in f.intervals():
        inside = [h for h in f.hours if start <= h.start < start + 8 * HOUR]
        assert p50["standard"] == max(h.p50["standard"] for h in inside)
        assert p90["premium"] == max(h.p90["premium"] for h in inside)


def test_the_risk_is_the_first_run_of_hours_over_what_may_be_used() -> None:
    f = forecast(history(6), MONDAY + 42 * D)
    assert risk(f, None) is None  # evaluation: no limit
    assert risk(f, Entitlement(100, 100, 10)) is None
    r = risk(f, Entitlement(30, 9, 0))
    assert r is not None and r.start.date() == (MONDAY + 42 * D).date() and r.end - r.start >= HOUR
    assert r.over["standard"] > 0
    # idle Premium covers Standard: a Premium surplus as large as the Standard shortfall removes it
    assert risk(f, Entitlement(30, 9 + r.over["standard"] + 10, 0)) is None or r.over["premium"] > 0


def test_hourly_peaks_hold_the_level_until_it_changes() -> None:
    t = MONDAY
    changes = [(t + 10 * timedelta(minutes=1), {"standard": 3}), (t + 70 * timedelta(minutes=1), {"standard": 1})]
    changes.append((t + 75 * timedelta(minutes=1), {"standard": 5, "premium": 2}))
    peaks = hourly_peaks(changes, t + 4 * HOUR)
    assert [peaks[t + n * HOUR]["standard"] for n in range(4)] == [3, 5, 5, 5]
    assert peaks[t + 3 * HOUR]["premium"] == 2 and hourly_peaks([], t) == {}


@settings(max_examples=30, deadline=None)
@given(st.integers(3, 5), st.floats(0, 0.3), st.integers(0, 10_000))
def test_p90_is_never_under_p50_and_nothing_is_negative(weeks: int, noise: float, seed: int) -> None:
    f = forecast(history(weeks, noise, seed), MONDAY + weeks * 7 * D)
    for h in f.hours:
        for lic in ("standard", "premium", "ivr_ports"):
            assert h.p90[lic] >= h.p50[lic] >= 0
