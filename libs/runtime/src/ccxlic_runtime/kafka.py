"""Kafka for every service: how to reach the broker, topic names, topic creation, and the one producer (idempotent,
acks=all)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, TopicAlreadyExistsError, TopicAuthorizationFailedError
from aiokafka.helpers import create_ssl_context
from ccxlic_contract import STRUCTURED_CONTENT_TYPE, TOPICS, Event, Topic, encode, key_for, topic_for
from ccxlic_contract.events import ALL_INSTANCES, ClockTicked
from pydantic import SecretStr

from ccxlic_runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

CONTENT_TYPE_HEADERS: list[tuple[str, bytes]] = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]


@dataclass(frozen=True)
class Broker:
    """Where the broker is and how to reach it (TLS, SASL): every Kafka client of the runtime is made from one."""

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    cafile: str | None = None

    @classmethod
    def of(cls, settings: RuntimeSettings) -> Broker:
        sasl = settings.kafka_security_protocol.startswith("SASL_")
        return cls(
            settings.kafka_bootstrap_servers,
            settings.kafka_security_protocol,
            settings.kafka_sasl_mechanism if sasl else None,
            settings.kafka_sasl_username if sasl else None,
            settings.kafka_sasl_password if sasl else None,
            str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        )

    def __str__(self) -> str:
        """Where, and how when it is not plaintext (never the password)."""
        if self.security_protocol == "PLAINTEXT":
            return self.bootstrap
        how = f", {self.sasl_mechanism} as {self.username}" if self.username else ""
        return f"{self.bootstrap} ({self.security_protocol}{how})"

    def env(self) -> dict[str, str]:
        """The environment variables that make a program of ccx-licensing reach this broker (the inverse of `of`)."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KAFKA_SECURITY_PROTOCOL": self.security_protocol}
        if self.username and self.password and self.sasl_mechanism:
            env |= {
                "KAFKA_SASL_MECHANISM": self.sasl_mechanism,
                "KAFKA_SASL_USERNAME": self.username,
                "KAFKA_SASL_PASSWORD": self.password.get_secret_value(),
            }
        if self.cafile:
            env["KAFKA_SSL_CAFILE"] = self.cafile
        return env

    def options(self) -> dict[str, Any]:
        """The keyword arguments every aiokafka client (producer, consumer, admin) takes to reach this broker."""
        opts: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            opts["ssl_context"] = self.ssl_context()
        if self.username:
            opts |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password.get_secret_value() if self.password else None,
            }
        return opts

    def ssl_context(self) -> ssl.SSLContext:
        context: ssl.SSLContext = create_ssl_context(cafile=self.cafile)
        if self.cafile is None:
            context.load_default_certs()
        return context


class KafkaUnavailable(RuntimeError):
    """The broker did not answer in time."""


class KafkaRefused(KafkaUnavailable):
    """The broker answered but refused us: wrong credentials, or a certificate we do not trust. Waiting will not help."""


def topic_name(topic: Topic, prefix: str = "") -> str:
    """The name of a contract topic in this deployment (tests and side-by-side runs use a prefix)."""
    return f"{prefix}{topic.name}"


