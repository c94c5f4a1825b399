"""The licensing log's core (`ccxlic_audit`): entries chained by hash, RFC 6962 roots, checkpoints as signed notes,
and the offline checks of a bundle, with each kind of tampering caught and the entry named."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ccxlic_audit.bundle import AUTHORITY, FORMAT, verify
from ccxlic_audit.log import Entry, Head, append, canonical, root
from ccxlic_audit.note import Checkpoint, NoteError, public_bytes, sign, split, verified
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
INSTANCE = "cc-east"
ORIGIN = f"ccxlic/{INSTANCE}/compliance"
ME, WITNESS, MALLORY = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()


def log(n: int) -> list[Entry]:
    out: list[Entry] = []
    for i in range(n):
        body = {"interval_start": T0 + i * timedelta(hours=8), "revision": 1, "peak": {"premium": i % 7}}
        out.append(append(out, "interval_report", T0 + i * timedelta(hours=8), body))
    return out


def note(entries: list[Entry], size: int, *, by: Ed25519PrivateKey = ME, witness: bool = True) -> str:
    text = Checkpoint(ORIGIN, size, root(entries[:size])).text()
    signed = sign(text, INSTANCE, by)
    return sign(text, AUTHORITY, WITNESS, signed) if witness else signed


def bundle(entries: list[Entry], notes: list[str]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "instance": INSTANCE,
        "logs": [{"origin": ORIGIN, "entries": [e.as_json() for e in entries], "checkpoints": notes}],
        "keys": {
            INSTANCE: base64.b64encode(public_bytes(ME.public_key())).decode(),
            AUTHORITY: base64.b64encode(public_bytes(WITNESS.public_key())).decode(),
        },
    }


def good() -> tuple[list[Entry], list[str]]:
    entries = log(10)
    return entries, [note(entries, n) for n in (3, 6, 10)]


def verdicts(b: dict[str, Any]) -> dict[str, tuple[bool, int | None]]:
    return {c.name: (c.ok, c.first_bad) for c in verify(b)}


def test_the_roots_are_rfc_6962s() -> None:
    h = lambda b: hashlib.sha256(b).digest()  # noqa: E731
    entries = log(3)
    leaves = [h(b"\x00" + e.bytes()) for e in entries]
    assert root(entries) == h(b"\x01" + h(b"\x01" + leaves[0] + leaves[1]) + leaves[2])
    assert root([]) == h(b"")


def test_canonical_json_is_one_byte_form() -> None:
    assert canonical({"b": 1, "a": T0, "é": [1, 2]}) == '{"a":"2026-03-02T08:00:00Z","b":1,"é":[1,2]}'.encode()
    with pytest.raises(ValueError, match="without an offset"):
        canonical({"at": datetime(2026, 3, 2)})


def test_a_good_bundle_passes_every_check() -> None:
    entries, notes = good()
    assert verdicts(bundle(entries, notes)) == {
        "integrity": (True, None),
        "completeness": (True, None),
        "provenance": (True, None),
    }


def test_a_changed_entry_is_named() -> None:
    entries, notes = good()
    e = entries[4]
    entries[4] = Entry(e.seq, e.kind, e.at, {**e.body, "revision": 2}, e.prev)
    assert verdicts(bundle(entries, notes))["integrity"] == (False, 5)


def test_a_deleted_a_duplicated_and_a_reordered_entry_are_named() -> None:
    entries, notes = good()
    assert verdicts(bundle(entries[:3] + entries[4:], notes))["integrity"] == (False, 4)
    assert verdicts(bundle([*entries[:4], entries[3], *entries[4:]], notes))["integrity"] == (False, 4)
    swapped = [*entries[:2], entries[3], entries[2], *entries[4:]]
    assert verdicts(bundle(swapped, notes))["integrity"] == (False, 3)


def test_a_rewritten_chain_does_not_hash_into_the_signed_checkpoint() -> None:
    entries, notes = good()
    forged = entries[:4]
    for e in entries[4:]:  # the forger changes entry 5 and links every later one again
        body = {**e.body, "peak": {"premium": 0}} if e.seq == 5 else e.body
        forged.append(append(forged, e.kind, datetime.fromisoformat(e.at.replace("Z", "+00:00")), body))
    ok, first_bad = verdicts(bundle(forged, notes))["integrity"]
    assert not ok and first_bad == 4  # the entries after the checkpoint at 3, up to the one at 6


def test_a_removed_tail_and_a_fork_are_incomplete() -> None:
    entries, notes = good()
    assert verdicts(bundle(entries[:8], notes))["completeness"] == (False, 9)
    other = log(6)
    other[5] = append(other[:5], "interval_report", T0, {"other": True})
    assert verdicts(bundle(entries, [*notes, note(other, 6)]))["completeness"][0] is False


def test_a_forged_or_unwitnessed_checkpoint_fails_provenance() -> None:
    entries, notes = good()
    assert verdicts(bundle(entries, [*notes, note(entries, 8, by=MALLORY)]))["provenance"][0] is False
    assert verdicts(bundle(entries, [*notes, note(entries, 8, witness=False)]))["provenance"][0] is False


def test_notes_refuse_what_is_not_one() -> None:
    entries, _ = good()
    n = note(entries, 3)
    cp, names = verified(n, {INSTANCE: ME.public_key(), AUTHORITY: WITNESS.public_key()})
    assert (cp.size, names) == (3, {INSTANCE, AUTHORITY})
    text, sigs = split(n)
    assert text == cp.text() and [s[0] for s in sigs] == [INSTANCE, AUTHORITY]
    with pytest.raises(NoteError, match="does not verify"):
        verified(n.replace("\n3\n", "\n4\n"), {INSTANCE: ME.public_key()})
    with pytest.raises(NoteError, match="same text"):
        sign("other\n1\n" + base64.b64encode(bytes(32)).decode() + "\n", AUTHORITY, WITNESS, n)
    with pytest.raises(NoteError):
        Checkpoint.parse("origin\n007\nAAAA\n")
    b = bundle(entries, [note(entries, 3)])
    b["logs"][0]["origin"] = f"ccxlic/{INSTANCE}/alerting"  # a checkpoint of one log passed off as another's
    assert verdicts(b)["integrity"][0] is False
    assert verdicts({"format": "nope"})["integrity"][0] is False


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 100, 257])
def test_a_heads_frontier_gives_the_root_of_every_entry(n: int) -> None:
    entries = log(n)
    head = Head()
    for e in entries:
        head = head.after(e.bytes())
    assert head.seq == n and head.root() == root(entries)
    assert head.hash == (entries[-1].hash if entries else "0" * 64)
    assert Head.unpacked(n, head.hash, head.packed()) == head
    with pytest.raises(ValueError, match="not one of a log"):
        Head.unpacked(n + 1, head.hash, head.packed() + bytes(32 if n % 2 else 0))
