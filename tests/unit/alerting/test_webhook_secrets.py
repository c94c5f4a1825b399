"""A webhook URL is a secret (receivers put tokens in its user info, path and query): a failed delivery's error, which
alerting stores as `last_error`, serves on GET /v1/alerts/{id} and logs, says only its scheme and host."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from ccxlic_alerting.settings import AlertingSettings
from ccxlic_runtime.channels import DeliveryError, Webhook
from ccxlic_runtime.settings import ConfigError, load_settings

SECRETS = ("hunter2", "T0KEN-abc", "sig=xyz123")
NOTICE = {
    "alert_id": "a-1",
    "alert": "OutOfCompliance",
    "kind": "raised",
    "at": "2026-03-02T08:00:00+00:00",
    "instance": "cc-1",
    "severity": "critical",
    "summary": "s",
    "action": "a",
    "raised_at": "2026-03-02T08:00:00+00:00",
    "deadline": None,
}


@pytest_asyncio.fixture
async def echoing() -> AsyncIterator[int]:
    """A receiver that refuses, quoting the path and query it was called with."""

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=500, text=f"no such hook {request.path_qs}")

    app = web.Application()
    app.router.add_post("/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await runner.cleanup()


@pytest.mark.parametrize("reachable", [True, False])
async def test_a_failed_delivery_never_says_the_urls_secrets(echoing: int, reachable: bool) -> None:
    port = echoing if reachable else 1  # a receiver that answers 500, or nobody at all
    hook = Webhook(f"http://ops:hunter2@127.0.0.1:{port}/hooks/T0KEN-abc?sig=xyz123", "http://x")
    with pytest.raises(DeliveryError) as failed:
        await hook.send(NOTICE)
    said = str(failed.value)
    assert f"127.0.0.1:{port}" in said and not any(s in said for s in SECRETS), said
    assert not any(s in repr(hook) for s in SECRETS)


def test_a_bad_webhook_url_is_refused_without_being_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCXLIC_WEBHOOK_URLS", "https://hooks.example/ok,ftp://ops:hunter2@hooks.example/T0KEN-abc")
    with pytest.raises(ConfigError, match="URL 2 must start with http") as refused:
        load_settings(AlertingSettings)
    assert not any(s in str(refused.value) for s in SECRETS)
    monkeypatch.setenv("CCXLIC_WEBHOOK_URLS", "https://ops:hunter2@hooks.example/T0KEN-abc")
    settings = load_settings(AlertingSettings)
    assert not any(s in repr(settings) for s in SECRETS)
