"""The consumption computer's settings: the runtime's, plus its own (all from the environment)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from ccxlic_runtime.settings import (
    Duration,
    RuntimeSettings,
    database_url_field,
    kafka_password_field,
    kafka_username_field,
)
from pydantic import BeforeValidator, Field, SecretStr, field_validator

from ccxlic_consumption.machine import Rules


def _off(value: object) -> object:
    return None if isinstance(value, str) and value.strip().lower() in ("off", "none", "") else value


class ConsumptionSettings(RuntimeSettings):
    database_url: SecretStr = database_url_field("consumption")
    kafka_sasl_username: str | None = kafka_username_field("consumption")
    kafka_sasl_password: SecretStr | None = kafka_password_field("consumption")
    http_port: int = Field(8181, validation_alias="CCXLIC_CONSUMPTION_HTTP_PORT", ge=0, le=65535)
    schema_name: str = Field("consumption", validation_alias="CCXLIC_CONSUMPTION_SCHEMA", pattern=r"^[a-z_][a-z0-9_]*$")
    group_id: str = Field("ccxlic-consumption", validation_alias="CCXLIC_CONSUMPTION_GROUP")
    lateness_seconds: int = Field(300, validation_alias="CCXLIC_LATENESS_SECONDS", ge=0)
    max_session_seconds: int = Field(24 * 3600, validation_alias="CCXLIC_MAX_SESSION_SECONDS", ge=60)
    # An input whose event time is further ahead than this of the record's timestamp (the broker's clock) is
    # dead-lettered: one event from a wrong clock must not move an instance's time (and its deadlines) ahead. Five
    # minutes: a clock further ahead is broken (1 day let a clock a day fast close intervals and raise alerts that
    # had not happened: `make chaos`, fault 10). `off` for simulated time, which runs ahead of the wall clock.
    max_event_skew: Annotated[Duration | None, BeforeValidator(_off)] = Field(
        timedelta(minutes=5), validation_alias="CCXLIC_MAX_EVENT_SKEW"
    )

    @field_validator("max_event_skew")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be positive, or `off`")
        return value

    def rules(self) -> Rules:
        return Rules(
            interval=timedelta(seconds=self.interval_seconds),
            lateness=timedelta(seconds=self.lateness_seconds),
            max_session=timedelta(seconds=self.max_session_seconds),
        )
