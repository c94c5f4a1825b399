#!/usr/bin/env bash
# docker-compose.yml's one-shot `secrets` job, in the PostgreSQL image as root, before anything else starts. At the
# first `docker compose up` it draws a password per PostgreSQL role (deploy/pg-roles.sh) and Grafana's admin password,
# and writes each program's DATABASE_URL where only that program's container mounts it (a subpath of the `secrets`
# volume). Later runs keep them. It also hands the Kafka data volume to the broker's user.
set -euo pipefail
. /ccxlic/pg-roles.sh
S=/secrets
if [ ! -f "$S/postgres/passwords.env" ]; then
  mkdir -p "$S/postgres"
  pg_passwords >"$S/postgres/passwords.env.tmp"
  mv "$S/postgres/passwords.env.tmp" "$S/postgres/passwords.env"
  echo "secrets: drew the PostgreSQL passwords"
fi
sed -n 's/^postgres=//p' "$S/postgres/passwords.env" >"$S/postgres/postgres_password"
chown -R 999:999 "$S/postgres"  # the postgres user of the PostgreSQL image
chmod 0700 "$S/postgres"; chmod 0400 "$S/postgres"/*
for p in $PG_PROGRAMS; do
  mkdir -p "$S/$p"
  pw=$(sed -n "s/^$p=//p" "$S/postgres/passwords.env")
  printf 'postgresql://ccxlic_%s:%s@postgres:5432/ccxlic\n' "$p" "$pw" >"$S/$p/DATABASE_URL"
  chown -R 10001:0 "$S/$p"  # the ccxlic user of our image (Dockerfile)
  chmod 0500 "$S/$p"; chmod 0400 "$S/$p/DATABASE_URL"
done
mkdir -p "$S/grafana"
[ -f "$S/grafana/admin_password" ] || od -An -N18 -tx1 /dev/urandom | tr -d ' \n' >"$S/grafana/admin_password"
chown -R 472:0 "$S/grafana"; chmod 0500 "$S/grafana"; chmod 0400 "$S/grafana/admin_password"  # Grafana's user
chown 1000:1000 /kafka-data  # appuser of the apache/kafka image
echo "secrets: ready"
