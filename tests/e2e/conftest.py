"""The e2e tier: the three services as separate processes (`python -m ccxlic_<service>`) on the real stack, with
real notification sinks (SMTP, UDP syslog, webhook) behind alerting."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from ccxlic_contract import Event
from ccxlic_contract.topics import COMPLIANCE, LIFECYCLE
from ccxlic_runtime.kafka import EventProducer
from ccxlic_testing.build import Build
from ccxlic_testing.plugin import ReadTopic, Spawned, Stack, api_token, drop_schema, wait_for_topic
from ccxlic_testing.sinks import Sinks

SERVICES = ("consumption", "compliance", "alerting")


class Pipeline:
    def __init__(self, env: dict[str, str], logs: Path, sinks: Sinks) -> None:
        self.env = env
        self.logs = logs
        self.sinks = sinks
        self.ports: dict[str, int] = {}
        self.spawned: dict[str, Spawned] = {}

    @property
    def procs(self) -> dict[str, subprocess.Popen[bytes]]:
        return {s: p.proc for s, p in self.spawned.items() if p.proc is not None}

    async def start(self, service: str) -> None:
        """Start a service as its own process on HTTP port 0; learn the port it got."""
        spawned = Spawned(service, self.env, self.logs / f"{service}.log")
        spawned.start()
        self.spawned[service] = spawned
        self.ports[service] = await spawned.started()

    async def restart(self, service: str, *, kill: bool) -> None:
        """Stop a service (SIGKILL, or SIGTERM and a clean exit) and start it again, ready."""
        proc = self.procs[service]
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        assert kill or code == 0, f"{service} exited {code} on SIGTERM"
        await self.start(service)
        await self.until(service, "/readyz", lambda b: b["ready"], 90)

    async def get(self, service: str, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.ports[service]}{path}") as r:
            return r.status, await r.json()

    async def until(self, service: str, path: str, ok: Callable[[Any], bool], timeout: float = 60) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        body: Any = None
        while loop.time() < deadline:
            try:
                status, body = await self.get(service, path)
            except aiohttp.ClientError:
                status = 0
            if status == 200 and ok(body):
                return body
            await asyncio.sleep(0.3)
        raise AssertionError(f"{service} {path} never matched; last answer: {body}")

    async def close(self, database_url: str, pg_schema: str, services: Sequence[str]) -> None:
        """SIGTERM every service, drop their schemas, and check that each stopped cleanly (exit 0)."""
        for proc in self.procs.values():
            proc.terminate()
        codes = {s: await asyncio.to_thread(proc.wait, 30) for s, proc in self.procs.items()}
        for s in services:
            await drop_schema(database_url, f"{pg_schema}_{s}")
        await drop_schema(database_url, pg_schema)  # and its users (`<schema>_auth`)
        assert codes == dict.fromkeys(services, 0), f"services did not stop cleanly on SIGTERM: {codes}"

    async def mails(self, at_least: int, timeout: float = 60) -> list[str]:
        """Subjects of the emails received, once there are at least `at_least` (then a moment for stragglers)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.sinks.mailbox.messages) < at_least and loop.time() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        return self.sinks.subjects()


@pytest_asyncio.fixture
async def pipeline(
    stack: Stack, topic_prefix: str, pg_schema: str, contract_topics: dict[str, str], sinks: Sinks, tmp_path: Path
) -> AsyncIterator[Pipeline]:
    sinks.start_smtp()
    env = {
        **os.environ,
        **stack.kafka_env(),
        "DATABASE_URL": stack.database_url,
        "CCXLIC_TOPIC_PREFIX": topic_prefix,
        "CCXLIC_WEBHOOK_URLS": sinks.webhook_url,
        "CCXLIC_SYSLOG_URL": f"udp://127.0.0.1:{sinks.udp_port}",
        "CCXLIC_SMTP_HOST": "127.0.0.1",
        "CCXLIC_SMTP_PORT": str(sinks.smtp_port),
        "CCXLIC_ALERT_EMAILS": "noc@example.com",
        "CCXLIC_DELIVERY_BACKOFF_SECONDS": "0.2",
        # the walks keep agents signed in for simulated months with no event of theirs (a live platform would
        # send rosters); without this, their sessions would expire after 24 h of silence
        "CCXLIC_MAX_SESSION_SECONDS": str(365 * 86400),
        "CCXLIC_AUTH_SCHEMA": f"{pg_schema}_auth",
    }
    for s in SERVICES:
        env[f"CCXLIC_{s.upper()}_SCHEMA"] = f"{pg_schema}_{s}"
    p = Pipeline(env, tmp_path, sinks)
    try:
        for s in SERVICES:
            await p.start(s)
        for s in SERVICES:
            env[f"CCXLIC_{s.upper()}_URL"] = f"http://127.0.0.1:{p.ports[s]}"  # for ccxlic run by a test
        for s in SERVICES:
            await p.until(s, "/readyz", lambda b: b["ready"], 90)
        yield p
    finally:
        await p.close(stack.database_url, pg_schema, SERVICES)


