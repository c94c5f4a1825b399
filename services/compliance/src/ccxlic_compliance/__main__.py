"""`python -m ccxlic_compliance` (or `ccxlic-compliance`): run compliance against the stack named by
KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (default: the `make up` stack)."""

from __future__ import annotations

from ccxlic_runtime.service import main_for

from ccxlic_compliance.app import SERVICE, run
from ccxlic_compliance.settings import ComplianceSettings


def main() -> int:
    return main_for(ComplianceSettings, run, service=SERVICE)


if __name__ == "__main__":
    raise SystemExit(main())
