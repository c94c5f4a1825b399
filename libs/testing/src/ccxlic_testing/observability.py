"""Check what ops teams load into Grafana and Prometheus against what the services expose.

    python -m ccxlic_testing.observability --metrics http://127.0.0.1:8181/metrics --metrics ...

- every dashboard of deploy/grafana/dashboards/ loads as JSON, and every PromQL expression in it (panels and
  template variables) parses: they go to promtool as the rules of a generated file (`promtool check rules`);
- the rules of deploy/prometheus/rules/ pass `promtool check rules`, and their unit tests (deploy/prometheus/tests/)
  pass `promtool test rules`;
- every exposition given with --metrics passes `promtool check metrics`;
- every metric that a dashboard or a rule names is one those expositions expose (or a rule records, or Prometheus
  makes itself: `up`).

Grafana's own dashboard linter is not reachable from here, so this is the project's. promtool comes from
`make promtool` (built from the Prometheus Go module, cached); --promtool or CCXLIC_PROMTOOL names another.
Exit 0 when all holds, else 1 with every problem on its own line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser
import yaml

from ccxlic_testing.plugin import tool_cache

ROOT = Path(__file__).resolve().parents[4]
PROMTOOL_VERSION = (ROOT / "deploy" / "promtool.version").read_text().strip()
"""The version of the Prometheus Go module promtool is built from (Prometheus 3.x): deploy/install-deps.sh promtool."""

PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Grafana's variables, replaced by something of their kind before parsing.
GRAFANA_VARIABLES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h", "__range_s": "3600"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*$")


def promtool_path(given: str | None = None) -> Path:
    """--promtool, else CCXLIC_PROMTOOL, else where `make promtool` caches it (`tool_cache()`)."""
    if given or os.environ.get("CCXLIC_PROMTOOL"):
        return Path(given or os.environ["CCXLIC_PROMTOOL"])
    return tool_cache() / f"promtool-{PROMTOOL_VERSION}" / "promtool"


@dataclass(frozen=True)
class Query:
    where: str
    expr: str


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def add(self, problem: str) -> None:
        self.problems.append(problem)


def substitute(expr: str) -> str:
    """A Grafana query with its variables replaced: interval variables by a duration, others by `.*` (they sit in
    label matchers)."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return GRAFANA_VARIABLES.get(name, ".*")

    return _VARIABLE.sub(one, expr)


def _panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


def dashboard_queries(path: Path) -> list[Query]:
    """Every PromQL expression of a dashboard: its panels' targets and its query variables (label_values(X, l)
    contributes X). Raises ValueError when the file is not a dashboard's JSON."""
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name}: not JSON: {exc}") from None
    if not isinstance(dash, dict) or not isinstance(dash.get("panels"), list):
        raise ValueError(f"{path.name}: not a dashboard (no panels)")
    out: list[Query] = []
    for p in _panels(dash["panels"]):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append(Query(f"{path.name}: panel {p.get('title')!r} {t.get('refId', '')}", substitute(t["expr"])))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        text = q.get("query", "") if isinstance(q, dict) else str(q or "")
        m = _LABEL_VALUES.match(text)
        out.append(Query(f"{path.name}: variable {v.get('name')!r}", substitute(m.group(1) if m else text)))
    return out


