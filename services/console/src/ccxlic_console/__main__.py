"""`python -m ccxlic_console` (or `ccxlic-console`): serve the administration console on 127.0.0.1:8180, reading the
services named by CCXLIC_*_URL and the users in DATABASE_URL's `auth` schema."""

from __future__ import annotations

from ccxlic_runtime.service import main_for

from ccxlic_console.app import SERVICE, run
from ccxlic_console.settings import ConsoleSettings


def main() -> int:
    return main_for(ConsoleSettings, run, service=SERVICE)


if __name__ == "__main__":
    raise SystemExit(main())
