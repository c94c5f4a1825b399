"""`python -m ccxlic_alerting` (or `ccxlic-alerting`): run alerting against the stack named by
KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (default: the `make up` stack)."""

from __future__ import annotations

import sys

from ccxlic_runtime.service import run_until_signalled
from ccxlic_runtime.settings import ConfigError, load_settings

from ccxlic_alerting.app import SERVICE, run
from ccxlic_alerting.settings import AlertingSettings


def main() -> int:
    try:
        settings = load_settings(AlertingSettings)
    except ConfigError as exc:
        print(f"{SERVICE}: {exc}", file=sys.stderr)
        return 2
    return run_until_signalled(lambda stop: run(settings, stop), service=SERVICE, log_level=settings.log_level)


if __name__ == "__main__":
    raise SystemExit(main())
