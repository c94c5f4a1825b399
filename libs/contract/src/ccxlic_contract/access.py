"""Who may read and write each topic: one Kafka principal per program, and one for the contact center's publishers.

The table is the authorization of a deployment with Kafka ACLs (`ccxlic kafka setup` grants exactly it and nothing
more) and the topics each program makes sure exist at its start. A program reads with a consumer group of its own,
`ccxlic-<program>` (after the topic prefix). Every service writes the dead-letter topic; nothing but the consumption
computer writes `licensing.consumption`, and only an admin's tools (`ccxlic`, the console) write agent commands.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccxlic_contract.topics import (
    AGENT_ACTIVITY,
    AGENT_CALLS,
    AGENT_COMMANDS,
    ALERTS,
    CLOCK,
    COMPLIANCE,
    CONSUMPTION,
    DEAD_LETTER,
    ENTITLEMENTS,
    INTAKE,
    LIFECYCLE,
    PORT_USAGE,
    Topic,
)


@dataclass(frozen=True, slots=True)
class Access:
    program: str
    reads: tuple[Topic, ...] = ()
    writes: tuple[Topic, ...] = ()
    what: str = ""

    @property
    def topics(self) -> tuple[Topic, ...]:
        """Every topic it touches, each once, reads first."""
        return tuple(dict.fromkeys((*self.reads, *self.writes)))

    @property
    def group(self) -> str | None:
        """Its consumer group (before the topic prefix), when it reads."""
        return f"ccxlic-{self.program}" if self.reads else None

    @property
    def user(self) -> str:
        """Its Kafka user unless configured otherwise (`CCXLIC_<PROGRAM>_KAFKA_SASL_USERNAME`)."""
        return f"ccxlic-{self.program}"


PROGRAMS: dict[str, Access] = {
    a.program: a
    for a in (
        Access(
            "consumption",
            (ENTITLEMENTS, LIFECYCLE, AGENT_ACTIVITY, PORT_USAGE, INTAKE, CLOCK),
            (CONSUMPTION, INTAKE, DEAD_LETTER),
            "the consumption computer",
        ),
        Access("compliance", (CONSUMPTION,), (COMPLIANCE, DEAD_LETTER), "compliance"),
        Access("alerting", (COMPLIANCE,), (ALERTS, DEAD_LETTER), "alerting"),
        Access(
            "agent",
            (CONSUMPTION, AGENT_COMMANDS, AGENT_CALLS),
            (LIFECYCLE, AGENT_CALLS, DEAD_LETTER),
            "the Smart Agent",
        ),
        Access(
            "console",
            (AGENT_ACTIVITY, PORT_USAGE, ENTITLEMENTS, LIFECYCLE, CLOCK, INTAKE),
            (AGENT_COMMANDS,),
            "the console (agent commands of its signed-in admins; it reads the inputs for the what-if)",
        ),
        Access(
            "cli",
            (AGENT_ACTIVITY, PORT_USAGE, ENTITLEMENTS, LIFECYCLE, CLOCK, INTAKE),
            (AGENT_COMMANDS, ENTITLEMENTS, LIFECYCLE, CLOCK, AGENT_ACTIVITY, PORT_USAGE),
            "`ccxlic`: an admin's commands, the ticker, the simulator, and the what-if (which reads the inputs)",
        ),
        Access("publisher", (), (AGENT_ACTIVITY, PORT_USAGE), "the contact center's services that publish events"),
    )
}
"""The authority has no Kafka client (the Smart Agent calls it over HTTP)."""
