"""`ccxlic whatif`'s pure part: the changes to the inputs and rules, and what a replay comes to over a window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ccxlic_contract.codec import Event
from ccxlic_contract.events import EntitlementsSet, InstanceRegistered, LicenseCounts, ReservationInstalled
from ccxlic_testing.build import Build
from ccxlic_whatif.replay import ChainRules, replay
from ccxlic_whatif.whatif import Changes, Summary, changed_inputs, changed_rules, summarize

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
M = timedelta(minutes=1)
END = T0 + timedelta(days=2)


def history(over_for: timedelta = 60 * M) -> list[Event]:
    """Registered with 2 Premium; a third Premium agent for `over_for` on the first morning; ticks to the end."""
    b = Build("cc-w")
    events = [b.entitle(T0, 2, 2), b.register(T0)]
    events += [b.sign_in(T0 + M, f"p{n}", "chat") for n in range(3)]
    events += [b.sign_out(T0 + M + over_for, "p2")]
    t = T0 + 10 * M
    while t < END:
        events.append(b.tick(t))
        t += 30 * M
    return sorted(events, key=lambda e: e.time)


def run(changes: Changes, events: list[Event] | None = None) -> Summary:
    events = events if events is not None else history()
    rules = ChainRules()
    out = replay("cc-w", changed_inputs(events, changes), changed_rules(rules, changes))
    return summarize(out, T0, END)


def test_as_recorded_an_hour_over_is_out_of_compliance_and_one_premium_to_buy() -> None:
    s = run(Changes())
    assert s.ooc_episodes == 1
    # out of compliance 45 min after it went over, until a reporting interval closes within the limits
    assert s.to_buy_for[0]["ooc_since"] == (T0 + 46 * M).isoformat()
    assert s.ooc_minutes > 60
    assert s.to_buy == {"standard": 0, "premium": 1, "ivr_ports": 0}
    assert s.alerts.get("OutOfCompliance") == 1


def test_the_purchase_it_names_leaves_nothing_out_of_compliance() -> None:
    s = run(Changes(premium=1))
    assert (s.ooc_episodes, s.ooc_minutes, s.to_buy["premium"]) == (0, 0.0, 0)
    assert "OutOfCompliance" not in s.alerts


def test_a_longer_tolerance_forgives_the_hour() -> None:
    assert run(Changes(tolerance=90 * M)).ooc_episodes == 0
    assert run(Changes(tolerance=30 * M)).ooc_minutes > run(Changes()).ooc_minutes


def test_license_control_refuses_the_third_sign_in_instead() -> None:
    s = run(Changes(no_overage=True))
    assert s.refused == {"license_control": 1}
    assert s.ooc_episodes == 0


def test_a_reservation_replaces_the_registration_and_refuses_what_is_over_it() -> None:
    events = list(changed_inputs(history(), Changes(reservation=LicenseCounts(standard=2, premium=2, ivr_ports=0))))
    assert isinstance(events[0], ReservationInstalled)
    assert not any(isinstance(e, InstanceRegistered) for e in events)
    s = run(Changes(reservation=LicenseCounts(standard=2, premium=2, ivr_ports=0)))
    assert s.refused == {"reservation": 1}
    assert s.ooc_episodes == 0


def test_seats_change_every_entitlement_and_never_go_below_zero() -> None:
    got = [e for e in changed_inputs(history(), Changes(standard=-5, premium=3)) if isinstance(e, EntitlementsSet)]
    assert [(e.data.standard_seats, e.data.premium_seats) for e in got] == [(0, 5)]


def test_the_window_counts_only_what_happened_in_it() -> None:
    out = replay("cc-w", history())
    assert summarize(out, T0 + timedelta(days=1), END).ooc_episodes == 0
    assert summarize(out, T0, T0 + 70 * M).ooc_minutes < summarize(out, T0, END).ooc_minutes + 0.01


def test_the_authoritys_out_of_compliance_answer_is_judged_again_with_the_seats_added() -> None:
    b = Build("cc-w", prefix="answer")  # ids of its own
    answer = b.reporting_succeeded(T0 + 9 * 60 * M, "out_of_compliance", premium=2, standard=1)
    events = sorted([*history(over_for=5 * M), answer], key=lambda e: e.time)  # a short peak: only the answer counts
    assert run(Changes(), events).ooc_episodes == 1
    assert run(Changes(premium=3), events).ooc_episodes == 0  # 2 Premium short, and the third covers the Standard
    rejudged = [e for e in changed_inputs(events, Changes(premium=2)) if e.id == answer.id]
    assert rejudged[0].data.verdict == "out_of_compliance"  # the Standard is still short
    assert rejudged[0].data.shortfall.standard == 1 and rejudged[0].data.shortfall.premium == 0
    # seats removed: the recorded answers stand (the account's pool is not in the instance's history)
    kept = [e for e in changed_inputs(events, Changes(premium=-1)) if e.id == answer.id]
    assert kept == [answer]
