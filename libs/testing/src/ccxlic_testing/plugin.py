"""pytest plugin: the real Kafka broker and PostgreSQL for tests, and fresh names for every test.

Where the stack comes from, in order:
1. `KAFKA_BOOTSTRAP_SERVERS` and `DATABASE_URL`, when both are set;
2. the local stack (`deploy/stack.sh up` of the checkout being tested), when that script is found;
3. testcontainers (apache/kafka and postgres images), when a Docker engine answers.
When none serves, tests that need the stack are skipped, except under `CI=true`, where they fail: a run that skips
every integration test has tested nothing.

Fixtures: `stack`, `topic_prefix` (+ `contract_topics`, created), `group_id`, `instance_id`, `pg_schema`, `db`,
`producer`, and `read_topic` to read back what landed on a topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from ccxlic_contract import TOPICS, Event, decode_message, encode, key_for
from ccxlic_runtime.auth import Role, open_auth
from ccxlic_runtime.db import Database, create_pool, migrate
from ccxlic_runtime.kafka import Broker, EventProducer, delete_topics, ensure_topics, topic_name, wait_for_kafka
from ccxlic_runtime.settings import RuntimeSettings, load_settings
from pydantic import SecretStr


@dataclass(frozen=True)
class Stack:
    broker: Broker
    database_url: str  # the superuser: tests make and drop a schema each
    origin: str
    roles: dict[str, str] = field(default_factory=dict)
    """Each program's own login role (`consumption` -> its URL), from the local stack's pg.env; empty elsewhere."""

    def kafka_env(self) -> dict[str, str]:
        """The environment variables that make a service, the CLI or the simulator reach this broker."""
        return self.broker.env()

    def kafka_settings(self) -> dict[str, str]:
        """The same, as keyword arguments of `load_settings`."""
        return {name.lower(): value for name, value in self.kafka_env().items()}


def read_env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines (what deploy/stack.sh writes to client.env and pg.env); `#` starts a comment line."""
    lines = [line for line in path.read_text().splitlines() if "=" in line and not line.startswith("#")]
    pairs = (line.split("=", 1) for line in lines)
    return {k.strip(): v.strip() for k, v in pairs}


def broker_from_env(env: dict[str, str]) -> Broker:
    """A broker from those variables, checked as a service checks them."""
    keys = ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD")
    given = {k.lower(): env[k] for k in ("KAFKA_BOOTSTRAP_SERVERS", *keys, "KAFKA_SSL_CAFILE") if env.get(k)}
    return Broker.of(load_settings(RuntimeSettings, **given))


class StackUnavailable(RuntimeError):
    pass


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _find_stack_script(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / "deploy" / "stack.sh"
        if candidate.is_file():
            return candidate
    return None


def docker_answers() -> bool:
    """Whether a Docker engine answers here."""
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_stack(rootdir: Path) -> tuple[Stack, Callable[[], None]]:
    """The broker and database to use, and how to stop them: the environment's (KAFKA_BOOTSTRAP_SERVERS and
    DATABASE_URL), else the local stack of the checkout above `rootdir` (started if needed), else Kafka and
    PostgreSQL in containers when a Docker engine answers; StackUnavailable says why none."""
    env_kafka, env_db = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("DATABASE_URL")
    if env_kafka and env_db:
        return Stack(broker_from_env(dict(os.environ)), env_db, "environment"), lambda: None
    script = _find_stack_script(rootdir)
    if script is not None:
        proc = subprocess.run(["bash", str(script), "up"], capture_output=True, text=True, timeout=600)
        if proc.returncode == 0:
            stack_dir = Path(os.environ.get("CCXLIC_STACK_DIR") or script.parent.parent / ".stack")
            mode = os.environ.get("KAFKA_SECURITY") or "plaintext"
            # the tests make topics of their own: under ACLs (scram-tls), as the broker's admin
            kafka_dir = stack_dir / ("kafka" if mode == "plaintext" else f"kafka-{mode}")
            client = read_env_file(kafka_dir / ("client.env" if mode == "plaintext" else "admin.env"))
            pg_env = read_env_file(stack_dir / "pg.env")
            roles = {
                name.removeprefix("CCXLIC_").removesuffix("_DATABASE_URL").lower(): url
                for name, url in pg_env.items()
                if name.endswith("_DATABASE_URL")
            }
            found = Stack(broker_from_env(client), pg_env["CCXLIC_PG_SUPERUSER_URL"], f"local stack, {mode}", roles)
            return found, lambda: None
        local_error = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]
    else:
        local_error = ["deploy/stack.sh not found"]
    if docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        kafka = KafkaContainer("apache/kafka:4.1.1").with_kraft()
        kafka.start()
        pg = PostgresContainer("postgres:15", username="postgres", password="postgres", dbname="ccxlic")
        pg.start()
        url = pg.get_connection_url().replace("postgresql+psycopg2://", "postgresql://")

        def stop() -> None:
            kafka.stop()
            pg.stop()

        return Stack(Broker(kafka.get_bootstrap_server()), url, "testcontainers"), stop
    raise StackUnavailable(f"no Kafka/PostgreSQL: local stack: {local_error[0]}; no Docker engine answers")


