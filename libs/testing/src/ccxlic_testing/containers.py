"""ccx-licensing for a publisher's own integration tests: Kafka, PostgreSQL and the services, started and stopped
around a test, with the bootstrap servers and each service's URL to point the test at.

    from ccxlic_testing.containers import CcxLicensing

    with CcxLicensing() as ccx:                       # consumption, compliance and alerting by default
        producer = AIOKafkaProducer(**ccx.kafka_options())
        await producer.send_and_wait(ccx.topic("ccx.agent-activity"), event_json, key=b"cc-1",
                                     headers=[("content-type", ccx.CONTENT_TYPE.encode())])
        ...  GET f"{ccx.url('consumption')}/v1/instances/cc-1/usage"

Where a Docker engine answers, everything runs in containers (testcontainers): Kafka and PostgreSQL from their pinned
images, and each service from the ccx-licensing image (`image`, built from this repository's Dockerfile when the
engine does not have it). Where none does (the development machines, CI), it falls back to the local stack
(`deploy/stack.sh up`: the same Kafka and PostgreSQL as `make up`) and runs the services as processes. Either way
each CcxLicensing gets topics of its own (`topic()` names them: a fresh prefix) and fresh database schemas, and
`stop()` removes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Coroutine, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from ccxlic_contract.codec import STRUCTURED_CONTENT_TYPE
from ccxlic_contract.topics import TOPICS
from ccxlic_runtime.client import DEFAULT_PORTS
from ccxlic_runtime.kafka import Broker, delete_topics, wait_for_kafka

from ccxlic_testing.plugin import (
    Spawned,
    Stack,
    StackUnavailable,
    docker_answers,
    drop_schema,
    free_port,
    start_stack,
    until_ready,
)

ROOT = Path(__file__).resolve().parents[4]
KAFKA_IMAGE = "apache/kafka:4.1.1@sha256:0bc1bb2478f45b6cea78864df86acdc11e8df2c5172477819a4d12942cbe5d40"
POSTGRES_IMAGE = "postgres:15.14-bookworm@sha256:496f07cd16dff6406cee521a66b37080be917ea063f017336affdfcb1c61f90e"
SERVICES = ("authority", "consumption", "compliance", "alerting", "agent", "console")
T = TypeVar("T")


def _blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end from sync code, also when the caller's thread already runs an event loop (an async
    test): then in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


class CcxLicensing:
    """Kafka, PostgreSQL and the ccx-licensing services for one test (or one test session)."""

    CONTENT_TYPE = STRUCTURED_CONTENT_TYPE
    """The Kafka header `content-type` of a CloudEvent in structured mode, as the contract publishes it."""

    def __init__(
        self,
        services: Sequence[str] = ("consumption", "compliance", "alerting"),
        *,
        image: str = "ccx-licensing:local",
        env: dict[str, str] | None = None,
        mode: Literal["auto", "containers", "local"] = "auto",
        timeout: float = 120.0,
    ) -> None:
        unknown = sorted(set(services) - set(SERVICES))
        if unknown:
            raise ValueError(f"unknown services {unknown}; choose from {', '.join(SERVICES)}")
        if not services:
            raise ValueError("name at least one service")
        self.services = tuple(s for s in SERVICES if s in services)  # the authority before the agent
        self.image = image
        self.extra_env = dict(env or {})
        self.requested = mode
        self.timeout = timeout
        self.mode: Literal["containers", "local"] | None = None
        self.prefix = f"pub{uuid.uuid4().hex[:10]}."
        self.schema = f"pub{uuid.uuid4().hex[:10]}"
        self._urls: dict[str, str] = {}
        self._broker: Broker | None = None
        self._stack: Stack | None = None
        self._procs: list[Spawned] = []
        self._containers: list[Any] = []
        self._network: Any = None
        self._logs: Path | None = None

    # ------------------------------------------------------------------ what a test points at

    @property
    def bootstrap_servers(self) -> str:
        """Where a Kafka client of the test connects (host:port[,host:port])."""
        return self._started_broker().bootstrap

    def kafka_options(self) -> dict[str, Any]:
        """Keyword arguments for an aiokafka client (bootstrap servers, and SASL/TLS when the broker wants them)."""
        return self._started_broker().options()

    def kafka_env(self) -> dict[str, str]:
        """The same as the environment variables ccx-licensing's programs read (KAFKA_*, CCXLIC_TOPIC_PREFIX)."""
        return self._started_broker().env() | {"CCXLIC_TOPIC_PREFIX": self.prefix}

    def topic(self, name: str) -> str:
        """The name of a contract topic for this CcxLicensing (`ccx.agent-activity` -> `<prefix>ccx.agent-activity`)."""
        if name not in {t.name for t in TOPICS}:
            raise ValueError(f"{name!r} is not a topic of the contract: {', '.join(t.name for t in TOPICS)}")
        return self.prefix + name

    def url(self, service: str) -> str:
        """The base URL of a service started here (`http://host:port`)."""
        if service not in self._urls:
            raise KeyError(f"{service} is not running here; started: {', '.join(self._urls) or 'nothing yet'}")
        return self._urls[service]

    # ------------------------------------------------------------------ start and stop

    def __enter__(self) -> CcxLicensing:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> CcxLicensing:
        """Start everything and wait until every service is ready; stops what it started when it cannot."""
        if self.mode is not None:
            raise RuntimeError("already started")
        use_containers = self.requested == "containers" or (self.requested == "auto" and docker_answers())
        try:
            if use_containers:
                self.mode = "containers"
                self._start_containers()
            else:
                self.mode = "local"
                self._start_local()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the services, then remove this CcxLicensing's topics and schemas (or its containers)."""
        for p in self._procs:
            if p.proc is not None and p.proc.poll() is None:
                p.proc.terminate()
        for p in self._procs:
            if p.proc is not None:
                try:
                    p.proc.wait(30)
                except subprocess.TimeoutExpired:
                    p.proc.kill()
        self._procs = []
        if self.mode == "local" and self._stack is not None:
            stack = self._stack
            _blocking(self._drop_local(stack))
        for c in reversed(self._containers):
            with contextlib.suppress(Exception):
                c.stop()
        self._containers = []
        if self._network is not None:
            with contextlib.suppress(Exception):
                self._network.remove()
            self._network = None
        if self._logs is not None:
            shutil.rmtree(self._logs, ignore_errors=True)
            self._logs = None
        self._urls = {}
        self._broker = None
        self._stack = None
        self.mode = None

    async def _drop_local(self, stack: Stack) -> None:
        await delete_topics(stack.broker, frozenset({self.prefix}))
        for s in self.services:
            await drop_schema(stack.database_url, f"{self.schema}_{s}")
        await drop_schema(stack.database_url, self.schema)

    def _started_broker(self) -> Broker:
        if self._broker is None:
            raise RuntimeError("not started: use `with CcxLicensing() as ccx:` or call start()")
        return self._broker

    def _service_env(self) -> dict[str, str]:
        env = {
            "CCXLIC_TOPIC_PREFIX": self.prefix,
            "CCXLIC_AUTH_SCHEMA": f"{self.schema}_auth",
            **{f"CCXLIC_{s.upper()}_SCHEMA": f"{self.schema}_{s}" for s in self.services},
            **{f"CCXLIC_{s.upper()}_URL": url for s, url in self._urls.items()},
        }
        return env | self.extra_env

    def _start_local(self) -> None:
        try:
            stack, _ = start_stack(ROOT)
        except StackUnavailable as exc:
            raise RuntimeError(f"no Docker engine answers and the local stack did not start: {exc}") from None
        self._stack = stack
        self._broker = stack.broker
        _blocking(wait_for_kafka(stack.broker, timeout=60))
        self._logs = Path(tempfile.mkdtemp(prefix="ccxlic-containers-"))
        base = {k: v for k, v in os.environ.items() if not (k.startswith("CCXLIC_") and k.endswith("_DATABASE_URL"))}
        for service in self.services:
            env = {
                **base,
                **self.kafka_env(),
                # its own role where the stack has one (each may create its schemas), else the stack's URL
                "DATABASE_URL": stack.roles.get(service, stack.database_url),
                **self._service_env(),
            }
            spawned = Spawned(service, env, self._logs / f"{service}.log")
            spawned.start()
            self._procs.append(spawned)
            port = _blocking(spawned.started(self.timeout))
            self._urls[service] = f"http://127.0.0.1:{port}"
            proc = spawned.proc
            assert proc is not None

            def alive(p: subprocess.Popen[bytes] = proc) -> bool:
                return p.poll() is None

            _blocking(until_ready(self._urls[service], self.timeout, alive))

    def _start_containers(self) -> None:
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.network import Network
        from testcontainers.postgres import PostgresContainer

        self._ensure_image()
        network = Network()
        network.create()
        self._network = network
        port = free_port()
        kafka = (
            DockerContainer(KAFKA_IMAGE).with_network(network).with_network_aliases("kafka").with_bind_ports(9092, port)
        )
        for name, value in {
            "KAFKA_NODE_ID": "1",
            "KAFKA_PROCESS_ROLES": "broker,controller",
            "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093,INTERNAL://:29092",
            "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port},INTERNAL://kafka:29092",
            "KAFKA_INTER_BROKER_LISTENER_NAME": "INTERNAL",
            "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT",
            "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
            "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
            "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        }.items():
            kafka = kafka.with_env(name, value)
        kafka.start()
        self._containers.append(kafka)
        self._broker = Broker(f"127.0.0.1:{port}")
        _blocking(wait_for_kafka(self._broker, timeout=90))
        password = uuid.uuid4().hex
        pg = PostgresContainer(POSTGRES_IMAGE, username="postgres", password=password, dbname="ccxlic")
        pg = pg.with_network(network).with_network_aliases("postgres")
        pg.start()
        self._containers.append(pg)
        for service in self.services:
            env = {
                "KAFKA_BOOTSTRAP_SERVERS": "kafka:29092",
                "DATABASE_URL": f"postgresql://postgres:{password}@postgres:5432/ccxlic",
                **self._service_env(),
            }
            # inside the network, the services reach each other by alias, not by the host's mapped ports
            env |= {f"CCXLIC_{s.upper()}_URL": f"http://{s}:{DEFAULT_PORTS[s]}" for s in self._urls}
            container = DockerContainer(self.image).with_network(network).with_network_aliases(service)
            container = container.with_command(["serve", service]).with_exposed_ports(DEFAULT_PORTS[service])
            for name, value in env.items():
                container = container.with_env(name, value)
            container.start()
            self._containers.append(container)
            host = container.get_container_host_ip()
            self._urls[service] = f"http://{host}:{container.get_exposed_port(DEFAULT_PORTS[service])}"
            _blocking(until_ready(self._urls[service], self.timeout))

    def _ensure_image(self) -> None:
        present = subprocess.run(["docker", "image", "inspect", self.image], capture_output=True, timeout=60)
        if present.returncode == 0:
            return
        if not (ROOT / "Dockerfile").exists():
            raise RuntimeError(f"the image {self.image} is not on this Docker engine; build or pull it first")
        print(f"ccxlic_testing.containers: building {self.image} from {ROOT / 'Dockerfile'}", file=sys.stderr)
        built = subprocess.run(["docker", "build", "-t", self.image, str(ROOT)], timeout=1800)
        if built.returncode != 0:
            raise RuntimeError(f"docker build of {self.image} failed")


__all__ = ["CcxLicensing"]
