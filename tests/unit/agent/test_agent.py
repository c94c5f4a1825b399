"""The Smart Agent under the real runtime, over an in-memory store and a fake authority: schedules on event time,
lifecycle events from what happened, commands, reservations, and termination."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

from ccxlic_agent.app import INPUTS, build
from ccxlic_agent.machine import Rules
from ccxlic_contract.codec import Event
from ccxlic_rules import codes
from ccxlic_rules.codes import AUTHORIZATION_CODE, REQUEST_CODE
from ccxlic_testing.build import Build
from ccxlic_testing.fakes import FakeDatabase, Worker
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.unit.agent.fakes import KEY, FakeAgentStore, FakeAuthority

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
D, H = timedelta(days=1), timedelta(hours=1)


class Agent(Worker):
    def __init__(self, rules: Rules | None = None) -> None:
        self.authority = FakeAuthority()
        self.store = FakeAgentStore(self.authority)
        super().__init__(
            FakeDatabase(self.store), lambda: build(CollectorRegistry(), self.store, rules), INPUTS, service="agent"
        )

    def state(self, instance: str = "cc-1"):  # type: ignore[no-untyped-def]
        return self.store.rows[instance][0]

    async def batch(self, *events: Event) -> list[Event]:
        """The batch, then each call it asked for answered and heard, until none is asked for: what the agent
        published (an answer goes to the agent's own input, and is not among them)."""
        out = await super().batch(*events)
        while answers := self.store.answer_all():
            out += await super().batch(*answers)
        return out


def types(events: list[Event]) -> list[str]:
    return [e.type.removeprefix("licensing.") for e in events]


def hourly(b: Build, start: datetime, hours: int) -> list[Event]:
    return [b.tick(start + n * H) for n in range(1, hours + 1)]


async def test_register_then_the_schedules_renew_and_report_on_event_time() -> None:
    a, b = Agent(), Build("cc-1")
    out = await a.batch(b.command(T0, "register", token="good"))
    assert types(out) == ["instance.registered", "entitlements.set"]
    assert a.state().last.ok and "east" in a.state().last.message
    assert out[1].data.premium_seats == 10 and out[1].data.deployment == "production"
    # 200 days of hourly ticks: authorizations every 30 days, the registration renewed at 182 days, a report
    # an hour after each 8-hour interval
    out = []
    for day in range(200):
        out += await a.batch(*hourly(b, T0 + day * D, 24))
    kinds = types(out)
    # days 30 ... 180; the registration renewal at day 182 authorizes too and moves the next one to day 212
    assert kinds.count("authorization.renewed") == 6
    assert kinds.count("registration.renewed") == 1
    assert kinds.count("reporting.succeeded") == 200 * 3
    renewals = [e.time - T0 for e in out if e.type == "licensing.authorization.renewed"]
    assert renewals[:5] == [30 * D, 60 * D, 90 * D, 120 * D, 150 * D]
    reports = [e.time for e in out if e.type == "licensing.reporting.succeeded"]
    assert {t.hour for t in reports} == {1, 9, 17}  # an hour after 00:00, 08:00, 16:00
    assert all(e.source == "urn:ccxlic:smart-agent" for e in out)
    assert a.state().last.operation == "register"  # the last command's result: scheduled calls leave it


async def test_closed_intervals_are_reported_with_the_authoritys_answer() -> None:
    a, b = Agent(), Build("cc-1")
    await a.batch(b.command(T0, "register", token="good"))
    [empty] = await a.batch(b.tick(T0 + H))  # the 09:00 slot: nothing closed yet, still a report (communication)
    assert empty.type == "licensing.reporting.succeeded" and empty.data.reports == 0
    start = datetime(2026, 3, 2, 8, tzinfo=UTC)
    closed = b.closed(start + 8 * H + 5 * timedelta(minutes=1), start, start + 8 * H, 40, 12)
    out = await a.batch(closed, b.tick(start + 9 * H))
    [report] = [e for e in out if e.type == "licensing.reporting.succeeded"]
    assert report.data.verdict == "out_of_compliance" and report.data.shortfall.premium == 2
    assert report.data.reports == 1 and a.state().pending == {}
    # a later revision of the same interval is reported again; nothing twice otherwise
    revised = b.closed(start + 10 * H, start, start + 8 * H, 40, 10, revision=2)
    out = await a.batch(revised, b.tick(start + 17 * H))
    [report] = [e for e in out if e.type == "licensing.reporting.succeeded"]
    assert report.data.reports == 1 and report.data.verdict == "in_compliance"


async def test_a_failed_renewal_says_why_and_is_retried_with_backoff_on_event_time() -> None:
    a, b = Agent(), Build("cc-1")
    await a.batch(b.command(T0, "register", token="good"))
    a.authority.mode = "timeout"
    out = []
    for hour in range(1, 80):
        out += await a.batch(b.tick(T0 + 30 * D + hour * H))
    failed = [e for e in out if e.type == "licensing.authorization.renewal_failed"]
    gaps = [(y.time - x.time) / H for x, y in itertools.pairwise(failed)]
    assert gaps[:5] == [1, 2, 4, 8, 16] and max(gaps) <= 24
    assert "timeout" in failed[0].data.reason
    assert all(e.type != "licensing.authorization.renewed" for e in out)
    assert next(e.type for e in out if e.type.startswith("licensing.reporting")) == "licensing.reporting.failed"
    a.authority.mode = "up"
    out = await a.batch(b.tick(T0 + 35 * D))
    assert {"authorization.renewed", "reporting.succeeded"} <= set(types(out))
    assert a.state().authorization_failures == 0


async def test_commands_that_cannot_apply_are_refused_with_the_reason() -> None:
    a, b = Agent(), Build("cc-1")
    assert await a.batch(b.command(T0, "register", token="bad")) == []
    assert not a.state().last.ok and "unknown registration token" in a.state().last.message
    await a.batch(b.command(T0 + H, "deregister"))
    assert "not registered" in a.state().last.message
    await a.batch(b.command(T0 + 2 * H, "register", token="good"))
    await a.batch(b.command(T0 + 3 * H, "register", token="good"))
    assert "already registered" in a.state().last.message
    await a.batch(b.command(T0 + 4 * H, "reservation_enable"))
    assert "deregister it" in a.state().last.message
    out = await a.batch(b.command(T0 + 5 * H, "set_license_type", deployment="non_production", overage_allowed=False))
    [ent] = out
    assert (ent.data.deployment, ent.data.overage_allowed) == ("non_production", False)
    out = await a.batch(b.command(T0 + 6 * H, "reregister", token="good"))
    assert types(out) == ["instance.registered"]  # same entitlements: not published again
    out = await a.batch(b.command(T0 + 7 * H, "deregister"))
    assert types(out) == ["instance.deregistered"] and a.state().status == "unregistered"


async def test_classic_licensing_until_a_one_way_migration_to_smart() -> None:
    a, b = Agent(), Build("cc-1")
    out = await a.batch(b.command(T0, "use_classic"))
    assert types(out) == ["instance.classic_licensing"] and a.state().status == "classic"
    for op, fields in (("register", {"token": "good"}), ("reservation_enable", {}), ("renew_authorization", {})):
        assert await a.batch(b.command(T0 + H, op, **fields)) == []
        assert "uses Classic Licensing: migrate it to Smart Licensing first" in a.state().last.message
    assert a.authority.calls == []  # nothing reached the authority
    out = await a.batch(b.command(T0 + 2 * H, "migrate_to_smart"))
    assert types(out) == ["instance.migrated_to_smart"] and a.state().status == "unregistered"
    assert await a.batch(b.command(T0 + 3 * H, "use_classic")) == []
    assert "once migrated, it cannot use Classic Licensing" in a.state().last.message
    out = await a.batch(b.command(T0 + 4 * H, "register", token="good"))
    assert types(out) == ["instance.registered", "entitlements.set"]
    # an instance that registered is on Smart Licensing: Classic Licensing is refused, even after a deregistration
    b2 = Build("cc-2")
    await a.batch(b2.command(T0, "register", token="good"), b2.command(T0 + H, "deregister"))
    assert await a.batch(b2.command(T0 + 2 * H, "use_classic")) == []
    assert "uses Smart Licensing" in a.state("cc-2").last.message
    assert await a.batch(b2.command(T0 + 3 * H, "migrate_to_smart")) == []
    assert "not on Classic Licensing" in a.state("cc-2").last.message


async def test_transport_settings_that_do_not_work_are_a_smart_agent_initialization_failure() -> None:
    a, b = Agent(), Build("cc-1")
    a.authority.mode = "unreachable"
    out = await a.batch(b.command(T0, "set_transport", transport="onprem", url="https://ssm.example.com"))
    [failed] = out
    assert failed.type == "licensing.agent.init_failed" and "transport settings" in failed.data.reason
    a.authority.mode = "up"
    out = await a.batch(b.command(T0 + H, "set_transport", transport="direct"))
    assert types(out) == ["agent.initialized"]


def authorization_code(request: str, serial: str, issued_at: str, premium: int = 2, key: object = KEY) -> str:
    """An authorization code as the licensing authority signs it, answering a request code."""
    nonce = codes.read_product_code(request, REQUEST_CODE, "request")["nonce"]
    payload = {
        "instance": "cc-1",
        "request": nonce,
        "serial": serial,
        "issued_at": issued_at,
        "counts": {"standard": 5, "premium": premium, "ivr_ports": 1},
    }
    return codes.sign(key, AUTHORIZATION_CODE, payload)  # type: ignore[arg-type]


async def test_a_reservation_round_trip_with_codes() -> None:
    a, b = Agent(), Build("cc-1")
    await a.batch(b.command(T0, "reservation_request"))
    assert "enable reservation first" in a.state().last.message
    await a.batch(b.command(T0 + H, "reservation_enable"))  # no key trusted yet: it pins the authority's now
    assert a.state().status == "reservation_enabled" and a.state().authority_key == codes.public_pem(KEY)
    await a.batch(b.command(T0 + 2 * H, "reservation_request"))
    request = a.state().last.code
    assert codes.read_product_code(request, REQUEST_CODE, "request")["instance"] == "cc-1"
    calls = len(a.authority.calls)
    code = authorization_code(request, "s1", "2026-03-02T12:00:00+00:00")
    [installed] = await a.batch(b.command(T0 + 4 * H, "reservation_install", code=code))
    assert installed.type == "licensing.reservation.installed" and installed.data.premium_seats == 2
    assert a.state().status == "reserved" and a.state().last.code is not None  # the confirmation code
    assert len(a.authority.calls) == calls  # installed offline: the authority was not asked for anything
    await a.batch(b.command(T0 + 5 * H, "reservation_disable"))
    assert "return it first" in a.state().last.message
    [returned] = await a.batch(b.command(T0 + 6 * H, "reservation_return"))
    assert returned.type == "licensing.reservation.returned" and a.state().last.code is not None
    await a.batch(b.command(T0 + 7 * H, "reservation_disable"))
    assert a.state().status == "unregistered"


async def test_an_authorization_code_from_another_key_or_for_another_request_is_refused() -> None:
    """A fake authority signing with its own key gets nothing installed, and a code must answer this instance's own
    request code; a code older than the one installed is refused too."""
    a, b = Agent(), Build("cc-1")
    await a.batch(b.command(T0, "reservation_enable"), b.command(T0 + H, "reservation_request"))
    request = a.state().last.code
    other_key = codes.load_key(codes.new_key())
    forged = authorization_code(request, "s1", "2026-03-02T12:00:00+00:00", premium=100_000, key=other_key)
    assert await a.batch(b.command(T0 + 2 * H, "reservation_install", code=forged)) == []
    assert "not signed by a licensing authority this instance trusts" in a.state().last.message
    await a.batch(b.command(T0 + 3 * H, "reservation_request"))  # a new request: the first one's codes are void
    stale = authorization_code(request, "s1", "2026-03-02T12:00:00+00:00")
    assert await a.batch(b.command(T0 + 4 * H, "reservation_install", code=stale)) == []
    assert "does not answer this instance's request code" in a.state().last.message
    assert await a.batch(b.command(T0 + 5 * H, "reservation_install", code="not-a-code")) == []
    assert "copied whole" in a.state().last.message
    current = a.state().reservation_request
    assert current is not None
    fresh = authorization_code(
        codes.product_code(REQUEST_CODE, {"instance": "cc-1", "nonce": current}), "s2", "2026-03-02T13:00:00+00:00"
    )
    [installed] = await a.batch(b.command(T0 + 6 * H, "reservation_install", code=fresh))
    assert installed.type == "licensing.reservation.installed"
    older = authorization_code(
        codes.product_code(REQUEST_CODE, {"instance": "cc-1", "nonce": current}), "s0", "2026-03-02T12:30:00+00:00"
    )
    assert await a.batch(b.command(T0 + 7 * H, "reservation_install", code=older)) == []
    assert "not newer" in a.state().last.message and a.state().reservation_serial == "s2"


async def test_a_configured_key_enables_offline_and_without_one_an_unreachable_authority_refuses() -> None:
    trusted = Agent(Rules(trusted_keys=(codes.public_pem(KEY),)))
    trusted.authority.mode = "unreachable"
    await trusted.batch(Build("cc-1").command(T0, "reservation_enable"))
    assert trusted.state().status == "reservation_enabled" and trusted.authority.calls == []
    alone = Agent()
    alone.authority.mode = "unreachable"
    await alone.batch(Build("cc-1").command(T0, "reservation_enable"))
    assert alone.state().status == "unregistered" and "CCXLIC_AGENT_TRUSTED_KEYS" in alone.state().last.message


async def test_entitlement_reporting_fails_and_the_next_fetch_ends_it_even_unchanged() -> None:
    """The vendor's alert: "Failure to get license type or exception when trying to get entitlements from SDK".
    The next successful fetch publishes the entitlements again, changed or not, which resolves it."""
    a, b = Agent(), Build("cc-1")
    await a.batch(b.command(T0, "register", token="good"))
    a.authority.mode = "entitlements"
    minute = timedelta(minutes=1)
    out = await a.batch(b.command(T0 + 10 * minute, "renew_authorization"))
    assert types(out) == ["authorization.renewed", "entitlements.fetch_failed"]
    assert "SDK exception" in out[1].data.reason
    a.authority.mode = "up"
    out = await a.batch(b.command(T0 + 20 * minute, "renew_authorization"))
    assert types(out) == ["authorization.renewed", "entitlements.set"]  # unchanged, published: the failure ends
    out = await a.batch(b.command(T0 + 30 * minute, "renew_authorization"))
    assert types(out) == ["authorization.renewed"]  # unchanged and nothing to end: nothing


async def test_a_report_carries_the_never_consumed_licenses_as_0_and_a_deposit_is_seen_at_the_next_report() -> None:
    a, b = Agent(), Build("cc-1")
    await a.batch(b.command(T0, "register", token="good"))
    await a.batch(b.closed(T0 + 8 * H + 5 * 60 * timedelta(seconds=1), T0, T0 + 8 * H, 30, 12))
    a.authority.pool = {**a.authority.pool, "premium": 12}  # a deposit, seen at the next report
    out = await a.batch(*hourly(b, T0, 10))
    report = next(e for e in out if e.type == "licensing.reporting.succeeded")
    assert report.data.verdict == "in_compliance"
    assert [e.data.premium_seats for e in out if e.type == "licensing.entitlements.set"] == [12]
    sent = [r for body in a.authority.reports for r in body["reports"]]
    assert sent[0]["peak"] == {"standard": 30, "premium": 12, "ivr_ports": 0, "server": 0, "warm_standby": 0}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 400 * 24), st.sampled_from(["tick", "up", "unreachable", "timeout", "register", "renew"])
        ),
        min_size=1,
        max_size=40,
    )
)
def test_any_inputs_and_outcomes_end_in_a_bounded_number_of_calls_per_input(script: list[tuple[int, str]]) -> None:
    """Every call moves its due time past now, so one input makes at most one call per schedule (and one for a
    command), however far time jumps and whatever the authority answers."""
    a, b = Agent(), Build("cc-1")

    async def run() -> None:
        for hour, what in sorted(script):
            t = T0 + hour * H
            if what in ("up", "unreachable", "timeout"):
                a.authority.mode = what
                continue
            event = (
                b.tick(t)
                if what == "tick"
                else b.command(
                    t,
                    "register" if what == "register" else "renew_authorization",
                    **({"token": "good"} if what == "register" else {}),
                )
            )
            before = len(a.authority.calls)
            await a.batch(event)
            assert len(a.authority.calls) - before <= 4

    asyncio.run(run())