async def _check(stack: Stack) -> None:
    await wait_for_kafka(stack.broker, timeout=60)
    conn = await asyncpg.connect(stack.database_url, timeout=10)
    await conn.close()


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The real broker and database, or a skip (a failure under CI=true)."""
    try:
        found, stop = start_stack(Path(str(request.config.rootpath)))
        asyncio.run(_check(found))
    except Exception as exc:
        message = f"the real Kafka/PostgreSQL stack is not available: {exc}"
        if _in_ci():
            pytest.fail(message + " (CI=true: failing, not skipping)", pytrace=False)
        pytest.skip(message)
    for name, value in found.kafka_env().items():
        os.environ.setdefault(name, value)
    for name in [n for n in os.environ if n.startswith("CCXLIC_") and n.endswith("_DATABASE_URL")]:
        del os.environ[name]  # a program's own URL would win over the test's DATABASE_URL (its schema, its stack)
    os.environ.setdefault("DATABASE_URL", found.database_url)
    yield found
    asyncio.run(delete_topics(found.broker, _PREFIXES))
    stop()


_PREFIXES: set[str] = set()
"""The topic prefixes this session handed out: their topics are deleted at its end (the local broker would otherwise
keep every test's topics, and take minutes to load them at its next start)."""


def _unique(kind: str) -> str:
    return f"{kind}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def topic_prefix() -> str:
    """A fresh prefix: every contract topic of this test is `<prefix><name>` (deleted when the session ends)."""
    prefix = _unique("t") + "."
    _PREFIXES.add(prefix)
    return prefix


@pytest.fixture
def group_id() -> str:
    return _unique("g-")


@pytest.fixture
def instance_id() -> str:
    return _unique("inst-")


@pytest.fixture
def pg_schema() -> str:
    return _unique("s_")


@pytest_asyncio.fixture
async def contract_topics(stack: Stack, topic_prefix: str) -> dict[str, str]:
    """Creates every contract topic under the test's prefix; maps contract name -> real name."""
    await ensure_topics(stack.broker, topic_prefix, TOPICS)
    return {t.name: topic_name(t, topic_prefix) for t in TOPICS}


@pytest_asyncio.fixture
async def db(stack: Stack, pg_schema: str, topic_prefix: str) -> AsyncIterator[Database]:
    """A fresh, migrated schema (runtime tables only); dropped afterwards."""
    pool = await create_pool(stack.database_url, pg_schema)
    await migrate(pool, pg_schema)
    try:
        yield Database(pool, pg_schema, topic_prefix)
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f'drop schema if exists "{pg_schema}" cascade')
        await pool.close()


@pytest_asyncio.fixture
async def producer(stack: Stack, topic_prefix: str, contract_topics: dict[str, str]) -> AsyncIterator[EventProducer]:
    async with EventProducer(stack.broker, topic_prefix) as p:
        yield p


ReadTopic = Callable[..., Awaitable[list[Any]]]


@pytest.fixture
def read_topic(stack: Stack) -> ReadTopic:
    """`await read_topic(name, count, timeout=20, raw=False)`: the first `count` records of a topic, decoded."""

    async def read(name: str, count: int, *, timeout: float = 20.0, raw: bool = False) -> list[Any]:
        consumer = AIOKafkaConsumer(
            name, **stack.broker.options(), auto_offset_reset="earliest", enable_auto_commit=False
        )
        await consumer.start()
        out: list[Any] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while len(out) < count and loop.time() < deadline:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for rec in records:
                        out.append(rec if raw else decode_message(rec.value, tuple(rec.headers or ())))
        finally:
            await consumer.stop()
        return out

    return read