async def wait_for_kafka(broker: Broker, timeout: float = 60.0) -> None:
    """Wait until the broker answers an admin call (an open port is not enough). Wrong credentials or an untrusted
    certificate raise KafkaRefused at once, saying which."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(**broker.options(), request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            await admin.close()
        refused = await _refusal(broker)
        if refused:
            raise KafkaRefused(f"Kafka at {broker} refused the connection: {refused}")
        await asyncio.sleep(0.5)
    raise KafkaUnavailable(
        f"Kafka at {broker} did not answer within {timeout:.0f} s ({last!r}); is it up? Try `make up`."
    )


async def _refusal(broker: Broker) -> str | None:
    """Why the first bootstrap server refuses us, when it is something waiting will not fix (the admin client only
    logs it)."""
    host, _, port = broker.bootstrap.split(",")[0].strip().rpartition(":")
    opts = broker.options()
    del opts["bootstrap_servers"]
    try:
        conn = await create_conn(host or "localhost", int(port or 9092), request_timeout_ms=5000, **opts)
    except SaslAuthenticationFailed as exc:
        return f"authentication failed ({exc}); check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
    except ssl.SSLCertVerificationError as exc:
        return f"its certificate is not trusted ({exc.verify_message}); check KAFKA_SSL_CAFILE"
    except (KafkaError, OSError, ValueError):
        return None  # not there yet, or not answering: keep waiting
    conn.close()
    return None


class TopicsNotCreated(KafkaUnavailable):
    """The broker refused to create a topic (e.g. a replication factor above its broker count); says why."""


TOPIC_EXISTS = 36
AUTHORIZATION_FAILED = frozenset({29, 31})  # TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED


async def ensure_contract_topics(settings: RuntimeSettings, topics: Iterable[Topic] = TOPICS) -> list[str]:
    """Contract topics (a program's own: `PROGRAMS[program].topics`) as the settings say: partitions, replication
    factor, `min.insync.replicas`."""
    return await ensure_topics(
        Broker.of(settings),
        settings.topic_prefix,
        topics,
        partitions=settings.partitions,
        replication=settings.replication_factor,
        min_insync=settings.min_insync_replicas,
    )


async def ensure_topics(
    broker: Broker,
    prefix: str = "",
    topics: Iterable[Topic] = TOPICS,
    *,
    partitions: int | None = None,
    replication: int = 1,
    min_insync: int = 1,
) -> list[str]:
    """Create the contract topics that do not exist yet, with their partitions and configs. Returns those created.

    Every topic keyed by instance gets `partitions` partitions (default: the contract's), so the inputs are
    co-partitioned. Records are stamped by the broker (`LogAppendTime`): the record timestamp is when the record
    reached the broker, whatever the publisher's clock says (the consumption computer compares event times with it).
    """
    admin = AIOKafkaAdminClient(**broker.options(), request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if topic_name(t, prefix) not in existing]
        if not wanted:
            return []
        new = [
            NewTopic(
                name=topic_name(t, prefix),
                num_partitions=t.partitions if partitions is None or t.partitions == 1 else partitions,
                replication_factor=replication,
                topic_configs={
                    "message.timestamp.type": "LogAppendTime",
                    "min.insync.replicas": str(min_insync),
                    **({"cleanup.policy": "compact"} if t.compacted else {}),
                },
            )
            for t in wanted
        ]
        with contextlib.suppress(TopicAlreadyExistsError):  # another process created them at the same moment
            answer = await admin.create_topics(new)
            refused = [(name, text) for name, code, text in answer.topic_errors if code not in (0, TOPIC_EXISTS)]
            if refused:
                name, text = refused[0]
                if any(code in AUTHORIZATION_FAILED for _, code, _ in answer.topic_errors):
                    raise TopicsNotCreated(
                        f"Kafka at {broker} may not create topic {name} for this user ({text}): with ACLs, an "
                        "administrator creates the topics and the grants first (`ccxlic kafka setup`, as the admin "
                        "user, with the same CCXLIC_TOPIC_PREFIX)"
                    )
                raise TopicsNotCreated(
                    f"Kafka at {broker} refused to create topic {name}: {text} (CCXLIC_REPLICATION_FACTOR="
                    f"{replication}, CCXLIC_MIN_INSYNC_REPLICAS={min_insync}, CCXLIC_PARTITIONS={partitions})"
                )
        created = [n.name for n in new]
        # The controller has them; the broker answers metadata from a cache it updates a moment later. Return once
        # it lists them, so whatever comes next (a producer, a consumer, a cleanup by prefix) finds them.
        for _ in range(100):
            if set(created) <= set(await admin.list_topics()):
                break
            await asyncio.sleep(0.1)
        log.info("created topics", extra={"topics": created})
        return created
    finally:
        await admin.close()


class NotCoPartitioned(RuntimeError):
    """A service's input topics have different partition counts, so one instance's inputs would be split."""


async def check_co_partitioned(broker: Broker, names: Sequence[str]) -> dict[str, int]:
    """The partition count of each topic; raise NotCoPartitioned when they differ."""
    admin = AIOKafkaAdminClient(**broker.options(), request_timeout_ms=15000)
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    counts = {d["topic"]: len(d["partitions"]) for d in described}
    if len(set(counts.values())) > 1:
        raise NotCoPartitioned(
            "the input topics must have the same number of partitions (co-partitioned, keyed by instance), "
            f"but they have {counts}; recreate them alike (CCXLIC_PARTITIONS) or add partitions to match"
        )
    return counts


class EventProducer:
    """Publishes contract events: key = subject, the structured content-type header, idempotent with acks=all."""

    def __init__(self, broker: Broker, prefix: str = "", *, linger_ms: int = 5, client_id: str = "ccxlic") -> None:
        self.prefix = prefix
        self.broker = broker
        self._producer = AIOKafkaProducer(
            **broker.options(),
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
            max_batch_size=256 * 1024,  # the relay sends up to 1,000 rows at once: fewer, larger produce requests
            client_id=client_id,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> EventProducer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def destination(self, event: Event) -> str:
        return topic_name(topic_for(event.type), self.prefix)

    async def publish(self, event: Event) -> None:
        """Send one event to its topic and wait for the broker's acknowledgement."""
        await self.publish_many([event])

    async def publish_many(self, events: Sequence[Event]) -> None:
        """Send events in order and wait until all are acknowledged. A tick for every instance (`*`) goes to every
        partition of the clock topic, so that every worker, which reads some of them, sees it."""
        records: list[tuple[str, bytes | None, bytes, int | None]] = []
        for e in events:
            topic = self.destination(e)
            if isinstance(e, ClockTicked) and e.subject == ALL_INSTANCES:
                partitions = sorted(await self._producer.partitions_for(topic))
                records += [(topic, key_for(e), encode(e), p) for p in partitions]
            else:
                records.append((topic, key_for(e), encode(e), None))
        await self._send(records)

    async def send_records(self, records: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        """Send already-encoded (topic, key, value) records in order and wait for all acknowledgements."""
        await self._send([(t, k, v, None) for t, k, v in records])

    async def _send(self, records: Sequence[tuple[str, bytes | None, bytes, int | None]]) -> None:
        try:
            futures = [
                await self._producer.send(topic, value, key=key, partition=partition, headers=CONTENT_TYPE_HEADERS)
                for topic, key, value, partition in records
            ]
            if futures:
                await asyncio.gather(*futures)
        except TopicAuthorizationFailedError as exc:
            topics = ", ".join(sorted({str(a) for a in exc.args})) or "its topic"
            raise KafkaRefused(
                f"Kafka at {self.broker} does not let {self.broker.username or 'this client'} write {topics}: each "
                "program's user may write its own topics only (README, Kafka ACLs)"
            ) from None


async def delete_topics(broker: Broker, prefixes: set[str] | frozenset[str]) -> int:
    """Delete the topics whose names start with one of `prefixes` (what a test session or a benchmark made); best
    effort: a warning, never a failure."""
    if not prefixes:
        return 0
    admin = AIOKafkaAdminClient(**broker.options(), request_timeout_ms=30000)
    try:
        await admin.start()
        names = [t for t in await admin.list_topics() if t.startswith(tuple(prefixes))]
        for i in range(0, len(names), 200):
            await admin.delete_topics(names[i : i + 200])
        return len(names)
    except Exception as exc:  # cleaning up must not fail what it cleans up after
        log.warning("could not delete topics", extra={"error": repr(exc), "prefixes": sorted(prefixes)})
        return 0
    finally:
        await admin.close()
