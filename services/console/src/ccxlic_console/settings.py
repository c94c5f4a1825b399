"""The console's settings: the runtime's and where the services answer, plus its port, TLS and sessions."""

from __future__ import annotations

from datetime import timedelta

from ccxlic_runtime.client import ClientSettings
from ccxlic_runtime.settings import Duration, database_url_field, kafka_password_field, kafka_username_field
from pydantic import Field, SecretStr, model_validator


class ConsoleSettings(ClientSettings):
    database_url: SecretStr = database_url_field("console")
    kafka_sasl_username: str | None = kafka_username_field("console")
    kafka_sasl_password: SecretStr | None = kafka_password_field("console")
    http_port: int = Field(8180, validation_alias="CCXLIC_CONSOLE_HTTP_PORT", ge=0, le=65535)
    tls_cert_file: str | None = Field(None, validation_alias="CCXLIC_CONSOLE_TLS_CERT")
    tls_key_file: str | None = Field(None, validation_alias="CCXLIC_CONSOLE_TLS_KEY")
    session_ttl: Duration = Field(timedelta(hours=12), validation_alias="CCXLIC_SESSION_TTL", gt=timedelta(0))
    refresh: Duration = Field(timedelta(seconds=1), validation_alias="CCXLIC_CONSOLE_REFRESH", gt=timedelta(0))
    """How often an open page asks for what changed (the overview is at most this plus a request late)."""
    agent_wait: Duration = Field(timedelta(seconds=30), validation_alias="CCXLIC_CONSOLE_AGENT_WAIT", gt=timedelta(0))
    """How long an action waits for the Smart Agent's result before saying it is still pending."""

    @model_validator(mode="after")
    def _both_or_neither(self) -> ConsoleSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both CCXLIC_CONSOLE_TLS_CERT and CCXLIC_CONSOLE_TLS_KEY, or neither")
        return self
