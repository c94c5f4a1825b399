"""Signing in and out: the sign-in form (with its own CSRF nonce, a cookie and a field that must match), the
session cookie, and where to go next (a path of this site only)."""

from __future__ import annotations

import logging
import re
import secrets
from urllib.parse import urlsplit

from aiohttp import web
from ccxlic_runtime.auth import COOKIE, CSRF_FIELD, TooManyFailures, same, set_session_cookie

from ccxlic_console.console import Console

log = logging.getLogger(__name__)
LOGIN_COOKIE = "ccxlic_login"


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


_LOCAL_PATH = re.compile(r"/(?![/\\])[\x21-\x7e]*")
"""A path of this site: printable ASCII only (browsers drop tabs and newlines, so a slash, a tab and `/evil.example`
would become `//evil.example`, another origin), not starting with two slashes or a slash and a backslash."""


def _next(value: str | None) -> str:
    """Where to go after signing in: a path of this site only (never another origin)."""
    if not value or _LOCAL_PATH.fullmatch(value) is None or "\\" in value:
        return "/"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/"


def add_routes(router: web.UrlDispatcher, console: Console) -> None:
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
        try:
            who = await console.auth.sign_in(
                str(form.get("user", "")), str(form.get("password", "")), request.remote or ""
            )
            failed, status = "wrong user name or password", 401
        except TooManyFailures as exc:
            log.warning("sign-in refused: too many failures", extra={"user": str(form.get("user", ""))[:64]})
            who, failed, status = None, str(exc), 429
        if who is None:
            fresh = secrets.token_urlsafe(24)
            response = console.page(request, "login.html", status=status, login_csrf=fresh, next=target, failed=failed)
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

    router.add_get("/login", login_form)
    router.add_post("/login", login)
    router.add_post("/logout", logout)