async def wait_for_topic(
    read_topic: ReadTopic, name: str, until: Callable[[list[Any]], bool], timeout: float = 30
) -> list[Any]:
    """Read a topic again and again until `until(records)` holds; return the last read (the caller asserts)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    got: list[Any] = []
    while loop.time() < deadline:
        got = await read_topic(name, 10**6, timeout=1.0)
        if until(got):
            return got
    return got


S = TypeVar("S", bound=RuntimeSettings)


def service_settings(cls: type[S], stack: Stack, topic_prefix: str, pg_schema: str, **overrides: Any) -> S:
    """A service's settings for a test: the test's stack, topic prefix and schema (its users in `<schema>_auth`),
    HTTP on a free port."""
    return load_settings(
        cls,
        **{
            **stack.kafka_settings(),
            "database_url": stack.database_url,
            "topic_prefix": topic_prefix,
            "schema_name": pg_schema,
            "auth_schema": f"{pg_schema}_auth",
            "http_port": 0,
            **overrides,
        },
    )


async def api_token(database_url: str | SecretStr, auth_schema: str, user: str = "admin", role: str = "admin") -> str:
    """A user with `role` (created if missing) and a new API token of theirs, in `auth_schema`."""
    async with open_auth(database_url, auth_schema) as auth:
        await auth.create_user(user, Role(role), f"{user}-password-for-tests")
        _, token = await auth.create_token(user, "tests")
    return token


class InProcess:
    """A service's `run(settings, stop, ready=...)` running as a task of the test's event loop."""

    def __init__(self, run: Callable[..., Awaitable[None]], settings: Any) -> None:
        self.stop = asyncio.Event()
        self.serving = asyncio.Event()
        self.port = 0

        def ready(port: int) -> None:
            self.port = port
            self.serving.set()

        self.task: asyncio.Future[None] = asyncio.ensure_future(run(settings, self.stop, ready=ready))

    async def started(self, timeout: float = 30) -> int:
        """Its HTTP port, once it serves (a service that fails to start raises its error here)."""
        serving: asyncio.Future[Any] = asyncio.ensure_future(self.serving.wait())
        waiting: set[asyncio.Future[Any]] = {self.task, serving}
        await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        serving.cancel()
        if self.task.done():
            self.task.result()
        if not self.serving.is_set():
            raise AssertionError(f"the service did not start within {timeout} s")
        return self.port

    async def stopped(self, timeout: float = 60) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, timeout)


async def until_ready(base_url: str, timeout: float = 60, alive: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Poll `{base_url}/readyz` until it answers 200; return its body (raise with the last answer if it never does,
    or at once when `alive` says the process behind it has exited)."""
    import aiohttp

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        if alive is not None and not alive():
            raise AssertionError(f"{base_url}: the service exited while starting; last: {last}")
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{base_url}/readyz") as r:
                last = await r.json()
                if r.status == 200:
                    return dict(last)
        except aiohttp.ClientError as exc:
            last = repr(exc)
        await asyncio.sleep(0.2)
    raise AssertionError(f"{base_url}/readyz never answered 200; last: {last}")


def tool_cache() -> Path:
    """Where `make` keeps what it downloads and builds once (the Kafka jars, promtool, kustomize, the AsyncAPI
    schema): CCXLIC_CACHE_DIR, else ~/.cache/ccxlic (under XDG_CACHE_HOME when set), as deploy/stack.sh and
    deploy/install-deps.sh put it."""
    given = os.environ.get("CCXLIC_CACHE_DIR")
    return Path(given) if given else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ccxlic"


_GIVEN: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a process that must be told its port before it starts (prefer port 0
    and asking the process, as `InProcess` and `spawn` do). It is picked below the kernel's ephemeral range, so no
    outgoing connection (a Kafka client's included) can take it before the process binds it, and never one given
    before in this process (two picks in a row once drew the same port: Kafka refused two listeners on it)."""
    import random
    import socket

    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(max(1024, low // 2), low)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _GIVEN.add(port)
            return port
    raise RuntimeError("no free port below the ephemeral range")


class Spawned:
    """A service as its own process (`python -m ccxlic_<service>`), on HTTP port 0: it logs the port it got."""

    def __init__(self, service: str, env: dict[str, str], log: Path) -> None:
        self.service = service
        self.env = {**env, f"CCXLIC_{service.upper()}_HTTP_PORT": "0"}
        self.log = log
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", f"ccxlic_{self.service}"], env=self.env, stderr=out)
        self._seen = self.log.stat().st_size if self.log.exists() else 0

    async def started(self, timeout: float = 90) -> int:
        """The HTTP port the process bound, read from its log (raise if it exits first)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            assert self.proc is not None
            with self.log.open("rb") as f:
                f.seek(self._seen)
                for line in f.read().splitlines():
                    with contextlib.suppress(ValueError):
                        entry = json.loads(line)
                        if entry.get("msg") == "http listening":
                            self.port = int(entry["port"])
                            return self.port
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.service} exited with {self.proc.returncode}; log: {self.log}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.service} did not serve HTTP within {timeout} s; log: {self.log}")


async def publish_on(producer: EventProducer, topic: str, events: Sequence[Event]) -> None:
    """Publish events on a given topic, in order (as the service upstream forwards them onto its stream)."""
    await producer.send_records([(topic, key_for(e), encode(e)) for e in events])


async def drop_schema(database_url: str | SecretStr, schema: str) -> None:
    url = database_url.get_secret_value() if isinstance(database_url, SecretStr) else database_url
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'drop schema if exists "{schema}" cascade')
        await conn.execute(f'drop schema if exists "{schema}_auth" cascade')
    finally:
        await conn.close()


__all__ = [
    "InProcess",
    "ReadTopic",
    "Spawned",
    "Stack",
    "StackUnavailable",
    "api_token",
    "docker_answers",
    "drop_schema",
    "free_port",
    "publish_on",
    "start_stack",
    "tool_cache",
    "until_ready",
    "wait_for_topic",
]
