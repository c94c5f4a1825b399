"""`ccxlic status`: one row per instance of the snapshot (ccxlic_runtime.client) of the services' HTTP views: usage
against entitlement with headroom, outbound ports and seats (consumption), the compliance state with its deadlines
(compliance), and the active alerts (alerting); under the table, per instance, what still has to happen to leave
enforcement, a breach of a hard limit, and a missing Server or Warm Standby license."""

from __future__ import annotations

from typing import Any

from ccxlic_rules.exits import attention
from ccxlic_runtime.client import duration, nearest_deadline
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

_SEVERITY_STYLE = {"critical": "bold red", "major": "red", "warning": "yellow"}
_AUTH_STYLE = {
    "authorized": "green",
    "reserved": "green",
    "classic": "dim",
    "evaluation": "cyan",
    "no_licenses_in_use": "dim",
    "out_of_compliance": "bold red",
    "evaluation_expired": "bold red",
    "authorization_expired": "red",
}


def _seats(usage: dict[str, Any] | None, key: str) -> str:
    if usage is None:
        return "-"
    used = usage["in_use"][key]
    ent = usage["entitled"]
    room = usage["headroom"][key]
    if ent is None:
        return f"{used} (eval)"
    return f"{used}/{ent[key]} (+{room})" if room is not None else f"{used}/{ent[key]}"


_DEADLINE_WORDS = {
    "evaluation_ends_at": "evaluation ends",
    "ooc_at": "OOC",
    "enforcement_at": "enforcement",
    "authorization_expires_at": "auth expires",
    "registration_expires_at": "registration expires",
}


def _deadline(c: dict[str, Any] | None) -> str:
    """The nearest pending deadline, counted from the instance's own clock (event time)."""
    nearest = nearest_deadline(c)
    if nearest is None:
        return "-"
    name, seconds = nearest
    return f"{_DEADLINE_WORDS.get(name, name)} in {duration(seconds, compact=True)}"


def _state(c: dict[str, Any] | None) -> str:
    if c is None:
        return "-"
    auth, reg = str(c["authorization"]), str(c["registration"])
    return (
        auth
        if reg in ("registered", "reserved", "classic") or auth.startswith(("evaluation", "no_"))
        else f"{auth} ({reg})"
    )


def _outbound(usage: dict[str, Any] | None) -> str:
    if usage is None:
        return "-"
    used = usage["in_use"]
    return f"{used['outbound_ports']}/{used['outbound_seats']}"


def render(snap: dict[str, Any], title: str = "ccx-licensing") -> RenderableType:
    table = Table(title=f"{title} - {snap['as_of'][:19]}Z", expand=True)
    columns = (
        "instance",
        "premium",
        "standard",
        "ivr",
        "outbound ports/seats",
        "state",
        "over",
        "next deadline",
        "active alerts",
    )
    for col in columns:
        table.add_column(col, overflow="fold")
    for i in snap["instances"]:
        u, c = i["usage"], i["compliance"]
        auth = c["authorization"] if c else "-"
        over = "-"
        if c and c.get("over_stage"):
            over = f"{c['over_stage']} since {c['over_since'][11:19]}"
        if c and c["enforcement"]["active"]:
            over = "ENFORCEMENT " + ",".join(c["enforcement"]["reasons"])
        alerts = Text()
        for a in i["alerts"]:
            alerts.append(f"{a['alert']} ", style=_SEVERITY_STYLE.get(a["severity"], ""))
        table.add_row(
            i["instance"],
            _seats(u, "premium"),
            _seats(u, "standard"),
            _seats(u, "ivr_ports"),
            _outbound(u),
            Text(_state(c), style=_AUTH_STYLE.get(auth, "")),
            over,
            _deadline(c),
            alerts,
        )
    parts: list[RenderableType] = [table]
    for i in snap["instances"]:
        for line in attention(i):
            parts.append(Text(f"{i['instance']}: {line}", style="yellow"))
    if not snap["instances"]:
        parts.append(Text("no instances yet: publish events (ccxlic simulate) and they appear here", style="dim"))
    for e in snap["errors"]:
        parts.append(Text(f"! {e}", style="red"))
    return Group(*parts)
