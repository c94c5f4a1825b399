"""The authority's rules, pure: tokens, validity periods, the answer to a usage report, and each virtual account's
compliance.

The answer to a usage report is the vendor's: the virtual account's pool against what its instances use. The
pool is what was deposited minus what reservations hold; the usage is the sum of each registered instance's
latest reported peaks; an idle Premium license covers Standard demand (the Flex pool rule, `ccxlic_rules`).

Compliance is judged per virtual account (SSM's model): an account is out of compliance from the first report that
finds it short until a report finds it within its licenses again, or, once the 90-day grace is over, until its
licenses cover the peaks that caused it (the vendor: "Purchase new licenses to exit the Enforcement state"). An
instance that registers into an account still out of compliance continues the account's clock.

An account holds the consumed licenses (Flex Standard, Flex Premium, IVR ports) and the ones that must be present and
are never consumed (Server, Warm Standby: "The Server or Warm Standby license never shows to be a consumed unit;
however, it is required to be present").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from ccxlic_rules import Entitlement, Usage, deficit
from ccxlic_rules.pool import over

LICENSES: tuple[str, ...] = ("standard", "premium", "ivr_ports")
"""The licenses usage consumes and a report is judged on."""
PRESENCE: tuple[str, ...] = ("server", "warm_standby")
"""The licenses that must be present and are never consumed (reported as 0 in use)."""
HELD: tuple[str, ...] = LICENSES + PRESENCE
"""Every license an account holds."""
License = Literal["standard", "premium", "ivr_ports"]
NAMES = {
    "standard": "Flex Standard",
    "premium": "Flex Premium",
    "ivr_ports": "IVR ports",
    "server": "Server",
    "warm_standby": "Warm Standby",
}
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Rules:
    identity_valid: timedelta = 365 * DAY  # the vendor: "The initial registration is valid for one year"
    renew_registration_after: timedelta = 182 * DAY  # "automatically renewed every six months"
    authorization_valid: timedelta = 90 * DAY  # "has not communicated with Cisco SSM for more than 90 days"
    renew_authorization_after: timedelta = 30 * DAY  # "renewed every 30 days"
    report_every: timedelta = timedelta(hours=8)
    ooc_grace: timedelta = 90 * DAY  # "The out-of-compliance period is for 90 days"


class Refused(ValueError):
    """A request the authority refuses: `status` is the HTTP status, the message the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def counts(value: Any, what: str, licenses: tuple[str, ...] = HELD) -> dict[str, int]:
    """Counts per license from a request: only `licenses`, whole numbers from 0 to 1,000,000 (absent: 0)."""
    if not isinstance(value, dict):
        raise Refused(400, f"{what} must be an object of counts per license ({', '.join(licenses)})")
    unknown = sorted(set(value) - set(licenses))
    if unknown:
        raise Refused(400, f"{what}: unknown license {unknown[0]!r}; the licenses are {', '.join(licenses)}")
    out = {}
    for lic in licenses:
        n = value.get(lic, 0)
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 1_000_000:
            raise Refused(400, f"{what}.{lic} must be a whole number from 0 to 1000000")
        out[lic] = n
    return out


def add(a: dict[str, int], b: dict[str, int], sign: int = 1) -> dict[str, int]:
    """a + b (or a - b) per license, over the licenses either names."""
    return {lic: a.get(lic, 0) + sign * b.get(lic, 0) for lic in HELD if lic in a or lic in b}


def token_problem(token: dict[str, Any], at: datetime) -> str | None:
    """Why a registration token cannot be used at `at`, or None."""
    if token["revoked_at"] is not None:
        return f"the registration token was revoked at {token['revoked_at'].isoformat()}"
    if at >= token["expires_at"]:
        return f"the registration token expired at {token['expires_at'].isoformat()}"
    if token["uses"] >= token["max_uses"]:
        return f"the registration token was used {token['uses']} times, its maximum"
    return None


