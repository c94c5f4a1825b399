"""`ccxlic authority ...`: the account side of the licensing authority (what an admin does in Cisco SSM), over its
HTTP API (CCXLIC_AUTHORITY_URL, default http://127.0.0.1:8190). Every command prints the authority's JSON answer;
a refusal prints its reason and exits 1."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import aiohttp
import typer

from ccxlic_cli import common
from ccxlic_cli.scenario import Scenario

app = typer.Typer(help="The licensing authority's accounts, licenses, tokens and reservations.", no_args_is_help=True)


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    answer = common.call(common.settings(), "authority", method, path, body)
    typer.echo(json.dumps(answer, indent=2))
    return answer


def _counts(standard: int, premium: int, ivr_ports: int) -> dict[str, int]:
    return {"standard": standard, "premium": premium, "ivr_ports": ivr_ports}


Std = Annotated[int, typer.Option("--standard", min=0, help="Flex Standard")]
Prem = Annotated[int, typer.Option("--premium", min=0, help="Flex Premium")]
Ivr = Annotated[int, typer.Option("--ivr-ports", min=0, help="IVR ports")]
Server = Annotated[int, typer.Option("--server", min=0, help="Server licenses (never consumed, must be present)")]
Standby = Annotated[
    int, typer.Option("--warm-standby", min=0, help="Warm Standby licenses (never consumed, must be present)")
]


def _held(standard: int, premium: int, ivr_ports: int, server: int, warm_standby: int) -> dict[str, int]:
    """Counts of the licenses an account holds: the consumed ones, and Server / Warm Standby when given."""
    out = _counts(standard, premium, ivr_ports)
    if server:
        out["server"] = server
    if warm_standby:
        out["warm_standby"] = warm_standby
    return out


@app.command("accounts")
def accounts() -> None:
    """Smart accounts, virtual accounts, their licenses, reservations and instance counts."""
    _call("GET", "/v1/accounts")


@app.command("account")
def account(
    virtual_account: Annotated[str, typer.Argument(help="the virtual account to create")],
    smart_account: Annotated[str, typer.Option(help="its smart account")] = "default",
) -> None:
    """Create a virtual account.

    Example: ccxlic authority account east --smart-account acme
    """
    _call("POST", "/v1/accounts", {"smart_account": smart_account, "virtual_account": virtual_account})


@app.command("deposit")
def deposit(
    virtual_account: str,
    standard: Std = 0,
    premium: Prem = 0,
    ivr_ports: Ivr = 0,
    server: Server = 0,
    warm_standby: Standby = 0,
) -> None:
    """Deposit licenses (a purchase).

    Example: ccxlic authority deposit east --standard 40 --premium 10 --ivr-ports 20 --server 1 --warm-standby 1
    """
    _call(
        "POST",
        f"/v1/accounts/{virtual_account}/licenses/deposit",
        {"quantities": _held(standard, premium, ivr_ports, server, warm_standby)},
    )


@app.command("remove")
def remove(
    virtual_account: str,
    standard: Std = 0,
    premium: Prem = 0,
    ivr_ports: Ivr = 0,
    server: Server = 0,
    warm_standby: Standby = 0,
) -> None:
    """Remove licenses (not those a reservation holds)."""
    _call(
        "POST",
        f"/v1/accounts/{virtual_account}/licenses/remove",
        {"quantities": _held(standard, premium, ivr_ports, server, warm_standby)},
    )


@app.command("move")
def move(
    virtual_account: str,
    to: Annotated[str, typer.Option(help="the virtual account that receives them")],
    standard: Std = 0,
    premium: Prem = 0,
    ivr_ports: Ivr = 0,
    server: Server = 0,
    warm_standby: Standby = 0,
) -> None:
    """Move licenses to another virtual account.

    Example: ccxlic authority move spare --to east --premium 3
    """
    body = {"quantities": _held(standard, premium, ivr_ports, server, warm_standby), "to": to}
    _call("POST", f"/v1/accounts/{virtual_account}/licenses/move", body)


@app.command("instances")
def instances(virtual_account: str) -> None:
    """The virtual account's product instances: last contact, last reported usage, in compliance or not."""
    _call("GET", f"/v1/accounts/{virtual_account}/instances")


