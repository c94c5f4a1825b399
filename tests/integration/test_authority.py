"""The licensing authority over HTTP, on the real PostgreSQL: accounts, licenses, tokens, registration,
authorization, usage reports, deregistration, reservations, classic migration, faults, the audit log and its
OpenAPI document."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
import pytest_asyncio
from ccxlic_authority.app import Faults, make_app, run
from ccxlic_authority.openapi import OPERATIONS
from ccxlic_authority.settings import AuthoritySettings
from ccxlic_rules import codes
from ccxlic_rules.codes import CONFIRMATION_CODE, REQUEST_CODE, RETURN_CODE
from ccxlic_runtime.settings import load_settings
from ccxlic_testing.plugin import InProcess, Stack, api_token, drop_schema, service_settings
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
D = timedelta(days=1)


class Client:
    def __init__(self, http: aiohttp.ClientSession, port: int, token: str, auth_schema: str = "") -> None:
        self.http = http
        self.auth_schema = auth_schema
        self.base = f"http://127.0.0.1:{port}"
        self.token = token
        self.ssl: ssl.SSLContext | bool = True  # an authority over HTTPS: the context with its CA

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        kw.setdefault("ssl", self.ssl)
        async with self.http.request(method, self.base + path, json=body, headers=headers, **kw) as r:
            return r.status, await r.json()

    async def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        status, answer = await self.call(method, path, body)
        assert status in (200, 201), (status, answer)
        return answer

    async def refused(self, method: str, path: str, body: dict[str, Any] | None, status: int, words: str) -> None:
        got, answer = await self.call(method, path, body)
        assert got == status and words in answer["error"], (got, answer)


@pytest_asyncio.fixture
async def authority(stack: Stack, pg_schema: str) -> AsyncIterator[Client]:
    settings = service_settings(AuthoritySettings, stack, "", pg_schema, caller_clock=True)  # the tests' dates
    service = InProcess(run, settings)
    port = await service.started()
    token = await api_token(stack.database_url, settings.auth_schema, "ops@example.com")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        yield Client(http, port, token, settings.auth_schema)
    await service.stopped()
    await drop_schema(stack.database_url, pg_schema)


def at(days: float) -> str:
    return (T0 + days * D).isoformat()


async def _setup(a: Client) -> str:
    await a.ok("POST", "/v1/accounts", {"smart_account": "acme", "virtual_account": "east", "at": at(0)})
    await a.ok("POST", "/v1/accounts", {"smart_account": "acme", "virtual_account": "spare", "at": at(0)})
    await a.ok(
        "POST", "/v1/accounts/east/licenses/deposit", {"quantities": {"standard": 40, "premium": 10, "ivr_ports": 20}}
    )
    await a.ok("POST", "/v1/accounts/spare/licenses/deposit", {"quantities": {"premium": 5}})
    token = await a.ok("POST", "/v1/accounts/east/tokens", {"expires_in_days": 30, "max_uses": 2, "at": at(0)})
    return str(token["token"])


async def test_register_authorize_report_move_licenses_and_deregister(authority: Client) -> None:
    a = authority
    token = await _setup(a)
    reg = await a.ok("POST", "/v1/product/register", {"token": token, "instance": "cc-east", "at": at(1)})
    assert reg["entitlements"] == {"standard": 40, "premium": 10, "ivr_ports": 20, "server": 0, "warm_standby": 0}
    assert reg["public_key_pem"] == (await a.ok("GET", "/v1/keys"))["public_key_pem"]  # what the agent pins
    assert "out_of_compliance_since" not in reg  # the account is in compliance
    assert reg["registration_valid_until"] == at(366) and reg["renew_registration_at"] == at(183)
    assert reg["authorized_until"] == at(91) and reg["renew_authorization_at"] == at(31)
    cert = reg["identity_certificate"]
    keys = await a.ok("GET", "/v1/keys")
    assert codes.verify(keys["public_key_pem"], cert, "identity-certificate", "cert")["instance"] == "cc-east"

    quiet = await a.ok("POST", "/v1/product/report", {"identity_certificate": cert, "reports": [], "at": at(2)})
    assert quiet["verdict"] == "in_compliance" and quiet["reports"] == 0  # nothing used yet
    auth = await a.ok("POST", "/v1/product/authorize", {"identity_certificate": cert, "at": at(31)})
    assert auth["authorized_until"] == at(121)
    peaks = [{"interval_start": at(31), "peak": {"standard": 40, "premium": 12, "agents": 52, "ivr_ports": 3}}]
    answer = await a.ok("POST", "/v1/product/report", {"identity_certificate": cert, "reports": peaks, "at": at(32)})
    assert answer["verdict"] == "out_of_compliance" and answer["shortfall"]["premium"] == 2
    assert answer["out_of_compliance_since"] == at(32) and answer["required"]["premium"] == 12
    assert answer["entitlements"]["premium"] == 10  # a report's answer carries the entitlements too
    [listed] = (await a.ok("GET", "/v1/accounts/east/instances"))["instances"]
    assert listed["in_compliance"] is False and listed["last_usage"]["premium"] == 12
    assert listed["last_contact"] == at(32)

    await a.refused(
        "POST", "/v1/accounts/spare/licenses/move", {"quantities": {"premium": 6}, "to": "east"}, 409, "has 5 premium"
    )
    moved = await a.ok("POST", "/v1/accounts/spare/licenses/move", {"quantities": {"premium": 2}, "to": "east"})
    assert moved["to"]["east"]["premium"] == 12
    answer = await a.ok("POST", "/v1/product/report", {"identity_certificate": cert, "reports": peaks, "at": at(33)})
    assert answer["verdict"] == "in_compliance" and "out_of_compliance_since" not in answer
    [east] = [
        v
        for sa in (await a.ok("GET", "/v1/accounts"))["smart_accounts"]
        for v in sa["virtual_accounts"]
        if v["name"] == "east"
    ]
    assert east["out_of_compliance_since"] is None  # within its licenses again, before the grace ended
    assert (await a.ok("GET", "/v1/accounts/east/instances"))["instances"][0]["in_compliance"] is True

    renewed = await a.ok("POST", "/v1/product/renew-registration", {"identity_certificate": cert, "at": at(183)})
    assert renewed["registration_valid_until"] == at(548)
    await a.refused(
        "POST", "/v1/product/authorize", {"identity_certificate": cert, "at": at(184)}, 401, "replaced by a newer one"
    )
    cert = renewed["identity_certificate"]
    done = await a.ok("POST", "/v1/product/deregister", {"identity_certificate": cert, "at": at(190)})
    assert done["status"] == "deregistered"
    await a.refused(
        "POST", "/v1/product/authorize", {"identity_certificate": cert, "at": at(191)}, 403, "not registered"
    )
    [listed] = (await a.ok("GET", "/v1/accounts/east/instances"))["instances"]
    assert listed["status"] == "deregistered" and listed["last_usage"] is None  # its licenses are released

    audit = (await a.ok("GET", "/v1/audit"))["entries"]
    actions = [e["action"] for e in audit]
    assert actions[:3] == ["account.create", "account.create", "licenses.deposit"]
    assert "licenses.move" in actions and actions[-1] == "instance.deregister"
    assert audit[0]["actor"] == "ops@example.com" and audit[-1]["actor"] == "instance:cc-east"


async def _register(a: Client, instance: str, day: float) -> str:
    token = (await a.ok("POST", "/v1/accounts/east/tokens", {"at": at(day - 0.5)}))["token"]
    reg = await a.ok("POST", "/v1/product/register", {"token": token, "instance": instance, "at": at(day)})
    return str(reg["identity_certificate"])


def _peaks(day: float, premium: int) -> list[dict[str, Any]]:
    return [{"interval_start": at(day), "peak": {"standard": 30, "premium": premium, "ivr_ports": 0}}]


async def test_the_account_keeps_its_out_of_compliance_start_across_a_deregister_and_register(
    authority: Client,
) -> None:
    """SSM judges per virtual account: an instance that deregisters and registers again into an account still short
    continues its clock (no 90 fresh days); after the grace only a purchase that covers the peaks ends it."""
    a = authority
    await _setup(a)
    cert = await _register(a, "cc-east", 1)
    short = await a.ok(
        "POST", "/v1/product/report", {"identity_certificate": cert, "reports": _peaks(1, 13), "at": at(2)}
    )
    assert short["out_of_compliance_since"] == at(2)
    await a.ok("POST", "/v1/product/deregister", {"identity_certificate": cert, "at": at(40)})
    again = await a.ok(
        "POST",
        "/v1/product/register",
        {
            "token": (await a.ok("POST", "/v1/accounts/east/tokens", {"at": at(40)}))["token"],
            "instance": "cc-east",
            "at": at(41),
        },
    )
    assert again["out_of_compliance_since"] == at(2) and again["required"]["premium"] == 13
    cert = again["identity_certificate"]
    # day 100: the grace is over; usage dropped back: the account is still out of compliance
    low = await a.ok(
        "POST", "/v1/product/report", {"identity_certificate": cert, "reports": _peaks(99, 9), "at": at(100)}
    )
    assert low["verdict"] == "in_compliance"
    assert (await a.ok("GET", "/v1/accounts"))["smart_accounts"][0]["virtual_accounts"][0][
        "out_of_compliance_since"
    ] == at(2)
    await a.ok("POST", "/v1/accounts/east/licenses/deposit", {"quantities": {"premium": 2}})  # 12 < 13: not enough
    await a.ok("POST", "/v1/product/report", {"identity_certificate": cert, "reports": [], "at": at(101)})
    assert (await a.ok("GET", "/v1/accounts"))["smart_accounts"][0]["virtual_accounts"][0][
        "out_of_compliance_since"
    ] == at(2)
    await a.ok("POST", "/v1/accounts/east/licenses/deposit", {"quantities": {"premium": 1}})  # 13: the purchase
    await a.ok("POST", "/v1/product/report", {"identity_certificate": cert, "reports": [], "at": at(102)})
    accounts = (await a.ok("GET", "/v1/accounts"))["smart_accounts"][0]["virtual_accounts"]
    assert accounts[0]["out_of_compliance_since"] is None


async def test_the_server_and_warm_standby_licenses_are_held_and_reported_as_0(authority: Client) -> None:
    a = authority
    await _setup(a)
    held = await a.ok("POST", "/v1/accounts/east/licenses/deposit", {"quantities": {"server": 1, "warm_standby": 1}})
    assert held["licenses"]["server"] == 1 and held["licenses"]["warm_standby"] == 1
    cert = await _register(a, "cc-east", 1)
    peaks = [
        {"interval_start": at(1), "peak": {"standard": 3, "premium": 1, "ivr_ports": 0, "server": 0, "warm_standby": 0}}
    ]
    answer = await a.ok("POST", "/v1/product/report", {"identity_certificate": cert, "reports": peaks, "at": at(2)})
    assert answer["entitlements"]["server"] == 1 and answer["verdict"] == "in_compliance"
    [listed] = (await a.ok("GET", "/v1/accounts/east/instances"))["instances"]
    assert listed["last_usage"]["server"] == 0 and listed["last_usage"]["warm_standby"] == 0


async def test_the_entitlements_fault_answers_without_the_license_type_and_the_entitlements(authority: Client) -> None:
    a = authority
    await _setup(a)
    cert = await _register(a, "cc-east", 1)
    await a.ok("PUT", "/v1/faults", {"mode": "entitlements", "reason": "SDK exception", "instance": "cc-east"})
    answer = await a.ok("POST", "/v1/product/authorize", {"identity_certificate": cert, "at": at(2)})
    assert "entitlements" not in answer and "license_type" not in answer
    assert "SDK exception" in answer["entitlements_error"] and answer["authorized_until"] == at(92)
    await a.ok("PUT", "/v1/faults", {"mode": "none"})
    assert "entitlements" in await a.ok("POST", "/v1/product/authorize", {"identity_certificate": cert, "at": at(3)})


async def test_tokens_and_registration_refusals_say_why(authority: Client) -> None:
    a = authority
    token = await _setup(a)
    await a.refused(
        "POST",
        "/v1/product/register",
        {"token": "nope", "instance": "cc-1", "at": at(1)},
        403,
        "unknown registration token",
    )
    await a.refused("POST", "/v1/product/register", {"token": token, "instance": "cc-1", "at": at(31)}, 403, "expired")
    for bad_at in ("yesterday", "2026-03-02T08:00:00", 1772438400):  # not RFC 3339 with an offset
        body = {"token": token, "instance": "cc-1", "at": bad_at}
        await a.refused("POST", "/v1/product/register", body, 400, "at must be an RFC 3339 time")
    await a.ok("POST", "/v1/product/register", {"token": token, "instance": "cc-1", "at": at(1)})
    await a.ok("POST", "/v1/product/register", {"token": token, "instance": "cc-2", "at": at(1)})
    await a.refused(
        "POST", "/v1/product/register", {"token": token, "instance": "cc-3", "at": at(1)}, 403, "used 2 times"
    )
    other = await a.ok("POST", "/v1/accounts/east/tokens", {"export_controlled": True, "description": "lab"})
    assert other["export_controlled"] is True and other["max_uses"] == 1
    await a.ok("POST", f"/v1/tokens/{other['token']}/revoke", {})
    await a.refused("POST", "/v1/product/register", {"token": other["token"], "instance": "cc-4"}, 403, "revoked")
    listed = (await a.ok("GET", "/v1/accounts/east/tokens"))["tokens"]
    assert [t["uses"] for t in listed] == [2, 0] and listed[1]["revoked_at"] is not None
    # a token is shown once: the list has its id, and the database only its digest
    assert all("token" not in t for t in listed) and listed[1]["id"] == other["id"] and len(other["id"]) == 12
    third = await a.ok("POST", "/v1/accounts/east/tokens", {"description": "by id"})
    assert (await a.ok("POST", f"/v1/tokens/{third['id']}/revoke", {}))["id"] == third["id"]
    await a.refused("POST", "/v1/product/register", {"token": third["token"], "instance": "cc-6"}, 403, "revoked")
    reg = await a.ok(
        "POST",
        "/v1/product/register",
        {
            "token": (await a.ok("POST", "/v1/accounts/east/tokens", {"at": at(0)}))["token"],
            "instance": "cc-5",
            "at": at(1),
        },
    )
    await a.refused(
        "POST",
        "/v1/product/authorize",
        {"identity_certificate": reg["identity_certificate"], "at": at(367)},
        403,
        "registration expired",
    )
    tampered = reg["identity_certificate"][:-3] + ("AAA" if not reg["identity_certificate"].endswith("AAA") else "BBB")
    await a.refused("POST", "/v1/product/authorize", {"identity_certificate": tampered, "at": at(2)}, 401, "changed")
    # a malformed certificate is refused with its reason (it once gave a 500)
    for malformed in ("_w.x", "e30\ud800.AAAA", "\u00e9.x", "bnVsbA.AAAA", "a" * 9000):
        got, answer = await a.call("POST", "/v1/product/authorize", {"identity_certificate": malformed, "at": at(2)})
        assert got in (400, 401) and answer["error"], (malformed, got, answer)
    await a.refused(
        "POST", "/v1/accounts", {"smart_account": "acme", "virtual_account": "bad name"}, 400, "virtual_account must be"
    )
    await a.refused(
        "POST",
        "/v1/accounts/nowhere/licenses/deposit",
        {"quantities": {"premium": 1}},
        404,
        "no virtual account 'nowhere'",
    )
    await a.refused(
        "POST", "/v1/accounts/east/licenses/deposit", {"quantities": {"gold": 1}}, 400, "unknown license 'gold'"
    )
    await a.refused("POST", "/v1/accounts/east/licenses/remove", {"quantities": {"premium": 11}}, 409, "has 10 premium")
    status, answer = await a.call(
        "POST", "/v1/accounts", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and "not valid JSON" in answer["error"]


async def test_a_reservation_round_trip_with_codes(authority: Client) -> None:
    a = authority
    await _setup(a)
    request = codes.product_code(REQUEST_CODE, {"instance": "cc-vault", "nonce": "n1"})
    tampered = request[:10] + ("x" if request[10] != "x" else "y") + request[11:]
    q = {"standard": 10, "premium": 4, "ivr_ports": 5}
    await a.refused(
        "POST", "/v1/accounts/east/reservations", {"request_code": tampered, "quantities": q}, 400, "fails its check"
    )
    await a.refused(
        "POST",
        "/v1/accounts/east/reservations",
        {"request_code": request, "quantities": {"premium": 11}},
        409,
        "has 10 premium free",
    )
    granted = await a.ok(
        "POST", "/v1/accounts/east/reservations", {"request_code": request, "quantities": q, "at": at(1)}
    )
    keys = await a.ok("GET", "/v1/keys")
    auth = codes.verify(keys["public_key_pem"], granted["authorization_code"], "reservation-authorization", "code")
    assert auth["counts"] == q and auth["instance"] == "cc-vault"
    # the reserved licenses are out of the pool: a registered instance of the account now gets the rest
    token = (await a.ok("POST", "/v1/accounts/east/tokens", {"at": at(0)}))["token"]
    reg = await a.ok("POST", "/v1/product/register", {"token": token, "instance": "cc-other", "at": at(2)})
    assert reg["entitlements"] == {"standard": 30, "premium": 6, "ivr_ports": 15, "server": 0, "warm_standby": 0}
    await a.refused(
        "POST", "/v1/accounts/east/licenses/remove", {"quantities": {"premium": 7}}, 409, "has 6 premium not reserved"
    )
    confirmation = codes.product_code(CONFIRMATION_CODE, {"instance": "cc-vault", "serial": auth["serial"]})
    assert (await a.ok("POST", "/v1/reservations/confirm", {"confirmation_code": confirmation}))[
        "status"
    ] == "installed"
    wrong = codes.product_code(RETURN_CODE, {"instance": "cc-vault", "serial": "old"})
    await a.refused(
        "POST", "/v1/reservations/return", {"return_code": wrong}, 409, "not for cc-vault's current reservation"
    )
    back = codes.product_code(RETURN_CODE, {"instance": "cc-vault", "serial": auth["serial"]})
    freed = await a.ok("POST", "/v1/reservations/return", {"return_code": back})
    assert freed["freed"] == q
    await a.refused("POST", "/v1/reservations/return", {"return_code": back}, 404, "holds no reservation")
    assert (await a.ok("GET", "/v1/accounts/east/reservations"))["reservations"][0]["status"] == "returned"
    # a registered instance cannot get a reservation
    registered = codes.product_code(REQUEST_CODE, {"instance": "cc-other", "nonce": "n2"})
    await a.refused(
        "POST", "/v1/accounts/east/reservations", {"request_code": registered, "quantities": q}, 409, "is registered"
    )


async def test_classic_to_smart_pak_and_device_conversion(authority: Client) -> None:
    a = authority
    await _setup(a)
    await a.ok("POST", "/v1/classic/paks", {"id": "PAK-1", "quantities": {"standard": 20, "premium": 3}})
    done = await a.ok("POST", "/v1/classic/paks/PAK-1/convert", {"virtual_account": "spare"})
    assert done["deposited"] == {"standard": 20, "premium": 3, "ivr_ports": 0}
    await a.refused("POST", "/v1/classic/paks/PAK-1/convert", {"virtual_account": "spare"}, 409, "nothing left")
    await a.ok("POST", "/v1/classic/devices", {"id": "6f1c2a9e-uuid", "quantities": {"standard": 10, "ivr_ports": 8}})
    part = await a.ok(
        "POST", "/v1/classic/devices/6f1c2a9e-uuid/convert", {"virtual_account": "spare", "quantities": {"standard": 4}}
    )
    assert part["still_classic"] == {"standard": 6, "premium": 0, "ivr_ports": 8}
    await a.refused(
        "POST",
        "/v1/classic/devices/6f1c2a9e-uuid/convert",
        {"virtual_account": "spare", "quantities": {"standard": 7}},
        409,
        "has 6 classic standard",
    )
    device = await a.ok("GET", "/v1/classic/devices/6f1c2a9e-uuid")
    assert device["converted"]["standard"] == 4 and device["classic"]["standard"] == 6
    [acme] = (await a.ok("GET", "/v1/accounts"))["smart_accounts"]
    spare = next(v for v in acme["virtual_accounts"] if v["name"] == "spare")
    assert spare["licenses"] == {"standard": 24, "premium": 8, "ivr_ports": 0, "server": 0, "warm_standby": 0}


async def test_faults_on_demand_unreachable_slow_and_refused(authority: Client) -> None:
    a = authority
    token = await _setup(a)
    body = {"token": token, "instance": "cc-f", "at": at(1)}
    await a.ok("PUT", "/v1/faults", {"mode": "refuse", "reason": "maintenance window"})
    await a.refused("POST", "/v1/product/register", body, 503, "refused: maintenance window")
    assert (await a.ok("GET", "/v1/accounts"))["smart_accounts"]  # the account side is not faulted
    await a.ok("PUT", "/v1/faults", {"mode": "unreachable"})
    with pytest.raises(aiohttp.ClientError):
        await a.call("POST", "/v1/product/register", body)
    await a.ok("PUT", "/v1/faults", {"mode": "slow", "delay_seconds": 5})
    with pytest.raises(TimeoutError):
        await a.call("POST", "/v1/product/register", body, timeout=aiohttp.ClientTimeout(total=0.5))
    await a.ok("PUT", "/v1/faults", {"mode": "refuse", "reason": "only cc-other", "instance": "cc-other"})
    reg = await a.ok("POST", "/v1/product/register", body)  # a fault for another instance leaves this one alone
    await a.ok("PUT", "/v1/faults", {"mode": "refuse", "reason": "only cc-f", "instance": "cc-f"})
    cert = {"identity_certificate": reg["identity_certificate"], "at": at(2)}
    await a.refused("POST", "/v1/product/authorize", cert, 503, "only cc-f")
    await a.ok("PUT", "/v1/faults", {"mode": "none"})
    await a.refused("PUT", "/v1/faults", {"mode": "flaky"}, 400, "mode must be one of")
    assert [
        e["detail"]["mode"] for e in (await a.ok("GET", "/v1/audit"))["entries"] if e["action"] == "faults.set"
    ] == [
        "refuse",
        "unreachable",
        "slow",
        "refuse",
        "refuse",
        "none",
    ]


def make_app_routes() -> list[Any]:
    """The routes the authority's app serves (built without running it)."""
    settings = load_settings(AuthoritySettings, database_url="postgresql://x@127.0.0.1/x")
    handlers = SimpleNamespace(renew_registration=None, authorize=None, report=None, deregister=None)
    app = make_app(cast(Any, handlers), settings, Faults(), CollectorRegistry(), cast(Any, None))
    return list(app.router.routes())


