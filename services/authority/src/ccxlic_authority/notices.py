"""What an SSM administrator sees and gets: balances per virtual account, and the notices mailed to a smart
account's addresses (each once, by a stable key; the mail written with the change that caused it)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ccxlic_runtime.db import Connection


from ccxlic_authority.core import (
    Refused,
    balances,
    notice,
    shortfall_text,
)
from ccxlic_authority.ledger import Ledger, iso


class Notices(Ledger):
    """Balances, and the notices to smart accounts: weighed after each change, swept for what time brings."""

    async def balances(self, account: str) -> dict[str, Any]:
        """The account's balances (`core.balances`): purchased, in use, balance per license, the instances behind."""
        async with self.db.pool.acquire() as c:
            await self._account(c, account)
            reported, reserved = await self._usage(c, account)
            purchased = await self._licenses(c, account)
            sa = await c.fetchval("select smart_account from virtual_accounts where name = $1", account)
            served = await self._served_by(c, account)
        return {
            "smart_account": sa,
            "virtual_account": account,
            "served_by": served,
            **balances(purchased, reported, reserved),
        }

    async def _weigh(self, c: Connection, account: str, at: datetime) -> None:
        """After a change to the account's licenses or use: if it goes into deficit, its smart account is told."""
        reported, reserved = await self._usage(c, account)
        weighed = balances(await self._licenses(c, account), reported, reserved)
        was = await c.fetchval(
            "update virtual_accounts v set in_deficit = $2 from virtual_accounts old"
            " where v.name = $1 and old.name = v.name returning old.in_deficit",
            account,
            weighed["in_deficit"],
        )
        if weighed["in_deficit"] and not was:
            short = shortfall_text(weighed["deficit"])
            await self._notify(
                c,
                "AccountDeficit",
                account,
                f"virtual account {account}",
                at,
                key=f"deficit:{account}:{at.isoformat()}",
                summary=f"virtual account {account} uses more than it holds: {short} short",
                action=f"Buy {short}, or move them from a virtual account in surplus of the same smart account",
                details={"virtual_account": account, "deficit": weighed["deficit"]},
            )

    async def _notify(
        self,
        c: Connection,
        kind: str,
        account: str,
        subject: str,
        at: datetime,
        *,
        key: str,
        summary: str,
        action: str,
        deadline: datetime | None = None,
        details: dict[str, Any] | None = None,
    ) -> bool:
        """A notice to the account's smart account, once per `key`; mailed to its addresses (after commit). Whether
        it is new."""
        sa = await c.fetchval("select smart_account from virtual_accounts where name = $1", account)
        emails = json.loads(await c.fetchval("select emails::text from smart_accounts where name = $1", sa) or "[]")
        n = notice(kind, sa, subject, at, summary, action, key=key, deadline=deadline, details=details)
        mail_to = emails if self.role.mail else []
        done = await c.fetchval(
            "insert into notices (key, smart_account, kind, subject, at, notification, emailed_to)"
            " values ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb) on conflict (key) do nothing returning id",
            key,
            sa,
            kind,
            subject,
            at,
            json.dumps(n),
            json.dumps(mail_to),
        )
        if done is not None and mail_to:
            await c.execute(
                "insert into deliveries (channel, notification) values ('email', $1::jsonb)",
                json.dumps({**n, "recipients": mail_to}),
            )
            self.mailed.set()  # early is harmless: the loop finds the row once the commit lands
        return done is not None

    async def sweep(self, at: datetime) -> int:
        """Notices that time alone brings: an instance whose authorization lapsed without a renewal, an account whose
        out-of-compliance grace is over (its instances enter enforcement). Each once; how many were new."""
        new = 0
        async with self.db.pool.acquire() as c, c.transaction():
            for r in await c.fetch(
                "select instance, virtual_account, authorized_until from instances"
                " where status = 'registered' and authorized_until <= $1",
                at,
            ):
                until = r["authorized_until"]
                new += await self._notify(
                    c,
                    "AuthorizationMissed",
                    r["virtual_account"],
                    r["instance"],
                    at,
                    key=f"authorization:{r['instance']}:{until.isoformat()}",
                    summary=f"{r['instance']} has not renewed its authorization; it expired at {until.isoformat()}",
                    action="Check the instance's connection to the licensing authority and renew its authorization",
                    details={"authorized_until": until.isoformat()},
                )
            for r in await c.fetch(
                "select name, ooc_since, ooc_required::text as req from virtual_accounts where ooc_since is not null"
                " and ooc_since + make_interval(secs => $2) <= $1",
                at,
                self.rules.ooc_grace.total_seconds(),
            ):
                new += await self._notify(
                    c,
                    "Enforcement",
                    r["name"],
                    f"virtual account {r['name']}",
                    at,
                    key=f"enforcement:{r['name']}:{r['ooc_since'].isoformat()}",
                    summary=f"virtual account {r['name']} has been out of compliance since "
                    f"{r['ooc_since'].isoformat()}, past the 90-day grace: its instances enter enforcement",
                    action="Purchase licenses that cover the peaks that caused it: "
                    + shortfall_text(json.loads(r["req"])),
                    details={"required": json.loads(r["req"])},
                )
        return new

    async def notices(self, smart_account: str | None, after: int, limit: int) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "select id, kind, smart_account, subject, at, notification::text as n, emailed_to::text as e from notices"
            " where id > $1 and ($2::text is null or smart_account = $2) order by id limit $3",
            after,
            smart_account,
            limit,
        )
        out = []
        for r in rows:
            n = json.loads(r["n"])
            out.append(
                {
                    "id": r["id"],
                    "kind": r["kind"],
                    "smart_account": r["smart_account"],
                    "subject": r["subject"],
                    "at": iso(r["at"]),
                    "summary": n["summary"],
                    "action": n["action"],
                    "emailed_to": json.loads(r["e"]),
                }
            )
        return out

    async def set_notification_emails(self, actor: str, smart_account: str, emails: list[str]) -> dict[str, Any]:
        async with self._tx(actor, "notifications.set", {"smart_account": smart_account, "emails": emails}) as c:
            if await c.fetchval("select 1 from virtual_accounts where smart_account = $1", smart_account) is None:
                raise Refused(404, f"no smart account {smart_account!r} (it has no virtual account)")
            await c.execute(
                "insert into smart_accounts (name, emails) values ($1, $2::jsonb)"
                " on conflict (name) do update set emails = excluded.emails",
                smart_account,
                json.dumps(emails),
            )
        return {"smart_account": smart_account, "emails": emails}

    async def notification_emails(self, smart_account: str) -> dict[str, Any]:
        async with self.db.pool.acquire() as c:
            raw = await c.fetchval("select emails::text from smart_accounts where name = $1", smart_account)
        return {"smart_account": smart_account, "emails": json.loads(raw or "[]")}
