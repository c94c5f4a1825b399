"""The project's checker of the Grafana dashboards and Prometheus rules (ccxlic_testing.observability), and the rules'
own promtool checks. With the services' real /metrics it runs in tests/e2e/test_observability.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from ccxlic_testing.observability import (
    PROMETHEUS_OWN,
    check,
    dashboard_queries,
    exposed_names,
    metric_names,
    promtool_path,
    substitute,
)

ROOT = Path(__file__).parents[3]
PROMTOOL = promtool_path()
EXPOSITION = """# HELP ccxlic_x_total x
# TYPE ccxlic_x_total counter
ccxlic_x_total{a="1"} 1.0
# HELP ccxlic_h h
# TYPE ccxlic_h histogram
# HELP ccxlic_g g
# TYPE ccxlic_g gauge
"""


@pytest.fixture(scope="module")
def promtool() -> Path:
    assert PROMTOOL.exists(), f"promtool is not at {PROMTOOL}: run `make promtool`"
    return PROMTOOL


def test_the_rules_pass_promtool_check_rules_and_their_unit_tests(promtool: Path) -> None:
    for rules in (ROOT / "deploy/prometheus/rules").glob("*.yml"):
        done = subprocess.run([str(promtool), "check", "rules", str(rules)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    for tests in (ROOT / "deploy/prometheus/tests").glob("*.yml"):
        done = subprocess.run([str(promtool), "test", "rules", str(tests)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_cover_what_ops_alert_on() -> None:
    text = (ROOT / "deploy/prometheus/rules/ccx-licensing.yml").read_text()
    for metric in (
        "ccxlic_consumer_lag_records",
        "ccxlic_events_dead_lettered_total",
        "ccxlic_outbox_relay_failures_total",
        "ccxlic_ready_check",
        'ccxlic_compliance_authorization{state="out_of_compliance"}',
        "ccxlic_compliance_enforcement_active",
        'ccxlic_notifications_total{outcome="failed"}',
    ):
        assert metric in text, metric


def test_metric_names_come_from_the_syntax_tree_not_from_labels_or_functions() -> None:
    expr = 'sum by (service) (rate(a_total{service=~"x"}[5m])) / on (service) group_left b or vector(0) + time()'
    assert metric_names(expr) == {"a_total", "b"}
    assert metric_names("histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))") == {"h_bucket"}
    assert metric_names("max_over_time(g[10m:1m])") == {"g"}


def test_grafana_variables_are_replaced_before_parsing() -> None:
    assert substitute('rate(x{i=~"$product_instance"}[$__rate_interval])') == 'rate(x{i=~".*"}[5m])'
    assert substitute('y{i=~"${product_instance:regex}"}') == 'y{i=~".*"}'


def test_an_exposition_names_its_families_with_their_suffixes_even_without_series() -> None:
    names = exposed_names(EXPOSITION)
    assert {
        "ccxlic_x_total",
        "ccxlic_x_created",
        "ccxlic_h_bucket",
        "ccxlic_h_count",
        "ccxlic_h_sum",
        "ccxlic_g",
    } <= names
    assert "ccxlic_h" not in names and "up" in PROMETHEUS_OWN


def test_the_dashboard_has_the_panels_ops_need() -> None:
    dash = json.loads((ROOT / "deploy/grafana/dashboards/ccx-licensing.json").read_text())
    titles = {p["title"] for p in dash["panels"]}
    assert {
        "Seats in use against entitlement",
        "Compliance state over time",
        "Next deadlines",
        "Consumer lag (records)",
        "Dead letters",
        "Outbox relay failures",
        "Alert deliveries per channel",
    } <= titles
    queries = dashboard_queries(ROOT / "deploy/grafana/dashboards/ccx-licensing.json")
    assert any("variable" in q.where for q in queries)


def test_the_checker_names_a_metric_nobody_exposes_and_an_expression_that_does_not_parse(
    promtool: Path, tmp_path: Path
) -> None:
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    path = tmp_path / "deploy/grafana/dashboards/ccx-licensing.json"
    dash = json.loads(path.read_text())
    dash["panels"][1]["targets"][0]["expr"] = 'ccxlic_seats_in_usee{product_instance=~"$product_instance"}'
    dash["panels"][2]["targets"][0]["expr"] = "sum(rate(ccxlic_g[5m])"
    path.write_text(json.dumps(dash))
    before = set(check(promtool, {"fake": EXPOSITION}).problems)  # the fake exposition lacks most names
    after = set(check(promtool, {"fake": EXPOSITION}, root=tmp_path).problems)
    new = sorted(after - before)
    assert new == [
        "ccx-licensing.json: panel 'Instances out of compliance' A: names ccxlic_seats_in_usee, which no service "
        "exposes",
        "ccx-licensing.json: panel 'Seats in use against entitlement' A: does not parse: unclosed left parenthesis",
        "ccx-licensing.json: panel 'Seats in use against entitlement' A: promtool: could not parse expression: "
        "1:23: parse error: unclosed left parenthesis",
    ], new
    (tmp_path / "deploy/grafana/dashboards/broken.json").write_text("{not json")
    assert any("broken.json: not JSON" in p for p in check(promtool, {"fake": EXPOSITION}, root=tmp_path).problems)
