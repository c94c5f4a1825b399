"""Done-when of "the vendor's verdicts", end to end: the licensing authority, the three services of the chain, the
Smart Agent and the console as processes on the real stack, driven with `ccxlic` as a user would, over 200 simulated
days. Each verdict is checked on the topics and in the HTTP views:

- evaluation has one meaning: a deregistered instance is unlimited for the consumption computer and in evaluation for
  compliance, with only the evaluation days it had left;
- a deregister/register round trip into an account still out of compliance keeps the account's out-of-compliance
  start (no 90 fresh days);
- an instance in enforcement for out-of-compliance expiry stays enforced after its usage drops, and leaves it after a
  deposit that covers the peaks that caused it;
- Entitlement Reporting fails when the authority cannot give the entitlements, and the next fetch ends it;
- a reservation of 10 Premium + 40 Standard installs offline and refuses the 51st sign-in;
- outbound ports and seats are stored and shown in the report, and, as the vendor's document lists, not sent to the
  authority (the Server and Warm Standby licenses are, as 0).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from ccxlic_contract.topics import CONSUMPTION
from ccxlic_runtime.kafka import EventProducer
from ccxlic_testing.plugin import ReadTopic, wait_for_topic

from tests.e2e.conftest import T0, Pipeline, Walk, ok

pytestmark = pytest.mark.e2e
D, H, M = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)


def at(t: datetime) -> str:
    return t.isoformat()


def accounts(env: dict[str, str]) -> dict[str, dict[str, object]]:
    answer = json.loads(ok(env, "authority", "accounts"))
    return {va["name"]: va for sa in answer["smart_accounts"] for va in sa["virtual_accounts"]}


async def test_200_days_of_the_vendors_verdicts(
    licensing: Pipeline,
    producer: EventProducer,
    read_topic: ReadTopic,
    contract_topics: dict[str, str],
    instance_id: str,
) -> None:
    p, env = licensing, licensing.env
    w = Walk(p, producer, read_topic, contract_topics, instance_id)
    b = w.b
    compliance = f"/v1/instances/{instance_id}/compliance"
    ok(env, "authority", "account", "east", "--smart-account", "acme")
    ok(env, "authority", "deposit", "east", "--standard", "40", "--premium", "10", "--ivr-ports", "20")
    ok(env, "authority", "deposit", "east", "--server", "1", "--warm-standby", "1")
    token = json.loads(ok(env, "authority", "token", "east", "--uses", "2"))["token"]
    ok(env, "register", instance_id, "--token", token, "--at", at(T0))
    await p.until("compliance", compliance, lambda c: c["authorization"] == "authorized")
    signs = [b.sign_in(T0 + H + k * M, f"p{k}", "chat") for k in range(8)]
    signs += [b.sign_in(T0 + 2 * H + k * M, f"s{k}", "inbound_voice") for k in range(30)]
    await producer.publish_many([*signs, b.ports(T0 + 3 * H, 4, outbound_ports=6, outbound_seats=3)])
    await w.to(T0 + 10 * D, every=8 * H)

    # day 10: 11 Premium of 10: the account goes out of compliance (the live tolerance, then the authority's answer)
    await producer.publish_many([b.sign_in(T0 + 10 * D + k * M, f"x{k}", "email") for k in range(3)])
    await w.to(T0 + 12 * D, every=8 * H)
    await p.until("compliance", compliance, lambda c: c["authorization"] == "out_of_compliance")
    account_since = accounts(env)["east"]["out_of_compliance_since"]
    assert isinstance(account_since, str)

    # day 20: deregistered, the instance is in evaluation everywhere, with the evaluation days it had left (all 90:
    # it registered before its first use)
    ok(env, "deregister", instance_id, "--at", at(w.now + H))
    state = await p.until("compliance", compliance, lambda c: c["registration"] == "unregistered")
    assert state["authorization"] == "evaluation" and state["ooc_since"] is None
    usage = await p.until("consumption", f"/v1/instances/{instance_id}/usage", lambda u: u["mode"] == "evaluation")
    assert usage["headroom"]["premium"] is None and usage["deficit"]["premium"] == 0
    # ... and registering again into the account, still short, continues the account's clock
    ok(env, "register", instance_id, "--token", token, "--at", at(w.now + 2 * H))
    state = await p.until("compliance", compliance, lambda c: c["registration"] == "registered" and c["ooc_since"])
    assert datetime.fromisoformat(state["ooc_since"]) == datetime.fromisoformat(account_since)
    assert datetime.fromisoformat(state["deadlines"]["enforcement_at"]) == datetime.fromisoformat(
        account_since
    ) + timedelta(days=90)

    # Entitlement Reporting fails while the authority cannot give the entitlements; the next fetch ends it
    ok(env, "authority", "fault", "entitlements", "--instance", instance_id, "--reason", "SDK exception")
    ok(env, "renew", instance_id, "authorization", "--at", at(w.now + 3 * H))
    alerts = f"/v1/alerts?state=active&instance={instance_id}"
    await p.until("alerting", alerts, lambda a: "EntitlementReportingFailed" in {x["alert"] for x in a["alerts"]})
    ok(env, "authority", "fault", "none")
    ok(env, "renew", instance_id, "authorization", "--at", at(w.now + 4 * H))
    await p.until("alerting", alerts, lambda a: "EntitlementReportingFailed" not in {x["alert"] for x in a["alerts"]})

    # 90 days after the account's start: enforcement; the usage drops back, and enforcement stays
    await w.to(T0 + 104 * D, every=8 * H)
    state = await p.until("compliance", compliance, lambda c: c["enforcement"]["active"])
    assert state["enforcement"]["reasons"] == ["out_of_compliance_expired"] and state["required"]["premium"] == 11
    await producer.publish_many([b.sign_out(w.now + k * M, f"x{k}") for k in range(3)])
    await w.to(T0 + 108 * D, every=8 * H)
    state = await p.until("compliance", compliance, lambda c: c["deficit"]["premium"] == 0)
    assert state["enforcement"]["active"] is True
    _, provisioning = await p.get("compliance", f"/v1/instances/{instance_id}/provisioning")
    assert provisioning["synchronisation_allowed"] is False and provisioning["exits"][0]["action"] == "purchase"
    status = ok(env, "status", instance_id, "--once")
    assert "to leave enforcement (out_of_compliance_expired): purchase licenses" in status

    # a deposit that covers the 11 Premium that caused it, seen at the next report: enforcement ends
    ok(env, "authority", "deposit", "east", "--premium", "1")
    await w.to(T0 + 109 * D, every=8 * H)
    state = await p.until("compliance", compliance, lambda c: not c["enforcement"]["active"])
    assert state["authorization"] == "authorized" and state["ooc_since"] is None
    assert accounts(env)["east"]["out_of_compliance_since"] is None

    # a reservation of 10 Premium + 40 Standard, installed offline on a second instance: the 51st sign-in is refused
    vault = f"{instance_id}-vault"
    ok(env, "authority", "account", "vault-va", "--smart-account", "acme")
    ok(env, "authority", "deposit", "vault-va", "--standard", "40", "--premium", "10")
    ok(env, "reservation", vault, "enable", "--at", at(w.now))  # pins the authority's key while it is reachable
    request = ok(env, "reservation", vault, "request", "--at", at(w.now)).strip().splitlines()[-1]
    granted = json.loads(
        ok(env, "authority", "reserve", "vault-va", "--request-code", request, "--standard", "40", "--premium", "10")
    )
    ok(env, "authority", "fault", "unreachable", "--instance", vault)  # offline: the install asks nobody
    out = ok(env, "reservation", vault, "install", "--code", granted["authorization_code"], "--at", at(w.now + M))
    assert json.loads(ok(env, "authority", "confirm", out.strip().splitlines()[-1]))["status"] == "installed"
    ok(env, "authority", "fault", "none")
    v = Walk(p, producer, read_topic, contract_topics, vault).b
    await producer.publish_many([v.sign_in(w.now + 2 * M + k * timedelta(seconds=1), f"v{k}") for k in range(51)])
    got = await wait_for_topic(
        read_topic,
        contract_topics[CONSUMPTION.name],
        lambda o: any(e.type == "licensing.agent.sign_in_rejected" and e.subject == vault for e in o),
        60,
    )
    [rejected] = [e for e in got if e.type == "licensing.agent.sign_in_rejected" and e.subject == vault]
    assert rejected.data.agent_id == "v50" and rejected.data.limit == "reservation"
    state = await p.until("compliance", f"/v1/instances/{vault}/compliance", lambda c: c["registration"] == "reserved")
    assert state["authorization"] == "reserved" and state["ooc_since"] is None

    # on to day 200: still authorized; outbound usage is in the report, and not at the authority
    await w.to(T0 + 200 * D, every=8 * H)
    state = await p.until("compliance", compliance, lambda c: c["as_of"] >= at(T0 + 200 * D).replace("+00:00", "Z"))
    assert state["authorization"] == "authorized" and not state["enforcement"]["active"]
    report = json.loads(
        ok(env, "report", instance_id, "--from", at(T0 - D), "--to", at(T0 + 2 * D), "--format", "json")
    )
    assert max(r["outbound_ports"] for r in report["intervals"]) == 6
    assert max(r["outbound_seats"] for r in report["intervals"]) == 3
    [listed] = json.loads(ok(env, "authority", "instances", "east"))["instances"]
    assert set(listed["last_usage"]) == {"standard", "premium", "ivr_ports", "server", "warm_standby"}
    assert listed["last_usage"]["server"] == 0 and listed["last_usage"]["warm_standby"] == 0
