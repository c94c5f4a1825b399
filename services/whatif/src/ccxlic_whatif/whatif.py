"""The what-if's changes, its reading of the log and the services' records, and what a replay comes to over a
window. Pure apart from `read_inputs` (the broker) and `recorded` (the services' HTTP views)."""

from __future__ import annotations

import asyncio
import json
import time as clock
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from ccxlic_alerting.machine import Raised
from ccxlic_alerting.settings import AlertingSettings
from ccxlic_compliance.settings import ComplianceSettings
from ccxlic_consumption.app import INPUTS
from ccxlic_consumption.settings import ConsumptionSettings
from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    ComplianceChangedData,
    EntitlementsSet,
    InstanceDeregistered,
    InstanceRegistered,
    LicenseCounts,
    Peak,
    ReportingSucceeded,
    ReportingSucceededData,
    ReservationInstalled,
    ReservationInstalledData,
    ReservationReturned,
    Witness,
)
from ccxlic_contract.topics import INTAKE
from ccxlic_rules import Entitlement, Usage, deficit
from ccxlic_rules.pool import over
from ccxlic_runtime.client import ServiceError, Urls, intervals
from ccxlic_runtime.kafka import Broker, check_co_partitioned, topic_name, wait_for_kafka
from ccxlic_runtime.loop import read_partition
from ccxlic_runtime.policy import Decoder, partition_for
from ccxlic_runtime.settings import RuntimeSettings, load_settings

from ccxlic_whatif.replay import ChainRules, Outcome, merged, replay

LICENSES = ("standard", "premium", "ivr_ports")
EPOCH, FAR = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)  # every report
WORDS = {"standard": "Standard", "premium": "Premium", "ivr_ports": "IVR ports"}


# ---------------------------------------------------------------- the changes


@dataclass(frozen=True, slots=True)
class Changes:
    """What differs from the history: seats added to (or taken from) every entitlement and reservation the instance
    had, License Control (no overage), a reservation in place of the registration, another tolerance."""

    standard: int = 0
    premium: int = 0
    ivr_ports: int = 0
    no_overage: bool = False
    reservation: LicenseCounts | None = None
    tolerance: timedelta | None = None

    def any(self) -> bool:
        return self != Changes()

    def adds(self) -> bool:
        """Seats added, none removed: the authority's answers can be judged again (see `_rejudged`)."""
        counts = (self.standard, self.premium, self.ivr_ports)
        return any(counts) and min(counts) >= 0 and self.reservation is None

    def words(self) -> list[str]:
        out = [f"{WORDS[lic]} {n:+d}" for lic in LICENSES if (n := getattr(self, lic))]
        if self.no_overage:
            out.append("License Control (no overage)")
        if self.reservation is not None:
            r = self.reservation
            out.append(f"a reservation of Standard {r.standard}, Premium {r.premium}, IVR ports {r.ivr_ports}")
        if self.tolerance is not None:
            out.append(f"a tolerance of {_duration(self.tolerance)}")
        return out


def changed_inputs(events: Iterable[Event], c: Changes) -> Iterator[Event]:
    """The inputs as they would have been. A reservation is installed at the first input, and the registration's
    events (registered, deregistered, the authority's answers) and the reservations of the history are left out: a
    reserved instance is not registered."""
    first = True
    for e in events:
        if first and c.reservation is not None:
            r = c.reservation
            data = ReservationInstalledData(standard_seats=r.standard, premium_seats=r.premium, ivr_ports=r.ivr_ports)
            yield ReservationInstalled(
                id=f"whatif-reservation-{e.subject}",
                source="urn:ccxlic:whatif",
                time=e.time,
                subject=e.subject,
                data=_more(data, c),
            )
        first = False
        if c.reservation is not None and isinstance(
            e,
            InstanceRegistered | InstanceDeregistered | ReportingSucceeded | ReservationInstalled | ReservationReturned,
        ):
            continue
        if isinstance(e, ReportingSucceeded) and e.data.verdict == "out_of_compliance" and c.adds():
            yield e.model_copy(update={"data": _rejudged(e.data, c)})
        elif isinstance(e, EntitlementsSet):
            d = _more(e.data, c)
            yield e.model_copy(update={"data": d.model_copy(update={"overage_allowed": False}) if c.no_overage else d})
        elif isinstance(e, ReservationInstalled):
            yield e.model_copy(update={"data": _more(e.data, c)})
        else:
            yield e


