"""What ends each cause of enforcement, in the vendor's words, and what is still needed: one answer for compliance's
`/provisioning`, `ccxlic status` and the console; and what else needs an admin's attention. Pure: it reads the
services' views as JSON (a compliance view is `licensing.compliance.changed` data).

The vendor's document ("Enforcement State"):
- Out-of-Compliance expiry: "Purchase new licenses to exit the Enforcement state." Here: entitlements that cover the
  peaks that caused it (the view's `required`), seen at the instance's next authorization or usage report.
- Authorization expiry: "Renew the license authorizations to exit the Authorization expiry state."
- Evaluation expiry: "Register the Product Instance with Cisco SSM to exit the evaluation expiry state."
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ACTIONS = {
    "evaluation_expired": "register",
    "out_of_compliance_expired": "purchase",
    "authorization_expired": "renew_authorization",
}


def _counts(c: Mapping[str, Any]) -> str:
    return f"Standard {c['standard']}, Premium {c['premium']}, IVR ports {c['ivr_ports']}"


def exit_words(reason: str, required: Mapping[str, Any] | None) -> str:
    """What ends one cause of enforcement, and what is still needed for it."""
    if reason == "out_of_compliance_expired":
        cover = f": entitlements of at least {_counts(required)}" if required else ""
        return (
            f"purchase licenses{cover} (the peaks that caused it), seen at the next authorization or usage report; "
            "usage that drops back does not end it"
        )
    if reason == "authorization_expired":
        return "renew the authorization (a usage report does not end it)"
    return "register the product instance with the licensing authority"


def exits(view: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per active cause of enforcement: the cause, the action that ends it, and in words what is still needed."""
    enforcement = view.get("enforcement") or {}
    return [
        {"cause": reason, "action": ACTIONS[reason], "needed": exit_words(reason, view.get("required"))}
        for reason in enforcement.get("reasons", ())
    ]


_LIMIT_WORDS = {"reservation": "the reservation", "license_control": "License Control"}
_PRESENCE = {"server": "Server", "warm_standby": "Warm Standby"}


def attention(entry: Mapping[str, Any]) -> list[str]:
    """What needs an admin's attention on an instance, in words (`ccxlic status` and the console): per cause of
    enforcement what ends it, a breach of a hard limit, the OVA limit, and a missing Server or Warm Standby license.
    `entry` is one instance of the status snapshot: its `usage` (consumption) and `compliance` views."""
    out: list[str] = []
    u, c = entry["usage"], entry["compliance"]
    for x in exits(c) if c else ():
        out.append(f"to leave enforcement ({x['cause']}): {x['needed']}")
    breach = (u or {}).get("breach")
    if breach and any(breach.values()):
        over = ", ".join(f"{k.replace('_', ' ')} +{v}" for k, v in breach.items() if v)
        out.append(f"over {_LIMIT_WORDS.get(u.get('hard_limit') or '', 'a hard limit')}: {over} (a breach)")
    if u and u.get("max_agents") is not None:
        signed = u["in_use"]["standard"] + u["in_use"]["premium"]
        out.append(f"OVA limit: {signed} of {u['max_agents']} agents signed in")
    for m in (c or {}).get("missing_licenses", ()):
        out.append(f"no {_PRESENCE.get(m, m)} license: never consumed, but it must be present")
    return out
