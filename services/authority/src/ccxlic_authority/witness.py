"""The authority as a witness of the licensing logs (issue "Proof an auditor accepts"). Pure.

With its usage report, an instance's Smart Agent sends the checkpoint of each log kept for it (signed notes, the
instance's signature under its id) and the instance's log key. The authority pins the key the first time it sees
one for the instance (a later, different key is refused: only the authority's administrator can change it), and
countersigns a checkpoint only when:
- it is signed by the pinned key, and its origin is one of the instance's logs (`ccxlic/<instance>/<service>`);
- it does not go back: its size is not below the largest the authority countersigned for that log, and at a size
  it countersigned before its root is the same (two roots at one size would be two histories, a fork).
What it countersigns it keeps: it cannot deny a checkpoint it signed, and the instance cannot later show a history
that forks from one. (Consistency proofs between sizes are left to the offline verifier, which has every entry.)

A reserved instance cannot report: its administrator carries a **usage bundle** to the authority instead (`usage`):
the consumption computer's log of the instance (its interval reports) and its checkpoint signed by the site's log
key. The authority checks it whole (the chain, the root, the signature; the same no-going-back and no-fork rules),
countersigns the checkpoint and records the peaks against the reservation.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ccxlic_audit.bundle import AUTHORITY, USAGE_FORMAT
from ccxlic_audit.log import Entry, broken_link, leaf_root
from ccxlic_audit.note import Checkpoint, NoteError, sign, split, verified
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAX_CHECKPOINTS = 16


@dataclass(frozen=True, slots=True)
class Witnessed:
    """What the authority made of a report's checkpoints: the notes it countersigned (with the checkpoint each
    holds), and why it refused the others."""

    countersigned: list[tuple[Checkpoint, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def log_key(value: Any) -> Ed25519PublicKey:
    """An instance's log key as a report carries it (base64 of the 32 raw bytes); ValueError says what is wrong."""
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(str(value), validate=True))
    except (binascii.Error, ValueError):
        raise ValueError("log_key must be an Ed25519 public key: base64 of its 32 bytes") from None


def sizes(notes: Any) -> list[int]:
    """The tree sizes the notes name, as far as they can be read (to look up what was countersigned at them)."""
    found = []
    for note in notes if isinstance(notes, list) else []:
        try:
            found.append(Checkpoint.parse(split(str(note))[0]).size)
        except NoteError:
            continue
    return found[:MAX_CHECKPOINTS]


def witness(
    instance: str,
    notes: Any,
    key: Ed25519PublicKey,
    last: Mapping[str, Sequence[tuple[int, bytes]]],
    authority: Ed25519PrivateKey,
) -> Witnessed:
    """Countersign the checkpoints of `notes` that may be; `last` holds, per origin, the (size, root) countersigned
    before (the largest and any at the sizes these name)."""
    out = Witnessed()
    if not isinstance(notes, list) or len(notes) > MAX_CHECKPOINTS:
        out.refused.append(f"checkpoints must be a list of at most {MAX_CHECKPOINTS} signed notes")
        return out
    for note in notes:
        try:
            cp, signed = verified(str(note), {instance: key})
            if instance not in signed:
                raise NoteError(f"it is not signed by {instance!r}'s log key")
            if not cp.origin.startswith(f"ccxlic/{instance}/"):
                raise NoteError(f"its origin {cp.origin!r} is not a log of {instance!r}")
            for size, root in last.get(cp.origin, ()):
                if size > cp.size:
                    raise NoteError(f"its size {cp.size} is below {size}, countersigned before")
                if size == cp.size and root != cp.root:
                    raise NoteError(f"at size {size} the root countersigned before is another (a fork)")
            text, _ = split(str(note))
            out.countersigned.append((cp, sign(text, AUTHORITY, authority, str(note))))
        except NoteError as exc:
            out.refused.append(f"{str(note)[:60]!r}: {exc}")
    return out


# ---------------------------------------------------------------- a reservation site's usage bundle

INTERVAL = "licensing.consumption.interval_closed"
MAX_USAGE_ENTRIES = 100_000


@dataclass(frozen=True, slots=True)
class Usage:
    """What a site's usage bundle proves: its checkpoint (signed by the site) and the latest revision of each
    interval's peaks in it, by interval start (ISO), as (revision, peaks per license)."""

    checkpoint: Checkpoint
    note: str
    peaks: dict[str, tuple[int, dict[str, int]]]


def usage(instance: str, bundle: Any, key: Ed25519PublicKey) -> Usage:
    """Check a reservation site's usage bundle: the consumption computer's log of the instance from its first entry,
    chained, hashing to the root of the checkpoint that the site's log key signed. ValueError names what is wrong
    (the first bad entry)."""
    if not isinstance(bundle, dict) or bundle.get("format") != USAGE_FORMAT:
        raise ValueError(f"not a {USAGE_FORMAT} bundle")
    raw = bundle.get("entries")
    if not isinstance(raw, list) or len(raw) > MAX_USAGE_ENTRIES:
        raise ValueError(f"entries must be a list of at most {MAX_USAGE_ENTRIES} log entries")
    try:
        entries = [Entry.of(e) for e in raw]
        cp, signed = verified(str(bundle.get("checkpoint", "")), {instance: key})
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the bundle cannot be read: {exc}") from None
    if instance not in signed:
        raise ValueError(f"its checkpoint is not signed by {instance!r}'s log key")
    if cp.origin != f"ccxlic/{instance}/consumption":
        raise ValueError(f"its checkpoint is of {cp.origin!r}, not of {instance!r}'s consumption log")
    bad = broken_link(entries)
    if bad is not None:
        raise ValueError(f"entry {bad.seq} does not follow the one before it (changed, removed or moved)")
    if len(entries) != cp.size:
        raise ValueError(f"the checkpoint covers {cp.size} entries and the bundle has {len(entries)}")
    if leaf_root([e.bytes() for e in entries]) != cp.root:
        raise ValueError(f"entries 1 to {cp.size} do not hash to the signed checkpoint's root")
    peaks: dict[str, tuple[int, dict[str, int]]] = {}
    for e in entries:
        if e.kind != INTERVAL:
            continue
        try:
            data = e.body["data"]
            start, revision = str(data["interval_start"]), int(data["revision"])
            peak = {lic: int(data["peak"][lic]) for lic in ("standard", "premium", "ivr_ports")}
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"entry {e.seq} is not an interval report") from None
        if start not in peaks or peaks[start][0] < revision:
            peaks[start] = (revision, peak)
    return Usage(cp, str(bundle["checkpoint"]), peaks)
