"""`make bench` at smoke size: the benchmarks run and their results are correct. Never their speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ccxlic_testing.plugin import Stack

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parents[2]


def test_the_quick_benchmarks_run_and_are_correct(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**stack.kafka_env(), "DATABASE_URL": stack.database_url}
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--json", str(out)],
        env={**__import__("os").environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "B1 | consumption computer" in r.stdout
    res = json.loads(out.read_text())
    assert res["B0"]["messages"] == res["B1"]["events"] == 20_000
    assert res["B1"]["events_per_s"] > 0 and res["B1"]["cpu_us_per_event"] > 0
    assert res["B2"]["alerts_seen"] == res["B2"]["probes"] == 20  # every crossing raised its alert
    # a replay equals the live run: every interval report, every compliance transition, every alert history entry,
    # every entry of the licensing logs
    identical = res["B3"]["identical"]
    assert identical == {"log": True, "reports": True, "compliance": True, "alerts": True}, res["B3"].get("differences")
    counts = res["B3"]["counts"]
    assert counts["reports"] > 0 and counts["compliance"] > 2 and counts["alerts"] > 0, counts
    assert counts["log"] > counts["reports"] + counts["compliance"], counts
    assert res["B4"]["pg_bytes_per_session"] > 0 and res["B4"]["memory_bytes_per_session"] > 0
    # the what-if's replay ran the chain: interval reports, transitions (registration, over the limits), changes
    b5 = res["B5"]
    assert b5["inputs"] > 1000 and b5["inputs_per_s"] > 0
    assert b5["outputs"]["reports"] > 0 and b5["outputs"]["transitions"] > 0 and b5["outputs"]["changes"] > 0, b5
