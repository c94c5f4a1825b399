"""`ccxlic audit export INSTANCE` and `ccxlic audit verify BUNDLE`: an instance's licensing log as a bundle an auditor
checks offline (`ccxlic_audit.bundle`, `ccxlic_whatif.derivation`)."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import typer
from ccxlic_audit.bundle import AUTHORITY, FORMAT, Check, verify
from ccxlic_audit.note import NoteError, public_bytes, split
from ccxlic_runtime.client import ServiceError
from ccxlic_runtime.settings import ConfigError
from ccxlic_whatif.derivation import derivation, rules_json
from ccxlic_whatif.whatif import service_rules
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ccxlic_cli import common

LOGS = ("consumption", "compliance", "alerting")
PAGE = 10_000

audit_app = typer.Typer(help="The licensing log: export an instance's as a bundle, verify a bundle offline.")


class Format(StrEnum):
    table = "table"
    json = "json"


async def gather(settings: common.CliSettings, instance: str, say: Any) -> dict[str, Any]:
    """The logs, the checkpoints and the public keys of an instance, from the services that keep them."""
    urls = settings.urls()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def get(service: str, path: str) -> Any:
            url = getattr(urls, service) + path
            try:
                async with http.get(url, headers=common.bearer(settings)) as r:
                    body = await r.json(content_type=None)
                    status = r.status
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise ServiceError(
                    f"{service} at {url.split('/v1')[0]} does not answer ({exc!r}); is it running?"
                ) from None
            if status >= 400:
                error = body.get("error") if isinstance(body, dict) else body
                raise ServiceError(f"{service} answered {status} to {path.split('?')[0]}: {error}")
            return body

        signed = await get("agent", f"/v1/instances/{instance}/checkpoints")
        pem = (await get("authority", "/v1/keys"))["public_key_pem"]
        key = load_pem_public_key(str(pem).encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ServiceError("the licensing authority's key (/v1/keys) is not an Ed25519 key")
        notes: dict[str, list[str]] = {}
        for note in signed["checkpoints"]:
            try:
                notes.setdefault(split(note)[0].split("\n")[0], []).append(note)
            except NoteError:
                continue  # the verifier would refuse it; the agent keeps only what it could read
        logs = []
        for service in LOGS:
            entries: list[Any] = []
            while True:
                page = await get(service, f"/v1/instances/{instance}/log?after={len(entries)}&limit={PAGE}")
                entries.extend(json.loads(e) for e in page["entries"])
                if len(page["entries"]) < PAGE:
                    break
                say(f"{service}: {len(entries):,} entries read")
            say(f"{service}: {len(entries):,} entries, {len(notes.get(page['origin'], []))} checkpoint(s)")
            logs.append({"origin": page["origin"], "entries": entries, "checkpoints": notes.get(page["origin"], [])})
    return {
        "keys": {instance: signed["public_key"], AUTHORITY: base64.b64encode(public_bytes(key)).decode()},
        "logs": logs,
    }


def export_command(
    instance: Annotated[str, typer.Argument(help="the product instance")],
    from_: Annotated[
        str | None, typer.Option("--from", help="the window's start (RFC 3339); default: the first entry")
    ] = None,
    to: Annotated[str | None, typer.Option(help="the window's end (RFC 3339); default: now")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="the bundle's file (default: standard output)")
    ] = None,
) -> None:
    """Write an instance's licensing log as a bundle: every entry of each of its logs (the consumption computer's,
    compliance's and alerting's) from the first (the roots are recomputed from them), the checkpoints the instance
    signed and the licensing authority countersigned, the two public keys and the services' rules. --from/--to mark the
    window asked about; `ccxlic audit verify` checks the bundle with nothing else.

    Example: ccxlic audit export cc-east --from 2026-01-01T00:00:00Z -o cc-east.audit.json
    """
    instance = common.instance(instance)
    start = common.time(from_, "--from") if from_ is not None else None
    end = common.time(to, "--to")
    if start is not None and start > end:
        raise common.fail("--from is after --to")
    settings = common.settings()
    try:
        rules = service_rules()
    except ConfigError as exc:  # the same settings the services read
        raise common.fail(str(exc)) from None
    say = (lambda line: common.err.print(line, highlight=False)) if output is not None else (lambda line: None)
    try:
        got = asyncio.run(gather(settings, instance, say))
    except ServiceError as exc:
        raise common.fail(str(exc), 1) from None
    bundle = {
        "format": FORMAT,
        "instance": instance,
        "from": start.isoformat() if start else None,
        "to": end.isoformat(),
        **got,
        "rules": {"compliance": rules_json(rules.compliance), "alerting": rules_json(rules.alerting)},
    }
    in_window = sum(
        1 for lg in bundle["logs"] for e in lg["entries"] if (start is None or _at(e) >= start) and _at(e) <= end
    )
    text = json.dumps(bundle, indent=1, sort_keys=True)
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text + "\n")
        common.err.print(
            f"{output}: {in_window:,} entries in the window; verify with: ccxlic audit verify {output}", highlight=False
        )


def _at(entry: Any) -> datetime:
    return datetime.fromisoformat(str(entry["at"]).replace("Z", "+00:00")).astimezone(UTC)


def checks(bundle: Any, authority: str | None = None) -> list[Check]:
    """Every check of a bundle: integrity, completeness, provenance, derivation. With `authority` (its public key,
    base64), the bundle's must be that one: a bundle names its keys itself, so only a key known beforehand makes its
    countersignatures the authority's."""
    if not isinstance(bundle, dict):
        return [
            Check(n, False, "the bundle is not a JSON object")
            for n in ("integrity", "completeness", "provenance", "derivation")
        ]
    out = verify(bundle)
    given = bundle.get("keys", {}).get(AUTHORITY) if isinstance(bundle.get("keys"), dict) else None
    if authority is not None and given != authority:
        out = [
            Check("provenance", False, "the bundle's licensing authority key is not the one given (--authority-key)")
            if c.name == "provenance"
            else c
            for c in out
        ]
    return [*out, derivation(bundle)]