def test_report_slots_are_an_hour_after_each_interval() -> None:
    r = Rules()
    assert r.next_report(datetime(2026, 3, 2, 8, 30, tzinfo=UTC)) == datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert r.next_report(datetime(2026, 3, 2, 9, tzinfo=UTC)) == datetime(2026, 3, 2, 17, tzinfo=UTC)
    assert r.backoff(1) == H and r.backoff(3) == 4 * H and r.backoff(99) == 24 * H


def _script(b: Build, steps: list[tuple[int, str]]) -> list[Event]:
    events: list[Event] = [b.command(T0, "register", token="good")]
    start = T0.replace(hour=8)
    for hour, what in sorted(steps):
        t = T0 + hour * H
        if what == "tick":
            events.append(b.tick(t))
        elif what == "closed":
            interval = start + (hour // 8) * 8 * H
            events.append(b.closed(t, interval - 8 * H, interval, hour % 50, hour % 7))
        else:
            events.append(b.command(t, "renew_authorization"))
    return events


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 60 * 24), st.sampled_from(["tick", "closed", "renew"])), max_size=30),
    st.sets(st.integers(0, 30)),
)
def test_an_answer_heard_late_decides_as_one_heard_at_once(steps: list[tuple[int, str]], late: set[int]) -> None:
    """The inputs heard while a call is out wait for its answer, in order: whether the answer comes at once or after
    any number of later inputs, the agent publishes the same events (ids, times and data), as a replay would."""
    b = Build("cc-1")
    events = _script(b, steps)

    async def run(answer_after: set[int]) -> tuple[list[Event], list[tuple[str, int, str, bool, str]]]:
        a = Agent()
        out: list[Event] = []
        for n, e in enumerate(events):
            out += await Worker.batch(a, e)  # only the input: the calls it asked for are answered below
            if n not in answer_after or n == len(events) - 1:
                while answers := a.store.answer_all():
                    out += await Worker.batch(a, *answers)
        return out, a.store.calls

    at_once = asyncio.run(run(set(range(len(events)))))
    later = asyncio.run(run(set(range(len(events))) - late))
    assert [e.model_dump() for e in later[0]] == [e.model_dump() for e in at_once[0]]
    assert later[1] == at_once[1]


