"""The users, sessions and tokens (ccxlic_runtime.auth) on the real PostgreSQL: sign-in, sessions that end,
tokens that are revoked or expire, roles that change at once, and no secret stored as given."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from ccxlic_runtime.auth import (
    FAILURE_WINDOW,
    MAX_CLIENT_FAILURES,
    MAX_FAILURES,
    AuthError,
    PgAuthStore,
    Role,
    TooManyFailures,
    digest,
    open_auth,
)
from ccxlic_testing.plugin import Stack, drop_schema

pytestmark = pytest.mark.integration
H = timedelta(hours=1)


@pytest_asyncio.fixture
async def auth(stack: Stack, pg_schema: str) -> AsyncIterator[PgAuthStore]:
    async with open_auth(stack.database_url, f"{pg_schema}_auth") as store:
        yield store
    await drop_schema(stack.database_url, pg_schema)


async def test_sign_in_with_the_password_only(auth: PgAuthStore) -> None:
    assert await auth.create_user("alice", Role.admin, "a long enough secret")
    assert not await auth.create_user("alice", Role.viewer, "another long secret")  # exists: unchanged
    who = await auth.sign_in("alice", "a long enough secret")
    assert who is not None and (who.user, who.role, who.via) == ("alice", Role.admin, "session")
    assert await auth.sign_in("alice", "a long enough secreT") is None
    assert await auth.sign_in("nobody", "a long enough secret") is None
    stored = await auth.pool.fetchval("select password_hash from users where name = 'alice'")
    assert stored.startswith("$argon2id$")
    with pytest.raises(AuthError, match="at least 12"):
        await auth.create_user("bob", Role.viewer, "short")
    assert [u["name"] for u in await auth.users()] == ["alice"]


async def test_a_session_carries_its_csrf_token_and_ends(auth: PgAuthStore) -> None:
    await auth.create_user("alice", Role.viewer, "a long enough secret")
    session, csrf = await auth.open_session("alice", H)
    who = await auth.session(session)
    assert who is not None and who.csrf == csrf and who.role is Role.viewer
    assert await auth.pool.fetchval("select count(*) from sessions where digest = $1", session) == 0
    assert await auth.pool.fetchval("select count(*) from sessions where digest = $1", digest(session)) == 1
    # a role change counts at once, for the session already open
    await auth.create_user("alice", Role.admin, "a new long secret!", replace=True)
    assert await auth.session(session) is None  # replacing the password signs the user out
    session, _ = await auth.open_session("alice", H)
    assert (await auth.session(session)).role is Role.admin  # type: ignore[union-attr]
    await auth.close_session(session)
    assert await auth.session(session) is None
    expired, _ = await auth.open_session("alice", -H)
    assert await auth.session(expired) is None
    assert await auth.session("made-up") is None


async def test_tokens_act_as_their_user_until_revoked_or_expired(auth: PgAuthStore) -> None:
    await auth.create_user("ci", Role.viewer, "a long enough secret")
    token_id, token = await auth.create_token("ci", "pipeline")
    who = await auth.token(token)
    assert who is not None and (who.user, who.role, who.via) == ("ci", Role.viewer, "token")
    listed = await auth.tokens()
    assert [(t["id"], t["label"]) for t in listed] == [(token_id, "pipeline")] and token not in str(listed)
    assert await auth.revoke_token(token_id) and not await auth.revoke_token(token_id)
    assert await auth.token(token) is None
    _, short = await auth.create_token("ci", "short", -H)
    assert await auth.token(short) is None
    _, kept = await auth.create_token("ci", "kept", H)
    assert await auth.token(kept) is not None
    assert await auth.delete_user("ci")
    assert await auth.token(kept) is None  # a deleted user's tokens go with it
    with pytest.raises(AuthError, match="no user 'ci'"):
        await auth.create_token("ci", "again")


async def test_too_many_failed_sign_ins_make_that_client_wait_not_the_others(auth: PgAuthStore) -> None:
    await auth.create_user("alice", Role.admin, "a long enough secret")
    for _ in range(MAX_FAILURES):
        assert await auth.sign_in("alice", "a guess at it", "10.0.0.9") is None
    with pytest.raises(TooManyFailures, match="too many failed sign-ins; try again after") as refused:
        await auth.sign_in("alice", "a long enough secret", "10.0.0.9")  # even the right password waits
    assert refused.value.until > datetime.now(UTC) + FAILURE_WINDOW - timedelta(minutes=1)
    assert await auth.sign_in("alice", "a long enough secret", "10.0.0.1") is not None  # another client is not locked
    # the window passes: the failures no longer count, and a success clears them
    await auth.pool.execute("update sign_in_failures set at = at - $1::interval", FAILURE_WINDOW)
    assert await auth.sign_in("alice", "a long enough secret", "10.0.0.9") is not None
    assert await auth.pool.fetchval("select count(*) from sign_in_failures where client = '10.0.0.9'") == 0
    for _ in range(MAX_FAILURES):  # an unknown name counts too (no hint of which names exist)
        assert await auth.sign_in("mallory", "x", "10.0.0.9") is None
    with pytest.raises(TooManyFailures):
        await auth.sign_in("mallory", "x", "10.0.0.9")


async def test_rotating_user_names_from_one_address_is_bounded_and_unknown_names_cost_no_hashing(
    auth: PgAuthStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each name from one address within its own bound, but MAX_CLIENT_FAILURES of them make the address wait; an
    unknown name is never hashed for (argon2 costs 0.1 s of CPU and 64 MiB), while a known one is."""
    from ccxlic_runtime import auth as auth_module

    hashed: list[str] = []
    real = auth_module.password_matches

    def counting(stored: str, password: str) -> bool:
        hashed.append(password)
        return real(stored, password)

    monkeypatch.setattr(auth_module, "password_matches", counting)
    auth._verify_seconds = 0.0  # the stand-in wait of an unknown name: not what this test is about
    for n in range(MAX_CLIENT_FAILURES):
        assert await auth.sign_in(f"nobody-{n}", "a guess at it", "10.0.0.7") is None
    assert hashed == []  # no user of those names: nothing hashed
    with pytest.raises(TooManyFailures):
        await auth.sign_in("nobody-else", "a guess at it", "10.0.0.7")
    await auth.create_user("bob", Role.viewer, "a long enough secret")
    with pytest.raises(TooManyFailures):
        await auth.sign_in("bob", "a long enough secret", "10.0.0.7")  # the address waits, whoever it names
    assert await auth.sign_in("bob", "a long enough secret", "10.0.0.8") is not None  # other addresses do not
    assert hashed == ["a long enough secret"]
