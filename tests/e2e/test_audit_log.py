"""Done-when of "Proof an auditor accepts", end to end: the licensing authority, the chain, the Smart Agent and the
console as processes on the real stack, 30 simulated days of a contact center that outgrows its Premium licenses.

- Every usage report carries the logs' checkpoints, signed by the instance and countersigned by the authority;
- `ccxlic audit export` writes the bundle, and `ccxlic audit verify` passes it, with the authority's key given;
- every tamper case (an interval report, a compliance transition and an alert transition, each changed, deleted,
  duplicated and moved; a checkpoint forged; the authority's key swapped) fails verify with the entry named;
- a reservation site (installed offline, its IVR ports sampled above what it reserved) writes its usage bundle, which
  the authority accepts, showing the over-use; a forged one (a peak lowered, or signed by another key) is refused.
"""

from __future__ import annotations

import base64
import copy
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ccxlic_audit.bundle import AUTHORITY
from ccxlic_audit.log import GENESIS, Entry, following, root
from ccxlic_audit.note import Checkpoint, sign, split
from ccxlic_cli.audit import checks
from ccxlic_cli.scenario import load
from ccxlic_cli.simulator import generate
from ccxlic_runtime.kafka import EventProducer
from ccxlic_testing.build import Build
from ccxlic_testing.plugin import ReadTopic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.e2e.conftest import T0, Pipeline, Walk, ccxlic, ok

pytestmark = pytest.mark.e2e
D, H = timedelta(days=1), timedelta(hours=1)
DAYS = 30
KINDS = {
    "consumption": "licensing.consumption.interval_closed",
    "compliance": "licensing.compliance.changed",
    "alerting": "licensing.alert.raised",
}


def verdicts(bundle: Any, authority: str | None = None) -> dict[str, tuple[bool, int | None, str | None]]:
    return {c.name: (c.ok, c.first_bad, c.log) for c in checks(bundle, authority)}


def failed(bundle: Any, authority: str) -> tuple[str, int | None, str | None]:
    """The first check that fails, the entry it names and the log it is in."""
    bad = [(name, first, log) for name, (good, first, log) in verdicts(bundle, authority).items() if not good]
    assert bad, "verify passed a tampered bundle"
    return bad[0]


