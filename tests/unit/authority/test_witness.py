"""The authority as the licensing logs' witness (`ccxlic_authority.witness`): it countersigns a checkpoint signed by
the instance's log key, of one of the instance's logs, that does not go back or fork from one it countersigned."""

from __future__ import annotations

import base64
import hashlib

import pytest
from ccxlic_audit.bundle import AUTHORITY
from ccxlic_audit.note import Checkpoint, public_bytes, sign, verified
from ccxlic_authority.witness import log_key, sizes, witness
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ME, AUTH, OTHER = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
ORIGIN = "ccxlic/cc-1/compliance"


def note(size: int, *, origin: str = ORIGIN, by: Ed25519PrivateKey = ME, name: str = "cc-1", seed: bytes = b"") -> str:
    root = hashlib.sha256(b"%d" % size + seed).digest()
    return sign(Checkpoint(origin, size, root).text(), name, by)


def test_a_good_checkpoint_is_countersigned_and_verifies_under_both_keys() -> None:
    done = witness("cc-1", [note(5)], ME.public_key(), {}, AUTH)
    assert done.refused == [] and len(done.countersigned) == 1
    cp, n = done.countersigned[0]
    assert cp.size == 5
    assert verified(n, {"cc-1": ME.public_key(), AUTHORITY: AUTH.public_key()})[1] == {"cc-1", AUTHORITY}


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (note(5, by=OTHER), "by another key"),
        (note(5, name="cc-2", by=ME), "not signed by"),
        (note(5, origin="ccxlic/cc-2/compliance"), "not a log of"),
        (note(3), "below 4"),
        (note(4, seed=b"other"), "a fork"),
        ("not a note", "signed note"),
    ],
)
def test_what_is_not_the_instances_or_goes_back_or_forks_is_refused(bad: str, why: str) -> None:
    last = {ORIGIN: [(4, hashlib.sha256(b"4").digest())]}
    done = witness("cc-1", [bad, note(6)], ME.public_key(), last, AUTH)
    assert [cp.size for cp, _ in done.countersigned] == [6]  # the good one still is
    assert len(done.refused) == 1 and why in done.refused[0], done.refused


def test_what_a_report_carries_is_checked() -> None:
    assert witness("cc-1", "nope", ME.public_key(), {}, AUTH).refused
    assert witness("cc-1", [note(1)] * 17, ME.public_key(), {}, AUTH).refused
    with pytest.raises(ValueError, match="32 bytes"):
        log_key("AAAA")
    assert log_key(base64.b64encode(public_bytes(ME.public_key())).decode()) is not None
    assert sizes([note(3), "junk", note(9)]) == [3, 9]
