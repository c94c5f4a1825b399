"""What ends each cause of enforcement, in the vendor's words, and what is still needed: one answer for compliance's
`/provisioning`, `ccxlic status` and the console. Pure: it reads a compliance view as JSON (`licensing.compliance
.changed` data).

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
