"""The console's HTTP behaviour on the real stack (PostgreSQL for its users, Kafka for its producer): sign-in and
its cookie, where an unknown caller is sent, CSRF on every post, what a viewer may not do, bearer tokens for the
JSON API, the security headers, the cookie's `Secure` over TLS, and signing out. The pages' content, with the
services behind them, is the browser tests' (tests/e2e/test_console_browser.py)."""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from ccxlic_console.app import run
from ccxlic_console.settings import ConsoleSettings
from ccxlic_runtime.auth import Role, open_auth
from ccxlic_testing.plugin import InProcess, Stack, api_token, drop_schema, free_port, service_settings
from ccxlic_testing.tls import make_ca_and_cert

pytestmark = pytest.mark.integration
PASSWORD = "a long enough secret"

Start = Callable[..., Awaitable[str]]


@pytest_asyncio.fixture
async def console(stack: Stack, topic_prefix: str, pg_schema: str) -> AsyncIterator[Start]:
    started: list[InProcess] = []
    async with open_auth(stack.database_url, f"{pg_schema}_auth") as auth:
        await auth.create_user("ada", Role.admin, PASSWORD)
        await auth.create_user("vic", Role.viewer, PASSWORD)

    nowhere = f"http://127.0.0.1:{free_port()}"  # no service behind the console: these tests are about its door
    services = {f"{s}_url": nowhere for s in ("consumption", "compliance", "alerting", "agent", "authority")}

    async def start(**overrides: Any) -> str:
        settings = service_settings(ConsoleSettings, stack, topic_prefix, pg_schema, **{**services, **overrides})
        service = InProcess(run, settings)
        started.append(service)
        port = await service.started()
        return f"{'https' if settings.tls_cert_file else 'http'}://127.0.0.1:{port}"

    yield start
    for service in started:
        await service.stopped()
    await drop_schema(stack.database_url, pg_schema)


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no field {name} in {html[:500]}"
    return found.group(1)


async def _sign_in(
    http: aiohttp.ClientSession, base: str, user: str, password: str = PASSWORD
) -> aiohttp.ClientResponse:
    async with http.get(f"{base}/login") as r:
        nonce = _field(await r.text(), "csrf")
    async with http.post(
        f"{base}/login", data={"csrf": nonce, "next": "/", "user": user, "password": password}, allow_redirects=False
    ) as r:
        await r.read()
        return r


def _jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1


async def test_sign_in_sets_a_strict_http_only_cookie_and_signing_out_ends_it(console: Start) -> None:
    base = await console()
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        async with http.get(f"{base}/", allow_redirects=False) as r:
            where = urlsplit(r.headers["Location"])
            assert r.status == 303 and where.path == "/login" and parse_qs(where.query) == {"next": ["/"]}
        wrong = await _sign_in(http, base, "ada", "not the password")
        assert wrong.status == 401
        r = await _sign_in(http, base, "ada")
        assert r.status == 303 and r.headers["Location"] == "/"
        cookie = next(c for c in r.headers.getall("Set-Cookie") if c.startswith("ccxlic_session="))
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain HTTP on 127.0.0.1
        async with http.get(f"{base}/") as r:
            page = await r.text()
            assert r.status == 200 and "Signed in as <strong>ada</strong> (admin)" in page
            assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
            assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Cache-Control"] == "no-store"
            # every asset the page names is this console's own
            assets = re.findall(r'(?:src|href)="([^"#]+)"', page)
            assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
        for asset in ("console.css", "console.js"):
            async with http.get(f"{base}/static/{asset}") as r:
                assert r.status == 200
        async with http.post(f"{base}/logout", data={"csrf": _field(page, "csrf")}, allow_redirects=False) as r:
            assert r.status == 303
        async with http.get(f"{base}/", allow_redirects=False) as r:
            assert r.status == 303


