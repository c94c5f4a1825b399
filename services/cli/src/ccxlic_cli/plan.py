"""`ccxlic plan ACCOUNT`: the cheapest way for a virtual account's instances to stay within its licenses at what
they need (their recent peaks, their forecast, a headroom): licenses moved from the other virtual accounts of its
smart account, then bought (`ccxlic_rules.plan`)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from enum import StrEnum
from typing import Annotated, Any

import aiohttp
import typer
from ccxlic_rules.plan import LICENSES, NAMES, as_json, plan
from ccxlic_runtime.client import ServiceError, plan_inputs

from ccxlic_cli import common


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def prices_of(value: str | None) -> dict[str, float] | None:
    """`premium=120,standard=60,ivr_ports=15` (a price per license; absent: 0)."""
    if value is None:
        return None
    try:
        parts = dict(p.split("=", 1) for p in value.split(","))
        prices = {k.strip(): float(v) for k, v in parts.items()}
    except ValueError:
        raise common.fail(f"--price {value!r}: give license=price pairs, e.g. premium=120,standard=60") from None
    unknown = sorted(set(prices) - set(LICENSES))
    if unknown or any(p < 0 for p in prices.values()):
        raise common.fail(f"--price: the licenses are {', '.join(LICENSES)}, each with a price of 0 or more")
    return prices


async def gather(settings: common.CliSettings, account: str, weeks: int, headroom: float) -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def get(url: str) -> Any:
            try:
                async with http.get(url, headers=common.bearer(settings)) as r:
                    body = await r.json(content_type=None)
                    status = r.status
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise ServiceError(f"{url} does not answer ({exc!r}); is it running?") from None
            if status >= 400:
                error = body.get("error") if isinstance(body, dict) else body
                hint = " (set CCXLIC_TOKEN: ccxlic admin token create USER)" if status == 401 else ""
                raise ServiceError(f"{url.split('?')[0]} answered {status}: {error}{hint}")
            return body

        return await plan_inputs(get, settings.urls(), account, weeks=weeks, percent=headroom)


def plan_command(
    account: Annotated[str, typer.Argument(help="the virtual account at the licensing authority")],
    headroom: Annotated[
        float, typer.Option(help="percent above each instance's need to plan for", min=0, max=1000)
    ] = 0,
    weeks: Annotated[int, typer.Option(help="the weeks of peaks each need looks back on", min=1, max=52)] = 4,
    price: Annotated[
        str | None, typer.Option(help="a price per license, e.g. premium=120,standard=60,ivr_ports=15")
    ] = None,
    format: Annotated[Format, typer.Option(help="table, json or csv")] = Format.table,
) -> None:
    """The purchase-or-move plan of a virtual account: what its instances need (the highest of their peaks over
    --weeks and of the p90 forecast of the coming week, an estimate, plus --headroom percent), what it holds, and the
    cheapest way to cover the shortfall: licenses moved from the other virtual accounts of its smart account (what
    they hold beyond their own needs), then bought at --price. Each line names the instances, intervals and Premium
    agents that make it necessary. Exits 3 when something must be moved or bought.

    Example: ccxlic plan east --headroom 10 --price premium=120,standard=60
    """
    prices = prices_of(price)
    settings = common.settings()
    try:
        target, siblings = asyncio.run(gather(settings, account, weeks, headroom))
    except ServiceError as exc:
        raise common.fail(str(exc), 1) from None
    p = plan(target, siblings, prices)
    body = as_json(p)
    if format is Format.json:
        typer.echo(json.dumps(body, indent=2))
    elif format is Format.csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["action", "license", "quantity", "covers", "from", "cost", "because"])
        for line in body["lines"]:
            why = "; ".join(_why(b) for b in line["because"])
            fields = ("action", "license", "quantity", "covers")
            w.writerow([*(line[f] for f in fields), line["from"] or "", line["cost"], why])
        typer.echo(buf.getvalue(), nl=False)
    else:
        _table(body, headroom, weeks)
    if p.lines:
        raise typer.Exit(3)


def _why(b: dict[str, Any]) -> str:
    where = f" in the interval from {b['interval_start']}" if b["interval_start"] else ""
    what = {"peak": "peak", "forecast": "forecast p90 (an estimate)", "reported": "last reported peak"}[b["kind"]]
    agents = f" (Premium agents: {', '.join(b['agents'])})" if b["agents"] and b["kind"] == "peak" else ""
    return f"{b['instance']}: {what} {b['value']}{where}{agents}"


def _table(body: dict[str, Any], headroom: float, weeks: int) -> None:
    typer.echo(
        f"{body['virtual_account']}: what its instances need (peaks of the last {weeks} week(s) and the coming week's "
        f"forecast, an estimate{f', +{headroom:g} %' if headroom else ''}) against what it holds"
    )
    typer.echo(f"{'license':<15}{'need':>6}{'holds':>7}{'short':>7}")
    for lic in LICENSES:
        typer.echo(f"{NAMES[lic]:<15}{body['need'][lic]:>6}{body['holds'][lic]:>7}{body['short'][lic]:>7}")
    if not body["lines"]:
        typer.echo("nothing to move or buy: its licenses cover what its instances need")
        return
    for line in body["lines"]:
        covers = f" (covers {NAMES[line['covers']]})" if line["covers"] != line["license"] else ""
        if line["action"] == "move":
            head = f"move {line['quantity']} {line['name']} from {line['from']}{covers}"
        else:
            cost = f" at {line['cost']:g}" if line["cost"] is not None else ""
            head = f"buy {line['quantity']} {line['name']}{covers}{cost}"
        typer.echo(head)
        for b in line["because"]:
            typer.echo(f"  because {_why(b)}")
    if body["cost"] is not None:
        typer.echo(f"cost of the purchases: {body['cost']:g}")


def add_commands(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
