"""What every page of the console shares: its settings, where the services are, the users, the producer, the
templates, and the calls it makes (the services' views, alerting with the caller's own credentials, the Smart
Agent's operations)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import jinja2
from aiohttp import web
from ccxlic_contract.events import AgentCommand
from ccxlic_runtime.auth import COOKIE, Identity, PgAuthStore, Role, identity
from ccxlic_runtime.client import ServiceError, Urls, agent_command, agent_result
from ccxlic_runtime.kafka import EventProducer
from prometheus_client import CollectorRegistry, Counter

from ccxlic_console.settings import ConsoleSettings

log = logging.getLogger(__name__)
SOURCE = "urn:ccxlic:console"
HERE = Path(__file__).parent


class PageError(Exception):
    """A request the console cannot serve: the status and what to say (the error page, or JSON under /api/)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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

    async def ask(
        self,
        request: web.Request,
        method: str,
        url: str,
        *,
        refused: str,
        body: Any = None,
        expect: tuple[int, ...] = (200,),
    ) -> Any:
        """A call to a service that checks the caller too, with their own credentials: its answer. Another status
        raises PageError (`refused`: the service's reason); no answer, ServiceError (a 503 page)."""
        status, answer = await self.call(method, url, headers=self.credentials(request), body=body)
        if status not in expect:
            raise PageError(status, f"{refused}: {(answer or {}).get('error')}")
        return answer

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
