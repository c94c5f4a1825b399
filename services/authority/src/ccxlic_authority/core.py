"""The authority's rules, pure: tokens, validity periods and the answer to a usage report.

The answer to a usage report is the vendor's: the virtual account's pool against what its instances use. The
pool is what was deposited minus what reservations hold; the usage is the sum of each registered instance's
latest reported peaks; an idle Premium license covers Standard demand (the Flex pool rule, `ccxlic_rules`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from ccxlic_rules import Entitlement, Usage, deficit

LICENSES: tuple[str, ...] = ("standard", "premium", "ivr_ports")
License = Literal["standard", "premium", "ivr_ports"]
NAMES = {"standard": "Flex Standard", "premium": "Flex Premium", "ivr_ports": "IVR ports"}
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Rules:
    identity_valid: timedelta = 365 * DAY  # the vendor: "The initial registration is valid for one year"
    renew_registration_after: timedelta = 182 * DAY  # "automatically renewed every six months"
    authorization_valid: timedelta = 90 * DAY  # "has not communicated with Cisco SSM for more than 90 days"
    renew_authorization_after: timedelta = 30 * DAY  # "renewed every 30 days"
    report_every: timedelta = timedelta(hours=8)


class Refused(ValueError):
    """A request the authority refuses: `status` is the HTTP status, the message the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def counts(value: Any, what: str) -> dict[str, int]:
    """Counts per license from a request: only the three licenses, whole numbers from 0 to 1,000,000."""
    if not isinstance(value, dict):
        raise Refused(400, f"{what} must be an object of counts per license ({', '.join(LICENSES)})")
    unknown = sorted(set(value) - set(LICENSES))
    if unknown:
        raise Refused(400, f"{what}: unknown license {unknown[0]!r}; the licenses are {', '.join(LICENSES)}")
    out = {}
    for lic in LICENSES:
        n = value.get(lic, 0)
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 1_000_000:
            raise Refused(400, f"{what}.{lic} must be a whole number from 0 to 1000000")
        out[lic] = n
    return out


def add(a: dict[str, int], b: dict[str, int], sign: int = 1) -> dict[str, int]:
    return {lic: a.get(lic, 0) + sign * b.get(lic, 0) for lic in LICENSES}


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
    """The highest peak per license over a usage report's intervals."""
    out = dict.fromkeys(LICENSES, 0)
    for r in reports:
        raw = r.get("peak") if isinstance(r, dict) else None
        if not isinstance(raw, dict):
            raise Refused(400, "each of reports[] needs a peak: counts per license")
        peak = counts({lic: raw[lic] for lic in LICENSES if lic in raw}, "reports[].peak")
        out = {lic: max(out[lic], peak[lic]) for lic in LICENSES}
    return out
