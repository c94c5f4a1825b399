"""The authority's settings (from the environment). It needs PostgreSQL only: no Kafka."""

from __future__ import annotations

from ccxlic_runtime.settings import RuntimeSettings, database_url_field
from pydantic import Field, SecretStr, model_validator


class AuthoritySettings(RuntimeSettings):
    database_url: SecretStr = database_url_field("authority")
    http_port: int = Field(8190, validation_alias="CCXLIC_AUTHORITY_HTTP_PORT", ge=0, le=65535)
    schema_name: str = Field("authority", validation_alias="CCXLIC_AUTHORITY_SCHEMA", pattern=r"^[a-z_][a-z0-9_]*$")
    caller_clock: bool = Field(False, validation_alias="CCXLIC_AUTHORITY_CALLER_CLOCK")
    """Simulation only: take a request's `at` as the time (a simulation walks months in minutes). Off, the wall clock:
    a product cannot register with an expired token or push its authorization out to the year 3000. On, the authority
    says so at start, in every answer's `clock`, and in `ccxlic_authority_caller_clock` (Prometheus alerts on it)."""
    tls_cert_file: str | None = Field(None, validation_alias="CCXLIC_AUTHORITY_TLS_CERT")
    tls_key_file: str | None = Field(None, validation_alias="CCXLIC_AUTHORITY_TLS_KEY")
    """Serve HTTPS with this certificate chain and key (PEM), as an SSM On-Prem does; both or neither."""

    @model_validator(mode="after")
    def _both_or_neither(self) -> AuthoritySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both CCXLIC_AUTHORITY_TLS_CERT and CCXLIC_AUTHORITY_TLS_KEY, or neither")
        return self

    @model_validator(mode="after")
    def _kafka_credentials(self) -> AuthoritySettings:
        """No Kafka client, so no Kafka user: the programs' shared environment (KAFKA_SECURITY_PROTOCOL=SASL_SSL with
        a user per program) is not an error here."""
        return self
