"""The `ccxlic` command, run as a user runs it (a subprocess), against the real stack and the services as processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ccxlic_contract import decode
from ccxlic_contract.events import AgentSignedIn, ClockTicked, EntitlementsSet, InstanceRegistered
from ccxlic_contract.topics import AGENT_ACTIVITY, CLOCK, ENTITLEMENTS, LIFECYCLE
from ccxlic_runtime.kafka import EventProducer
from ccxlic_testing.build import Build
from ccxlic_testing.plugin import ReadTopic, Stack, drop_schema, free_port, wait_for_topic

from tests.e2e.conftest import Pipeline

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "ccxlic_cli"]
COMMANDS = [
    "run",
    "simulate",
    "publish",
    "entitlements set",
    "lifecycle",
    "tick",
    "status",
    "report",
    "forecast",
    "whatif",
    "plan",
    "audit export",
    "audit verify",
    "register",
    "reregister",
    "deregister",
    "renew",
    "license-type",
    "transport",
    "reservation",
    "authority account",
    "authority deposit",
    "authority move",
    "authority token",
    "authority reserve",
    "authority reservations",
    "authority usage",
    "authority classic",
    "authority convert",
    "authority balances",
    "authority notifications",
    "authority onprem",
    "authority sync export",
    "authority sync answer",
    "authority sync import",
    "licensing",
    "admin create-user",
    "admin token create",
    "silence add",
    "serve",
    "health",
]


def ccxlic(
    args: Sequence[str], env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env or dict(os.environ), input=stdin, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def env(stack: Stack, topic_prefix: str, contract_topics: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        **stack.kafka_env(),
        "CCXLIC_TOPIC_PREFIX": topic_prefix,
        "COLUMNS": "200",
    }


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command: str) -> None:
    r = ccxlic([*command.split(), "--help"])
    assert r.returncode == 0, r.stderr
    assert "Example" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["entitlements", "set", "bad id", "--standard", "1", "--premium", "1"], "instance id 'bad id'"),
        (["entitlements", "set", "x", "--standard", "-1", "--premium", "1"], "Invalid value"),
        (["entitlements", "set", "x", "--premium", "1"], "Missing option '--standard'"),
        (["tick", "--at", "yesterday"], "RFC 3339"),
        (["tick", "--at", "2026-03-02T08:00:00"], "needs an offset"),
        (["lifecycle", "x", "reserve"], "reserve needs the reserved counts"),
        (["lifecycle", "x", "explode"], "Invalid value"),
        (["simulate", "--scenario", "nope"], "no scenario file 'nope'"),
        (["report", "x", "--from", "2026-03-02T00:00:00Z", "--to", "2026-03-01T00:00:00Z"], "--to must be after"),
        (["status", "bad id", "--once"], "instance id"),
        (["run", "everything"], "Invalid value"),
        (["register", "x"], "Missing option '--token'"),
        (["licensing", "x", "bogus"], "Invalid value"),
        (["forecast", "bad id"], "instance id 'bad id'"),
        (["forecast", "x", "--at", "tomorrow"], "RFC 3339"),
        (["whatif", "bad id"], "instance id 'bad id'"),
        (["whatif", "x", "--tolerance", "soon"], "--tolerance 'soon'"),
        (["whatif", "x", "--tolerance", "0m"], "--tolerance must be more than 0"),
        (["whatif", "x", "--reservation", "premium=lots"], "give standard=N,premium=N,ivr_ports=N"),
        (["whatif", "x", "--from", "2026-03-02T00:00:00Z", "--to", "2026-03-01T00:00:00Z"], "--to must be after"),
        (["whatif", "x", "--premium", "1", "--check"], "--check holds the unchanged replay"),
        (["plan", "east", "--price", "premium"], "--price 'premium'"),
        (["plan", "east", "--price", "gold=3"], "the licenses are standard, premium, ivr_ports"),
        (["plan", "east", "--headroom", "-5"], "Invalid value"),
        (["authority", "sync", "answer", "/nonexistent.request", "--out", "x"], "cannot read the sync request"),
        (["authority", "onprem", "site-a", "--key", "/nonexistent.pem", "--account", "east"], "Invalid value"),
        (["register", "bad id", "--token", "t"], "instance id 'bad id'"),
        (["transport", "x", "onprem"], "the onprem transport needs the SSM On-Prem url"),
        (["reservation", "x", "install"], "install needs --code"),
        (["reservation", "x", "usage"], "usage needs --output"),
        (["audit", "export", "bad id"], "instance id 'bad id'"),
        (["audit", "export", "x", "--from", "2026-03-02T00:00:00Z", "--to", "2026-03-01T00:00:00Z"], "--from is after"),
        (["audit", "export", "x", "--from", "soon"], "RFC 3339"),
        (["audit", "verify", "/nonexistent.json"], "cannot read /nonexistent.json"),
        (["audit", "verify", "-"], "- is not JSON"),
        (["authority", "usage", "/nonexistent.json"], "cannot read the usage bundle /nonexistent.json"),
        (["license-type", "x", "gold"], "Invalid value"),
        (["admin", "create-user", "x", "--password-stdin"], "a password needs at least 12 characters; this one has 0"),
        (["admin", "create-user", "x", "--password-stdin", "--generate-password"], "not both"),
        (["admin", "create-user", "x", "--role", "root"], "Invalid value"),
        (["silence", "add", "--comment", "x"], "a silence selects by --instance, --alert or both"),
        (["silence", "list"], "silences need an API token"),
        (["serve", "billing"], "Invalid value"),
        (["serve", "ticker", "--tick-every", "0"], "Invalid value"),
    ],
)
def test_bad_input_exits_non_zero_with_a_clear_message(args: list[str], message: str) -> None:
    r = ccxlic(args, stdin="")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in " ".join(r.stderr.split()), r.stderr


def test_verify_names_what_is_wrong_with_a_bundle_or_a_key(tmp_path: Path) -> None:
    r = ccxlic(["audit", "verify", "-"], stdin="{}")
    assert r.returncode == 1 and "integrity    FAILED  the bundle cannot be read" in r.stdout, r.stdout
    r = ccxlic(["audit", "verify", "-", "--format", "json"], stdin="[1]")
    assert r.returncode == 1 and {c["ok"] for c in json.loads(r.stdout)} == {False}, r.stdout
    (tmp_path / "k.pem").write_text("not a key")
    r = ccxlic(["audit", "verify", "-", "--authority-key", str(tmp_path / "k.pem")], stdin="{}")
    assert r.returncode == 2 and "holds no PEM public key" in r.stderr, r.stderr


def test_a_bad_scenario_file_names_the_field(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "name: x\ninstances:\n  - id: a\n    agents: {standard: -3}\nevents:\n  - {at: PT1H, instance: b, event: register}\n"
    )
    r = ccxlic(["simulate", "--scenario", str(f), "--dry-run"])
    assert r.returncode == 2
    assert "instances.0.agents.standard" in r.stderr and "greater than or equal to 0" in r.stderr


async def test_publish_validates_every_line_and_still_sends_the_good_ones(
    env: dict[str, str], read_topic: ReadTopic, contract_topics: dict[str, str], tmp_path: Path, instance_id: str
) -> None:
    b = Build(instance_id)
    t = datetime(2026, 3, 2, 8, tzinfo=UTC)
    lines = [
        b.sign_in(t, "a1", "chat").model_dump_json(),
        '{"specversion": "1.0", "type": "ccx.agent.signed_in"}',
        "",
        "not json at all",
        b.tick(t).model_dump_json(),
    ]
    f = tmp_path / "events.jsonl"
    f.write_text("\n".join(lines) + "\n")
    r = await asyncio.to_thread(ccxlic, ["publish", str(f)], env)
    assert r.returncode == 1
    assert "line 2:" in r.stderr and "line 4:" in r.stderr and "line 1:" not in r.stderr
    assert "published 2 event(s); 2 bad line(s)" in r.stderr
    got = await wait_for_topic(read_topic, contract_topics[AGENT_ACTIVITY.name], lambda o: len(o) >= 1)
    assert [e.data.agent_id for e in got if isinstance(e, AgentSignedIn)] == ["a1"]
    r = await asyncio.to_thread(ccxlic, ["publish", "-"], env, b.tick(t).model_dump_json() + "\n")
    assert r.returncode == 0 and "published 1 event(s); 0 bad line(s)" in r.stderr
    ticks = await wait_for_topic(read_topic, contract_topics[CLOCK.name], lambda o: len(o) >= 2)
    assert all(isinstance(e, ClockTicked) for e in ticks)


async def test_entitlements_lifecycle_and_tick_publish_what_they_say(
    env: dict[str, str], read_topic: ReadTopic, contract_topics: dict[str, str], instance_id: str
) -> None:
    for args in (
        [
            "entitlements",
            "set",
            instance_id,
            "--standard",
            "40",
            "--premium",
            "10",
            "--ivr-ports",
            "20",
            "--no-overage",
            "--at",
            "2026-03-02T08:00:00Z",
        ],
        ["lifecycle", instance_id, "register", "--account", "va-7"],
        ["lifecycle", instance_id, "renew-auth-failed", "--reason", "SSM unreachable"],
        ["tick", "--at", "2026-03-02T09:00:00+01:00"],
    ):
        r = await asyncio.to_thread(ccxlic, args, env)
        assert r.returncode == 0, r.stderr
        assert "published" in r.stderr
    (ent,) = await wait_for_topic(read_topic, contract_topics[ENTITLEMENTS.name], lambda o: len(o) >= 1)
    assert isinstance(ent, EntitlementsSet) and ent.subject == instance_id
    assert (ent.data.standard_seats, ent.data.premium_seats, ent.data.ivr_ports, ent.data.overage_allowed) == (
        40,
        10,
        20,
        False,
    )
    life = await wait_for_topic(read_topic, contract_topics[LIFECYCLE.name], lambda o: len(o) >= 2)
    assert isinstance(life[0], InstanceRegistered) and life[0].data.virtual_account == "va-7"
    assert life[1].type == "licensing.authorization.renewal_failed" and life[1].data.reason == "SSM unreachable"
    ticks = await wait_for_topic(read_topic, contract_topics[CLOCK.name], lambda o: len(o) >= 3)
    assert len(ticks) == 3 and len({t.id for t in ticks}) == 1  # one tick, on every partition of the clock
    assert ticks[0].subject == "*" and ticks[0].time == datetime(2026, 3, 2, 8, tzinfo=UTC)


async def test_simulate_lists_dry_runs_and_publishes(
    env: dict[str, str], read_topic: ReadTopic, contract_topics: dict[str, str]
) -> None:
    r = await asyncio.to_thread(ccxlic, ["simulate", "--list"], env)
    assert r.returncode == 0 and {line.split(":")[0] for line in r.stdout.splitlines()} >= {
        "demo",
        "license-control",
        "lifecycle",
    }
    r = await asyncio.to_thread(
        ccxlic,
        ["simulate", "--scenario", "demo", "--duration", "2", "--start", "2026-03-02T08:00:00Z", "--dry-run"],
        env,
    )
    assert r.returncode == 0
    events = [decode(line) for line in r.stdout.splitlines()]
    types = {e.type for e in events}
    assert {
        "ccx.agent.signed_in",
        "ccx.ports.sampled",
        "ccx.agent.roster",
        "licensing.clock.tick",
        "licensing.agent.command",  # the Smart Agent registers cc-east and cc-west
    } <= types
    registers = [e for e in events if e.type == "licensing.agent.command"]
    assert {(e.subject, e.data.operation) for e in registers} >= {("cc-east", "register"), ("cc-west", "register")}  # type: ignore[union-attr]
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert any(e.type == "ccx.agent.signed_in" and e.data.supervisor for e in events)  # type: ignore[union-attr]
    # the demo sets up accounts at the licensing authority first: not running here, it says so
    nowhere = {**env, "CCXLIC_AUTHORITY_URL": f"http://127.0.0.1:{free_port()}"}
    r = await asyncio.to_thread(
        ccxlic, ["simulate", "--scenario", "demo", "--duration", "1", "--speed", "100000"], nowhere
    )
    assert r.returncode == 1 and "licensing authority" in r.stderr and "does not answer" in r.stderr
    r = await asyncio.to_thread(
        ccxlic, ["simulate", "--scenario", "license-control", "--duration", "1", "--speed", "100000"], env
    )
    assert r.returncode == 0, r.stderr
    assert "done," in r.stderr
    published = int(r.stderr.split("done, ")[1].split()[0])
    got = await wait_for_topic(read_topic, contract_topics[AGENT_ACTIVITY.name], lambda o: len(o) >= 40)
    assert published > 40 and len(got) >= 40


async def test_status_and_report_against_the_running_services(
    pipeline: Pipeline, producer: EventProducer, instance_id: str
) -> None:
    b = Build(instance_id)
    t0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
    await producer.publish_many(
        [b.entitle(t0 - timedelta(hours=1), 5, 2, ivr_ports=4), b.register(t0 - timedelta(hours=1))]
    )
    await pipeline.until(
        "compliance", f"/v1/instances/{instance_id}/compliance", lambda c: c["authorization"] == "authorized"
    )
    await pipeline.until("consumption", f"/v1/instances/{instance_id}/usage", lambda u: u["entitled"] is not None)
    await producer.publish_many(
        [b.sign_in(t0 + timedelta(minutes=k), f"p{k}", "chat") for k in range(3)]
        + [b.sign_in(t0 + timedelta(minutes=10 + k), f"s{k}") for k in range(5)]
    )
    await pipeline.until(
        "compliance", f"/v1/instances/{instance_id}/compliance", lambda c: c["over_stage"] == "detected"
    )
    await producer.publish(b.tick(t0 + timedelta(hours=8, minutes=10)))  # closes [08:00, 16:00)
    await pipeline.until("consumption", f"/v1/instances/{instance_id}/intervals", lambda r: len(r["reports"]) >= 1)
    await pipeline.until("alerting", f"/v1/alerts?instance={instance_id}&state=active", lambda a: len(a["alerts"]) >= 1)

    r = await asyncio.to_thread(ccxlic, ["status", instance_id, "--json"], pipeline.env)
    assert r.returncode == 0, r.stderr
    snap = json.loads(r.stdout)
    (one,) = snap["instances"]
    assert one["usage"]["in_use"] == {
        "standard": 5,
        "premium": 3,
        "ivr_ports": 0,
        "outbound_ports": 0,
        "outbound_seats": 0,
    }
    assert one["compliance"]["authorization"] == "out_of_compliance"
    assert [a["alert"] for a in one["alerts"]] == ["OutOfCompliance"]
    r = await asyncio.to_thread(ccxlic, ["status", "--once"], {**pipeline.env, "COLUMNS": "220"})
    assert r.returncode == 0, r.stderr
    assert instance_id in r.stdout and "3/2" in r.stdout and "out_of_compliance" in r.stdout

    window = ["--from", "2026-03-02T00:00:00Z", "--to", "2026-03-03T00:00:00Z"]
    r = await asyncio.to_thread(ccxlic, ["report", instance_id, *window], pipeline.env)
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    (interval,) = body["intervals"]
    assert (interval["premium"], interval["standard"], interval["deficit_premium"]) == (3, 5, 1)
    assert interval["premium_agents"] == "p0 p1 p2"
    # 3 Premium peak against 2: buy 1 Premium; then 5 Standard fit 5 Standard seats
    assert body["to_buy"] == {"standard": 0, "premium": 1, "ivr_ports": 0}
    r = await asyncio.to_thread(ccxlic, ["report", instance_id, *window, "--format", "csv"], pipeline.env)
    assert r.returncode == 0
    header, _row = r.stdout.splitlines()
    assert header.startswith("interval_start,interval_end,revision,standard,premium")
    assert "to buy: Standard 0, Premium 1, IVR ports 0" in r.stderr


async def test_run_all_with_a_scenario_then_ctrl_c_stops_everything(
    stack: Stack, topic_prefix: str, pg_schema: str, contract_topics: dict[str, str], tmp_path: Path
) -> None:
    ports = {s: free_port() for s in ("consumption", "compliance", "alerting", "agent", "authority", "console")}
    env = {
        **os.environ,
        **stack.kafka_env(),
        "DATABASE_URL": stack.database_url,
        "CCXLIC_TOPIC_PREFIX": topic_prefix,
        "CCXLIC_AUTH_SCHEMA": f"{pg_schema}_auth",
    }
    for s, port in ports.items():
        env[f"CCXLIC_{s.upper()}_HTTP_PORT"] = str(port)
        env[f"CCXLIC_{s.upper()}_SCHEMA"] = f"{pg_schema}_{s}"
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(
        "name: tiny\nduration: PT2H\nspeed: 600\n"
        "authority: {virtual_accounts: {tiny-va: {standard: 2, premium: 1}}}\ninstances:\n"
        "  - {id: tiny-a, register_with: tiny-va, agents: {standard: 2, premium: 3}}\n"
    )
    proc = subprocess.Popen(
        [*CLI, "run", "all", "--scenario", str(scenario), "--logs", str(tmp_path / "logs")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ladder = {"OutOfComplianceDetected", "OutOfComplianceImminent", "OutOfCompliance"}
    try:
        # the scenario's 3 Premium agents against 1 Premium seat: the services run it through, the ticker and the
        # simulation feed them, and the over-consumption and its alert show. The agents sign in and out as the
        # simulation goes, and the usage, compliance and alerts come from three services a moment apart: each
        # fact is waited for on its own (the most Premium seats seen in use, the ladder's alert), not required of
        # one snapshot
        snap: dict[str, Any] = {}
        premium_seen, over_seen, alerts_seen = 0, False, set[str]()
        for _ in range(120):
            await asyncio.sleep(1)
            r = await asyncio.to_thread(ccxlic, ["status", "--json"], env)
            if r.returncode != 0 or not json.loads(r.stdout)["instances"]:
                continue
            snap = json.loads(r.stdout)
            [tiny] = snap["instances"]
            assert tiny["instance"] == "tiny-a", snap
            premium_seen = max(premium_seen, tiny["usage"]["in_use"]["premium"] if tiny["usage"] else 0)
            c = tiny["compliance"]
            over_seen = over_seen or bool(c and (c["over_stage"] or c["authorization"] == "out_of_compliance"))
            alerts_seen |= {a["alert"] for a in tiny["alerts"]}
            if premium_seen > 1 and over_seen and ladder & alerts_seen:
                break
        assert premium_seen > 1, snap
        assert over_seen and ladder & alerts_seen, snap
        assert snap["instances"][0]["compliance"]["registration"] == "registered", snap
        proc.send_signal(signal.SIGINT)
        _out, err = await asyncio.to_thread(proc.communicate, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        for s in ports:
            await drop_schema(stack.database_url, f"{pg_schema}_{s}")
        await drop_schema(stack.database_url, pg_schema)  # and its users
    assert proc.returncode == 0, err
    assert "ccxlic run: ready" in err and "ccxlic run: stopped" in err
    for s in ports:
        assert (tmp_path / "logs" / f"{s}.log").read_text().strip().endswith('"msg": "stopped"}')


async def test_admin_users_tokens_and_silences_from_the_command_line(pipeline: Pipeline, instance_id: str) -> None:
    env = {k: v for k, v in pipeline.env.items() if k != "CCXLIC_TOKEN"}
    r = await asyncio.to_thread(
        ccxlic, ["admin", "create-user", "alice", "--role", "admin", "--password-stdin"], env, "a long enough secret\n"
    )
    assert r.returncode == 0 and "user alice (admin) is ready" in r.stderr, r.stderr
    r = await asyncio.to_thread(
        ccxlic, ["admin", "create-user", "alice", "--password-stdin"], env, "another secret!!\n"
    )
    assert r.returncode == 1 and "exists; --replace" in r.stderr
    r = await asyncio.to_thread(ccxlic, ["admin", "create-user", "vic", "--generate-password"], env)
    assert r.returncode == 0 and len(r.stdout.strip()) >= 12  # the password, printed once
    users = json.loads((await asyncio.to_thread(ccxlic, ["admin", "users"], env)).stdout)
    assert [(u["name"], u["role"]) for u in users] == [("alice", "admin"), ("vic", "viewer")]
    admin_token = (
        await asyncio.to_thread(ccxlic, ["admin", "token", "create", "alice", "--days", "1"], env)
    ).stdout.strip()
    viewer_token = (await asyncio.to_thread(ccxlic, ["admin", "token", "create", "vic"], env)).stdout.strip()
    assert admin_token.startswith("ccxlic_") and viewer_token.startswith("ccxlic_")
    as_admin, as_viewer = {**env, "CCXLIC_TOKEN": admin_token}, {**env, "CCXLIC_TOKEN": viewer_token}
    add = [
        "silence",
        "add",
        "--instance",
        instance_id,
        "--alert",
        "OutOfCompliance",
        "--hours",
        "2",
        "--comment",
        "buying",
    ]
    r = await asyncio.to_thread(ccxlic, add, as_viewer)
    assert r.returncode == 1 and "refused (403)" in r.stderr and "only an admin" in r.stderr, r.stderr
    r = await asyncio.to_thread(ccxlic, add, {**env, "CCXLIC_TOKEN": "ccxlic_made-up"})
    assert r.returncode == 1 and "refused (401)" in r.stderr
    r = await asyncio.to_thread(ccxlic, add, as_admin)
    assert r.returncode == 0, r.stderr
    silence = json.loads(r.stdout)
    assert silence["author"] == "alice" and silence["instance"] == instance_id
    listed = json.loads((await asyncio.to_thread(ccxlic, ["silence", "list"], as_viewer)).stdout)
    assert [s["id"] for s in listed["silences"]] == [silence["id"]]
    r = await asyncio.to_thread(ccxlic, ["silence", "remove", silence["id"]], as_admin)
    assert r.returncode == 0 and "removed" in r.stderr
    tokens = json.loads((await asyncio.to_thread(ccxlic, ["admin", "token", "list"], env)).stdout)
    assert admin_token not in json.dumps(tokens)  # only digests are kept
    viewer_id = next(t["id"] for t in tokens if t["username"] == "vic")
    assert (await asyncio.to_thread(ccxlic, ["admin", "token", "revoke", viewer_id], env)).returncode == 0
    r = await asyncio.to_thread(ccxlic, ["silence", "list"], as_viewer)
    assert r.returncode == 1 and "refused (401)" in r.stderr


def test_a_password_in_database_url_never_reaches_a_log_or_an_error(tmp_path: Path) -> None:
    url = f"postgresql://ops:hunter2@127.0.0.1:{free_port()}/ccxlic"
    env = {**os.environ, "DATABASE_URL": url, "CCXLIC_AUTHORITY_HTTP_PORT": "0"}
    r = ccxlic(["admin", "users"], env)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "cannot connect to PostgreSQL at postgresql://ops:***@127.0.0.1" in said, said
    service = subprocess.run(
        [sys.executable, "-m", "ccxlic_authority"], env=env, capture_output=True, text=True, timeout=60
    )
    assert service.returncode == 1 and "ops:***@" in service.stderr, service.stderr
    bad = ccxlic(["admin", "users"], {**env, "DATABASE_URL": "mysql://ops:hunter2@db/x"})
    assert bad.returncode == 2 and "DATABASE_URL='mysql://ops:***@db/x'" in " ".join(bad.stderr.split())
    for out in (r, service, bad):
        assert "hunter2" not in out.stdout + out.stderr


async def test_serve_becomes_the_service_and_health_checks_it_as_the_image_does(
    env: dict[str, str],
    stack: Stack,
    pg_schema: str,
    read_topic: ReadTopic,
    contract_topics: dict[str, str],
    tmp_path: Path,
) -> None:
    """What every container runs: `ccxlic serve NAME` (the service itself, the same pid) and its HEALTHCHECK,
    `ccxlic health`; the ticker's too."""
    port = free_port()
    service_env = {
        **env,
        "DATABASE_URL": stack.database_url,
        "CCXLIC_COMPLIANCE_SCHEMA": f"{pg_schema}_compliance",
        "CCXLIC_COMPLIANCE_HTTP_PORT": str(port),
        "CCXLIC_RUN_DIR": str(tmp_path / "compliance"),
    }
    ticker_env = {**env, "CCXLIC_RUN_DIR": str(tmp_path / "ticker")}
    nothing = await asyncio.to_thread(ccxlic, ["health"], {**env, "CCXLIC_RUN_DIR": str(tmp_path / "none")})
    assert nothing.returncode == 1 and "nothing is served here" in " ".join(nothing.stderr.split())
    served = subprocess.Popen([*CLI, "serve", "compliance"], env=service_env, stderr=subprocess.DEVNULL)
    ticker = subprocess.Popen([*CLI, "serve", "ticker", "--tick-every", "1"], env=ticker_env, stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            ready = await asyncio.to_thread(ccxlic, ["health", "--ready"], service_env)
            if ready.returncode == 0:
                break
            await asyncio.sleep(0.2)
        assert ready.returncode == 0, ready.stderr
        assert f"compliance: http://127.0.0.1:{port}/readyz 200" in ready.stdout
        # exec: the process that answers is the one started, no supervisor in between
        cmdline = Path(f"/proc/{served.pid}/cmdline").read_bytes().split(b"\0")
        assert b"ccxlic_compliance" in cmdline
        ticks = await wait_for_topic(read_topic, contract_topics[CLOCK.name], lambda o: len({t.id for t in o}) >= 2)
        assert all(t.subject == "*" for t in ticks)
        healthy = await asyncio.to_thread(ccxlic, ["health"], ticker_env)
        assert healthy.returncode == 0 and "ticker: ticked" in healthy.stdout
    finally:
        served.send_signal(signal.SIGTERM)
        ticker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(served.wait, 30) == 0
        assert await asyncio.to_thread(ticker.wait, 30) == 0
        await drop_schema(stack.database_url, f"{pg_schema}_compliance")
    down = await asyncio.to_thread(ccxlic, ["health"], service_env)
    assert down.returncode == 1 and f"http://127.0.0.1:{port}/healthz answered nothing" in " ".join(down.stderr.split())


async def test_forecast_from_weeks_of_interval_peaks_against_the_running_services(
    pipeline: Pipeline, producer: EventProducer, instance_id: str
) -> None:
    """Four weeks of weekday shifts (08:00-16:00, one more Premium agent each week) through the services; the
    forecast of the fifth week comes from the interval reports, with too little history refused first."""
    b = Build(instance_id)
    monday = datetime(2026, 3, 2, tzinfo=UTC)
    await producer.publish_many(
        [b.entitle(monday - timedelta(hours=1), 40, 6, ivr_ports=4), b.register(monday - timedelta(hours=1))]
    )
    await pipeline.until("consumption", f"/v1/instances/{instance_id}/usage", lambda u: u["entitled"] is not None)
    r = await asyncio.to_thread(ccxlic, ["forecast", instance_id], pipeline.env)
    assert r.returncode == 0 and "no forecast: too little history: 0 full week(s)" in r.stdout, r.stdout
    events = []
    for day in range(28):
        start = monday + timedelta(days=day, hours=8)
        if start.weekday() < 5:
            agents = [f"p{k}" for k in range(4 + day // 7)]  # 4, 5, 6, 7 Premium agents
            events += [b.sign_in(start + timedelta(minutes=k), a, "chat") for k, a in enumerate(agents)]
            events += [b.sign_out(start + timedelta(hours=8, minutes=-5), a) for a in agents]
        events += [b.tick(monday + timedelta(days=day, hours=h)) for h in (0, 8, 16)]
    end = monday + timedelta(days=28, minutes=10)
    events.append(b.tick(end))
    await producer.publish_many(events)
    await pipeline.until(
        "consumption",
        f"/v1/instances/{instance_id}/intervals",
        lambda r: any(x["interval_start"].startswith("2026-03-29T16") for x in r["reports"]),
        120,
    )
    r = await asyncio.to_thread(ccxlic, ["forecast", instance_id, "--format", "json"], pipeline.env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # the first week is not full: its first report is Monday 08:00 (no report before the first usage)
    assert out["estimate"] is True and out["weeks_of_history"] == 3 and len(out["intervals"]) == 21
    monday_day = next(i for i in out["intervals"] if i["interval_start"].startswith("2026-03-30T08"))
    assert monday_day["p50"]["premium"] == 8  # the growth carried on: 4, 5, 6, 7, then 8
    assert monday_day["p90"]["premium"] >= 8
    night = next(i for i in out["intervals"] if i["interval_start"].startswith("2026-03-30T00"))
    assert night["p50"]["premium"] == 0
    assert out["over"] and out["over"][0]["from"].startswith("2026-03-30T08") and out["over"][0]["by"]["premium"] >= 2
    r = await asyncio.to_thread(ccxlic, ["forecast", instance_id], pipeline.env)
    assert "ESTIMATE" in r.stdout and "p90 OVER the entitlements from 2026-03-30T08:00:00+00:00" in r.stdout
    # compliance forecasts the same from the intervals it saw, and alerting raises the estimate's alert
    view = await pipeline.until(
        "compliance", f"/v1/instances/{instance_id}/compliance", lambda c: c.get("forecast") is not None
    )
    assert view["forecast"]["start"] == "2026-03-30T08:00:00Z" and view["forecast"]["over"]["premium"] >= 2
    alerts = await pipeline.until(
        "alerting",
        f"/v1/alerts?instance={instance_id}&state=active",
        lambda a: any(x["alert"] == "OutOfComplianceForecast" for x in a["alerts"]),
    )
    [fc] = [x for x in alerts["alerts"] if x["alert"] == "OutOfComplianceForecast"]
    assert fc["details"]["from"].startswith("2026-03-30 08:00") and fc["details"]["lead_hours"] == 8
