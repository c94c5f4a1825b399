"""The console's composition root and its routes: HTML rendered on the server (Jinja2, autoescaped), a few lines of
vendored script that refresh the live parts, and a small JSON admin API for bearer-token clients.

- It reads the services' HTTP views (ccxlic_runtime.client) and drives the Smart Agent by publishing
  `licensing.agent.command` and waiting for the agent's result, as `ccxlic register` does.
- Sign-in, sessions, tokens, roles and CSRF are the runtime's (ccxlic_runtime.auth). A viewer reads; only an admin
  posts. Alerting's silences are changed with the caller's own credentials (their session, or their token), so
  alerting checks the same user and records them as the author; the authority gets the user as its actor.
- Nothing is loaded from elsewhere: the stylesheet and the script are in the package, and the Content-Security-Policy
  allows only this origin.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import jinja2
from aiohttp import web
from ccxlic_contract.events import AgentCommand
from ccxlic_rules import Entitlement
from ccxlic_rules import report as report_rows
from ccxlic_runtime.auth import (
    COOKIE,
    CSRF_FIELD,
    SAFE_METHODS,
    Identity,
    PgAuthStore,
    Role,
    auth_middleware,
    identity,
    open_auth,
    same,
    set_session_cookie,
)
from ccxlic_runtime.client import ServiceError, Urls, agent_command, agent_result, report_inputs, snapshot
from ccxlic_runtime.http import BadRequest, add_ops_routes, check_instance, json_response, problem, serve, tls_context
from ccxlic_runtime.kafka import EventProducer, ensure_topics, wait_for_kafka
from prometheus_client import CollectorRegistry, Counter

from ccxlic_console import chart, pages
from ccxlic_console.settings import ConsoleSettings

log = logging.getLogger(__name__)
SERVICE = "console"
SOURCE = "urn:ccxlic:console"
HERE = Path(__file__).parent
LOGIN_COOKIE = "ccxlic_login"
PUBLIC = ("/login", "/static/", "/favicon.ico", "/healthz", "/readyz", "/metrics")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

OPERATIONS: Mapping[str, tuple[str, str]] = {
    # operation -> (what the button says, what the confirmation asks)
    "register": ("Register", "Register {i} with the licensing authority using this token?"),
    "reregister": ("Reregister", "Register {i} again with a new identity?"),
    "deregister": (
        "Deregister",
        "Deregister {i}? Its licenses go back to the virtual account and it returns to evaluation.",
    ),
    "renew_authorization": ("Renew authorization now", "Renew the authorization of {i} now?"),
    "renew_registration": ("Renew registration now", "Renew the registration of {i} now?"),
    "set_license_type": ("Set license type", "Change the license type of {i}?"),
    "set_transport": ("Set transport", "Change how {i} reaches the licensing authority?"),
    "reservation_enable": ("Enable reservation", "Enable Specific License Reservation on {i}?"),
    "reservation_request": ("Request reservation code", "Generate a reservation request code for {i}?"),
    "reservation_install": ("Install authorization code", "Install this authorization code on {i}?"),
    "reservation_return": ("Return reservation", "Return the reserved licenses of {i}? It returns to evaluation."),
    "reservation_disable": ("Disable reservation", "Disable Specific License Reservation on {i}?"),
}
FIELDS = ("token", "transport", "url", "proxy", "deployment", "overage_allowed", "code")


class Console:
    """What the routes share: settings, where the services are, the auth store, the producer, the templates."""

    def __init__(
        self, settings: ConsoleSettings, auth: PgAuthStore, producer: EventProducer, registry: CollectorRegistry
    ) -> None:
        self.settings = settings
        self.urls: Urls = settings.urls()
        self.auth = auth
        self.producer = producer
        self.secure = settings.tls_cert_file is not None
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        # `?v=` + a digest of the file: a browser caches an asset until it changes
        versions = {
            f.name: hashlib.sha256(f.read_bytes()).hexdigest()[:12] for f in (HERE / "static").iterdir() if f.is_file()
        }
        self.templates.globals["static"] = lambda name: f"/static/{name}?v={versions[name]}"
        self.actions = Counter(
            "ccxlic_console_actions_total",
            "Smart Agent operations asked for from the console, by operation and outcome (ok, failed, pending, invalid)",
            ["operation", "outcome"],
            registry=registry,
        )

    def page(self, request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
        who = identity(request)
        text = self.templates.get_template(name).render(
            who=who,
            csrf=who.csrf if who is not None else "",
            admin=who is not None and who.role is Role.admin,
            refresh_ms=int(self.settings.refresh.total_seconds() * 1000),
            path=request.path_qs,
            **context,
        )
        return web.Response(text=text, status=status, content_type="text/html")

    def error(self, request: web.Request, status: int, message: str) -> web.Response:
        return self.page(request, "error.html", status=status, status_code=status, message=message)

    def credentials(self, request: web.Request) -> dict[str, str]:
        """The caller's own credentials, for a service that checks them too (alerting's silences)."""
        header = request.headers.get("Authorization")
        if header:
            return {"Authorization": header}
        who = identity(request)
        cookie = request.cookies.get(COOKIE, "")
        return {"Cookie": f"{COOKIE}={cookie}", "X-CSRF-Token": who.csrf if who and who.csrf else ""}

    async def call(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, body: Any = None
    ) -> tuple[int, Any]:
        """A JSON call to a service: (status, body). ServiceError when it does not answer."""
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
                http.request(method, url, headers=dict(headers or {}), json=body) as r,
            ):
                answer = await r.json(content_type=None) if r.status != 204 else None
                return r.status, answer
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            service = url.split("/v1/")[0]
            raise ServiceError(f"{service} does not answer ({exc.__class__.__name__}); is it running?") from None

    async def get(self, url: str, default: Any = None) -> Any:
        """A view's JSON, or `default` when it is not there (404) or the service does not answer."""
        try:
            status, body = await self.call("GET", url)
        except ServiceError:
            return default
        return body if status == 200 else default

    async def command(self, who: Identity, instance: str, operation: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Publish the agent command and wait for its result: {ok, message, code?} or {pending: True}."""
        event: AgentCommand = agent_command(instance, operation, datetime.now(UTC), SOURCE, **fields)
        await self.producer.publish(event)
        log.info("agent command", extra={"instance": instance, "operation": operation, "user": who.user})
        result = await agent_result(self.urls.agent, instance, event.id, self.settings.agent_wait.total_seconds())
        outcome = "pending" if result is None else ("ok" if result["ok"] else "failed")
        self.actions.labels(operation, outcome).inc()
        if result is None:
            return {
                "ok": False,
                "pending": True,
                "operation": operation,
                "message": f"the Smart Agent has not answered within {self.settings.agent_wait.total_seconds():g} s; "
                "the command stays on licensing.agent-commands and is handled when it runs",
                "command_id": event.id,
            }
        return {**result, "command_id": event.id}


def _policy(request: web.Request) -> Role | None:
    if request.path.startswith(PUBLIC):
        return None
    if request.path == "/logout":
        return Role.viewer
    return Role.viewer if request.method in SAFE_METHODS else Role.admin


async def _to_login(request: web.Request) -> web.StreamResponse:
    if request.path.startswith("/api/"):
        response = problem(401, "sign in first: send `Authorization: Bearer <token>` (ccxlic admin token create)")
        response.headers["WWW-Authenticate"] = 'Bearer realm="ccxlic"'
        return response
    if request.method not in SAFE_METHODS:
        return problem(401, "your session has ended; sign in again")
    raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")


@web.middleware
async def _headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault(
        "Referrer-Policy", "same-origin"
    )  # not no-referrer: under it Chromium posts forms with `Origin: null`
    if response.content_type == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _next(value: str | None) -> str:
    """Where to go after signing in: a path of this site only (never another origin)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _form_fields(form: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in FIELDS:
        value = form.get(name)
        if isinstance(value, str) and value.strip():
            out[name] = value.strip()
    if "overage_allowed" in out:
        out["overage_allowed"] = out["overage_allowed"] == "yes"
    return out


def _day(value: str | None, name: str, default: datetime) -> datetime:
    if not value:
        return default
    try:
        day = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"`{name}` must be a date such as 2026-03-02; got {value!r}") from None
    return (day if day.tzinfo else day.replace(tzinfo=UTC)).astimezone(UTC)


def make_app(console: Console, registry: CollectorRegistry) -> web.Application:
    app = web.Application(
        middlewares=[
            _headers,
            auth_middleware(
                console.auth,
                _policy,
                on_unauthenticated=_to_login,
                refuse=lambda request, reason: (
                    problem(403, reason) if request.path.startswith("/api/") else console.error(request, 403, reason)
                ),
            ),
        ],
        client_max_size=64 * 1024,
    )
    add_ops_routes(app.router, registry, {"database": lambda: console.auth.pool.fetchval("select true")})
    urls = console.urls

    # ------------------------------------------------------------ sign-in

    async def login_form(request: web.Request) -> web.Response:
        # one nonce per browser until it signs in: a second sign-in page (another tab) does not void the first
        nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = console.page(request, "login.html", login_csrf=nonce, next=_next(request.query.get("next")))
        response.set_cookie(LOGIN_COOKIE, nonce, path="/login", httponly=True, samesite="Strict", secure=console.secure)
        return response

    async def login(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        given = str(form.get(CSRF_FIELD, ""))
        target = _next(str(form.get("next", "")))
        if not nonce or not given or not same(nonce, given):
            return console.error(request, 403, "the sign-in form expired or did not come from this console; try again")
        who = await console.auth.sign_in(str(form.get("user", "")), str(form.get("password", "")))
        if who is None:
            fresh = secrets.token_urlsafe(24)
            response = console.page(
                request, "login.html", status=401, login_csrf=fresh, next=target, failed="wrong user name or password"
            )
            response.set_cookie(
                LOGIN_COOKIE, fresh, path="/login", httponly=True, samesite="Strict", secure=console.secure
            )
            return response
        session, _ = await console.auth.open_session(who.user, console.settings.session_ttl)
        log.info("signed in", extra={"user": who.user, "role": who.role.value})
        response = _see_other(target)
        set_session_cookie(response, session, secure=console.secure, ttl=console.settings.session_ttl)
        response.del_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(request: web.Request) -> web.StreamResponse:
        cookie = request.cookies.get(COOKIE)
        if cookie:
            await console.auth.close_session(cookie)
        response = _see_other("/login")
        response.del_cookie(COOKIE, path="/")
        return response

    # ------------------------------------------------------------ overview

    def overview_query(request: web.Request) -> dict[str, Any]:
        q = request.query
        sort = q.get("sort", "instance")
        return {
            "q": q.get("q", "")[:64],
            "tone": q.get("tone", "") if q.get("tone", "") in pages.TONES else "",
            "sort": sort if sort in pages.SORTS else "instance",
            "desc": q.get("desc") == "1",
        }

    async def overview_rows(request: web.Request) -> tuple[dict[str, Any], list[pages.OverviewRow], list[str]]:
        query = overview_query(request)
        snap = await snapshot(urls)
        rows = pages.select(pages.overview(snap), query["q"], query["tone"], query["sort"], query["desc"])
        return query, rows, list(snap["errors"])

    async def overview(request: web.Request) -> web.Response:
        query, rows, errors = await overview_rows(request)
        fragment = "/fragments/overview?" + urlencode({k: v for k, v in query.items() if v not in ("", False)})
        return console.page(
            request,
            "overview.html",
            rows=rows,
            errors=errors,
            query=query,
            sorts=pages.SORTS,
            tones=pages.TONES,
            fragment=fragment,
        )

    async def overview_fragment(request: web.Request) -> web.Response:
        _, rows, errors = await overview_rows(request)
        return console.page(request, "_overview_rows.html", rows=rows, errors=errors)

    # ------------------------------------------------------------ instance

    def instance_of(request: web.Request) -> str:
        return check_instance(request.match_info["instance"])

    async def live(instance: str) -> dict[str, Any]:
        snap = await snapshot(urls, instance)
        entry = snap["instances"][0]
        c = entry["compliance"]
        words, tone = pages.state_of(c)
        return {
            "entry": entry,
            "state": words,
            "tone": tone,
            "registration": pages.REGISTRATION.get(str(c["registration"]), "-") if c else "-",
            "bars": pages.bars(entry["usage"]),
            "deadlines": pages.deadlines(c),
            "agent": await console.get(f"{urls.agent}/v1/instances/{instance}/agent"),
            "errors": snap["errors"],
        }

    def entitlement(usage: Mapping[str, Any] | None) -> Entitlement | None:
        ent = usage.get("entitled") if usage else None
        return Entitlement(ent["standard"], ent["premium"], ent["ivr_ports"]) if ent else None

    async def range_rows(
        request: web.Request, instance: str, usage: Mapping[str, Any] | None
    ) -> tuple[datetime, datetime, list[report_rows.Row], Entitlement | None]:
        as_of = (usage or {}).get("as_of") or datetime.now(UTC).isoformat()
        end = datetime.fromisoformat(str(as_of).replace("Z", "+00:00"))
        default_from = (end - timedelta(days=7)).replace(hour=0, minute=0, second=0, microsecond=0)
        default_to = (end + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        since = _day(request.query.get("from"), "from", default_from)
        until = _day(request.query.get("to"), "to", default_to)
        if until <= since:
            raise BadRequest("`to` must be after `from`")
        body, _ = await report_inputs(urls, instance, since, until)
        ent = entitlement(usage)
        return since, until, report_rows.rows(body["reports"], ent), ent

    async def instance_page(request: web.Request) -> web.Response:
        try:
            instance = instance_of(request)
            now = await live(instance)
            usage = now["entry"]["usage"]
            since, until, table, ent = await range_rows(request, instance, usage)
        except BadRequest as exc:
            return console.error(request, 400, str(exc))
        except ServiceError as exc:
            return console.error(request, 503, str(exc))
        if usage is None and now["entry"]["compliance"] is None and now["agent"] is None:
            return console.error(request, 404, f"no service has heard of instance {instance!r}")
        history = await console.get(f"{urls.compliance}/v1/instances/{instance}/compliance/history?limit=1000", {})
        alerts = await console.get(f"{urls.alerting}/v1/alerts?instance={instance}&limit=200", {"alerts": []})
        status, silences = await console.call(
            "GET", f"{urls.alerting}/v1/silences", headers=console.credentials(request)
        )
        silences = [s for s in (silences or {}).get("silences", []) if s.get("instance") in (None, instance)]
        calls = await console.get(f"{urls.agent}/v1/instances/{instance}/agent/calls", {"calls": []})
        return console.page(
            request,
            "instance.html",
            instance=instance,
            live=now,
            fragment=f"/instances/{quote(instance)}/fragments/live",
            chart=chart.svg(table, ent, f"Peaks per reporting interval of {instance} against the entitlements"),
            table=table,
            to_buy=report_rows.to_buy(table, ent),
            entitled=ent,
            since=since.date().isoformat(),
            until=until.date().isoformat(),
            timeline=pages.timeline(history.get("transitions", [])),
            active=[a for a in alerts["alerts"] if a.get("state") == "active"],
            past=[a for a in alerts["alerts"] if a.get("state") != "active"],
            silences=silences if status == 200 else [],
            alert_names=sorted({a["alert"] for a in alerts["alerts"]}),
            calls=calls["calls"][:20],
            operations=OPERATIONS,
            done=request.query.get("done", "")[:300],
        )

    async def instance_fragment(request: web.Request) -> web.Response:
        try:
            instance = instance_of(request)
        except BadRequest as exc:
            return console.error(request, 400, str(exc))
        return console.page(request, "_instance_live.html", instance=instance, live=await live(instance))

    async def report_csv(request: web.Request) -> web.StreamResponse:
        try:
            instance = instance_of(request)
            usage = await console.get(f"{urls.consumption}/v1/instances/{instance}/usage")
            since, until, table, _ = await range_rows(request, instance, usage)
        except BadRequest as exc:
            return console.error(request, 400, str(exc))
        except ServiceError as exc:
            return console.error(request, 503, str(exc))
        name = f"{instance}-{since.date().isoformat()}-{until.date().isoformat()}.csv"
        return web.Response(
            text=report_rows.as_csv(table),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    # ------------------------------------------------------------ actions

    async def action(request: web.Request) -> web.Response:
        who = identity(request)
        assert who is not None
        try:
            instance = instance_of(request)
        except BadRequest as exc:
            return console.error(request, 400, str(exc))
        form = await request.post()
        operation = str(form.get("operation", ""))
        if operation not in OPERATIONS:
            return console.error(request, 400, f"unknown operation {operation!r}")
        fields = _form_fields(form)
        try:  # check the fields before asking for a confirmation
            agent_command(instance, operation, datetime.now(UTC), SOURCE, **fields)
        except ValueError as exc:
            console.actions.labels(operation, "invalid").inc()
            return console.page(
                request,
                "result.html",
                status=400,
                instance=instance,
                operation=operation,
                label=OPERATIONS[operation][0],
                result={"ok": False, "message": str(exc)},
            )
        if form.get("confirmed") != "yes":
            return console.page(
                request,
                "confirm.html",
                instance=instance,
                operation=operation,
                label=OPERATIONS[operation][0],
                question=OPERATIONS[operation][1].format(i=instance),
                fields=fields,
            )
        result = await console.command(who, instance, operation, fields)
        return console.page(
            request,
            "result.html",
            status=200 if result["ok"] else 502,
            instance=instance,
            operation=operation,
            label=OPERATIONS[operation][0],
            result=result,
        )

    # ------------------------------------------------------------ silences

    async def add_silence(request: web.Request) -> web.StreamResponse:
        try:
            instance = instance_of(request)
        except BadRequest as exc:
            return console.error(request, 400, str(exc))
        form = await request.post()
        try:
            hours = float(str(form.get("hours", "")))
        except ValueError:
            return console.error(request, 400, "the silence needs a duration in hours, e.g. 4")
        if not 0 < hours <= 24 * 90:
            return console.error(request, 400, "a silence lasts more than 0 and at most 2160 hours (90 days)")
        body: dict[str, Any] = {
            "instance": instance,
            "ends_at": (datetime.now(UTC) + timedelta(hours=hours)).isoformat(),
            "comment": str(form.get("comment", "")).strip() or "silenced from the console",
        }
        if form.get("alert"):
            body["alert"] = str(form["alert"])
        try:
            status, answer = await console.call(
                "POST", f"{urls.alerting}/v1/silences", headers=console.credentials(request), body=body
            )
        except ServiceError as exc:
            return console.error(request, 503, str(exc))
        if status != 201:
            return console.error(request, status, f"alerting refused the silence: {(answer or {}).get('error')}")
        raise web.HTTPSeeOther(
            f"/instances/{quote(instance)}?" + urlencode({"done": f"silence {answer['id']} set"}) + "#alerts"
        )

    async def delete_silence(request: web.Request) -> web.StreamResponse:
        try:
            instance = instance_of(request)
        except BadRequest as exc:
            return console.error(request, 400, str(exc))
        silence = request.match_info["silence"]
        try:
            status, answer = await console.call(
                "DELETE",
                f"{urls.alerting}/v1/silences/{quote(silence, safe='')}",
                headers=console.credentials(request),
            )
        except ServiceError as exc:
            return console.error(request, 503, str(exc))
        if status != 204:
            return console.error(request, status, f"alerting refused: {(answer or {}).get('error')}")
        raise web.HTTPSeeOther(
            f"/instances/{quote(instance)}?" + urlencode({"done": f"silence {silence} cleared"}) + "#alerts"
        )

    # ------------------------------------------------------------ the licensing authority

    def actor(request: web.Request) -> dict[str, str]:
        return console.credentials(request)

    async def authority(request: web.Request) -> web.Response:
        try:
            status, body = await console.call("GET", f"{urls.authority}/v1/accounts", headers=actor(request))
        except ServiceError as exc:
            return console.error(request, 503, str(exc))
        if status != 200:
            return console.error(request, status, f"the licensing authority answered: {(body or {}).get('error')}")
        return console.page(request, "authority.html", smart_accounts=body["smart_accounts"])

    async def account(request: web.Request) -> web.Response:
        name = request.match_info["account"]
        base = f"{urls.authority}/v1/accounts/{quote(name, safe='')}"
        try:
            status, insts = await console.call("GET", f"{base}/instances", headers=actor(request))
            if status != 200:
                return console.error(request, status, f"the licensing authority answered: {(insts or {}).get('error')}")
            _, toks = await console.call("GET", f"{base}/tokens", headers=actor(request))
            _, accounts = await console.call("GET", f"{urls.authority}/v1/accounts", headers=actor(request))
        except ServiceError as exc:
            return console.error(request, 503, str(exc))
        mine, siblings = None, []
        for sa in accounts["smart_accounts"]:
            for va in sa["virtual_accounts"]:
                if va["name"] == name:
                    mine = va
                    siblings = [v["name"] for v in sa["virtual_accounts"] if v["name"] != name]
        return console.page(
            request,
            "account.html",
            account=name,
            info=mine,
            siblings=siblings,
            instances=insts["instances"],
            tokens=toks.get("tokens", []),
            done=request.query.get("done", "")[:300],
            new_token=None,
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
            elif what == "move":
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
                return console.error(request, 404, f"nothing to do for {what!r}")
        except ValueError:
            return console.error(request, 400, "a number was expected (days, uses, quantity)")
        try:
            status, answer = await console.call("POST", url, headers=actor(request), body=body)
        except ServiceError as exc:
            return console.error(request, 503, str(exc))
        if status not in (200, 201):
            return console.error(request, status, f"the licensing authority refused: {(answer or {}).get('error')}")
        if what == "tokens":  # shown once, on this page, never in a URL
            return console.page(request, "token.html", account=name, token=answer)
        done = "licenses moved" if what == "move" else "token revoked"
        raise web.HTTPSeeOther(f"/authority/accounts/{quote(name)}?" + urlencode({"done": done}))

    # ------------------------------------------------------------ the JSON admin API (bearer tokens)

    async def api_instances(request: web.Request) -> web.Response:
        return json_response(await snapshot(urls))

    async def api_action(request: web.Request) -> web.Response:
        who = identity(request)
        assert who is not None
        try:
            instance = instance_of(request)
            body = await request.json()
            if not isinstance(body, dict) or not isinstance(body.get("operation"), str):
                raise BadRequest("send a JSON object with `operation` and its fields")
            operation = body.pop("operation")
            if operation not in OPERATIONS:
                raise BadRequest(f"unknown operation {operation!r}; one of {', '.join(OPERATIONS)}")
            agent_command(instance, operation, datetime.now(UTC), SOURCE, **body)
        except (BadRequest, ValueError) as exc:
            return problem(400, str(exc))
        result = await console.command(who, instance, operation, body)
        return json_response(result, status=200 if result["ok"] else 502)

    r = app.router
    r.add_static("/static", HERE / "static")
    r.add_get("/login", login_form)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/", overview)
    r.add_get("/fragments/overview", overview_fragment)
    r.add_get("/instances/{instance}", instance_page)
    r.add_get("/instances/{instance}/fragments/live", instance_fragment)
    r.add_get("/instances/{instance}/report.csv", report_csv)
    r.add_post("/instances/{instance}/actions", action)
    r.add_post("/instances/{instance}/silences", add_silence)
    r.add_post("/instances/{instance}/silences/{silence}/delete", delete_silence)
    r.add_get("/authority", authority)
    r.add_get("/authority/accounts/{account}", account)
    r.add_post("/authority/accounts/{account}/{what}", authority_post)
    r.add_get("/api/v1/instances", api_instances)
    r.add_post("/api/v1/instances/{instance}/actions", api_action)
    return app


async def run(settings: ConsoleSettings, stop: asyncio.Event, *, ready: Callable[[int], None] | None = None) -> None:
    """Serve the console until `stop` is set."""
    await wait_for_kafka(settings.kafka_bootstrap_servers)
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_prefix, partitions=settings.partitions)
    async with (
        open_auth(settings.database_url, settings.auth_schema) as auth,
        EventProducer(settings.kafka_bootstrap_servers, settings.topic_prefix, client_id=SERVICE, linger_ms=0) as kafka,
    ):
        registry = CollectorRegistry()
        console = Console(settings, auth, kafka, registry)
        tls = tls_context(settings.tls_cert_file, settings.tls_key_file)
        await serve(
            make_app(console, registry),
            settings.http_host,
            settings.http_port,
            stop,
            tls=tls,
            ready=ready,
            name=SERVICE,
        )
