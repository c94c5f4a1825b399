"""Done-when of the Smart Agent and the licensing authority, end to end: the authority, the agent and the three
services as processes on the real stack, driven with `ccxlic` as a user would. An instance registers with a token,
then 200 simulated days go by: the schedules renew and report by themselves; an over-consumption is reported and the
authority answers out of compliance; licenses moved in from another virtual account bring it back; a reservation
round trip with codes completes on a second instance; the authority is cut off for 100 days, the authorization
expires and enforcement follows (and a platform is told to stop synchronising agents). Each step is checked on the
topics and the HTTP views."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from ccxlic_runtime.kafka import EventProducer
from ccxlic_testing.plugin import ReadTopic

from tests.e2e.conftest import T0, Pipeline, Walk, ok

pytestmark = pytest.mark.e2e
D, H = timedelta(days=1), timedelta(hours=1)


async def test_register_then_200_days_with_the_authority_answering(
    licensing: Pipeline,
    producer: EventProducer,
    read_topic: ReadTopic,
    contract_topics: dict[str, str],
    instance_id: str,
) -> None:
    p, env = licensing, licensing.env
    w = Walk(p, producer, read_topic, contract_topics, instance_id)
    at = lambda t: t.isoformat()  # noqa: E731
    # the admin's side, with ccxlic: accounts, licenses, a token
    ok(env, "authority", "account", "east", "--smart-account", "acme")
    ok(env, "authority", "account", "spare", "--smart-account", "acme")
    ok(env, "authority", "deposit", "east", "--standard", "40", "--premium", "10", "--ivr-ports", "20")
    ok(env, "authority", "classic", "pak", "PAK-1", "--premium", "5")  # spare's Premium: a classic PAK migrated
    converted = json.loads(ok(env, "authority", "convert", "pak", "PAK-1", "--to", "spare"))
    assert converted["deposited"]["premium"] == 5
    token = json.loads(ok(env, "authority", "token", "east", "--uses", "2"))["token"]
    ok(env, "authority", "classic", "device", "dev-1", "--standard", "10")
    partial = json.loads(ok(env, "authority", "convert", "device", "dev-1", "--to", "spare", "--standard", "4"))
    assert partial["still_classic"]["standard"] == 6
    out = ok(env, "register", instance_id, "--token", token, "--at", at(T0))
    assert "register: ok: registered with virtual account 'east'" in out
    await p.until("compliance", f"/v1/instances/{instance_id}/compliance", lambda c: c["authorization"] == "authorized")
    # 38 agents (8 Premium) sign in, within the 40 Standard / 10 Premium
    signs = [w.b.sign_in(T0 + H + k * timedelta(minutes=1), f"p{k}", "chat") for k in range(8)]
    signs += [w.b.sign_in(T0 + 2 * H + k * timedelta(minutes=1), f"s{k}", "inbound_voice") for k in range(30)]
    await producer.publish_many(signs)
    await w.to(T0 + 10 * D)
    early = await w.lifecycle(lambda o: sum(e.type == "licensing.reporting.succeeded" for e in o) >= 25)
    verdicts = {e.data.verdict for e in early if e.type == "licensing.reporting.succeeded"}
    assert verdicts == {"in_compliance"}

    # day 10: 4 more Premium (12 > 10): the live tolerance and the authority's answer both say out of compliance
    await producer.publish_many(
        [w.b.sign_in(T0 + 10 * D + k * timedelta(minutes=1), f"x{k}", "email") for k in range(4)]
    )
    await w.to(T0 + 11 * D)
    out_events = await w.lifecycle(
        lambda o: any(e.type == "licensing.reporting.succeeded" and e.data.verdict == "out_of_compliance" for e in o)
    )
    ooc = next(
        e for e in out_events if e.type == "licensing.reporting.succeeded" and e.data.verdict == "out_of_compliance"
    )
    assert ooc.data.shortfall.premium == 2
    state = await p.until(
        "compliance", f"/v1/instances/{instance_id}/compliance", lambda c: c["authorization"] == "out_of_compliance"
    )
    assert state["deficit"]["premium"] == 2
    east = json.loads(ok(env, "authority", "instances", "east"))["instances"]
    assert east[0]["in_compliance"] is False and east[0]["last_usage"]["premium"] == 12

    # licenses move in from another virtual account; the agent renews now and gets them: back in compliance
    ok(env, "authority", "move", "spare", "--to", "east", "--premium", "3")
    out = ok(env, "renew", instance_id, "authorization", "--at", at(w.now + H))
    assert "renew_authorization: ok" in out
    await p.until("compliance", f"/v1/instances/{instance_id}/compliance", lambda c: c["authorization"] == "authorized")
    await w.to(T0 + 12 * D)
    last = [e for e in await w.lifecycle(lambda o: True) if e.type == "licensing.reporting.succeeded"][-1]
    assert last.data.verdict == "in_compliance"

    # a reservation round trip with codes, on a second (unregistered) instance
    vault = f"{instance_id}-vault"
    ok(env, "reservation", vault, "enable", "--at", at(w.now))
    request = ok(env, "reservation", vault, "request", "--at", at(w.now)).strip().splitlines()[-1]
    granted = json.loads(
        ok(env, "authority", "reserve", "east", "--request-code", request, "--standard", "5", "--premium", "1")
    )
    installed = ok(env, "reservation", vault, "install", "--code", granted["authorization_code"], "--at", at(w.now))
    confirmation = installed.strip().splitlines()[-1]
    assert json.loads(ok(env, "authority", "confirm", confirmation))["status"] == "installed"
    await p.until("compliance", f"/v1/instances/{vault}/compliance", lambda c: c["registration"] == "reserved")
    returned = ok(env, "reservation", vault, "return", "--at", at(w.now + H)).strip().splitlines()[-1]
    assert json.loads(ok(env, "authority", "return", returned))["freed"]["premium"] == 1
    await p.until("compliance", f"/v1/instances/{vault}/compliance", lambda c: c["registration"] == "unregistered")

    # day 60 to 160: the authority is cut off; 90 days after the last communication the authorization expires and
    # enforcement follows at once (README: the 90-day reading)
    await w.to(T0 + 60 * D)
    ok(env, "authority", "fault", "unreachable", "--instance", instance_id)
    await w.to(T0 + 160 * D, every=8 * H)
    failures = await w.lifecycle(lambda o: any(e.type == "licensing.authorization.renewal_failed" for e in o))
    reasons = {e.data.reason.split(":")[0] for e in failures if e.type == "licensing.authorization.renewal_failed"}
    assert reasons == {"unreachable"}
    assert any(e.type == "licensing.reporting.failed" for e in failures)
    state = await p.until("compliance", f"/v1/instances/{instance_id}/compliance", lambda c: c["enforcement"]["active"])
    assert state["authorization"] == "authorization_expired" and state["enforcement"]["reasons"] == [
        "authorization_expired"
    ]
    _, provisioning = await p.get("compliance", f"/v1/instances/{instance_id}/provisioning")
    assert provisioning["synchronisation_allowed"] is False
    changes = [(c.data.authorization, c.data.enforcement.active, c.time) for c in await w.compliance()]
    expired = [c for c in changes if c[0] == "authorization_expired"]
    assert (
        expired[0][1] is False and expired[1][1] is True and expired[0][2] == expired[1][2]
    )  # expiry, then enforcement
    alerts = await p.until("alerting", f"/v1/alerts?state=active&instance={instance_id}", lambda b: True)
    assert {"EnforcementMode", "RenewAuthorizationFailed"} <= {a["alert"] for a in alerts["alerts"]}

    # the authority is back: the next retry renews, enforcement ends; and on to day 200 (the registration renews
    # at six months by itself)
    ok(env, "authority", "fault", "none")
    await w.to(T0 + 200 * D, every=8 * H)
    state = await p.until(
        "compliance", f"/v1/instances/{instance_id}/compliance", lambda c: not c["enforcement"]["active"]
    )
    assert state["authorization"] == "authorized"
    everything = await w.lifecycle(lambda o: any(e.type == "licensing.registration.renewed" for e in o))
    kinds = [e.type for e in everything]
    assert kinds.count("licensing.instance.registered") == 1
    assert kinds.count("licensing.registration.renewed") == 1
    # renewed on day 11 (asked for), 41, and after the cut-off; day 71 fell in it; the registration renewal at day
    # 182 authorizes too and moves the next one past day 200
    assert kinds.count("licensing.authorization.renewed") == 3
    report_failures = [(e.time, e.data.reason) for e in everything if e.type == "licensing.reporting.failed"]
    assert all(T0 + 60 * D <= t <= T0 + 161 * D for t, _ in report_failures), report_failures[:3]
    assert kinds.count("licensing.reporting.succeeded") >= 3 * 100
    _, agent = await p.get("agent", f"/v1/instances/{instance_id}/agent")
    assert agent["status"] == "registered" and agent["failures"]["authorization"] == 0
    audit = json.loads(ok(env, "authority", "audit", "--limit", "10000"))["entries"]
    assert {"licenses.move", "token.create", "instance.register", "reservation.return", "faults.set"} <= {
        e["action"] for e in audit
    }
