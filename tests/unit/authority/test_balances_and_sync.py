"""The authority's pure rules for what an SSM administrator sees and for SSM On-Prem synchronisation: balances per
virtual account (table-driven, and the conservation a property test holds), and the sync checks."""

from __future__ import annotations

import pytest
from ccxlic_authority.core import Refused, balances, sync_step, sync_usage
from hypothesis import given
from hypothesis import strategies as st

P = {"standard": 40, "premium": 10, "ivr_ports": 20, "server": 1, "warm_standby": 0}


@pytest.mark.parametrize(
    ("reported", "reserved", "status", "deficit"),
    [
        # within: every license in surplus
        ({"a": {"standard": 10, "premium": 2}}, {}, {"standard": "surplus", "premium": "surplus"}, {}),
        # Premium short: a deficit Standard's surplus cannot fill
        ({"a": {"standard": 10, "premium": 12}}, {}, {"premium": "deficit"}, {"premium": 2}),
        # Standard short by 2, 3 idle Premium cover it: covered, not a deficit
        ({"a": {"standard": 42, "premium": 7}}, {}, {"standard": "covered", "premium": "surplus"}, {}),
        # a reservation holds licenses as use does
        ({"a": {"premium": 6}}, {"vault": {"premium": 4}}, {"premium": "even"}, {}),
        ({"a": {"premium": 6}}, {"vault": {"premium": 5}}, {"premium": "deficit"}, {"premium": 1}),
        ({"a": {"ivr_ports": 21}}, {}, {"ivr_ports": "deficit"}, {"ivr_ports": 1}),
    ],
)
def test_balances(
    reported: dict[str, dict[str, int]],
    reserved: dict[str, dict[str, int]],
    status: dict[str, str],
    deficit: dict[str, int],
) -> None:
    b = balances(P, reported, reserved)
    assert {lic: b["licenses"][lic]["status"] for lic in status} == status
    assert b["deficit"] == {"standard": 0, "premium": 0, "ivr_ports": 0} | deficit
    assert b["in_deficit"] is bool(deficit)
    assert b["licenses"]["server"] == {
        "name": "Server",
        "purchased": 1,
        "in_use": 0,
        "balance": 1,
        "status": "surplus",
        "instances": [],
    }  # required to be present, never consumed


def test_the_instances_behind_each_number_say_how() -> None:
    b = balances(P, {"b": {"premium": 2}, "a@site": {"premium": 3}}, {"vault": {"premium": 1}})
    assert b["licenses"]["premium"]["instances"] == [
        {"instance": "a@site", "in_use": 3, "as": "reported"},
        {"instance": "b", "in_use": 2, "as": "reported"},
        {"instance": "vault", "in_use": 1, "as": "reserved"},
    ]


use = st.dictionaries(
    st.sampled_from(["a", "b", "c@site"]),
    st.fixed_dictionaries({k: st.integers(0, 60) for k in ("standard", "premium", "ivr_ports")}),
)


@given(use, use)
def test_in_use_is_the_sum_behind_it_and_the_balance_what_is_left(
    reported: dict[str, dict[str, int]], reserved: dict[str, dict[str, int]]
) -> None:
    b = balances(P, reported, reserved)
    for lic in ("standard", "premium", "ivr_ports"):
        line = b["licenses"][lic]
        assert line["in_use"] == sum(i["in_use"] for i in line["instances"])
        assert line["in_use"] == sum(u[lic] for u in reported.values()) + sum(u[lic] for u in reserved.values())
        assert line["balance"] == P[lic] - line["in_use"]
        assert (line["status"] == "deficit") is (b["deficit"][lic] > 0)


def test_a_sync_step_refuses_a_replay_and_a_stale_answer() -> None:
    sync_step(4, 3)
    with pytest.raises(Refused, match="replayed: sync request 3 is not newer than the last one applied \\(3\\)"):
        sync_step(3, 3)
    with pytest.raises(Refused, match="stale: this sync answer answers request 4, but the latest request made is 5"):
        sync_step(4, 3, what="sync answer", latest=5)


def test_sync_usage_is_checked() -> None:
    ok = {"version": 1, "accounts": {"east": {"reported": {"a": {"premium": 2}}, "reserved": {}}}}
    assert sync_usage(ok, ["east"])["east"]["reported"]["a"]["premium"] == 2
    with pytest.raises(Refused, match="does not hold virtual account 'west'"):
        sync_usage({"version": 1, "accounts": {"west": {}}}, ["east"])
    with pytest.raises(Refused, match="version 2"):
        sync_usage({"version": 2, "accounts": {}}, ["east"])
    with pytest.raises(Refused, match=r"east\.reported\.a\.premium must be a whole number"):
        sync_usage({"version": 1, "accounts": {"east": {"reported": {"a": {"premium": -1}}}}}, ["east"])
