"""`ccxlic register`, `deregister`, `renew`, `reregister`, `license-type`, `transport`, `reservation`: operations of an
instance's Smart Agent. Each publishes a `licensing.agent.command` and waits for the agent's result, which it prints
(with the code to hand to the authority, for the reservation steps); exit 1 when the agent refused or the authority
did."""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from typing import Annotated, Any

import typer
from ccxlic_runtime.client import agent_command, agent_result

from ccxlic_cli import common


def _send(instance: str, at: str | None, wait: float, operation: str, **fields: Any) -> None:
    settings = common.settings()
    try:
        event = agent_command(common.instance(instance), operation, common.time(at), common.SOURCE, **fields)
    except ValueError as exc:
        raise common.fail(str(exc)) from None
    asyncio.run(common.publish(settings, [event]))
    common.said(event)
    if wait <= 0:
        return
    result = asyncio.run(agent_result(settings.urls().agent, event.subject, event.id, wait))
    if result is None:
        raise common.fail(
            f"no answer from the Smart Agent at {settings.urls().agent} within {wait:g} s (is it running? the command "
            "stays on licensing.agent-commands and is handled when it starts)",
            1,
        )
    mark = "ok" if result["ok"] else "FAILED"
    typer.echo(f"{result['operation']}: {mark}: {result['message']}")
    if result.get("code"):
        typer.echo(result["code"])
    if not result["ok"]:
        raise typer.Exit(1)


At = Annotated[str | None, typer.Option(help="event time, RFC 3339 (default: now)")]
Wait = Annotated[float, typer.Option(help="seconds to wait for the agent's result (0: do not wait)")]


class TransportMode(StrEnum):
    direct = "direct"
    proxy = "proxy"
    onprem = "onprem"


def register(
    instance: Annotated[str, typer.Argument(help="the product instance id")],
    token: Annotated[str, typer.Option(help="a registration token from the licensing authority's virtual account")],
    transport: Annotated[TransportMode | None, typer.Option(help="direct (default), proxy or onprem")] = None,
    url: Annotated[str | None, typer.Option(help="the SSM On-Prem URL (onprem), https://")] = None,
    proxy: Annotated[str | None, typer.Option(help="the HTTP(S) proxy (proxy)")] = None,
    at: At = None,
    wait: Wait = 30.0,
) -> None:
    """Register the instance with the licensing authority.

    Example: ccxlic register cc-east --token "$TOKEN"
    """
    _send(instance, at, wait, "register", token=token, transport=transport and transport.value, url=url, proxy=proxy)


def reregister(
    instance: Annotated[str, typer.Argument(help="the product instance id")],
    token: Annotated[str, typer.Option(help="a registration token")],
    at: At = None,
    wait: Wait = 30.0,
) -> None:
    """Register the instance again (a new identity), e.g. after the registration expired.

    Example: ccxlic reregister cc-east --token "$TOKEN"
    """
    _send(instance, at, wait, "reregister", token=token)


def deregister(
    instance: Annotated[str, typer.Argument(help="the product instance id")], at: At = None, wait: Wait = 30.0
) -> None:
    """Deregister the instance: its licenses go back to the virtual account.

    Example: ccxlic deregister cc-east
    """
    _send(instance, at, wait, "deregister")


class What(StrEnum):
    authorization = "authorization"
    registration = "registration"


def renew(
    instance: Annotated[str, typer.Argument(help="the product instance id")],
    what: Annotated[What, typer.Argument(help="authorization or registration")],
    at: At = None,
    wait: Wait = 30.0,
) -> None:
    """Renew the authorization or the registration now (they renew by themselves on schedule).

    Example: ccxlic renew cc-east authorization
    """
    _send(instance, at, wait, f"renew_{what.value}")


class LicenseType(StrEnum):
    production = "production"
    lab = "lab"
    non_production = "non-production"  # the name first used here for Lab


