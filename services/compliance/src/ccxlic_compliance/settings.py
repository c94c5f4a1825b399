"""Compliance's settings: the runtime's, plus its own (all from the environment).

Durations take seconds (`2700`) or ISO 8601 durations (`P90D`, `PT45M`).
"""

from __future__ import annotations

from datetime import timedelta

from ccxlic_runtime.settings import (
    Duration,
    RuntimeSettings,
    database_url_field,
    kafka_password_field,
    kafka_username_field,
)
from pydantic import Field, SecretStr, model_validator

from ccxlic_compliance.machine import Rules

_DEFAULTS = Rules()


def _duration(default: timedelta, env: str, allow_zero: bool = False) -> timedelta:
    if allow_zero:
        return Field(default, validation_alias=env, ge=timedelta(0))
    return Field(default, validation_alias=env, gt=timedelta(0))


class ComplianceSettings(RuntimeSettings):
    database_url: SecretStr = database_url_field("compliance")
    kafka_sasl_username: str | None = kafka_username_field("compliance")
    kafka_sasl_password: SecretStr | None = kafka_password_field("compliance")
    http_port: int = Field(8182, validation_alias="CCXLIC_COMPLIANCE_HTTP_PORT", ge=0, le=65535)
    schema_name: str = Field("compliance", validation_alias="CCXLIC_COMPLIANCE_SCHEMA", pattern=r"^[a-z_][a-z0-9_]*$")
    group_id: str = Field("ccxlic-compliance", validation_alias="CCXLIC_COMPLIANCE_GROUP")
    evaluation: Duration = _duration(_DEFAULTS.evaluation, "CCXLIC_EVALUATION_PERIOD")
    ooc_warning: Duration = _duration(_DEFAULTS.ooc_warning, "CCXLIC_OOC_WARNING")
    ooc_tolerance: Duration = _duration(_DEFAULTS.ooc_tolerance, "CCXLIC_OOC_TOLERANCE")
    ooc_grace: Duration = _duration(_DEFAULTS.ooc_grace, "CCXLIC_OOC_GRACE")
    authorization_valid: Duration = _duration(_DEFAULTS.authorization_valid, "CCXLIC_AUTHORIZATION_VALID")
    authorization_grace: Duration = _duration(
        _DEFAULTS.authorization_grace, "CCXLIC_AUTHORIZATION_GRACE", allow_zero=True
    )
    registration_valid: Duration = _duration(_DEFAULTS.registration_valid, "CCXLIC_REGISTRATION_VALID")
    enforce_lab: bool = Field(_DEFAULTS.enforce_lab, validation_alias="CCXLIC_ENFORCE_LAB")
    """Ours, not the vendor's (its document does not say): whether a Lab (non-production) instance can be put in
    enforcement. Default false: tracked through every state, never enforced."""

    @model_validator(mode="after")
    def _warning_before_tolerance(self) -> ComplianceSettings:
        if self.ooc_warning >= self.ooc_tolerance:
            raise ValueError(
                f"CCXLIC_OOC_WARNING ({self.ooc_warning}) must be shorter than CCXLIC_OOC_TOLERANCE ({self.ooc_tolerance})"
            )
        return self

    def rules(self) -> Rules:
        return Rules(
            evaluation=self.evaluation,
            ooc_warning=self.ooc_warning,
            ooc_tolerance=self.ooc_tolerance,
            ooc_grace=self.ooc_grace,
            authorization_valid=self.authorization_valid,
            authorization_grace=self.authorization_grace,
            registration_valid=self.registration_valid,
            interval=timedelta(seconds=self.interval_seconds),
            enforce_lab=self.enforce_lab,
        )
