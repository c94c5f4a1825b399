"""deploy/k8s: the kustomize base renders (kustomize, built from its Go module), every resource it renders is valid
against the Kubernetes schemas (kubernetes-validate, strict), and the workloads have what the README promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ccxlic_testing.plugin import tool_cache

from tests.unit.deploy.programs import parse, program_settings
from tests.unit.test_docs import VARIABLES

ROOT = Path(__file__).parents[3]
BASE = ROOT / "deploy/k8s"
KUSTOMIZE_VERSION = (ROOT / "deploy/kustomize.version").read_text().strip()
KUSTOMIZE = tool_cache() / f"kustomize-{KUSTOMIZE_VERSION}" / "kustomize"
VALIDATE = Path(sys.executable).parent / "kubernetes-validate"
PORTS = {"consumption": 8181, "compliance": 8182, "alerting": 8183, "agent": 8184, "authority": 8190, "console": 8180}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert KUSTOMIZE.exists(), f"kustomize is not at {KUSTOMIZE}: run `make kustomize`"
    done = subprocess.run([str(KUSTOMIZE), "build", str(BASE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    path = tmp_path_factory.mktemp("k8s") / "rendered.yaml"
    path.write_text(done.stdout)
    return path


@pytest.fixture(scope="module")
def resources(rendered: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered.read_text()) if d}


def test_every_rendered_resource_is_valid_against_the_kubernetes_schemas(rendered: Path) -> None:
    done = subprocess.run([str(VALIDATE), "--strict", str(rendered)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("passed") == len([d for d in yaml.safe_load_all(rendered.read_text()) if d])


def test_the_validation_refuses_a_broken_manifest(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all((BASE / "consumption.yaml").read_text()))
    docs[0]["spec"]["replicas"] = "two"
    docs[0]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/readyz"}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    done = subprocess.run([str(VALIDATE), "--strict", str(broken)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "replicas" in done.stdout + done.stderr


def test_the_base_lists_every_file_of_it() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml"
    )


def test_a_deployment_per_program_with_probes_resources_settings_and_its_own_secret(
    resources: dict[tuple[str, str], dict[str, Any]],
) -> None:
    deployments = {n.removeprefix("ccxlic-"): d for (k, n), d in resources.items() if k == "Deployment"}
    assert set(deployments) == {*PORTS, "ticker"}
    config = resources[("ConfigMap", "ccxlic-config")]["data"]
    assert set(config) <= set(VARIABLES), set(config) - set(VARIABLES)
    secret_keys = set(resources[("Secret", "ccxlic-database")]["stringData"])
    for name, d in deployments.items():
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "ccx-licensing"
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (c,) = pod["containers"]
        assert (
            c["image"]
            == f"ccx-licensing:{yaml.safe_load((BASE / 'kustomization.yaml').read_text())['images'][0]['newTag']}"
        )
        assert c["args"][:2] == ["serve", name] and parse(c["args"]) == "ccxlic serve"
        assert c["envFrom"] == [{"configMapRef": {"name": "ccxlic-config"}}]
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
        assert c["resources"]["limits"]["memory"]
        kafka = [e for e in c.get("env", []) if "KAFKA" in e["name"]]
        if name != "authority":  # its Kafka user (ACLs), from its own keys of an optional Secret
            own = "cli" if name == "ticker" else name
            assert kafka == [
                {
                    "name": f"CCXLIC_{own.upper()}_KAFKA_SASL_{part.upper()}",
                    "valueFrom": {"secretKeyRef": {"name": "ccxlic-kafka", "key": f"{own}-{part}", "optional": True}},
                }
                for part in ("username", "password")
            ]
        if name == "ticker":
            assert d["spec"]["replicas"] == 1
            assert parse(c["livenessProbe"]["exec"]["command"][1:]) == "ccxlic health"
            continue
        assert d["spec"]["replicas"] >= 2
        env = c["env"][0]
        assert env == {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "ccxlic-database", "key": name}}}
        assert len(c["env"]) == 1 + len(kafka)
        assert name in secret_keys
        assert c["ports"] == [{"name": "http", "containerPort": PORTS[name]}]
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        service = resources[("Service", f"ccxlic-{name}")]
        assert service["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
        assert service["spec"]["ports"][0]["port"] == PORTS[name]
        assert config[f"CCXLIC_{name.upper()}_URL"] == f"http://ccxlic-{name}:{PORTS[name]}"
        pdb = resources[("PodDisruptionBudget", f"ccxlic-{name}")]
        assert pdb["spec"]["selector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"]
        assert pdb["spec"]["maxUnavailable"] == 1


def test_every_program_accepts_the_configmap_and_its_secret(
    resources: dict[tuple[str, str], dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = resources[("ConfigMap", "ccxlic-config")]["data"]
    secret = resources[("Secret", "ccxlic-database")]["stringData"]
    for name in [*PORTS, "ticker"]:
        env = config | ({"DATABASE_URL": secret[name]} if name in secret else {})
        settings = program_settings(name, env, monkeypatch)
        assert settings.replication_factor == 3 and settings.partitions == 6, name


def test_the_kafka_setup_job_runs_ccxlic_kafka_setup_as_the_admin_of_an_optional_secret(
    resources: dict[tuple[str, str], dict[str, Any]],
) -> None:
    job = resources[("Job", "ccxlic-kafka-setup")]
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert parse(c["args"]) == "ccxlic kafka setup" and pod["securityContext"]["runAsNonRoot"] is True
    assert {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]} == {
        "KAFKA_SASL_USERNAME": {"name": "ccxlic-kafka-admin", "key": "username", "optional": True},
        "KAFKA_SASL_PASSWORD": {"name": "ccxlic-kafka-admin", "key": "password", "optional": True},
    }


def test_with_sasl_every_program_reads_its_own_kafka_user(
    resources: dict[tuple[str, str], dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = resources[("ConfigMap", "ccxlic-config")]["data"] | {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}
    secret = resources[("Secret", "ccxlic-database")]["stringData"]
    for name, d in {n.removeprefix("ccxlic-"): d for (k, n), d in resources.items() if k == "Deployment"}.items():
        (c,) = d["spec"]["template"]["spec"]["containers"]
        given = {
            e["name"]: f"from-{e['valueFrom']['secretKeyRef']['key']}" for e in c.get("env", []) if "KAFKA" in e["name"]
        }
        env = config | given | ({"DATABASE_URL": secret[name]} if name in secret else {})
        settings = program_settings(name, env, monkeypatch)
        own = "cli" if name == "ticker" else name
        assert settings.kafka_sasl_username == (None if name == "authority" else f"from-{own}-username"), name
