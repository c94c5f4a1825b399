"""The authority's operations on its PostgreSQL schema. Each operation is one transaction that also writes its
audit row (who, when, what); a refusal writes nothing. The rules themselves are in `core` and `codes`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ccxlic_contract.events import INSTANCE_ID_PATTERN
from ccxlic_runtime.db import Database
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

if TYPE_CHECKING:
    from ccxlic_runtime.db import Connection

from ccxlic_rules import codes
from ccxlic_rules.codes import (
    AUTHORIZATION_CODE,
    CONFIRMATION_CODE,
    IDENTITY,
    MAX_SYNC,
    REQUEST_CODE,
    RETURN_CODE,
    SYNC_ANSWER,
    SYNC_REQUEST,
)

from ccxlic_authority.core import (
    HELD,
    LICENSES,
    SYNC_VERSION,
    AccountOoc,
    Refused,
    Rules,
    add,
    balances,
    counts,
    judge_account,
    notice,
    peak_of,
    shortfall_text,
    still_short,
    sync_step,
    sync_usage,
    token_problem,
    verdict,
)

NAME = INSTANCE_ID_PATTERN
"""Virtual accounts, PAKs and devices are named like instances: 1-64 characters from [A-Za-z0-9._:-]."""


def _product_code(code: str, kind: str, what: str) -> dict[str, Any]:
    """A product instance's code, or 400 with why it cannot be read."""
    try:
        return codes.read_product_code(code, kind, what)
    except codes.CodeError as exc:
        raise Refused(400, str(exc)) from None


