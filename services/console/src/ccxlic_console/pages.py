"""What the pages show, computed from the services' views: the overview's rows (state in words, usage bars, the
next deadline, the active alerts) with filter and sort, and the compliance timeline with the cause of each
transition. Pure: JSON in, plain values out; the templates only lay them out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ccxlic_runtime.client import duration, nearest_deadline

STATES: Mapping[str, tuple[str, str]] = {
    # authorization state -> (words, tone); a tone only colours what the words already say
    "no_licenses_in_use": ("No licenses in use", "calm"),
    "evaluation": ("Evaluation", "info"),
    "evaluation_expired": ("Evaluation expired", "bad"),
    "authorized": ("Authorized", "good"),
    "out_of_compliance": ("Out of compliance", "bad"),
    "authorization_expired": ("Authorization expired", "bad"),
    "reserved": ("Authorized (reservation)", "good"),
    "classic": ("Classic Licensing", "calm"),
}
REGISTRATION: Mapping[str, str] = {
    "unregistered": "Unregistered",
    "registered": "Registered",
    "registration_expired": "Registration expired",
    "reserved": "Reserved (Specific License Reservation)",
    "classic": "Classic Licensing (not Smart Licensing)",
}
DEADLINES: Mapping[str, str] = {
    "evaluation_ends_at": "Evaluation ends",
    "ooc_at": "Out of compliance",
    "enforcement_at": "Enforcement",
    "authorization_expires_at": "Authorization expires",
    "registration_expires_at": "Registration expires",
}
LICENSES = (("premium", "Premium"), ("standard", "Standard"), ("ivr_ports", "IVR ports"))
SORTS = ("instance", "state", "deadline", "alerts")
TONES = ("good", "info", "calm", "warn", "bad")


@dataclass(frozen=True, slots=True)
class Bar:
    license: str
    name: str
    used: int
    entitled: int | None
    percent: int
    over: bool

    @property
    def words(self) -> str:
        if self.entitled is None:
            return f"{self.name}: {self.used} in use (evaluation, nothing purchased)"
        state = f", {self.used - self.entitled} over" if self.over else ""
        return f"{self.name}: {self.used} of {self.entitled} in use{state}"


@dataclass(frozen=True, slots=True)
class Deadline:
    name: str
    at: str
    seconds: float

    @property
    def words(self) -> str:
        return f"{self.name} in {duration(self.seconds)}"


@dataclass(frozen=True, slots=True)
class OverviewRow:
    instance: str
    state: str
    tone: str
    registration: str
    enforcement: bool
    bars: tuple[Bar, ...]
    deadline: Deadline | None
    alerts: tuple[Mapping[str, Any], ...]


def state_of(compliance: Mapping[str, Any] | None) -> tuple[str, str]:
    if compliance is None:
        return "Unknown (compliance has not seen it)", "calm"
    words, tone = STATES.get(str(compliance["authorization"]), (str(compliance["authorization"]), "calm"))
    if compliance["enforcement"]["active"]:
        return f"{words}, ENFORCEMENT", "bad"
    if compliance.get("over_stage"):
        return f"{words}, over entitlement ({compliance['over_stage']})", "warn"
    return words, tone


def next_deadline(compliance: Mapping[str, Any] | None) -> Deadline | None:
    """The nearest pending deadline, counted from the instance's own clock (event time)."""
    nearest = nearest_deadline(compliance)
    if compliance is None or nearest is None:
        return None
    key, seconds = nearest
    return Deadline(DEADLINES.get(key, key), str(compliance["deadlines"][key]), seconds)


def deadlines(compliance: Mapping[str, Any] | None) -> list[Deadline]:
    if compliance is None:
        return []
    out = [
        Deadline(DEADLINES.get(k, k), str(compliance["deadlines"][k]), v)
        for k, v in compliance.get("seconds_to", {}).items()
        if v is not None
    ]
    return sorted(out, key=lambda d: d.seconds)