@app.command("token")
def token(
    virtual_account: str,
    days: Annotated[int, typer.Option(min=1, max=365, help="valid for this many days")] = 30,
    uses: Annotated[int, typer.Option(min=1, help="how many registrations it allows")] = 1,
    export_controlled: Annotated[bool, typer.Option(help="allow export-controlled functionality")] = False,
    description: str = "",
) -> None:
    """Issue a registration token (the `token` field of the answer).

    Example: ccxlic authority token east --uses 3
    """
    body = {
        "expires_in_days": days,
        "max_uses": uses,
        "export_controlled": export_controlled,
        "description": description,
    }
    _call("POST", f"/v1/accounts/{virtual_account}/tokens", body)


@app.command("tokens")
def tokens(virtual_account: str) -> None:
    """The virtual account's registration tokens: their ids, uses and state (a token is shown once, when made: only
    its digest is kept)."""
    _call("GET", f"/v1/accounts/{virtual_account}/tokens")


@app.command("revoke")
def revoke(
    token: Annotated[str, typer.Argument(help="the token's id (as `tokens` lists it), or the token itself")],
) -> None:
    """Revoke a registration token.

    Example: ccxlic authority revoke 3f9a1c0d7e2b
    """
    _call("POST", f"/v1/tokens/{token}/revoke", {})


@app.command("reserve")
def reserve(
    virtual_account: str,
    request_code: Annotated[str, typer.Option(help="the instance's reservation request code")],
    standard: Std = 0,
    premium: Prem = 0,
    ivr_ports: Ivr = 0,
) -> None:
    """Turn a request code into an authorization code (`authorization_code` in the answer) for those licenses.

    Example: ccxlic authority reserve east --request-code "$REQUEST" --standard 10 --premium 2
    """
    body = {"request_code": request_code, "quantities": _counts(standard, premium, ivr_ports)}
    _call("POST", f"/v1/accounts/{virtual_account}/reservations", body)


@app.command("reservations")
def reservations(virtual_account: str) -> None:
    """A virtual account's reservations: what each holds, its status, and the usage its site carried here (the
    highest peaks, and the intervals over the reservation).

    Example: ccxlic authority reservations vault-va
    """
    _call("GET", f"/v1/accounts/{virtual_account}/reservations")


@app.command("confirm")
def confirm(confirmation_code: str) -> None:
    """Enter an installed reservation's confirmation code."""
    _call("POST", "/v1/reservations/confirm", {"confirmation_code": confirmation_code})


@app.command("return")
def give_back(return_code: str) -> None:
    """Enter a return code: the reserved licenses go back to the virtual account."""
    _call("POST", "/v1/reservations/return", {"return_code": return_code})


@app.command("usage")
def carried_usage(
    bundle: Annotated[str, typer.Argument(help="a usage bundle (ccxlic reservation INSTANCE usage)")],
) -> None:
    """Bring a reservation site's usage bundle: the authority checks it whole (the chain of its interval reports,
    the root and the site's signature; no history rewritten since the last one), countersigns it and records the
    peaks against the reservation. Prints the intervals over what is reserved.

    Example: ccxlic reservation cc-vault usage -o vault.json; ccxlic authority usage vault.json
    """
    try:
        with open(bundle, encoding="utf-8") as f:
            body = json.load(f)
    except (OSError, ValueError) as exc:
        raise common.fail(f"cannot read the usage bundle {bundle}: {exc}") from None
    _call("POST", "/v1/reservations/usage", {"bundle": body})


class Classic(StrEnum):
    pak = "pak"
    device = "device"


