"""Publish as other clients do, for tests of what real publishers send: kcat (librdkafka) with its defaults, with
any bytes as key, value and header names. librdkafka takes the broker's settings as properties
(`librdkafka_config`)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from typing import Any

from ccxlic_runtime.kafka import Broker


def librdkafka_config(broker: Broker) -> dict[str, str]:
    """The librdkafka properties that reach `broker` (kcat's -X, confluent-kafka's config)."""
    config = {"bootstrap.servers": broker.bootstrap, "security.protocol": broker.security_protocol.lower()}
    if broker.username and broker.password and broker.sasl_mechanism:
        config |= {
            "sasl.mechanisms": broker.sasl_mechanism,
            "sasl.username": broker.username,
            "sasl.password": broker.password.get_secret_value(),
        }
    if broker.cafile:
        config["ssl.ca.location"] = broker.cafile
    return config


def kcat_publish(
    broker: Broker,
    topic: str,
    value: bytes,
    *,
    key: bytes | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
    partition: int | None = None,
) -> None:
    """One record published by kcat at librdkafka's defaults (its partitioner too, unless `partition` is given).
    The key and header names are bytes (no NUL: they travel as arguments): kcat passes them on as they are, UTF-8 or
    not."""
    kcat = shutil.which("kcat")
    if kcat is None:
        raise RuntimeError("kcat is not installed: `make deps` installs it (Debian's kcat package)")
    with tempfile.NamedTemporaryFile(suffix=".msg") as message:
        message.write(value)
        message.flush()
        args: list[bytes] = [kcat.encode(), b"-P", b"-t", topic.encode()]
        for name, setting in librdkafka_config(broker).items():
            args += [b"-X", f"{name}={setting}".encode()]
        if key is not None:
            args += [b"-k", key]
        if partition is not None:
            args += [b"-p", str(partition).encode()]
        for header, v in headers:
            args += [b"-H", header + b"=" + v]
        args.append(message.name.encode())  # a file is one message, whatever bytes it holds
        done = subprocess.run(args, capture_output=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"kcat failed ({done.returncode}): {done.stderr.decode('utf-8', 'replace')[-500:]}")


def rdkafka_publish(
    broker: Broker,
    topic: str,
    value: bytes,
    *,
    key: bytes | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
    partition: int | None = None,
) -> None:
    """The same record as `kcat_publish`, by confluent-kafka-python (its own librdkafka, 2.16): Debian's kcat 1.7.1
    (librdkafka 2.0.2) fails SCRAM-SHA-512 against Kafka 4.1 ("invalid credentials" with the right ones), so over
    SCRAM this is the librdkafka client. It makes header names text: a name that is not UTF-8 cannot be sent."""
    from confluent_kafka import KafkaException, Producer

    producer = Producer(librdkafka_config(broker))
    raw: Any = list(headers)  # its stubs say names are str
    try:
        if partition is None:
            producer.produce(topic, value=value, key=key, headers=raw)
        else:
            producer.produce(topic, value=value, key=key, headers=raw, partition=partition)
    except KafkaException as exc:
        raise RuntimeError(f"librdkafka refused the record: {exc}") from None
    if producer.flush(30) != 0:
        raise RuntimeError(f"librdkafka did not deliver the record to {topic} within 30 s")
