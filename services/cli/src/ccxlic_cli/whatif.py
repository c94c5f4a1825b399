"""`ccxlic whatif INSTANCE`: the instance's stored inputs (the log of the consumption computer's input topics) replayed
in this process through the chain's own deciders (`ccxlic_whatif`), once as they were and once under changed
entitlements and settings; what would have been different, over a time window."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

import typer
from ccxlic_contract.events import LicenseCounts
from ccxlic_runtime.client import ServiceError
from ccxlic_runtime.kafka import KafkaUnavailable
from ccxlic_runtime.settings import ConfigError, Duration
from ccxlic_whatif.whatif import (
    WORDS,
    Changes,
    NoInputs,
    Summary,
    compare,
    differences,
    recorded,
    service_rules,
    what_if,
)
from pydantic import TypeAdapter, ValidationError

from ccxlic_cli import common


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


# ---------------------------------------------------------------- the command


def whatif_command(
    instance: Annotated[str, typer.Argument(help="the product instance id")],
    since: Annotated[
        str | None, typer.Option("--from", help="from this time, RFC 3339 (default: its first input)")
    ] = None,
    until: Annotated[str | None, typer.Option("--to", help="to this time, RFC 3339 (default: its last input)")] = None,
    standard: Annotated[int, typer.Option(help="Standard seats to add to its entitlements (negative: remove)")] = 0,
    premium: Annotated[int, typer.Option(help="Premium seats to add (negative: remove)")] = 0,
    ivr_ports: Annotated[int, typer.Option(help="IVR ports to add (negative: remove)")] = 0,
    no_overage: Annotated[bool, typer.Option("--no-overage", help="License Control: refuse what is over")] = False,
    reservation: Annotated[
        str | None,
        typer.Option(
            help="a Specific License Reservation instead of the registration: standard=N,premium=N,ivr_ports=N"
        ),
    ] = None,
    tolerance: Annotated[
        str | None, typer.Option(help="the out-of-compliance tolerance instead of 45 min (60m, 2h, PT90M)")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="with no change: hold the replay to what the services recorded")
    ] = False,
    format: Annotated[Format, typer.Option(help="table, json or csv")] = Format.table,
) -> None:
    """Replay the instance's stored inputs (its history in the log) through the chain's own rules in this process,
    as they were and with the changes given, and show what would have been different over --from..--to: minutes out
    of compliance, enforcement, refused sign-ins, alerts raised, and what to buy. Nothing is published or stored.

    Example: ccxlic whatif cc-east --premium +5 --from 2026-03-01T00:00:00Z
    """
    name = common.instance(instance)
    changes = _changes(standard, premium, ivr_ports, no_overage, reservation, tolerance)
    given_since = common.time(since, "--from") if since is not None else None
    given_until = common.time(until, "--to") if until is not None else None
    if given_since is not None and given_until is not None and given_until <= given_since:
        raise common.fail("--to must be after --from")
    if check and changes.any():
        raise common.fail("--check holds the unchanged replay to the record: give it no change")
    try:
        rules = service_rules()
    except ConfigError as exc:
        raise common.fail(str(exc)) from None
    settings = common.settings()
    try:
        answer = asyncio.run(
            what_if(
                settings,
                name,
                changes,
                rules,
                given_since,
                given_until,
                lambda said: common.err.print(said, highlight=False),
            )
        )
    except KafkaUnavailable as exc:
        raise common.fail(str(exc), 1) from None
    except NoInputs as exc:
        raise common.fail(str(exc), 1) from None
    common.err.print(
        f"replayed {answer.inputs:,} inputs {'twice ' if changes.any() else ''}in {answer.seconds:.1f} s",
        highlight=False,
    )
    base = answer.base
    if check:
        try:
            reports, transitions = asyncio.run(recorded(settings.urls(), name))
        except ServiceError as exc:
            raise common.fail(str(exc), 1) from None
        diffs = differences(base, reports, transitions)
        for d in diffs:
            common.err.print(f"differs: {d}", highlight=False)
        if diffs:
            raise typer.Exit(1)
        common.err.print(
            f"the replay equals the record: {len(reports)} interval reports, {len(transitions)} transitions",
            highlight=False,
        )
    _show(name, changes, answer.replayed, answer.what_if, format)


def _changes(
    standard: int, premium: int, ivr_ports: int, no_overage: bool, reservation: str | None, tolerance: str | None
) -> Changes:
    reserved = None
    if reservation is not None:
        try:
            parts = dict(p.split("=", 1) for p in reservation.split(","))
            reserved = LicenseCounts(**{k.strip(): int(v) for k, v in parts.items()})
        except (ValueError, ValidationError):
            raise common.fail(
                f"--reservation {reservation!r}: give standard=N,premium=N,ivr_ports=N (each a count, 0 or more)"
            ) from None
    took = None
    if tolerance is not None:
        try:
            took = TypeAdapter(Duration).validate_python(tolerance)
        except ValidationError:
            raise common.fail(f"--tolerance {tolerance!r}: give a duration such as 60m, 2h or PT90M") from None
        if took <= timedelta(0):
            raise common.fail("--tolerance must be more than 0")
    return Changes(standard, premium, ivr_ports, no_overage, reserved, took)


def _show(name: str, changes: Changes, base: Summary, after: Summary, format: Format) -> None:
    window = {"from": base.since.isoformat(), "to": base.until.isoformat()}
    if format is Format.json:
        body = {
            "instance": name,
            **window,
            "inputs": base.inputs,
            "changes": changes.words(),
            "replayed": base.as_json(),
            "what_if": after.as_json(),
        }
        typer.echo(json.dumps(body, indent=2))
        return
    rows = compare(base, after)
    if format is Format.csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["measure", "replayed", "what_if"])
        w.writerows(rows)
        typer.echo(buf.getvalue(), nl=False)
        return
    typer.echo(f"{name}: {base.since.isoformat()} to {base.until.isoformat()}, {base.inputs:,} inputs replayed")
    typer.echo(f"what if: {', '.join(changes.words()) or 'nothing changed (the history replayed)'}")
    typer.echo(f"{'':<34}{'replayed':>16}{'what if':>16}")
    for label, a, b in rows:
        typer.echo(f"{label:<34}{a:>16}{b:>16}")
    for e in after.to_buy_for:
        short = ", ".join(f"{WORDS[lic]} {n}" for lic, n in e["short"].items() if n)
        typer.echo(f"what if: out of compliance from {e['ooc_since']}, short of {short}")


def add_commands(app: typer.Typer) -> None:
    app.command("whatif")(whatif_command)