def _digest(token: str) -> str:
    """What is kept of a registration token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _iso(t: datetime | None) -> str | None:
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


class Authority:
    def __init__(self, db: Database, key: Ed25519PrivateKey, rules: Rules, role: Role | None = None) -> None:
        self.db = db
        self.key = key
        self.rules = rules
        self.role = role or Role()
        self.mailed = asyncio.Event()
        """Set when a commit queued mail (wakes the delivery loop)."""

    @classmethod
    async def open(cls, db: Database, rules: Rules, role: Role | None = None) -> Authority:
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

    # ------------------------------------------------------------ accounts and licenses

    def _central_only(self) -> None:
        if self.role.mode == "onprem":
            raise Refused(409, ONPREM)

    async def create_account(self, actor: str, at: datetime, smart_account: str, name: str) -> dict[str, Any]:
        self._central_only()
        async with self._tx(actor, "account.create", {"smart_account": smart_account, "virtual_account": name}) as c:
            done = await c.fetchval(
                "insert into virtual_accounts (name, smart_account, created_at) values ($1, $2, $3)"
                " on conflict do nothing returning name",
                name,
                smart_account,
                at,
            )
            if done is None:
                raise Refused(409, f"virtual account {name!r} exists")
            await self._set_licenses(c, name, dict.fromkeys(HELD, 0))
        return {"smart_account": smart_account, "virtual_account": name}

    async def accounts(self) -> list[dict[str, Any]]:
        async with self.db.pool.acquire() as conn:
            rows = await conn.fetch(
                "select name, smart_account, ooc_since, in_deficit from virtual_accounts order by smart_account, name"
            )
            served = {
                va: r["name"]
                for r in await conn.fetch("select name, virtual_accounts::text as v from onprems")
                for va in json.loads(r["v"])
            }
            out: dict[str, dict[str, Any]] = {}
            for r in rows:
                have = await self._licenses(conn, r["name"])
                reserved = await self._reserved(conn, r["name"])
                n = await conn.fetchval(
                    "select count(*) from instances where virtual_account = $1 and status = 'registered'", r["name"]
                )
                sa = out.setdefault(r["smart_account"], {"smart_account": r["smart_account"], "virtual_accounts": []})
                sa["virtual_accounts"].append(
                    {
                        "name": r["name"],
                        "licenses": have,
                        "reserved": reserved,
                        "instances": n,
                        "out_of_compliance_since": _iso(r["ooc_since"]),
                        "in_deficit": r["in_deficit"],
                        "served_by": served.get(r["name"]),
                    }
                )
        return list(out.values())

    async def change_licenses(
        self, actor: str, account: str, action: str, quantities: Any, to: str | None = None, reason: str = ""
    ) -> dict[str, Any]:
        """deposit, remove, or move (to another virtual account of the same smart account)."""
        self._central_only()
        q = counts(quantities, "quantities")
        detail = {"virtual_account": account, "quantities": q, "to": to, "reason": reason}
        at = datetime.now(UTC)
        async with self._tx(actor, f"licenses.{action}", detail) as c:
            await self._account(c, account)
            have = await self._licenses(c, account)
            if action == "deposit":
                await self._set_licenses(c, account, add(have, q))
                await self._weigh(c, account, at)
                return {"virtual_account": account, "licenses": add(have, q)}
            free = add(have, await self._reserved(c, account), -1)
            short = [lic for lic in HELD if q[lic] > free.get(lic, 0)]
            if short:
                lic = short[0]
                raise Refused(409, f"{account!r} has {free[lic]} {lic} not reserved; cannot take {q[lic]}")
            await self._set_licenses(c, account, add(have, q, -1))
            await self._weigh(c, account, at)
            if action == "remove":
                return {"virtual_account": account, "licenses": add(have, q, -1)}
            assert to is not None
            await self._account(c, to)
            same = await c.fetchval(
                "select a.smart_account = b.smart_account from virtual_accounts a, virtual_accounts b"
                " where a.name = $1 and b.name = $2",
                account,
                to,
            )
            if not same:
                raise Refused(409, f"{to!r} is in another smart account: licenses move within a smart account")
            other = await self._licenses(c, to)
            await self._set_licenses(c, to, add(other, q))
            await self._weigh(c, to, at)
            return {"virtual_account": account, "licenses": add(have, q, -1), "to": {to: add(other, q)}}

    async def instances(self, account: str) -> list[dict[str, Any]]:
        async with self.db.pool.acquire() as conn:
            await self._account(conn, account)
            rows = await conn.fetch(
                "select instance, status, registered_at, identity_valid_until, authorized_until, last_contact,"
                " last_usage::text as usage, last_report::text as report from instances"
                " where virtual_account = $1 order by instance",
                account,
            )
        out = []
        for r in rows:
            report = json.loads(r["report"]) if r["report"] else None
            out.append(
                {
                    "instance": r["instance"],
                    "status": r["status"],
                    "registered_at": _iso(r["registered_at"]),
                    "registration_valid_until": _iso(r["identity_valid_until"]),
                    "authorized_until": _iso(r["authorized_until"]),
                    "last_contact": _iso(r["last_contact"]),
                    "last_usage": json.loads(r["usage"]) if r["usage"] else None,
                    "in_compliance": None if report is None else report["verdict"] == "in_compliance",
                    "last_answer": report,
                }
            )
        return out

    # ------------------------------------------------------------ tokens

    async def create_token(
        self,
        actor: str,
        at: datetime,
        account: str,
        expires_in: timedelta,
        max_uses: int,
        export_controlled: bool,
        description: str,
    ) -> dict[str, Any]:
        token = secrets.token_urlsafe(32)
        digest = _digest(token)
        detail = {
            "virtual_account": account,
            "expires_in_days": expires_in.days,
            "max_uses": max_uses,
            "id": digest[:12],
        }
        async with self._tx(actor, "token.create", detail) as c:
            await self._account(c, account)
            served = await self._served_by(c, account)
            if served is not None:
                raise Refused(
                    409, f"virtual account {account!r} is served by the on-prem {served!r}: make its tokens there"
                )
            await c.execute(
                "insert into tokens (digest, id, virtual_account, description, created_at, expires_at, max_uses,"
                " export_controlled) values ($1, $2, $3, $4, $5, $6, $7, $8)",
                digest,
                digest[:12],
                account,
                description,
                at,
                at + expires_in,
                max_uses,
                export_controlled,
            )
        return {
            "token": token,  # shown this once: only its digest is kept
            "id": digest[:12],
            "virtual_account": account,
            "expires_at": _iso(at + expires_in),
            "max_uses": max_uses,
            "export_controlled": export_controlled,
            "description": description,
        }

    async def tokens(self, account: str) -> list[dict[str, Any]]:
        async with self.db.pool.acquire() as conn:
            await self._account(conn, account)
            rows = await conn.fetch("select * from tokens where virtual_account = $1 order by created_at, id", account)
        return [
            {
                "id": r["id"],
                "description": r["description"],
                "created_at": _iso(r["created_at"]),
                "expires_at": _iso(r["expires_at"]),
                "max_uses": r["max_uses"],
                "uses": r["uses"],
                "revoked_at": _iso(r["revoked_at"]),
                "export_controlled": r["export_controlled"],
            }
            for r in rows
        ]

    async def revoke_token(self, actor: str, at: datetime, token: str) -> dict[str, Any]:
        """Revoke a registration token by its id, or by the token itself."""
        async with self._tx(actor, "token.revoke", {"id": token if len(token) == 12 else _digest(token)[:12]}) as c:
            done = await c.fetchrow(
                "update tokens set revoked_at = coalesce(revoked_at, $3) where id = $1 or digest = $2"
                " returning id, revoked_at",
                token,
                _digest(token),
                at,
            )
            if done is None:
                raise Refused(404, "no such registration token")
        return {"id": done["id"], "revoked_at": _iso(done["revoked_at"])}

    # ------------------------------------------------------------ the product side

    def _identity(self, instance: str, account: str, at: datetime) -> tuple[str, str, datetime]:
        serial = uuid.uuid4().hex
        until = at + self.rules.identity_valid
        cert = codes.sign(
            self.key,
            IDENTITY,
            {
                "instance": instance,
                "virtual_account": account,
                "serial": serial,
                "issued_at": _iso(at),
                "valid_until": _iso(until),
            },
        )
        return cert, serial, until

    async def _entitlements(self, conn: Connection, account: str) -> dict[str, int]:
        """What an instance of the account may use: the pool not held by reservations."""
        return add(await self._licenses(conn, account), await self._reserved(conn, account), -1)

    def _answer(self, instance: str, account: str, at: datetime, ent: dict[str, int], **more: Any) -> dict[str, Any]:
        r = self.rules
        return {
            "instance": instance,
            "virtual_account": account,
            "at": _iso(at),
            "entitlements": ent,
            "license_type": "flex",
            "authorized_until": _iso(at + r.authorization_valid),
            "renew_authorization_at": _iso(at + r.renew_authorization_after),
            **more,
        }

    async def register(self, at: datetime, token: str, instance: str) -> dict[str, Any]:
        async with self._tx(f"instance:{instance}", "instance.register", {"instance": instance}) as c:
            row = await c.fetchrow("select * from tokens where digest = $1 for update", _digest(token))
            if row is None:
                raise Refused(403, "unknown registration token: copy it again from the virtual account")
            problem = token_problem(dict(row), at)
            if problem is not None:
                raise Refused(403, problem)
            if await c.fetchval("select 1 from reservations where instance = $1 and status <> 'returned'", instance):
                raise Refused(409, f"{instance} holds a license reservation: return it before registering")
            account = row["virtual_account"]
            await c.execute("update tokens set uses = uses + 1 where digest = $1", row["digest"])
            cert, serial, until = self._identity(instance, account, at)
            await c.execute(
                "insert into instances (instance, virtual_account, status, registered_at, identity_serial,"
                " identity_valid_until, authorized_until, last_contact) values ($1, $2, 'registered', $3, $4, $5, $6, $3)"
                " on conflict (instance) do update set virtual_account = $2, status = 'registered', registered_at = $3,"
                " identity_serial = $4, identity_valid_until = $5, authorized_until = $6, last_contact = $3",
                instance,
                account,
                at,
                serial,
                until,
                at + self.rules.authorization_valid,
            )
            ent = await self._entitlements(c, account)
            short = still_short(await self._account_ooc(c, account), ent)
            if short is None:
                await self._set_account_ooc(c, account, None)  # a purchase since covers what caused it
        carried = {} if short is None else {"out_of_compliance_since": _iso(short.since), "required": short.required}
        return self._answer(
            instance,
            account,
            at,
            ent,
            identity_certificate=cert,
            registration_valid_until=_iso(until),
            renew_registration_at=_iso(at + self.rules.renew_registration_after),
            export_controlled=row["export_controlled"],
            public_key_pem=codes.public_pem(self.key),
            **carried,
        )

    async def _registered(self, c: Connection, certificate: str, at: datetime) -> Any:
        try:
            identity = codes.verify(self.key.public_key(), certificate, IDENTITY, "the identity certificate")
        except codes.CodeError as exc:
            raise Refused(401, str(exc)) from None
        if not isinstance(identity.get("instance"), str) or not isinstance(identity.get("serial"), str):
            raise Refused(
                401, "the identity certificate names no instance or serial: it is not one this authority issues"
            )
        row = await c.fetchrow("select * from instances where instance = $1 for update", identity["instance"])
        if row is None or row["status"] != "registered":
            raise Refused(403, f"{identity['instance']} is not registered: register it with a token")
        if row["identity_serial"] != identity["serial"]:
            raise Refused(401, "the identity certificate was replaced by a newer one: use the latest")
        if at >= row["identity_valid_until"]:
            raise Refused(
                403,
                f"the registration expired at {row['identity_valid_until'].isoformat()}: register the instance again",
            )
        return row

    async def renew_registration(self, at: datetime, certificate: str) -> dict[str, Any]:
        async with self.db.pool.acquire() as c, c.transaction():
            row = await self._registered(c, certificate, at)
            cert, serial, until = self._identity(row["instance"], row["virtual_account"], at)
            await c.execute(
                "update instances set identity_serial = $2, identity_valid_until = $3, last_contact = $4,"
                " authorized_until = $5 where instance = $1",
                row["instance"],
                serial,
                until,
                at,
                at + self.rules.authorization_valid,
            )
            await self._audit(c, row["instance"], "instance.renew_registration", {"valid_until": _iso(until)})
            ent = await self._entitlements(c, row["virtual_account"])
        return self._answer(
            row["instance"],
            row["virtual_account"],
            at,
            ent,
            identity_certificate=cert,
            registration_valid_until=_iso(until),
            renew_registration_at=_iso(at + self.rules.renew_registration_after),
        )

    async def authorize(self, at: datetime, certificate: str) -> dict[str, Any]:
        async with self.db.pool.acquire() as c, c.transaction():
            row = await self._registered(c, certificate, at)
            await c.execute(
                "update instances set authorized_until = $2, last_contact = $3 where instance = $1",
                row["instance"],
                at + self.rules.authorization_valid,
                at,
            )
            await self._audit(c, row["instance"], "instance.authorize", {})
            ent = await self._entitlements(c, row["virtual_account"])
        return self._answer(row["instance"], row["virtual_account"], at, ent)

    async def report(self, at: datetime, certificate: str, reports: Any) -> dict[str, Any]:
        if not isinstance(reports, list) or len(reports) > 10_000:
            raise Refused(400, "reports must be a list of at most 10000 interval reports")
        async with self.db.pool.acquire() as c, c.transaction():
            row = await self._registered(c, certificate, at)
            account = row["virtual_account"]
            # no interval report (a quiet instance): the latest usage stands, or none at all
            usage = (
                peak_of(reports) if reports else json.loads(row["last_usage"] or "null") or dict.fromkeys(LICENSES, 0)
            )
            await c.execute(
                "update instances set last_usage = $2::jsonb, last_contact = $3 where instance = $1",
                row["instance"],
                json.dumps(usage),
                at,
            )
            available, used, judged = await self._judge(c, account, at)
            answer = verdict(available, used)
            if answer["verdict"] == "out_of_compliance" and judged is not None:
                answer |= {"out_of_compliance_since": _iso(judged.since), "required": judged.required}
            answer = {
                "instance": row["instance"],
                "virtual_account": account,
                "reports": len(reports),
                "license_type": "flex",
                "entitlements": available,
                **answer,
            }
            await c.execute(
                "update instances set last_report = $2::jsonb where instance = $1", row["instance"], json.dumps(answer)
            )
            before = json.loads(row["last_report"]) if row["last_report"] else None
            if answer["verdict"] == "out_of_compliance" and (before is None or before["verdict"] == "in_compliance"):
                await self._notify(
                    c,
                    "InstanceOutOfCompliance",
                    account,
                    row["instance"],
                    at,
                    key=f"ooc:{row['instance']}:{at.isoformat()}",
                    summary=f"{row['instance']} reported usage that virtual account {account} does not cover: "
                    f"{shortfall_text(answer['shortfall'])} short",
                    action=f"Buy or move {shortfall_text(answer['shortfall'])} into {account}",
                    details={"shortfall": answer["shortfall"], "virtual_account": account},
                )
            await self._weigh(c, account, at)
            await self._audit(
                c, row["instance"], "instance.report", {"reports": len(reports), "verdict": answer["verdict"]}
            )
        return answer

    async def deregister(self, at: datetime, certificate: str) -> dict[str, Any]:
        async with self.db.pool.acquire() as c, c.transaction():
            row = await self._registered(c, certificate, at)
            await c.execute(
                "update instances set status = 'deregistered', last_usage = null, last_contact = $2 where instance = $1",
                row["instance"],
                at,
            )
            await self._audit(c, row["instance"], "instance.deregister", {"virtual_account": row["virtual_account"]})
        return {"instance": row["instance"], "status": "deregistered", "released_from": row["virtual_account"]}

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
    ) -> None:
        """A notice to the account's smart account, once per `key`; mailed to its addresses (after commit)."""
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

    async def sweep(self, at: datetime) -> int:
        """Notices that time alone brings: an instance whose authorization lapsed without a renewal, an account whose
        out-of-compliance grace is over (its instances enter enforcement). Each once; how many were new."""
        new = 0
        async with self.db.pool.acquire() as c, c.transaction():
            before = await c.fetchval("select count(*) from notices")
            for r in await c.fetch(
                "select instance, virtual_account, authorized_until from instances"
                " where status = 'registered' and authorized_until <= $1",
                at,
            ):
                until = r["authorized_until"]
                await self._notify(
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
                await self._notify(
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
            new = int(await c.fetchval("select count(*) from notices")) - int(before)
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
                    "at": _iso(r["at"]),
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

    # ------------------------------------------------------------ Specific License Reservation

    async def reserve(
        self, actor: str, at: datetime, request_code: str, account: str, quantities: Any
    ) -> dict[str, Any]:
        q = counts(quantities, "quantities", LICENSES)
        request = _product_code(request_code, REQUEST_CODE, "the reservation request code")
        instance = str(request.get("instance", ""))
        async with self._tx(
            actor, "reservation.authorize", {"instance": instance, "virtual_account": account, "quantities": q}
        ) as c:
            await self._account(c, account)
            if await c.fetchval("select 1 from instances where instance = $1 and status = 'registered'", instance):
                raise Refused(409, f"{instance} is registered: a reservation is for an unregistered instance")
            current = await c.fetchrow("select * from reservations where instance = $1 for update", instance)
            free = await self._entitlements(c, account)
            if current is not None and current["status"] != "returned" and current["virtual_account"] == account:
                free = add(free, json.loads(current["counts"]))  # a modified reservation replaces the one held
            short = [lic for lic in LICENSES if q[lic] > free[lic]]
            if short:
                raise Refused(409, f"{account!r} has {free[short[0]]} {short[0]} free; cannot reserve {q[short[0]]}")
            serial = uuid.uuid4().hex
            await c.execute(
                "insert into reservations (instance, virtual_account, counts, status, code_serial, created_at, updated_at)"
                " values ($1, $2, $3::jsonb, 'authorized', $4, $5, $5) on conflict (instance) do update set"
                " virtual_account = $2, counts = $3::jsonb, status = 'authorized', code_serial = $4, updated_at = $5",
                instance,
                account,
                json.dumps(q),
                serial,
                at,
            )
            await self._weigh(c, account, at)
        code = codes.sign(
            self.key,
            AUTHORIZATION_CODE,
            {
                "instance": instance,
                "request": request.get("nonce"),
                "serial": serial,
                "counts": q,
                "issued_at": _iso(at),
            },
        )
        return {"instance": instance, "virtual_account": account, "counts": q, "authorization_code": code}

    async def confirm_reservation(self, actor: str, at: datetime, confirmation_code: str) -> dict[str, Any]:
        confirm = _product_code(confirmation_code, CONFIRMATION_CODE, "the confirmation code")
        instance = str(confirm.get("instance", ""))
        async with self._tx(actor, "reservation.confirm", {"instance": instance}) as c:
            row = await c.fetchrow("select * from reservations where instance = $1 for update", instance)
            if row is None or row["code_serial"] != confirm.get("serial") or row["status"] == "returned":
                raise Refused(409, f"the confirmation code does not match {instance}'s current authorization code")
            await c.execute(
                "update reservations set status = 'installed', updated_at = $2 where instance = $1", instance, at
            )
            held = json.loads(row["counts"])
            await self._notify(
                c,
                "ReservationCompleted",
                row["virtual_account"],
                instance,
                at,
                key=f"reservation:{instance}:{row['code_serial']}",
                summary=f"{instance} installed its reservation from {row['virtual_account']}: {shortfall_text(held)}",
                action="Nothing: the reservation is in place; the instance reports no usage while it holds it",
                details={"counts": held},
            )
        return {"instance": instance, "status": "installed", "counts": json.loads(row["counts"])}

    async def return_reservation(self, actor: str, at: datetime, return_code: str) -> dict[str, Any]:
        r = _product_code(return_code, RETURN_CODE, "the return code")
        instance = str(r.get("instance", ""))
        async with self._tx(actor, "reservation.return", {"instance": instance}) as c:
            row = await c.fetchrow("select * from reservations where instance = $1 for update", instance)
            if row is None or row["status"] == "returned":
                raise Refused(404, f"{instance} holds no reservation")
            if row["code_serial"] != r.get("serial"):
                raise Refused(409, f"the return code is not for {instance}'s current reservation")
            await c.execute(
                "update reservations set status = 'returned', updated_at = $2 where instance = $1", instance, at
            )
        return {
            "instance": instance,
            "status": "returned",
            "freed": json.loads(row["counts"]),
            "virtual_account": row["virtual_account"],
        }

    async def reservations(self, account: str) -> list[dict[str, Any]]:
        async with self.db.pool.acquire() as conn:
            await self._account(conn, account)
            rows = await conn.fetch(
                "select instance, counts::text as counts, status, updated_at from reservations"
                " where virtual_account = $1 order by instance",
                account,
            )
        return [
            {
                "instance": r["instance"],
                "counts": json.loads(r["counts"]),
                "status": r["status"],
                "updated_at": _iso(r["updated_at"]),
            }
            for r in rows
        ]

    # ------------------------------------------------------------ Classic -> Smart

    async def add_classic(self, actor: str, kind: str, ident: str, quantities: Any) -> dict[str, Any]:
        self._central_only()
        q = counts(quantities, "quantities", LICENSES)
        async with self._tx(actor, f"classic.{kind}.add", {"id": ident, "quantities": q}) as c:
            done = await c.fetchval(
                "insert into classic (kind, id, quantities, converted) values ($1, $2, $3::jsonb, $4::jsonb)"
                " on conflict do nothing returning id",
                kind,
                ident,
                json.dumps(q),
                json.dumps(dict.fromkeys(LICENSES, 0)),
            )
            if done is None:
                raise Refused(409, f"{kind} {ident!r} exists")
        return {"kind": kind, "id": ident, "classic": q}

    async def classic(self, kind: str, ident: str) -> dict[str, Any]:
        async with self.db.pool.acquire() as conn:
            row = await conn.fetchrow("select * from classic where kind = $1 and id = $2", kind, ident)
        if row is None:
            raise Refused(404, f"no {kind} {ident!r}")
        if row["removed_at"] is not None:
            raise Refused(404, f"{kind} {ident!r} was fully converted to Smart Licensing and removed from the portal")
        return {
            "kind": kind,
            "id": ident,
            "classic": json.loads(row["quantities"]),
            "converted": json.loads(row["converted"]),
            "virtual_account": row["virtual_account"],
        }

    async def convert(
        self, actor: str, at: datetime, kind: str, ident: str, account: str, quantities: Any | None
    ) -> dict[str, Any]:
        """Convert the SKUs and quantities asked (None: all that is still classic; a PAK's whole assignment); what
        is left stays classic and needs a new classic license file. A device fully converted leaves the portal."""
        self._central_only()
        async with self._tx(actor, f"classic.{kind}.convert", {"id": ident, "virtual_account": account}) as c:
            await self._account(c, account)
            row = await c.fetchrow("select * from classic where kind = $1 and id = $2 for update", kind, ident)
            if row is None or row["removed_at"] is not None:
                raise Refused(404, f"no {kind} {ident!r}" + ("" if row is None else ": it was fully converted"))
            left = json.loads(row["quantities"])
            q = left if quantities is None else counts(quantities, "quantities", LICENSES)
            over = [lic for lic in LICENSES if q[lic] > left[lic]]
            if over:
                raise Refused(
                    409, f"{kind} {ident!r} has {left[over[0]]} classic {over[0]}; cannot convert {q[over[0]]}"
                )
            if not any(q.values()):
                raise Refused(409, f"{kind} {ident!r} has nothing left to convert")
            left = add(left, q, -1)
            converted = add(json.loads(row["converted"]), q)
            await c.execute(
                "update classic set quantities = $3::jsonb, converted = $4::jsonb, virtual_account = $5"
                " where kind = $1 and id = $2",
                kind,
                ident,
                json.dumps(left),
                json.dumps(converted),
                account,
            )
            have = await self._licenses(c, account)
            await self._set_licenses(c, account, add(have, q))
            whole = not any(left.values())
            if whole and kind == "device":
                await c.execute("update classic set removed_at = $3 where kind = $1 and id = $2", kind, ident, at)
            await self._notify(
                c,
                "MigrationCompleted",
                account,
                f"{kind} {ident}",
                at,
                key=f"migration:{kind}:{ident}:{json.dumps(converted, sort_keys=True)}",
                summary=f"{kind} {ident}: {shortfall_text(q)} converted to Smart Licensing into {account}"
                + ("" if whole else f"; still classic: {shortfall_text(left)}"),
                action="Nothing" if whole else "Get a new classic license file for the licenses that stay classic",
                details={"deposited": q, "still_classic": left},
            )
            await self._weigh(c, account, at)
        return {
            "kind": kind,
            "id": ident,
            "deposited": q,
            "still_classic": left,
            "virtual_account": account,
            "fully_converted": whole,
            # the vendor: "Classic Licenses that are partially converted will need new Classic License file"
            "new_classic_license_file_needed": not whole,
        }

    async def record(self, actor: str, action: str, detail: dict[str, Any]) -> None:
        """An audit entry for a change outside the database (faults on demand)."""
        async with self._tx(actor, action, detail):
            pass

    async def audit(self, after: int, limit: int) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "select seq, at, actor, action, detail::text as detail from audit where seq > $1 order by seq limit $2",
            after,
            limit,
        )
        return [
            {
                "seq": r["seq"],
                "at": _iso(r["at"]),
                "actor": r["actor"],
                "action": r["action"],
                "detail": json.loads(r["detail"]),
            }
            for r in rows
        ]

    # ------------------------------------------------------------ SSM On-Prem: central side

    async def register_onprem(
        self, actor: str, at: datetime, name: str, public_key_pem: str, accounts: list[str]
    ) -> dict[str, Any]:
        """An on-prem authority the central synchronises with: its public key (its sync requests are verified with
        it) and the virtual accounts it serves (they leave the central's own tokens)."""
        self._central_only()
        try:
            [pem] = codes.public_keys(public_key_pem)
        except (codes.CodeError, ValueError) as exc:
            raise Refused(
                400, f"public_key_pem: {exc}" if str(exc) else "public_key_pem holds one Ed25519 key"
            ) from None
        detail = {"onprem": name, "virtual_accounts": accounts}
        async with self._tx(actor, "onprem.register", detail) as c:
            for account in accounts:
                await self._account(c, account)
                other = await self._served_by(c, account)
                if other is not None and other != name:
                    raise Refused(409, f"virtual account {account!r} is served by the on-prem {other!r} already")
            done = await c.fetchval(
                "insert into onprems (name, public_key_pem, virtual_accounts, registered_at) values ($1, $2, $3::jsonb, $4)"
                " on conflict (name) do update set public_key_pem = $2, virtual_accounts = $3::jsonb returning name",
                name,
                pem,
                json.dumps(accounts),
                at,
            )
            assert done is not None
            await c.execute(
                "delete from remote_usage where onprem = $1 and not (virtual_account = any($2::text[]))", name, accounts
            )
        return {"onprem": name, "virtual_accounts": accounts}

    async def onprems(self) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "select name, virtual_accounts::text as v, registered_at, last_seq, last_sync_at from onprems order by name"
        )
        return [
            {
                "onprem": r["name"],
                "virtual_accounts": json.loads(r["v"]),
                "registered_at": _iso(r["registered_at"]),
                "last_sync_seq": r["last_seq"],
                "last_sync_at": _iso(r["last_sync_at"]),
            }
            for r in rows
        ]

    async def answer_sync(self, at: datetime, request: str) -> dict[str, Any]:
        """A sync request from an on-prem (by HTTPS when connected, or a file an admin carried): verified with the
        on-prem's key, refused if replayed; its usage replaces what it reported before; answered with the
        entitlements of its accounts, signed."""
        self._central_only()
        try:
            name = str(codes.peek(request, MAX_SYNC).get("onprem"))
        except codes.CodeError as exc:
            raise Refused(400, f"the sync request: {exc}") from None
        async with self.db.pool.acquire() as c, c.transaction():
            row = await c.fetchrow("select * from onprems where name = $1 for update", name)
            if row is None:
                raise Refused(403, f"the sync request is from {name!r}, an on-prem this authority does not know")
            try:
                payload = codes.verify(row["public_key_pem"], request, SYNC_REQUEST, "the sync request", MAX_SYNC)
            except codes.CodeError:
                raise Refused(
                    403,
                    f"the sync request was not signed by the on-prem {name!r} (another authority's file, or changed)",
                ) from None
            seq = payload.get("seq")
            if isinstance(seq, bool) or not isinstance(seq, int):
                raise Refused(400, "the sync request has no sequence number")
            sync_step(seq, row["last_seq"])
            held = json.loads(row["virtual_accounts"])
            usage = sync_usage(payload, held)
            await c.execute("delete from remote_usage where onprem = $1", name)
            await c.executemany(
                "insert into remote_usage (onprem, virtual_account, instance, part, usage) values ($1, $2, $3, $4, $5::jsonb)",
                [
                    (name, account, instance, part, json.dumps(n))
                    for account, parts in usage.items()
                    for part, per in parts.items()
                    for instance, n in per.items()
                ],
            )
            await c.execute("update onprems set last_seq = $2, last_sync_at = $3 where name = $1", name, seq, at)
            accounts = {}
            for account in held:
                await self._judge(c, account, at)
                await self._weigh(c, account, at)
                sa = await c.fetchval("select smart_account from virtual_accounts where name = $1", account)
                reserved_here = dict.fromkeys(LICENSES, 0)
                for r in await c.fetch(
                    "select counts::text as n from reservations where virtual_account = $1 and status <> 'returned'",
                    account,
                ):
                    reserved_here = add(reserved_here, json.loads(r["n"]))
                # what the on-prem may give its instances: the account's licenses, less what the central's own
                # reservations hold
                accounts[account] = {
                    "smart_account": sa,
                    "licenses": add(await self._licenses(c, account), reserved_here, -1),
                }
            reported = sum(len(p["reported"]) for p in usage.values())
            await self._audit_as(c, f"onprem:{name}", "onprem.sync", {"seq": seq, "instances": reported})
        answer = codes.sign(
            self.key,
            SYNC_ANSWER,
            {
                "version": SYNC_VERSION,
                "central": self.role.name,
                "onprem": name,
                "request_seq": seq,
                "request_nonce": payload.get("nonce"),
                "at": _iso(at),
                "accounts": accounts,
            },
        )
        return {"onprem": name, "seq": seq, "accounts": sorted(accounts), "sync_answer": answer}

    async def _audit_as(self, c: Connection, actor: str, action: str, detail: dict[str, Any]) -> None:
        await c.execute(
            "insert into audit (actor, action, detail) values ($1, $2, $3::jsonb)",
            actor,
            action,
            json.dumps(detail, default=str),
        )

    # ------------------------------------------------------------ SSM On-Prem: on-prem side

    def _onprem_only(self) -> str:
        if self.role.mode != "onprem" or self.role.central_key is None:
            raise Refused(409, "this authority is the central one: sync requests are made by an SSM On-Prem")
        return self.role.central_key

    async def sync_request(self, actor: str, at: datetime) -> dict[str, Any]:
        """A signed sync request: the usage of every account this on-prem serves (each registered instance's latest
        peaks, each reservation), numbered one above the last. Only an answer to the latest request is applied."""
        self._onprem_only()
        async with self.db.pool.acquire() as c, c.transaction():
            seq = await c.fetchval(
                "update sync_state set last_request_seq = last_request_seq + 1 returning last_request_seq"
            )
            accounts = {}
            for r in await c.fetch("select name from virtual_accounts order by name"):
                reported, reserved = await self._usage(c, r["name"])
                accounts[r["name"]] = {"reported": reported, "reserved": reserved}
            await self._audit_as(c, actor, "sync.request", {"seq": seq, "accounts": sorted(accounts)})
        nonce = secrets.token_hex(16)
        request = codes.sign(
            self.key,
            SYNC_REQUEST,
            {
                "version": SYNC_VERSION,
                "onprem": self.role.name,
                "seq": seq,
                "nonce": nonce,
                "at": _iso(at),
                "accounts": accounts,
            },
        )
        return {"onprem": self.role.name, "seq": seq, "accounts": sorted(accounts), "sync_request": request}

    async def apply_answer(self, actor: str, at: datetime, answer: str) -> dict[str, Any]:
        """The central's signed answer: its accounts and their licenses replace this on-prem's, once. Refused when
        another key signed it, it is for another on-prem, or it answers a request that is not the latest one."""
        central_key = self._onprem_only()
        try:
            payload = codes.verify(central_key, answer, SYNC_ANSWER, "the sync answer", MAX_SYNC)
        except codes.CodeError as exc:
            raise Refused(
                403, f"the sync answer is not from the central authority (not signed by its key, or changed): {exc}"
            ) from None
        if payload.get("onprem") != self.role.name:
            raise Refused(
                409, f"the sync answer is for the on-prem {payload.get('onprem')!r}, not this one ({self.role.name!r})"
            )
        seq = payload.get("request_seq")
        accounts = payload.get("accounts")
        if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(accounts, dict):
            raise Refused(400, "the sync answer has no request_seq or accounts")
        async with self._tx(actor, "sync.apply", {"seq": seq, "accounts": sorted(accounts)}) as c:
            state = await c.fetchrow("select * from sync_state for update")
            assert state is not None  # the migration inserts its one row
            sync_step(seq, state["last_applied_seq"], what="sync answer", latest=state["last_request_seq"])
            for account, given in sorted(accounts.items()):
                sa = given.get("smart_account") if isinstance(given, dict) else None
                if not isinstance(sa, str):
                    raise Refused(400, f"the sync answer's account {account!r} names no smart account")
                licenses = counts(given.get("licenses"), f"accounts.{account}.licenses")
                await c.execute(
                    "insert into virtual_accounts (name, smart_account, created_at) values ($1, $2, $3)"
                    " on conflict (name) do update set smart_account = excluded.smart_account",
                    account,
                    sa,
                    at,
                )
                await self._set_licenses(c, account, licenses)
                await self._weigh(c, account, at)
            await c.execute(
                "update sync_state set last_applied_seq = $1, last_sync_at = $2, central = $3",
                seq,
                at,
                payload.get("central"),
            )
        return {"applied": seq, "central": payload.get("central"), "accounts": sorted(accounts)}

    async def sync_status(self) -> dict[str, Any]:
        async with self.db.pool.acquire() as c:
            state = await c.fetchrow("select * from sync_state")
        assert state is not None
        return {
            "mode": self.role.mode,
            "name": self.role.name,
            "central": state["central"],
            "last_request_seq": state["last_request_seq"],
            "last_applied_seq": state["last_applied_seq"],
            "last_sync_at": _iso(state["last_sync_at"]),
        }