async def test_a_sign_in_needs_the_forms_own_token_and_goes_only_to_this_site(console: Start) -> None:
    base = await console()
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        async with http.post(f"{base}/login", data={"user": "ada", "password": PASSWORD}, allow_redirects=False) as r:
            assert r.status == 403 and "did not come from this console" in await r.text()
        async with http.get(f"{base}/login?next=//evil.example/x") as r:
            page = await r.text()
        async with http.post(
            f"{base}/login",
            data={"csrf": _field(page, "csrf"), "next": "//evil.example/x", "user": "ada", "password": PASSWORD},
            allow_redirects=False,
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/"


async def test_every_post_needs_its_csrf_token_and_a_viewer_changes_nothing(console: Start) -> None:
    base = await console()
    async with aiohttp.ClientSession(cookie_jar=_jar()) as admin, aiohttp.ClientSession(cookie_jar=_jar()) as viewer:
        await _sign_in(admin, base, "ada")
        await _sign_in(viewer, base, "vic")
        async with admin.get(f"{base}/") as r:
            csrf = _field(await r.text(), "csrf")
        action = f"{base}/instances/cc-east/actions"
        async with admin.post(action, data={"operation": "renew_authorization"}) as r:
            assert r.status == 403 and "CSRF token is missing or wrong" in await r.text()
        async with admin.post(action, data={"operation": "renew_authorization", "csrf": "guess"}) as r:
            assert r.status == 403
        async with admin.post(action, data={"operation": "renew_authorization", "csrf": csrf}) as r:
            assert r.status == 200 and "Renew the authorization of cc-east now?" in await r.text()  # asks first
        async with admin.post(action, data={"operation": "register", "csrf": csrf}) as r:
            assert r.status == 400 and "token" in await r.text()  # a clear error before any confirmation
        async with viewer.get(f"{base}/") as r:
            viewer_csrf = _field(await r.text(), "csrf")
        async with viewer.post(action, data={"operation": "renew_authorization", "csrf": viewer_csrf}) as r:
            assert r.status == 403 and "vic is a viewer; only an admin may change anything" in await r.text()
        async with viewer.post(
            f"{base}/instances/cc-east/silences", data={"hours": "1", "comment": "x", "csrf": viewer_csrf}
        ) as r:
            assert r.status == 403
        async with viewer.post(f"{base}/authority/accounts/east/tokens", data={"csrf": viewer_csrf}) as r:
            assert r.status == 403
        async with viewer.post(f"{base}/logout", data={"csrf": viewer_csrf}, allow_redirects=False) as r:
            assert r.status == 303  # a viewer may sign out


async def test_the_json_api_takes_bearer_tokens(console: Start, stack: Stack, pg_schema: str) -> None:
    base = await console()
    viewer = {"Authorization": f"Bearer {await api_token(stack.database_url, f'{pg_schema}_auth', 'bot', 'viewer')}"}
    admin = {"Authorization": f"Bearer {await api_token(stack.database_url, f'{pg_schema}_auth', 'ops')}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/v1/instances") as r:
            assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        async with http.get(f"{base}/api/v1/instances", headers={"Authorization": "Bearer ccxlic_nope"}) as r:
            assert r.status == 401
        async with http.get(f"{base}/api/v1/instances", headers=viewer) as r:
            body = await r.json()
            assert r.status == 200 and body["instances"] == [] and body["errors"]  # nothing runs behind it here
        action = f"{base}/api/v1/instances/cc-east/actions"
        async with http.post(action, json={"operation": "renew_authorization"}, headers=viewer) as r:
            assert r.status == 403 and "only an admin" in (await r.json())["error"]
        async with http.post(action, data="operation=deregister", headers={**admin, "Content-Type": "text/plain"}) as r:
            assert r.status == 415
        async with http.post(action, data="{not json", headers={**admin, "Content-Type": "application/json"}) as r:
            assert r.status == 400
        async with http.post(action, json={"operation": "reboot"}, headers=admin) as r:
            assert r.status == 400 and "unknown operation 'reboot'" in (await r.json())["error"]
        async with http.post(action, json={"operation": "register"}, headers=admin) as r:
            assert r.status == 400 and "token" in (await r.json())["error"]
        async with http.post(f"{base}/api/v1/instances/bad id/actions", json={"operation": "x"}, headers=admin) as r:
            assert r.status == 400


async def test_over_tls_the_cookie_is_secure(console: Start, tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_cert(tmp_path, "localhost")
    base = (await console(tls_cert_file=str(cert), tls_key_file=str(key))).replace("127.0.0.1", "localhost")
    tls = ssl.create_default_context(cafile=str(ca))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls), cookie_jar=_jar()) as http:
        r = await _sign_in(http, base, "ada")
        cookie = next(c for c in r.headers.getall("Set-Cookie") if c.startswith("ccxlic_session="))
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


async def test_guessing_a_password_is_stopped_after_five_tries(console: Start) -> None:
    base = await console()
    async with aiohttp.ClientSession(cookie_jar=_jar()) as http:
        for _ in range(5):
            assert (await _sign_in(http, base, "vic", "a wrong guess")).status == 401
        refused = await _sign_in(http, base, "vic")
        assert refused.status == 429
        async with http.get(f"{base}/", allow_redirects=False) as r:
            assert r.status == 303  # not signed in
        assert (await _sign_in(http, base, "ada")).status == 303  # another user is not affected
