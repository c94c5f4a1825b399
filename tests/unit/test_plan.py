"""The purchase-or-move plan (`ccxlic_rules.plan`): moves from siblings first, then purchases at the prices given;
afterwards every account covers its own needs (a property), and each line names what makes it necessary."""

from __future__ import annotations

from datetime import UTC, datetime

from ccxlic_rules import Entitlement, Usage, deficit
from ccxlic_rules.plan import Account, Need, Source, movable, plan, with_headroom
from hypothesis import given
from hypothesis import strategies as st

T = datetime(2026, 3, 9, 8, tzinfo=UTC)


def need(instance: str, standard: int = 0, premium: int = 0, ivr: int = 0) -> Need:
    counts = {"standard": standard, "premium": premium, "ivr_ports": ivr}
    sources = {lic: Source("peak", n, T, (f"{instance}-a1",)) for lic, n in counts.items()}
    return Need(instance, counts, sources)


def holds(standard: int = 0, premium: int = 0, ivr: int = 0) -> dict[str, int]:
    return {"standard": standard, "premium": premium, "ivr_ports": ivr}


def test_a_premium_shortfall_is_moved_from_the_sibling_with_spare_then_bought() -> None:
    east = Account("east", holds(10, 10), (need("cc-east", 8, 13),))
    west = Account("west", holds(10, 12), (need("cc-west", 10, 10),))
    p = plan(east, [west], {"standard": 10.0, "premium": 20.0})
    assert p.short == {"standard": 0, "premium": 3, "ivr_ports": 0}
    assert [(line.action, line.license, line.quantity, line.source) for line in p.lines] == [
        ("move", "premium", 2, "west"),
        ("buy", "premium", 1, None),
    ]
    assert p.cost == 20.0
    assert p.lines[0].because == (("cc-east", Source("peak", 13, T, ("cc-east-a1",))),)


def test_a_sibling_premium_that_covers_its_own_standard_is_not_free() -> None:
    west = Account("west", holds(5, 10), (need("cc-west", 8, 6),))  # 3 Standard on idle Premium: 1 Premium free
    assert movable(west) == {"standard": 0, "premium": 1, "ivr_ports": 0}


def test_a_standard_shortfall_takes_standard_then_premium_then_buys_the_cheaper() -> None:
    east = Account("east", holds(2, 0), (need("cc-east", 6, 0),))
    west = Account("west", holds(3, 3), (need("cc-west", 2, 2),))  # 1 Standard and 1 Premium free
    p = plan(east, [west], {"standard": 10.0, "premium": 8.0})
    assert [(line.action, line.license, line.quantity, line.covers) for line in p.lines] == [
        ("move", "standard", 1, "standard"),
        ("move", "premium", 1, "standard"),
        ("buy", "premium", 2, "standard"),  # Premium is the cheaper here, and it covers Standard
    ]


def test_within_its_licenses_there_is_nothing_to_do() -> None:
    p = plan(Account("east", holds(5, 5, 5), (need("a", 5, 5, 5),)), [])
    assert p.lines == () and p.short == {"standard": 0, "premium": 0, "ivr_ports": 0} and p.cost is None


def test_the_headroom_rounds_up_to_whole_licenses() -> None:
    assert [with_headroom(n, 10) for n in (0, 1, 10, 11)] == [0, 2, 11, 13]
    assert with_headroom(20, 0) == 20


counts = st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 10))


@given(counts, counts, st.lists(st.tuples(counts, counts), max_size=3))
def test_after_the_plan_every_account_covers_its_needs(
    mine: tuple[int, int, int],
    held: tuple[int, int, int],
    others: list[tuple[tuple[int, int, int], tuple[int, int, int]]],
) -> None:
    target = Account("t", holds(*held), (need("i", *mine),))
    siblings = [Account(f"s{n}", holds(*h), (need(f"j{n}", *u),)) for n, (u, h) in enumerate(others)]
    p = plan(target, siblings, {"standard": 1.0, "premium": 2.0, "ivr_ports": 1.0})
    after = {a.name: dict(a.holds) for a in [target, *siblings]}
    for line in p.lines:
        after["t"][line.license] += line.quantity
        if line.source is not None:
            after[line.source][line.license] -= line.quantity
    for a in [target, *siblings]:
        n = a.need()
        before = deficit(Usage(n["standard"], n["premium"], n["ivr_ports"]), Entitlement(*a.holds.values()))
        now = deficit(Usage(n["standard"], n["premium"], n["ivr_ports"]), Entitlement(*after[a.name].values()))
        if a.name == "t":
            assert now.standard == now.premium == now.ivr_ports == 0
        else:  # a sibling gives only what it does not need: never short because of the plan
            assert (now.standard, now.premium, now.ivr_ports) <= (before.standard, before.premium, before.ivr_ports)
            assert now == before


def _report(start: datetime, premium: int, revision: int = 1) -> dict[str, object]:
    agents = [{"agent_id": f"p{n}", "license": "premium", "why": "chat"} for n in range(premium)]
    agents.append({"agent_id": "s0", "license": "standard", "why": "voice"})
    seat = {"at": start.isoformat(), "agents": agents}
    return {
        "interval_start": start.isoformat(),
        "revision": revision,
        "peak": {"standard": 1, "premium": premium, "ivr_ports": 0},
        "witness": {"standard": seat, "premium": seat},
    }


def test_a_need_is_the_highest_recent_peak_with_its_premium_witness_or_the_forecast() -> None:
    from datetime import timedelta

    from ccxlic_rules.plan import need_of, reported_need

    week = timedelta(weeks=1)
    monday = datetime(2026, 3, 2, tzinfo=UTC)
    reports = [_report(monday + w * week + timedelta(hours=8), 4 + w) for w in range(4)]
    reports.append(_report(monday + timedelta(hours=8), 9, revision=2))  # a later revision of week 1's: the one kept
    got = need_of("cc-east", reports, weeks=4)
    assert got is not None
    src = got.sources["premium"]
    assert (src.kind, src.value, src.interval_start) == ("peak", 9, monday + timedelta(hours=8))
    assert src.agents == tuple(f"p{n}" for n in range(9))  # the Premium agents only
    narrow = need_of("cc-east", reports, weeks=1)
    assert narrow is not None and narrow.sources["premium"].value == 7  # the last week only
    assert need_of("cc-east", [], weeks=4) is None
    assert reported_need("x", {"premium": 10}, percent=10).counts["premium"] == 11
