"""The authority as Cisco SSM and SSM On-Prem, on the real PostgreSQL: balances per virtual account, the smart
account's notifications mailed to a real SMTP server, an on-prem synchronised by signed files (disconnected) and on a
schedule over HTTPS (connected), replays and foreign files refused, the vendor's transport URL, and classic licenses
converted by quantity."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from ccxlic_authority.app import TRANSPORT_GATEWAY, run
from ccxlic_authority.settings import AuthoritySettings
from ccxlic_rules import codes
from ccxlic_testing.plugin import InProcess, Stack, api_token, drop_schema, service_settings
from ccxlic_testing.sinks import Sinks
from ccxlic_testing.tls import make_ca_and_cert

from tests.integration.test_authority import Client

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
D = timedelta(days=1)
Start = Callable[..., Awaitable[Client]]


def at(days: float) -> str:
    return (T0 + days * D).isoformat()


@pytest_asyncio.fixture
async def authorities(stack: Stack, pg_schema: str) -> AsyncIterator[Start]:
    """Start authorities (central or on-prem), each in its own schema: `start(suffix, **settings)`."""
    running: list[tuple[InProcess, str]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

        async def start(suffix: str, ca: Path | None = None, **overrides: Any) -> Client:
            schema = f"{pg_schema}_{suffix}"
            settings = service_settings(AuthoritySettings, stack, "", schema, caller_clock=True, **overrides)
            service = InProcess(run, settings)
            port = await service.started()
            running.append((service, schema))
            token = await api_token(stack.database_url, settings.auth_schema, "ops@example.com")
            client = Client(http, port, token, settings.auth_schema)
            if ca is not None:  # served over HTTPS, its certificate from the test's CA
                client.base = f"https://localhost:{port}"
                client.ssl = ssl.create_default_context(cafile=ca)
            return client

        yield start
        for service, schema in reversed(running):
            await service.stopped()
            await drop_schema(stack.database_url, schema)
            await drop_schema(stack.database_url, f"{schema}_auth")


async def _central(start: Start, **more: Any) -> Client:
    c = await start("central", **more)
    await c.ok("POST", "/v1/accounts", {"smart_account": "acme", "virtual_account": "east", "at": at(0)})
    await c.ok("POST", "/v1/accounts", {"smart_account": "acme", "virtual_account": "spare", "at": at(0)})
    await c.ok("POST", "/v1/accounts/east/licenses/deposit", {"quantities": {"standard": 40, "premium": 10}})
    await c.ok("POST", "/v1/accounts/spare/licenses/deposit", {"quantities": {"premium": 5}})
    return c


async def _register(a: Client, account: str, instance: str, day: float, prefix: str = "") -> str:
    token = (await a.ok("POST", f"/v1/accounts/{account}/tokens", {"at": at(day)}))["token"]
    reg = await a.ok("POST", prefix + "/v1/product/register", {"token": token, "instance": instance, "at": at(day)})
    return str(reg["identity_certificate"])


async def _report(a: Client, cert: str, day: float, standard: int, premium: int) -> Any:
    peaks = [{"interval_start": at(day), "peak": {"standard": standard, "premium": premium, "ivr_ports": 0}}]
    return await a.ok("POST", "/v1/product/report", {"identity_certificate": cert, "reports": peaks, "at": at(day)})


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_balances_say_purchased_in_use_and_balance_with_the_instances_behind(authorities: Start) -> None:
    c = await _central(authorities)
    cert = await _register(c, "east", "cc-east", 1)
    await _report(c, cert, 2, standard=30, premium=12)  # 12 Premium on 10: a deficit Standard's surplus cannot fill
    b = await c.ok("GET", "/v1/accounts/east/balances")
    premium, standard = b["licenses"]["premium"], b["licenses"]["standard"]
    assert (premium["purchased"], premium["in_use"], premium["balance"], premium["status"]) == (10, 12, -2, "deficit")
    assert premium["instances"] == [{"instance": "cc-east", "in_use": 12, "as": "reported"}]
    assert (standard["balance"], standard["status"]) == (10, "surplus")
    assert b["in_deficit"] is True and b["deficit"] == {"standard": 0, "premium": 2, "ivr_ports": 0}
    # idle Premium covers Standard demand: a Standard balance below 0 that Premium covers is not a deficit
    await c.ok("POST", "/v1/accounts/spare/licenses/move", {"quantities": {"premium": 5}, "to": "east"})
    await _report(c, cert, 3, standard=42, premium=12)
    b = await c.ok("GET", "/v1/accounts/east/balances")
    assert b["licenses"]["standard"]["status"] == "covered" and b["licenses"]["standard"]["balance"] == -2
    assert b["in_deficit"] is False and b["licenses"]["premium"]["balance"] == 3
    [east] = [
        v
        for sa in (await c.ok("GET", "/v1/accounts"))["smart_accounts"]
        for v in sa["virtual_accounts"]
        if v["name"] == "east"
    ]
    assert east["in_deficit"] is False and east["served_by"] is None
    await c.refused("GET", "/v1/accounts/nowhere/balances", None, 404, "no virtual account")


async def test_account_notifications_are_mailed_once_to_the_smart_accounts_addresses(
    authorities: Start, sinks: Sinks
) -> None:
    sinks.start_smtp()
    c = await _central(authorities, smtp_host="127.0.0.1", smtp_port=sinks.smtp_port)
    await c.refused("PUT", "/v1/smart-accounts/acme/notifications", {"emails": ["not-an-address"]}, 400, "not an")
    await c.refused("PUT", "/v1/smart-accounts/nobody/notifications", {"emails": ["a@b.example"]}, 404, "no smart")
    await c.ok("PUT", "/v1/smart-accounts/acme/notifications", {"emails": ["licensing@acme.example"]})
    cert = await _register(c, "east", "cc-east", 1)
    await _report(c, cert, 2, standard=30, premium=12)  # the account goes into deficit; the instance out of compliance
    await _report(c, cert, 2.3, standard=30, premium=13)  # still: nothing new to say
    await c.ok("POST", "/v1/product/authorize", {"identity_certificate": cert, "at": at(60)})
    # time moves with the callers (simulation): another instance's call 151 days on brings the lapsed
    # authorization (authorized until day 150) and the end of the 90-day grace of the account's shortfall
    spare_cert = await _register(c, "spare", "cc-spare", 151)
    assert spare_cert
    kinds = ["AccountDeficit", "InstanceOutOfCompliance", "AuthorizationMissed", "Enforcement"]

    async def mailed() -> bool:
        return len(sinks.mailbox.messages) >= len(kinds)

    await _until(mailed, "the four notices mailed")
    notices = (await c.ok("GET", "/v1/notices?smart_account=acme"))["notices"]
    assert sorted(n["kind"] for n in notices) == sorted(kinds)
    assert all(n["emailed_to"] == ["licensing@acme.example"] for n in notices)
    subjects = sinks.subjects()
    assert len(subjects) == 4 and all("(acme)" in s for s in subjects)
    deficit = next(m for m in sinks.mailbox.messages if "deficit" in str(m["Subject"]))
    assert deficit["To"] == "licensing@acme.example"
    assert "2 Flex Premium short" in deficit.get_content()
    await _register(c, "spare", "cc-spare-2", 152)  # the sweep again: each notice once
    await asyncio.sleep(0.5)
    assert len(sinks.mailbox.messages) == 4
    # a reservation and a migration that complete are said too
    await c.ok("POST", "/v1/classic/paks", {"id": "PAK-1", "quantities": {"standard": 10}})
    await c.ok("POST", "/v1/classic/paks/PAK-1/convert", {"virtual_account": "spare", "at": at(153)})

    async def migrated() -> bool:
        return any("Classic to Smart" in s for s in sinks.subjects())

    await _until(migrated, "the migration notice mailed")


async def test_an_onprem_synchronises_by_signed_files_and_refuses_replays_and_foreign_files(
    authorities: Start, tmp_path: Path
) -> None:
    central = await _central(authorities)
    central_key = tmp_path / "central.pem"
    central_key.write_text((await central.ok("GET", "/v1/keys"))["public_key_pem"])
    onprem = await authorities("onprem", mode="onprem", name="site-a", central_key_file=str(central_key))
    onprem_key = (await onprem.ok("GET", "/v1/keys"))["public_key_pem"]
    await central.ok(
        "POST",
        "/v1/onprems",
        {"onprem": "site-a", "public_key_pem": onprem_key, "virtual_accounts": ["east"], "at": at(0)},
    )
    # an on-prem takes its accounts and licenses from the central only
    await onprem.refused("POST", "/v1/accounts", {"smart_account": "x", "virtual_account": "y"}, 409, "SSM On-Prem")
    await central.refused("POST", "/v1/accounts/east/tokens", {"at": at(0)}, 409, "served by the on-prem 'site-a'")
    await central.refused("POST", "/v1/sync/request", {}, 409, "central one")

    async def sync(day: float) -> tuple[str, str]:
        request = (await onprem.ok("POST", "/v1/sync/request", {"at": at(day)}))["sync_request"]
        answer = (await central.ok("POST", "/v1/onprem-sync", {"sync_request": request, "at": at(day)}))["sync_answer"]
        await onprem.ok("POST", "/v1/sync/answer", {"sync_answer": answer, "at": at(day)})
        return request, answer

    request1, answer1 = await sync(1)  # entitlements down
    [acme] = (await onprem.ok("GET", "/v1/accounts"))["smart_accounts"]
    assert acme["smart_account"] == "acme" and [v["name"] for v in acme["virtual_accounts"]] == ["east"]
    assert acme["virtual_accounts"][0]["licenses"]["premium"] == 10
    cert = await _register(onprem, "east", "cc-east", 1.5, prefix=TRANSPORT_GATEWAY)  # the vendor's URL form
    answer = await _report(onprem, cert, 2, standard=30, premium=12)
    assert answer["verdict"] == "out_of_compliance"  # judged at the on-prem, on the licenses it was given
    before = await central.ok("GET", "/v1/accounts/east/balances")
    assert before["licenses"]["premium"]["in_use"] == 0  # the central knows nothing before the next sync
    request2, answer2 = await sync(3)  # usage up
    b = await central.ok("GET", "/v1/accounts/east/balances")
    assert b["served_by"] == "site-a" and b["in_deficit"] is True
    assert b["licenses"]["premium"]["instances"] == [{"instance": "cc-east@site-a", "in_use": 12, "as": "reported"}]
    [site] = (await central.ok("GET", "/v1/onprems"))["onprems"]
    assert site["last_sync_seq"] == 2 and site["virtual_accounts"] == ["east"]
    # the same again changes nothing: usage is state, not a delta
    await sync(4)
    assert (await central.ok("GET", "/v1/accounts/east/balances"))["licenses"]["premium"]["in_use"] == 12
    # replays: an old request at the central, an old answer at the on-prem
    await central.refused("POST", "/v1/onprem-sync", {"sync_request": request2}, 409, "replayed: sync request 2")
    await onprem.refused("POST", "/v1/sync/answer", {"sync_answer": answer2}, 409, "replayed: sync answer 2")
    # an answer to a request that is not the latest one made
    request4 = (await onprem.ok("POST", "/v1/sync/request", {"at": at(5)}))["sync_request"]
    await onprem.ok("POST", "/v1/sync/request", {"at": at(5)})  # request 5, never carried
    answer4 = (await central.ok("POST", "/v1/onprem-sync", {"sync_request": request4}))["sync_answer"]
    await onprem.refused("POST", "/v1/sync/answer", {"sync_answer": answer4}, 409, "latest request made is 5")
    # foreign files: signed by another key, changed, or for another on-prem
    stranger = codes.load_key(codes.new_key())
    payload = codes.verify(onprem_key, request4, codes.SYNC_REQUEST, "r", codes.MAX_SYNC) | {"seq": 99}
    forged = codes.sign(stranger, codes.SYNC_REQUEST, {k: v for k, v in payload.items() if k != "kind"})
    await central.refused("POST", "/v1/onprem-sync", {"sync_request": forged}, 403, "not signed by the on-prem")
    await central.refused("POST", "/v1/onprem-sync", {"sync_request": "x.y"}, 400, "sync request")
    unknown = codes.sign(
        stranger, codes.SYNC_REQUEST, {**{k: v for k, v in payload.items() if k != "kind"}, "onprem": "site-b"}
    )
    await central.refused("POST", "/v1/onprem-sync", {"sync_request": unknown}, 403, "does not know")
    await onprem.refused(
        "POST",
        "/v1/sync/answer",
        {"sync_answer": codes.sign(stranger, codes.SYNC_ANSWER, {"onprem": "site-a"})},
        403,
        "not from the central authority",
    )
    audit = [e["action"] for e in (await central.ok("GET", "/v1/audit"))["entries"]]
    assert audit.count("onprem.sync") == 4  # requests 1 to 4: each applied sync audited, no refusal
    assert "sync.apply" in [e["action"] for e in (await onprem.ok("GET", "/v1/audit"))["entries"]]
    status = await onprem.ok("GET", "/v1/sync")
    assert status["last_applied_seq"] == 3 and status["last_request_seq"] == 5 and status["central"] == "central"
    assert request1 and answer1


async def test_a_connected_onprem_synchronises_on_a_schedule_over_https(authorities: Start, tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_cert(tmp_path, "localhost")
    central = await _central(authorities, ca=ca, tls_cert_file=str(cert), tls_key_file=str(key))
    central_key = tmp_path / "central.pem"
    central_key.write_text((await central.ok("GET", "/v1/keys"))["public_key_pem"])
    onprem = await authorities(
        "onprem",
        mode="onprem",
        name="site-c",
        central_key_file=str(central_key),
        central_url=f"https://localhost:{central.base.rsplit(':', 1)[1]}",
        central_ca_file=str(ca),
        sync_every="300ms",
    )
    # its syncs are refused until the central knows it: then the next one on the schedule is applied
    onprem_key = (await onprem.ok("GET", "/v1/keys"))["public_key_pem"]
    await central.ok(
        "POST",
        "/v1/onprems",
        {"onprem": "site-c", "public_key_pem": onprem_key, "virtual_accounts": ["east"], "at": at(0)},
    )

    async def synced() -> bool:
        return bool((await onprem.ok("GET", "/v1/accounts"))["smart_accounts"])

    await _until(synced, "the first connected sync")
    cert_a = await _register(onprem, "east", "cc-east", 1)
    await _report(onprem, cert_a, 2, standard=5, premium=3)

    async def usage_up() -> bool:
        b = await central.ok("GET", "/v1/accounts/east/balances")
        return bool(b["licenses"]["premium"]["in_use"] == 3)

    await _until(usage_up, "the usage at the central")
    await central.ok("POST", "/v1/accounts/east/licenses/deposit", {"quantities": {"premium": 4}})

    async def entitlements_down() -> bool:
        [acme] = (await onprem.ok("GET", "/v1/accounts"))["smart_accounts"]
        return bool(acme["virtual_accounts"][0]["licenses"]["premium"] == 14)

    await _until(entitlements_down, "the deposit at the on-prem")
    [site] = (await central.ok("GET", "/v1/onprems"))["onprems"]
    assert site["last_sync_seq"] >= 3


async def test_classic_licenses_convert_by_quantity_and_a_device_fully_converted_leaves(authorities: Start) -> None:
    c = await _central(authorities)
    await c.ok("POST", "/v1/classic/paks", {"id": "PAK-9", "quantities": {"standard": 20, "premium": 4}})
    part = await c.ok(
        "POST", "/v1/classic/paks/PAK-9/convert", {"virtual_account": "east", "quantities": {"standard": 5}}
    )
    assert part["deposited"]["standard"] == 5 and part["still_classic"] == {
        "standard": 15,
        "premium": 4,
        "ivr_ports": 0,
    }
    assert part["new_classic_license_file_needed"] is True and part["fully_converted"] is False
    await c.refused(
        "POST",
        "/v1/classic/paks/PAK-9/convert",
        {"virtual_account": "east", "quantities": {"premium": 5}},
        409,
        "has 4 classic premium",
    )
    rest = await c.ok("POST", "/v1/classic/paks/PAK-9/convert", {"virtual_account": "east"})
    assert rest["deposited"] == {"standard": 15, "premium": 4, "ivr_ports": 0} and rest["fully_converted"] is True
    await c.ok("POST", "/v1/classic/devices", {"id": "dev-1", "quantities": {"premium": 2}})
    done = await c.ok(
        "POST", "/v1/classic/devices/dev-1/convert", {"virtual_account": "east", "quantities": {"premium": 2}}
    )
    assert done["fully_converted"] is True
    await c.refused("GET", "/v1/classic/devices/dev-1", None, 404, "fully converted")
    b = await c.ok("GET", "/v1/accounts/east/balances")
    assert b["licenses"]["standard"]["purchased"] == 60 and b["licenses"]["premium"]["purchased"] == 16
