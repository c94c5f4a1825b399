"""The one image (./Dockerfile). No Docker engine runs here: hadolint lints it, its install step runs as written, and
its shape (pinned base, non-root user, health check, entrypoint) is read from the file."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.deploy.programs import parse

ROOT = Path(__file__).parents[3]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
HADOLINT = Path(sys.executable).parent / "hadolint"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


def test_hadolint_passes_the_dockerfile_and_refuses_a_careless_one(tmp_path: Path) -> None:
    ok = subprocess.run([str(HADOLINT), "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN pip install uv\nCMD ccxlic\n")
    bad = subprocess.run([str(HADOLINT), str(careless)], capture_output=True, text=True)
    assert bad.returncode != 0
    assert "DL3007" in bad.stdout  # latest
    assert "DL3013" in bad.stdout  # an unpinned pip install


def test_the_base_is_pinned_by_version_and_digest_and_both_stages_use_it() -> None:
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", DOCKERFILE, re.M))
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+@sha256:[0-9a-f]{64}", base), base
    froms = [a for i, a in instructions() if i == "FROM"]
    assert len(froms) == 2
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)


def test_it_runs_as_a_user_other_than_root_with_ccxlic_as_entrypoint_and_a_health_check() -> None:
    final = instructions()[[i for i, _ in instructions()].index("FROM", 1) :]
    users = [a for i, a in final if i == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    assert ("ENTRYPOINT", '["ccxlic"]') in final
    health = [a for i, a in final if i == "HEALTHCHECK"]
    assert len(health) == 1
    command = health[0].split(" CMD ", 1)[1]
    assert command == '["ccxlic", "health"]'
    assert parse(["health"]) == "ccxlic health"


def test_the_install_step_as_written_installs_the_locked_programs_without_the_test_tools(tmp_path: Path) -> None:
    (sync,) = [a for i, a in instructions() if i == "RUN" and a.startswith("uv sync")]
    argv = shlex.split(sync)
    assert "--frozen" in argv and "--no-dev" in argv
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    modules = [
        "ccxlic_cli",
        *(f"ccxlic_{s}" for s in ("consumption", "compliance", "alerting", "agent", "authority", "console")),
    ]
    check = (
        'import importlib.util as u, sys; sys.exit(" ".join(m for m in sys.argv[1:] if u.find_spec(m) is None) or None)'
    )
    present = subprocess.run([str(venv / "bin" / "python"), "-c", check, *modules], capture_output=True, text=True)
    assert present.returncode == 0, present.stderr
    absent = subprocess.run(
        [str(venv / "bin" / "python"), "-c", check, "pytest", "ccxlic_testing", "mypy"], capture_output=True, text=True
    )
    assert "pytest" in absent.stderr and "ccxlic_testing" in absent.stderr and "mypy" in absent.stderr
    shown = subprocess.run([str(venv / "bin" / "ccxlic"), "serve", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "ticker" in shown.stdout


@pytest.mark.parametrize("port", ["8180", "8181", "8182", "8183", "8184", "8190"])
def test_it_exposes_every_service_port(port: str) -> None:
    (exposed,) = [a for i, a in instructions() if i == "EXPOSE"]
    assert port in exposed.split()
