"""The compliance state machine, pure: one case per rule and transition, then properties."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ccxlic_compliance.machine import Counts, Rules, State, Transition, replay, step
from ccxlic_contract.codec import Event
from ccxlic_testing.build import Build
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
D = timedelta(days=1)
M = timedelta(minutes=1)
RULES = Rules()
LONG_AUTH = replace(RULES, authorization_valid=1000 * D)  # keeps authorization expiry out of OOC walks


@dataclass
class Case:
    name: str
    inputs: Callable[[Build], list[Event]]
    expect: dict[str, Any]
    rules: Rules = RULES
    evidence: str | None = None  # a phrase the last transition's evidence holds
    history: list[tuple[datetime, str]] = field(default_factory=list)  # (at, authorization) transitions, in order


def _registered_over(b: Build) -> list[Event]:
    """Registered at T0 with 10 Standard + 10 Premium; 11 Premium at T0 + 60 min."""
    return [b.entitle(T0, 10, 10), b.register(T0), b.usage(T0 + 60 * M, 0, 11)]


CASES = [
    # 0. Classic Licensing (an upgrade that stays on it), and the one-way migration to Smart Licensing
    Case(
        "classic licensing has no evaluation clock",
        lambda b: [b.classic(T0), b.usage(T0 + D, 30, 5), b.tick(T0 + 200 * D)],
        {"registration": "classic", "authorization": "classic", "enforcement.active": False},
        evidence="Classic Licensing: no Smart Licensing evaluation",  # the only transition: usage starts nothing
    ),
    Case(
        "classic keeps the evaluation already used",
        lambda b: [b.usage(T0, 3, 1), b.classic(T0 + 30 * D), b.tick(T0 + 300 * D), b.migrated(T0 + 300 * D)],
        {"registration": "unregistered", "authorization": "evaluation", "deadlines.evaluation_ends_at": T0 + 360 * D},
        evidence="migrated to Smart Licensing: evaluation runs, 60 d left",
    ),
    Case(
        "a migration to smart licensing is one way",
        lambda b: [b.classic(T0), b.migrated(T0 + D), b.classic(T0 + 2 * D)],
        {"registration": "unregistered", "authorization": "no_licenses_in_use"},
    ),
    Case(
        "a registered instance is not put on classic licensing",
        lambda b: [b.entitle(T0, 10, 10), b.register(T0), b.classic(T0 + D)],
        {"registration": "registered", "authorization": "authorized"},
    ),
    Case(
        "an evaluation used up is enforced again after the migration",
        lambda b: [b.usage(T0, 3, 1), b.tick(T0 + 91 * D), b.classic(T0 + 92 * D), b.migrated(T0 + 100 * D)],
        {"authorization": "evaluation_expired", "enforcement.active": True},
        evidence="the evaluation period is used up",
    ),
    # 1. new instance, first usage starts evaluation; evaluation is unlimited
    Case(
        "new instance", lambda b: [b.tick(T0)], {"registration": "unregistered", "authorization": "no_licenses_in_use"}
    ),
    Case(
        "first usage starts evaluation",
        lambda b: [b.tick(T0), b.usage(T0 + D, 3, 1)],
        {
            "authorization": "evaluation",
            "deadlines.evaluation_ends_at": T0 + 91 * D,
            "deadlines.enforcement_at": T0 + 91 * D,
        },
    ),
    Case(
        "nothing in evaluation is over-consumption",
        lambda b: [b.entitle(T0, 1, 1), b.usage(T0, 50, 20)],
        {"authorization": "evaluation", "deficit.standard": 0, "deficit.premium": 0, "over_since": None},
    ),
    # 2. evaluation expiry; registering clears it
    Case(
        "evaluation expires into enforcement",
        lambda b: [b.usage(T0, 1, 0), b.tick(T0 + 90 * D)],
        {
            "authorization": "evaluation_expired",
            "enforcement.active": True,
            "enforcement.reasons": ("evaluation_expired",),
            "enforcement.since": T0 + 90 * D,
        },
        evidence="evaluation period (90 d) used up",
    ),
    Case(
        "registering clears evaluation expiry and enforcement",
        lambda b: [b.usage(T0, 1, 0), b.tick(T0 + 100 * D), b.register(T0 + 101 * D)],
        {"registration": "registered", "authorization": "authorized", "enforcement.active": False},
    ),
    # 3. registration
    Case(
        "registration authorizes, valid 365 d, authorization 90 d",
        lambda b: [b.usage(T0, 1, 0), b.register(T0 + 30 * D)],
        {
            "registration": "registered",
            "authorization": "authorized",
            "deadlines.evaluation_ends_at": None,
            "deadlines.authorization_expires_at": T0 + 120 * D,
            "deadlines.registration_expires_at": T0 + 395 * D,
            "deadlines.enforcement_at": T0 + 120 * D,
        },
    ),
    # 11. deregistration: evaluation goes on with the time left, or is expired
    Case(
        "deregistration resumes evaluation with the time left",
        lambda b: [b.usage(T0, 1, 0), b.register(T0 + 30 * D), b.deregister(T0 + 40 * D)],
        {"registration": "unregistered", "authorization": "evaluation", "deadlines.evaluation_ends_at": T0 + 100 * D},
        evidence="evaluation resumes with 60 d left",
    ),
    Case(
        "deregistration after the evaluation was used up",
        lambda b: [b.usage(T0, 1, 0), b.tick(T0 + 95 * D), b.register(T0 + 96 * D), b.deregister(T0 + 97 * D)],
        {"authorization": "evaluation_expired", "enforcement.reasons": ("evaluation_expired",)},
    ),
    # 4 + 5. successful communication; authorization expiry, then enforcement; renewal clears both
    Case(
        "90 d without communication: authorization expires, then enforcement (README: the 90-day reading)",
        lambda b: [b.register(T0), b.tick(T0 + 90 * D)],
        {
            "authorization": "authorization_expired",
            "enforcement.reasons": ("authorization_expired",),
            "enforcement.since": T0 + 90 * D,
        },
        history=[(T0, "authorized"), (T0 + 90 * D, "authorization_expired"), (T0 + 90 * D, "authorization_expired")],
    ),
    Case(
        "the 180-day reading (CCXLIC_AUTHORIZATION_GRACE=P90D): enforcement 90 d after authorization expiry",
        lambda b: [b.register(T0), b.tick(T0 + 200 * D)],
        {
            "authorization": "authorization_expired",
            "enforcement.reasons": ("authorization_expired",),
            "enforcement.since": T0 + 180 * D,
        },
        rules=replace(RULES, authorization_grace=90 * D),
        history=[(T0, "authorized"), (T0 + 90 * D, "authorization_expired"), (T0 + 180 * D, "authorization_expired")],
    ),
    Case(
        "authorization expiry does not hide out of compliance",
        lambda b: [*_registered_over(b), b.tick(T0 + 95 * D)],
        {
            "authorization": "authorization_expired",
            "ooc_since": T0 + 105 * M,
            "enforcement.reasons": ("authorization_expired", "out_of_compliance_expired"),
        },
    ),
    Case(
        "a successful communication clears authorization expiry and its enforcement",
        lambda b: [b.register(T0), b.tick(T0 + 200 * D), b.authorization_renewed(T0 + 201 * D)],
        {
            "authorization": "authorized",
            "enforcement.active": False,
            "deadlines.authorization_expires_at": T0 + 291 * D,
        },
    ),
    Case(
        "reporting success counts as communication",
        lambda b: [b.register(T0), b.reporting_succeeded(T0 + 60 * D), b.tick(T0 + 100 * D)],
        {"authorization": "authorized", "deadlines.authorization_expires_at": T0 + 150 * D},
    ),
    # 6. registration expiry; registration renewal extends it
    Case(
        "registration expires after 365 d without renewal",
        lambda b: [
            b.register(T0),
            *[b.authorization_renewed(T0 + k * 80 * D) for k in range(1, 5)],
            b.tick(T0 + 365 * D),
        ],
        {"registration": "registration_expired", "authorization": "authorized"},
        evidence="registration not renewed",
    ),
    Case(
        "an expired registration refuses renewals: only registering again ends it",
        lambda b: [
            b.register(T0),
            *[b.authorization_renewed(T0 + k * 80 * D) for k in range(1, 5)],
            b.tick(T0 + 366 * D),
            b.authorization_renewed(T0 + 367 * D),
            b.registration_renewed(T0 + 368 * D),
        ],
        {"registration": "registration_expired", "deadlines.authorization_expires_at": T0 + 410 * D},
    ),
    Case(
        "registering again clears registration expiry",
        lambda b: [b.register(T0), b.tick(T0 + 366 * D), b.register(T0 + 367 * D)],
        {"registration": "registered", "authorization": "authorized", "enforcement.active": False},
    ),
    Case(
        "registration renewal extends validity",
        lambda b: [b.register(T0), b.registration_renewed(T0 + 300 * D)],
        {"deadlines.registration_expires_at": T0 + 665 * D, "deadlines.authorization_expires_at": T0 + 390 * D},
    ),
    # 7. over-consumption ladder
    Case(
        "over-consumption detected",
        _registered_over,
        {
            "authorization": "authorized",
            "over_since": T0 + 60 * M,
            "over_stage": "detected",
            "deficit.premium": 1,
            "deadlines.ooc_at": T0 + 105 * M,
        },
        evidence="Premium 11 > 10 since 2026-03-02 11:00:00Z",
    ),
    Case(
        "spare Premium covers Standard",
        lambda b: [b.entitle(T0, 10, 10), b.register(T0), b.usage(T0 + M, 15, 5)],
        {"over_since": None, "deficit.standard": 0},
    ),
    Case(
        "Standard beyond Standard + spare Premium is over",
        lambda b: [b.entitle(T0, 10, 10), b.register(T0), b.usage(T0 + M, 16, 5)],
        {"over_stage": "detected", "deficit.standard": 1},
        evidence="Standard 16 > 10 + 5 spare Premium",
    ),
    Case(
        "IVR ports over",
        lambda b: [b.entitle(T0, 10, 10, ivr_ports=4), b.register(T0), b.usage(T0 + M, 1, 1, ivr_ports=5)],
        {"over_stage": "detected", "deficit.ivr_ports": 1},
    ),
    Case(
        "over-consumption that recovers within 30 min clears and changes nothing else",
        lambda b: [*_registered_over(b), b.usage(T0 + 80 * M, 0, 10), b.tick(T0 + 200 * M)],
        {"authorization": "authorized", "over_since": None, "over_stage": None, "deadlines.ooc_at": None},
        evidence="back within entitlements",
    ),
    Case(
        "still over at 30 min: imminent",
        lambda b: [*_registered_over(b), b.tick(T0 + 90 * M)],
        {"over_stage": "imminent", "authorization": "authorized"},
    ),
    Case(
        "still over at 45 min: out of compliance",
        lambda b: [*_registered_over(b), b.tick(T0 + 110 * M)],
        {
            "authorization": "out_of_compliance",
            "ooc_since": T0 + 105 * M,
            "over_since": None,
            "deadlines.enforcement_at": T0 + 105 * M + 90 * D,
        },
        rules=LONG_AUTH,
        history=[
            (T0, "no_licenses_in_use"),
            (T0, "authorized"),
            (T0 + 60 * M, "authorized"),
            (T0 + 90 * M, "authorized"),
            (T0 + 105 * M, "out_of_compliance"),
        ],
    ),
    Case(
        "usage back within entitlements does not end out of compliance",
        lambda b: [*_registered_over(b), b.tick(T0 + 110 * M), b.usage(T0 + 120 * M, 0, 5)],
        {"authorization": "out_of_compliance", "deficit.premium": 0},
        rules=LONG_AUTH,
    ),
    # 9. OOC grace
    Case(
        "90 d out of compliance: enforcement",
        lambda b: [*_registered_over(b), b.tick(T0 + 91 * D)],
        {
            "authorization": "out_of_compliance",
            "enforcement.reasons": ("out_of_compliance_expired",),
            "enforcement.since": T0 + 105 * M + 90 * D,
        },
        rules=LONG_AUTH,
    ),
    # 8. leaving out of compliance
    Case(
        "raised entitlements that cover live usage and the interval peak end OOC and its enforcement",
        lambda b: [*_registered_over(b), b.tick(T0 + 91 * D), b.entitle(T0 + 91 * D + M, 10, 12)],
        {"authorization": "authorized", "ooc_since": None, "enforcement.active": False, "required": None},
        rules=LONG_AUTH,
        evidence="they cover the peaks that caused the out-of-compliance enforcement",
    ),
    Case(
        "an enforced instance stays enforced after its usage drops: no interval, answer or usage ends it",
        lambda b: [
            *_registered_over(b),
            b.tick(T0 + 91 * D),
            b.usage(T0 + 91 * D + M, 0, 5),
            b.closed(T0 + 92 * D, T0 + 91 * D + 8 * 60 * M, T0 + 91 * D + 16 * 60 * M, 0, 5),
            b.reporting_succeeded(T0 + 92 * D + M, "in_compliance"),
            b.tick(T0 + 200 * D),
        ],
        {
            "authorization": "out_of_compliance",
            "enforcement.reasons": ("out_of_compliance_expired",),
            "required.premium": 11,
        },
        rules=LONG_AUTH,
    ),
    Case(
        "a purchase short of the peaks that caused it leaves the enforcement in place",
        lambda b: [
            *_registered_over(b),
            b.usage(T0 + 2 * D, 0, 14),  # the episode's peak, inside the grace
            b.usage(T0 + 3 * D, 0, 9),
            b.tick(T0 + 91 * D),
            b.entitle(T0 + 92 * D, 10, 12),  # covers live usage, not the 14 that caused it
        ],
        {"authorization": "out_of_compliance", "enforcement.active": True, "required.premium": 14},
        rules=LONG_AUTH,
    ),
    Case(
        "a purchase that covers the peaks that caused it ends the enforcement",
        lambda b: [
            *_registered_over(b),
            b.usage(T0 + 2 * D, 0, 14),
            b.usage(T0 + 3 * D, 0, 9),
            b.tick(T0 + 91 * D),
            b.usage(T0 + 91 * D + M, 0, 20),  # usage in enforcement does not raise what the purchase must cover
            b.usage(T0 + 91 * D + 2 * M, 0, 9),
            b.entitle(T0 + 92 * D, 10, 14),
        ],
        {"authorization": "authorized", "enforcement.active": False, "ooc_since": None},
        rules=LONG_AUTH,
        evidence="they cover the peaks that caused the out-of-compliance enforcement",
    ),
    Case(
        "raised entitlements below this interval's peak leave OOC in place",
        lambda b: [
            *_registered_over(b),
            b.usage(T0 + 110 * M, 0, 14),
            b.usage(T0 + 115 * M, 0, 9),
            b.entitle(T0 + 120 * M, 10, 12),
        ],
        {"authorization": "out_of_compliance"},
        rules=LONG_AUTH,
    ),
    Case(
        "a closed interval within entitlements, starting after ooc_since, ends OOC",
        lambda b: [
            *_registered_over(b),
            b.usage(T0 + 110 * M, 0, 10),
            b.closed(T0 + 14 * 60 * M, T0 + 6 * 60 * M, T0 + 14 * 60 * M, 0, 10),
        ],
        {"authorization": "authorized", "ooc_since": None},
        rules=LONG_AUTH,
        evidence="within entitlements",
    ),
    Case(
        "a closed interval that started before ooc_since does not end OOC",
        lambda b: [
            *_registered_over(b),
            b.usage(T0 + 110 * M, 0, 10),
            b.closed(T0 + 6 * 60 * M, T0 - 2 * 60 * M, T0 + 6 * 60 * M, 0, 10),
        ],
        {"authorization": "out_of_compliance"},
        rules=LONG_AUTH,
    ),
    Case(
        "a closed interval over entitlements does not end OOC",
        lambda b: [*_registered_over(b), b.closed(T0 + 14 * 60 * M, T0 + 6 * 60 * M, T0 + 14 * 60 * M, 0, 11)],
        {"authorization": "out_of_compliance"},
        rules=LONG_AUTH,
    ),
    # 10. reservation
    Case(
        "a reservation replaces entitlements; nothing expires",
        lambda b: [b.usage(T0, 1, 0), b.reserve(T0 + D, 5, 5), b.usage(T0 + D + M, 5, 5), b.tick(T0 + 900 * D)],
        {
            "registration": "reserved",
            "authorization": "reserved",
            "enforcement.active": False,
            "over_since": None,
            "deadlines.evaluation_ends_at": None,
            "deadlines.enforcement_at": None,
            "deadlines.authorization_expires_at": None,
        },
    ),
    Case(
        "a reserved instance is never out of compliance or enforced from its usage (a breach, not OOC)",
        lambda b: [b.usage(T0, 1, 0), b.reserve(T0 + D, 5, 5), b.usage(T0 + D + M, 6, 6), b.tick(T0 + 400 * D)],
        {
            "registration": "reserved",
            "authorization": "reserved",
            "ooc_since": None,
            "over_since": None,
            "deficit.premium": 0,
            "enforcement.active": False,
            "deadlines.enforcement_at": None,
        },
    ),
    Case(
        "a reservation is installed only on an unregistered instance",
        lambda b: [b.register(T0), b.reserve(T0 + D, 5, 5)],
        {"registration": "registered", "authorization": "authorized"},
    ),
    Case(
        "a modified reservation replaces the counts",
        lambda b: [b.reserve(T0, 5, 5), b.usage(T0 + M, 0, 6), b.reserve(T0 + 60 * M, 5, 8)],
        {"registration": "reserved", "authorization": "reserved", "ooc_since": None},
    ),
    # 10b. the licensing authority's answer to a usage report
    Case(
        "the authority's out-of-compliance answer enters OOC at once",
        lambda b: [
            b.entitle(T0, 10, 10),
            b.register(T0),
            b.usage(T0 + M, 0, 8),
            b.reporting_succeeded(T0 + 8 * 60 * M, "out_of_compliance", premium=2),
        ],
        {"authorization": "out_of_compliance", "ooc_since": T0 + 8 * 60 * M, "over_since": None},
        rules=LONG_AUTH,
        evidence="the licensing authority answered out of compliance (Standard 0, Premium 2, IVR ports 0 short)",
    ),
    Case(
        "an in-compliance answer ends OOC when live usage is within the limits",
        lambda b: [
            b.entitle(T0, 10, 10),
            b.register(T0),
            b.reporting_succeeded(T0 + 8 * 60 * M, "out_of_compliance", premium=2),
            b.usage(T0 + 9 * 60 * M, 0, 8),
            b.reporting_succeeded(T0 + 16 * 60 * M, "in_compliance"),
        ],
        {"authorization": "authorized", "ooc_since": None},
        rules=LONG_AUTH,
    ),
    Case(
        "an in-compliance answer leaves OOC in place while live usage is over",
        lambda b: [*_registered_over(b), b.tick(T0 + 110 * M), b.reporting_succeeded(T0 + 8 * 60 * M, "in_compliance")],
        {"authorization": "out_of_compliance"},
        rules=LONG_AUTH,
    ),
    Case(
        "registration is ignored while a reservation is installed",
        lambda b: [b.reserve(T0, 5, 5), b.register(T0 + D)],
        {"registration": "reserved"},
    ),
    Case(
        "a returned reservation is unregistered again; the evaluation goes on",
        lambda b: [b.usage(T0, 1, 0), b.reserve(T0 + 10 * D, 5, 5), b.reservation_returned(T0 + 20 * D)],
        {"registration": "unregistered", "authorization": "evaluation", "deadlines.evaluation_ends_at": T0 + 100 * D},
    ),
    # 12. non-production
    Case(
        "non-production is tracked but never enforced",
        lambda b: [b.entitle(T0, 1, 1, deployment="non_production"), b.usage(T0, 1, 0), b.tick(T0 + 365 * D)],
        {"authorization": "evaluation_expired", "enforcement.active": False, "deadlines.enforcement_at": None},
    ),
    Case(
        "non-production out of compliance past the 90-day grace stays out of compliance, never enforced",
        lambda b: [
            b.entitle(T0, 10, 10, deployment="non_production"),
            b.register(T0),
            b.usage(T0 + M, 0, 11),
            b.tick(T0 + 200 * D),
        ],
        {"authorization": "out_of_compliance", "enforcement.active": False, "deadlines.enforcement_at": None},
        rules=LONG_AUTH,
    ),
    Case(
        "non-production without communication for 180 days: authorization expired, never enforced",
        lambda b: [b.entitle(T0, 10, 10, deployment="non_production"), b.register(T0), b.tick(T0 + 400 * D)],
        {"authorization": "authorization_expired", "enforcement.active": False},
    ),
    # enforcement exits, per cause
    Case(
        "a usage report does not end authorization expiry: only a renewal does",
        lambda b: [b.register(T0), b.tick(T0 + 91 * D), b.reporting_succeeded(T0 + 92 * D)],
        {"authorization": "authorization_expired", "enforcement.reasons": ("authorization_expired",)},
    ),
    Case(
        "an authorization renewal after a report ends authorization expiry",
        lambda b: [
            b.register(T0),
            b.tick(T0 + 91 * D),
            b.reporting_succeeded(T0 + 92 * D),
            b.authorization_renewed(T0 + 93 * D),
        ],
        {"authorization": "authorized", "enforcement.active": False},
    ),
    # the licensing authority judges per virtual account: its out-of-compliance start carries over
    Case(
        "registering into an account still out of compliance continues the account's clock",
        lambda b: [b.usage(T0, 1, 0), b.register(T0 + 30 * D, ooc_since=T0 + 10 * D, required=(10, 12, 0))],
        {
            "authorization": "out_of_compliance",
            "ooc_since": T0 + 10 * D,
            "required.premium": 12,
            "deadlines.enforcement_at": T0 + 100 * D,
        },
        rules=LONG_AUTH,
        evidence="the virtual account is out of compliance since 2026-03-12",
    ),
    Case(
        "registering into an account whose out-of-compliance grace is over: enforcement at once",
        lambda b: [b.usage(T0, 1, 0), b.register(T0 + 120 * D, ooc_since=T0 + 10 * D, required=(10, 12, 0))],
        {
            "authorization": "out_of_compliance",
            "enforcement.reasons": ("out_of_compliance_expired",),
            "enforcement.since": T0 + 120 * D,
        },
        rules=LONG_AUTH,
        evidence="grace ended at 2026-06-10",
    ),
    Case(
        "a deregister/register round trip into an account still short keeps the out-of-compliance start",
        lambda b: [
            *_registered_over(b),
            b.tick(T0 + 30 * D),
            b.deregister(T0 + 30 * D + M),
            b.register(T0 + 30 * D + 2 * M, ooc_since=T0 + 105 * M, required=(10, 11, 0)),
        ],
        {
            "authorization": "out_of_compliance",
            "ooc_since": T0 + 105 * M,
            "deadlines.enforcement_at": T0 + 105 * M + 90 * D,
        },
        rules=LONG_AUTH,
    ),
    Case(
        "deregistered out of compliance: evaluation resumes with only the days left",
        lambda b: [b.usage(T0, 1, 0), b.entitle(T0, 10, 10), b.register(T0 + 30 * D), b.deregister(T0 + 40 * D)],
        {"authorization": "evaluation", "ooc_since": None, "deadlines.evaluation_ends_at": T0 + 100 * D},
    ),
    Case(
        "the authority's answer carries the account's out-of-compliance start",
        lambda b: [
            b.entitle(T0, 10, 10),
            b.register(T0),
            b.reporting_succeeded(T0 + 20 * D, "out_of_compliance", premium=2, ooc_since=T0 + 5 * D),
        ],
        {"authorization": "out_of_compliance", "ooc_since": T0 + 5 * D, "required.premium": 12},
        rules=LONG_AUTH,
    ),
    # Lab: never enforced, unless the site chooses to (ours, not the vendor's)
    Case(
        "a Lab instance is enforced when the site sets enforce_lab",
        lambda b: [b.entitle(T0, 1, 1, deployment="lab"), b.usage(T0, 1, 0), b.tick(T0 + 365 * D)],
        {"authorization": "evaluation_expired", "enforcement.active": True},
        rules=replace(RULES, enforce_lab=True),
    ),
    Case(
        "a Lab instance is never enforced by default",
        lambda b: [b.entitle(T0, 1, 1, deployment="lab"), b.usage(T0, 1, 0), b.tick(T0 + 365 * D)],
        {"authorization": "evaluation_expired", "enforcement.active": False},
    ),
    # the Server and Warm Standby licenses must be present
    Case(
        "a registered instance without a Server license shows it missing",
        lambda b: [b.register(T0), b.entitle(T0, 10, 10, server=0, warm_standby=1)],
        {"missing_licenses": ("server",)},
        evidence="missing: the Server license",
    ),
    Case(
        "with both present, nothing is missing",
        lambda b: [
            b.register(T0),
            b.entitle(T0, 10, 10, server=0, warm_standby=1),
            b.entitle(T0 + M, 10, 10, 10, server=1, warm_standby=1),
        ],
        {"missing_licenses": ()},
    ),
    Case(
        "in evaluation nothing is missing",
        lambda b: [b.entitle(T0, 10, 10, server=0, warm_standby=0)],
        {"missing_licenses": ()},
    ),
    # time and order
    Case(
        "a late over-consumption fires the ladder it missed, stamped at its deadlines",
        lambda b: [b.entitle(T0, 10, 10), b.register(T0), b.tick(T0 + 3 * 60 * M), b.usage(T0 + 60 * M, 0, 11)],
        {"authorization": "out_of_compliance", "ooc_since": T0 + 105 * M},
        rules=LONG_AUTH,
        history=[
            (T0, "no_licenses_in_use"),
            (T0, "authorized"),
            (T0 + 180 * M, "authorized"),
            (T0 + 90 * M, "authorized"),
            (T0 + 105 * M, "out_of_compliance"),
        ],
    ),
    Case(
        "an input older than now does not move the clock back",
        lambda b: [b.register(T0), b.tick(T0 + 100 * D), b.reporting_succeeded(T0 + 5 * D)],
        {"authorization": "authorization_expired"},
        evidence="successful communication",
    ),
]


def _get(view: Any, path: str) -> Any:
    for part in path.split("."):
        view = getattr(view, part)
    return view


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rule(case: Case) -> None:
    state, history = replay("i", case.inputs(Build("i")), case.rules)
    view = state.view(case.rules)
    got = {k: _get(view, k) for k in case.expect}
    assert got == case.expect
    if case.evidence is not None:
        assert case.evidence in history[-1].evidence, [t.evidence for t in history]
    if case.history:
        assert [(t.at, t.view.authorization) for t in history] == case.history


def test_every_transition_names_its_cause() -> None:
    b = Build("i")
    events = [*_registered_over(b), b.tick(T0 + 110 * M)]
    _, history = replay("i", events, LONG_AUTH)
    ids = {e.id: e.type for e in events}
    assert all(ids[t.cause_id] == t.cause_type for t in history)
    assert history[-1].cause_type == "licensing.clock.tick"
    assert "over entitlements for the 45 min tolerance: Premium 11 > 10" in history[-1].evidence


def test_no_change_makes_no_history() -> None:
    b = Build("i")
    s, history = replay("i", [b.register(T0), b.tick(T0 + M), b.tick(T0 + 2 * M)], RULES)
    assert len(history) == 1  # the first input (registered); the ticks changed nothing
    assert s.now == T0 + 2 * M


def test_state_round_trips_through_json() -> None:
    b = Build("i")
    s, _ = replay("i", [*_registered_over(b), b.tick(T0 + 110 * M)], LONG_AUTH)
    assert State.model_validate_json(s.model_dump_json()) == s


# ---------------------------------------------------------------- properties

KINDS = (
    "usage",
    "entitle",
    "entitle_lab",
    "register",
    "deregister",
    "renew_auth",
    "renew_reg",
    "report",
    "reserve",
    "return",
    "closed",
    "classic",
    "migrate",
)


def _event(b: Build, kind: str, t: datetime, n: int) -> Event:
    start = t - timedelta(hours=8)
    return {
        "usage": lambda: b.usage(t, n % 13, n % 7, n % 3),
        "entitle": lambda: b.entitle(t, 8 + n % 4, 4 + n % 3, 2),
        "entitle_lab": lambda: b.entitle(t, 8 + n % 4, 4 + n % 3, 2, deployment="non_production"),
        "register": lambda: b.register(t),
        "deregister": lambda: b.deregister(t),
        "renew_auth": lambda: b.authorization_renewed(t),
        "renew_reg": lambda: b.registration_renewed(t),
        "report": lambda: b.reporting_succeeded(t),
        "reserve": lambda: b.reserve(t, 10, 5),
        "return": lambda: b.reservation_returned(t),
        "closed": lambda: b.closed(t, start, t, n % 13, n % 7),
        "classic": lambda: b.classic(t),
        "migrate": lambda: b.migrated(t),
    }[kind]()


scenario = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(1, 60 * 24 * 400), st.integers(0, 100)), min_size=1, max_size=25
)
tick_times = st.lists(st.integers(1, 60 * 24 * 500), max_size=25)


def _script(steps: list[tuple[str, int, int]]) -> tuple[Build, list[Event]]:
    b = Build("i")
    events = [b.usage(T0, 1, 1)]
    for kind, minute, n in sorted(steps, key=lambda s: s[1]):
        events.append(_event(b, kind, T0 + minute * M, n))
    return b, events


def _timeline(history: list[Transition]) -> list[tuple[datetime, str]]:
    return [(t.at, t.view.model_dump_json()) for t in history]


@settings(max_examples=150, deadline=None)
@given(scenario, tick_times, st.randoms(use_true_random=False))
def test_deadlines_fire_whatever_order_the_ticks_arrive_in(
    steps: list[tuple[str, int, int]], ticks: list[int], rnd: Any
) -> None:
    """Ticks come in any order and at any lag, but never overtake an event older than they are: the same deadlines
    fire, stamped at the same times, and the final state is the same as with one tick at the end."""
    b, events = _script(steps)
    tick_events = [b.tick(T0 + m * M) for m in ticks]
    end = max([e.time for e in events + tick_events])
    reference_state, reference = replay("i", [*events, b.tick(end)], LONG_AUTH)

    arrival: list[Event] = list(events)
    for tick in rnd.sample(tick_events, len(tick_events)):
        # the earliest slot after every event older than the tick; any slot from there on
        earliest = max(
            (i + 1 for i, e in enumerate(arrival) if e.type != "licensing.clock.tick" and e.time < tick.time), default=1
        )
        arrival.insert(rnd.randint(earliest, len(arrival)), tick)
    state, history = replay("i", [*arrival, b.tick(end)], LONG_AUTH)

    assert state.view(LONG_AUTH) == reference_state.view(LONG_AUTH)
    assert _timeline(history) == _timeline(reference)


@settings(max_examples=100, deadline=None)
@given(scenario, tick_times)
def test_the_same_inputs_give_the_same_history(steps: list[tuple[str, int, int]], ticks: list[int]) -> None:
    def run() -> list[tuple[datetime, str, str, str]]:
        b, events = _script(steps)
        events += [b.tick(T0 + m * M) for m in ticks]
        _, history = replay("i", events, RULES)
        return [(t.at, t.cause_id, t.evidence, t.view.model_dump_json()) for t in history]

    assert run() == run()


@settings(max_examples=150, deadline=None)
@given(scenario, tick_times)
def test_invariants_hold_after_every_input(steps: list[tuple[str, int, int]], ticks: list[int]) -> None:
    b, events = _script(steps)
    arrival = events + [b.tick(T0 + m * M) for m in ticks]
    s = State(instance="i")
    for e in arrival:
        s = step(s, e, RULES).state
        v = s.view(RULES)
        assert v.enforcement.active == bool(v.enforcement.reasons)
        assert (v.enforcement.since is None) == (not v.enforcement.active)
        assert (v.over_since is None) == (v.over_stage is None)
        assert not (v.over_since is not None and v.ooc_since is not None)
        assert v.authorization != "out_of_compliance" or v.ooc_since is not None
        if v.authorization in ("evaluation", "no_licenses_in_use", "evaluation_expired"):
            assert v.deficit.standard == v.deficit.premium == v.deficit.ivr_ports == 0
        assert s.evaluation_used <= RULES.evaluation


# ---------------------------------------------------------------- termination, from any state

_times = st.integers(0, 60 * 24 * 900).map(lambda m: T0 + m * M)
_counts = st.builds(Counts, standard=st.integers(0, 15), premium=st.integers(0, 15), ivr_ports=st.integers(0, 5))
any_state = st.builds(
    State,
    instance=st.just("i"),
    now=st.none() | _times,
    deployment=st.sampled_from(["production", "non_production"]),
    entitled=st.none() | _counts,
    reserved=st.none() | _counts,
    usage=_counts,
    interval_start=st.none() | _times,
    interval_peak=_counts,
    registration=st.sampled_from(["unregistered", "registered", "registration_expired", "reserved"]),
    ever_used=st.booleans(),
    evaluation_used=st.integers(0, 120).map(lambda d: d * D),
    evaluation_since=st.none() | _times,
    evaluation_expired=st.booleans(),
    last_communication=st.none() | _times,
    registration_valid_until=st.none() | _times,
    authorization_expired=st.booleans(),
    over_since=st.none() | _times,
    over_stage=st.none() | st.sampled_from(["detected", "imminent"]),
    ooc_since=st.none() | _times,
    enforcement_reasons=st.lists(
        st.sampled_from(["evaluation_expired", "out_of_compliance_expired", "authorization_expired"]), unique=True
    ).map(lambda r: tuple(sorted(r))),
    enforcement_since=st.none() | _times,
)


@settings(max_examples=int(__import__("os").environ.get("CCXLIC_FUZZ_EXAMPLES", "300")), deadline=None)
@given(
    any_state,
    st.lists(
        st.tuples(st.sampled_from((*KINDS, "tick")), st.integers(0, 60 * 24 * 1200), st.integers(0, 100)),
        min_size=1,
        max_size=6,
    ),
)
def test_every_step_returns_from_any_state(state: State, inputs: list[tuple[str, int, int]]) -> None:
    """Whatever the state (every deadline combination, non-production, a reservation, expired anything) and input,
    `step` settles its deadlines within MAX_FIRES firings instead of looping."""
    b = Build("i")
    for kind, minute, n in inputs:
        event = b.tick(T0 + minute * M) if kind == "tick" else _event(b, kind, T0 + minute * M, n)
        state = step(state, event, RULES).state


def _weeks_of_peaks(b: Build, monday: datetime, weeks: int, premium_of: Callable[[int], int]) -> list[Event]:
    """Weekday day intervals (08:00-16:00) busy with `premium_of(week)` Premium agents, the rest quiet."""
    out = []
    for n in range(weeks * 21):
        start = monday + n * timedelta(hours=8)
        busy = start.weekday() < 5 and start.hour == 8
        out.append(
            b.closed(
                start + timedelta(hours=8, minutes=5),
                start,
                start + timedelta(hours=8),
                5 if busy else 0,
                premium_of(n // 21) if busy else 0,
            )
        )
    return out


def test_the_forecast_names_the_first_coming_run_over_the_limits_and_clears_when_it_begins() -> None:
    b, monday = Build("i"), datetime(2026, 3, 2, tzinfo=UTC)
    events = [b.entitle(monday - M, 10, 7), b.register(monday - M)]
    events += _weeks_of_peaks(b, monday, 3, lambda week: 4 + week)  # 4, 5, 6 Premium: 7 next week, 8 after
    s, history = replay("i", events, LONG_AUTH)
    assert s.forecast is None  # 7 on 7: the p90 is at the limit, not over; and only 3 weeks
    events += _weeks_of_peaks(b, monday + 21 * D, 1, lambda week: 7)
    s, history = replay("i", events, LONG_AUTH)
    assert s.forecast is not None and s.forecast.over.premium >= 1
    assert s.forecast.start == monday + 28 * D + timedelta(hours=8)  # Monday of week 5, 08:00
    assert s.forecast.made_at == monday + 28 * D  # the end of the last interval it rests on
    assert any("forecast (an estimate)" in t.evidence for t in history)
    assert history[-1].view.forecast == s.forecast  # published in compliance.changed
    # the window begins: the estimate is gone, the live rules judge from here
    s, later = replay("i", [*events, b.tick(monday + 28 * D + timedelta(hours=9))], LONG_AUTH)
    assert s.forecast is None and "the forecast's window began" in later[-1].evidence
    # in evaluation (no limit) there is nothing to be over, but the forecast peak is still known (the metric)
    b2 = Build("e")
    s, _ = replay("e", _weeks_of_peaks(b2, monday, 4, lambda week: 4 + 2 * week), RULES)
    assert s.forecast is None and len(s.peaks) == 4 * 21
    assert s.forecast_peak is not None and s.forecast_peak.premium >= 12  # 4, 6, 8, 10 Premium: 12 or more next
    s, _ = replay("e", _weeks_of_peaks(b2, monday, 2, lambda week: 4), RULES)
    assert s.forecast_peak is None  # two weeks: too little history


def test_the_forecast_peak_is_a_gauge_per_license_and_leaves_with_the_forecast() -> None:
    from ccxlic_compliance.app import ComplianceMetrics
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    metrics = ComplianceMetrics(registry)
    b, monday = Build("g"), datetime(2026, 3, 2, tzinfo=UTC)
    s, _ = replay("g", _weeks_of_peaks(b, monday, 4, lambda week: 4 + 2 * week), RULES)
    metrics.observe(s, RULES)
    labels = {"product_instance": "g", "license": "premium"}
    assert registry.get_sample_value("ccxlic_compliance_forecast_peak", labels) == s.forecast_peak.premium  # type: ignore[union-attr]
    metrics.observe(State(instance="g"), RULES)
    assert registry.get_sample_value("ccxlic_compliance_forecast_peak", labels) is None
