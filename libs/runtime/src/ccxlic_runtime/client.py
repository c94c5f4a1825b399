"""What the faces (the `ccxlic` CLI and the console) share to read the services and to drive the Smart Agent: where
each service answers, one status snapshot over their HTTP views, the report's inputs, and an agent command with its
result."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from ccxlic_contract.events import AgentCommand, AgentCommandData
from ccxlic_rules.plan import LICENSES, Account, need_of, reported_need
from pydantic import Field, ValidationError

from ccxlic_runtime.settings import RuntimeSettings

SERVICES = ("authority", "consumption", "compliance", "alerting", "agent", "console")
PORT_VARS = {
    "consumption": "CCXLIC_CONSUMPTION_HTTP_PORT",
    "compliance": "CCXLIC_COMPLIANCE_HTTP_PORT",
    "alerting": "CCXLIC_ALERTING_HTTP_PORT",
    "agent": "CCXLIC_AGENT_HTTP_PORT",
    "authority": "CCXLIC_AUTHORITY_HTTP_PORT",
    "console": "CCXLIC_CONSOLE_HTTP_PORT",
}
DEFAULT_PORTS = {
    "consumption": 8181,
    "compliance": 8182,
    "alerting": 8183,
    "agent": 8184,
    "authority": 8190,
    "console": 8180,
}


@dataclass(frozen=True)
class Urls:
    consumption: str
    compliance: str
    alerting: str
    agent: str = "http://127.0.0.1:8184"
    authority: str = "http://127.0.0.1:8190"
    console: str = "http://127.0.0.1:8180"


class ClientSettings(RuntimeSettings):
    """The runtime's settings plus where each service answers (default: 127.0.0.1 on its port variable)."""

    consumption_url: str = Field("", validation_alias="CCXLIC_CONSUMPTION_URL")
    compliance_url: str = Field("", validation_alias="CCXLIC_COMPLIANCE_URL")
    alerting_url: str = Field("", validation_alias="CCXLIC_ALERTING_URL")
    agent_url: str = Field("", validation_alias="CCXLIC_AGENT_URL")
    authority_url: str = Field("", validation_alias="CCXLIC_AUTHORITY_URL")
    console_url: str = Field("", validation_alias="CCXLIC_CONSOLE_URL")

    def urls(self) -> Urls:
        def url(service: str) -> str:
            given: str = getattr(self, f"{service}_url")
            port = os.environ.get(PORT_VARS[service], str(DEFAULT_PORTS[service]))
            return (given or f"http://127.0.0.1:{port}").rstrip("/")

        return Urls(*(url(s) for s in ("consumption", "compliance", "alerting", "agent", "authority", "console")))


def nearest_deadline(compliance: Mapping[str, Any] | None) -> tuple[str, float] | None:
    """The nearest pending deadline of a compliance view, (its name, seconds to it), counted on the instance's own
    clock (event time); None when nothing is pending."""
    if compliance is None:
        return None
    pending = [(k, v) for k, v in compliance.get("seconds_to", {}).items() if v is not None]
    if not pending:
        return None
    # on a tie the first in the view's order wins: "evaluation ends" says more than the enforcement it starts
    return min(pending, key=lambda p: float(p[1]))


def duration(seconds: float, *, compact: bool = False) -> str:
    """`3 d 4 h`, `2 h 5 min`, `44 min 0 s` (compact: `3d 4h`, `2h 5m`, `44m 0s`)."""
    d, h, m, s = ("d", "h", "m", "s") if compact else (" d", " h", " min", " s")
    n = int(max(0, seconds))
    if n >= 86400:
        return f"{n // 86400}{d} {n % 86400 // 3600}{h}"
    if n >= 3600:
        return f"{n // 3600}{h} {n % 3600 // 60}{m}"
    return f"{n // 60}{m} {n % 60}{s}"


class ServiceError(RuntimeError):
    """A service that does not answer, or answers with an error; the message names it."""


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as r:
        return r.status, await r.json() if r.content_type == "application/json" else None


async def snapshot(urls: Urls, instance: str | None = None) -> dict[str, Any]:
    """Every instance's usage, compliance and active alerts, as JSON-ready data; a service that does not answer is
    named in `errors`."""
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


