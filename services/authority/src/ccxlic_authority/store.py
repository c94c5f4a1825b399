"""The authority's operations on its PostgreSQL schema. Each operation is one transaction that also writes its
audit row (who, when, what); a refusal writes nothing. The rules themselves are in `core` and `codes`."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
import re
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ccxlic_contract.events import INSTANCE_ID_PATTERN

if TYPE_CHECKING:
    from ccxlic_runtime.db import Connection

from ccxlic_audit.note import public_bytes
from ccxlic_rules import Entitlement, Usage, codes, deficit
from ccxlic_rules.codes import (
    AUTHORIZATION_CODE,
    CONFIRMATION_CODE,
    IDENTITY,
    REQUEST_CODE,
    RETURN_CODE,
)
from ccxlic_rules.pool import over
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ccxlic_authority import witness
from ccxlic_authority.core import (
    HELD,
    LICENSES,
    Refused,
    add,
    counts,
    peak_of,
    shortfall_text,
    still_short,
    token_problem,
    verdict,
)
from ccxlic_authority.ledger import ONPREM, Role, iso
from ccxlic_authority.onprem import OnPremSync

__all__ = ["NAME", "ONPREM", "Authority", "Role"]

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


class Authority(OnPremSync):
    """The licensing authority's operations: accounts and licenses, tokens, the product side, reservations and
    classic licenses (and, from its bases, the notices and the SSM On-Prem sync)."""

    # ------------------------------------------------------------ accounts and licenses

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
                        "out_of_compliance_since": iso(r["ooc_since"]),
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
                    "registered_at": iso(r["registered_at"]),
                    "registration_valid_until": iso(r["identity_valid_until"]),
                    "authorized_until": iso(r["authorized_until"]),
                    "last_contact": iso(r["last_contact"]),
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
            "expires_at": iso(at + expires_in),
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
                "created_at": iso(r["created_at"]),
                "expires_at": iso(r["expires_at"]),
                "max_uses": r["max_uses"],
                "uses": r["uses"],
                "revoked_at": iso(r["revoked_at"]),
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
        return {"id": done["id"], "revoked_at": iso(done["revoked_at"])}

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
                "issued_at": iso(at),
                "valid_until": iso(until),
            },
        )
        return cert, serial, until

    def _answer(self, instance: str, account: str, at: datetime, ent: dict[str, int], **more: Any) -> dict[str, Any]:
        r = self.rules
        return {
            "instance": instance,
            "virtual_account": account,
            "at": iso(at),
            "entitlements": ent,
            "license_type": "flex",
            "authorized_until": iso(at + r.authorization_valid),
            "renew_authorization_at": iso(at + r.renew_authorization_after),
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
        carried = {} if short is None else {"out_of_compliance_since": iso(short.since), "required": short.required}
        return self._answer(
            instance,
            account,
            at,
            ent,
            identity_certificate=cert,
            registration_valid_until=iso(until),
            renew_registration_at=iso(at + self.rules.renew_registration_after),
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
            await self._audit(c, row["instance"], "instance.renew_registration", {"valid_until": iso(until)})
            ent = await self._entitlements(c, row["virtual_account"])
        return self._answer(
            row["instance"],
            row["virtual_account"],
            at,
            ent,
            identity_certificate=cert,
            registration_valid_until=iso(until),
            renew_registration_at=iso(at + self.rules.renew_registration_after),
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

    async def report(
        self, at: datetime, certificate: str, reports: Any, checkpoints: Any = None, log_key: Any = None
    ) -> dict[str, Any]:
        if not isinstance(reports, list) or len(reports) > 10_000:
            raise Refused(400, "reports must be a list of at most 10000 interval reports")
        key = None
        if checkpoints is not None:
            try:
                key = witness.log_key(log_key)
            except ValueError as exc:
                raise Refused(400, str(exc)) from None
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
                answer |= {"out_of_compliance_since": iso(judged.since), "required": judged.required}
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
            if key is not None:
                answer |= await self._witness(c, row["instance"], at, checkpoints, key)
        return answer

    async def _witness(
        self, c: Connection, instance: str, at: datetime, notes: Any, key: Ed25519PublicKey
    ) -> dict[str, Any]:
        """Countersign the report's checkpoints that may be (witness.py); pin the instance's log key on first sight."""
        raw = base64.b64encode(public_bytes(key)).decode()
        pinned = await c.fetchval(
            "insert into log_keys(instance, public_key, pinned_at) values ($1, $2, $3)"
            " on conflict (instance) do update set instance = excluded.instance returning public_key",
            instance,
            raw,
            at,
        )
        if pinned != raw:
            return {"witness_refused": [f"the log key is not the one pinned for {instance!r} (since its first report)"]}
        last: dict[str, list[tuple[int, bytes]]] = {}
        for r in await c.fetch(
            "select origin, size, root from witnessed w where instance = $1 and (size = any($2::bigint[])"
            " or size = (select max(size) from witnessed x where x.origin = w.origin))",
            instance,
            witness.sizes(notes),
        ):
            last.setdefault(r["origin"], []).append((int(r["size"]), bytes(r["root"])))
        done = witness.witness(instance, notes, key, last, self.key)
        await c.executemany(
            "insert into witnessed(instance, origin, size, root, note, at) values ($1, $2, $3, $4, $5, $6)"
            " on conflict (origin, size) do nothing",
            [(instance, cp.origin, cp.size, cp.root, note, at) for cp, note in done.countersigned],
        )
        await self._audit(
            c, instance, "instance.witness", {"countersigned": len(done.countersigned), "refused": done.refused}
        )
        answer: dict[str, Any] = {"countersigned": [note for _, note in done.countersigned]}
        if done.refused:
            answer["witness_refused"] = done.refused
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
                "issued_at": iso(at),
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
            usage = {
                r["instance"]: [(r["interval_start"], json.loads(r["peak"])) for r in group]
                for r, group in _by_instance(
                    await conn.fetch(
                        "select instance, interval_start, peak::text as peak from reservation_usage"
                        " where instance = any($1::text[]) order by instance, interval_start",
                        [r["instance"] for r in rows],
                    )
                )
            }
        return [
            {
                "instance": r["instance"],
                "counts": json.loads(r["counts"]),
                "status": r["status"],
                "updated_at": iso(r["updated_at"]),
                "usage": _reserved_usage(json.loads(r["counts"]), usage.get(r["instance"], [])),
            }
            for r in rows
        ]

    async def upload_usage(self, actor: str, at: datetime, bundle: Any) -> dict[str, Any]:
        """A reservation site's usage bundle (witness.py): checked whole, its checkpoint countersigned, its peaks
        recorded against the reservation; the answer names the intervals over what is reserved."""
        instance = str(bundle.get("instance", "")) if isinstance(bundle, dict) else ""
        if not re.fullmatch(INSTANCE_ID_PATTERN, instance):
            raise Refused(400, "instance: a product instance id")
        try:
            key = witness.log_key(bundle.get("log_key"))
            got = witness.usage(instance, bundle, key)
        except ValueError as exc:
            raise Refused(422, f"the usage bundle of {instance} is refused: {exc}") from None
        async with self._tx(actor, "reservation.usage", {"instance": instance, "size": got.checkpoint.size}) as c:
            row = await c.fetchrow("select * from reservations where instance = $1 for update", instance)
            if row is None or row["status"] != "installed":
                raise Refused(409, f"{instance} holds no installed reservation: its usage is reported, not carried")
            answer = await self._witness(c, instance, at, [got.note], key)
            if answer.get("witness_refused"):
                raise Refused(422, f"the usage bundle of {instance} is refused: {answer['witness_refused'][0]}")
            await c.executemany(
                "insert into reservation_usage (instance, interval_start, revision, peak, uploaded_at)"
                " values ($1, $2, $3, $4::jsonb, $5) on conflict (instance, interval_start) do update set"
                " revision = excluded.revision, peak = excluded.peak, uploaded_at = excluded.uploaded_at"
                " where reservation_usage.revision < excluded.revision",
                [
                    (instance, datetime.fromisoformat(start), rev, json.dumps(peak), at)
                    for start, (rev, peak) in got.peaks.items()
                ],
            )
            rows = await c.fetch(
                "select interval_start, peak::text as peak from reservation_usage where instance = $1"
                " order by interval_start",
                instance,
            )
            reserved = json.loads(row["counts"])
        return {
            "instance": instance,
            "virtual_account": row["virtual_account"],
            "checkpoint": {"size": got.checkpoint.size, "countersigned": answer["countersigned"][0]},
            "intervals": len(got.peaks),
            **_reserved_usage(reserved, [(r["interval_start"], json.loads(r["peak"])) for r in rows]),
        }

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
                "at": iso(r["at"]),
                "actor": r["actor"],
                "action": r["action"],
                "detail": json.loads(r["detail"]),
            }
            for r in rows
        ]


def _by_instance(rows: Sequence[Any]) -> list[tuple[Any, list[Any]]]:
    """Rows ordered by instance, grouped: (the first row, the group)."""
    return [(group[0], group) for _, g in itertools.groupby(rows, key=lambda r: r["instance"]) for group in [list(g)]]


def _reserved_usage(reserved: dict[str, int], peaks: Sequence[tuple[datetime, dict[str, int]]]) -> dict[str, Any]:
    """The highest peaks carried from a reservation site and the intervals over what it reserved (idle Premium
    covering Standard, as everywhere)."""
    limit = Entitlement(**{lic: int(reserved.get(lic, 0)) for lic in LICENSES})
    over_intervals = []
    for start, peak in peaks:
        short = deficit(Usage(**{lic: int(peak.get(lic, 0)) for lic in LICENSES}), limit)
        if over(short):
            over_intervals.append({"interval_start": iso(start), "peak": peak, "short": dataclasses.asdict(short)})
    highest = {lic: max((int(p.get(lic, 0)) for _, p in peaks), default=0) for lic in LICENSES}
    return {"carried_intervals": len(peaks), "highest": highest, "over": over_intervals}
