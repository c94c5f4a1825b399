"""The licensing authority's HTTP JSON API (OpenAPI at `/openapi.json`), its faults on demand, and its process.

Two sides, as in Cisco SSM:
- the **account** side (an admin of the smart account): virtual accounts, licenses, tokens, reservations,
  classic-to-smart conversion, the audit log, and faults for tests and demos. It needs a signed-in caller
  (ccxlic_runtime.auth: a bearer token, or the console's session): a viewer reads, an admin changes; the audit log
  records the user.
- the **product** side (a product instance's Smart Agent): register with a token, renew the registration and the
  authorization, report usage, deregister. Every call but `register` carries the instance's identity certificate.
  Faults on demand apply to this side only.

Time: the wall clock. Only in simulation mode (CCXLIC_AUTHORITY_CALLER_CLOCK=true, which `ccxlic run --scenario`
sets) is a request's `at` (RFC 3339) the time, so a simulation walks months in minutes; the authority then says so at
start, in every product answer (`clock: caller`) and in its metrics, so a production config cannot turn it on
silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from ccxlic_contract.events import UtcDatetime
from ccxlic_rules import codes
from ccxlic_runtime.auth import PgAuthStore, auth_middleware, identity, open_auth, writes_need_admin
from ccxlic_runtime.db import Database, create_pool, migrate
from ccxlic_runtime.delivery import Deliverer
from ccxlic_runtime.http import add_ops_routes, json_response, problem, serve, tls_context
from ccxlic_runtime.settings import ConfigError
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import TypeAdapter, ValidationError

from ccxlic_authority.core import Refused, Rules
from ccxlic_authority.openapi import spec
from ccxlic_authority.settings import AuthoritySettings
from ccxlic_authority.store import NAME, Authority, Role

SERVICE = "authority"
MIGRATIONS = resources.files("ccxlic_authority") / "migrations"
log = logging.getLogger(__name__)
_NAME = re.compile(NAME)
_RFC3339: TypeAdapter[datetime] = TypeAdapter(UtcDatetime)
MAX_BODY = 16_000_000  # a reservation site's usage bundle of a year is a few MB
FAULT_MODES = ("none", "unreachable", "slow", "refuse", "entitlements")
Handler = Callable[[web.Request, dict[str, Any]], Awaitable[Any]]


@dataclass(slots=True)
class Faults:
    """Faults on demand for the product side: `unreachable` drops the connection without an answer, `slow` waits
    `delay` before answering (the caller times out), `refuse` answers 503 with `reason`, `entitlements` answers
    without the license type and the entitlements (`entitlements_error` says why: the Smart Agent's Entitlement
    Reporting fails)."""

    mode: str = "none"
    reason: str = "refused on demand"
    delay: float = 30.0
    instance: str | None = None  # only this instance's calls (None: every instance's)

    def applies(self, instance: str | None) -> bool:
        return self.mode != "none" and (self.instance is None or self.instance == instance)


def _caller(body: dict[str, Any]) -> str | None:
    """The instance a product call is from: named in `register`, else in its identity certificate (read, not
    verified: the handler verifies it)."""
    if isinstance(body.get("instance"), str):
        return str(body["instance"])
    cert = body.get("identity_certificate")
    if isinstance(cert, str):
        try:
            return str(codes.peek(cert).get("instance"))
        except codes.CodeError:
            return None
    return None


def _without_entitlements(answer: Any, reason: str) -> Any:
    """An answer as the `entitlements` fault gives it: no license type, no entitlements, and why."""
    if not isinstance(answer, dict) or "entitlements" not in answer:
        return answer
    kept = {k: v for k, v in answer.items() if k not in ("license_type", "entitlements")}
    return kept | {"entitlements_error": f"the licensing authority could not give the entitlements: {reason}"}


def _named(value: object, refusal: str) -> str:
    """`value` as a name (accounts, instances, PAKs: 1-64 characters from [A-Za-z0-9._:-]), or 400 `refusal`."""
    if not isinstance(value, str) or _NAME.fullmatch(value) is None:
        raise Refused(400, refusal)
    return value


def _name(body: dict[str, Any], field: str) -> str:
    return _named(body.get(field), f"{field} must be 1-64 characters from A-Z a-z 0-9 . _ : -")


def _text(body: dict[str, Any], field: str, default: str | None = None, limit: int = 500) -> str:
    value = body.get(field, default)
    if not isinstance(value, str) or len(value) > limit:
        raise Refused(400, f"{field} must be text of at most {limit} characters")
    return value


def _int(body: dict[str, Any], field: str, default: int, low: int, high: int) -> int:
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refused(400, f"{field} must be a whole number from {low} to {high}")
    return value


ACCOUNT_SIDE = (
    "/v1/accounts",
    "/v1/tokens",
    "/v1/reservations",
    "/v1/classic",
    "/v1/faults",
    "/v1/audit",
    "/v1/smart-accounts",
    "/v1/notices",
    "/v1/onprems",
    "/v1/sync",
)
TRANSPORT_GATEWAY = "/Transportgateway/services/DeviceRequestHandler"
"""The vendor's SSM On-Prem transport URL (`https://<OnpremCSSM>/Transportgateway/services/DeviceRequestHandler`):
an instance configured with it reaches the product side, which is served under it too."""
_EMAIL = re.compile(r"^[^@\s,]{1,64}@[^@\s,]{1,255}$")


def _page(r: web.Request) -> tuple[int, int]:
    """`?after=&limit=` of a listing (the audit log, the notices): after an id, at most `limit` rows."""
    try:
        after = int(r.query.get("after", "0"))
        limit = int(r.query.get("limit", "1000"))
    except ValueError:
        raise Refused(400, "after and limit must be whole numbers") from None
    if not (after >= 0 and 1 <= limit <= 10_000):
        raise Refused(400, "after must be >= 0 and limit from 1 to 10000")
    return after, limit


def _emails(body: dict[str, Any]) -> list[str]:
    value = body.get("emails")
    if not isinstance(value, list) or len(value) > 50 or not all(isinstance(e, str) for e in value):
        raise Refused(400, "emails must be a list of at most 50 email addresses")
    bad = [e for e in value if _EMAIL.fullmatch(e) is None]
    if bad:
        raise Refused(400, f"not an email address: {bad[0]!r}")
    return list(dict.fromkeys(value))


def make_app(
    authority: Authority,
    settings: AuthoritySettings,
    faults: Faults,
    registry: CollectorRegistry,
    auth: PgAuthStore,
    swept: Callable[[datetime], Awaitable[int]] | None = None,
) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY, middlewares=[auth_middleware(auth, writes_need_admin(ACCOUNT_SIDE))]
    )
    answered = Counter(
        "ccxlic_authority_requests", "Requests answered, by route and status", ["route", "status"], registry=registry
    )
    Gauge(
        "ccxlic_authority_caller_clock",
        "1 when the authority takes the caller's clock (simulation mode), 0 on the wall clock",
        registry=registry,
    ).set(1 if settings.caller_clock else 0)

    def at_of(body: dict[str, Any]) -> datetime:
        raw = body.get("at")
        if raw is None or not settings.caller_clock:
            return datetime.now(UTC)
        try:
            return _RFC3339.validate_python(raw)  # the contract's own parser: offset, seconds, years 1970-2999
        except ValidationError:
            raise Refused(400, "at must be an RFC 3339 time with an offset, e.g. 2026-03-02T08:00:00Z") from None

    async def body_of(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        if request.content_type != "application/json":
            raise Refused(415, "send a JSON body (Content-Type: application/json)")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise Refused(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise Refused(400, "the body must be a JSON object")
        return body

    def actor(request: web.Request) -> str:
        who = identity(request)
        assert who is not None  # the middleware lets only a signed-in caller reach the account side
        return who.user

    def route(
        handler: Handler, *, status: int = 200, product: bool = False
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            name = request.match_info.route.resource.canonical if request.match_info.route.resource else "?"
            try:
                body = await body_of(request) if request.method != "GET" else {}
                if product and faults.applies(_caller(body)):
                    if faults.mode == "unreachable":
                        if request.transport is not None:
                            request.transport.abort()
                        raise web.HTTPServiceUnavailable()  # never reaches the caller: the connection is gone
                    if faults.mode == "slow":
                        await asyncio.sleep(faults.delay)
                    elif faults.mode == "refuse":
                        raise Refused(503, f"the licensing authority refused: {faults.reason}")
                result = await handler(request, body)
                if product and faults.mode == "entitlements" and faults.applies(_caller(body)):
                    result = _without_entitlements(result, faults.reason)
                if product and settings.caller_clock and isinstance(result, dict):
                    result = {**result, "clock": "caller"}  # a simulation: said in every answer
                    if swept is not None:
                        await swept(at_of(body))  # time moves only with the callers: what it brought is noticed
            except Refused as exc:
                answered.labels(name, str(exc.status)).inc()
                return problem(exc.status, str(exc))
            answered.labels(name, str(status)).inc()
            return json_response(result, status)

        return wrapped

    def account_of(request: web.Request) -> str:
        return _named(
            request.match_info["account"], "a virtual account name is 1-64 characters from A-Z a-z 0-9 . _ : -"
        )

    # ------------------------------------------------------------ account side

    async def create_account(r: web.Request, b: dict[str, Any]) -> Any:
        return await authority.create_account(
            actor(r), at_of(b), _name(b, "smart_account"), _name(b, "virtual_account")
        )

    async def accounts(r: web.Request, b: dict[str, Any]) -> Any:
        return {"smart_accounts": await authority.accounts()}

    def licenses(action: str) -> Handler:
        async def handler(r: web.Request, b: dict[str, Any]) -> Any:
            to = _name(b, "to") if action == "move" else None
            return await authority.change_licenses(
                actor(r), account_of(r), action, b.get("quantities"), to, _text(b, "reason", "")
            )

        return handler

    async def instances(r: web.Request, b: dict[str, Any]) -> Any:
        return {"virtual_account": account_of(r), "instances": await authority.instances(account_of(r))}

    async def create_token(r: web.Request, b: dict[str, Any]) -> Any:
        days = _int(b, "expires_in_days", 30, 1, 365)
        uses = _int(b, "max_uses", 1, 1, 1_000_000)
        export = b.get("export_controlled", False)
        if not isinstance(export, bool):
            raise Refused(400, "export_controlled must be true or false")
        return await authority.create_token(
            actor(r), at_of(b), account_of(r), timedelta(days=days), uses, export, _text(b, "description", "")
        )

    async def tokens(r: web.Request, b: dict[str, Any]) -> Any:
        return {"virtual_account": account_of(r), "tokens": await authority.tokens(account_of(r))}

    async def revoke_token(r: web.Request, b: dict[str, Any]) -> Any:
        return await authority.revoke_token(actor(r), at_of(b), r.match_info["token"])

    async def reserve(r: web.Request, b: dict[str, Any]) -> Any:
        return await authority.reserve(
            actor(r), at_of(b), _text(b, "request_code", limit=codes.MAX_CODE), account_of(r), b.get("quantities")
        )

    async def reservations(r: web.Request, b: dict[str, Any]) -> Any:
        return {"virtual_account": account_of(r), "reservations": await authority.reservations(account_of(r))}

    async def confirm(r: web.Request, b: dict[str, Any]) -> Any:
        return await authority.confirm_reservation(
            actor(r), at_of(b), _text(b, "confirmation_code", limit=codes.MAX_CODE)
        )

    async def carried_usage(r: web.Request, b: dict[str, Any]) -> Any:
        return await authority.upload_usage(actor(r), at_of(b), b.get("bundle"))

    async def give_back(r: web.Request, b: dict[str, Any]) -> Any:
        return await authority.return_reservation(actor(r), at_of(b), _text(b, "return_code", limit=codes.MAX_CODE))

    def classic_add(kind: str) -> Handler:
        async def handler(r: web.Request, b: dict[str, Any]) -> Any:
            return await authority.add_classic(actor(r), kind, _name(b, "id"), b.get("quantities"))

        return handler

    def classic_get(kind: str) -> Handler:
        async def handler(r: web.Request, b: dict[str, Any]) -> Any:
            return await authority.classic(kind, r.match_info["id"])

        return handler

    def classic_convert(kind: str) -> Handler:
        async def handler(r: web.Request, b: dict[str, Any]) -> Any:
            quantities = b.get("quantities")  # the SKUs and quantities to convert; a PAK without them: all of it
            if kind == "device" and quantities is None:
                raise Refused(400, "a device conversion names the quantities (SKUs) to convert")
            return await authority.convert(
                actor(r), at_of(b), kind, r.match_info["id"], _name(b, "virtual_account"), quantities
            )

        return handler

    async def get_faults(r: web.Request, b: dict[str, Any]) -> Any:
        return {
            "mode": faults.mode,
            "reason": faults.reason,
            "delay_seconds": faults.delay,
            "instance": faults.instance,
        }

    async def set_faults(r: web.Request, b: dict[str, Any]) -> Any:
        mode = b.get("mode")
        if mode not in FAULT_MODES:
            raise Refused(400, f"mode must be one of {', '.join(FAULT_MODES)}")
        delay = b.get("delay_seconds", 30)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 600:
            raise Refused(400, "delay_seconds must be a number from 0 to 600")
        instance = _name(b, "instance") if b.get("instance") is not None else None
        faults.mode, faults.reason, faults.delay = mode, _text(b, "reason", "refused on demand"), float(delay)
        faults.instance = instance
        detail = {"mode": mode, "reason": faults.reason, "delay_seconds": delay, "instance": instance}
        await authority.record(actor(r), "faults.set", detail)
        return await get_faults(r, b)

    async def audit(r: web.Request, b: dict[str, Any]) -> Any:
        return {"entries": await authority.audit(*_page(r))}

    async def keys(r: web.Request, b: dict[str, Any]) -> Any:
        return {"algorithm": "Ed25519", "public_key_pem": codes.public_pem(authority.key)}

    async def balances(r: web.Request, b: dict[str, Any]) -> Any:
        return await authority.balances(account_of(r))

    def smart_account_of(r: web.Request) -> str:
        return _named(r.match_info["smart_account"], "a smart account name is 1-64 characters from A-Z a-z 0-9 . _ : -")

    async def get_emails(r: web.Request, b: dict[str, Any]) -> Any:
        return await authority.notification_emails(smart_account_of(r))

    async def set_emails(r: web.Request, b: dict[str, Any]) -> Any:
        return await authority.set_notification_emails(actor(r), smart_account_of(r), _emails(b))

    async def notices(r: web.Request, b: dict[str, Any]) -> Any:
        after, limit = _page(r)
        sa = r.query.get("smart_account")
        if sa is not None:
            _named(sa, "smart_account is 1-64 characters from A-Z a-z 0-9 . _ : -")
        return {"notices": await authority.notices(sa, after, limit)}

    async def register_onprem(r: web.Request, b: dict[str, Any]) -> Any:
        accounts = b.get("virtual_accounts")
        if not isinstance(accounts, list) or not accounts or len(accounts) > 1000:
            raise Refused(400, "virtual_accounts must be a list of the virtual accounts the on-prem serves")
        names = [_named(a, "virtual_account must be 1-64 characters from A-Z a-z 0-9 . _ : -") for a in accounts]
        return await authority.register_onprem(
            actor(r), at_of(b), _name(b, "onprem"), _text(b, "public_key_pem", limit=2000), names
        )

    async def onprems(r: web.Request, b: dict[str, Any]) -> Any:
        return {"onprems": await authority.onprems()}

    async def onprem_sync(r: web.Request, b: dict[str, Any]) -> Any:
        return await authority.answer_sync(at_of(b), _text(b, "sync_request", limit=codes.MAX_SYNC))

    async def sync_request(r: web.Request, b: dict[str, Any]) -> Any:
        return await authority.sync_request(actor(r), at_of(b))

    async def sync_answer(r: web.Request, b: dict[str, Any]) -> Any:
        return await authority.apply_answer(actor(r), at_of(b), _text(b, "sync_answer", limit=codes.MAX_SYNC))

    async def sync_status(r: web.Request, b: dict[str, Any]) -> Any:
        return await authority.sync_status()

    # ------------------------------------------------------------ product side

    async def register(r: web.Request, b: dict[str, Any]) -> Any:
        return await authority.register(at_of(b), _text(b, "token", limit=200), _name(b, "instance"))

    def with_certificate(op: Callable[..., Awaitable[Any]], *extra: str) -> Handler:
        async def handler(r: web.Request, b: dict[str, Any]) -> Any:
            cert = _text(b, "identity_certificate", limit=codes.MAX_CODE)
            return await op(at_of(b), cert, *(b.get(e) for e in extra))

        return handler

    async def openapi(r: web.Request) -> web.StreamResponse:
        return json_response(spec())

    add = app.router
    add.add_get("/openapi.json", openapi)
    add.add_get("/v1/keys", route(keys))
    add.add_get("/v1/accounts", route(accounts))
    add.add_post("/v1/accounts", route(create_account, status=201))
    add.add_post("/v1/accounts/{account}/licenses/deposit", route(licenses("deposit")))
    add.add_post("/v1/accounts/{account}/licenses/remove", route(licenses("remove")))
    add.add_post("/v1/accounts/{account}/licenses/move", route(licenses("move")))
    add.add_get("/v1/accounts/{account}/instances", route(instances))
    add.add_get("/v1/accounts/{account}/tokens", route(tokens))
    add.add_post("/v1/accounts/{account}/tokens", route(create_token, status=201))
    add.add_post("/v1/tokens/{token}/revoke", route(revoke_token))
    add.add_get("/v1/accounts/{account}/reservations", route(reservations))
    add.add_post("/v1/accounts/{account}/reservations", route(reserve, status=201))
    add.add_post("/v1/reservations/confirm", route(confirm))
    add.add_post("/v1/reservations/return", route(give_back))
    add.add_post("/v1/reservations/usage", route(carried_usage))
    for kind, path in (("pak", "paks"), ("device", "devices")):
        add.add_post(f"/v1/classic/{path}", route(classic_add(kind), status=201))
        add.add_get(f"/v1/classic/{path}/{{id}}", route(classic_get(kind)))
        add.add_post(f"/v1/classic/{path}/{{id}}/convert", route(classic_convert(kind)))
    add.add_get("/v1/faults", route(get_faults))
    add.add_put("/v1/faults", route(set_faults))
    add.add_get("/v1/audit", route(audit))
    add.add_get("/v1/accounts/{account}/balances", route(balances))
    add.add_get("/v1/smart-accounts/{smart_account}/notifications", route(get_emails))
    add.add_put("/v1/smart-accounts/{smart_account}/notifications", route(set_emails))
    add.add_get("/v1/notices", route(notices))
    add.add_get("/v1/onprems", route(onprems))
    add.add_post("/v1/onprems", route(register_onprem, status=201))
    add.add_post("/v1/onprem-sync", route(onprem_sync))
    add.add_get("/v1/sync", route(sync_status))
    add.add_post("/v1/sync/request", route(sync_request, status=201))
    add.add_post("/v1/sync/answer", route(sync_answer))
    for prefix in ("", TRANSPORT_GATEWAY):
        if prefix:
            add.add_get(prefix + "/v1/keys", route(keys))
        add.add_post(prefix + "/v1/product/register", route(register, product=True))
        add.add_post(
            prefix + "/v1/product/renew-registration",
            route(with_certificate(authority.renew_registration), product=True),
        )
        add.add_post(prefix + "/v1/product/authorize", route(with_certificate(authority.authorize), product=True))
        add.add_post(
            prefix + "/v1/product/report",
            route(with_certificate(authority.report, "reports", "checkpoints", "log_key"), product=True),
        )
        add.add_post(prefix + "/v1/product/deregister", route(with_certificate(authority.deregister), product=True))
    return app


def _role(settings: AuthoritySettings) -> Role:
    central_key = None
    if settings.central_key_file is not None:
        try:
            with open(settings.central_key_file, encoding="utf-8") as f:
                [central_key] = codes.public_keys(f.read())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"CCXLIC_AUTHORITY_CENTRAL_KEY={settings.central_key_file}: not one Ed25519 public key (PEM): {exc}"
            ) from None
    return Role(settings.mode, settings.name, central_key, mail=bool(settings.smtp_host))


async def sync_with_central(authority: Authority, settings: AuthoritySettings, http: aiohttp.ClientSession) -> int:
    """One connected sync: a request made here, answered by the central over HTTPS, the answer applied. The number
    of the sync applied; an `OSError`/`ClientError`/`Refused` says why there is none."""
    assert settings.central_url is not None
    made = await authority.sync_request("sync", datetime.now(UTC))
    tls = ssl.create_default_context(cafile=settings.central_ca_file)
    url = settings.central_url.rstrip("/") + "/v1/onprem-sync"
    async with http.post(url, json={"sync_request": made["sync_request"]}, ssl=tls) as r:
        answer = await r.json(content_type=None)
        if r.status != 200 or not isinstance(answer, dict) or "sync_answer" not in answer:
            said = answer.get("error") if isinstance(answer, dict) else None
            raise Refused(502, f"the central authority refused the sync ({r.status}): {said or 'no reason given'}")
    applied = await authority.apply_answer("sync", datetime.now(UTC), str(answer["sync_answer"]))
    return int(applied["applied"])


@dataclass(frozen=True, slots=True)
class Metrics:
    """The authority's own metrics beyond its requests: exposed in every mode (0 where they do not apply), so the
    dashboards and rules find them."""

    connected: Gauge
    syncs: Counter
    last_sync: Gauge
    mail: Counter

    @classmethod
    def of(cls, registry: CollectorRegistry) -> Metrics:
        return cls(
            Gauge(
                "ccxlic_authority_connected",
                "1 for an SSM On-Prem that syncs with its central on a schedule, else 0",
                registry=registry,
            ),
            Counter("ccxlic_authority_syncs", "Connected syncs, by outcome", ["outcome"], registry=registry),
            Gauge(
                "ccxlic_authority_last_sync_timestamp_seconds",
                "When the last connected sync was applied (0: never)",
                registry=registry,
            ),
            Counter(
                "ccxlic_authority_mail",
                "Account notices mailed, by outcome (sent, retry, failed: given up)",
                ["outcome"],
                registry=registry,
            ),
        )


async def _connected(authority: Authority, settings: AuthoritySettings, metrics: Metrics, stop: asyncio.Event) -> None:
    """Connected mode: a sync at start and every CCXLIC_AUTHORITY_SYNC_EVERY; a failure is said and counted, and
    the next one comes on time (nothing is lost: each request carries the whole current usage)."""
    syncs, last = metrics.syncs, metrics.last_sync
    metrics.connected.set(1)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        while not stop.is_set():
            try:
                seq = await sync_with_central(authority, settings, http)
                syncs.labels("applied").inc()
                last.set_to_current_time()
                log.info("synchronised with the central authority", extra={"seq": seq})
            except (OSError, TimeoutError, aiohttp.ClientError, Refused, ValueError) as exc:
                syncs.labels("failed").inc()
                log.warning("the sync with the central authority failed", extra={"error": str(exc) or repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.sync_every.total_seconds())


async def _sweeping(authority: Authority, every: float, stop: asyncio.Event) -> None:
    """On the wall clock: look for what time alone brings (a lapsed authorization, the end of a grace) to notify."""
    while not stop.is_set():
        try:
            await authority.sweep(datetime.now(UTC))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("the notice sweep waits for the database", extra={"error": repr(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def run(settings: AuthoritySettings, stop: asyncio.Event, *, ready: Callable[[int], None] | None = None) -> None:
    role = _role(settings)
    pool = await create_pool(settings.database_url, settings.schema_name, max_size=settings.db_pool_size)
    try:
        async with open_auth(settings.database_url, settings.auth_schema) as auth:
            await migrate(pool, settings.schema_name, MIGRATIONS)
            db = Database(pool, settings.schema_name)
            authority = await Authority.open(db, Rules(), role)
            if settings.caller_clock:
                log.warning(
                    "SIMULATION MODE: the licensing authority takes each request's `at` as the time "
                    "(CCXLIC_AUTHORITY_CALLER_CLOCK=true); never in production"
                )
            log.info(
                "the licensing authority",
                extra={"mode": role.mode, "authority": role.name, "connected": settings.central_url is not None},
            )
            registry = CollectorRegistry()
            app = make_app(
                authority, settings, Faults(), registry, auth, swept=authority.sweep if settings.caller_clock else None
            )
            add_ops_routes(app.router, registry, {"database": db.ping})
            tls = tls_context(settings.tls_cert_file, settings.tls_key_file)
            tasks = []
            email = settings.email([], settings.notify_timeout_seconds)
            metrics = Metrics.of(registry)
            if email is not None:
                mailer = Deliverer(
                    db,
                    email,
                    give_up_after=86_400,
                    backoff=1.0,
                    max_backoff=60.0,
                    lease=2 * settings.notify_timeout_seconds + 5,
                    wake=authority.mailed,
                    on_outcome=lambda _channel, outcome: metrics.mail.labels(outcome).inc(),
                )
                tasks.append(asyncio.create_task(mailer.run(stop), name="authority-mail"))
            if not settings.caller_clock:
                tasks.append(asyncio.create_task(_sweeping(authority, settings.sweep_every.total_seconds(), stop)))
            if settings.mode == "onprem" and settings.central_url is not None:
                tasks.append(asyncio.create_task(_connected(authority, settings, metrics, stop), name="sync"))
            try:
                await serve(app, settings.http_host, settings.http_port, stop, tls=tls, ready=ready, name="authority")
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await pool.close()
