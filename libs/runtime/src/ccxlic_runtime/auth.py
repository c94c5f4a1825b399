"""Who is calling, and may they: users with a role, password sign-in into a session cookie, bearer tokens for API
clients, and CSRF protection for what a browser posts. One mechanism for every service's HTTP that changes anything
(the console, alerting's silences).

Rules:
- Roles: `viewer` reads; `admin` reads and changes. An unknown caller gets 401, a viewer who tries a change 403.
- Passwords are hashed with argon2id (argon2-cffi); session ids and tokens are random (256 bits) and only their
  SHA-256 digests are stored, so a copy of the database signs nobody in.
- The session cookie is `HttpOnly`, `SameSite=Strict`, and `Secure` when the service is served over TLS.
- A request authenticated by its cookie that is not a GET/HEAD/OPTIONS must carry the session's CSRF token, as the
  form field `csrf` or the header `X-CSRF-Token`; a bearer token is never sent by a browser on its own, so a request
  that carries one needs none.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from importlib import resources
from typing import Any, Literal

import asyncpg
from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import SecretStr

from ccxlic_runtime.db import create_pool, migrate
from ccxlic_runtime.http import problem

log = logging.getLogger(__name__)

AUTH_MIGRATIONS = resources.files("ccxlic_runtime") / "auth_migrations"
COOKIE = "ccxlic_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
TOKEN_PREFIX = "ccxlic_"
USER_PATTERN = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD = 12
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Role(StrEnum):
    viewer = "viewer"
    admin = "admin"

    def allows(self, needed: Role) -> bool:
        return self is Role.admin or needed is Role.viewer


@dataclass(frozen=True, slots=True)
class Identity:
    """A signed-in caller: who, with which role, how (session or token), and the session's CSRF token."""

    user: str
    role: Role
    via: Literal["session", "token"]
    csrf: str | None = None


IDENTITY = web.RequestKey("identity", Identity)


class AuthError(ValueError):
    """A user, password or token that cannot be accepted; the message says why."""


class TooManyFailures(AuthError):
    """Too many failed sign-ins lately, of this user from this client or of any user from it; `until` says when it
    may try again."""

    def __init__(self, until: datetime) -> None:
        super().__init__(f"too many failed sign-ins; try again after {until:%H:%M:%S} UTC")
        self.until = until


MAX_FAILURES = 5
"""Failed sign-ins of one user name from one client address within FAILURE_WINDOW before that pair waits."""
MAX_CLIENT_FAILURES = 20
"""Failed sign-ins of any user names from one client address within FAILURE_WINDOW before that address waits
(rotating user names does not get around the first bound)."""
FAILURE_WINDOW = timedelta(minutes=15)
HASHING_AT_ONCE = 2
"""argon2 verifications at once, over every sign-in: what the hashing costs (0.1 s of CPU and 64 MiB each) is
bounded overall, whatever the callers; more wait their turn."""


_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def check_user(name: str) -> str:
    if not USER_PATTERN.fullmatch(name):  # fullmatch: `$` would let "admin\n" through
        raise AuthError(f"user name {name!r} must be 1-64 characters from [A-Za-z0-9._@-]")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"a password needs at least {MIN_PASSWORD} characters; this one has {len(password)}")
    return password


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def same(a: str, b: str) -> bool:
    """Compare secrets in constant time."""
    return hmac.compare_digest(a.encode(), b.encode())