@app.command("classic")
def classic(
    kind: Annotated[Classic, typer.Argument(help="pak or device")],
    ident: Annotated[str, typer.Argument(metavar="ID", help="the PAK, or the device UUID")],
    standard: Std = 0,
    premium: Prem = 0,
    ivr_ports: Ivr = 0,
) -> None:
    """Record classic licenses: a PAK's unconverted quantities, or a device's licenses.

    Example: ccxlic authority classic pak PAK-4711 --standard 20 --premium 3
    """
    body = {"id": ident, "quantities": _counts(standard, premium, ivr_ports)}
    _call("POST", f"/v1/classic/{kind.value}s", body)


@app.command("convert")
def convert(
    kind: Annotated[Classic, typer.Argument(help="pak or device")],
    ident: Annotated[str, typer.Argument(metavar="ID", help="the PAK, or the device UUID")],
    to: Annotated[str, typer.Option(help="the virtual account that receives the smart entitlements")],
    standard: Std = 0,
    premium: Prem = 0,
    ivr_ports: Ivr = 0,
) -> None:
    """Classic -> Smart: the SKUs and quantities given convert; the rest stays classic (and needs a new classic
    license file). A PAK given no quantities converts all that is still classic; a device always names them.

    Example: ccxlic authority convert pak PAK-4711 --to east --standard 5
    """
    body: dict[str, Any] = {"virtual_account": to}
    if kind is Classic.device or standard or premium or ivr_ports:
        body["quantities"] = _counts(standard, premium, ivr_ports)
    _call("POST", f"/v1/classic/{kind.value}s/{ident}/convert", body)


class Format(StrEnum):
    table = "table"
    json = "json"


@app.command("balances")
def balances(
    virtual_account: str,
    format: Annotated[Format, typer.Option("--format", help="table (default) or json")] = Format.table,
) -> None:
    """Purchased, in use and the balance per license, in deficit or surplus, with the instances behind each number
    (as Cisco SSM shows them). Exits 3 when the account is in deficit.

    Example: ccxlic authority balances east
    """
    answer = common.call(common.settings(), "authority", "GET", f"/v1/accounts/{virtual_account}/balances")
    if format is Format.json:
        typer.echo(json.dumps(answer, indent=2))
    else:
        served = f", served by the on-prem {answer['served_by']}" if answer.get("served_by") else ""
        typer.echo(f"{answer['smart_account']} / {answer['virtual_account']}{served}")
        typer.echo(f"{'license':<14}{'purchased':>10}{'in use':>8}{'balance':>9}  status    instances")
        for lic in answer["licenses"].values():
            behind = ", ".join(
                f"{i['instance']} {i['in_use']}{' (reserved)' if i['as'] == 'reserved' else ''}"
                for i in lic["instances"]
            )
            typer.echo(
                f"{lic['name']:<14}{lic['purchased']:>10}{lic['in_use']:>8}{lic['balance']:>9}  {lic['status']:<9} {behind}"
            )
        verdict = "IN DEFICIT" if answer["in_deficit"] else "within its licenses"
        typer.echo(f"the account is {verdict}")
    if answer["in_deficit"]:
        raise typer.Exit(3)


@app.command("notifications")
def notifications(
    smart_account: str,
    email: Annotated[
        list[str] | None, typer.Option("--email", help="a notification address (repeat it); given, they replace")
    ] = None,
    clear: Annotated[bool, typer.Option(help="remove every address")] = False,
) -> None:
    """The smart account's notification addresses: the authority mails them when an account goes into deficit, an
    instance goes out of compliance, misses its authorization or enters enforcement, and when a reservation or a
    migration completes. Without --email, shows them.

    Example: ccxlic authority notifications acme --email licensing@acme.example
    """
    path = f"/v1/smart-accounts/{smart_account}/notifications"
    if email or clear:
        _call("PUT", path, {"emails": list(email or [])})
    else:
        _call("GET", path)


