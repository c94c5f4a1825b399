"""What every `ccxlic` command shares: settings, errors, times, instance ids, publishing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime

import typer
from ccxlic_contract import Event
from ccxlic_runtime.http import BadRequest, check_instance
from ccxlic_runtime.kafka import EventProducer, KafkaUnavailable, ensure_topics, wait_for_kafka
from ccxlic_runtime.settings import ConfigError, RuntimeSettings, load_settings
from pydantic import Field
from rich.console import Console

from ccxlic_cli.status import Urls

err = Console(stderr=True)

SOURCE = "urn:ccxlic:cli"
SERVICES = ("authority", "consumption", "compliance", "alerting", "agent")
PORT_VARS = {
    "consumption": "CCXLIC_CONSUMPTION_HTTP_PORT",
    "compliance": "CCXLIC_COMPLIANCE_HTTP_PORT",
    "alerting": "CCXLIC_ALERTING_HTTP_PORT",
    "agent": "CCXLIC_AGENT_HTTP_PORT",
    "authority": "CCXLIC_AUTHORITY_HTTP_PORT",
}
DEFAULT_PORTS = {"consumption": 8181, "compliance": 8182, "alerting": 8183, "agent": 8184, "authority": 8190}


class CliSettings(RuntimeSettings):
    consumption_url: str = Field("", validation_alias="CCXLIC_CONSUMPTION_URL")
    compliance_url: str = Field("", validation_alias="CCXLIC_COMPLIANCE_URL")
    alerting_url: str = Field("", validation_alias="CCXLIC_ALERTING_URL")
    agent_url: str = Field("", validation_alias="CCXLIC_AGENT_URL")
    authority_url: str = Field("", validation_alias="CCXLIC_AUTHORITY_URL")

    def urls(self) -> Urls:
        def url(service: str, given: str) -> str:
            port = os.environ.get(PORT_VARS[service], str(DEFAULT_PORTS[service]))
            return (given or f"http://127.0.0.1:{port}").rstrip("/")

        return Urls(
            url("consumption", self.consumption_url),
            url("compliance", self.compliance_url),
            url("alerting", self.alerting_url),
            url("agent", self.agent_url),
            url("authority", self.authority_url),
        )


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]ccxlic: {message}[/red]", highlight=False)
    return typer.Exit(code)


def settings() -> CliSettings:
    try:
        return load_settings(CliSettings)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def time(value: str | None, name: str = "--at") -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"{name} must be an RFC 3339 time such as 2026-03-02T08:00:00Z; got {value!r}") from None
    if t.tzinfo is None:
        raise fail(f"{name} needs an offset (Z or +hh:mm); got {value!r}")
    return t.astimezone(UTC)


def instance(value: str) -> str:
    try:
        return check_instance(value)
    except BadRequest as exc:
        raise fail(str(exc)) from None


async def producer(settings: CliSettings) -> EventProducer:
    try:
        await wait_for_kafka(settings.kafka_bootstrap_servers, timeout=15)
    except KafkaUnavailable as exc:
        raise fail(str(exc), 1) from None
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_prefix)
    kafka = EventProducer(settings.kafka_bootstrap_servers, settings.topic_prefix, client_id="ccxlic-cli")
    await kafka.start()
    return kafka


async def publish(settings: CliSettings, events: Sequence[Event]) -> None:
    kafka = await producer(settings)
    try:
        await kafka.publish_many(events)
    finally:
        await kafka.stop()


def said(event: Event) -> None:
    err.print(
        f"published {event.type} for {event.subject} at {event.time.isoformat()} (id {event.id})", highlight=False
    )