def bars(usage: Mapping[str, Any] | None) -> tuple[Bar, ...]:
    if usage is None:
        return ()
    entitled = usage.get("entitled")
    out = []
    for key, name in LICENSES:
        used = int(usage["in_use"][key])
        have = None if entitled is None else int(entitled[key])
        if have is None:
            percent = 100 if used else 0
        else:
            percent = 100 if used > have else (0 if have == 0 else round(100 * used / have))
        out.append(Bar(key, name, used, have, percent, have is not None and used > have))
    return tuple(out)


def outbound(usage: Mapping[str, Any] | None) -> tuple[tuple[str, int], ...]:
    """Outbound ports and seats in use: the vendor's "Data Stored", kept and shown, not licensed or reported."""
    if usage is None:
        return ()
    used = usage["in_use"]
    return (("Outbound ports", int(used["outbound_ports"])), ("Outbound seats", int(used["outbound_seats"])))


def overview(snapshot: Mapping[str, Any]) -> list[OverviewRow]:
    rows = []
    for i in snapshot["instances"]:
        c = i["compliance"]
        words, tone = state_of(c)
        rows.append(
            OverviewRow(
                instance=i["instance"],
                state=words,
                tone=tone,
                registration=REGISTRATION.get(str(c["registration"]), str(c["registration"])) if c else "-",
                enforcement=bool(c and c["enforcement"]["active"]),
                bars=bars(i["usage"]),
                deadline=next_deadline(c),
                alerts=tuple(i["alerts"]),
            )
        )
    return rows


def select(rows: Sequence[OverviewRow], text: str, tone: str, sort: str, descending: bool) -> list[OverviewRow]:
    """Rows whose instance or state contains `text` (any case) and whose tone is `tone` (empty: any), sorted."""
    needle = text.strip().lower()
    kept = [
        r
        for r in rows
        if (not needle or needle in r.instance.lower() or needle in r.state.lower()) and (not tone or r.tone == tone)
    ]
    far = float("inf")
    keys: Mapping[str, Any] = {
        "instance": lambda r: r.instance,
        "state": lambda r: (TONES.index(r.tone) if r.tone in TONES else 0, r.state, r.instance),
        "deadline": lambda r: (r.deadline.seconds if r.deadline else far, r.instance),
        "alerts": lambda r: (len(r.alerts), r.instance),
    }
    return sorted(kept, key=keys.get(sort, keys["instance"]), reverse=descending)


@dataclass(frozen=True, slots=True)
class Step:
    seq: int
    at: str
    cause: str
    changes: tuple[str, ...]
    tone: str


_WATCHED = (
    ("registration", "registration"),
    ("authorization", "authorization"),
    ("over_stage", "over entitlement"),
    ("ooc_since", "out of compliance since"),
)


def timeline(history: Sequence[Mapping[str, Any]], before: Mapping[str, Any] | None = None) -> list[Step]:
    """One step per transition, newest first: what changed from the state before it, and the event that caused
    it (its type, and the evidence compliance kept)."""
    steps = []
    prev = before
    for t in history:
        state = t["state"]
        changes = []
        for key, name in _WATCHED:
            old = None if prev is None else prev.get(key)
            new = state.get(key)
            if old != new:
                changes.append(f"{name}: {old or '-'} → {new or '-'}")
        old_enf = False if prev is None else prev["enforcement"]["active"]
        if old_enf != state["enforcement"]["active"]:
            reasons = ", ".join(state["enforcement"]["reasons"]) or "-"
            changes.append("enforcement begins: " + reasons if state["enforcement"]["active"] else "enforcement ends")
        old_def = None if prev is None else prev.get("deficit")
        if old_def != state.get("deficit") and any(state["deficit"].values()):
            d = state["deficit"]
            changes.append(f"deficit: Premium {d['premium']}, Standard {d['standard']}, IVR ports {d['ivr_ports']}")
        cause = str(t["cause"]["type"])
        if t.get("evidence"):
            cause += f" ({_evidence(t['evidence'])})"
        _, tone = state_of({**state, "seconds_to": {}})
        steps.append(Step(int(t["seq"]), str(t["at"]), cause, tuple(changes) or ("no change of state",), tone))
        prev = state
    return list(reversed(steps))


def _evidence(evidence: Any) -> str:
    if isinstance(evidence, Mapping):
        return ", ".join(f"{k} {v}" for k, v in list(evidence.items())[:6])
    return str(evidence)[:200]
