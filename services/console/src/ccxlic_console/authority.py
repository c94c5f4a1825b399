"""The licensing authority's pages: its accounts (in deficit or not, served by an on-prem or not), each smart
account's notification addresses and the notices it was given, the on-prems and the sync state; a virtual account's
balances (purchased, in use, balance, the instances behind), instances and registration tokens (a new one is shown
once), and moving licenses within a smart account. The console calls the authority with
the signed-in user's own credentials, so the authority checks the same user and audits them."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from ccxlic_rules.plan import as_json, plan
from ccxlic_runtime.client import plan_inputs

from ccxlic_console.console import Console, PageError


def add_routes(router: web.UrlDispatcher, console: Console) -> None:
    urls = console.urls

    async def authority(request: web.Request) -> web.Response:
        said = "the licensing authority answered"
        body = await console.ask(request, "GET", f"{urls.authority}/v1/accounts", refused=said)
        sync = await console.ask(request, "GET", f"{urls.authority}/v1/sync", refused=said)
        onprems = (
            []
            if sync["mode"] == "onprem"
            else (await console.ask(request, "GET", f"{urls.authority}/v1/onprems", refused=said))["onprems"]
        )
        notices = (await console.ask(request, "GET", f"{urls.authority}/v1/notices?limit=10000", refused=said))[
            "notices"
        ][-20:]
        emails = {
            sa["smart_account"]: (
                await console.ask(
                    request,
                    "GET",
                    f"{urls.authority}/v1/smart-accounts/{quote(sa['smart_account'], safe='')}/notifications",
                    refused=said,
                )
            )["emails"]
            for sa in body["smart_accounts"]
        }
        return console.page(
            request,
            "authority.html",
            smart_accounts=body["smart_accounts"],
            sync=sync,
            onprems=onprems,
            notices=list(reversed(notices)),
            emails=emails,
            done=request.query.get("done", "")[:300],
        )

    async def account(request: web.Request) -> web.Response:
        name = request.match_info["account"]
        base = f"{urls.authority}/v1/accounts/{quote(name, safe='')}"
        said = "the licensing authority answered"
        insts = await console.ask(request, "GET", f"{base}/instances", refused=said)
        balances = await console.ask(request, "GET", f"{base}/balances", refused=said)
        toks = await console.ask(request, "GET", f"{base}/tokens", refused=said)
        accounts = await console.ask(request, "GET", f"{urls.authority}/v1/accounts", refused=said)
        mine, siblings = None, []
        for sa in accounts["smart_accounts"]:
            for va in sa["virtual_accounts"]:
                if va["name"] == name:
                    mine = va
                    siblings = [v["name"] for v in sa["virtual_accounts"] if v["name"] != name]
        try:
            headroom = min(1000.0, max(0.0, float(request.query.get("headroom") or 0)))
        except ValueError:
            raise PageError(400, "headroom: a percent was expected") from None

        async def get(url: str) -> Any:
            return await console.ask(request, "GET", url, refused=said)

        target, others = await plan_inputs(get, urls, name, percent=headroom)
        return console.page(
            request,
            "account.html",
            account=name,
            info=mine,
            siblings=siblings,
            instances=insts["instances"],
            balances=balances,
            tokens=toks.get("tokens", []),
            done=request.query.get("done", "")[:300],
            new_token=None,
            plan=as_json(plan(target, others)),
            headroom=headroom,
        )

    async def authority_post(request: web.Request) -> web.StreamResponse:
        name = request.match_info["account"]
        what = request.match_info["what"]
        form = await request.post()
        base = f"{urls.authority}/v1/accounts/{quote(name, safe='')}"
        try:
            if what == "tokens":
                body: dict[str, Any] = {
                    "expires_in_days": int(str(form.get("expires_in_days") or 30)),
                    "max_uses": int(str(form.get("max_uses") or 1)),
                    "description": str(form.get("description", "")).strip(),
                    "export_controlled": form.get("export_controlled") == "yes",
                }
                url = f"{base}/tokens"
            elif what == "move":  # from this account to a sibling (the plan's "move" lines post here too)
                body = {
                    "to": str(form.get("to", "")),
                    "quantities": {str(form.get("license", "")): int(str(form.get("quantity") or 0))},
                    "reason": str(form.get("reason", "")).strip(),
                }
                url = f"{base}/licenses/move"
            elif what == "revoke":
                body = {}
                url = f"{urls.authority}/v1/tokens/{quote(str(form.get('token', '')), safe='')}/revoke"
            else:
                raise PageError(404, f"nothing to do for {what!r}")
        except ValueError:
            raise PageError(400, "a number was expected (days, uses, quantity)") from None
        answer = await console.ask(
            request, "POST", url, body=body, expect=(200, 201), refused="the licensing authority refused"
        )
        if what == "tokens":  # shown once, on this page, never in a URL
            return console.page(request, "token.html", account=name, token=answer)
        done = "licenses moved" if what == "move" else "token revoked"
        raise web.HTTPSeeOther(f"/authority/accounts/{quote(name)}?" + urlencode({"done": done}))

    async def notifications_post(request: web.Request) -> web.StreamResponse:
        sa = request.match_info["smart_account"]
        form = await request.post()
        emails = [e.strip() for e in str(form.get("emails", "")).replace(",", " ").split() if e.strip()]
        await console.ask(
            request,
            "PUT",
            f"{urls.authority}/v1/smart-accounts/{quote(sa, safe='')}/notifications",
            body={"emails": emails},
            refused="the licensing authority refused",
        )
        raise web.HTTPSeeOther("/authority?" + urlencode({"done": f"notification addresses of {sa} saved"}))

    router.add_get("/authority", authority)
    router.add_post("/authority/smart-accounts/{smart_account}/notifications", notifications_post)
    router.add_get("/authority/accounts/{account}", account)
    router.add_post("/authority/accounts/{account}/{what}", authority_post)
