"""Least privilege in PostgreSQL, on the local stack's own roles (`deploy/stack.sh` makes them; `make run` uses them):
no program is a superuser or may create schemas, each migrates and owns the schema made for it, none can read
another's, and the shared `auth` schema's rows are usable by its members only, its tables altered by none of them. Over TCP the stack takes passwords (scram-sha-256), never trust."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from importlib.abc import Traversable

import asyncpg
import pytest
from ccxlic_agent.app import MIGRATIONS as AGENT
from ccxlic_alerting.app import MIGRATIONS as ALERTING
from ccxlic_authority.app import MIGRATIONS as AUTHORITY
from ccxlic_compliance.app import MIGRATIONS as COMPLIANCE
from ccxlic_consumption.app import MIGRATIONS as CONSUMPTION
from ccxlic_runtime.auth import Role, open_auth
from ccxlic_runtime.db import SchemaMissing, create_pool, migrate
from ccxlic_testing.plugin import Stack, drop_schema

pytestmark = pytest.mark.integration
OWNERS: dict[str, Traversable] = {
    "consumption": CONSUMPTION,
    "compliance": COMPLIANCE,
    "alerting": ALERTING,
    "agent": AGENT,
    "authority": AUTHORITY,
}
AUTH_MEMBERS = {"alerting", "authority", "console", "cli"}


@pytest.fixture
def roles(stack: Stack) -> dict[str, str]:
    if not stack.roles:
        assert os.environ.get("CI", "").lower() not in {"1", "true", "yes"}, "CI runs on the local stack"
        pytest.skip(f"the roles are the local stack's; this stack is {stack.origin}")
    assert set(stack.roles) == set(OWNERS) | AUTH_MEMBERS
    return stack.roles


@pytest.fixture
async def schemas(stack: Stack, roles: dict[str, str]) -> AsyncIterator[dict[str, str]]:
    """A fresh schema per program, made for its role by the superuser (as deploy/pg-roles.sh makes the default ones),
    and migrated by that role (as a service does at start)."""
    tag = uuid.uuid4().hex[:8]
    made = {program: f"r{tag}_{program}" for program in OWNERS}
    try:
        admin = await asyncpg.connect(stack.database_url)
        try:
            for program, schema in made.items():
                await admin.execute(f'create schema "{schema}" authorization ccxlic_{program}')
        finally:
            await admin.close()
        for program, folder in OWNERS.items():
            pool = await create_pool(roles[program], made[program], max_size=1)
            try:
                assert await migrate(pool, made[program], folder)  # every file applied, as that role
            finally:
                await pool.close()
        yield made
    finally:
        for schema in made.values():
            await drop_schema(stack.database_url, schema)


async def test_no_program_is_a_superuser_and_each_owns_the_schema_it_migrated(
    stack: Stack, roles: dict[str, str], schemas: dict[str, str]
) -> None:
    for program, url in roles.items():
        conn = await asyncpg.connect(url)
        try:
            me = await conn.fetchrow(
                "select rolname, rolsuper, rolcreaterole, rolcreatedb from pg_roles where rolname = current_user"
            )
            assert me is not None and me["rolname"] == f"ccxlic_{program}"
            assert not (me["rolsuper"] or me["rolcreaterole"] or me["rolcreatedb"]), program
            if program in schemas:
                owners = await conn.fetch(
                    "select distinct pg_get_userbyid(c.relowner) as owner from pg_class c"
                    " join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1",
                    schemas[program],
                )
                assert [r["owner"] for r in owners] == [f"ccxlic_{program}"]
        finally:
            await conn.close()


async def test_no_program_can_read_or_change_another_programs_schema(
    roles: dict[str, str], schemas: dict[str, str]
) -> None:
    refused = 0
    for program, url in roles.items():
        conn = await asyncpg.connect(url)
        try:
            for owner, schema in schemas.items():
                if owner == program:
                    assert await conn.fetchval(f'select count(*) from "{schema}".processed_events') == 0
                    continue
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for schema"):
                    await conn.fetchval(f'select count(*) from "{schema}".processed_events')
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(f'create table "{schema}".intruder (x int)')
                refused += 2
        finally:
            await conn.close()
    assert refused == 2 * (len(roles) * len(schemas) - len(schemas))  # every pair but a program's own


async def test_the_auth_schema_s_rows_are_its_members_but_its_tables_are_nobody_s_to_alter(
    roles: dict[str, str],
) -> None:
    # alerting migrates it (as the services do at start), as the owner role: the console reads what it wrote
    async with open_auth(roles["alerting"], "auth") as auth:
        await auth.create_user(f"roles-{uuid.uuid4().hex[:6]}", Role.viewer, "a-long-password-1")
    for program, url in roles.items():
        conn = await asyncpg.connect(url)
        try:
            if program in AUTH_MEMBERS:
                assert await conn.fetchval("select count(*) from auth.users") >= 1, program
                owner = await conn.fetchval(
                    "select tableowner from pg_tables where schemaname = 'auth' and tablename = 'users'"
                )
                assert owner == "ccxlic_auth_owner"
                # rows yes; the tables themselves no: a member does not inherit the owner's rights
                for ddl in (
                    "drop table auth.sessions",
                    "alter table auth.users add column intruder int",
                    "truncate auth.users",
                    "create table auth.intruder (x int)",
                ):
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        await conn.execute(ddl)
                await conn.execute("grant select on auth.users to public")  # PostgreSQL warns, and grants nothing
                assert not await conn.fetchval("select has_table_privilege('public', 'auth.users', 'select')")
            else:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.fetchval("select count(*) from auth.users")
        finally:
            await conn.close()


async def test_no_program_may_create_a_schema_and_one_nobody_made_says_who_must(
    stack: Stack, roles: dict[str, str]
) -> None:
    name = f"r{uuid.uuid4().hex[:8]}_missing"
    for url in roles.values():
        conn = await asyncpg.connect(url)
        try:
            assert not await conn.fetchval("select has_database_privilege(current_user, current_database(), 'CREATE')")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f'create schema "{name}"')
        finally:
            await conn.close()
    pool = await create_pool(roles["consumption"], name, max_size=1)
    try:
        with pytest.raises(SchemaMissing, match=rf"schema '{name}' does not exist, and this program's role may not"):
            await migrate(pool, name, CONSUMPTION)
    finally:
        await pool.close()


async def test_tcp_connections_need_the_password(stack: Stack, roles: dict[str, str]) -> None:
    no_password = roles["consumption"].replace(roles["consumption"].split("//")[1].split("@")[0], "ccxlic_consumption")
    with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
        await asyncpg.connect(no_password, password="wrong")
    conn = await asyncpg.connect(stack.database_url)
    try:
        methods = {
            r["auth_method"] for r in await conn.fetch("select auth_method from pg_hba_file_rules where type = 'host'")
        }
    finally:
        await conn.close()
    assert methods == {"scram-sha-256"}
