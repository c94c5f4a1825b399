"""`python -m ccxlic_consumption` (or `ccxlic-consumption`): run the consumption computer against the stack named
by KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (default: the `make up` stack)."""

from __future__ import annotations

from ccxlic_runtime.service import main_for

from ccxlic_consumption.app import SERVICE, run
from ccxlic_consumption.settings import ConsumptionSettings


def main() -> int:
    return main_for(ConsumptionSettings, run, service=SERVICE)


if __name__ == "__main__":
    raise SystemExit(main())
