"""The README keeps in step with the code: every environment variable is in its configuration table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ccxlic_agent.settings import AgentSettings
from ccxlic_alerting.settings import AlertingSettings
from ccxlic_authority.settings import AuthoritySettings
from ccxlic_cli.main import CliSettings
from ccxlic_compliance.settings import ComplianceSettings
from ccxlic_console.settings import ConsoleSettings
from ccxlic_consumption.settings import ConsumptionSettings
from ccxlic_runtime.settings import RuntimeSettings
from pydantic import AliasChoices

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
TABLE = README.split("## Configuration (every variable)")[1].split("\n## ")[0]
VARIABLES = sorted(
    {
        str(alias)
        for cls in (
            RuntimeSettings,
            ConsumptionSettings,
            ComplianceSettings,
            AlertingSettings,
            AuthoritySettings,
            AgentSettings,
            ConsoleSettings,
            CliSettings,
        )
        for f in cls.model_fields.values()
        for alias in (
            f.validation_alias.choices if isinstance(f.validation_alias, AliasChoices) else [f.validation_alias]
        )
    }
)


@pytest.mark.parametrize("variable", VARIABLES)
def test_every_variable_is_in_the_configuration_table(variable: str) -> None:
    assert f"| `{variable}` |" in TABLE


NOT_SETTINGS = {
    # read by deploy/stack.sh, make or the tests, not by a service
    "KAFKA_SECURITY",
    "KAFKA_PROXIED_PORT",
    "KAFKA_PROXY_PORT",
    "CCXLIC_PG_SUPERUSER_URL",
    "KAFKA_PORT",
    "KAFKA_CONTROLLER_PORT",
    "PG_PORT",
    "PG_DATABASE",
    "CCXLIC_STACK_DIR",
    "CCXLIC_CACHE_DIR",
    "CCXLIC_PG_FALLBACK_DIR",
    # read by the runtime's settings loader, `ccxlic serve`/`health`, and the observability check
    "CCXLIC_SECRETS_DIR",
    "CCXLIC_RUN_DIR",
    "CCXLIC_PROMTOOL",
    "CCXLIC_FUZZ_EXAMPLES",
    "CCXLIC_CHROMIUM",
    "CCXLIC_SCREENSHOTS",
}


@pytest.mark.parametrize("variable", sorted(NOT_SETTINGS))
def test_every_variable_outside_the_services_is_read_where_it_is_said_to_be(variable: str) -> None:
    readers = [
        ROOT / "deploy" / "stack.sh",
        ROOT / "deploy" / "install-deps.sh",
        ROOT / "Makefile",
        ROOT / "bench" / "chaos.py",
        *sorted((ROOT / "tests").rglob("*.py")),
        *sorted((ROOT / "libs").rglob("src/**/*.py")),
        *sorted((ROOT / "services").rglob("src/**/*.py")),
    ]
    assert any(variable in path.read_text() for path in readers if path.name != "test_docs.py")


def test_the_readme_names_no_variable_the_code_does_not_read() -> None:
    """A variable dropped from the code (say, a data directory for a framework no longer used) goes from the docs."""
    named = set(re.findall(r"`((?:CCXLIC|KAFKA|PG)_[A-Z0-9_]+|DATABASE_URL)", README))
    named = {n for n in named if not n.endswith("_")}
    assert sorted(named - set(VARIABLES) - NOT_SETTINGS) == []
