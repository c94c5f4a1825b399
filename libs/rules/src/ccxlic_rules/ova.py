"""The OVA profiles: how many agents each Unified CCX virtual machine template lets sign in.

The vendor: "Sign in additional agents to Unified CCX up to the maximum limit that is configured in your OVA." The
document points to the Solution Design Guide's "Server Capacities and Limits" for the profiles and names none
itself, so these presets are ours: the agent capacities of the Unified CCX 12.x OVA templates (100, 300 and 400
agents), to check against the guide of the release in use. A site whose template differs configures its number
(`ccxlic ova INSTANCE --max-agents N`).
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
