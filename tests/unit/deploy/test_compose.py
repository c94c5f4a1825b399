"""docker-compose.yml: valid against the compose-spec schema, every command given to our image is a `ccxlic` command
that parses, every variable it sets is one the programs read, and it has what an ops team expects of it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.programs import SETTINGS, parse, program_settings
from tests.unit.test_docs import VARIABLES

ROOT = Path(__file__).parents[3]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
OURS = {name: s for name, s in SERVICES.items() if "build" in s}
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def test_it_is_valid_against_the_compose_spec_schema_which_refuses_a_typo(tmp_path: Path) -> None:
    ok = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    typo = tmp_path / "compose.yml"
    typo.write_text((ROOT / "docker-compose.yml").read_text().replace("restart: unless-stopped", "restrat: always", 1))
    bad = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(typo)], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "restrat" in bad.stdout


def test_every_program_runs_from_the_one_image_with_a_command_that_ccxlic_has() -> None:
    assert set(OURS) == {
        "authority", "consumption", "compliance", "alerting", "agent", "console", "ticker", "ccxlic"
    }  # fmt: skip
    for name, service in OURS.items():
        assert service["build"] == ".", name
        assert service["image"] == OURS["consumption"]["image"], name
        assert parse(service["command"]).startswith("ccxlic"), name
    assert {n: OURS[n]["command"][:2] for n in OURS if n != "ccxlic"} == {
        n: ["serve", n] for n in OURS if n != "ccxlic"
    }


def test_a_command_ccxlic_does_not_have_is_caught() -> None:
    with pytest.raises(Exception, match="serv"):
        parse(["serv", "consumption"])
    with pytest.raises(Exception, match="ticker"):
        parse(["serve", "tickr"])


def test_every_variable_given_to_our_programs_is_one_they_read() -> None:
    for name, service in OURS.items():
        for var in service.get("environment", {}):
            assert var in VARIABLES or var == "CCXLIC_SECRETS_DIR", f"{name}: {var} is read by no program"


def test_kafka_gets_a_valid_kraft_cluster_id() -> None:
    import base64

    cluster = SERVICES["kafka"]["environment"]["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster + "==")) == 16 and cluster[0] not in "-_"


def test_restart_policies_volumes_and_pinned_images() -> None:
    for name, service in SERVICES.items():
        if name in ("secrets", "ccxlic"):
            assert service["restart"] == "no", name  # one-shot jobs
        else:
            assert service["restart"] == "unless-stopped", name
        if "build" not in service:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", service["image"]), name
    mounts = {name: [str(v) for v in s.get("volumes", [])] for name, s in SERVICES.items()}
    assert any(m.startswith("kafka-data:") for m in mounts["kafka"])
    assert any(m.startswith("pg-data:/var/lib/postgresql/data") for m in mounts["postgres"])
    assert set(COMPOSE["volumes"]) >= {"kafka-data", "pg-data", "prometheus-data", "grafana-data", "secrets"}


def test_postgresql_takes_passwords_and_each_program_gets_only_its_own_url() -> None:
    pg = SERVICES["postgres"]["environment"]
    assert pg["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    assert "trust" not in (ROOT / "docker-compose.yml").read_text()
    assert "POSTGRES_PASSWORD" not in pg  # from a file the secrets job wrote
    for name, service in OURS.items():
        if name == "ticker":
            assert not service.get("volumes"), "the ticker needs no database"
            assert service["environment"]["CCXLIC_SECRETS_DIR"] == "", "a secrets dir that is not mounted stops it"
            continue
        (secret,) = [v for v in service["volumes"] if isinstance(v, dict) and v["source"] == "secrets"]
        program = "cli" if name == "ccxlic" else name
        assert secret["volume"]["subpath"] == program and secret["read_only"] is True
        assert secret["target"] == service.get("environment", OURS["consumption"]["environment"])["CCXLIC_SECRETS_DIR"]
    # the roles come from the same script as the local stack's
    script = (ROOT / "deploy/compose/postgres-roles.sh").read_text()
    assert "pg_roles_sql" in script and ". /ccxlic/pg-roles.sh" in script
    assert "pg-roles.sh" in (ROOT / "deploy/stack.sh").read_text()


def test_prometheus_and_grafana_are_provisioned_from_the_repository() -> None:
    for name in ("prometheus", "grafana"):
        for mount in SERVICES[name]["volumes"]:
            if isinstance(mount, str) and mount.startswith("./"):
                assert (ROOT / mount.split(":")[0]).exists(), mount
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert prometheus["rule_files"]
    targets = {t for job in prometheus["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    ports = {n: s["ports"][0].rsplit(":", 1)[1] for n, s in OURS.items() if s.get("ports")}
    assert targets == {f"{n}:{p}" for n, p in ports.items()}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_each_program_accepts_the_settings_compose_gives_it(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = OURS[name].get("environment", OURS["consumption"]["environment"])
    mounted = any(isinstance(v, dict) and v["source"] == "secrets" for v in OURS[name].get("volumes", []))
    given = {}
    for var, value in env.items():
        value = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))  # compose's ${VAR:-default}, nothing set
        if var == "CCXLIC_SECRETS_DIR" and value:
            assert mounted, f"{name}: {value} is not mounted"
            (tmp_path / "DATABASE_URL").write_text(f"postgresql://ccxlic_{name}:pw@postgres:5432/ccxlic\n")
            value = str(tmp_path)
        given[var] = value
    settings = program_settings(name, given, monkeypatch)
    assert settings.kafka_bootstrap_servers == "kafka:29092"
    if mounted:
        assert settings.database_url.get_secret_value().startswith(f"postgresql://ccxlic_{name}:")


def test_no_shipped_config_runs_the_authority_on_the_callers_clock() -> None:
    """Simulation mode lets a product set the authority's time: compose and Kubernetes never turn it on."""
    repo = Path(__file__).resolve().parents[3]
    configs = [repo / "docker-compose.yml", *sorted((repo / "deploy" / "k8s").rglob("*.y*ml"))]
    assert len(configs) > 3
    for path in configs:
        text = path.read_text()
        assert not re.search(r"CCXLIC_AUTHORITY_CALLER_CLOCK\W+[\"']?(true|1|yes)", text, re.I), path
