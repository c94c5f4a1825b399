"""The simulator, the scenarios and the report arithmetic, pure."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from ccxlic_cli.scenario import Scenario, ScenarioError, load, shipped
from ccxlic_cli.simulator import generate, ivr_load
from ccxlic_rules import Entitlement, classify, report
from pydantic import ValidationError

START = datetime(2026, 3, 2, 8, tzinfo=UTC)


def test_every_shipped_scenario_loads_and_generates_in_time_order() -> None:
    assert set(shipped()) >= {"demo", "license-control", "lifecycle"}
    for name in shipped():
        events = generate(load(name), START)
        assert events and [e.time for e in events] == sorted(e.time for e in events)
        assert len({e.id for e in events}) == len(events)


def test_the_same_scenario_seed_and_start_give_the_same_events() -> None:
    a = [e.model_dump_json() for e in generate(load("demo"), START)]
    b = [e.model_dump_json() for e in generate(load("demo"), START)]
    assert a == b
    other = [e.model_dump_json() for e in generate(load("demo").model_copy(update={"seed": 99}), START)]
    assert other != a


def test_the_demo_goes_over_premium_on_cc_east() -> None:
    signed: dict[str, str] = {}
    peak = 0
    for e in generate(load("demo"), START):
        if e.subject != "cc-east":
            continue
        if e.type == "ccx.agent.signed_in":
            d = e.data
            signed[d.agent_id] = classify(d.capabilities, d.supervisor)[0]  # type: ignore[union-attr]
        elif e.type == "ccx.agent.signed_out":
            signed.pop(e.data.agent_id, None)  # type: ignore[union-attr]
        peak = max(peak, Counter(signed.values())["premium"])
    assert peak == 13  # 12 chat/email agents and a supervisor, against 10 Premium seats


def test_agents_take_breaks_relogin_and_rosters_list_who_is_in() -> None:
    sc = load("lifecycle")
    events = generate(sc, START)
    kinds = Counter(e.type for e in events if e.subject == "b")
    assert kinds["ccx.agent.signed_in"] > kinds["ccx.agent.signed_out"]  # crash re-logins sign in twice
    assert kinds["ccx.agent.roster"] >= 24 * 5 - 1
    injected = [
        (e.type, e.time - START) for e in events if e.subject == "b" and e.type.startswith("licensing.authorization")
    ]
    assert injected == [
        ("licensing.authorization.renewed", timedelta(days=1)),
        ("licensing.authorization.renewal_failed", timedelta(days=3)),
        ("licensing.authorization.renewed", timedelta(days=4)),
    ]


def test_agents_license_control_refuses_are_not_in_later_rosters() -> None:
    """license-control: cc-capped runs under License Control; a sign-in the platform refuses is published (the
    consumption computer refuses it too), but the agent never appears in a roster while refused."""
    sc = load("license-control")
    capped = next(i for i in sc.instances if i.entitlements is not None and not i.entitlements.overage_allowed)
    ent = capped.entitlements
    assert ent is not None
    events = [e for e in generate(sc, START) if e.subject == capped.id]
    rosters = [e for e in events if e.type == "ccx.agent.roster"]
    assert rosters
    for r in rosters:
        seats = Counter(classify(a.capabilities, a.supervisor)[0] for a in r.data.agents)  # type: ignore[union-attr]
        assert seats["premium"] <= ent.premium and seats["standard"] + seats["premium"] <= ent.standard + ent.premium
    signed_in = {e.data.agent_id for e in events if e.type == "ccx.agent.signed_in"}  # type: ignore[union-attr]
    listed = {a.agent_id for r in rosters for a in r.data.agents}  # type: ignore[union-attr]
    assert listed < signed_in  # some agents were refused for good


def test_ivr_load_follows_a_daily_curve() -> None:
    assert ivr_load(100, datetime(2026, 3, 2, 12, tzinfo=UTC)) == 100
    assert ivr_load(100, datetime(2026, 3, 2, 3, tzinfo=UTC)) == 5
    assert ivr_load(100, datetime(2026, 3, 2, 9, tzinfo=UTC)) == 71


def test_scenarios_refuse_what_they_cannot_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="names instance 'zz'"):
        Scenario.model_validate(
            {"name": "x", "instances": [{"id": "a"}], "events": [{"at": "PT1H", "instance": "zz", "event": "register"}]}
        )
    f = tmp_path / "bad.json"
    f.write_text("{nope")
    with pytest.raises(ScenarioError, match="not valid JSON"):
        load(str(f))


def _report(start: str, revision: int, standard: int, premium: int, ivr: int = 0) -> dict[str, object]:
    return {
        "interval_start": start,
        "interval_end": start,
        "revision": revision,
        "peak": {"standard": standard, "premium": premium, "agents": standard + premium, "ivr_ports": ivr},
        "witness": {"premium": {"at": start, "agents": [{"agent_id": "p1"}]}},
    }


def test_the_report_takes_the_latest_revision_and_says_what_to_buy() -> None:
    reports = [
        _report("2026-03-02T00:00:00Z", 1, 30, 8),
        _report("2026-03-02T08:00:00Z", 1, 40, 10),
        _report("2026-03-02T08:00:00Z", 2, 46, 12, 25),  # a late fact raised this interval's peaks
        _report("2026-03-02T16:00:00Z", 1, 48, 9),
    ]
    ent = Entitlement(standard=40, premium=10, ivr_ports=20)
    rows = report.rows(reports, ent)
    assert [(r.interval_start[11:16], r.revision) for r in rows] == [("00:00", 1), ("08:00", 2), ("16:00", 1)]
    assert [(r.deficit_standard, r.deficit_premium, r.deficit_ivr_ports) for r in rows] == [
        (0, 0, 0),
        (6, 2, 5),
        (7, 0, 0),
    ]
    # 2 more Premium cover the 12; 08:00 then has 46 Standard against 40 and no spare Premium (6 more), 16:00 has 48
    # against 40 + 3 spare Premium (5 more): 6 Standard cover both
    assert report.to_buy(rows, ent) == {"standard": 6, "premium": 2, "ivr_ports": 5}
    # nothing purchased yet: the peaks themselves (12 Premium; then 46 Standard at 08:00, where no Premium is spare)
    nothing = report.rows(reports, None)
    assert report.to_buy(nothing, None) == {"standard": 46, "premium": 12, "ivr_ports": 25}
    assert [(r.deficit_standard, r.deficit_premium) for r in nothing] == [(30, 8), (46, 12), (48, 9)]
    assert report.as_csv(rows).splitlines()[0].startswith("interval_start,")


def test_the_report_shows_outbound_ports_and_seats_which_no_license_is_judged_on() -> None:
    """The vendor's "Data Stored": outbound ports and seats are kept and shown, not reported to SSM, never a deficit."""
    stored = _report("2026-03-02T00:00:00Z", 1, 3, 1)
    stored["peak"] = {**stored["peak"], "outbound_ports": 7, "outbound_seats": 4}  # type: ignore[dict-item]
    [row] = report.rows([stored], Entitlement(standard=40, premium=10, ivr_ports=20))
    assert (row.outbound_ports, row.outbound_seats) == (7, 4)
    header, line = report.as_csv([row]).splitlines()
    assert "outbound_ports,outbound_seats" in header and ",7,4," in line
    assert report.as_json("i", [row], None)["intervals"][0]["outbound_seats"] == 4
