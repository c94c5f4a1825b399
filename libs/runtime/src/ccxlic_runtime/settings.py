"""Frozen settings from the environment, built once per process and passed down."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from ccxlic_contract.codec import describe
from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from ccxlic_runtime.channels import Email

DEFAULT_KAFKA = "127.0.0.1:9092"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/ccxlic"


_SHORT = re.compile(r"^(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def _seconds_or_iso(value: object) -> object:
    if isinstance(value, str):
        short = _SHORT.match(value.strip())
        if short:
            return timedelta(seconds=float(short.group(1)) * _UNIT[short.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(_seconds_or_iso)]
"""A duration from the environment: seconds (`2700`), a number with a unit (`100ms`, `45m`, `1d`) or ISO 8601
(`PT45M`, `P90D`)."""


def database_url_field(program: str) -> Any:
    """The `database_url` of one program: `CCXLIC_<PROGRAM>_DATABASE_URL` (its own login role, which owns its schema),
    else `DATABASE_URL`. The local stack writes one per program to `.stack/pg.env`."""
    return Field(
        SecretStr(DEFAULT_DATABASE_URL),
        validation_alias=AliasChoices(f"CCXLIC_{program.upper()}_DATABASE_URL", "DATABASE_URL"),
    )


def _names(cls: type[BaseSettings], field: str) -> str:
    """The environment variables a field reads, in the order they win ("A (or B)")."""
    alias = cls.model_fields[field].validation_alias
    names = [str(c) for c in alias.choices] if isinstance(alias, AliasChoices) else [str(alias or field).upper()]
    return names[0] + "".join(f" (or {n})" for n in names[1:])


def kafka_username_field(program: str) -> Any:
    """The `kafka_sasl_username` of one program: `CCXLIC_<PROGRAM>_KAFKA_SASL_USERNAME` (its own Kafka principal, which
    the ACLs of `ccxlic kafka setup` let write only its own topics), else `KAFKA_SASL_USERNAME`."""
    return Field(
        None,
        validation_alias=AliasChoices(f"CCXLIC_{program.upper()}_KAFKA_SASL_USERNAME", "KAFKA_SASL_USERNAME"),
        min_length=1,
    )


def kafka_password_field(program: str) -> Any:
    """Its password: `CCXLIC_<PROGRAM>_KAFKA_SASL_PASSWORD`, else `KAFKA_SASL_PASSWORD`."""
    return Field(
        None,
        validation_alias=AliasChoices(f"CCXLIC_{program.upper()}_KAFKA_SASL_PASSWORD", "KAFKA_SASL_PASSWORD"),
    )


class ConfigError(ValueError):
    """Configuration from the environment that is missing or invalid. The message names the variable."""


class RuntimeSettings(BaseSettings):
    """What every service reads from the environment. Services subclass it for their own settings."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False, populate_by_name=True)

    kafka_bootstrap_servers: str = Field(DEFAULT_KAFKA, validation_alias="KAFKA_BOOTSTRAP_SERVERS", min_length=1)
    # How every client (the services, the CLI, the simulator) reaches the broker: Kafka's own names. SASL_SSL with
    # SCRAM-SHA-512 is what `KAFKA_SECURITY=scram-tls make up` serves (its deploy/stack.sh writes these to client.env).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", validation_alias="KAFKA_SASL_MECHANISM"
    )
    kafka_sasl_username: str | None = Field(None, validation_alias="KAFKA_SASL_USERNAME", min_length=1)
    kafka_sasl_password: SecretStr | None = Field(None, validation_alias="KAFKA_SASL_PASSWORD")
    # The CA that signed the broker's certificate (PEM); unset: the system's CAs.
    kafka_ssl_cafile: FilePath | None = Field(None, validation_alias="KAFKA_SSL_CAFILE")
    # A secret: it may carry a password. Read it with `.get_secret_value()`; it is never shown in a repr, a log or an
    # error (redact_url shows the rest).
    database_url: SecretStr = Field(SecretStr(DEFAULT_DATABASE_URL), validation_alias="DATABASE_URL")
    topic_prefix: str = Field("", validation_alias="CCXLIC_TOPIC_PREFIX", pattern=r"^[A-Za-z0-9._-]*$")
    http_host: str = Field("127.0.0.1", validation_alias="CCXLIC_HTTP_HOST")
    # Where the users, sessions and API tokens live (libs/runtime auth.py): one schema every checking service shares.
    auth_schema: str = Field("auth", validation_alias="CCXLIC_AUTH_SCHEMA", pattern=r"^[a-z_][a-z0-9_]*$")
    log_level: str = Field("INFO", validation_alias="CCXLIC_LOG_LEVEL", pattern=r"(?i)^(debug|info|warning|error)$")
    db_pool_size: int = Field(5, validation_alias="CCXLIC_DB_POOL_SIZE", ge=1, le=100)
    # The reporting interval is shared: the consumption computer closes intervals, compliance tracks the current
    # interval's peak, and both must agree on where intervals begin.
    interval_seconds: int = Field(8 * 3600, validation_alias="CCXLIC_INTERVAL_SECONDS", ge=60)
    batch_size: int = Field(500, validation_alias="CCXLIC_BATCH_SIZE", ge=1, le=10000)
    # Dedup records older than this are deleted (0: kept for ever). Safe only when no input older than this can be
    # delivered again: the input topics' retention, and Kafka's offsets.retention for a group that was stopped.
    dedup_retention: Duration = Field(timedelta(0), validation_alias="CCXLIC_DEDUP_RETENTION")
    # Partitions of each topic keyed by instance, when this service creates it: the inputs are co-partitioned, and
    # as many workers of a service as partitions can share the work.
    partitions: int = Field(3, validation_alias="CCXLIC_PARTITIONS", ge=1, le=1000)
    # Distinct product instances a service labels its metrics with; further ones share the `_overflow` label.
    metrics_max_instances: int = Field(1000, validation_alias="CCXLIC_METRICS_MAX_INSTANCES", ge=1, le=100_000)
    # Of the topics a service creates: copies of each partition, and how many must have a write before the broker
    # acknowledges it (the producers ask for acks=all). One broker (the local stack): 1 and 1; a cluster: 3 and 2.
    replication_factor: int = Field(1, validation_alias="CCXLIC_REPLICATION_FACTOR", ge=1, le=16)
    min_insync_replicas: int = Field(1, validation_alias="CCXLIC_MIN_INSYNC_REPLICAS", ge=1, le=16)
    # The asyncio event loop: uvloop (libuv; less CPU per record, bench/README) or Python's own.
    event_loop: Literal["uvloop", "asyncio"] = Field("uvloop", validation_alias="CCXLIC_EVENT_LOOP")
    # Tests only: sleep this long before each batch (a slow consumer on demand).
    test_batch_delay: Duration = Field(timedelta(0), validation_alias="CCXLIC_TEST_BATCH_DELAY")

    @model_validator(mode="after")
    def _kafka_credentials(self) -> RuntimeSettings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and (not self.kafka_sasl_username or self.kafka_sasl_password is None):
            user, password = (_names(type(self), f) for f in ("kafka_sasl_username", "kafka_sasl_password"))
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs {user} and {password}")
        if not sasl and (self.kafka_sasl_username or self.kafka_sasl_password is not None):
            raise ValueError(
                "KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL="
                f"{self.kafka_security_protocol} would not use them; set it to SASL_SSL"
            )
        if self.kafka_security_protocol == "SASL_PLAINTEXT" and self.kafka_sasl_mechanism == "PLAIN":
            raise ValueError(
                "KAFKA_SASL_MECHANISM=PLAIN over KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT would send the password in "
                "clear; use SASL_SSL (or a SCRAM mechanism)"
            )
        return self

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> RuntimeSettings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"CCXLIC_MIN_INSYNC_REPLICAS ({self.min_insync_replicas}) cannot exceed CCXLIC_REPLICATION_FACTOR "
                f"({self.replication_factor}): no write could ever be acknowledged"
            )
        return self

    @field_validator("database_url")
    @classmethod
    def _postgres(cls, value: SecretStr) -> SecretStr:
        if not re.match(r"^postgres(ql)?://", value.get_secret_value()):
            raise ValueError("must be a PostgreSQL URL: postgresql://user[:password]@host[:port]/database")
        return value

    @field_validator("dedup_retention", "test_batch_delay")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value

    @field_validator("interval_seconds")
    @classmethod
    def _divides_a_day(cls, value: int) -> int:
        if 86400 % value:
            raise ValueError("must divide a day (86400 s) so intervals align to 00:00 UTC, e.g. 28800 for 8 h")
        return value


