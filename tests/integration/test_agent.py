"""The Smart Agent on the real broker and PostgreSQL, talking to the real licensing authority over HTTP(S):
registration with a token, schedules on event time, the authority's answers and faults as lifecycle events,
transport settings checked against a locally made CA, and a reservation round trip with real codes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from ccxlic_agent.app import run as run_agent
from ccxlic_agent.settings import AgentSettings
from ccxlic_authority.app import run as run_authority
from ccxlic_authority.settings import AuthoritySettings
from ccxlic_contract import Event
from ccxlic_contract.topics import AGENT_COMMANDS, CONSUMPTION, DEAD_LETTER, ENTITLEMENTS, LIFECYCLE
from ccxlic_runtime.kafka import EventProducer
from ccxlic_testing.build import Build
from ccxlic_testing.plugin import (
    InProcess,
    ReadTopic,
    Stack,
    api_token,
    drop_schema,
    publish_on,
    service_settings,
    wait_for_topic,
)
from ccxlic_testing.tls import make_ca_and_cert

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
D, H = timedelta(days=1), timedelta(hours=1)


class World:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        authority: int,
        agent: int,
        producer: EventProducer,
        read_topic: ReadTopic,
        topics: dict[str, str],
        instance: str,
    ) -> None:
        self.http, self.producer, self.read_topic, self.topics = http, producer, read_topic, topics
        self.authority = f"http://127.0.0.1:{authority}"
        self.agent = f"http://127.0.0.1:{agent}"
        self.b = Build(instance, prefix=f"{instance}-in")
        self.instance = instance
        self.token = ""

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The authority's account side, as its admin."""
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.request(method, self.authority + path, json=body, headers=headers) as r:
            answer = await r.json()
            assert r.status in (200, 201), answer
            return answer

    async def command(self, t: datetime, operation: str, **fields: Any) -> dict[str, Any]:
        """Publish a command and wait for the agent's result of it."""
        event = self.b.command(t, operation, **fields)
        await publish_on(self.producer, self.topics[AGENT_COMMANDS.name], [event])
        return await self.until(lambda v: v["last"] is not None and v["last"]["command_id"] == event.id)

    async def feed(self, *events: Event) -> None:
        """What the consumption computer forwards: the instance's ticks and closed interval reports."""
        await publish_on(self.producer, self.topics[CONSUMPTION.name], list(events))

    async def until(self, check: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        last: Any = None
        while asyncio.get_running_loop().time() < deadline:
            async with self.http.get(f"{self.agent}/v1/instances/{self.instance}/agent") as r:
                if r.status == 200:
                    last = await r.json()
                    if check(last):
                        return last  # type: ignore[no-any-return]
            await asyncio.sleep(0.1)
        raise AssertionError(f"the agent's view never satisfied the check; last: {last}")

    async def lifecycle(self, until: Any) -> list[Event]:
        got = await wait_for_topic(
            self.read_topic, self.topics[LIFECYCLE.name], lambda o: until([e for e in o if e.subject == self.instance])
        )
        return [e for e in got if e.subject == self.instance]


@pytest_asyncio.fixture
async def world(
    stack: Stack,
    topic_prefix: str,
    pg_schema: str,
    producer: EventProducer,
    read_topic: ReadTopic,
    contract_topics: dict[str, str],
    instance_id: str,
    tmp_path: Path,
) -> AsyncIterator[World]:
    ca, cert, key = make_ca_and_cert(tmp_path, "localhost")
    auth_settings = service_settings(AuthoritySettings, stack, topic_prefix, f"{pg_schema}_auth", caller_clock=True)
    tls_settings = service_settings(
        AuthoritySettings,
        stack,
        topic_prefix,
        f"{pg_schema}_auth",
        tls_cert_file=str(cert),
        tls_key_file=str(key),
        caller_clock=True,
    )
    authority = InProcess(run_authority, auth_settings)
    onprem = InProcess(run_authority, tls_settings)  # the same authority (one schema), served over HTTPS
    auth_port, onprem_port = await authority.started(), await onprem.started()
    agent_settings = service_settings(
        AgentSettings,
        stack,
        topic_prefix,
        f"{pg_schema}_agent",
        authority_url=f"http://127.0.0.1:{auth_port}",
        authority_timeout=timedelta(seconds=1),
        ca_file=str(ca),
    )
    agent = InProcess(run_agent, agent_settings)
    agent_port = await agent.started()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        w = World(http, auth_port, agent_port, producer, read_topic, contract_topics, instance_id)
        w.onprem_port = onprem_port  # type: ignore[attr-defined]
        w.token = await api_token(stack.database_url, auth_settings.auth_schema, "ops")
        yield w
    await agent.stopped()
    await authority.stopped()
    await onprem.stopped()
    for schema in (f"{pg_schema}_auth", f"{pg_schema}_agent"):
        await drop_schema(stack.database_url, schema)


async def _account(w: World) -> str:
    await w.admin("POST", "/v1/accounts", {"smart_account": "acme", "virtual_account": "east"})
    await w.admin(
        "POST", "/v1/accounts/east/licenses/deposit", {"quantities": {"standard": 40, "premium": 10, "ivr_ports": 20}}
    )
    token = await w.admin("POST", "/v1/accounts/east/tokens", {"at": T0.isoformat()})
    return str(token["token"])


async def test_register_renew_report_and_fail_with_the_authoritys_reasons(world: World, read_topic: ReadTopic) -> None:
    w = world
    token = await _account(w)
    bad = await w.command(T0, "register", token="not-a-token")
    assert bad["last"]["ok"] is False and "unknown registration token" in bad["last"]["message"]
    ok = await w.command(T0 + H, "register", token=token)
    assert ok["status"] == "registered" and ok["virtual_account"] == "east"
    ents = await wait_for_topic(
        read_topic, w.topics[ENTITLEMENTS.name], lambda o: any(e.subject == w.instance for e in o)
    )
    assert [e.data.premium_seats for e in ents if e.subject == w.instance] == [10]
    # a closed interval over the pool, and the 8-hourly report an hour after its end: the authority answers OOC
    start = datetime(2026, 3, 2, 8, tzinfo=UTC)
    await w.feed(w.b.tick(T0 + 2 * H), w.b.closed(start + 8 * H, start, start + 8 * H, 40, 12), w.b.tick(start + 9 * H))
    out = await w.lifecycle(lambda o: sum(e.type == "licensing.reporting.succeeded" for e in o) >= 2)
    last = [e for e in out if e.type == "licensing.reporting.succeeded"][-1]
    assert last.data.verdict == "out_of_compliance" and last.data.shortfall.premium == 2
    [listed] = (await w.admin("GET", "/v1/accounts/east/instances"))["instances"]
    assert listed["instance"] == w.instance and listed["in_compliance"] is False
    # the authority is slow: the renewal 30 days on times out, and says so
    await w.admin("PUT", "/v1/faults", {"mode": "slow", "delay_seconds": 3})
    await w.feed(w.b.tick(T0 + 31 * D))
    out = await w.lifecycle(lambda o: any(e.type == "licensing.authorization.renewal_failed" for e in o))
    failed = next(e for e in out if e.type == "licensing.authorization.renewal_failed")
    assert "timeout" in failed.data.reason and failed.time == T0 + 31 * D
    await w.admin("PUT", "/v1/faults", {"mode": "refuse", "reason": "maintenance"})
    await w.feed(w.b.tick(T0 + 31 * D + 2 * H))
    out = await w.lifecycle(lambda o: sum(e.type == "licensing.authorization.renewal_failed" for e in o) >= 2)
    assert "maintenance" in [e for e in out if e.type == "licensing.authorization.renewal_failed"][-1].data.reason
    await w.admin("PUT", "/v1/faults", {"mode": "none"})
    await w.feed(w.b.tick(T0 + 32 * D))
    await w.lifecycle(lambda o: any(e.type == "licensing.authorization.renewed" for e in o))
    view = await w.until(lambda v: v["failures"]["authorization"] == 0)
    assert view["next"]["authorization"] == (T0 + 62 * D).isoformat().replace("+00:00", "Z")


async def test_onprem_transport_needs_a_certificate_that_names_the_host(world: World) -> None:
    w = world
    port = w.onprem_port  # type: ignore[attr-defined]
    wrong = await w.command(T0, "set_transport", transport="onprem", url=f"https://127.0.0.1:{port}")
    assert wrong["last"]["ok"] is False and "certificate" in wrong["last"]["message"]
    plain = await w.command(T0 + H, "set_transport", transport="onprem", url=f"http://localhost:{port}")
    assert plain["last"]["ok"] is False and "https" in plain["last"]["message"]
    # the vendor's form: https://<OnpremCSSM>/Transportgateway/services/DeviceRequestHandler
    url = f"https://localhost:{port}/Transportgateway/services/DeviceRequestHandler"
    right = await w.command(T0 + 2 * H, "set_transport", transport="onprem", url=url)
    assert right["last"]["ok"] is True and right["transport"]["mode"] == "onprem"
    out = await w.lifecycle(lambda o: any(e.type == "licensing.agent.initialized" for e in o))
    kinds = [e.type for e in out]
    assert kinds == ["licensing.agent.init_failed", "licensing.agent.init_failed", "licensing.agent.initialized"]
    token = await _account(w)
    registered = await w.command(T0 + 3 * H, "register", token=token)  # through SSM On-Prem, over TLS
    assert registered["status"] == "registered"


async def test_a_bad_command_is_dead_lettered_with_its_reason_and_the_agent_goes_on(
    world: World, read_topic: ReadTopic
) -> None:
    w = world
    bad = w.b.command(T0, "register", token="x").model_dump(mode="json")
    bad["data"] = {"operation": "register"}  # no token
    raw = json.dumps(bad).encode()
    await w.producer.send_records([(w.topics[AGENT_COMMANDS.name], w.instance.encode(), raw)])
    dead = await wait_for_topic(
        read_topic, w.topics[DEAD_LETTER.name], lambda o: any(d.subject == w.instance for d in o)
    )
    [letter] = [d for d in dead if d.subject == w.instance]
    assert "register needs token" in letter.data.error and letter.data.topic == w.topics[AGENT_COMMANDS.name]
    done = await w.command(T0 + H, "reservation_enable")  # the next command is handled
    assert done["last"]["ok"] is True and done["status"] == "reservation_enabled"


async def test_the_proxy_transport_goes_through_the_proxy(world: World) -> None:
    """A small forward proxy (absolute-form requests, as an HTTP proxy gets them): the agent's calls pass it."""
    seen: list[str] = []

    async def forward(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.url}")
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                request.method,
                str(request.url),
                data=await request.read(),
                headers={"Content-Type": "application/json"},
            ) as r,
        ):
            return web.Response(status=r.status, body=await r.read(), content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        w = world
        token = await _account(w)
        done = await w.command(T0, "register", token=token, transport="proxy", proxy=f"http://127.0.0.1:{port}")
        assert done["last"]["ok"] is True and done["transport"]["mode"] == "proxy"
        assert [x.split()[0] for x in seen] == ["POST"] and seen[0].endswith("/v1/product/register")
    finally:
        await runner.cleanup()


async def test_a_reservation_round_trip_with_the_authoritys_codes(world: World) -> None:
    w = world
    await _account(w)
    await w.command(T0, "reservation_enable")
    request = (await w.command(T0 + H, "reservation_request"))["last"]["code"]
    q = {"standard": 10, "premium": 2, "ivr_ports": 4}
    granted = await w.admin("POST", "/v1/accounts/east/reservations", {"request_code": request, "quantities": q})
    tampered = granted["authorization_code"][:-4] + "AAAA"
    refused = await w.command(T0 + 2 * H, "reservation_install", code=tampered)
    assert refused["last"]["ok"] is False and "refused" in refused["last"]["message"]
    installed = await w.command(T0 + 3 * H, "reservation_install", code=granted["authorization_code"])
    assert installed["status"] == "reserved" and installed["reservation"] == q
    confirmation = installed["last"]["code"]
    assert (await w.admin("POST", "/v1/reservations/confirm", {"confirmation_code": confirmation}))[
        "status"
    ] == "installed"
    returned = await w.command(T0 + 4 * H, "reservation_return")
    freed = await w.admin("POST", "/v1/reservations/return", {"return_code": returned["last"]["code"]})
    assert freed["freed"] == q
    out = await w.lifecycle(lambda o: any(e.type == "licensing.reservation.returned" for e in o))
    assert [e.type for e in out] == ["licensing.reservation.installed", "licensing.reservation.returned"]