@app.command("notices")
def notices(
    smart_account: Annotated[str | None, typer.Option(help="only this smart account's")] = None,
    after: int = 0,
    limit: int = 100,
) -> None:
    """The notices the authority gave (each once), and whom it mailed."""
    query = f"?after={after}&limit={limit}" + (f"&smart_account={smart_account}" if smart_account else "")
    _call("GET", "/v1/notices" + query)


@app.command("onprem")
def onprem(
    name: Annotated[str, typer.Argument(help="the on-prem's name (its CCXLIC_AUTHORITY_NAME)")],
    key: Annotated[typer.FileText, typer.Option(help="its public key, PEM (its GET /v1/keys)")],
    account: Annotated[list[str], typer.Option("--account", help="a virtual account it serves (repeat it)")],
) -> None:
    """At the central authority: register an SSM On-Prem (or change its accounts): its sync requests are verified
    with its key; it serves the accounts named (their tokens are made there).

    Example: ccxlic authority onprem site-a --key site-a.pem --account east
    """
    _call("POST", "/v1/onprems", {"onprem": name, "public_key_pem": key.read(), "virtual_accounts": account})


@app.command("onprems")
def onprems() -> None:
    """At the central authority: the on-prems, their accounts and their last sync."""
    _call("GET", "/v1/onprems")


sync_app = typer.Typer(
    help="SSM On-Prem synchronisation by files (disconnected): export at the on-prem, answer at the central, import "
    "at the on-prem. Each file is signed; a replayed or foreign one is refused.",
    no_args_is_help=True,
)
app.add_typer(sync_app, name="sync")


def _write(out: str, text: str, what: str) -> None:
    try:
        with open(out, "w", encoding="ascii") as f:
            f.write(text + "\n")
    except OSError as exc:
        raise common.fail(f"cannot write the {what} to {out}: {exc.strerror}", 1) from None


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise common.fail(f"cannot read the {what} {path}: {exc}", 2) from None


@sync_app.command("export")
def sync_export(out: Annotated[str, typer.Option(help="the sync request file to write")]) -> None:
    """At the on-prem: write a signed sync request (this on-prem's usage) to carry to the central.

    Example: ccxlic authority sync export --out site-a-1.request
    """
    answer = common.call(common.settings(), "authority", "POST", "/v1/sync/request", {})
    _write(out, str(answer["sync_request"]), "sync request")
    typer.echo(f"sync request {answer['seq']} of {answer['onprem']} ({len(answer['accounts'])} accounts) -> {out}")


@sync_app.command("answer")
def sync_answer(
    request: Annotated[str, typer.Argument(help="the sync request file an on-prem exported")],
    out: Annotated[str, typer.Option(help="the sync answer file to write")],
) -> None:
    """At the central: take a sync request file (its usage is recorded) and write the signed answer (the
    entitlements) to carry back.

    Example: ccxlic authority sync answer site-a-1.request --out site-a-1.answer
    """
    body = {"sync_request": _read(request, "sync request")}
    answer = common.call(common.settings(), "authority", "POST", "/v1/onprem-sync", body)
    _write(out, str(answer["sync_answer"]), "sync answer")
    typer.echo(f"sync {answer['seq']} of {answer['onprem']} answered ({', '.join(answer['accounts'])}) -> {out}")


@sync_app.command("import")
def sync_import(answer: Annotated[str, typer.Argument(help="the sync answer file the central wrote")]) -> None:
    """At the on-prem: apply the central's signed answer (its accounts and licenses).

    Example: ccxlic authority sync import site-a-1.answer
    """
    _call("POST", "/v1/sync/answer", {"sync_answer": _read(answer, "sync answer")})


@sync_app.command("status")
def sync_status() -> None:
    """The authority's mode, and its last sync request and answer applied."""
    _call("GET", "/v1/sync")


