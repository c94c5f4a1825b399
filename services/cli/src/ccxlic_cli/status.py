"""`ccxlic status`: one view per instance, from the three services' HTTP APIs: usage against entitlement with
headroom (consumption), the compliance state with its deadlines (compliance), and the active alerts (alerting)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Urls:
    consumption: str
    compliance: str
    alerting: str
    agent: str = "http://127.0.0.1:8184"
    authority: str = "http://127.0.0.1:8190"


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as r:
        return r.status, await r.json() if r.content_type == "application/json" else None


async def snapshot(urls: Urls, instance: str | None = None) -> dict[str, Any]:
    """Everything the view shows, as JSON-ready data; a service that does not answer is named in `errors`."""
    errors: list[str] = []
    out: list[dict[str, Any]] = []
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        ids: list[str] = []
        if instance is not None:
            ids = [instance]
        else:
            try:
                status, body = await _get(http, f"{urls.compliance}/v1/instances")
                ids = [i["instance"] for i in body["instances"]] if status == 200 else []
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(f"compliance at {urls.compliance} does not answer ({exc.__class__.__name__})")
        alerts: list[dict[str, Any]] = []
        try:
            status, body = await _get(http, f"{urls.alerting}/v1/alerts?state=active")
            alerts = body["alerts"] if status == 200 else []
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors.append(f"alerting at {urls.alerting} does not answer ({exc.__class__.__name__})")

        async def one(i: str) -> dict[str, Any]:
            entry: dict[str, Any] = {"instance": i, "usage": None, "compliance": None}
            for key, url in (
                ("usage", f"{urls.consumption}/v1/instances/{i}/usage"),
                ("compliance", f"{urls.compliance}/v1/instances/{i}/compliance"),
            ):
                try:
                    status, body = await _get(http, url)
                    entry[key] = body if status == 200 else None
                except (aiohttp.ClientError, TimeoutError) as exc:
                    name = url.split("/v1/")[0]
                    service = "consumption" if key == "usage" else "compliance"
                    message = f"{service} at {name} does not answer ({exc.__class__.__name__})"
                    if message not in errors:
                        errors.append(message)
            entry["alerts"] = [
                {k: a[k] for k in ("alert", "severity", "summary", "raised_at", "deadline", "alert_id")}
                for a in alerts
                if a["instance"] == i
            ]
            return entry

        out = list(await asyncio.gather(*(one(i) for i in ids)))
    return {"as_of": datetime.now(UTC).isoformat(), "instances": out, "errors": errors}


_SEVERITY_STYLE = {"critical": "bold red", "major": "red", "warning": "yellow"}
_AUTH_STYLE = {
    "authorized": "green",
    "reserved": "green",
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


def _in(seconds: float) -> str:
    s = int(max(0, seconds))
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 60}m {s % 60}s"


def _deadline(c: dict[str, Any] | None) -> str:
    """The nearest pending deadline, counted from the instance's own clock (event time)."""
    if c is None:
        return "-"
    pending = [(v, k) for k, v in c.get("seconds_to", {}).items() if v is not None]
    if not pending:
        return "-"
    seconds, name = min(pending)
    return f"{_DEADLINE_WORDS.get(name, name)} in {_in(seconds)}"


def _state(c: dict[str, Any] | None) -> str:
    if c is None:
        return "-"
    auth, reg = str(c["authorization"]), str(c["registration"])
    return auth if reg in ("registered", "reserved") or auth.startswith(("evaluation", "no_")) else f"{auth} ({reg})"


def render(snap: dict[str, Any], title: str = "ccx-licensing") -> RenderableType:
    table = Table(title=f"{title} - {snap['as_of'][:19]}Z", expand=True)
    for col in ("instance", "premium", "standard", "ivr", "state", "over", "next deadline", "active alerts"):
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
            Text(_state(c), style=_AUTH_STYLE.get(auth, "")),
            over,
            _deadline(c),
            alerts,
        )
    parts: list[RenderableType] = [table]
    if not snap["instances"]:
        parts.append(Text("no instances yet: publish events (ccxlic simulate) and they appear here", style="dim"))
    for e in snap["errors"]:
        parts.append(Text(f"! {e}", style="red"))
    return Group(*parts)
