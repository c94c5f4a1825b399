"""Kafka for every service: topic names, topic creation, and the one producer (idempotent, acks=all)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from types import TracebackType

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from ccxlic_contract import STRUCTURED_CONTENT_TYPE, TOPICS, Event, Topic, encode, key_for, topic_for

log = logging.getLogger(__name__)

CONTENT_TYPE_HEADERS: list[tuple[str, bytes]] = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]


class KafkaUnavailable(RuntimeError):
    """The broker did not answer in time."""


def topic_name(topic: Topic, prefix: str = "") -> str:
    """The name of a contract topic in this deployment (tests and side-by-side runs use a prefix)."""
    return f"{prefix}{topic.name}"


async def wait_for_kafka(bootstrap: str, timeout: float = 60.0) -> None:
    """Wait until the broker answers an admin call (an open port is not enough)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    raise KafkaUnavailable(
        f"Kafka at {bootstrap} did not answer within {timeout:.0f} s ({last!r}); is it up? Try `make up`."
    )


async def ensure_topics(bootstrap: str, prefix: str = "", topics: Iterable[Topic] = TOPICS) -> list[str]:
    """Create the contract topics that do not exist yet, with their partitions and configs. Returns those created.

    faust does not create the source topics its agents read, so every service calls this before it starts.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if topic_name(t, prefix) not in existing]
        if not wanted:
            return []
        new = [
            NewTopic(
                name=topic_name(t, prefix),
                num_partitions=t.partitions,
                replication_factor=1,
                topic_configs={"cleanup.policy": "compact"} if t.compacted else {},
            )
            for t in wanted
        ]
        with contextlib.suppress(TopicAlreadyExistsError):  # another process created them at the same moment
            await admin.create_topics(new)
        created = [n.name for n in new]
        log.info("created topics", extra={"topics": created})
        return created
    finally:
        await admin.close()


class EventProducer:
    """Publishes contract events: key = subject, the structured content-type header, idempotent with acks=all."""

    def __init__(self, bootstrap: str, prefix: str = "", *, linger_ms: int = 5, client_id: str = "ccxlic") -> None:
        self.prefix = prefix
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
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
        await self._producer.send_and_wait(
            self.destination(event), encode(event), key=key_for(event), headers=CONTENT_TYPE_HEADERS
        )

    async def publish_many(self, events: Sequence[Event]) -> None:
        """Send events in order and wait until all are acknowledged."""
        await self.send_records([(self.destination(e), key_for(e), encode(e)) for e in events])

    async def send_records(self, records: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        """Send already-encoded (topic, key, value) records in order and wait for all acknowledgements."""
        futures = [
            await self._producer.send(topic, value, key=key, headers=CONTENT_TYPE_HEADERS)
            for topic, key, value in records
        ]
        if futures:
            await asyncio.gather(*futures)