def authority_key(path: Path) -> str:
    """The licensing authority's public key from a PEM file (as `GET /v1/keys` gives it), base64 of its bytes."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise common.fail(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise common.fail(f"{path} holds no PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise common.fail(f"{path}: the licensing authority's key is an Ed25519 key")
    return base64.b64encode(public_bytes(key)).decode()


def verify_command(
    bundle: Annotated[str, typer.Argument(help="the bundle's file (`-`: standard input)")],
    format: Annotated[Format, typer.Option(help="table or json")] = Format.table,
    authority_key_file: Annotated[
        Path | None,
        typer.Option(
            "--authority-key", help="the licensing authority's public key (PEM, from its /v1/keys), known beforehand"
        ),
    ] = None,
) -> None:
    """Check a bundle offline, with nothing but the bundle: integrity (every entry hashes into its checkpoints),
    completeness (no entry removed, reordered or inserted between checkpoints), provenance (the instance's signature
    and the licensing authority's countersignature on every checkpoint) and derivation (the compliance transitions and
    the alerts follow from the logged inputs, decided again by the services' own rules). Prints a verdict per check
    and exits 1 naming the first bad entry when one fails. A bundle names its own keys: give --authority-key (the
    authority's public key, obtained beforehand) so that its countersignatures are known to be the authority's.

    Example: ccxlic audit verify cc-east.audit.json --authority-key authority.pem
    """
    try:
        text = sys.stdin.read() if bundle == "-" else Path(bundle).read_text()
    except OSError as exc:
        raise common.fail(f"cannot read {bundle}: {exc.strerror}") from None
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise common.fail(f"{bundle} is not JSON: {exc}") from None
    results = checks(body, authority_key(authority_key_file) if authority_key_file is not None else None)
    if format is Format.json:
        typer.echo(
            json.dumps(
                [
                    {"check": c.name, "ok": c.ok, "detail": c.detail, "first_bad_entry": c.first_bad, "log": c.log}
                    for c in results
                ],
                indent=2,
            )
        )
    else:
        for c in results:
            where = f" (entry {c.first_bad} of {c.log})" if c.first_bad is not None and c.log else ""
            typer.echo(f"{c.name:<13}{'ok' if c.ok else 'FAILED':<8}{c.detail}{where}")
    if not all(c.ok for c in results):
        raise typer.Exit(1)


def add_commands(app: typer.Typer) -> None:
    audit_app.command("export")(export_command)
    audit_app.command("verify")(verify_command)
    app.add_typer(audit_app, name="audit")
