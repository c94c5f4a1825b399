"""Alerting on real Kafka and PostgreSQL, delivering to a real SMTP server (aiosmtpd), real syslog listeners (UDP and
TCP sockets) and a real webhook receiver (aiohttp)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from ccxlic_alerting.app import run
from ccxlic_alerting.settings import AlertingSettings
from ccxlic_contract import Event
from ccxlic_contract.events import AlertRaised, AlertResolved
from ccxlic_contract.topics import ALERTS, COMPLIANCE
from ccxlic_runtime.kafka import EventProducer
from ccxlic_testing.build import Build
from ccxlic_testing.plugin import (
    InProcess,
    ReadTopic,
    Stack,
    api_token,
    drop_schema,
    free_port,
    publish_on,
    service_settings,
    wait_for_topic,
)
from ccxlic_testing.sinks import Sinks

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)
D = timedelta(days=1)


# ---------------------------------------------------------------- real receivers


def _settings(stack: Stack, prefix: str, schema: str, sinks: Sinks, syslog: str = "udp") -> AlertingSettings:
    port = sinks.udp_port if syslog == "udp" else sinks.tcp_port
    return service_settings(
        AlertingSettings,
        stack,
        prefix,
        schema,
        syslog_url=f"{syslog}://127.0.0.1:{port}",
        smtp_host="127.0.0.1",
        smtp_port=sinks.smtp_port,
        alert_emails="ops@example.com,admin@example.com",
        webhook_urls=sinks.webhook_url,
        delivery_backoff_seconds=0.2,
        delivery_max_backoff_seconds=1.0,
        delivery_timeout_seconds=3.0,
    )


@pytest_asyncio.fixture
async def service_factory(
    stack: Stack, topic_prefix: str, pg_schema: str, contract_topics: dict[str, str]
) -> AsyncIterator[Callable[..., Any]]:
    started: list[InProcess] = []

    async def start(sinks: Sinks, syslog: str = "udp") -> int:
        service = InProcess(run, _settings(stack, topic_prefix, pg_schema, sinks, syslog))
        started.append(service)
        return await service.started()

    yield start
    for service in started:
        await service.stopped()
    await drop_schema(stack.database_url, pg_schema)


async def _until(check: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def _get(port: int, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, (await r.json() if r.content_type == "application/json" else None)


def _alert_events(out: list[Event]) -> list[tuple[str, str, str]]:
    return [
        ("raised" if isinstance(e, AlertRaised) else "resolved", e.subject, e.data.alert)
        for e in out
        if isinstance(e, AlertRaised | AlertResolved)
    ]


# ---------------------------------------------------------------- the catalogue, end to end


def _catalogue_inputs(base: str) -> tuple[list[Event], list[str]]:
    """Inputs that raise and then resolve every alert in the catalogue (an instance per group, so inhibition stays
    out of the way)."""
    events: list[Event] = []
    b = Build(f"{base}-life")
    for kind, ok in (
        ("authorization", b.authorization_renewed),
        ("registration", b.registration_renewed),
        ("reporting", b.reporting_succeeded),
        ("entitlements", lambda t: b.entitle(t, 10, 10)),
        ("agent_init", b.agent_initialized),
    ):
        events += [b.failure(kind, T0), ok(T0 + M)]
    c = Build(f"{base}-usage")
    events += [c.failure("consumption", T0), c.usage(T0 + M, 1, 1)]
    events += [c.breach(T0 + 2 * M, ivr_ports=2), c.usage(T0 + 3 * M, 1, 1, breach=(0, 0, 0))]
    o = Build(f"{base}-ooc")
    events += [
        o.compliance(T0, over_stage="detected", deficit=(0, 1, 0), ooc_at=T0 + 45 * M),
        o.compliance(T0 + 30 * M, over_stage="imminent", over_since=T0, deficit=(0, 1, 0), ooc_at=T0 + 45 * M),
        o.compliance(T0 + 45 * M, "out_of_compliance", ooc_since=T0 + 45 * M, enforcement_at=T0 + 90 * D),
        o.compliance(
            T0 + 90 * D, "out_of_compliance", ooc_since=T0 + 45 * M, enforcement=("out_of_compliance_expired",)
        ),
        o.compliance(T0 + 91 * D),
    ]
    e = Build(f"{base}-eval")
    events += [
        e.compliance(T0, "evaluation", evaluation_ends_at=T0 + 10 * D),
        e.compliance(T0 + D, "authorized", authorization_expires_at=T0 + 91 * D),
    ]
    return events, [f"{base}-life", f"{base}-usage", f"{base}-ooc", f"{base}-eval"]


CATALOGUE = [
    "RenewAuthorizationFailed",
    "RenewRegistrationFailed",
    "LicenseComputationFailed",
    "EntitlementReportingFailed",
    "UsageReportingFailed",
    "LicenseControlBreach",
    "OutOfComplianceDetected",
    "OutOfComplianceImminent",
    "OutOfCompliance",
    "EnforcementMode",
    "SmartAgentInitFailed",
    "EvaluationExpiring",
]


async def test_every_alert_is_raised_and_resolved_and_delivered_to_every_channel(
    service_factory: Callable[..., Any],
    sinks: Sinks,
    producer: EventProducer,
    read_topic: ReadTopic,
    contract_topics: dict[str, str],
    instance_id: str,
) -> None:
    sinks.start_smtp()
    port = await service_factory(sinks)
    events, _ = _catalogue_inputs(instance_id)
    await publish_on(producer, contract_topics[COMPLIANCE.name], events)
    out = await wait_for_topic(
        read_topic, contract_topics[ALERTS.name], lambda o: len(_alert_events(o)) >= 2 * len(CATALOGUE), 60
    )
    got = _alert_events(out)
    assert sorted({a for _, _, a in got}) == sorted(CATALOGUE)
    for alert in CATALOGUE:
        assert [k for k, _, a in got if a == alert] == ["raised", "resolved"], alert
    await _until(
        lambda: (
            len(sinks.mailbox.messages) >= 2 * len(CATALOGUE)
            and len(sinks.udp) >= 2 * len(CATALOGUE)
            and len(sinks.webhook) >= 2 * len(CATALOGUE)
        ),
        30,
        "a raise and a resolve of each alert on each channel",
    )
    await asyncio.sleep(1)  # nothing more arrives
    assert len(sinks.mailbox.messages) == len(sinks.udp) == len(sinks.webhook) == 2 * len(CATALOGUE)

    # email: what happened, where, what to do, by when
    ooc = next(m for m in sinks.mailbox.messages if "OOC: system in Out of Compliance" in str(m["Subject"]))
    body = ooc.get_content()
    assert f"{instance_id}-ooc" in str(ooc["Subject"]) and "[ccx-licensing CRITICAL]" in str(ooc["Subject"])
    assert "What to do:" in body and "Purchase additional licenses" in body
    assert "By when:       2026-05-31T10:00:00Z" in body
    assert ooc["To"] == "ops@example.com, admin@example.com"
    # syslog: RFC 5424 with structured data
    first = sinks.udp[0]
    assert re.match(r"^<\d+>1 \d{4}-\d\d-\d\dT[\d:.]+Z \S+ ccxlic-alerting - RAISED \[ccxlic@32473 ", first), first
    crit = next(m for m in sinks.udp if 'alert="EnforcementMode"' in m and " RAISED " in m)
    assert crit.startswith(f"<{16 * 8 + 2}>1 ")  # local0.crit
    # webhook: Alertmanager v4
    hook = next(h for h in sinks.webhook if h["commonLabels"]["alertname"] == "OutOfComplianceImminent")
    assert hook["version"] == "4" and hook["status"] in ("firing", "resolved")
    assert set(hook["alerts"][0]) >= {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    resolved_hooks = [h for h in sinks.webhook if h["status"] == "resolved"]
    assert len(resolved_hooks) == len(CATALOGUE)
    # every notification has one id, the same on every channel, for a receiver to deduplicate on
    mail_ids = [str(m["X-Ccxlic-Notification-Id"]) for m in sinks.mailbox.messages]
    assert all(
        str(m["Message-ID"]) == f"<{i}@ccx-licensing>" for m, i in zip(sinks.mailbox.messages, mail_ids, strict=True)
    )
    syslog_ids = [re.search(r'notification_id="([^"]+)"', m).group(1) for m in sinks.udp]  # type: ignore[union-attr]
    assert len(set(mail_ids)) == 2 * len(CATALOGUE)
    assert set(mail_ids) == set(syslog_ids) == set(sinks.webhook_ids)

    status, body_json = await _get(port, f"/v1/alerts?state=resolved&instance={instance_id}-ooc")
    assert status == 200 and {a["alert"] for a in body_json["alerts"]} == {
        "OutOfComplianceDetected",
        "OutOfComplianceImminent",
        "OutOfCompliance",
        "EnforcementMode",
    }
    detected = next(a for a in body_json["alerts"] if a["alert"] == "OutOfComplianceDetected")
    assert detected["resolve_reason"] == "escalated to OutOfComplianceImminent"
    _, one = await _get(port, f"/v1/alerts/{detected['alert_id']}")
    assert [h["kind"] for h in one["history"]] == ["raised", "notified:raised", "resolved", "notified:resolved"]
    assert {d["status"] for d in one["deliveries"]} == {"sent"} and len(one["deliveries"]) == 6


async def test_syslog_over_tcp(
    service_factory: Callable[..., Any],
    sinks: Sinks,
    producer: EventProducer,
    instance_id: str,
    contract_topics: dict[str, str],
) -> None:
    sinks.start_smtp()
    await service_factory(sinks, syslog="tcp")
    b = Build(instance_id)
    await publish_on(
        producer,
        contract_topics[COMPLIANCE.name],
        [b.failure("agent_init", T0, "license service down"), b.agent_initialized(T0 + M)],
    )
    await _until(lambda: len(sinks.tcp) >= 2, 30, "two syslog messages over TCP")
    assert "RAISED SmartAgentInitFailed" in sinks.tcp[0] and "license service down" in sinks.tcp[0]
    assert sinks.tcp[1].startswith(f"<{16 * 8 + 5}>1 ") and " RESOLVED " in sinks.tcp[1]  # local0.notice


async def test_a_duplicate_input_notifies_once(
    service_factory: Callable[..., Any],
    sinks: Sinks,
    producer: EventProducer,
    read_topic: ReadTopic,
    contract_topics: dict[str, str],
    instance_id: str,
) -> None:
    sinks.start_smtp()
    await service_factory(sinks)
    b = Build(instance_id)
    failed = b.failure("reporting", T0)
    await publish_on(
        producer, contract_topics[COMPLIANCE.name], [failed, failed, b.failure("reporting", T0 + M)]
    )  # same id twice, same condition
    await _until(lambda: len(sinks.mailbox.messages) >= 1, 30, "an email")
    await publish_on(
        producer, contract_topics[COMPLIANCE.name], [b.tick(T0 + 2 * M)]
    )  # a later input: anything still to come would be through by now
    await asyncio.sleep(2)
    assert len(sinks.mailbox.messages) == 1 and len(sinks.udp) == 1 and len(sinks.webhook) == 1
    out = await read_topic(contract_topics[ALERTS.name], 10, timeout=2)
    assert _alert_events(out) == [("raised", instance_id, "UsageReportingFailed")]


async def test_a_silenced_alert_is_recorded_not_notified_and_its_resolve_is(
    service_factory: Callable[..., Any],
    stack: Stack,
    pg_schema: str,
    sinks: Sinks,
    producer: EventProducer,
    instance_id: str,
    contract_topics: dict[str, str],
) -> None:
    sinks.start_smtp()
    port = await service_factory(sinks)
    auth_schema = f"{pg_schema}_auth"
    admin = {"Authorization": f"Bearer {await api_token(stack.database_url, auth_schema, 'ops')}"}
    viewer = {"Authorization": f"Bearer {await api_token(stack.database_url, auth_schema, 'watcher', 'viewer')}"}
    silence = {
        "instance": instance_id,
        "alert": "RenewAuthorizationFailed",
        "starts_at": "2026-03-01T00:00:00Z",
        "ends_at": "2026-03-03T00:00:00Z",
        "comment": "SSM maintenance",
    }
    url = f"http://127.0.0.1:{port}/v1/silences"
    async with aiohttp.ClientSession() as http:
        # what a page on another origin can send without asking (a "simple" request: text/plain, no credentials
        # but a cookie SameSite=Strict never sends cross-site) creates nothing
        async with http.post(
            url, data=json.dumps(silence), headers={"Content-Type": "text/plain", "Origin": "https://evil.example"}
        ) as r:
            assert r.status == 401, await r.text()
        async with http.post(url, data=json.dumps(silence), headers={**admin, "Content-Type": "text/plain"}) as r:
            assert r.status == 415 and "application/json" in (await r.json())["error"]
        async with http.get(url) as r:
            assert r.status == 401
        async with http.post(url, json=silence, headers=viewer) as r:
            assert r.status == 403 and "only an admin" in (await r.json())["error"]
        async with http.get(url, headers=viewer) as r:
            assert r.status == 200 and (await r.json())["silences"] == []
        async with http.post(url, json=silence, headers=admin) as r:
            assert r.status == 201, await r.text()
            created = await r.json()
            silence_id = created["id"]
            assert created["author"] == "ops"  # the caller, not what the body says
        async with http.post(url, json={**silence, "ends_at": "2026-02-01T00:00:00Z"}, headers=admin) as r:
            assert r.status == 400 and "`ends_at` must be after `starts_at`" in (await r.json())["error"]
        async with http.post(url, json={"comment": "y", "ends_at": "2026-03-03T00:00:00Z"}, headers=admin) as r:
            assert r.status == 400 and "selects by `instance`, `alert` or both" in (await r.json())["error"]
        async with http.post(url, data=b"{oops", headers={**admin, "Content-Type": "application/json"}) as r:
            assert r.status == 400 and "invalid silence" in (await r.json())["error"]
        async with http.post(url, json={**silence, "alert": "Nope"}, headers=admin) as r:
            assert r.status == 400 and "alert" in (await r.json())["error"]
        async with http.post(url, json={**silence, "author": "someone else"}, headers=admin) as r:
            assert r.status == 400 and "author" in (await r.json())["error"]
        async with http.post(url, json={**silence, "ends_at": "2026-06-01T00:00:01Z"}, headers=admin) as r:
            assert r.status == 400 and "a silence lasts at most 90 days" in (await r.json())["error"]
        async with http.post(url, json={**silence, "comment": "x" * 70_000}, headers=admin) as r:
            assert r.status == 413  # bodies are bounded before they are read
    b = Build(instance_id)
    await publish_on(producer, contract_topics[COMPLIANCE.name], [b.failure("authorization", T0, "SSM unreachable")])
    alert: dict[str, Any] = {}

    async def recorded() -> bool:
        nonlocal alert
        _, body = await _get(port, f"/v1/alerts?state=active&instance={instance_id}")
        alert = body["alerts"][0] if body["alerts"] else {}
        return bool(alert)

    for _ in range(100):
        if await recorded():
            break
        await asyncio.sleep(0.2)
    assert alert["alert"] == "RenewAuthorizationFailed" and alert["notifications"] == 0
    _, detail = await _get(port, f"/v1/alerts/{alert['alert_id']}")
    assert [h["kind"] for h in detail["history"]] == ["raised", "held"]
    assert f"silenced by {silence_id} (ops: SSM maintenance)" in detail["history"][1]["text"]
    await publish_on(producer, contract_topics[COMPLIANCE.name], [b.authorization_renewed(T0 + M)])
    await _until(lambda: len(sinks.mailbox.messages) >= 1, 30, "the resolve email")
    assert sinks.subjects() == [f"[ccx-licensing RESOLVED] Renew Authorization failed on {instance_id}"]
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=viewer) as r:
            assert [s["id"] for s in (await r.json())["silences"]] == [silence_id]
        async with http.delete(f"{url}/{silence_id}", headers=viewer) as r:
            assert r.status == 403
        async with http.delete(f"{url}/{silence_id}") as r:
            assert r.status == 401
        async with http.delete(f"{url}/{silence_id}", headers=admin) as r:
            assert r.status == 204
        async with http.delete(f"{url}/{silence_id}", headers=admin) as r:
            assert r.status == 404


async def test_an_smtp_server_that_is_down_then_up_gets_the_notification_after_a_retry(
    service_factory: Callable[..., Any],
    sinks: Sinks,
    producer: EventProducer,
    instance_id: str,
    contract_topics: dict[str, str],
) -> None:
    port = await service_factory(sinks)  # the SMTP server is not started yet
    b = Build(instance_id)
    await publish_on(
        producer, contract_topics[COMPLIANCE.name], [b.failure("registration", T0, "ID certificate renewal failed")]
    )
    await _until(lambda: len(sinks.udp) >= 1 and len(sinks.webhook) >= 1, 30, "syslog and webhook, not blocked")
    deliveries: list[dict[str, Any]] = []
    for _ in range(100):
        _, body = await _get(port, f"/v1/alerts?instance={instance_id}")
        if body["alerts"]:
            _, detail = await _get(port, f"/v1/alerts/{body['alerts'][0]['alert_id']}")
            deliveries = [d for d in detail["deliveries"] if d["channel"] == "email"]
            if deliveries and deliveries[0]["attempts"] >= 2:
                break
        await asyncio.sleep(0.2)
    assert deliveries[0]["status"] == "pending" and "smtp 127.0.0.1" in deliveries[0]["last_error"]
    sinks.start_smtp()
    await _until(lambda: len(sinks.mailbox.messages) >= 1, 30, "the email after the server came up")
    assert "Renew Registration failed" in sinks.subjects()[0]
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    assert 'ccxlic_notifications_total{channel="email",outcome="retry"}' in text
    assert (
        f'ccxlic_alerts_active{{alert="RenewRegistrationFailed",product_instance="{instance_id}",severity="major"}} 1.0'
        in text
    )


async def test_http_answers_bad_requests_clearly(service_factory: Callable[..., Any], sinks: Sinks) -> None:
    port = await service_factory(sinks)
    assert (await _get(port, "/v1/alerts?state=open"))[0] == 400
    assert (await _get(port, "/v1/alerts?instance=bad%20id"))[0] == 400
    assert (await _get(port, "/v1/alerts?limit=0"))[0] == 400
    status, body = await _get(port, "/v1/alerts/nope")
    assert status == 404 and "nope" in body["error"]


async def test_a_restart_in_mid_stream_notifies_nothing_twice(
    stack: Stack,
    sinks: Sinks,
    producer: EventProducer,
    topic_prefix: str,
    pg_schema: str,
    contract_topics: dict[str, str],
    instance_id: str,
) -> None:
    sinks.start_smtp()
    s = _settings(stack, topic_prefix, pg_schema, sinks)
    env = {
        **os.environ,
        **stack.kafka_env(),
        "DATABASE_URL": stack.database_url,
        "CCXLIC_TOPIC_PREFIX": topic_prefix,
        "CCXLIC_ALERTING_SCHEMA": pg_schema,
        "CCXLIC_ALERTING_HTTP_PORT": str(free_port()),
        "CCXLIC_SMTP_HOST": "127.0.0.1",
        "CCXLIC_SMTP_PORT": str(sinks.smtp_port),
        "CCXLIC_ALERT_EMAILS": "ops@example.com",
        "CCXLIC_BATCH_SIZE": "5",
        "CCXLIC_DELIVERY_BACKOFF_SECONDS": "0.2",
    }
    builders = [Build(f"{instance_id}-{i}") for i in range(20)]
    failures = [b.failure("reporting", T0) for b in builders]
    recoveries = [b.reporting_succeeded(T0 + M) for b in builders]
    cmd = [sys.executable, "-m", "ccxlic_alerting"]
    worker = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    try:
        await publish_on(producer, contract_topics[COMPLIANCE.name], failures)
        await _until(lambda: len(sinks.mailbox.messages) >= 20, 60, "20 raise emails")
        conn = await asyncpg.connect(stack.database_url)
        try:
            for _ in range(100):  # every delivery recorded as sent: a kill now loses no outcome
                if not await conn.fetchval(f"select count(*) from \"{pg_schema}\".deliveries where status <> 'sent'"):
                    break
                await asyncio.sleep(0.1)
        finally:
            await conn.close()
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        # the broker redelivers what was not committed; publishers repeat themselves too
        await publish_on(producer, contract_topics[COMPLIANCE.name], failures[:10] + recoveries)
        worker = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        await _until(lambda: len(sinks.mailbox.messages) >= 40, 60, "20 resolve emails")
        await asyncio.sleep(2)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        await drop_schema(s.database_url, s.schema_name)
    subjects = sinks.subjects()
    assert len(subjects) == 40 and len(set(subjects)) == 40, subjects
    assert sum("RESOLVED" in x for x in subjects) == 20
    assert json.dumps(subjects)  # every subject is text
