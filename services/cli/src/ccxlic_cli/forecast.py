"""`ccxlic forecast INSTANCE`: an estimate of the peak of each coming 8-hour reporting interval over the next week,
from the instance's own interval peaks (`ccxlic_rules.forecast`), against its entitlements."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer
from ccxlic_rules import Entitlement
from ccxlic_rules.forecast import LICENSES, Forecast, forecast, interval_history, risks
from ccxlic_runtime.client import ServiceError, report_inputs

from ccxlic_cli import common

INTERVAL = timedelta(hours=8)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def as_json(instance: str, f: Forecast, entitled: Entitlement | None) -> dict[str, Any]:
    over = risks(f, entitled)
    return {
        "instance": instance,
        "estimate": True,  # a forecast, never a measurement
        "made_at": f.made_at.isoformat(),
        "weeks_of_history": f.weeks,
        "reason": f.reason,
        "entitlements": None if entitled is None else vars_of(entitled),
        "intervals": [{"interval_start": h.start.isoformat(), "p50": h.p50, "p90": h.p90} for h in f.hours],
        "over": [{"from": r.start.isoformat(), "to": r.end.isoformat(), "by": r.over} for r in over],
    }


def vars_of(e: Entitlement) -> dict[str, int]:
    return {"standard": e.standard, "premium": e.premium, "ivr_ports": e.ivr_ports}


def forecast_command(
    instance: Annotated[str, typer.Argument(help="the product instance id")],
    at: Annotated[
        str | None, typer.Option(help="forecast from this time, RFC 3339 (default: the end of its latest interval)")
    ] = None,
    format: Annotated[Format, typer.Option(help="table, json or csv")] = Format.table,
) -> None:
    """An ESTIMATE of the peak of each coming 8-hour reporting interval over the next 7 days, p50 and p90 per
    license, from the instance's own interval peaks (its weekly pattern and its trend), and the intervals whose p90
    is over its entitlements. With fewer than 3 full weeks of history it forecasts nothing and says so.

    Example: ccxlic forecast cc-east --format table
    """
    name = common.instance(instance)
    given = common.time(at, "--at") if at is not None else None  # a bad time is said before anything is asked
    try:
        body, usage = asyncio.run(report_inputs(_urls(), name, EPOCH, datetime(9999, 1, 1, tzinfo=UTC)))
    except ServiceError as exc:
        raise common.fail(str(exc), 1) from None
    reports = body["reports"]
    if given is not None:
        now = given
    elif reports:
        now = max(datetime.fromisoformat(str(r["interval_end"])) for r in reports)
    else:
        now = datetime.now(UTC)
    ent = usage.get("entitled") if usage else None
    entitled = Entitlement(ent["standard"], ent["premium"], ent["ivr_ports"]) if ent else None
    f = forecast(interval_history(reports, now), now, step=INTERVAL)
    out = as_json(name, f, entitled)
    if format is Format.json:
        typer.echo(json.dumps(out, indent=2))
        return
    if format is Format.csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["interval_start", *(f"{lic}_{q}" for lic in LICENSES for q in ("p50", "p90"))])
        for i in out["intervals"]:
            w.writerow([i["interval_start"], *(i[q][lic] for lic in LICENSES for q in ("p50", "p90"))])
        typer.echo(buf.getvalue(), nl=False)
        if f.reason:
            common.err.print(f.reason, highlight=False)
        return
    typer.echo(f"{name}: ESTIMATE made at {f.made_at.isoformat()} from {f.weeks} full week(s) of interval peaks")
    if f.reason:
        typer.echo(f"no forecast: {f.reason}")
        return
    limits = (
        "none (evaluation: unlimited)"
        if entitled is None
        else (f"Standard {entitled.standard}, Premium {entitled.premium}, IVR ports {entitled.ivr_ports}")
    )
    typer.echo(f"entitlements: {limits}")
    typer.echo(f"{'interval start (UTC)':<22}{'Standard p50/p90':>18}{'Premium p50/p90':>17}{'IVR p50/p90':>13}")
    for h in f.hours:
        cells = [f"{h.p50[lic]}/{h.p90[lic]}" for lic in LICENSES]
        typer.echo(f"{h.start.strftime('%a %Y-%m-%d %H:%M'):<22}{cells[0]:>18}{cells[1]:>17}{cells[2]:>13}")
    if not out["over"]:
        typer.echo("p90 within the entitlements in every coming interval")
    for r in out["over"]:
        by = ", ".join(f"{n} {lic}" for lic, n in r["by"].items() if n)
        typer.echo(f"p90 OVER the entitlements from {r['from']} to {r['to']}: by {by}")


def _urls() -> Any:
    return common.settings().urls()


def add_commands(app: typer.Typer) -> None:
    app.command("forecast")(forecast_command)
