"""An audit bundle and its offline checks, pure: everything a verifier needs is in the bundle (the entries, the signed
checkpoints, the public keys), nothing is asked of anyone.

A bundle (`ccxlic-audit-bundle/1`) carries an instance's logs (one per service that keeps one: `logs`, each its
`origin`, its `entries` and its signed `checkpoints`), each from its first entry, so that the root at every
checkpoint's size is recomputed from them; the window it was asked for (`from`, `to`) is marked for the reader.
The checks, each with a verdict and, when it fails, the first bad entry named:
- **integrity**: every entry follows the one before it (its number, and its `prev` is that entry's hash), and the
  entries up to each checkpoint's size hash to that checkpoint's root;
- **completeness**: no checkpoint is beyond the entries (an entry removed from the end), and the checkpoints grow:
  each later one extends the earlier (with the entries in hand, their roots are recomputed, which is the consistency
  of the two trees);
- **provenance**: every checkpoint is signed by the instance's key and countersigned by the licensing authority's.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ccxlic_audit.log import GENESIS, Entry, tree
from ccxlic_audit.note import NoteError, verified

FORMAT = "ccxlic-audit-bundle/1"
USAGE_FORMAT = "ccxlic-usage-bundle/1"
"""A reservation site's usage bundle: its consumption log and a checkpoint it signed (the authority checks it)."""
AUTHORITY = "licensing-authority"
"""The name the authority signs under."""


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # integrity, completeness, provenance (and derivation, by ccxlic_whatif.derivation)
    ok: bool
    detail: str
    first_bad: int | None = None  # the first bad entry's number
    log: str | None = None  # the origin of the log it is in


CHECKS = ("integrity", "completeness", "provenance")


def verify(bundle: Mapping[str, Any]) -> list[Check]:
    """Every check of the bundle, each over every log it carries (the first failure is the check's verdict); a
    malformed bundle fails them all with the reason."""
    try:
        if bundle.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} bundle")
        keys = {name: _key(value) for name, value in bundle["keys"].items()}
        instance = str(bundle["instance"])
        logs = [
            (str(lg["origin"]), [Entry.of(e) for e in lg["entries"]], [str(n) for n in lg["checkpoints"]])
            for lg in bundle["logs"]
        ]
        if not logs:
            raise ValueError("it holds no log")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        why = f"the bundle cannot be read: {exc}"
        return [Check(name, False, why) for name in CHECKS]
    per_log = [verify_log(origin, entries, notes, keys, instance) for origin, entries, notes in logs]
    out = []
    for i, name in enumerate(CHECKS):
        failed = [checks[i] for checks in per_log if not checks[i].ok]
        if failed:
            out.append(failed[0])
        else:
            out.append(Check(name, True, "; ".join(f"{c.log}: {c.detail}" for c in (ch[i] for ch in per_log))))
    return out


def verify_log(
    origin: str, entries: list[Entry], notes: Sequence[str], keys: Mapping[str, Ed25519PublicKey], instance: str
) -> list[Check]:
    """The three checks of one log: its entries and its checkpoints (each must name `origin`)."""
    checks = [
        _integrity(entries, notes, keys),
        _completeness(entries, notes, keys),
        _provenance(notes, keys, instance),
    ]
    if all(c.ok for c in checks):
        try:
            others = sorted({cp.origin for cp, _ in (verified(n, keys) for n in notes)} - {origin})
        except NoteError:
            others = []
        if others:
            checks[0] = Check("integrity", False, f"a checkpoint of another log ({others[0]}) is among its own")
    return [replace(c, log=origin) for c in checks]


def _key(value: Any) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(str(value), validate=True))
    except (binascii.Error, ValueError):
        raise ValueError("a public key is 32 bytes of base64") from None


def _checkpoints(notes: Sequence[str], keys: Mapping[str, Ed25519PublicKey]) -> list[tuple[int, bytes, set[str]]]:
    """(size, root, names of valid signatures) of each note."""
    out = []
    for note in notes:
        cp, signed = verified(note, keys)
        out.append((cp.size, cp.root, signed))
    return out


def _integrity(entries: list[Entry], notes: Sequence[str], keys: Mapping[str, Ed25519PublicKey]) -> Check:
    prev, expected = GENESIS, 1
    seen: set[int] = set()
    for e in entries:
        if e.seq in seen:
            return Check("integrity", False, f"entry {e.seq} appears twice", e.seq)
        seen.add(e.seq)
        if e.seq != expected:
            what = f"entry {expected} is missing" if e.seq > expected else f"entry {e.seq} is out of order"
            return Check("integrity", False, f"{what}: entry {e.seq} comes after entry {expected - 1}", expected)
        if e.prev != prev:
            return Check(
                "integrity",
                False,
                f"entry {e.seq} does not follow entry {e.seq - 1}: its prev is not that entry's hash (one of the two "
                "was changed)",
                max(1, e.seq - 1),
            )
        prev, expected = e.hash, expected + 1
    try:
        checkpoints = _checkpoints(notes, keys)
    except NoteError as exc:
        return Check("integrity", False, f"a checkpoint cannot be read: {exc}")
    t = tree(entries)
    done = 0
    for size, root, _ in sorted(checkpoints):
        if size > len(entries) or size == 0:
            continue  # completeness says so
        if t.get_root(size) != root:
            return Check(
                "integrity",
                False,
                f"entries {done + 1} to {size} do not hash to the root of the checkpoint at size {size}",
                done + 1,
            )
        done = size
    return Check("integrity", True, f"{len(entries)} entries chained; {len(checkpoints)} checkpoint root(s) match")


def _completeness(entries: list[Entry], notes: Sequence[str], keys: Mapping[str, Ed25519PublicKey]) -> Check:
    try:
        checkpoints = _checkpoints(notes, keys)
    except NoteError as exc:
        return Check("completeness", False, f"a checkpoint cannot be read: {exc}")
    if not checkpoints:
        return Check("completeness", False, "no checkpoint: nothing pins the entries")
    biggest = max(size for size, _, _ in checkpoints)
    if biggest > len(entries):
        return Check(
            "completeness",
            False,
            f"a checkpoint covers {biggest} entries and the bundle has {len(entries)}: entries "
            f"{len(entries) + 1} to {biggest} are missing",
            len(entries) + 1,
        )
    roots: dict[int, bytes] = {}
    for size, root, _ in checkpoints:
        if roots.setdefault(size, root) != root:
            return Check("completeness", False, f"two checkpoints of size {size} have different roots (a fork)")
    return Check("completeness", True, f"{len(roots)} checkpoint size(s), each extending the one before it")


def _provenance(notes: Sequence[str], keys: Mapping[str, Ed25519PublicKey], instance: str) -> Check:
    if instance not in keys or AUTHORITY not in keys:
        return Check("provenance", False, f"the bundle needs the public keys of {instance!r} and {AUTHORITY!r}")
    try:
        checkpoints = _checkpoints(notes, keys)
    except NoteError as exc:
        return Check("provenance", False, f"a checkpoint's signature is not valid: {exc}")
    for size, _, signed in checkpoints:
        missing = {instance, AUTHORITY} - signed
        if missing:
            return Check(
                "provenance",
                False,
                f"the checkpoint at size {size} lacks the signature of {', '.join(sorted(missing))}",
            )
    return Check("provenance", True, f"{len(checkpoints)} checkpoint(s) signed by {instance} and countersigned")