def _rejudged(data: ReportingSucceededData, c: Changes) -> ReportingSucceededData:
    """The authority's "out of compliance" answer with the seats added to the account's pool: the shortfall less
    them (a Premium beyond the Premium shortfall covers Standard), in compliance when nothing is short any more."""
    short = data.shortfall or LicenseCounts(standard=0, premium=0, ivr_ports=0)
    premium = max(0, short.premium - c.premium)
    spare = max(0, c.premium - short.premium)
    standard = max(0, short.standard - c.standard - spare)
    ivr = max(0, short.ivr_ports - c.ivr_ports)
    if premium == standard == ivr == 0:
        return ReportingSucceededData(verdict="in_compliance", reports=data.reports)
    left = LicenseCounts(standard=standard, premium=premium, ivr_ports=ivr)
    return data.model_copy(update={"shortfall": left})


def _more(data: Any, c: Changes) -> Any:
    return data.model_copy(
        update={
            "standard_seats": max(0, data.standard_seats + c.standard),
            "premium_seats": max(0, data.premium_seats + c.premium),
            "ivr_ports": max(0, data.ivr_ports + c.ivr_ports),
        }
    )


def changed_rules(rules: ChainRules, c: Changes) -> ChainRules:
    if c.tolerance is None:
        return rules
    compliance = replace(
        rules.compliance, ooc_tolerance=c.tolerance, ooc_warning=min(rules.compliance.ooc_warning, c.tolerance)
    )
    return replace(rules, compliance=compliance)


# ---------------------------------------------------------------- what it comes to


@dataclass
class Summary:
    """What the services recorded (or would have) for an instance over [since, until)."""

    since: datetime
    until: datetime
    inputs: int
    ooc_minutes: float = 0.0
    ooc_episodes: int = 0  # entries into out of compliance
    enforcement: list[tuple[datetime, tuple[str, ...]]] = field(default_factory=list)  # when it began, why
    refused: dict[str, int] = field(default_factory=dict)  # sign-ins refused, by the limit that refused them
    alerts: dict[str, int] = field(default_factory=dict)  # alerts raised, by name
    over_intervals: int = 0  # reporting intervals whose peak was over what the instance might use
    to_buy: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LICENSES, 0))
    to_buy_for: list[dict[str, Any]] = field(default_factory=list)  # the out-of-compliance episodes that need it

    def as_json(self) -> dict[str, Any]:
        return {
            "ooc_minutes": round(self.ooc_minutes, 1),
            "ooc_episodes": self.ooc_episodes,
            "enforcement": [{"at": at.isoformat(), "reasons": list(why)} for at, why in self.enforcement],
            "refused_sign_ins": dict(self.refused),
            "alerts_raised": dict(self.alerts),
            "intervals_over": self.over_intervals,
            "to_buy": dict(self.to_buy),
            "to_buy_for": self.to_buy_for,
        }


def _limits_at(timeline: list[tuple[datetime, Entitlement | None]], t: datetime) -> Entitlement | None:
    held: Entitlement | None = None
    for at, limits in timeline:
        if at > t:
            break
        held = limits
    return held


def summarize(out: Outcome, since: datetime, until: datetime) -> Summary:
    s = Summary(since, until, out.inputs)
    views = [(tr.transition.at, tr.transition.view) for tr in out.transitions]
    was_ooc, was_enforced = False, False
    ooc_from: datetime | None = None
    for at, view in views:
        ooc, enforced = view.ooc_since is not None, view.enforcement.active
        if ooc and not was_ooc:
            ooc_from = at
            s.ooc_episodes += since <= at < until
        if not ooc and was_ooc and ooc_from is not None:
            s.ooc_minutes += _overlap(ooc_from, at, since, until)
            ooc_from = None
        if enforced and not was_enforced and since <= at < until:
            s.enforcement.append((at, tuple(view.enforcement.reasons)))
        if view.required is not None and since <= at < until:
            _need(s, view, at, out.limits)
        was_ooc, was_enforced = ooc, enforced
    if was_ooc and ooc_from is not None:
        s.ooc_minutes += _overlap(ooc_from, until, since, until)
    s.refused = dict(Counter(r.limit for r in out.rejected if since <= r.at < until))
    raised = [a.alert for acted in out.actions if isinstance(a := acted.action, Raised)]
    s.alerts = dict(Counter(a.alert for a in raised if since <= a.raised_at < until))
    latest = {r.interval_start: r for r in out.reports}  # the last revision of each
    for r in latest.values():
        limits = _limits_at(out.limits, r.interval_end)
        if since <= r.interval_start < until and limits is not None:
            s.over_intervals += over(deficit(Usage(r.peak.standard, r.peak.premium, r.peak.ivr_ports), limits))
    return s