@app.command("fault")
def fault(
    mode: Annotated[str, typer.Argument(help="none, unreachable, slow, refuse or entitlements (answers without them)")],
    reason: str = "refused on demand",
    delay: Annotated[float, typer.Option(min=0, max=600, help="seconds (slow)")] = 30.0,
    instance: Annotated[str | None, typer.Option(help="only this instance's calls")] = None,
) -> None:
    """Faults on demand for tests and demos.  Example: ccxlic authority fault refuse --reason "maintenance" """
    body: dict[str, Any] = {"mode": mode, "reason": reason, "delay_seconds": delay}
    if instance is not None:
        body["instance"] = instance
    _call("PUT", "/v1/faults", body)


@app.command("audit")
def audit(after: int = 0, limit: int = 100) -> None:
    """The audit log: who changed what, when."""
    _call("GET", f"/v1/audit?after={after}&limit={limit}")


# ---------------------------------------------------------------- scenarios


async def prepare(base: str, scenario: Scenario, begin: datetime, token: str) -> dict[str, str]:
    """Set up the scenario's `authority` (virtual accounts with their licenses; an account that exists is left as
    it is) and a registration token for each instance that registers: instance -> token."""
    if scenario.authority is None:
        return {}
    try:
        return await _prepare(base, scenario, begin, token)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise common.fail(
            f"the scenario sets up accounts at the licensing authority at {base}, which does not answer ({exc!r}); "
            "start it (`ccxlic run authority`, or `ccxlic run all`)",
            1,
        ) from None


async def _prepare(base: str, scenario: Scenario, begin: datetime, token: str) -> dict[str, str]:
    at = (begin - timedelta(hours=1)).isoformat()
    setup = scenario.authority
    assert setup is not None
    sa = setup.smart_account
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:

        async def post(path: str, body: dict[str, Any], ok: tuple[int, ...] = (200, 201)) -> tuple[int, Any]:
            async with http.post(base + path, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
                answer = await r.json(content_type=None)
                if r.status not in ok:
                    error = answer.get("error") if isinstance(answer, dict) else answer
                    raise common.fail(f"the licensing authority refused the scenario's setup ({r.status}): {error}", 1)
                return r.status, answer

        for va, lic in setup.virtual_accounts.items():
            status, _ = await post("/v1/accounts", {"smart_account": sa, "virtual_account": va, "at": at}, (201, 409))
            if status == 201:
                await post(f"/v1/accounts/{va}/licenses/deposit", {"quantities": lic.model_dump()})
        tokens = {}
        for inst in scenario.instances:
            if inst.register_with is not None:
                body = {"expires_in_days": 30, "max_uses": 1, "description": f"{scenario.name}: {inst.id}", "at": at}
                _, answer = await post(f"/v1/accounts/{inst.register_with}/tokens", body)
                tokens[inst.id] = str(answer["token"])
    return tokens


def fault_changes(scenario: Scenario, begin: datetime) -> list[tuple[datetime, dict[str, Any]]]:
    """The scenario's faults as (simulated time, the body of PUT /v1/faults), in time order."""
    out: list[tuple[datetime, dict[str, Any]]] = []
    for f in scenario.faults:
        body: dict[str, Any] = {"mode": f.mode, "reason": f.reason}
        if f.instance is not None:
            body["instance"] = f.instance
        out += [(begin + f.at, body), (begin + f.until, {"mode": "none"})]
    return sorted(out, key=lambda c: c[0])


async def set_fault(base: str, body: dict[str, Any], token: str) -> None:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
            http.put(base + "/v1/faults", json=body, headers={"Authorization": f"Bearer {token}"}) as r,
        ):
            if r.status != 200:
                common.err.print(f"could not set the authority's fault {body}: {r.status}", highlight=False)
    except (aiohttp.ClientError, TimeoutError) as exc:
        common.err.print(f"could not set the authority's fault {body}: {exc!r}", highlight=False)
