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
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ccxlic_audit.bundle import AUTHORITY
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