def license_type(
    instance: Annotated[str, typer.Argument(help="the product instance id")],
    kind: Annotated[LicenseType, typer.Argument(help="production or lab (non-production)")],
    overage: Annotated[
        bool | None, typer.Option("--overage/--no-overage", help="allow overage, or License Control (no overage)")
    ] = None,
    at: At = None,
    wait: Wait = 30.0,
) -> None:
    """Set the license type (and License Control); the entitlements are published again with it.

    Example: ccxlic license-type cc-east production --no-overage
    """
    deployment = "lab" if kind is LicenseType.non_production else kind.value
    _send(instance, at, wait, "set_license_type", deployment=deployment, overage_allowed=overage)


def transport(
    instance: Annotated[str, typer.Argument(help="the product instance id")],
    mode: Annotated[TransportMode, typer.Argument(help="direct, proxy or onprem")],
    url: Annotated[str | None, typer.Option(help="the SSM On-Prem URL (onprem), https://")] = None,
    proxy: Annotated[str | None, typer.Option(help="the HTTP(S) proxy (proxy)")] = None,
    at: At = None,
    wait: Wait = 30.0,
) -> None:
    """Set the transport to the licensing authority; the agent checks it (a failure is SmartAgentInitFailed).

    Example: ccxlic transport cc-east onprem --url https://ssm-onprem.example.com:8443
    """
    _send(instance, at, wait, "set_transport", transport=mode.value, url=url, proxy=proxy)


class Step(StrEnum):
    enable = "enable"
    request = "request"
    install = "install"
    return_ = "return"
    disable = "disable"
    usage = "usage"


def reservation(
    instance: Annotated[str, typer.Argument(help="the product instance id")],
    step: Annotated[Step, typer.Argument(help="enable, request, install, return or disable")],
    code: Annotated[str | None, typer.Option(help="the authorization code (install)")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="the usage bundle's file (usage)")] = None,
    at: At = None,
    wait: Wait = 30.0,
) -> None:
    """Specific License Reservation: enable, request (prints the request code), install --code (prints the
    confirmation code), return (prints the return code), disable; usage -o FILE writes the site's usage bundle (its
    interval reports, signed by the instance) for an administrator to carry to the authority (`ccxlic authority usage
    FILE`), as a reserved instance cannot report.

    Example: ccxlic reservation cc-vault request | ccxlic reservation cc-vault install --code "$CODE"
    """
    if step is Step.usage:
        if output is None:
            raise common.fail("usage needs --output: the file to write the usage bundle to")
        bundle = common.call(
            common.settings(), "agent", "GET", f"/v1/instances/{common.instance(instance)}/usage-bundle"
        )
        try:
            with open(output, "w", encoding="utf-8") as f:
                json.dump(bundle, f)
        except OSError as exc:
            raise common.fail(f"cannot write the usage bundle to {output}: {exc.strerror}", 1) from None
        common.err.print(
            f"{output}: {len(bundle['entries'])} log entries up to a checkpoint signed by {instance}; carry it to the "
            f"authority: ccxlic authority usage {output}",
            highlight=False,
        )
        return
    if step is Step.install and code is None:
        raise common.fail("install needs --code: the authorization code from the licensing authority")
    _send(instance, at, wait, f"reservation_{step.value}", code=code if step is Step.install else None)


class Mode(StrEnum):
    classic = "classic"
    smart = "smart"


def licensing(
    instance: Annotated[str, typer.Argument(help="the product instance id")],
    mode: Annotated[Mode, typer.Argument(help="classic (stay on Classic Licensing) or smart (migrate, one way)")],
    at: At = None,
    wait: Wait = 30.0,
) -> None:
    """Classic or Smart Licensing. `classic`: an upgraded instance that stays on Classic Licensing (before any
    registration or reservation): no evaluation, no registration. `smart`: migrate it to Smart Licensing; one way
    ("Once you migrate to Smart Licensing, you cannot use Classic Licensing").

    Example: ccxlic licensing cc-old classic | ccxlic licensing cc-old smart
    """
    _send(instance, at, wait, "use_classic" if mode is Mode.classic else "migrate_to_smart")


def add_commands(app: typer.Typer) -> None:
    for command, name in (
        (register, "register"),
        (reregister, "reregister"),
        (deregister, "deregister"),
        (renew, "renew"),
        (license_type, "license-type"),
        (transport, "transport"),
        (reservation, "reservation"),
        (licensing, "licensing"),
    ):
        app.command(name)(command)
