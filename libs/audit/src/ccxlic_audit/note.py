"""Checkpoints as C2SP signed notes (c2sp.org/tlog-checkpoint, c2sp.org/signed-note), with Ed25519 keys. Pure.

A checkpoint's text is three lines: the log's origin (`ccxlic/<instance>`), the tree size, and the base64 RFC 6962
root. A signed note is that text, a blank line, and one line per signature: `— <name> <base64(key id || sig)>`,
where the key id is the first 4 bytes of SHA-256(`<name>` || 0x0A || 0x01 || the 32-byte public key) and the
signature is Ed25519 over the text. The instance signs its checkpoints; the licensing authority countersigns them
(as a witness) with its own line over the same text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DASH = "\u2014"  # the em dash that starts a signature line
ED25519 = b"\x01"


class NoteError(ValueError):
    """A note or checkpoint that cannot be accepted; the message says why."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        if not self.origin or any(c in self.origin for c in " +\n"):
            raise NoteError(f"an origin has no space, '+' or line break: {self.origin!r}")
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or any(line == "" for line in lines[:-1]):
            raise NoteError("a checkpoint is three or more non-empty lines, each ending in a line break")
        origin, size, root = lines[0], lines[1], lines[2]
        if not size.isdigit() or (size != "0" and size.startswith("0")):
            raise NoteError(f"a checkpoint's tree size is a decimal number: {size!r}")
        try:
            digest = base64.b64decode(root, validate=True)
        except (binascii.Error, ValueError):
            raise NoteError("a checkpoint's root is base64") from None
        if len(digest) != 32:
            raise NoteError("a checkpoint's root is a SHA-256 hash (32 bytes)")
        return cls(origin, int(size), digest)


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, key: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public_bytes(key)).digest()[:4]


def sign(text: str, name: str, key: Ed25519PrivateKey, note: str | None = None) -> str:
    """`text` as a signed note with `name`'s signature, or `note` (a signed note of the same text) with one more."""
    line = f"{DASH} {name} {base64.b64encode(key_id(name, key.public_key()) + key.sign(text.encode())).decode()}\n"
    if note is None:
        return f"{text}\n{line}"
    body, _ = split(note)
    if body != text:
        raise NoteError("a countersignature is over the same text")
    return note + line


def split(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """The text and the signature lines (name, key id, signature) of a signed note."""
    text, sep, rest = note.rpartition("\n\n")
    if not sep or not rest.endswith("\n"):
        raise NoteError("a signed note is its text, a blank line and its signature lines")
    text += "\n"
    sigs = []
    for line in rest[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH:
            raise NoteError(f"a signature line is '{DASH} <name> <base64>': {line[:80]!r}")
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError):
            raise NoteError(f"the signature of {parts[1]!r} is not base64") from None
        if len(raw) != 4 + 64:
            raise NoteError(f"the signature of {parts[1]!r} is not an Ed25519 one")
        sigs.append((parts[1], raw[:4], raw[4:]))
    return text, sigs


def verified(note: str, keys: Mapping[str, Ed25519PublicKey]) -> tuple[Checkpoint, set[str]]:
    """The checkpoint of a signed note and the names of `keys` whose signatures on it are valid. A signature by a
    name not in `keys` is ignored; one by a name in `keys` that does not verify is an error (a forgery)."""
    text, sigs = split(note)
    good: set[str] = set()
    for name, kid, sig in sigs:
        key = keys.get(name)
        if key is None:
            continue
        if kid != key_id(name, key):
            raise NoteError(f"the signature of {name!r} is by another key")
        try:
            key.verify(sig, text.encode())
        except InvalidSignature:
            raise NoteError(f"the signature of {name!r} does not verify") from None
        good.add(name)
    return Checkpoint.parse(text), good
