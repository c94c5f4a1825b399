"""The README keeps in step with the code: every environment variable is in its configuration table."""

from __future__ import annotations

from pathlib import Path

import pytest
from ccxlic_alerting.settings import AlertingSettings
from ccxlic_cli.main import CliSettings
from ccxlic_compliance.settings import ComplianceSettings
from ccxlic_consumption.settings import ConsumptionSettings
from ccxlic_runtime.settings import RuntimeSettings

README = (Path(__file__).parents[2] / "README.md").read_text()
TABLE = README.split("## Configuration (every variable)")[1].split("\n## ")[0]
VARIABLES = sorted(
    {
        str(f.validation_alias)
        for cls in (RuntimeSettings, ConsumptionSettings, ComplianceSettings, AlertingSettings, CliSettings)
        for f in cls.model_fields.values()
    }
)


@pytest.mark.parametrize("variable", VARIABLES)
def test_every_variable_is_in_the_configuration_table(variable: str) -> None:
    assert f"| `{variable}` |" in TABLE