def verdict(available: dict[str, int], used: dict[str, int]) -> dict[str, Any]:
    """The answer to a usage report: per license, in compliance or out of it and by how much."""
    short = deficit(
        Usage(used["standard"], used["premium"], used["ivr_ports"]),
        Entitlement(available["standard"], available["premium"], available["ivr_ports"]),
    )
    shortfall = {"standard": short.standard, "premium": short.premium, "ivr_ports": short.ivr_ports}
    licenses = {
        lic: {
            "in_use": used[lic],
            "available": available[lic],
            "status": "out_of_compliance" if shortfall[lic] else "in_compliance",
            "shortfall": shortfall[lic],
        }
        for lic in LICENSES
    }
    over = any(shortfall.values())
    return {"verdict": "out_of_compliance" if over else "in_compliance", "shortfall": shortfall, "licenses": licenses}


def peak_of(reports: list[dict[str, Any]]) -> dict[str, int]:
    """The highest peak per license over a usage report's intervals (the Server and Warm Standby licenses as
    reported: 0, never consumed)."""
    out = dict.fromkeys(HELD, 0)
    for r in reports:
        raw = r.get("peak") if isinstance(r, dict) else None
        if not isinstance(raw, dict):
            raise Refused(400, "each of reports[] needs a peak: counts per license")
        peak = counts({lic: raw[lic] for lic in HELD if lic in raw}, "reports[].peak")
        out = {lic: max(out[lic], peak[lic]) for lic in HELD}
    return out


@dataclass(frozen=True, slots=True)
class AccountOoc:
    """A virtual account out of compliance: since when, and the usage its licenses must cover to end it."""

    since: datetime
    required: dict[str, int]


def covers(available: dict[str, int], used: dict[str, int]) -> bool:
    """The licenses cover the usage (idle Premium covering Standard)."""
    short = deficit(
        Usage(used.get("standard", 0), used.get("premium", 0), used.get("ivr_ports", 0)),
        Entitlement(available.get("standard", 0), available.get("premium", 0), available.get("ivr_ports", 0)),
    )
    return not over(short)


def judge_account(
    current: AccountOoc | None, available: dict[str, int], used: dict[str, int], at: datetime, rules: Rules
) -> AccountOoc | None:
    """The account's compliance after a report at `at`: short, it is (or stays) out of compliance, its required usage
    the highest seen; within its licenses, it is in compliance again, unless the grace is over and the licenses do
    not cover what caused it (then only a purchase ends it)."""
    if not covers(available, used):
        if current is None:
            return AccountOoc(at, {lic: used.get(lic, 0) for lic in LICENSES})
        required = {lic: max(current.required.get(lic, 0), used.get(lic, 0)) for lic in LICENSES}
        return AccountOoc(current.since, required)
    if current is None:
        return None
    if at >= current.since + rules.ooc_grace and not covers(available, current.required):
        return current
    return None


def still_short(current: AccountOoc | None, available: dict[str, int]) -> AccountOoc | None:
    """What an instance registering into the account continues: its out-of-compliance state, unless the account's
    licenses now cover what caused it (a purchase since)."""
    if current is None or covers(available, current.required):
        return None
    return current


# ---------------------------------------------------------------- balances (what SSM shows per virtual account)


def balances(
    purchased: dict[str, int], reported: dict[str, dict[str, int]], reserved: dict[str, dict[str, int]]
) -> dict[str, Any]:
    """A virtual account's balances, as Cisco SSM shows them: per license the purchased quantity, what is in use
    (the latest peaks its instances reported, and what reservations hold) and the balance, with the instances behind
    each number. `reported` and `reserved` are per instance (an on-prem's instances named `instance@onprem`).

    The account is in deficit when its licenses do not cover its use under the Flex pool rule (an idle Premium
    covers Standard demand): `deficit` is that shortfall per license. A Standard balance below 0 that idle Premium
    covers says `covered`, not `deficit`."""
    use = dict.fromkeys(LICENSES, 0)
    behind: dict[str, list[dict[str, Any]]] = {lic: [] for lic in HELD}
    for source, per in (("reported", reported), ("reserved", reserved)):
        for instance in sorted(per):
            for lic in LICENSES:
                n = per[instance].get(lic, 0)
                if n:
                    use[lic] += n
                    behind[lic].append({"instance": instance, "in_use": n, "as": source})
    short = deficit(
        Usage(use["standard"], use["premium"], use["ivr_ports"]),
        Entitlement(purchased.get("standard", 0), purchased.get("premium", 0), purchased.get("ivr_ports", 0)),
    )
    shortfall = {"standard": short.standard, "premium": short.premium, "ivr_ports": short.ivr_ports}
    licenses = {}
    for lic in HELD:
        have, used = purchased.get(lic, 0), use.get(lic, 0)
        balance = have - used
        status = (
            "deficit" if shortfall.get(lic, 0) else "covered" if balance < 0 else "surplus" if balance > 0 else "even"
        )
        licenses[lic] = {
            "name": NAMES[lic],
            "purchased": have,
            "in_use": used,
            "balance": balance,
            "status": status,
            "instances": behind[lic],
        }
    return {"licenses": licenses, "deficit": shortfall, "in_deficit": any(shortfall.values())}


