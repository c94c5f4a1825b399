# The PostgreSQL roles of ccx-licensing, in one place for every way it runs: sourced by deploy/stack.sh (the local
# stack) and by deploy/compose/postgres-roles.sh (docker-compose.yml's PostgreSQL, at its first start).
# One login role per program, none a superuser; each may create schemas in the database and owns what it creates;
# the shared `auth` schema belongs to the group role ccxlic_auth, whose members are PG_AUTH_MEMBERS. Schemas the
# superuser made before the roles existed are handed to their owners.
PG_PROGRAMS="consumption compliance alerting agent authority console cli"
PG_AUTH_MEMBERS="alerting authority console cli"

# pg_roles_sql DATABASE PASSWORDS: the SQL (idempotent) to run as the superuser in DATABASE. PASSWORDS is a file of
# `program=password` lines, one per program and one for `postgres` (the superuser).
pg_roles_sql() {
  local db=$1 secrets=$2 p pw pair
  printf '%s\n' "set client_min_messages = warning;" \
    "do \$\$ begin if not exists (select from pg_roles where rolname = 'ccxlic_auth') then create role ccxlic_auth nologin; end if; end \$\$;"
  for p in $PG_PROGRAMS; do
    pw=$(sed -n "s/^$p=//p" "$secrets")
    [ -n "$pw" ] || { printf 'pg-roles: no password for %s in %s\n' "$p" "$secrets" >&2; return 1; }
    printf '%s\n' "do \$\$ begin if not exists (select from pg_roles where rolname = 'ccxlic_$p') then create role ccxlic_$p login; end if; end \$\$;" \
      "alter role ccxlic_$p with login nosuperuser nocreatedb nocreaterole password '$pw';" \
      "grant connect, create on database \"$db\" to ccxlic_$p;"
  done
  for p in $PG_AUTH_MEMBERS; do printf '%s\n' "grant ccxlic_auth to ccxlic_$p;"; done
  printf '%s\n' "alter role postgres password '$(sed -n 's/^postgres=//p' "$secrets")';" \
    "revoke create on schema public from public;" \
    "create schema if not exists auth authorization ccxlic_auth;"
  for pair in auth:ccxlic_auth consumption:ccxlic_consumption compliance:ccxlic_compliance alerting:ccxlic_alerting \
    agent:ccxlic_agent authority:ccxlic_authority; do
    printf '%s\n' "do \$\$ declare r record; begin
  if exists (select from pg_namespace where nspname = '${pair%%:*}' and nspowner <> '${pair#*:}'::regrole) then
    execute 'alter schema ${pair%%:*} owner to ${pair#*:}';
    for r in select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = '${pair%%:*}' and c.relkind in ('r', 'p', 'v', 'm') loop
      execute format('alter table ${pair%%:*}.%I owner to ${pair#*:}', r.relname);
    end loop;
  end if; end \$\$;"
  done
}

# pg_passwords: `program=password` lines, fresh ones, for pg_roles_sql.
pg_passwords() {
  local p
  for p in postgres $PG_PROGRAMS; do printf '%s=%s\n' "$p" "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"; done
}
