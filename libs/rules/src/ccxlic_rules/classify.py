"""Flex classification: which seat an agent takes, fixed at sign-in from the configured capabilities.

- Premium: a supervisor, or an agent with any of chat, email, outbound_predictive, outbound_progressive.
- Standard: everyone else (inbound_voice, outbound_direct_preview, or no capability).
Configured capabilities count whether or not the agent uses them.
"""

from __future__ import annotations

from collections.abc import Iterable

from ccxlic_contract.events import Capability, License

PREMIUM_CAPABILITIES: tuple[Capability, ...] = ("chat", "email", "outbound_predictive", "outbound_progressive")


def classify(capabilities: Iterable[Capability], supervisor: bool) -> tuple[License, str]:
    """The license an agent takes, and why, in words an admin reads in a witness."""
    caps = tuple(capabilities)
    premium = [c for c in PREMIUM_CAPABILITIES if c in caps]
    if supervisor:
        return "premium", "supervisor" + (f" + {', '.join(premium)}" if premium else "")
    if premium:
        return "premium", ", ".join(premium)
    return "standard", ", ".join(caps) + " only" if caps else "no capabilities"
