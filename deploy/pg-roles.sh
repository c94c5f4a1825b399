# The PostgreSQL roles of ccx-licensing, in one place for every way it runs: sourced by deploy/stack.sh (the local
# stack) and by deploy/compose/postgres-roles.sh (docker-compose.yml's PostgreSQL, at its first start).
# One login role per program, none a superuser, none with CREATE on the database: the superuser makes each service's
# schema (its default name) for its role, which owns it and what it migrates there. The shared `auth` schema and its
# tables belong to ccxlic_auth_owner; the group ccxlic_auth (members: PG_AUTH_MEMBERS) may read and write their rows,
# not alter or drop them. A member migrates `auth` by SET ROLE to the owner, through ccxlic_auth_migrator, a NOINHERIT
# role: membership without inheriting the owner's rights. Schemas and tables made before are handed to their owners.
PG_PROGRAMS="consumption compliance alerting agent authority console cli"
PG_AUTH_MEMBERS="alerting authority console cli"
PG_SCHEMAS="consumption:ccxlic_consumption compliance:ccxlic_compliance alerting:ccxlic_alerting agent:ccxlic_agent authority:ccxlic_authority auth:ccxlic_auth_owner"

# pg_roles_sql DATABASE PASSWORDS: the SQL (idempotent) to run as the superuser in DATABASE. PASSWORDS is a file of
# `program=password` lines, one per program and one for `postgres` (the superuser).
pg_roles_sql() {
  local db=$1 secrets=$2 p pw pair role
  printf '%s\n' "set client_min_messages = warning;"
  for role in ccxlic_auth ccxlic_auth_owner ccxlic_auth_migrator; do
    printf '%s\n' "do \$\$ begin if not exists (select from pg_roles where rolname = '$role') then create role $role nologin; end if; end \$\$;"
  done
  printf '%s\n' "alter role ccxlic_auth_migrator noinherit;" "grant ccxlic_auth_owner to ccxlic_auth_migrator;"
  for p in $PG_PROGRAMS; do
    pw=$(sed -n "s/^$p=//p" "$secrets")
    [ -n "$pw" ] || { printf 'pg-roles: no password for %s in %s\n' "$p" "$secrets" >&2; return 1; }
    printf '%s\n' "do \$\$ begin if not exists (select from pg_roles where rolname = 'ccxlic_$p') then create role ccxlic_$p login; end if; end \$\$;" \
      "alter role ccxlic_$p with login nosuperuser nocreatedb nocreaterole inherit password '$pw';" \
      "grant connect on database \"$db\" to ccxlic_$p;" \
      "revoke create on database \"$db\" from ccxlic_$p;"
  done
  for p in $PG_AUTH_MEMBERS; do printf '%s\n' "grant ccxlic_auth, ccxlic_auth_migrator to ccxlic_$p;"; done
  printf '%s\n' "alter role postgres password '$(sed -n 's/^postgres=//p' "$secrets")';" \
    "revoke create on schema public from public;" \
    "revoke create on database \"$db\" from public;"
  for pair in $PG_SCHEMAS; do
    printf '%s\n' "create schema if not exists ${pair%%:*} authorization ${pair#*:};" \
      "do \$\$ declare r record; begin
  if exists (select from pg_namespace where nspname = '${pair%%:*}' and nspowner <> '${pair#*:}'::regrole) then
    execute 'alter schema ${pair%%:*} owner to ${pair#*:}';
  end if;
  for r in select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
           where n.nspname = '${pair%%:*}' and c.relkind in ('r', 'p', 'v', 'm') and c.relowner <> '${pair#*:}'::regrole loop
    execute format('alter table ${pair%%:*}.%I owner to ${pair#*:}', r.relname);
  end loop; end \$\$;"
  done
  printf '%s\n' "grant usage on schema auth to ccxlic_auth;" \
    "grant select, insert, update, delete on all tables in schema auth to ccxlic_auth;" \
    "grant usage, select on all sequences in schema auth to ccxlic_auth;" \
    "alter default privileges for role ccxlic_auth_owner in schema auth grant select, insert, update, delete on tables to ccxlic_auth;" \
    "alter default privileges for role ccxlic_auth_owner in schema auth grant usage, select on sequences to ccxlic_auth;"
}

# pg_passwords: `program=password` lines, fresh ones, for pg_roles_sql.
pg_passwords() {
  local p
  for p in postgres $PG_PROGRAMS; do printf '%s=%s\n' "$p" "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"; done
}
