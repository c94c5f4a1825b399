#!/usr/bin/env bash
# docker-entrypoint-initdb.d script of docker-compose.yml's PostgreSQL: at the cluster's first start, the roles of
# deploy/pg-roles.sh with the passwords the `secrets` job drew.
set -euo pipefail
. /ccxlic/pg-roles.sh
pg_roles_sql "$POSTGRES_DB" /run/secrets/ccxlic/passwords.env \
  | psql -v ON_ERROR_STOP=1 --quiet --no-psqlrc --username postgres --dbname "$POSTGRES_DB" >/dev/null
echo "postgres-roles: one login role per program, and the auth group"