async def _consumption(urls: Urls, path: str, params: Mapping[str, str] | None = None) -> tuple[int, Any]:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.get(f"{urls.consumption}{path}", params=params) as r,
        ):
            return r.status, await r.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ServiceError(
            f"the consumption computer at {urls.consumption} does not answer ({exc!r}); is it running?"
        ) from None


async def intervals(urls: Urls, instance: str, since: datetime, until: datetime) -> list[Any]:
    """The interval reports of one instance starting in [since, until), every revision."""
    params = {"from": since.isoformat(), "to": until.isoformat()}
    status, body = await _consumption(urls, f"/v1/instances/{instance}/intervals", params)
    if status != 200:
        raise ServiceError(f"consumption answered {status}: {body.get('error')}")
    return list(body["reports"])


async def report_inputs(urls: Urls, instance: str, since: datetime, until: datetime) -> tuple[Any, Any]:
    """The interval reports in [since, until) and the live usage (for the entitlements) of one instance."""
    reports = await intervals(urls, instance, since, until)
    status, usage = await _consumption(urls, f"/v1/instances/{instance}/usage")
    return {"reports": reports}, usage if status == 200 else None


def agent_command(instance: str, operation: str, at: datetime, source: str, **fields: Any) -> AgentCommand:
    """A `licensing.agent.command`; ValueError says what is wrong with the fields."""
    try:
        data = AgentCommandData.model_validate(
            {"operation": operation, **{k: v for k, v in fields.items() if v is not None}}
        )
    except ValidationError as exc:
        raise ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())) from None
    return AgentCommand(id=str(uuid.uuid4()), source=source, time=at, subject=instance, data=data)


async def agent_result(agent: str, instance: str, command_id: str, wait: float) -> dict[str, Any] | None:
    """The Smart Agent's result of the command `command_id`, polled from its view for up to `wait` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while loop.time() < deadline:
            try:
                async with http.get(f"{agent}/v1/instances/{instance}/agent") as r:
                    if r.status == 200:
                        view = await r.json()
                        last = view.get("last")
                        if last is not None and last.get("command_id") == command_id:
                            return last  # type: ignore[no-any-return]
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    return None


__all__ = [
    "DEFAULT_PORTS",
    "PORT_VARS",
    "SERVICES",
    "ClientSettings",
    "ServiceError",
    "Urls",
    "agent_command",
    "agent_result",
    "duration",
    "intervals",
    "nearest_deadline",
    "report_inputs",
    "snapshot",
]


Get = Callable[[str], Awaitable[Any]]
"""A JSON GET as the caller makes it (the CLI with its token, the console with its signed-in user)."""


async def plan_inputs(
    get: Get, urls: Urls, account: str, *, weeks: int = 4, percent: float = 0.0
) -> tuple[Account, list[Account]]:
    """A virtual account and the other virtual accounts of its smart account, each with what it holds (purchased,
    less reservations) and what each of its registered instances needs (`ccxlic_rules.plan.need_of`, from the
    consumption computer's interval reports; the peaks last reported to the authority when it has none)."""
    body = await get(f"{urls.authority}/v1/accounts")
    smart = [sa for sa in body["smart_accounts"] if any(v["name"] == account for v in sa["virtual_accounts"])]
    if not smart:
        raise ServiceError(f"the licensing authority has no virtual account {account!r}")
    out: list[Account] = []
    for va in smart[0]["virtual_accounts"]:
        holds = {lic: va["licenses"].get(lic, 0) - va.get("reserved", {}).get(lic, 0) for lic in LICENSES}
        instances = (await get(f"{urls.authority}/v1/accounts/{quote(va['name'], safe='')}/instances"))["instances"]
        needs = []
        for inst in instances:
            if inst["status"] != "registered":
                continue
            name = inst["instance"]
            params = "from=1970-01-01T00:00:00Z&to=9999-01-01T00:00:00Z"
            reports = (await get(f"{urls.consumption}/v1/instances/{quote(name, safe='')}/intervals?{params}"))[
                "reports"
            ]
            need = need_of(name, reports, weeks, percent)
            if need is None and inst.get("last_usage"):
                need = reported_need(name, inst["last_usage"], percent)
            if need is not None:
                needs.append(need)
        out.append(Account(va["name"], holds, tuple(needs)))
    target = next(a for a in out if a.name == account)
    return target, [a for a in out if a.name != account]