async def test_thirty_days_exported_verified_and_every_tamper_named(
    licensing: Pipeline,
    producer: EventProducer,
    read_topic: ReadTopic,
    contract_topics: dict[str, str],
    instance_id: str,
    tmp_path: Path,
) -> None:
    p, env = licensing, licensing.env
    w = Walk(p, producer, read_topic, contract_topics, instance_id)
    ok(env, "authority", "account", "east", "--smart-account", "acme")
    ok(env, "authority", "deposit", "east", "--standard", "45", "--premium", "8", "--ivr-ports", "30")
    token = json.loads(ok(env, "authority", "token", "east"))["token"]
    ok(env, "register", instance_id, "--token", token, "--at", T0.isoformat())
    await p.until("compliance", f"/v1/instances/{instance_id}/compliance", lambda c: c["authorization"] == "authorized")
    vault = f"{instance_id}-vault"
    reserve_offline(env, vault)

    scenario = load("seasonal-growth")
    center = scenario.instances[0].model_copy(update={"id": instance_id, "registered": False, "entitlements": None})
    scenario = scenario.model_copy(
        update={"instances": (center,), "duration": timedelta(days=DAYS), "tick_every": timedelta(hours=8)}
    )
    start = T0.replace(hour=8, minute=0)
    events = generate(scenario, start)
    for week in range(0, DAYS, 7):
        until = start + min(week + 7, DAYS) * D
        await producer.publish_many([e for e in events if start + week * D <= e.time < until])
        if week == 0:  # the vault's IVR ports, sampled above the 5 it reserved on day 2
            v = Build(vault)
            await producer.publish_many(
                [v.ports(start + D, 4), v.ports(start + D + 2 * H, 8), v.ports(start + 2 * D, 3)]
            )
        await w.to(until - H, every=8 * H)
    # the last usage report has gone out, with its checkpoints
    await p.until("agent", f"/v1/instances/{instance_id}/checkpoints", lambda b: len(b["checkpoints"]) >= 3, 60)

    # export, then verify as an auditor would: a process, with the authority's key obtained beforehand
    bundle_file, key_file = tmp_path / "audit.json", tmp_path / "authority.pem"
    _, keys = await p.get("authority", "/v1/keys")
    key_file.write_text(keys["public_key_pem"])
    ok(env, "audit", "export", instance_id, "--from", start.isoformat(), "-o", str(bundle_file))
    out = ok(env, "audit", "verify", str(bundle_file), "--authority-key", str(key_file))
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["integrity", "ok"],
        ["completeness", "ok"],
        ["provenance", "ok"],
        ["derivation", "ok"],
    ], out
    bundle = json.loads(bundle_file.read_text())
    logs = {lg["origin"].rsplit("/", 1)[-1]: lg for lg in bundle["logs"]}
    for service, kind in KINDS.items():
        kinds = [e["kind"] for e in logs[service]["entries"]]
        assert kind in kinds and logs[service]["checkpoints"], (service, set(kinds))
    authority = bundle["keys"][AUTHORITY]

    # each tamper case fails, naming the entry: for each kind, an entry within a countersigned checkpoint
    for service, kind in KINDS.items():
        signed = min(int(split(n)[0].split("\n")[1]) for n in logs[service]["checkpoints"])
        entries = logs[service]["entries"]
        i = max(n for n, e in enumerate(entries[: signed - 1]) if e["kind"] == kind)  # not the last signed
        seq = entries[i]["seq"]

        def tampered(change: Any, svc: str = service) -> Any:
            b = copy.deepcopy(bundle)
            lg = next(x for x in b["logs"] if x["origin"].endswith("/" + svc))
            lg["entries"] = change(lg["entries"])
            return b

        def changed(es: list[Any], i: int = i) -> list[Any]:
            es[i]["body"]["time"] = "2000-01-01T00:00:00Z"
            return es

        cases = {
            "changed": changed,
            "deleted": lambda es, i=i: es[:i] + es[i + 1 :],
            "duplicated": lambda es, i=i: [*es[: i + 1], es[i], *es[i + 1 :]],
            "moved": lambda es, i=i: [*es[:i], es[i + 1], es[i], *es[i + 2 :]],
        }
        for how, change in cases.items():
            check, first, log = failed(tampered(change), authority)
            assert check == "integrity" and log and log.endswith(service), (service, how, check, log)
            assert first in (seq, seq + 1), (service, how, first, seq)

    # a checkpoint forged: signed by a key that is not the instance's, or its root changed
    mallory = Ed25519PrivateKey.generate()
    forged = copy.deepcopy(bundle)
    lg = next(x for x in forged["logs"] if x["origin"].endswith("/compliance"))
    text, _ = split(lg["checkpoints"][-1])
    cp = Checkpoint.parse(text)
    lg["checkpoints"].append(sign(Checkpoint(cp.origin, cp.size, bytes(32)).text(), instance_id, mallory))
    assert not verdicts(forged, authority)["provenance"][0]
    # a key other than the authority's: the countersignatures are not the authority's
    pem = mallory.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "other.pem").write_bytes(pem)
    r = ccxlic(env, "audit", "verify", str(bundle_file), "--authority-key", str(tmp_path / "other.pem"))
    assert r.returncode == 1 and "provenance   FAILED" in r.stdout, r.stdout
    # the entries after an entry cut off, as a process: completeness names the first one missing
    cut = copy.deepcopy(bundle)
    lg = next(x for x in cut["logs"] if x["origin"].endswith("/alerting"))
    lg["entries"] = lg["entries"][:1]
    (tmp_path / "cut.json").write_text(json.dumps(cut))
    r = ccxlic(env, "audit", "verify", str(tmp_path / "cut.json"), "--authority-key", str(key_file))
    assert r.returncode == 1 and "completeness FAILED" in r.stdout and "(entry 2 of " in r.stdout, r.stdout

    # the reservation site: its usage bundle is accepted, with the over-use; forged ones are refused
    site = tmp_path / "vault.json"
    ok(env, "reservation", vault, "usage", "-o", str(site))
    answer = json.loads(ok(env, "authority", "usage", str(site)))
    assert answer["highest"]["ivr_ports"] == 8 and answer["checkpoint"]["countersigned"], answer
    # 8 ports from day 1, 10:00 until the sample of 3 on day 2, 08:00: the three intervals in between are over
    over = answer["over"]
    assert [o["interval_start"][:13] for o in over] == [(start + D + k * 8 * H).isoformat()[:13] for k in range(3)]
    assert {o["short"]["ivr_ports"] for o in over} == {3}
    [listed] = json.loads(ok(env, "authority", "reservations", "vault-va"))["reservations"]
    assert listed["usage"]["over"] == answer["over"]
    carried = json.loads(site.read_text())
    lowered = copy.deepcopy(carried)
    for e in lowered["entries"]:
        if e["kind"] == "licensing.consumption.interval_closed" and e["body"]["data"]["peak"]["ivr_ports"] > 5:
            e["body"]["data"]["peak"]["ivr_ports"] = 5
    (tmp_path / "lowered.json").write_text(json.dumps(lowered))
    r = ccxlic(env, "authority", "usage", str(tmp_path / "lowered.json"))
    assert r.returncode == 1 and "refused (422)" in r.stderr and "does not follow" in r.stderr, r.stderr
    resigned = copy.deepcopy(lowered)
    text, _ = split(resigned["checkpoint"])
    resigned["log_key"] = base64.b64encode(
        mallory.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()
    entries = [Entry.of(e) for e in resigned["entries"]]
    relinked: list[Entry] = []
    for e in entries:  # a forger links the lowered entries again and signs a checkpoint of them with a key of theirs
        at = datetime.fromisoformat(e.at.replace("Z", "+00:00"))
        relinked.append(following(len(relinked), relinked[-1].hash if relinked else GENESIS, e.kind, at, e.body))
    resigned["entries"] = [e.as_json() for e in relinked]
    resigned["checkpoint"] = sign(
        Checkpoint(Checkpoint.parse(text).origin, len(relinked), root(relinked)).text(), vault, mallory
    )
    (tmp_path / "resigned.json").write_text(json.dumps(resigned))
    r = ccxlic(env, "authority", "usage", str(tmp_path / "resigned.json"))
    assert r.returncode == 1 and "not the one pinned" in r.stderr, r.stderr

    # the site's own audit bundle, pinned by the checkpoint the authority countersigned at the upload: a reservation
    # event tampered with is named too
    ok(env, "audit", "export", vault, "-o", str(tmp_path / "vault.audit.json"))
    site_bundle = json.loads((tmp_path / "vault.audit.json").read_text())
    lg = next(x for x in site_bundle["logs"] if x["origin"].endswith("/consumption"))
    lg["checkpoints"] = [answer["checkpoint"]["countersigned"]]
    assert verdicts(site_bundle, authority)["integrity"][0], verdicts(site_bundle, authority)
    i = next(n for n, e in enumerate(lg["entries"]) if e["kind"] == "licensing.reservation.installed")
    seq = lg["entries"][i]["seq"]
    for how, change in {
        "changed": lambda es: [*es[:i], {**es[i], "at": "2000-01-01T00:00:00Z"}, *es[i + 1 :]],
        "deleted": lambda es: es[:i] + es[i + 1 :],
        "duplicated": lambda es: [*es[: i + 1], es[i], *es[i + 1 :]],
        "moved": lambda es: [*es[:i], es[i + 1], es[i], *es[i + 2 :]],
    }.items():
        b = copy.deepcopy(site_bundle)
        x = next(x for x in b["logs"] if x["origin"].endswith("/consumption"))
        x["entries"] = change(x["entries"])
        check, first, log = failed(b, authority)
        assert (check, first) in (("integrity", seq), ("integrity", seq + 1)) and log and log.endswith("consumption"), (
            how,
            check,
            first,
            seq,
        )


def reserve_offline(env: dict[str, str], vault: str) -> None:
    """A second instance with a reservation of 40 Standard, 10 Premium and 5 IVR ports, installed offline."""
    ok(env, "authority", "account", "vault-va", "--smart-account", "acme")
    ok(env, "authority", "deposit", "vault-va", "--standard", "40", "--premium", "10", "--ivr-ports", "5")
    at = T0.isoformat()
    ok(env, "reservation", vault, "enable", "--at", at)
    request = ok(env, "reservation", vault, "request", "--at", at).strip().splitlines()[-1]
    granted = json.loads(
        ok(
            env,
            "authority",
            "reserve",
            "vault-va",
            "--request-code",
            request,
            "--standard",
            "40",
            "--premium",
            "10",
            "--ivr-ports",
            "5",
        )
    )
    out = ok(env, "reservation", vault, "install", "--code", granted["authorization_code"], "--at", at)
    assert json.loads(ok(env, "authority", "confirm", out.strip().splitlines()[-1]))["status"] == "installed"
