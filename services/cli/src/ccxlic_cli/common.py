"""What every `ccxlic` command shares: settings, errors, times, instance ids, publishing."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import typer
from ccxlic_contract import Event
from ccxlic_contract.access import PROGRAMS
from ccxlic_runtime.auth import Role, open_auth
from ccxlic_runtime.client import DEFAULT_PORTS, PORT_VARS, SERVICES, ClientSettings
from ccxlic_runtime.db import DatabaseError
from ccxlic_runtime.http import BadRequest, check_instance, parse_time
from ccxlic_runtime.kafka import (
    Broker,
    EventProducer,
    KafkaRefused,
    KafkaUnavailable,
    ensure_contract_topics,
    wait_for_kafka,
)
from ccxlic_runtime.settings import (
    ConfigError,
    database_url_field,
    kafka_password_field,
    kafka_username_field,
    load_settings,
)
from pydantic import Field, SecretStr
from rich.console import Console

err = Console(stderr=True)

SOURCE = "urn:ccxlic:cli"


class CliSettings(ClientSettings):
    database_url: SecretStr = database_url_field("cli")
    kafka_sasl_username: str | None = kafka_username_field("cli")
    kafka_sasl_password: SecretStr | None = kafka_password_field("cli")
    token: SecretStr | None = Field(None, validation_alias="CCXLIC_TOKEN")
    """An API token (ccxlic admin token create) for what needs a signed-in caller (silences)."""


def bearer(settings: CliSettings) -> dict[str, str]:
    """The Authorization header of CCXLIC_TOKEN (none when unset)."""
    return {} if settings.token is None else {"Authorization": f"Bearer {settings.token.get_secret_value()}"}


def call(settings: CliSettings, service: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """A JSON call to a service with CCXLIC_TOKEN; its answer, or exit 1 saying why (no answer, or its refusal)."""
    base = getattr(settings.urls(), service)

    async def go() -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http,
            http.request(method, base + path, json=body, headers=bearer(settings)) as r,
        ):
            return r.status, (await r.json(content_type=None)) if r.status != 204 else None

    try:
        status, answer = asyncio.run(go())
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise fail(f"{service} at {base} does not answer ({exc!r}); is it running?", 1) from None
    if status >= 400:
        error = answer.get("error") if isinstance(answer, dict) else answer
        hint = " (set CCXLIC_TOKEN: ccxlic admin token create USER)" if status == 401 else ""
        raise fail(f"{service} refused ({status}): {error}{hint}", 1)
    return answer


async def scenario_token(settings: CliSettings) -> str:
    """A token for a scenario's setup at the licensing authority: CCXLIC_TOKEN, or else a new one of the admin
    `ccxlic-scenario` (made in DATABASE_URL's auth schema, as `ccxlic admin` does; it expires in two days)."""
    if settings.token is not None:
        return settings.token.get_secret_value()
    try:
        async with open_auth(settings.database_url, settings.auth_schema) as auth:
            await auth.create_user("ccxlic-scenario", Role.admin, secrets.token_urlsafe(24), replace=True)
            _, token = await auth.create_token("ccxlic-scenario", "scenario setup", timedelta(days=2))
    except DatabaseError as exc:
        raise fail(
            f"a scenario needs a token for the licensing authority: set CCXLIC_TOKEN, or reach PostgreSQL ({exc})", 1
        ) from None
    return token


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
        return parse_time(value, name)
    except BadRequest as exc:
        raise fail(str(exc)) from None


def instance(value: str) -> str:
    try:
        return check_instance(value)
    except BadRequest as exc:
        raise fail(str(exc)) from None


async def producer(settings: CliSettings) -> EventProducer:
    try:
        await wait_for_kafka(Broker.of(settings), timeout=15)
        await ensure_contract_topics(settings, PROGRAMS["cli"].topics)
    except KafkaUnavailable as exc:
        raise fail(str(exc), 1) from None
    kafka = EventProducer(Broker.of(settings), settings.topic_prefix, client_id="ccxlic-cli")
    await kafka.start()
    return kafka


async def publish(settings: CliSettings, events: Sequence[Event]) -> None:
    kafka = await producer(settings)
    try:
        await kafka.publish_many(events)
    except KafkaRefused as exc:
        raise fail(str(exc), 1) from None
    finally:
        await kafka.stop()


__all__ = ["DEFAULT_PORTS", "PORT_VARS", "SERVICES", "CliSettings"]


def said(event: Event) -> None:
    err.print(
        f"published {event.type} for {event.subject} at {event.time.isoformat()} (id {event.id})", highlight=False
    )
