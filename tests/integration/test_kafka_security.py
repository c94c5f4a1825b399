"""Kafka over SASL/SCRAM-SHA-512 and TLS: a broker started by `KAFKA_SECURITY=scram-tls deploy/stack.sh up kafka` (its
own directory and ports, next to the plaintext one), the simulator (the CLI) publishing to it, the chain consuming
from it, and the clear error of a client with wrong credentials or without the CA."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from ccxlic_contract.events import ComplianceChanged, ConsumptionChanged
from ccxlic_runtime.kafka import Broker, KafkaRefused, wait_for_kafka
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
        client = read_env_file(Path(env["CCXLIC_STACK_DIR"]) / "kafka-scram-tls" / "client.env")
        assert client["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and client["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        yield Stack(broker_from_env(client), stack.database_url, "scram-tls")
    finally:
        subprocess.run(["bash", script, "down", "kafka"], env=env, capture_output=True, timeout=120)


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


async def test_the_simulator_and_the_chain_work_over_scram_and_tls(secure: Stack, tmp_path: Path) -> None:
    prefix = f"sec{uuid.uuid4().hex[:8]}."
    (tmp_path / "over-tls.yaml").write_text(SCENARIO)
    env = {**os.environ, **secure.kafka_env(), "CCXLIC_TOPIC_PREFIX": prefix}
    sim = subprocess.run(
        [CCXLIC, "simulate", "--scenario", str(tmp_path / "over-tls.yaml"), "--start", "2026-03-02T08:00:00Z"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sim.returncode == 0, sim.stderr
    chain = Chain(secure, prefix, f"s_{uuid.uuid4().hex[:8]}", overrides={"max_event_skew": None})
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
    r = subprocess.run(
        [CCXLIC, "tick", "--at", "2026-03-02T00:00:00Z"], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "authentication failed" in r.stderr and "Traceback" not in r.stderr
    assert "s3cret-but-wrong" not in r.stdout + r.stderr
