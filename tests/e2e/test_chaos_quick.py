"""`make chaos` at its quick size (faults 1, 3, 7, 11 with a 15-second outage, 12): the chain as processes on the
real stack loses nothing, counts nothing twice, catches up after each fault, and every alert reaches every sink.
How fast it catches up is measured and reported (the goal is 10 s), never asserted here. The full table (all twelve
faults) is `make chaos`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ccxlic_testing.plugin import Stack

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parents[2]


def test_the_quick_fault_injection_loses_nothing_and_recovers(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    env = {**os.environ, **stack.kafka_env(), "CCXLIC_PG_SUPERUSER_URL": stack.database_url}
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--quick", "--json", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    rows = json.loads(out.read_text()) if out.exists() else []
    assert r.returncode in (0, 3), r.stdout + r.stderr[-3000:]  # 3: a goal missed; which one is asserted below
    assert [row["fault"] for row in rows] == [0, 1, 3, 7, 11, 12]  # each caught up (the harness waits for it)
    reference = rows[0]
    assert reference["counted"] > 500 and reference["alerts_raised"] > 0
    for row in rows[1:]:
        assert row["lost"] == 0 and row["double"] == 0, row
        assert row["verdicts_same"], row  # the same compliance views and alert transitions as without the fault
        assert row["every_alert_delivered"] and min(row["delivered"].values()) > 0, row
        assert row["dead"] == row["expected_dead"], row
    assert rows[3]["dead"] == 3  # the poison, each dead-lettered with its reason