class PgAuthStore:
    """Users, sessions and tokens in the `auth` schema."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._hashing = asyncio.Semaphore(HASHING_AT_ONCE)
        self._verify_seconds = 0.1  # how long a verification takes here, learned from the real ones

    async def _verify(self, stored: str, password: str) -> bool:
        """An argon2 verification, off the event loop (pages and refreshes go on), at most HASHING_AT_ONCE at
        once."""
        async with self._hashing:
            started = time.monotonic()
            matches = await asyncio.to_thread(password_matches, stored, password)
            self._verify_seconds = 0.8 * self._verify_seconds + 0.2 * (time.monotonic() - started)
        return matches

    async def _as_long_as_a_verification(self) -> None:
        """For a user that does not exist: no hashing (it would cost CPU and memory for nothing), but as long as
        one, so a wrong name cannot be told from a wrong password by the time it takes."""
        await asyncio.sleep(self._verify_seconds)

    async def create_user(self, name: str, role: Role, password: str, *, replace: bool = False) -> bool:
        """Create the user; with `replace`, set the role and password of an existing one too. False when it exists
        (and `replace` is off)."""
        check_user(name)
        hashed = await asyncio.to_thread(hash_password, check_password(password))
        if replace:
            await self.pool.execute(
                "insert into users(name, role, password_hash) values ($1, $2, $3) on conflict (name) do update"
                " set role = excluded.role, password_hash = excluded.password_hash",
                name,
                role.value,
                hashed,
            )
            await self.pool.execute("delete from sessions where username = $1", name)
            return True
        done = await self.pool.execute(
            "insert into users(name, role, password_hash) values ($1, $2, $3) on conflict do nothing",
            name,
            role.value,
            hashed,
        )
        return bool(done == "INSERT 0 1")

    async def users(self) -> list[dict[str, Any]]:
        rows = await self.pool.fetch("select name, role, created_at from users order by name")
        return [dict(r) for r in rows]

    async def delete_user(self, name: str) -> bool:
        return bool(await self.pool.execute("delete from users where name = $1", name) == "DELETE 1")

    async def sign_in(self, name: str, password: str, client: str = "") -> Identity | None:
        """The user, when the password matches; None when not. After MAX_FAILURES failures of `name` from `client`,
        or MAX_CLIENT_FAILURES of any names from `client`, within FAILURE_WINDOW: TooManyFailures (without trying
        the password) until the oldest of them is that old. An unknown user is not hashed for, but takes as long."""
        since = datetime.now(UTC) - FAILURE_WINDOW
        for bound, pair in ((MAX_FAILURES, True), (MAX_CLIENT_FAILURES, False)):
            recent = await self.pool.fetch(
                "select at from sign_in_failures where client = $1 and at > $2 and ($3::text is null or username = $3)"
                " order by at desc limit $4",
                client,
                since,
                name if pair else None,
                bound,
            )
            if len(recent) >= bound:
                raise TooManyFailures(recent[-1]["at"] + FAILURE_WINDOW)
        row = await self.pool.fetchrow("select role, password_hash from users where name = $1", name)
        if row is None:
            await self._as_long_as_a_verification()
            matches = False
        else:
            matches = await self._verify(row["password_hash"], password)
        if row is None or not matches:
            await self.pool.execute("delete from sign_in_failures where at < $1", since)
            await self.pool.execute("insert into sign_in_failures (username, client) values ($1, $2)", name, client)
            return None
        await self.pool.execute("delete from sign_in_failures where username = $1 and client = $2", name, client)
        return Identity(name, Role(row["role"]), "session")

    async def open_session(self, user: str, ttl: timedelta) -> tuple[str, str]:
        """A new session for `user`: (the cookie's value, the session's CSRF token)."""
        session, csrf = new_secret(), new_secret()
        await self.pool.execute("delete from sessions where expires_at < now()")
        await self.pool.execute(
            "insert into sessions(digest, username, csrf, expires_at) values ($1, $2, $3, $4)",
            digest(session),
            user,
            csrf,
            datetime.now(UTC) + ttl,
        )
        return session, csrf

    async def session(self, session: str) -> Identity | None:
        row = await self.pool.fetchrow(
            "select s.username, s.csrf, u.role from sessions s join users u on u.name = s.username"
            " where s.digest = $1 and s.expires_at > now()",
            digest(session),
        )
        return None if row is None else Identity(row["username"], Role(row["role"]), "session", row["csrf"])

    async def close_session(self, session: str) -> None:
        await self.pool.execute("delete from sessions where digest = $1", digest(session))

    async def create_token(self, user: str, label: str, ttl: timedelta | None = None) -> tuple[str, str]:
        """A new API token for `user`: (its id, the token). The token is shown once; only its digest is kept."""
        if await self.pool.fetchval("select 1 from users where name = $1", user) is None:
            raise AuthError(f"no user {user!r}; create it first (ccxlic admin create-user)")
        token_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}{new_secret()}"
        await self.pool.execute(
            "insert into tokens(id, digest, username, label, expires_at) values ($1, $2, $3, $4, $5)",
            token_id,
            digest(token),
            user,
            label,
            None if ttl is None else datetime.now(UTC) + ttl,
        )
        return token_id, token

    async def token(self, token: str) -> Identity | None:
        row = await self.pool.fetchrow(
            "select t.username, u.role from tokens t join users u on u.name = t.username where t.digest = $1"
            " and t.revoked_at is null and (t.expires_at is null or t.expires_at > now())",
            digest(token),
        )
        return None if row is None else Identity(row["username"], Role(row["role"]), "token")

    async def tokens(self) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "select id, username, label, created_at, expires_at, revoked_at from tokens order by created_at"
        )
        return [dict(r) for r in rows]

    async def revoke_token(self, token_id: str) -> bool:
        done = await self.pool.execute(
            "update tokens set revoked_at = now() where id = $1 and revoked_at is null", token_id
        )
        return bool(done == "UPDATE 1")


@contextlib.asynccontextmanager
async def open_auth(database_url: str | SecretStr, schema: str = "auth") -> AsyncIterator[PgAuthStore]:
    """The auth store on its own small pool, its schema migrated."""
    pool = await create_pool(database_url, schema, max_size=2)
    try:
        await migrate(pool, schema, AUTH_MIGRATIONS, runtime=False)
        yield PgAuthStore(pool)
    finally:
        await pool.close()


Policy = Callable[[web.Request], Role | None]
"""The role a request needs (None: anyone may)."""


async def identify(store: PgAuthStore, request: web.Request) -> Identity | None:
    """The caller, from `Authorization: Bearer <token>` or else the session cookie."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        return await store.token(value.strip())
    cookie = request.cookies.get(COOKIE)
    return None if not cookie else await store.session(cookie)