async def test_an_answer_heard_twice_or_to_no_call_changes_nothing() -> None:
    a, b = Agent(), Build("cc-1")
    await Worker.batch(a, b.command(T0, "register", token="good"))
    [answer] = a.store.answer_all()
    first = await Worker.batch(a, answer)
    assert types(first) == ["instance.registered", "entitlements.set"]
    state = a.state()
    again = answer.model_copy(update={"id": "another-delivery-of-it"})
    assert await Worker.batch(a, again) == [] and a.state() == state


async def test_an_answer_without_what_it_must_hold_is_the_call_s_failure_with_the_reason() -> None:
    a, b = Agent(), Build("cc-1")
    await Worker.batch(a, b.command(T0, "register", token="good"))
    [answer] = a.store.answer_all()
    broken = answer.model_copy(update={"data": answer.data.model_copy(update={"answer": {"virtual_account": "x"}})})
    assert await Worker.batch(a, broken) == []  # a failed registration publishes nothing; its result says why
    last = a.state().last
    assert not last.ok and last.message.startswith("the licensing authority's answer was not understood: KeyError")
    assert a.state().in_flight is None and a.state().status == "unregistered"


def test_an_answer_the_contract_cannot_carry_is_a_failure_and_the_nul_never_reaches_the_store() -> None:
    from ccxlic_agent.caller import answered
    from ccxlic_agent.machine import Call, Outcome

    call = Call(operation="authorize", at=T0, transport="direct", url=None, proxy=None)
    good = answered("cc-1", "r-1", Outcome(call, True, {"authorized_until": "x"}))
    assert good.data.ok and good.time == T0 and good.data.call_id == "r-1"
    for bad in ({"identity_certificate": "a\u0000b"}, {str(n): n for n in range(101)}):
        refused = answered("cc-1", "r-1", Outcome(call, True, bad))
        assert not refused.data.ok and refused.data.answer == {}
        assert refused.data.reason.startswith("the licensing authority's answer cannot be used")
    assert answered("cc-1", "r-1", Outcome(call, True, {})).id == good.id  # one id per call: heard once