def rule_queries(path: Path) -> tuple[list[Query], set[str]]:
    """The expressions of a rules file and the names it records."""
    doc = yaml.safe_load(path.read_text()) or {}
    queries, recorded = [], set()
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("record") or rule.get("alert")
            queries.append(Query(f"{path.name}: {name}", str(rule["expr"])))
            if "record" in rule:
                recorded.add(rule["record"])
    return queries, recorded


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (from promql_parser's syntax tree)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if node is None:
            return
        if type(node).__name__ == "VectorSelector":
            if node.name:
                names.add(node.name)
            return
        for attr in ("expr", "lhs", "rhs", "param", "vector_selector"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, str | int | float):
                walk(child)
        for arg in getattr(node, "args", None) or []:
            walk(arg)

    walk(promql_parser.parse(expr))
    return names


def exposed_names(exposition: str) -> set[str]:
    """The sample names a Prometheus text exposition can carry: its families' (from # TYPE, so a labelled metric with
    no series yet counts) with their suffixes, and every sample's."""
    names: set[str] = set()
    suffixes = {
        "counter": ("", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "untyped": ("",),
    }
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            base = name.removesuffix("_total") if kind == "counter" else name
            names.update((name,) if kind == "counter" else ())
            names.update(base + s for s in suffixes.get(kind, ("",)))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def _promtool(promtool: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], input=stdin, capture_output=True, text=True, timeout=120)


def check(promtool: Path, expositions: dict[str, str], root: Path = ROOT) -> Report:
    """Everything the module's docstring lists; `expositions` maps where each came from to its text."""
    report = Report()
    if not promtool.exists():
        report.add(f"promtool not found at {promtool}: run `make promtool` (or set CCXLIC_PROMTOOL)")
        return report
    dashboards = sorted((root / "deploy/grafana/dashboards").glob("*.json"))
    rules = sorted((root / "deploy/prometheus/rules").glob("*.yml"))
    tests = sorted((root / "deploy/prometheus/tests").glob("*.yml"))
    if not dashboards or not rules or not tests:
        report.add("expected dashboards in deploy/grafana/dashboards, rules in deploy/prometheus/rules and their tests")
    queries: list[Query] = []
    for path in dashboards:
        try:
            queries.extend(dashboard_queries(path))
        except ValueError as exc:
            report.add(str(exc))
    dashboard_count = len(queries)
    # The dashboards' expressions as the rules of a generated file: promtool parses each one.
    generated = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [{"record": f"dashboard:q{i}", "expr": q.expr} for i, q in enumerate(queries)],
            }
        ]
    }
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(generated, f)
    try:
        done = _promtool(promtool, "check", "rules", f.name)
        if done.returncode != 0:
            said = [line for line in (done.stdout + done.stderr).splitlines() if "dashboard:q" in line]
            for line in said:
                where = queries[int(re.findall(r"dashboard:q(\d+)", line)[0])].where
                report.add(f"{where}: promtool: {line.split('dashboard:q', 1)[1].split(':', 1)[-1].strip()}")
            if not said:
                report.add(f"the dashboards' expressions: promtool check rules: {(done.stdout + done.stderr).strip()}")
    finally:
        os.unlink(f.name)
    recorded: set[str] = set()
    for path in rules:
        done = _promtool(promtool, "check", "rules", str(path))
        if done.returncode != 0:
            report.add(f"{path.name}: promtool check rules: {(done.stdout + done.stderr).strip()}")
        found, names = rule_queries(path)
        queries.extend(found)
        recorded |= names
    for path in tests:
        done = _promtool(promtool, "test", "rules", str(path))
        if done.returncode != 0:
            report.add(f"{path.name}: promtool test rules: {(done.stdout + done.stderr).strip()}")
    exposed: set[str] = set(PROMETHEUS_OWN)
    for where, text in expositions.items():
        done = _promtool(promtool, "check", "metrics", stdin=text)
        if done.returncode != 0:
            report.add(f"{where}: promtool check metrics: {(done.stdout + done.stderr).strip()}")
        exposed |= exposed_names(text)
    for q in queries:
        try:
            names = metric_names(q.expr)
        except Exception as exc:  # the parser's own error type
            report.add(f"{q.where}: does not parse: {exc}")
            continue
        for name in sorted(names - exposed - recorded):
            report.add(f"{q.where}: names {name}, which no service exposes")
    report.checked = [
        f"{len(dashboards)} dashboard(s), {dashboard_count} expressions",
        f"{len(queries) - dashboard_count} rules in {len(rules)} file(s), {len(tests)} test file(s)",
        f"{len(expositions)} exposition(s), {len(exposed)} metric names",
    ]
    return report


def _read(source: str) -> str:
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=10) as r:
            return str(r.read().decode())
    return Path(source).read_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ccxlic_testing.observability", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--metrics", action="append", default=[], help="a /metrics URL or a file (repeat per service)")
    parser.add_argument("--promtool", help="the promtool binary (default: CCXLIC_PROMTOOL, or make promtool's)")
    args = parser.parse_args(argv)
    if not args.metrics:
        parser.error("give each service's /metrics with --metrics (e.g. after `make run-services`)")
    try:
        expositions = {m: _read(m) for m in args.metrics}
    except OSError as exc:
        print(f"observability: cannot read the metrics: {exc}", file=sys.stderr)
        return 1
    report = check(promtool_path(args.promtool), expositions)
    for line in report.problems:
        print(f"observability: {line}", file=sys.stderr)
    if report.problems:
        return 1
    print("observability: ok: " + "; ".join(report.checked))
    return 0


if __name__ == "__main__":
    sys.exit(main())
