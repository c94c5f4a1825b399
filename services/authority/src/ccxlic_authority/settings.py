"""The authority's settings (from the environment). It needs PostgreSQL only: no Kafka."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from ccxlic_runtime.settings import Duration, SmtpSettings, database_url_field
from pydantic import Field, SecretStr, model_validator


class AuthoritySettings(SmtpSettings):
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
    mode: Literal["central", "onprem"] = Field("central", validation_alias="CCXLIC_AUTHORITY_MODE")
    """central: the accounts, deposits and the on-prems' usage (Cisco SSM). onprem: an SSM On-Prem, which serves the
    virtual accounts the central gave it and synchronises with it (connected or by files)."""
    name: str = Field("central", validation_alias="CCXLIC_AUTHORITY_NAME", pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    """This authority's name in sync files (an on-prem is registered at the central under it)."""
    central_key_file: str | None = Field(None, validation_alias="CCXLIC_AUTHORITY_CENTRAL_KEY")
    """onprem: the central authority's public key (PEM, its `GET /v1/keys`): only answers it signed are applied."""
    central_url: str | None = Field(None, validation_alias="CCXLIC_AUTHORITY_CENTRAL_URL", pattern=r"^https://\S+$")
    """onprem, connected: the central authority (HTTPS only); unset, the on-prem is disconnected (sync by files)."""
    central_ca_file: str | None = Field(None, validation_alias="CCXLIC_AUTHORITY_CENTRAL_CA_FILE")
    """Extra CA certificates (PEM) the central's certificate may chain to, besides the system's."""
    sync_every: Duration = Field(timedelta(hours=1), validation_alias="CCXLIC_AUTHORITY_SYNC_EVERY", gt=timedelta(0))
    """onprem, connected: how often it synchronises (and once at start)."""
    sweep_every: Duration = Field(
        timedelta(minutes=1), validation_alias="CCXLIC_AUTHORITY_SWEEP_EVERY", gt=timedelta(0)
    )
    """How often the authority looks for missed authorizations and accounts entering enforcement (to notify)."""
    notify_timeout_seconds: float = Field(10.0, validation_alias="CCXLIC_AUTHORITY_NOTIFY_TIMEOUT_SECONDS", gt=0)

    @model_validator(mode="after")
    def _both_or_neither(self) -> AuthoritySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both CCXLIC_AUTHORITY_TLS_CERT and CCXLIC_AUTHORITY_TLS_KEY, or neither")
        return self

    @model_validator(mode="after")
    def _onprem_knows_its_central(self) -> AuthoritySettings:
        if self.mode == "onprem":
            if self.name == "central":
                raise ValueError("an on-prem authority needs CCXLIC_AUTHORITY_NAME: the name the central knows it by")
            if self.central_key_file is None:
                raise ValueError(
                    "an on-prem authority needs CCXLIC_AUTHORITY_CENTRAL_KEY: the central's public key (PEM), to "
                    "apply only the answers it signed"
                )
        elif self.central_url is not None or self.central_key_file is not None:
            raise ValueError("CCXLIC_AUTHORITY_CENTRAL_URL / _KEY are for CCXLIC_AUTHORITY_MODE=onprem")
        return self

    @model_validator(mode="after")
    def _kafka_credentials(self) -> AuthoritySettings:
        """No Kafka client, so no Kafka user: the programs' shared environment (KAFKA_SECURITY_PROTOCOL=SASL_SSL with
        a user per program) is not an error here."""
        return self
