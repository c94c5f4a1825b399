"""The ops HTTP server every service runs: `/metrics`, `/healthz`, `/readyz`, plus the service's own routes.

- `/healthz` answers 200 while the process runs its event loop.
- `/readyz` answers 200 when every readiness check passes (Kafka consumer joined and making progress, the outbox
  relay publishing, the database answering), else 503 with the failing checks named and why.
- `/metrics` is the Prometheus text format of the injected registry, with `ccxlic_ready_check{check}` (1 when that
  readiness check passes, 0 when not) evaluated at each scrape, so Prometheus sees what `/readyz` says.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from ccxlic_contract.events import INSTANCE_ID_PATTERN
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[bool | str]]
"""True when ready; False, or a string that says why, when not."""


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):  # RFC 3339, UTC as Z, as the contract writes times
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def json_response(body: Any, status: int = 200) -> web.Response:
    text = json.dumps(body, default=_json_default, indent=None)
    return web.Response(text=text, status=status, content_type="application/json")


_INSTANCE_ID = re.compile(INSTANCE_ID_PATTERN)


def problem(status: int, detail: str) -> web.Response:
    """A clear 4xx/5xx answer: `{"error": ..., "status": ...}`."""
    return json_response({"error": detail, "status": status}, status=status)


class BadRequest(ValueError):
    """A request parameter that is missing or invalid; the message says what is expected."""


def check_instance(instance: str) -> str:
    """An instance id checked against the contract's pattern."""
    if _INSTANCE_ID.fullmatch(instance) is None:  # fullmatch: `$` would let "inst-1\n" through
        raise BadRequest(f"instance id {instance!r} must be 1-64 characters from [A-Za-z0-9._:-]")
    return instance


def instance_param(request: web.Request, name: str = "instance") -> str:
    """The instance id from the path, checked against the contract's pattern."""
    return check_instance(request.match_info[name])


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """An integer from the query string, within [low, high]."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"`{name}` must be an integer; got {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"`{name}` must be between {low} and {high}; got {value}")
    return value


def parse_time(raw: str, label: str) -> datetime:
    """An RFC 3339 time with an offset, as UTC; BadRequest names `label` (a query parameter, a CLI option)."""
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{label} must be an RFC 3339 time, e.g. 2026-03-02T08:00:00Z; got {raw!r}") from None
    if value.tzinfo is None:
        raise BadRequest(f"{label} needs an offset (Z or +hh:mm); got {raw!r}")
    return value.astimezone(UTC)


def time_param(request: web.Request, name: str, default: datetime) -> datetime:
    """An RFC 3339 time from the query string (with an offset), as UTC."""
    raw = request.query.get(name)
    return default if raw is None else parse_time(raw, f"`{name}`")


MAX_REQUEST_BODY = 64 * 1024
"""What a service's HTTP API accepts in one request body (a silence, a form): larger is refused with 413."""


def ops_app(registry: CollectorRegistry, checks: Mapping[str, ReadinessCheck]) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BODY)
    add_ops_routes(app.router, registry, checks)
    return app


def add_ops_routes(
    router: web.UrlDispatcher, registry: CollectorRegistry, checks: Mapping[str, ReadinessCheck]
) -> None:
    """Add /metrics, /healthz and /readyz to an aiohttp router."""
    ready_gauge = Gauge(
        "ccxlic_ready_check",
        "1 when this readiness check of /readyz passes, 0 when not (evaluated at each scrape)",
        ["check"],
        registry=registry,
    )

    async def readiness() -> tuple[dict[str, bool], dict[str, str]]:
        results: dict[str, bool] = {}
        problems: dict[str, str] = {}
        for name, check in checks.items():
            try:
                answer = await check()
            except Exception as exc:
                answer = f"check failed: {exc!r}"
            results[name] = answer is True
            if answer is not True:
                problems[name] = answer if isinstance(answer, str) else "not ready"
        return results, problems

    async def metrics(_: web.Request) -> web.Response:
        results, _problems = await readiness()
        for name, ok in results.items():
            ready_gauge.labels(name).set(1 if ok else 0)
        resp = web.Response(body=generate_latest(registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def healthz(_: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        results, problems = await readiness()
        ok = all(results.values())
        body: dict[str, Any] = {"ready": ok, "checks": results}
        if problems:
            body["problems"] = problems
        return json_response(body, status=200 if ok else 503)

    router.add_get("/metrics", metrics)
    router.add_get("/healthz", healthz)
    router.add_get("/readyz", readyz)


def tls_context(cert_file: str | None, key_file: str | None) -> ssl.SSLContext | None:
    """A server TLS context from PEM files (None when not given: plain HTTP)."""
    if not cert_file or not key_file:
        return None
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_file, key_file)
    return tls


async def serve(
    app: web.Application,
    host: str,
    port: int,
    stop: asyncio.Event,
    *,
    tls: ssl.SSLContext | None = None,
    ready: Callable[[int], None] | None = None,
    name: str = "service",
) -> None:
    """Serve `app` (a service with no consumer: the authority, the console) until `stop` is set."""
    server = OpsServer(app, host, port, tls)
    await server.start()
    log.info(f"{name} ready", extra={"url": f"{'https' if tls else 'http'}://{host}:{server.port}/"})
    if ready is not None:
        ready(server.port)
    try:
        await stop.wait()
    finally:
        await server.stop()


class OpsServer:
    """Serves an aiohttp application on host:port; port 0 picks a free port (see `.port`)."""

    def __init__(self, app: web.Application, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.tls = tls
        self.host = host
        self.requested_port = port
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.requested_port, ssl_context=self.tls)
        try:
            await site.start()
        except OSError as exc:
            raise OSError(
                f"cannot serve HTTP on {self.host}:{self.requested_port}: {exc.strerror}; "
                "is another copy of the service running? Set the service's HTTP port variable to another port."
            ) from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("http listening", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
