"""`python -m ccxlic_alerting` (or `ccxlic-alerting`): run alerting against the stack named by
KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (default: the `make up` stack)."""

from __future__ import annotations

from ccxlic_runtime.service import main_for

from ccxlic_alerting.app import SERVICE, run
from ccxlic_alerting.settings import AlertingSettings


def main() -> int:
    return main_for(AlertingSettings, run, service=SERVICE)


if __name__ == "__main__":
    raise SystemExit(main())
