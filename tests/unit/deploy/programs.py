"""What compose and Kubernetes give each program: a `ccxlic` command line that must parse, and settings it must
accept."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from ccxlic_cli.main import app
from ccxlic_runtime.settings import RuntimeSettings, load_settings
from typer.main import get_command

SETTINGS = {
    "consumption": "ccxlic_consumption.settings:ConsumptionSettings",
    "compliance": "ccxlic_compliance.settings:ComplianceSettings",
    "alerting": "ccxlic_alerting.settings:AlertingSettings",
    "agent": "ccxlic_agent.settings:AgentSettings",
    "authority": "ccxlic_authority.settings:AuthoritySettings",
    "console": "ccxlic_console.settings:ConsoleSettings",
    "ticker": "ccxlic_cli.common:CliSettings",
    "ccxlic": "ccxlic_cli.common:CliSettings",
}
"""Each program the image runs (a compose service, a Deployment) -> the settings class it loads."""


def program_settings(program: str, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> RuntimeSettings:
    """The settings `program` loads from exactly `env` (nothing of this process's own KAFKA_*/CCXLIC_*/DATABASE_URL)."""
    for var in [v for v in os.environ if v.startswith(("CCXLIC_", "KAFKA_")) or v == "DATABASE_URL"]:
        monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    module, cls = SETTINGS[program].split(":")
    return load_settings(getattr(importlib.import_module(module), cls))


def parse(args: Sequence[str]) -> str:
    """The path of the leaf command `ccxlic ARGS` would run, its arguments and options parsed (not run); raises the
    CLI's usage error when it does not parse. A `--help` is a valid command line."""
    cmd: Any = get_command(app)
    path = ["ccxlic"]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            ctx = cmd.make_context("ccxlic", list(args))
            while hasattr(cmd, "commands"):  # a group: the next word names its command
                rest = [*ctx._protected_args, *ctx.args]
                if not rest:
                    raise ValueError(f"`ccxlic {' '.join(args)}` names no command")
                name, cmd, rest = cmd.resolve_command(ctx, rest)
                path.append(name)
                ctx = cmd.make_context(name, rest, parent=ctx)
    except Exception as exc:
        if type(exc).__name__ == "Exit" and getattr(exc, "exit_code", 1) == 0:  # --help printed and left
            return " ".join(path)
        raise
    return " ".join(path)