async def test_the_openapi_document_describes_every_route(authority: Client) -> None:
    doc = await authority.ok("GET", "/openapi.json")
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == {(m.upper(), p) for m, p, *_ in OPERATIONS}
    served = {
        (r.method, r.resource.canonical)
        for r in make_app_routes()
        if r.method != "HEAD" and r.resource is not None and r.resource.canonical.startswith("/v1/")
    }
    assert served == documented  # every route is documented (the transport URL's aliases and ops routes aside)
    for method, path in documented:
        # every documented route exists: it answers JSON from its handler (a 404 names what is missing), where a
        # path or method the router does not know gets aiohttp's text/plain 404 or 405
        filled = path.replace("{account}", "east").replace("{token}", "t").replace("{id}", "x")
        filled = filled.replace("{smart_account}", "acme")
        async with authority.http.request(
            method,
            authority.base + filled,
            json={} if method != "GET" else None,
            headers={"Authorization": f"Bearer {authority.token}"},
        ) as r:
            assert r.status not in (401, 403, 405) and r.content_type == "application/json", (method, path, r.status)


async def test_the_account_side_needs_a_signed_in_caller_and_only_an_admin_changes(
    authority: Client, stack: Stack
) -> None:
    await _setup(authority)
    port = int(authority.base.rsplit(":", 1)[1])
    for header in ({}, {"Authorization": "Bearer ccxlic_not-a-token"}, {"Authorization": "Basic b3BzOnB3"}):
        async with authority.http.get(authority.base + "/v1/accounts", headers=header) as r:
            assert r.status == 401 and "sign in" in (await r.json())["error"], header
    async with authority.http.post(
        authority.base + "/v1/accounts", json={"smart_account": "x", "virtual_account": "y"}
    ) as r:
        assert r.status == 401
    doc = await authority.ok("GET", "/openapi.json")  # the document is public
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    # a viewer reads, and is refused a change
    viewer = Client(
        authority.http, port, await api_token(stack.database_url, authority.auth_schema, "watcher", "viewer")
    )
    assert (await viewer.ok("GET", "/v1/accounts"))["smart_accounts"]
    await viewer.refused(
        "POST", "/v1/accounts/east/licenses/deposit", {"quantities": {"premium": 1}}, 403, "only an admin"
    )
    # the product side needs no user: its calls carry the instance's token or identity
    async with authority.http.post(
        authority.base + "/v1/product/register", json={"token": "nope", "instance": "cc-x"}
    ) as r:
        error = (await r.json())["error"]
        assert r.status != 401 and "token" in error and "admin" not in error, error
