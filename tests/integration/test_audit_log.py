"""The licensing log on real Kafka and PostgreSQL: compliance writes what it decides from and what it publishes into
the instance's chain in the unit of work, serves it over HTTP, and goes on with the same chain after a restart
(the head read from the table, not a cache); the log it wrote is decided again to the same transitions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from ccxlic_audit.log import Entry, broken_link, leaf_root
from ccxlic_audit.note import Checkpoint
from ccxlic_compliance.app import run
from ccxlic_compliance.settings import ComplianceSettings
from ccxlic_contract.topics import COMPLIANCE, CONSUMPTION
from ccxlic_runtime.kafka import EventProducer
from ccxlic_testing.build import Build
from ccxlic_testing.plugin import InProcess, ReadTopic, Stack, drop_schema, publish_on, service_settings, wait_for_topic
from ccxlic_whatif.derivation import derivation, rules_json

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)


async def _get(port: int, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, await r.json()


async def test_the_chain_is_written_served_and_goes_on_after_a_restart(
    stack: Stack,
    topic_prefix: str,
    pg_schema: str,
    contract_topics: dict[str, str],
    producer: EventProducer,
    read_topic: ReadTopic,
    instance_id: str,
) -> None:
    settings = service_settings(ComplianceSettings, stack, topic_prefix, pg_schema)
    b = Build(instance_id)
    inputs, outputs = contract_topics[CONSUMPTION.name], contract_topics[COMPLIANCE.name]

    async def transitions(n: int) -> None:
        await wait_for_topic(
            read_topic,
            outputs,
            lambda o: sum(e.type == "licensing.compliance.changed" and e.subject == instance_id for e in o) >= n,
            60,
        )

    try:
        service = InProcess(run, settings)
        port = await service.started()
        await publish_on(producer, inputs, [b.entitle(T0, 10, 0, 0), b.register(T0 + M), b.usage(T0 + 2 * M, 11, 0)])
        await transitions(3)
        await service.stopped()

        service = InProcess(run, settings)  # a new process: no cached head
        port = await service.started()
        await publish_on(producer, inputs, [b.tick(T0 + 60 * M), b.usage(T0 + 61 * M, 5, 0)])
        await transitions(5)

        status, page = await _get(port, f"/v1/instances/{instance_id}/log?limit=3")
        assert status == 200 and len(page["entries"]) == 3 and page["next"] == "?after=3&limit=3"
        status, page = await _get(port, f"/v1/instances/{instance_id}/log")
        entries = [Entry.of(json.loads(e)) for e in page["entries"]]
        assert page["origin"] == f"ccxlic/{instance_id}/compliance"
        assert broken_link(entries) is None
        kinds = [e.kind.rsplit(".", 1)[-1] for e in entries]
        assert kinds[:6] == ["set", "changed", "registered", "changed", "changed", "changed"], kinds
        assert "tick" in kinds  # the tick that fired the tolerance's deadline
        status, cp = await _get(port, f"/v1/instances/{instance_id}/log/checkpoint")
        assert status == 200 and cp["size"] == len(entries)
        assert Checkpoint.parse(cp["text"]).root == leaf_root([e.bytes() for e in entries])
        # a log from before audit_heads (no head row): its head from its entries, the same
        conn = await asyncpg.connect(settings.database_url.get_secret_value())
        await conn.execute(f'delete from "{settings.schema_name}".audit_heads where instance = $1', instance_id)
        await conn.close()
        assert await _get(port, f"/v1/instances/{instance_id}/log/checkpoint") == (200, cp)
        rules = {"compliance": rules_json(settings.rules())}
        bundle = {
            "instance": instance_id,
            "logs": [{"origin": page["origin"], "entries": [e.as_json() for e in entries]}],
        }
        check = derivation(bundle | {"rules": rules})
        assert check.ok, check.detail

        for bad in ("log?after=-1", "log?limit=0", "log?limit=x"):
            status, body = await _get(port, f"/v1/instances/{instance_id}/{bad}")
            assert status == 400 and body["error"], (bad, body)
        status, _ = await _get(port, "/v1/instances/bad%20id/log")
        assert status == 400
        status, none = await _get(port, "/v1/instances/nobody/log/checkpoint")
        assert status == 200 and none["size"] == 0
        await service.stopped()
    finally:
        await drop_schema(settings.database_url, settings.schema_name)