# ---------------------------------------------------------------- account notifications (the mail SSM sends)

NOTICE_KINDS: dict[str, tuple[str, str]] = {
    "AccountDeficit": ("major", "Virtual account in deficit"),
    "InstanceOutOfCompliance": ("major", "Product instance out of compliance"),
    "AuthorizationMissed": ("critical", "Product instance missed its authorization renewal"),
    "Enforcement": ("critical", "Virtual account's instances enter enforcement"),
    "ReservationCompleted": ("info", "License reservation completed"),
    "MigrationCompleted": ("info", "Classic to Smart migration completed"),
}
"""What the authority mails a smart account's notification addresses: kind -> (severity, title)."""


def notice(
    kind: str,
    smart_account: str,
    subject: str,
    at: datetime,
    summary: str,
    action: str,
    *,
    key: str,
    deadline: datetime | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An account notification, in the shape the runtime's email channel renders (`ccxlic_runtime.channels`): its
    id is stable (from `key`), so a resend is the same mail."""
    severity, title = NOTICE_KINDS[kind]
    return {
        "notification_id": str(uuid.uuid5(NOTICES, key)),
        "kind": "raised",
        "alert_id": key,
        "alert": kind,
        "title": f"{title} ({smart_account})",
        "severity": severity,
        "instance": subject,
        "summary": summary,
        "action": action,
        "deadline": None if deadline is None else deadline.isoformat(),
        "raised_at": at.isoformat(),
        "at": at.isoformat(),
        "details": {"smart_account": smart_account, **(details or {})},
    }


NOTICES = uuid.UUID("0b6f1d0c-6c55-4b8e-9a43-5f0f8d2c7e19")


def shortfall_text(short: dict[str, int]) -> str:
    """`2 Flex Premium, 3 IVR ports` (the licenses short)."""
    return ", ".join(f"{n} {NAMES[lic]}" for lic, n in short.items() if n) or "nothing"


# ---------------------------------------------------------------- SSM On-Prem synchronisation

SYNC_VERSION = 1


def sync_usage(payload: dict[str, Any], held: list[str]) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
    """The usage a sync request carries, checked: per virtual account (each one the on-prem holds), `reported` and
    `reserved` counts per instance. Refused (409) when it names an account the on-prem does not hold, 400 when it is
    not in the form."""
    if payload.get("version") != SYNC_VERSION:
        raise Refused(
            400, f"the sync request is version {payload.get('version')!r}; this authority reads {SYNC_VERSION}"
        )
    accounts = payload.get("accounts")
    if not isinstance(accounts, dict):
        raise Refused(400, "the sync request holds no accounts object")
    out: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for name, usage in accounts.items():
        if name not in held:
            raise Refused(409, f"the on-prem does not hold virtual account {name!r} (it holds {', '.join(held)})")
        if not isinstance(usage, dict):
            raise Refused(400, f"the sync request's account {name!r} is not an object")
        out[name] = {}
        for part in ("reported", "reserved"):
            per = usage.get(part, {})
            if not isinstance(per, dict) or len(per) > 100_000:
                raise Refused(400, f"the sync request's {name}.{part} must be counts per instance")
            out[name][part] = {str(i): counts(c, f"{name}.{part}.{i}") for i, c in per.items()}
    return out


def sync_step(seq: int, last: int, *, what: str = "sync request", latest: int | None = None) -> None:
    """Is `seq` the next one? A sequence number at or below the last one applied is a replay (refused, 409); an answer
    to a request that is not the latest one made is stale."""
    if seq <= last:
        raise Refused(409, f"replayed: {what} {seq} is not newer than the last one applied ({last})")
    if latest is not None and seq != latest:
        raise Refused(409, f"stale: this {what} answers request {seq}, but the latest request made is {latest}")
