"""The Grafana dashboard and the Prometheus rules against the /metrics of every service running as a process:
`promtool check metrics` passes on each, and every metric a panel or a rule names is one of theirs."""

from __future__ import annotations

import aiohttp
from ccxlic_testing.observability import check, promtool_path

from tests.e2e.conftest import LICENSING, Pipeline


async def test_every_panel_and_rule_names_metrics_the_running_services_expose(licensing: Pipeline) -> None:
    expositions = {}
    async with aiohttp.ClientSession() as http:
        for service in LICENSING:
            async with http.get(f"http://127.0.0.1:{licensing.ports[service]}/metrics") as r:
                assert r.status == 200
                expositions[f"{service} /metrics"] = await r.text()
    report = check(promtool_path(), expositions)
    assert report.problems == []
    assert "6 exposition(s)" in report.checked[2]