LICENSING = ("authority", *SERVICES, "agent", "console")


@pytest_asyncio.fixture
async def licensing(
    stack: Stack, topic_prefix: str, pg_schema: str, contract_topics: dict[str, str], sinks: Sinks, tmp_path: Path
) -> AsyncIterator[Pipeline]:
    """Every service as a process: the licensing authority, the three of the chain, the Smart Agent and the
    console; `env` has each one's URL and CCXLIC_TOKEN, an admin's API token."""
    env = {
        **os.environ,
        **stack.kafka_env(),
        "DATABASE_URL": stack.database_url,
        "CCXLIC_TOPIC_PREFIX": topic_prefix,
        "CCXLIC_MAX_SESSION_SECONDS": str(365 * 86400),  # agents stay signed in for the months of a walk
        "CCXLIC_MAX_EVENT_SKEW": "off",
        "CCXLIC_AUTHORITY_TIMEOUT": "2s",
        "CCXLIC_AUTHORITY_CALLER_CLOCK": "true",  # the walks are simulations: months in minutes
        "CCXLIC_AUTH_SCHEMA": f"{pg_schema}_auth",
    }
    for s in LICENSING:
        env[f"CCXLIC_{s.upper()}_SCHEMA"] = f"{pg_schema}_{s}"
    env["CCXLIC_TOKEN"] = await api_token(stack.database_url, env["CCXLIC_AUTH_SCHEMA"], "ops")
    p = Pipeline(env, tmp_path, sinks)
    try:
        await p.start("authority")
        env["CCXLIC_AUTHORITY_URL"] = f"http://127.0.0.1:{p.ports['authority']}"
        for s in LICENSING[1:]:
            await p.start(s)
            env[f"CCXLIC_{s.upper()}_URL"] = f"http://127.0.0.1:{p.ports[s]}"
        for s in LICENSING:
            await p.until(s, "/readyz", lambda b: b["ready"], 90)
        yield p
    finally:
        await p.close(stack.database_url, pg_schema, LICENSING)


# ---------------------------------------------------------------- walks of simulated months, with `ccxlic`

T0 = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
H = timedelta(hours=1)


def ccxlic(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`ccxlic ARGS` as a process with `env`."""
    r = subprocess.run(
        [sys.executable, "-m", "ccxlic_cli", *args],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return r


def ok(env: dict[str, str], *args: str) -> str:
    """`ccxlic` run as a user would; its output, once it succeeded."""
    r = ccxlic(env, *args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


class Walk:
    """Simulated months for one instance: ticks every instance forward and reads what the chain made of it."""

    def __init__(
        self, p: Pipeline, producer: EventProducer, read_topic: ReadTopic, topics: dict[str, str], instance: str
    ) -> None:
        self.p, self.producer, self.read_topic, self.topics, self.instance = p, producer, read_topic, topics, instance
        self.b = Build(instance)
        self.now = T0

    async def to(self, until: datetime, every: timedelta = 4 * H) -> None:
        """Tick every instance up to `until` and wait until the chain and the agent are there."""
        ticks = []
        while self.now + every <= until:
            self.now += every
            ticks.append(self.b.tick(self.now, every_instance=True))
        await self.producer.publish_many(ticks)
        stamp = self.now.isoformat().replace("+00:00", "Z")
        await self.p.until(
            "compliance", f"/v1/instances/{self.instance}/compliance", lambda c: c["as_of"] >= stamp, 180
        )
        await self.p.until("agent", f"/v1/instances/{self.instance}/agent", lambda a: a["as_of"] >= stamp, 180)

    async def lifecycle(self, check: Any, timeout: float = 60) -> list[Event]:
        got = await wait_for_topic(
            self.read_topic,
            self.topics[LIFECYCLE.name],
            lambda o: check([e for e in o if e.subject == self.instance]),
            timeout,
        )
        return [e for e in got if e.subject == self.instance]

    async def compliance(self) -> list[Event]:
        got = await self.read_topic(self.topics[COMPLIANCE.name], 10**6, timeout=2)
        return [e for e in got if e.subject == self.instance and e.type == "licensing.compliance.changed"]
