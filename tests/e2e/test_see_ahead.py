"""Done-when of "See ahead", end to end: the licensing authority, the chain, the Smart Agent and the console as
processes on the real stack, six simulated weeks of a contact center that grows (the simulator's `seasonal-growth`:
weekday shifts, a fifth of the staff on weekends, 5 % more staff a week, absences), registered into a virtual
account that it outgrows, with a sibling account holding spare Premium:

- the forecast alert (`OutOfComplianceForecast`) is raised at least 24 hours before the instance really goes out of
  compliance;
- `ccxlic plan` moves the spare Premium from the sibling (naming the instances, intervals and Premium agents);
- `ccxlic whatif` with what the plan brings in shows no out-of-compliance over the same history, and so does the
  console's what-if page;
- the move, carried out at the authority, reaches the instance with its next entitlements, and the next forecast
  clears.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import aiohttp
import pytest
from ccxlic_cli.scenario import load
from ccxlic_cli.simulator import generate
from ccxlic_runtime.kafka import EventProducer
from ccxlic_testing.plugin import ReadTopic

from tests.e2e.conftest import T0, Pipeline, Walk, ccxlic, ok

pytestmark = pytest.mark.e2e
D, H = timedelta(days=1), timedelta(hours=1)
WEEKS = 6
PREMIUM = 16
"""East's Premium: the center (seed 1) outgrows it in week 5, after the three full weeks of interval peaks the forecast
needs (the forecast's backtest measures how often and how early across seeds: bench/README.md)."""


async def test_six_weeks_seen_ahead_planned_and_cleared(
    licensing: Pipeline,
    producer: EventProducer,
    read_topic: ReadTopic,
    contract_topics: dict[str, str],
    instance_id: str,
) -> None:
    p, env = licensing, licensing.env
    w = Walk(p, producer, read_topic, contract_topics, instance_id)
    compliance = f"/v1/instances/{instance_id}/compliance"
    ok(env, "authority", "account", "east", "--smart-account", "acme")
    ok(env, "authority", "deposit", "east", "--standard", "45", "--premium", str(PREMIUM), "--ivr-ports", "30")
    ok(env, "authority", "deposit", "east", "--server", "1", "--warm-standby", "1")
    ok(env, "authority", "account", "west", "--smart-account", "acme")
    ok(env, "authority", "deposit", "west", "--premium", "12")  # spare: no instance of west uses it
    token = json.loads(ok(env, "authority", "token", "east"))["token"]
    ok(env, "register", instance_id, "--token", token, "--at", T0.isoformat())
    await p.until("compliance", compliance, lambda c: c["authorization"] == "authorized")

    # six weeks of the growing center, published a week at a time; the clock ticks every 8 hours behind them
    scenario = load("seasonal-growth")
    grow = scenario.instances[0].model_copy(update={"id": instance_id, "registered": False, "entitlements": None})
    scenario = scenario.model_copy(
        update={"instances": (grow,), "duration": timedelta(weeks=WEEKS), "tick_every": timedelta(hours=8)}
    )
    start = T0.replace(hour=8, minute=0)  # a Monday: the shifts start at 08:00 UTC
    events = generate(scenario, start)
    for week in range(WEEKS):
        until = start + (week + 1) * 7 * D
        await producer.publish_many([e for e in events if start + week * 7 * D <= e.time < until])
        await w.to(until - H, every=8 * H)

    # the forecast alert came at least a day before the instance went out of compliance
    _, history = await p.get("compliance", f"{compliance}/history?limit=10000")
    ooc = [datetime.fromisoformat(t["state"]["ooc_since"]) for t in history["transitions"] if t["state"]["ooc_since"]]
    assert ooc, "the center outgrows its licenses within six weeks"
    _, alerts = await p.get("alerting", f"/v1/alerts?instance={instance_id}")
    forecasts = [a for a in alerts["alerts"] if a["alert"] == "OutOfComplianceForecast"]
    assert forecasts, [a["alert"] for a in alerts["alerts"]]
    first = min(datetime.fromisoformat(a["raised_at"]) for a in forecasts)
    assert first <= ooc[0] - 24 * H, (first, ooc[0])

    # the plan: the spare Premium of west, with what makes it necessary
    planned = ccxlic(env, "plan", "east", "--format", "json")
    assert planned.returncode == 3, planned.stderr  # something to do
    plan = json.loads(planned.stdout)
    moves = [line for line in plan["lines"] if line["action"] == "move"]
    assert moves and all(m["from"] == "west" for m in moves), plan
    assert all(line["action"] == "move" for line in plan["lines"]), plan  # west has enough: nothing to buy
    why = moves[0]["because"][0]
    assert why["instance"] == instance_id and why["interval_start"], why
    brought = {lic: sum(m["quantity"] for m in moves if m["license"] == lic) for lic in ("standard", "premium")}
    assert brought["premium"] > 0
    table = ccxlic(env, "plan", "east").stdout
    assert f"move {brought['premium']} Flex Premium from west" in table and "because" in table

    # the what-if: with the plan's licenses, nothing of the same history was out of compliance. (No --check here:
    # this walk publishes a week of usage before the clock and the agent's answers of that week, so those reach the
    # chain late and their transitions are stamped when seen; tests/integration/test_whatif.py holds the identity.)
    args = [f"--{lic}={n}" for lic, n in brought.items() if n]
    whatif = json.loads(ok(env, "whatif", instance_id, *args, "--format", "json"))
    assert whatif["replayed"]["ooc_episodes"] >= 1
    assert whatif["what_if"]["ooc_episodes"] == 0 and whatif["what_if"]["ooc_minutes"] == 0, whatif["what_if"]

    # ... and the same question on the console's what-if page (a signed-in caller: the admin's API token here)
    query = {lic: str(n) for lic, n in brought.items() if n}
    headers = {"Authorization": f"Bearer {env['CCXLIC_TOKEN']}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{env['CCXLIC_CONSOLE_URL']}/instances/{instance_id}/whatif", params=query, headers=headers) as r,
    ):
        assert r.status == 200, await r.text()
        page = await r.text()
    row = re.search(r"minutes out of compliance</th><td>(\d+)</td><td>(?:<strong>)?(\d+)", page)
    assert row is not None and int(row.group(1)) > 0 and row.group(2) == "0", page[:2000]
    assert f"Premium +{brought['premium']}" in page

    # the move, at the authority; the instance gets the licenses with its next entitlements; the forecast clears
    _, before = await p.get("compliance", compliance)
    assert before["forecast"] is not None  # still growing past its Premium
    quantities = [f"--{lic.replace('_', '-')}={n}" for lic, n in brought.items() if n]
    ok(env, "authority", "move", "west", "--to", "east", *quantities)
    ok(env, "renew", instance_id, "authorization", "--at", (w.now + H).isoformat())
    premium = PREMIUM + brought["premium"]
    usage = f"/v1/instances/{instance_id}/usage"
    await p.until("consumption", usage, lambda u: (u.get("entitled") or {}).get("premium") == premium, 120)
    await p.until("compliance", compliance, lambda c: c["forecast"] is None, 120)
    after = ccxlic(env, "plan", "east", "--format", "json")
    assert after.returncode == 0 and json.loads(after.stdout)["lines"] == [], after.stdout
