"""Done-when of "the authority as SSM and SSM On-Prem", end to end: two authorities as processes, the central one
(Cisco SSM) and an on-prem one over HTTPS (SSM On-Prem), with the chain and the Smart Agent as processes, driven
with `ccxlic` as an admin would. Accounts and deposits at the central; a disconnected sync by files; an instance
registered through the vendor's on-prem URL form; its usage at the central after the next sync; the deficit there
mailed to the smart account's address (a real SMTP server); the balance shows it."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from ccxlic_runtime.kafka import EventProducer
from ccxlic_testing.plugin import ReadTopic, Spawned, drop_schema
from ccxlic_testing.sinks import Sinks
from ccxlic_testing.tls import make_ca_and_cert

from tests.e2e.conftest import T0, Pipeline, Walk, ccxlic, ok

pytestmark = pytest.mark.e2e
D, H = timedelta(days=1), timedelta(hours=1)
GATEWAY = "/Transportgateway/services/DeviceRequestHandler"


async def test_central_and_onprem_by_files_usage_up_a_deficit_mailed(
    licensing: Pipeline,
    producer: EventProducer,
    read_topic: ReadTopic,
    contract_topics: dict[str, str],
    instance_id: str,
    sinks: Sinks,
    tmp_path: Path,
) -> None:
    p = licensing
    sinks.start_smtp()
    # the central mails through the SMTP server; the agent trusts the on-prem's CA
    ca, cert, key = make_ca_and_cert(tmp_path, "localhost")
    p.env |= {"CCXLIC_SMTP_HOST": "127.0.0.1", "CCXLIC_SMTP_PORT": str(sinks.smtp_port)}
    p.env["CCXLIC_AGENT_CA_FILE"] = str(ca)
    for service in ("authority", "agent"):
        await p.restart(service, kill=False)
        p.env[f"CCXLIC_{service.upper()}_URL"] = f"http://127.0.0.1:{p.ports[service]}"
    central = dict(p.env)

    ok(central, "authority", "account", "east", "--smart-account", "acme")
    ok(central, "authority", "deposit", "east", "--standard", "40", "--premium", "10")
    ok(central, "authority", "notifications", "acme", "--email", "licensing@acme.example")
    central_key = tmp_path / "central.pem"
    _, keys = await p.get("authority", "/v1/keys")
    central_key.write_text(keys["public_key_pem"])

    schema = p.env["CCXLIC_AUTHORITY_SCHEMA"] + "_onprem"
    onprem_env = {
        **p.env,
        "CCXLIC_AUTHORITY_SCHEMA": schema,
        "CCXLIC_AUTHORITY_MODE": "onprem",
        "CCXLIC_AUTHORITY_NAME": "site-a",
        "CCXLIC_AUTHORITY_CENTRAL_KEY": str(central_key),
        "CCXLIC_AUTHORITY_TLS_CERT": str(cert),
        "CCXLIC_AUTHORITY_TLS_KEY": str(key),
        "CCXLIC_SMTP_HOST": "",
    }
    site = Spawned("authority", onprem_env, tmp_path / "onprem.log")
    site.start()
    try:
        port = await site.started()
        onprem = {**p.env, "CCXLIC_AUTHORITY_URL": f"https://localhost:{port}", "SSL_CERT_FILE": str(ca)}
        status = json.loads(ok(onprem, "authority", "sync", "status"))
        assert status["mode"] == "onprem" and status["name"] == "site-a"
        onprem_key = tmp_path / "site-a.pem"
        r = ccxlic(onprem, "authority", "account", "west")
        assert r.returncode == 1 and "SSM On-Prem" in r.stderr  # its accounts come from the central
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"https://localhost:{port}/v1/keys", ssl=ssl.create_default_context(cafile=str(ca))) as resp,
        ):
            onprem_key.write_text((await resp.json())["public_key_pem"])
        ok(central, "authority", "onprem", "site-a", "--key", str(onprem_key), "--account", "east")

        def sync(n: int) -> None:
            request, answer = tmp_path / f"site-a-{n}.request", tmp_path / f"site-a-{n}.answer"
            assert f"sync request {n} of site-a" in ok(onprem, "authority", "sync", "export", "--out", str(request))
            assert f"sync {n} of site-a answered (east)" in ok(
                central, "authority", "sync", "answer", str(request), "--out", str(answer)
            )
            assert json.loads(ok(onprem, "authority", "sync", "import", str(answer)))["applied"] == n

        sync(1)  # entitlements down
        [acme] = json.loads(ok(onprem, "authority", "accounts"))["smart_accounts"]
        assert acme["virtual_accounts"][0]["licenses"]["premium"] == 10

        # an instance registers through the vendor's on-prem URL form, and 12 Premium agents sign in
        token = json.loads(ok(onprem, "authority", "token", "east"))["token"]
        url = f"https://localhost:{port}{GATEWAY}"
        out = ok(
            p.env,
            "register",
            instance_id,
            "--token",
            token,
            "--transport",
            "onprem",
            "--url",
            url,
            "--at",
            T0.isoformat(),
        )
        assert "registered with virtual account 'east'" in out
        w = Walk(p, producer, read_topic, contract_topics, instance_id)
        await producer.publish_many(
            [w.b.sign_in(T0 + H + k * timedelta(minutes=1), f"p{k}", "chat") for k in range(12)]
        )
        await w.to(T0 + 2 * D)
        await w.lifecycle(
            lambda o: any(
                e.type == "licensing.reporting.succeeded" and e.data.verdict == "out_of_compliance" for e in o
            )
        )  # the on-prem judged it, on the licenses the central gave it
        [east] = json.loads(ok(onprem, "authority", "instances", "east"))["instances"]
        assert east["instance"] == instance_id and east["last_usage"]["premium"] == 12
        r = ccxlic(central, "authority", "balances", "east")
        assert r.returncode == 0 and "within its licenses" in r.stdout  # the central has not heard yet

        sync(2)  # usage up
        r = ccxlic(central, "authority", "balances", "east")
        assert r.returncode == 3 and "IN DEFICIT" in r.stdout, r.stdout
        assert f"{instance_id}@site-a 12" in r.stdout and "served by the on-prem site-a" in r.stdout
        balances = json.loads(ccxlic(central, "authority", "balances", "east", "--format", "json").stdout)
        premium = balances["licenses"]["premium"]
        assert (premium["purchased"], premium["in_use"], premium["balance"]) == (10, 12, -2)
        # the deficit is mailed to the smart account's address
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while loop.time() < deadline and not any(m["To"] == "licensing@acme.example" for m in sinks.mailbox.messages):
            await asyncio.sleep(0.2)
        [mail] = [m for m in sinks.mailbox.messages if m["To"] == "licensing@acme.example"]
        assert "Virtual account in deficit (acme)" in str(mail["Subject"])
        assert "2 Flex Premium short" in mail.get_content()
        # the same answer again is a replay: refused with the reason
        r = ccxlic(onprem, "authority", "sync", "import", str(tmp_path / "site-a-2.answer"))
        assert r.returncode == 1 and "replayed" in r.stderr
    finally:
        if site.proc is not None:
            site.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(site.proc.wait, 30) == 0
        await drop_schema(p.env["DATABASE_URL"], schema)
