"""`python -m ccxlic_authority` (or `ccxlic-authority`): run the licensing authority on the PostgreSQL named by
DATABASE_URL (default: the `make up` stack)."""

from __future__ import annotations

from ccxlic_runtime.service import main_for

from ccxlic_authority.app import SERVICE, run
from ccxlic_authority.settings import AuthoritySettings


def main() -> int:
    return main_for(AuthoritySettings, run, service=SERVICE)


if __name__ == "__main__":
    raise SystemExit(main())
