"""The console's composition root: who may reach which route (the policy), the security headers, the route modules
(signin.py, instances.py, authority.py) and `run`. HTML is rendered on the server (Jinja2, autoescaped), a few lines
of vendored script refresh the live parts, and a small JSON admin API serves bearer-token clients.

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
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web
from ccxlic_contract.access import PROGRAMS
from ccxlic_runtime.auth import SAFE_METHODS, Role, auth_middleware, open_auth
from ccxlic_runtime.client import ServiceError
from ccxlic_runtime.http import MAX_REQUEST_BODY, BadRequest, add_ops_routes, problem, serve, tls_context
from ccxlic_runtime.kafka import Broker, EventProducer, ensure_contract_topics, wait_for_kafka
from prometheus_client import CollectorRegistry

from ccxlic_console import authority, instances, signin
from ccxlic_console.console import HERE, Console, PageError
from ccxlic_console.settings import ConsoleSettings

SERVICE = "console"
PUBLIC = ("/login", "/static/", "/favicon.ico", "/healthz", "/readyz", "/metrics")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


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


def make_app(console: Console, registry: CollectorRegistry) -> web.Application:
    def refuse(request: web.Request, status: int, reason: str) -> web.Response:
        """A refusal as the caller reads it: JSON under /api/, else the error page."""
        return problem(status, reason) if request.path.startswith("/api/") else console.error(request, status, reason)

    @web.middleware
    async def errors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """One place that turns what a handler cannot serve into its answer: a bad parameter 400, a service that
        does not answer 503, a PageError its status."""
        try:
            return await handler(request)
        except PageError as exc:
            return refuse(request, exc.status, str(exc))
        except BadRequest as exc:
            return refuse(request, 400, str(exc))
        except ServiceError as exc:
            return refuse(request, 503, str(exc))

    app = web.Application(
        middlewares=[
            _headers,
            auth_middleware(
                console.auth,
                _policy,
                on_unauthenticated=_to_login,
                refuse=lambda request, reason: refuse(request, 403, reason),
            ),
            errors,
        ],
        client_max_size=MAX_REQUEST_BODY,
    )
    add_ops_routes(app.router, registry, {"database": lambda: console.auth.pool.fetchval("select true")})
    app.router.add_static("/static", HERE / "static")
    for module in (signin, instances, authority):
        module.add_routes(app.router, console)
    return app


async def run(settings: ConsoleSettings, stop: asyncio.Event, *, ready: Callable[[int], None] | None = None) -> None:
    """Serve the console until `stop` is set."""
    await wait_for_kafka(Broker.of(settings))
    await ensure_contract_topics(settings, PROGRAMS["console"].topics)
    async with (
        open_auth(settings.database_url, settings.auth_schema) as auth,
        EventProducer(Broker.of(settings), settings.topic_prefix, client_id=SERVICE, linger_ms=0) as kafka,
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
