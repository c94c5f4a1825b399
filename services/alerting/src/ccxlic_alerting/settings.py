"""Alerting's settings: the runtime's, plus channels, delivery and repeat intervals (all from the environment)."""

from __future__ import annotations

from datetime import timedelta
from typing import get_args

from ccxlic_contract.events import AlertName, Severity
from ccxlic_runtime.channels import FACILITIES, Channel, Syslog, Webhook
from ccxlic_runtime.settings import (
    Duration,
    SmtpSettings,
    database_url_field,
    kafka_password_field,
    kafka_username_field,
)
from pydantic import Field, SecretStr, field_validator, model_validator

from ccxlic_alerting.machine import Rules


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


class AlertingSettings(SmtpSettings):
    database_url: SecretStr = database_url_field("alerting")
    kafka_sasl_username: str | None = kafka_username_field("alerting")
    kafka_sasl_password: SecretStr | None = kafka_password_field("alerting")
    http_port: int = Field(8183, validation_alias="CCXLIC_ALERTING_HTTP_PORT", ge=0, le=65535)
    schema_name: str = Field("alerting", validation_alias="CCXLIC_ALERTING_SCHEMA", pattern=r"^[a-z_][a-z0-9_]*$")
    group_id: str = Field("ccxlic-alerting", validation_alias="CCXLIC_ALERTING_GROUP")
    external_url: str = Field("http://127.0.0.1:8183", validation_alias="CCXLIC_EXTERNAL_URL", pattern=r"^https?://")

    syslog_url: str = Field("", validation_alias="CCXLIC_SYSLOG_URL")
    syslog_facility: str = Field("local0", validation_alias="CCXLIC_SYSLOG_FACILITY")
    syslog_ca_file: str | None = Field(None, validation_alias="CCXLIC_SYSLOG_CA_FILE")
    """Extra CA certificates (PEM) a `tls://` syslog server's certificate may chain to, besides the system's."""
    alert_emails: str = Field("", validation_alias="CCXLIC_ALERT_EMAILS")
    webhook_urls: SecretStr = Field(
        SecretStr(""), validation_alias="CCXLIC_WEBHOOK_URLS", json_schema_extra={"show": "host"}
    )
    """Comma-separated; secrets (receivers put tokens in them): never shown, only their scheme and host."""

    # A failing delivery is tried again (backoff doubling up to the max) until it is this old, then marked failed:
    # a channel down for hours still gets every notification when it is back, within the max backoff.
    delivery_give_up_after: Duration = Field(
        timedelta(days=1), validation_alias="CCXLIC_DELIVERY_GIVE_UP_AFTER", gt=timedelta(0)
    )
    delivery_backoff_seconds: float = Field(1.0, validation_alias="CCXLIC_DELIVERY_BACKOFF_SECONDS", gt=0)
    delivery_max_backoff_seconds: float = Field(5.0, validation_alias="CCXLIC_DELIVERY_MAX_BACKOFF_SECONDS", gt=0)
    delivery_timeout_seconds: float = Field(10.0, validation_alias="CCXLIC_DELIVERY_TIMEOUT_SECONDS", gt=0)

    repeat_critical: Duration = Field(timedelta(hours=4), validation_alias="CCXLIC_REPEAT_CRITICAL", gt=timedelta(0))
    repeat_major: Duration = Field(timedelta(hours=12), validation_alias="CCXLIC_REPEAT_MAJOR", gt=timedelta(0))
    repeat_warning: Duration = Field(timedelta(hours=24), validation_alias="CCXLIC_REPEAT_WARNING", gt=timedelta(0))
    severities: str = Field("", validation_alias="CCXLIC_ALERT_SEVERITIES")

    @field_validator("syslog_facility")
    @classmethod
    def _facility(cls, value: str) -> str:
        if value not in FACILITIES:
            raise ValueError(f"must be one of {', '.join(FACILITIES)}")
        return value

    @field_validator("syslog_url")
    @classmethod
    def _syslog(cls, value: str) -> str:
        if value:
            Syslog(value)  # raises ValueError with the expected form
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _webhooks(cls, value: SecretStr) -> SecretStr:
        for n, url in enumerate(_csv(value.get_secret_value()), 1):
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"URL {n} must start with http:// or https:// (its value is not shown: a secret)")
        return value

    @field_validator("alert_emails")
    @classmethod
    def _emails(cls, value: str) -> str:
        for address in _csv(value):
            if "@" not in address:
                raise ValueError(f"not an email address: {address!r}")
        return value

    @field_validator("severities")
    @classmethod
    def _severities(cls, value: str) -> str:
        cls.parse_severities(value)
        return value

    @model_validator(mode="after")
    def _email_needs_recipients(self) -> AlertingSettings:
        if self.smtp_host and not _csv(self.alert_emails):
            raise ValueError("CCXLIC_SMTP_HOST is set but CCXLIC_ALERT_EMAILS (the admin addresses) is empty")
        return self

    @staticmethod
    def parse_severities(value: str) -> dict[AlertName, Severity]:
        """`Alert=severity,...`, e.g. `EntitlementReportingFailed=major`."""
        out: dict[AlertName, Severity] = {}
        for item in _csv(value):
            name, _, severity = item.partition("=")
            if name not in get_args(AlertName):
                raise ValueError(f"unknown alert {name!r}; known: {', '.join(get_args(AlertName))}")
            if severity not in get_args(Severity):
                raise ValueError(f"severity of {name} must be critical, major or warning; got {severity!r}")
            out[name] = severity  # type: ignore[index,assignment]
        return out

    def rules(self) -> Rules:
        return Rules(
            repeat={"critical": self.repeat_critical, "major": self.repeat_major, "warning": self.repeat_warning},
            severity=self.parse_severities(self.severities),
        )

    def channels(self) -> list[Channel]:
        out: list[Channel] = []
        timeout = self.delivery_timeout_seconds
        if self.syslog_url:
            out.append(Syslog(self.syslog_url, FACILITIES[self.syslog_facility], timeout, ca_file=self.syslog_ca_file))
        email = self.email(_csv(self.alert_emails), timeout)
        if email is not None:
            out.append(email)
        for i, url in enumerate(_csv(self.webhook_urls.get_secret_value())):
            out.append(Webhook(url, self.external_url, timeout, name="webhook" if i == 0 else f"webhook{i + 1}"))
        return out
