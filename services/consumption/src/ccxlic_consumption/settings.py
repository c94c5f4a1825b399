"""The consumption computer's settings: the runtime's, plus its own (all from the environment)."""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path

from ccxlic_runtime.settings import RuntimeSettings
from pydantic import Field

from ccxlic_consumption.machine import Rules


class ConsumptionSettings(RuntimeSettings):
    http_port: int = Field(8181, validation_alias="CCXLIC_CONSUMPTION_HTTP_PORT", ge=0, le=65535)
    schema_name: str = Field("consumption", validation_alias="CCXLIC_CONSUMPTION_SCHEMA", pattern=r"^[a-z_][a-z0-9_]*$")
    group_id: str = Field("ccxlic-consumption", validation_alias="CCXLIC_CONSUMPTION_GROUP")
    lateness_seconds: int = Field(300, validation_alias="CCXLIC_LATENESS_SECONDS", ge=0)
    max_session_seconds: int = Field(24 * 3600, validation_alias="CCXLIC_MAX_SESSION_SECONDS", ge=60)
    # faust insists on a data directory (our tables live in PostgreSQL, so it stays empty); keep it out of the cwd,
    # and one per user, so two users of a machine do not trip over each other's
    data_dir: Path = Field(
        Path(tempfile.gettempdir()) / f"ccxlic-consumption-{os.getuid()}",
        validation_alias="CCXLIC_CONSUMPTION_DATA_DIR",
    )

    def rules(self) -> Rules:
        return Rules(
            interval=timedelta(seconds=self.interval_seconds),
            lateness=timedelta(seconds=self.lateness_seconds),
            max_session=timedelta(seconds=self.max_session_seconds),
        )
