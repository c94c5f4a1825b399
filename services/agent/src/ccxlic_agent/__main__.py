"""`python -m ccxlic_agent` (or `ccxlic-agent`): run the Smart Agent against the stack named by
KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL, and the authority at CCXLIC_AUTHORITY_URL."""

from __future__ import annotations

from ccxlic_runtime.service import main_for

from ccxlic_agent.app import SERVICE, run
from ccxlic_agent.settings import AgentSettings


def main() -> int:
    return main_for(AgentSettings, run, service=SERVICE)


if __name__ == "__main__":
    raise SystemExit(main())