_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|sslpassword)=)([^&#]*)")


class SmtpSettings(RuntimeSettings):
    """The SMTP server a program mails through (alerting's notices, the authority's account notifications): one set of
    variables, `CCXLIC_SMTP_*`, and one channel (`ccxlic_runtime.channels.Email`)."""

    smtp_host: str = Field("", validation_alias="CCXLIC_SMTP_HOST")
    smtp_port: int = Field(25, validation_alias="CCXLIC_SMTP_PORT", ge=1, le=65535)
    # none: plain SMTP (port 25, no credentials); starttls: upgrade first (587), refused when the server cannot;
    # implicit: TLS from the first byte (SMTPS, 465). Credentials are only ever sent over TLS.
    smtp_tls: Literal["none", "starttls", "implicit"] = Field("none", validation_alias="CCXLIC_SMTP_TLS")
    smtp_ca_file: str | None = Field(None, validation_alias="CCXLIC_SMTP_CA_FILE")
    """Extra CA certificates (PEM) the SMTP server's certificate may chain to, besides the system's."""
    smtp_username: str = Field("", validation_alias="CCXLIC_SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(None, validation_alias="CCXLIC_SMTP_PASSWORD")
    smtp_from: str = Field("ccx-licensing@localhost", validation_alias="CCXLIC_SMTP_FROM")

    @model_validator(mode="after")
    def _credentials_over_tls(self) -> SmtpSettings:
        if (self.smtp_username or self.smtp_password) and self.smtp_tls == "none":
            raise ValueError(
                "CCXLIC_SMTP_USERNAME / CCXLIC_SMTP_PASSWORD are set but CCXLIC_SMTP_TLS is none: a password is never "
                "sent in clear; set CCXLIC_SMTP_TLS=starttls (port 587) or implicit (465)"
            )
        return self

    def email(self, recipients: list[str], timeout: float) -> Email | None:
        """The email channel to `recipients` (a notification may name its own), or None without CCXLIC_SMTP_HOST."""
        if not self.smtp_host:
            return None
        return Email(
            self.smtp_host,
            self.smtp_port,
            self.smtp_from,
            recipients,
            self.smtp_tls,
            self.smtp_username or None,
            self.smtp_password.get_secret_value() if self.smtp_password else None,
            timeout,
            ca_file=self.smtp_ca_file,
        )


def redact_url(url: str) -> str:
    """A URL with its passwords replaced by `***` (the user info's, and a `password` or `sslpassword` parameter of
    the query string, as libpq takes them); user, host and the rest kept, to say where."""
    return _QUERY_SECRET.sub(r"\1***", re.sub(r"://([^:@/]*):[^@/]*@", r"://\1:***@", url))


def _host_of(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.hostname or '?'}/…"


def url_secrets(url: str) -> list[str]:
    """The passwords a URL holds, as written and decoded: what no message may quote."""
    found = [m.group(1) for m in re.finditer(r"://[^:@/]*:([^@/]+)@", url)]
    found += [m.group(2) for m in _QUERY_SECRET.finditer(url) if m.group(2)]
    return sorted({*found, *(unquote(f) for f in found)} - {""}, key=len, reverse=True)


S = TypeVar("S", bound=RuntimeSettings)


def load_settings(cls: type[S], **overrides: object) -> S:
    """Build settings from the environment (and overrides); raise ConfigError naming what is wrong.

    With `CCXLIC_SECRETS_DIR` set, a variable may also come from a file of that directory named after it (a
    Kubernetes Secret or a compose volume mounted there, e.g. `DATABASE_URL`); the environment wins over a file."""
    secrets_dir = os.environ.get("CCXLIC_SECRETS_DIR") or None
    if secrets_dir is not None and not os.path.isdir(secrets_dir):
        raise ConfigError(f"invalid configuration: CCXLIC_SECRETS_DIR={secrets_dir!r}: not a directory")
    try:
        return cls(_secrets_dir=secrets_dir, **overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        fields = dict(cls.model_fields)
        for f in cls.model_fields.values():
            aliases = (
                f.validation_alias.choices if isinstance(f.validation_alias, AliasChoices) else [f.validation_alias]
            )
            fields.update({str(a): f for a in aliases if a})
        parts = []
        for err in exc.errors(include_url=False):
            if not err["loc"]:  # a rule across several variables: its message names them
                parts.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            name = str(err["loc"][0])
            field = fields.get(name)
            alias = name
            if field is not None and isinstance(field.validation_alias, str):
                alias = field.validation_alias
            elif field is not None and isinstance(field.validation_alias, AliasChoices):
                # pydantic names the first choice; say the one that was set (the first set wins)
                choices = [str(c) for c in field.validation_alias.choices]
                alias = next((c for c in choices if c in os.environ), " or ".join(choices))
            given = err.get("input")
            if field is not None and field.annotation in (SecretStr, SecretStr | None):
                host_only = isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("show") == "host"
                if "://" not in str(given):
                    given = "(hidden)"
                elif host_only:  # URLs whose path and query are secret too (webhooks): scheme and host only
                    given = ",".join(_host_of(u) for u in str(given).split(","))
                else:
                    given = redact_url(str(given))
            parts.append(f"{alias}={given!r}: {str(err['msg']).removeprefix('Value error, ')}")
        raise ConfigError("invalid configuration: " + "; ".join(parts)) from None


__all__ = [
    "ConfigError",
    "Duration",
    "RuntimeSettings",
    "database_url_field",
    "describe",
    "kafka_password_field",
    "kafka_username_field",
    "load_settings",
    "redact_url",
    "url_secrets",
]
