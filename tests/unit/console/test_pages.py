"""The console's pure parts: the peaks chart (one point per interval and license), the forecast chart, the overview's rows (state in
words, bars, the nearest deadline), filter and sort, and the compliance timeline."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from ccxlic_console import chart, pages
from ccxlic_rules import Entitlement
from ccxlic_rules import report as report_rows
from ccxlic_rules.forecast import forecast, interval_history
from hypothesis import given
from hypothesis import strategies as st


def _report(start: str, standard: int, premium: int, ivr: int, revision: int = 1) -> dict[str, Any]:
    return {
        "interval_start": start,
        "interval_end": start,
        "revision": revision,
        "peak": {"standard": standard, "premium": premium, "ivr_ports": ivr, "agents": standard + premium},
        "witness": {},
    }


def _compliance(authorization: str = "authorized", **over: Any) -> dict[str, Any]:
    return {
        "registration": "registered",
        "authorization": authorization,
        "enforcement": {"active": False, "reasons": [], "since": None},
        "deficit": {"standard": 0, "premium": 0, "ivr_ports": 0},
        "over_stage": None,
        "ooc_since": None,
        "deadlines": {"ooc_at": "2026-03-02T10:45:00Z", "authorization_expires_at": "2026-06-01T00:00:00Z"},
        "seconds_to": {"ooc_at": 2700.0, "authorization_expires_at": 7_000_000.0, "evaluation_ends_at": None},
        **over,
    }


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500), st.integers(0, 500)), max_size=60))
def test_the_chart_has_one_point_per_interval_and_license(peaks: list[tuple[int, int, int]]) -> None:
    reports = [_report(f"2026-03-{1 + i // 3:02d}T{8 * (i % 3):02d}:00:00Z", *p) for i, p in enumerate(peaks)]
    rows = report_rows.rows(reports, Entitlement(40, 10, 20))
    svg = chart.svg(rows, Entitlement(40, 10, 20), "peaks")
    assert len(re.findall(r'<circle class="point ', svg)) == 3 * len(rows)
    assert f'data-intervals="{len(rows)}"' in svg
    for key in ("premium", "standard", "ivr_ports"):
        drawn = [int(v) for v in re.findall(rf'data-license="{key}"[^>]*data-peak="(\d+)"', svg)]
        assert drawn == [getattr(r, key) for r in rows]
    # every point lies inside the drawing
    for cx, cy in re.findall(r'cx="([\d.]+)" cy="([\d.]+)"', svg):
        assert chart.LEFT <= float(cx) <= chart.WIDTH - chart.RIGHT
        assert chart.TOP <= float(cy) <= chart.HEIGHT - chart.BOTTOM


def test_the_chart_draws_the_entitlements_and_says_when_there_is_nothing() -> None:
    rows = report_rows.rows([_report("2026-03-01T00:00:00Z", 30, 13, 18)], Entitlement(40, 10, 20))
    svg = chart.svg(rows, Entitlement(40, 10, 20), "cc-east <peaks>")
    assert svg.count('class="entitled ') == 3 and "Premium purchased: 10" in svg
    assert "cc-east &lt;peaks&gt;" in svg  # the title is escaped
    assert 'class="entitled' not in chart.svg(rows, None, "evaluation")  # nothing purchased, no line
    assert "no closed reporting interval" in chart.svg([], None, "empty")


def test_only_the_latest_revision_of_an_interval_is_a_point() -> None:
    reports = [_report("2026-03-01T00:00:00Z", 1, 1, 1, 1), _report("2026-03-01T00:00:00Z", 5, 6, 7, 2)]
    svg = chart.svg(report_rows.rows(reports, None), None, "t")
    assert re.findall(r'data-peak="(\d+)"', svg) == ["6", "5", "7"]


def test_states_are_words_first_and_the_nearest_deadline_wins() -> None:
    snap = {
        "instances": [
            {
                "instance": "cc-east",
                "compliance": _compliance(over_stage="detected"),
                "usage": {
                    "in_use": {"standard": 30, "premium": 13, "ivr_ports": 18},
                    "entitled": {"standard": 40, "premium": 10, "ivr_ports": 20},
                },
                "alerts": [{"alert": "OutOfComplianceDetected", "severity": "warning"}],
            },
            {
                "instance": "cc-lab",
                "compliance": _compliance("evaluation", registration="unregistered"),
                "usage": {"in_use": {"standard": 3, "premium": 1, "ivr_ports": 0}, "entitled": None},
                "alerts": [],
            },
            {"instance": "cc-new", "compliance": None, "usage": None, "alerts": []},
        ]
    }
    east, lab, new = pages.overview(snap)
    assert (east.state, east.tone) == ("Authorized, over entitlement (detected)", "warn")
    assert east.deadline is not None and east.deadline.name == "Out of compliance"
    assert east.deadline.words == "Out of compliance in 45 min 0 s"
    premium = east.bars[0]
    assert premium.over and premium.percent == 100 and premium.words == "Premium: 13 of 10 in use, 3 over"
    assert east.bars[1].percent == 75 and not east.bars[1].over
    assert lab.state == "Evaluation" and lab.registration == "Unregistered"
    assert lab.bars[0].words == "Premium: 1 in use (evaluation, nothing purchased)"
    assert new.state.startswith("Unknown") and new.bars == () and new.deadline is None
    enforced = pages.state_of(_compliance("out_of_compliance", enforcement={"active": True, "reasons": ["x"]}))
    assert enforced == ("Out of compliance, ENFORCEMENT", "bad")


def test_filter_and_sort() -> None:
    def row(name: str, tone: str, seconds: float | None, alerts: int) -> pages.OverviewRow:
        deadline = None if seconds is None else pages.Deadline("x", "t", seconds)
        return pages.OverviewRow(name, f"{tone} state", tone, "Registered", False, (), deadline, ({},) * alerts)

    rows = [row("cc-b", "bad", 10, 2), row("cc-a", "good", None, 0), row("lab-c", "info", 5, 1)]
    assert [r.instance for r in pages.select(rows, "", "", "instance", False)] == ["cc-a", "cc-b", "lab-c"]
    assert [r.instance for r in pages.select(rows, "CC-", "", "instance", True)] == ["cc-b", "cc-a"]
    assert [r.instance for r in pages.select(rows, "", "bad", "instance", False)] == ["cc-b"]
    assert [r.instance for r in pages.select(rows, "", "", "deadline", False)] == ["lab-c", "cc-b", "cc-a"]
    assert [r.instance for r in pages.select(rows, "", "", "alerts", True)] == ["cc-b", "lab-c", "cc-a"]
    assert [r.instance for r in pages.select(rows, "good STATE", "", "state", False)] == ["cc-a"]
    assert [r.instance for r in pages.select(rows, "", "", "no-such-sort", False)] == ["cc-a", "cc-b", "lab-c"]


def test_the_timeline_says_what_changed_and_why_newest_first() -> None:
    registered = _compliance("no_licenses_in_use", registration="unregistered")
    authorized = _compliance()
    ooc = _compliance(
        "out_of_compliance", ooc_since="2026-03-02T10:45:00Z", deficit={"standard": 0, "premium": 3, "ivr_ports": 0}
    )
    enforced = {**ooc, "enforcement": {"active": True, "reasons": ["out_of_compliance_expired"], "since": "t"}}
    history = [
        {"seq": 1, "at": "t1", "cause": {"type": "licensing.entitlements.set"}, "evidence": None, "state": registered},
        {
            "seq": 2,
            "at": "t2",
            "cause": {"type": "licensing.instance.registered"},
            "evidence": "with east",
            "state": authorized,
        },
        {"seq": 3, "at": "t3", "cause": {"type": "licensing.clock.tick"}, "evidence": None, "state": ooc},
        {"seq": 4, "at": "t4", "cause": {"type": "licensing.clock.tick"}, "evidence": None, "state": enforced},
    ]
    steps = pages.timeline(history)
    assert [s.seq for s in steps] == [4, 3, 2, 1]
    assert steps[0].changes == ("enforcement begins: out_of_compliance_expired",) and steps[0].tone == "bad"
    assert "authorization: authorized → out_of_compliance" in steps[1].changes
    assert "deficit: Premium 3, Standard 0, IVR ports 0" in steps[1].changes
    assert steps[2].cause == "licensing.instance.registered (with east)"
    assert steps[2].changes == (
        "registration: unregistered → registered",
        "authorization: no_licenses_in_use → authorized",
    )
    assert not any("enforcement" in c for c in steps[3].changes)  # nothing ended that never began


def test_after_signing_in_only_a_path_of_this_site_is_followed() -> None:
    """Browsers drop tabs and newlines in a URL: `/\\t/evil.example` would be `//evil.example`, another origin."""
    from ccxlic_console.signin import _next

    assert _next("/instances/cc-1?from=2026-03-01") == "/instances/cc-1?from=2026-03-01"
    for bad in (
        None,
        "",
        "x",
        "//evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\\evil",
        "/ /x",
        "https://evil.example/",
        "/\u00e9",
        "\t//evil.example",
    ):
        assert _next(bad) == "/", bad


def test_the_peaks_chart_draws_the_forecast_band_after_now_a_point_per_coming_interval_and_license() -> None:
    monday = datetime(2026, 3, 2, tzinfo=UTC)
    reports = [
        _report((monday + n * timedelta(hours=8)).isoformat(), 10 + n // 21, 4 if n % 3 == 1 else 0, 2)
        for n in range(4 * 21)
    ]
    now = monday + timedelta(weeks=4)
    f = forecast(interval_history(reports, now), now, step=timedelta(hours=8))
    assert len(f.hours) == 21
    past = report_rows.rows(reports[-21:], Entitlement(12, 3, 20))
    svg = chart.svg(past, Entitlement(12, 3, 20), "coming <week>", f)
    points = re.findall(r'<circle class="forecast (\w+)"[^>]*data-p50="(\d+)" data-p90="(\d+)"', svg)
    assert len(points) == 3 * 21 and all(int(p90) >= int(p50) for _, p50, p90 in points)
    assert svg.count('<polygon class="band') == 3 and "coming &lt;week&gt;" in svg
    assert len(re.findall(r'<circle class="point ', svg)) == 3 * 21  # the past week's peaks, then the band
    assert svg.count('<line class="now"') == 1
    assert '<line class="now"' not in chart.svg(past, Entitlement(12, 3, 20), "no forecast")
    day = [int(p50) for lic, p50, _ in points if lic == "premium"][1]  # Monday 08:00-16:00 of week 5
    assert day == 4
