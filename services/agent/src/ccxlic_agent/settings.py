"""The Smart Agent's settings: the runtime's, plus where the licensing authority is and how long to wait for it."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Annotated

from ccxlic_rules import codes
from ccxlic_runtime.client import DEFAULT_PORTS, PORT_VARS
from ccxlic_runtime.settings import (
    Duration,
    RuntimeSettings,
    database_url_field,
    kafka_password_field,
    kafka_username_field,
)
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode


class AgentSettings(RuntimeSettings):
    database_url: SecretStr = database_url_field("agent")
    kafka_sasl_username: str | None = kafka_username_field("agent")
    kafka_sasl_password: SecretStr | None = kafka_password_field("agent")
    http_port: int = Field(8184, validation_alias="CCXLIC_AGENT_HTTP_PORT", ge=0, le=65535)
    schema_name: str = Field("agent", validation_alias="CCXLIC_AGENT_SCHEMA", pattern=r"^[a-z_][a-z0-9_]*$")
    group_id: str = Field("ccxlic-agent", validation_alias="CCXLIC_AGENT_GROUP")
    authority_url: str = Field(
        "http://127.0.0.1:8190", validation_alias="CCXLIC_AUTHORITY_URL", pattern=r"^https?://[^\s]+$"
    )
    """The licensing authority of the `direct` and `proxy` transports (an instance's `onprem` URL replaces it)."""
    authority_timeout: Duration = Field(
        timedelta(seconds=10), validation_alias="CCXLIC_AUTHORITY_TIMEOUT", gt=timedelta(0)
    )
    ca_file: str | None = Field(None, validation_alias="CCXLIC_AGENT_CA_FILE")
    """Extra CA certificates (PEM) an SSM On-Prem certificate may chain to, besides the system's."""
    trusted_keys: Annotated[tuple[str, ...], NoDecode] = Field((), validation_alias="CCXLIC_AGENT_TRUSTED_KEYS")
    """A PEM file of the licensing authorities' public keys (Ed25519) a reservation's authorization code may be
    signed with. Unset: the key pinned when the instance first registered or enabled the reservation."""

    log_urls: str = Field("", validation_alias="CCXLIC_AGENT_LOG_URLS")
    """The services whose licensing logs are checkpointed at each usage report, comma-separated. Unset: the consumption
    computer, compliance and alerting where `ccxlic` finds them (CCXLIC_CONSUMPTION_URL, CCXLIC_COMPLIANCE_URL,
    CCXLIC_ALERTING_URL; each unset: this host, at the service's CCXLIC_*_HTTP_PORT)."""

    def logs(self) -> list[str]:
        if self.log_urls.strip():
            return [u.strip() for u in self.log_urls.split(",") if u.strip()]
        return [
            os.environ.get(f"CCXLIC_{s.upper()}_URL")
            or f"http://127.0.0.1:{os.environ.get(PORT_VARS[s], DEFAULT_PORTS[s])}"
            for s in ("consumption", "compliance", "alerting")
        ]

    @field_validator("trusted_keys", mode="before")
    @classmethod
    def _read_keys(cls, value: object) -> tuple[str, ...]:
        if value in (None, "", ()):
            return ()
        if not isinstance(value, str):
            raise ValueError("must be the path of a PEM file of public keys")
        try:
            with open(value, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror}") from None
        try:
            return codes.public_keys(text)
        except codes.CodeError as exc:
            raise ValueError(f"{value}: {exc}") from None
