"""An instance's licensing log, pure: entries chained by hash, and the Merkle tree over them.

- An **entry** is what a service recorded (an interval report revision, a compliance transition, an alert transition,
  a reservation event) as canonical JSON (`canonical`: keys sorted, no spaces, UTF-8, times in RFC 3339 UTC), with its
  number in the log and the previous entry's hash: `hash = SHA-256(canonical({seq, kind, at, body, prev}))`. The
  chain is hand-written (a dozen lines: one hash per entry); it makes any change, removal, insertion or reordering of
  an entry break every hash after it.
- The **tree** over the entries is RFC 6962's (leaf `SHA-256(0x00 || entry)`, node `SHA-256(0x01 || left || right)`),
  kept by `pymerkle` (a maintained library; its roots are RFC 6962's, a test holds it to that): a checkpoint's root
  commits to every entry up to its size, and a consistency proof shows a later checkpoint extends an earlier one.
- A service appends with a **head** (`Head`): its last entry and the tree's frontier, a subtree root per bit of the
  size. It is hand-written because pymerkle keeps every leaf (in memory or its own SQLite file) and cannot resume from
  a stored frontier; a test holds its root to pymerkle's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymerkle import InmemoryTree

GENESIS = "0" * 64
"""The `prev` of an instance's first entry."""


def canonical(value: Any) -> bytes:
    """The one byte form of a JSON value: keys sorted, no spaces, UTF-8; a datetime as RFC 3339 UTC (`Z`)."""

    def default(o: Any) -> Any:
        if isinstance(o, datetime):
            if o.tzinfo is None:
                raise ValueError(f"a time without an offset cannot be logged: {o!r}")
            return o.astimezone(UTC).isoformat().replace("+00:00", "Z")
        raise TypeError(f"cannot log a {type(o).__name__}")

    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=default).encode()


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int  # 1, 2, ... within the instance's log
    kind: str  # interval_report, compliance_transition, alert_raised, alert_resolved, reservation, ...
    at: str  # RFC 3339 UTC: the event time of what it records
    body: Mapping[str, Any]
    prev: str  # the previous entry's hash (GENESIS for the first)

    def bytes(self) -> bytes:
        return canonical({"seq": self.seq, "kind": self.kind, "at": self.at, "body": self.body, "prev": self.prev})

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.bytes()).hexdigest()

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "at": self.at, "body": dict(self.body), "prev": self.prev}

    @classmethod
    def of(cls, value: Mapping[str, Any]) -> Entry:
        """An entry as a bundle carries it; KeyError/TypeError/ValueError when it is not one."""
        seq, kind, at, body, prev = (value[k] for k in ("seq", "kind", "at", "body", "prev"))
        if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(body, Mapping):
            raise ValueError("an entry has a whole seq and an object body")
        return cls(seq, str(kind), str(at), body, str(prev))


def append(log: Sequence[Entry], kind: str, at: datetime, body: Mapping[str, Any]) -> Entry:
    """The next entry of `log`."""
    return following(len(log), log[-1].hash if log else GENESIS, kind, at, body)


def following(seq: int, prev: str, kind: str, at: datetime, body: Mapping[str, Any]) -> Entry:
    """The entry after entry `seq` whose hash is `prev` (0 and GENESIS: the first)."""
    return Entry(seq + 1, kind, json.loads(canonical(at)), json.loads(canonical(body)), prev)


@dataclass(frozen=True, slots=True)
class Head:
    """Where a log stands: its last entry's number and hash, and its RFC 6962 frontier (the roots of the perfect
    subtrees its size splits into, largest first, at most one per bit of the size): enough to append an entry and to
    give the root, with no entry read again. (`leaf_root` is the same root from every entry: a test holds them equal.)"""

    seq: int = 0
    hash: str = GENESIS
    frontier: tuple[bytes, ...] = ()

    def after(self, entry: bytes) -> Head:
        """The head once `entry` (an entry's bytes, numbered seq + 1) is appended."""
        node = hashlib.sha256(b"\x00" + entry).digest()
        nodes = list(self.frontier)
        size = self.seq
        while size & 1:  # two perfect subtrees of one size become one of twice the size
            node = hashlib.sha256(b"\x01" + nodes.pop() + node).digest()
            size >>= 1
        nodes.append(node)
        return Head(self.seq + 1, hashlib.sha256(entry).hexdigest(), tuple(nodes))

    def root(self) -> bytes:
        if not self.frontier:
            return hashlib.sha256(b"").digest()
        node = self.frontier[-1]
        for left in reversed(self.frontier[:-1]):
            node = hashlib.sha256(b"\x01" + left + node).digest()
        return node

    def packed(self) -> bytes:
        return b"".join(self.frontier)

    @classmethod
    def unpacked(cls, seq: int, hash: str, frontier: bytes) -> Head:
        if len(frontier) % 32 or len(frontier) // 32 != bin(seq).count("1"):
            raise ValueError(f"a frontier of {len(frontier)} bytes is not one of a log of {seq} entries")
        return cls(seq, hash, tuple(frontier[i : i + 32] for i in range(0, len(frontier), 32)))


def leaf_root(leaves: Sequence[bytes]) -> bytes:
    """The RFC 6962 root over entries given as their bytes (`Entry.bytes()`, as a store keeps them)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    t = InmemoryTree(algorithm="sha256")
    for leaf in leaves:
        t.append_entry(leaf)
    found: bytes = t.get_root()
    return found


def broken_link(entries: Iterable[Entry], first_prev: str = GENESIS, first_seq: int = 1) -> Entry | None:
    """The first entry that does not follow the one before it (its number or its `prev`), or None."""
    prev, seq = first_prev, first_seq
    for e in entries:
        if e.seq != seq or e.prev != prev:
            return e
        prev, seq = e.hash, seq + 1
    return None


def tree(entries: Iterable[Entry]) -> InmemoryTree:
    t = InmemoryTree(algorithm="sha256")
    for e in entries:
        t.append_entry(e.bytes())
    return t


def root(entries: Sequence[Entry]) -> bytes:
    """The RFC 6962 root of the entries (of the empty tree: SHA-256 of nothing)."""
    return leaf_root([e.bytes() for e in entries])
