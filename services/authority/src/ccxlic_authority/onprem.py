"""SSM On-Prem synchronisation: the central's side (registered on-prems, their signed sync requests answered with
the entitlements) and the on-prem's (signed requests made, the central's answers applied once)."""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from ccxlic_rules import codes
from ccxlic_rules.codes import (
    MAX_SYNC,
    SYNC_ANSWER,
    SYNC_REQUEST,
)

from ccxlic_authority.core import (
    LICENSES,
    SYNC_VERSION,
    Refused,
    add,
    counts,
    sync_step,
    sync_usage,
)
from ccxlic_authority.ledger import iso
from ccxlic_authority.notices import Notices


class OnPremSync(Notices):
    """Both sides of the sync: the central answers a registered on-prem's signed request; an on-prem makes requests
    and applies the central's answers, once each."""

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
                "registered_at": iso(r["registered_at"]),
                "last_sync_seq": r["last_seq"],
                "last_sync_at": iso(r["last_sync_at"]),
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
                "at": iso(at),
                "accounts": accounts,
            },
        )
        return {"onprem": name, "seq": seq, "accounts": sorted(accounts), "sync_answer": answer}

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
                "at": iso(at),
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
            "last_sync_at": iso(state["last_sync_at"]),
        }
