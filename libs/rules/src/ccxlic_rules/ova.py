"""The OVA profiles: how many agents each Unified CCX virtual machine template lets sign in.

The vendor: "Sign in additional agents to Unified CCX up to the maximum limit that is configured in your OVA." The
document points to the Solution Design Guide's "Server Capacities and Limits" for the profiles and names none
itself: these are the agent capacities of the Unified CCX OVA templates as Cisco publishes them (100, 300 and 400
agents). A site whose template differs configures its number instead (`ccxlic ova INSTANCE --max-agents N`).
"""

from __future__ import annotations

PROFILES: dict[str, int] = {"100-agents": 100, "300-agents": 300, "400-agents": 400}
"""Profile name -> the maximum of signed-in agents."""


def max_agents(profile: str) -> int:
    """The agent limit of a named profile; ValueError names the profiles there are."""
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown OVA profile {profile!r}; the profiles are {', '.join(PROFILES)}") from None
