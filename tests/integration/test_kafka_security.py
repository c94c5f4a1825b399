"""Kafka over SASL/SCRAM-SHA-512 and TLS, with ACLs: a broker started by `KAFKA_SECURITY=scram-tls deploy/stack.sh up
kafka` (its own directory and ports, next to the plaintext one), `ccxlic kafka setup` granting each program's user its
own topics, the simulator (the CLI) publishing to it and the chain consuming from it, each as its own user; a
publisher refused on the command topic, a program refused on another's output; and the clear error of a client with
wrong credentials or without the CA."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from ccxlic_contract import TOPICS, Topic
from ccxlic_contract.access import PROGRAMS
from ccxlic_contract.events import ComplianceChanged, ConsumptionChanged
from ccxlic_contract.topics import AGENT_ACTIVITY, AGENT_COMMANDS, ALERTS, COMPLIANCE, CONSUMPTION
from ccxlic_runtime.kafka import Broker, EventProducer, KafkaRefused, topic_name, wait_for_kafka
from ccxlic_runtime.kafka_acls import describe_acls, grants
from ccxlic_testing.plugin import Stack, broker_from_env, free_port, read_env_file
from pydantic import SecretStr

from tests.chain import Chain

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CCXLIC = str(Path(sys.executable).with_name("ccxlic"))


@pytest.fixture(scope="module")
def secure(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A second broker, SCRAM+TLS only, made the way `make up` makes it; the database is the session's."""
    env = {
        **os.environ,
        "CCXLIC_STACK_DIR": str(tmp_path_factory.mktemp("scram-tls")),
        "KAFKA_SECURITY": "scram-tls",
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_PROXIED_PORT": str(free_port()),
        "KAFKA_PROXY_PORT": str(free_port()),
    }
    script = str(ROOT / "deploy" / "stack.sh")
    up = subprocess.run(["bash", script, "up", "kafka"], env=env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        admin = read_env_file(Path(env["CCXLIC_STACK_DIR"]) / "kafka-scram-tls" / "admin.env")
        assert admin["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and admin["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        yield Stack(broker_from_env(admin), stack.database_url, "scram-tls")
    finally:
        subprocess.run(["bash", script, "down", "kafka"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def users(secure: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The programs' settings the stack wrote (client.env): one Kafka user each, and no admin among them."""
    stack_dir = Path(secure.broker.cafile or "").parents[1]
    client = read_env_file(stack_dir / "client.env")
    assert "KAFKA_SASL_USERNAME" not in client and client["CCXLIC_PUBLISHER_KAFKA_SASL_USERNAME"] == "ccxlic-publisher"
    return client


def as_user(secure: Stack, users: dict[str, str], program: str) -> Broker:
    p = program.upper()
    name, password = users[f"CCXLIC_{p}_KAFKA_SASL_USERNAME"], users[f"CCXLIC_{p}_KAFKA_SASL_PASSWORD"]
    return replace(secure.broker, username=name, password=SecretStr(password))


def program_env(users: dict[str, str], prefix: str) -> dict[str, str]:
    """The environment `make run` gives the programs (no admin user in it), on this prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CCXLIC_"))}
    return {**env, **users, "CCXLIC_TOPIC_PREFIX": prefix}


def kafka_setup(secure: Stack, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **secure.kafka_env(), "CCXLIC_TOPIC_PREFIX": prefix}
    return subprocess.run([CCXLIC, "kafka", "setup", *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def granted(secure: Stack) -> str:
    """A topic prefix set up as an administrator does: its topics, and each program's grants."""
    prefix = f"sec{uuid.uuid4().hex[:8]}."
    r = kafka_setup(secure, prefix)
    assert r.returncode == 0, r.stdout + r.stderr
    wanted = grants(prefix, {p: a.user for p, a in PROGRAMS.items()})
    assert f"granted {len(wanted)} ACLs; created {len(TOPICS)} topics" in r.stdout, r.stdout
    return prefix


SCENARIO = """
name: over-tls
duration: PT2H
speed: 1000000
seed: 5
instances:
  - id: sec-a
    registered: true
    entitlements: {standard: 4, premium: 2, ivr_ports: 4}
    agents: {standard: 6, premium: 3}
    ivr_peak_ports: 5
  - id: sec-b
    registered: false
    agents: {standard: 3, premium: 1}
"""


async def test_the_simulator_and_the_chain_work_over_scram_and_tls_each_as_its_own_user(
    secure: Stack, users: dict[str, str], granted: str, tmp_path: Path
) -> None:
    (tmp_path / "over-tls.yaml").write_text(SCENARIO)
    sim = subprocess.run(
        [CCXLIC, "simulate", "--scenario", str(tmp_path / "over-tls.yaml"), "--start", "2026-03-02T08:00:00Z"],
        env=program_env(users, granted),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sim.returncode == 0, sim.stderr
    own = {p: as_user(secure, users, p).env() for p in ("consumption", "compliance", "alerting")}
    chain = Chain(
        secure,
        granted,
        f"s_{uuid.uuid4().hex[:8]}",
        overrides={"max_event_skew": None},
        kafka={p: {k.lower(): v for k, v in e.items()} for p, e in own.items()},
    )
    assert chain.settings("consumption").kafka_sasl_username == "ccxlic-consumption"
    try:
        await chain.start()
        await chain.drained(timeout=120)
        usage = await chain.outputs("consumption")
        compliance = await chain.outputs("compliance")
    finally:
        await chain.stop()
        await chain.drop()
    assert set(usage) == set(compliance) == {"sec-a", "sec-b"}
    assert all(any(isinstance(e, ConsumptionChanged) for e in usage[i]) for i in usage)
    assert all(any(isinstance(e, ComplianceChanged) for e in compliance[i]) for i in compliance)
    over = [e.data for e in compliance["sec-a"] if isinstance(e, ComplianceChanged)]
    assert any(v.over_stage == "detected" for v in over)  # 3 Premium agents against 2: the verdict came through TLS


@pytest.mark.parametrize(
    ("program", "allowed", "refused"),
    [
        ("publisher", AGENT_ACTIVITY, AGENT_COMMANDS),  # a contact center's publisher cannot command an agent
        ("consumption", CONSUMPTION, AGENT_COMMANDS),  # nor can a service
        ("cli", AGENT_COMMANDS, CONSUMPTION),  # an admin's tool commands, but cannot forge the consumption computer's
        ("console", AGENT_COMMANDS, AGENT_ACTIVITY),
        ("compliance", COMPLIANCE, ALERTS),
    ],
)
async def test_each_user_writes_its_own_topics_and_is_refused_another_with_the_reason(
    secure: Stack, users: dict[str, str], granted: str, program: str, allowed: Topic, refused: Topic
) -> None:
    broker = as_user(secure, users, program)
    async with EventProducer(broker, granted) as producer:
        await producer.send_records([(topic_name(allowed, granted), b"sec-a", b"{}")])
        with pytest.raises(KafkaRefused) as no:
            await producer.send_records([(topic_name(refused, granted), b"sec-a", b"{}")])
    assert f"does not let ccxlic-{program} write {topic_name(refused, granted)}" in str(no.value)
    assert users[f"CCXLIC_{program.upper()}_KAFKA_SASL_PASSWORD"] not in str(no.value)


async def test_the_broker_holds_exactly_the_grants_of_the_access_table(secure: Stack, granted: str) -> None:
    held = {g for g in await describe_acls(secure.broker) if g.name.startswith(granted)}
    assert held == set(grants(granted, {p: a.user for p, a in PROGRAMS.items()}))
    again = kafka_setup(secure, granted)  # idempotent: nothing new, nothing doubled
    assert again.returncode == 0 and "created 0 topics" in again.stdout
    assert {g for g in await describe_acls(secure.broker) if g.name.startswith(granted)} == held


def test_a_service_on_topics_nobody_set_up_says_the_administrator_must(secure: Stack, users: dict[str, str]) -> None:
    env = program_env(users, f"unset{uuid.uuid4().hex[:8]}.")
    r = subprocess.run(
        [CCXLIC, "tick", "--at", "2026-03-02T00:00:00Z"], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1, r.stdout + r.stderr
    said = " ".join(r.stderr.split())  # as wrapped to the terminal
    assert "as ccxlic-cli) may not create topic" in said and "`ccxlic kafka setup`, as the admin user" in said
    assert "Traceback" not in said


async def test_wrong_credentials_are_refused_at_once_with_the_reason(secure: Stack) -> None:
    wrong = replace(secure.broker, password=SecretStr("not-the-password"))
    with pytest.raises(KafkaRefused) as refused:
        await wait_for_kafka(wrong, timeout=120)
    assert "authentication failed" in str(refused.value) and "KAFKA_SASL_PASSWORD" in str(refused.value)
    assert "not-the-password" not in str(refused.value)


async def test_a_broker_certificate_from_an_unknown_ca_is_refused_with_the_reason(secure: Stack) -> None:
    untrusted: Broker = replace(secure.broker, cafile=None)  # the system's CAs did not sign the local one
    with pytest.raises(KafkaRefused, match=r"certificate is not trusted .*KAFKA_SSL_CAFILE"):
        await wait_for_kafka(untrusted, timeout=120)


def test_the_cli_with_wrong_credentials_says_so_and_never_prints_the_password(secure: Stack) -> None:
    env = {**os.environ, **secure.kafka_env(), "KAFKA_SASL_PASSWORD": "s3cret-but-wrong"}
    env.pop("CCXLIC_CLI_KAFKA_SASL_PASSWORD", None)
    r = subprocess.run(
        [CCXLIC, "tick", "--at", "2026-03-02T00:00:00Z"], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "authentication failed" in r.stderr and "Traceback" not in r.stderr
    assert "s3cret-but-wrong" not in r.stdout + r.stderr
