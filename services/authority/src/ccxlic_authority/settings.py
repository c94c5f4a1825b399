"""The authority's settings (from the environment). It needs PostgreSQL only: no Kafka."""

from __future__ import annotations

from ccxlic_runtime.settings import RuntimeSettings
from pydantic import Field


class AuthoritySettings(RuntimeSettings):
    http_port: int = Field(8190, validation_alias="CCXLIC_AUTHORITY_HTTP_PORT", ge=0, le=65535)
    schema_name: str = Field("authority", validation_alias="CCXLIC_AUTHORITY_SCHEMA", pattern=r"^[a-z_][a-z0-9_]*$")
    caller_clock: bool = Field(True, validation_alias="CCXLIC_AUTHORITY_CALLER_CLOCK")
    """Take a request's `at` as the time (labs and simulations walk months in minutes); false: the wall clock."""