async def csrf_given(request: web.Request) -> str:
    """The CSRF token a browser sent with a change: the header, or the form field of a form post."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


Unauthenticated = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _unauthenticated(request: web.Request) -> web.StreamResponse:
    response = problem(401, "sign in first: send `Authorization: Bearer <token>` (ccxlic admin token create)")
    response.headers["WWW-Authenticate"] = 'Bearer realm="ccxlic"'
    return response


Refuse = Callable[[web.Request, str], web.StreamResponse]


def _refuse(request: web.Request, reason: str) -> web.StreamResponse:
    return problem(403, reason)


def auth_middleware(
    store: PgAuthStore,
    policy: Policy,
    *,
    on_unauthenticated: Unauthenticated = _unauthenticated,
    refuse: Refuse = _refuse,
) -> Any:
    """An aiohttp middleware: identifies every caller (`request[IDENTITY]`), answers 401 to an unknown one where the
    policy needs a role, 403 to a role too small or a cookie-authenticated change without its CSRF token."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        needed = policy(request)
        who = await identify(store, request)
        if who is not None:
            request[IDENTITY] = who
        if needed is None:
            return await handler(request)
        if who is None:
            return await on_unauthenticated(request)
        if who.via == "session" and request.method not in SAFE_METHODS:
            given = await csrf_given(request)
            if not given or who.csrf is None or not same(given, who.csrf):
                log.warning("refused a change without its CSRF token", extra={"user": who.user, "path": request.path})
                return refuse(
                    request, "refused: the form's CSRF token is missing or wrong; reload the page and try again"
                )
        if not who.role.allows(needed):
            return refuse(request, f"refused: {who.user} is a {who.role.value}; only an admin may change anything")
        return await handler(request)

    return middleware


def identity(request: web.Request) -> Identity | None:
    return request.get(IDENTITY)


def set_session_cookie(response: web.StreamResponse, session: str, *, secure: bool, ttl: timedelta) -> None:
    response.set_cookie(
        COOKIE,
        session,
        max_age=int(ttl.total_seconds()),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=secure,
    )


def writes_need_admin(prefixes: tuple[str, ...]) -> Policy:
    """A policy: under `prefixes`, reading needs a viewer and changing needs an admin; elsewhere anyone may."""

    def policy(request: web.Request) -> Role | None:
        if not request.path.startswith(prefixes):
            return None
        return Role.viewer if request.method in SAFE_METHODS else Role.admin

    return policy


__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "AuthError",
    "Identity",
    "PgAuthStore",
    "Role",
    "TooManyFailures",
    "auth_middleware",
    "check_password",
    "check_user",
    "hash_password",
    "identity",
    "open_auth",
    "password_matches",
    "set_session_cookie",
    "writes_need_admin",
]
