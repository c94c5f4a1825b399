"""`ccxlic admin ...`: the users of the console and the admin API, and their API tokens, written straight into the
auth schema of DATABASE_URL (whoever can reach the database is trusted to, as with any operator's tool); and
`ccxlic silence ...`: alerting's silences over its API, with the API token in CCXLIC_TOKEN."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer
from ccxlic_runtime.auth import AuthError, PgAuthStore, Role, check_password, open_auth
from ccxlic_runtime.db import DatabaseError

from ccxlic_cli import common

app = typer.Typer(help="Users and API tokens of the console and the admin API.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (bearer) for the admin API and the CLI.", no_args_is_help=True)
app.add_typer(token_app, name="token")
silence_app = typer.Typer(
    help="Alerting's silences (needs CCXLIC_TOKEN; changes need an admin's).", no_args_is_help=True
)

T = TypeVar("T")


class RoleName(StrEnum):
    viewer = "viewer"
    admin = "admin"


def _with_auth(work: Callable[[PgAuthStore], Awaitable[T]]) -> T:
    settings = common.settings()

    async def go() -> T:
        async with open_auth(settings.database_url, settings.auth_schema) as auth:
            return await work(auth)

    try:
        return asyncio.run(go())
    except DatabaseError as exc:
        raise common.fail(str(exc), 1) from None
    except AuthError as exc:
        raise common.fail(str(exc)) from None


def _password(password_stdin: bool, generate: bool) -> str:
    if password_stdin and generate:
        raise common.fail("give --password-stdin or --generate-password, not both")
    if generate:
        return secrets.token_urlsafe(15)
    if password_stdin:
        value = sys.stdin.readline().rstrip("\n")
    else:
        value = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        return check_password(value)
    except AuthError as exc:
        raise common.fail(str(exc)) from None


@app.command("create-user")
def create_user(
    name: Annotated[str, typer.Argument(help="the user name (1-64 of A-Z a-z 0-9 . _ @ -)")],
    role: Annotated[RoleName, typer.Option(help="viewer (reads) or admin (reads and changes)")] = RoleName.viewer,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
    generate_password: Annotated[
        bool, typer.Option("--generate-password", help="make a random password and print it")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="if the user exists, set its role and password (signs it out)")
    ] = False,
) -> None:
    """Create a user of the console and the admin API (asks for the password unless told otherwise).

    Example: ccxlic admin create-user alice --role admin
    """
    password = _password(password_stdin, generate_password)
    created = _with_auth(lambda auth: auth.create_user(name, Role(role.value), password, replace=replace))
    if not created:
        raise common.fail(f"user {name!r} exists; --replace sets its role and password", 1)
    common.err.print(f"user {name} ({role.value}) is ready", highlight=False)
    if generate_password:
        typer.echo(password)


@app.command("demo-user")
def demo_user(
    name: Annotated[str, typer.Argument(help="the user name")] = "admin",
) -> None:
    """Create (or reset) an admin with a fresh random password and print the console's URL and the credentials
    (what `make run` does)."""
    password = secrets.token_urlsafe(12)
    _with_auth(lambda auth: auth.create_user(name, Role.admin, password, replace=True))
    url = common.settings().urls().console
    typer.echo(f"console: {url}/  user: {name}  password: {password}")


@app.command("users")
def users() -> None:
    """The users and their roles."""
    rows = _with_auth(lambda auth: auth.users())
    typer.echo(json.dumps(rows, indent=2, default=str))


@app.command("delete-user")
def delete_user(name: str) -> None:
    """Delete a user, their sessions and their tokens."""
    if not _with_auth(lambda auth: auth.delete_user(name)):
        raise common.fail(f"no user {name!r}", 1)
    common.err.print(f"user {name} deleted", highlight=False)


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Argument(help="whose token (it acts with their role)")],
    label: Annotated[str, typer.Option(help="what it is for")] = "cli",
    days: Annotated[
        int | None, typer.Option(min=1, max=3650, help="expires after this many days (default: never)")
    ] = None,
) -> None:
    """Create an API token for USER and print it (once: only its digest is kept). Use it as CCXLIC_TOKEN or as
    `Authorization: Bearer <token>`.

    Example: export CCXLIC_TOKEN=$(ccxlic admin token create alice --days 30)
    """
    ttl = None if days is None else timedelta(days=days)
    token_id, token = _with_auth(lambda auth: auth.create_token(user, label, ttl))
    common.err.print(f"token {token_id} for {user} ({label})", highlight=False)
    typer.echo(token)


@token_app.command("list")
def token_list() -> None:
    """Every token: id, user, label, created, expires, revoked (never the token)."""
    typer.echo(json.dumps(_with_auth(lambda auth: auth.tokens()), indent=2, default=str))


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="the token's id (ccxlic admin token list)")]) -> None:
    """Revoke a token now."""
    if not _with_auth(lambda auth: auth.revoke_token(token_id)):
        raise common.fail(f"no active token with id {token_id!r}", 1)
    common.err.print(f"token {token_id} revoked", highlight=False)


# ---------------------------------------------------------------- silences


def _alerting(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    settings = common.settings()
    if settings.token is None:
        raise common.fail("silences need an API token: export CCXLIC_TOKEN=$(ccxlic admin token create USER)")
    return common.call(settings, "alerting", method, path, body)


@silence_app.command("add")
def silence_add(
    comment: Annotated[str, typer.Option(help="why")],
    instance: Annotated[str | None, typer.Option(help="the product instance (default: every instance)")] = None,
    alert: Annotated[str | None, typer.Option(help="the alert name (default: every alert)")] = None,
    hours: Annotated[float, typer.Option(min=0.01, max=2160, help="how long, from now")] = 4.0,
) -> None:
    """Silence an instance's alerts, an alert everywhere, or one alert of one instance.

    Example: ccxlic silence add --instance cc-east --alert OutOfComplianceImminent --hours 8 --comment "buying"
    """
    if instance is None and alert is None:
        raise common.fail("a silence selects by --instance, --alert or both")
    body: dict[str, Any] = {"ends_at": (datetime.now(UTC) + timedelta(hours=hours)).isoformat(), "comment": comment}
    if instance is not None:
        body["instance"] = common.instance(instance)
    if alert is not None:
        body["alert"] = alert
    typer.echo(json.dumps(_alerting("POST", "/v1/silences", body), indent=2))


@silence_app.command("list")
def silence_list() -> None:
    """The silences."""
    typer.echo(json.dumps(_alerting("GET", "/v1/silences"), indent=2))


@silence_app.command("remove")
def silence_remove(silence_id: str) -> None:
    """Remove a silence now."""
    _alerting("DELETE", f"/v1/silences/{silence_id}")
    common.err.print(f"silence {silence_id} removed", highlight=False)