def _need(s: Summary, view: ComplianceChangedData, at: datetime, timeline: list[tuple[datetime, Any]]) -> None:
    """What the limits in force must gain to cover the peaks that put the instance out of compliance."""
    assert view.required is not None
    limits = _limits_at(timeline, at)
    if limits is None:
        return
    req = view.required
    d = deficit(Usage(req.standard, req.premium, req.ivr_ports), limits)
    short = {lic: getattr(d, lic) for lic in LICENSES}
    if not any(short.values()):
        return
    for lic, n in short.items():
        s.to_buy[lic] = max(s.to_buy[lic], n)
    episode = {"ooc_since": None if view.ooc_since is None else view.ooc_since.isoformat(), "short": short}
    if episode not in s.to_buy_for:
        s.to_buy_for.append(episode)


def _overlap(a: datetime, b: datetime, since: datetime, until: datetime) -> float:
    lo, hi = max(a, since), min(b, until)
    return max(0.0, (hi - lo).total_seconds() / 60)


def _duration(d: timedelta) -> str:
    minutes = int(d.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def compare(base: Summary, after: Summary) -> list[tuple[str, str, str]]:
    """The two summaries side by side, a row per measure: (what, replayed, what if)."""

    def enforcement(s: Summary) -> str:
        return s.enforcement[0][0].strftime("%Y-%m-%d %H:%M") if s.enforcement else "none"

    rows = [
        ("minutes out of compliance", f"{base.ooc_minutes:.0f}", f"{after.ooc_minutes:.0f}"),
        ("out-of-compliance episodes", str(base.ooc_episodes), str(after.ooc_episodes)),
        ("enforcement from", enforcement(base), enforcement(after)),
        ("intervals over the limits", str(base.over_intervals), str(after.over_intervals)),
    ]
    for limit in sorted({*base.refused, *after.refused}):
        rows.append((f"sign-ins refused ({limit})", str(base.refused.get(limit, 0)), str(after.refused.get(limit, 0))))
    if not base.refused and not after.refused:
        rows.append(("sign-ins refused", "0", "0"))
    for alert in sorted({*base.alerts, *after.alerts}):
        rows.append((f"raised {alert}", str(base.alerts.get(alert, 0)), str(after.alerts.get(alert, 0))))
    for lic in LICENSES:
        rows.append((f"to buy: {WORDS[lic]}", str(base.to_buy[lic]), str(after.to_buy[lic])))
    return rows


# ---------------------------------------------------------------- the shell: the log, the services


def service_rules() -> ChainRules:
    """Each service's rules from the same CCXLIC_* settings the services read (ConfigError says what is wrong)."""
    return ChainRules(
        load_settings(ConsumptionSettings).rules(),
        load_settings(ComplianceSettings).rules(),
        load_settings(AlertingSettings).rules(),
    )


async def read_inputs(
    settings: RuntimeSettings, instance: str, say: Callable[[str], None] | None = None
) -> list[Event]:
    """The instance's inputs from the log, in the order the consumption computer handles them; `say` hears of the
    reading now and then."""
    broker = Broker.of(settings)
    await wait_for_kafka(broker, timeout=15)
    names = [topic_name(t, settings.topic_prefix) for t in INPUTS]
    counts = await check_co_partitioned(broker, names)
    partition = partition_for(instance, next(iter(counts.values())))
    shown = [0.0]

    def progress(read: int, total: int) -> None:
        if clock.monotonic() - shown[0] >= 2 or read == total:
            shown[0] = clock.monotonic()
            if say is not None:
                say(f"read {read:,} of {total:,} records (partition {partition} of the inputs)")

    logs = await read_partition(broker, names, partition, progress)
    max_skew = load_settings(ConsumptionSettings).max_event_skew
    decoder = Decoder(INPUTS, settings.topic_prefix, partitions=counts.get, max_skew=max_skew, reroute=INTAKE)
    return merged(logs, decoder, instance)


async def recorded(urls: Urls, instance: str) -> tuple[list[Any], list[Any]]:
    """What the services recorded: every interval report (each revision) and every compliance transition.
    ServiceError when a service does not answer or refuses."""
    reports = await intervals(urls, instance, EPOCH, FAR)
    transitions: list[Any] = []
    path = f"{urls.compliance}/v1/instances/{instance}/compliance/history"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            while True:
                async with http.get(path, params={"after": str(len(transitions)), "limit": "10000"}) as r:
                    if r.status != 200:
                        raise ServiceError(f"compliance answered {r.status} for {path}")
                    page = (await r.json())["transitions"]
                transitions += page
                if len(page) < 10000:
                    return reports, transitions
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ServiceError(f"compliance at {urls.compliance} does not answer ({exc!r}); is it running?") from None


def differences(out: Outcome, reports: list[Any], transitions: list[Any]) -> list[str]:
    """Where the replay and the services' records differ (empty: identical), first differences first."""
    diffs: list[str] = []
    mine = sorted(out.reports, key=lambda r: (r.interval_start, r.revision))
    if len(mine) != len(reports):
        diffs.append(f"{len(mine)} interval reports replayed, {len(reports)} recorded")
    for a, b in zip(mine, reports, strict=False):
        theirs = (
            datetime.fromisoformat(b["interval_start"]),
            b["revision"],
            Peak.model_validate_json(json.dumps(b["peak"])),
            Witness.model_validate_json(json.dumps(b["witness"])),
        )
        if (a.interval_start, a.revision, a.peak, a.witness) != theirs:
            diffs.append(f"the report of the interval from {b['interval_start']} (revision {b['revision']}) differs")
            break
    if len(out.transitions) != len(transitions):
        diffs.append(f"{len(out.transitions)} compliance transitions replayed, {len(transitions)} recorded")
    for t, u in zip(out.transitions, transitions, strict=False):
        tr = t.transition
        same = (
            t.seq == u["seq"]
            and tr.at == datetime.fromisoformat(u["at"])
            and tr.cause_id == u["cause"]["id"]
            and tr.evidence == u["evidence"]
            and tr.view == ComplianceChangedData.model_validate_json(json.dumps(u["state"]))
        )
        if not same:
            diffs.append(
                f"compliance transition {u['seq']}: recorded at {u['at']} ({u['evidence']}; cause {u['cause']['type']}"
                f" {u['cause']['id']}), replayed at {tr.at.isoformat()} ({tr.evidence}; cause {tr.cause_type}"
                f" {tr.cause_id})"
            )
            break
    return diffs


class NoInputs(LookupError):
    """The log has no input of the instance (ticks for every instance do not make one)."""


@dataclass(frozen=True)
class WhatIf:
    """A what-if's answer: the history replayed and under the changes, over [since, until)."""

    instance: str
    changes: Changes
    since: datetime
    until: datetime
    inputs: int
    seconds: float  # the two replays
    base: Outcome
    after: Outcome
    replayed: Summary
    what_if: Summary


async def what_if(
    settings: RuntimeSettings,
    instance: str,
    changes: Changes,
    rules: ChainRules,
    since: datetime | None = None,
    until: datetime | None = None,
    say: Callable[[str], None] | None = None,
) -> WhatIf:
    """Read the instance's inputs from the log and replay them (in a worker thread: it is CPU work) as they were and
    under `changes`; by default over its whole history. Raises NoInputs, or the broker's KafkaUnavailable."""
    inputs = await read_inputs(settings, instance, say)
    if not any(e.subject == instance for e in inputs):
        raise NoInputs(f"no input of instance {instance!r} in the log (topic prefix {settings.topic_prefix!r})")
    lo = since or inputs[0].time
    hi = until or inputs[-1].time + timedelta(seconds=1)
    kept = [e for e in inputs if e.time < hi]  # what comes later cannot change the window

    shown = [clock.monotonic()]

    def told(what: str) -> Callable[[int], None]:
        def progress(n: int) -> None:  # at most every 2 s: a year of a large instance takes minutes
            if say is not None and clock.monotonic() - shown[0] >= 2:
                shown[0] = clock.monotonic()
                say(f"replayed {n:,} of {len(kept):,} inputs ({what})")

        return progress

    def both() -> tuple[Outcome, Outcome]:
        base = replay(instance, kept, rules, progress=told("as they were"))
        if not changes.any():
            return base, base
        changed = changed_inputs(kept, changes)
        return base, replay(instance, changed, changed_rules(rules, changes), progress=told("what if"))

    started = clock.perf_counter()
    base, after = await asyncio.to_thread(both)
    took = clock.perf_counter() - started
    return WhatIf(
        instance, changes, lo, hi, len(kept), took, base, after, summarize(base, lo, hi), summarize(after, lo, hi)
    )
