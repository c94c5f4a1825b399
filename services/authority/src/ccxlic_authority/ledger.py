"""The authority's ledger on its PostgreSQL schema: what every operation reads and writes (accounts, licenses, what
is used and reserved, each account's compliance, the audit log). `Ledger` is the base of the operations: the notices
(`notices.py`), the SSM On-Prem sync (`onprem.py`) and the accounts, tokens and the product side (`store.py`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

from ccxlic_runtime.db import Database
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

if TYPE_CHECKING:
    from ccxlic_runtime.db import Connection

from ccxlic_rules import codes

from ccxlic_authority.core import (
    HELD,
    LICENSES,
    AccountOoc,
    Refused,
    Rules,
    add,
    judge_account,
)


def iso(t: datetime | None) -> str | None:
    """RFC 3339, or None."""
    return None if t is None else t.isoformat()


ONPREM = "this authority is an SSM On-Prem: its accounts and licenses come from the central authority by sync"


@dataclass(frozen=True, slots=True)
class Role:
    """What this authority is: the central one (Cisco SSM), or an SSM On-Prem named `name` that applies only the
    answers `central_key` signed. `mail`: account notices are mailed (an SMTP server is configured)."""

    mode: str = "central"
    name: str = "central"
    central_key: str | None = None
    mail: bool = False


class Ledger:
    """The authority's schema, its signing key, rules and role, and what every operation reads and writes."""

    def __init__(self, db: Database, key: Ed25519PrivateKey, rules: Rules, role: Role | None = None) -> None:
        self.db = db
        self.key = key
        self.rules = rules
        self.role = role or Role()
        self.mailed = asyncio.Event()
        """Set when a commit queued mail (wakes the delivery loop)."""

    @classmethod
    async def open(cls, db: Database, rules: Rules, role: Role | None = None) -> Self:
        """The authority with its signing key (made on first start and kept in its schema)."""
        async with db.pool.acquire() as conn:
            await conn.execute(
                "insert into signing_keys (name, private_pem) values ('authority', $1) on conflict do nothing",
                codes.new_key(),
            )
            pem = await conn.fetchval("select private_pem from signing_keys where name = 'authority'")
        return cls(db, codes.load_key(pem), rules, role)

    @asynccontextmanager
    async def _tx(self, actor: str, action: str, detail: dict[str, Any]) -> AsyncIterator[Connection]:
        async with self.db.pool.acquire() as conn, conn.transaction():
            yield conn
            await conn.execute(
                "insert into audit (actor, action, detail) values ($1, $2, $3::jsonb)",
                actor,
                action,
                json.dumps(detail, default=str),
            )

    async def _account(self, conn: Connection, name: str) -> None:
        if await conn.fetchval("select 1 from virtual_accounts where name = $1", name) is None:
            raise Refused(404, f"no virtual account {name!r}")

    async def _licenses(self, conn: Connection, account: str) -> dict[str, int]:
        rows = await conn.fetch("select license, quantity from licenses where virtual_account = $1", account)
        have = {r["license"]: r["quantity"] for r in rows}
        return {lic: have.get(lic, 0) for lic in HELD}

    async def _reserved(self, conn: Connection, account: str) -> dict[str, int]:
        """What reservations hold in the account: its own, and those an on-prem reported at its last sync."""
        total = dict.fromkeys(LICENSES, 0)
        for held in (await self._usage(conn, account))[1].values():
            total = add(total, held)
        return total

    async def _usage(self, c: Connection, account: str) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
        """The account's use per instance: the latest peaks of its registered instances, and what reservations hold;
        an on-prem's instances (central) as `instance@onprem`, from its last sync."""
        reported: dict[str, dict[str, int]] = {}
        reserved: dict[str, dict[str, int]] = {}
        for r in await c.fetch(
            "select instance, last_usage::text as u from instances where virtual_account = $1 and status = 'registered'"
            " and last_usage is not null",
            account,
        ):
            reported[r["instance"]] = json.loads(r["u"])
        for r in await c.fetch(
            "select instance, counts::text as u from reservations where virtual_account = $1 and status <> 'returned'",
            account,
        ):
            reserved[r["instance"]] = json.loads(r["u"])
        for r in await c.fetch(
            "select onprem, instance, part, usage::text as u from remote_usage where virtual_account = $1", account
        ):
            (reported if r["part"] == "reported" else reserved)[f"{r['instance']}@{r['onprem']}"] = json.loads(r["u"])
        return reported, reserved

    async def _set_licenses(self, conn: Connection, account: str, have: dict[str, int]) -> None:
        await conn.executemany(
            "insert into licenses (virtual_account, license, quantity) values ($1, $2, $3)"
            " on conflict (virtual_account, license) do update set quantity = excluded.quantity",
            [(account, lic, have[lic]) for lic in HELD if lic in have],
        )

    def _central_only(self) -> None:
        if self.role.mode == "onprem":
            raise Refused(409, ONPREM)

    async def _entitlements(self, conn: Connection, account: str) -> dict[str, int]:
        """What an instance of the account may use: the pool not held by reservations."""
        return add(await self._licenses(conn, account), await self._reserved(conn, account), -1)

    async def _judge(
        self, c: Connection, account: str, at: datetime
    ) -> tuple[dict[str, int], dict[str, int], AccountOoc | None]:
        """Judge the account at `at` (SSM's model: per virtual account) on every instance's latest usage, an
        on-prem's included: what it may use, what it uses, and its out-of-compliance state, stored."""
        reported, _ = await self._usage(c, account)
        used = dict.fromkeys(LICENSES, 0)
        for usage in reported.values():
            used = add(used, usage)
        available = await self._entitlements(c, account)
        judged = judge_account(await self._account_ooc(c, account), available, used, at, self.rules)
        await self._set_account_ooc(c, account, judged)
        return available, used, judged

    async def _served_by(self, c: Connection, account: str) -> str | None:
        """central: the on-prem that serves the account, if one does."""
        return await c.fetchval(  # type: ignore[no-any-return]
            "select name from onprems where virtual_accounts ? $1", account
        )

    async def _account_ooc(self, c: Connection, account: str) -> AccountOoc | None:
        """The account's out-of-compliance state, its row locked (reports of one account are judged one at a
        time)."""
        row = await c.fetchrow(
            "select ooc_since, ooc_required::text as required from virtual_accounts where name = $1 for update",
            account,
        )
        if row is None or row["ooc_since"] is None:
            return None
        return AccountOoc(row["ooc_since"], json.loads(row["required"]))

    async def _set_account_ooc(self, c: Connection, account: str, judged: AccountOoc | None) -> None:
        await c.execute(
            "update virtual_accounts set ooc_since = $2, ooc_required = $3::jsonb where name = $1",
            account,
            None if judged is None else judged.since,
            None if judged is None else json.dumps(judged.required),
        )

    async def _audit(self, c: Connection, instance: str, action: str, detail: dict[str, Any]) -> None:
        await c.execute(
            "insert into audit (actor, action, detail) values ($1, $2, $3::jsonb)",
            f"instance:{instance}",
            action,
            json.dumps({"instance": instance, **detail}, default=str),
        )

    async def _audit_as(self, c: Connection, actor: str, action: str, detail: dict[str, Any]) -> None:
        await c.execute(
            "insert into audit (actor, action, detail) values ($1, $2, $3::jsonb)",
            actor,
            action,
            json.dumps(detail, default=str),
        )
