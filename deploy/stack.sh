#!/usr/bin/env bash
# The local stack: Apache Kafka 4.x (KRaft, one combined broker+controller, from Maven Central jars) and a private
# PostgreSQL cluster from Debian's package, both on loopback. No Docker engine needed.
#
#   deploy/stack.sh up [kafka|postgresql]     start both, or one (idempotent: what already runs is left alone)
#   deploy/stack.sh down [kafka|postgresql]   stop both, or one
#   deploy/stack.sh status                    say what runs
#
# Environment (defaults in brackets):
#   KAFKA_PORT [9092]  KAFKA_CONTROLLER_PORT [9093]  PG_PORT [5432]  PG_DATABASE [ccxlic]
#   KAFKA_PROXIED_PORT [9094] KAFKA_PROXY_PORT [9095]  a second listener (same security) on the first port that
#                      advertises the second, where `make chaos` puts a TCP proxy it can cut (a client that bootstraps
#                      at the proxy reaches the broker only through it)
#   KAFKA_SECURITY [plaintext]  plaintext, or scram-tls: the broker's only client listener is SASL_SSL with
#                      SCRAM-SHA-512, its certificate signed by a CA made here, and it authorizes with ACLs
#                      (StandardAuthorizer; nothing is allowed that is not granted). One SCRAM user per program
#                      (ccxlic-consumption, ... ccxlic-cli, and ccxlic-publisher for the contact center's publishers)
#                      and the super user `admin`: the programs' settings go to <stack>/kafka-scram-tls/client.env,
#                      the admin's to admin.env (`make up` then grants each program its own topics: ccxlic kafka
#                      setup). Each mode keeps its own data.
#   CCXLIC_STACK_DIR [<repo>/.stack]   data, logs and pid files
#   CCXLIC_CACHE_DIR [~/.cache/ccxlic] downloaded Kafka jars, shared by every checkout
#   CCXLIC_PG_FALLBACK_DIR [/var/tmp/ccxlic-stack/pg] the PostgreSQL cluster when run as root from a directory the
#                      postgres user cannot reach (a checkout in root's home): every such checkout shares it
#
# PostgreSQL takes passwords (scram-sha-256) over TCP, and only the cluster's owner on its private socket (peer).
# Each program has its own login role, owning its schema, no superuser: ccxlic_consumption, ccxlic_compliance,
# ccxlic_alerting, ccxlic_agent, ccxlic_authority, ccxlic_console and ccxlic_cli; the shared `auth` schema belongs
# to the group role ccxlic_auth (members: alerting, authority, console, cli). Their URLs, and the superuser's (for
# tests and benchmarks), go to <stack>/pg.env.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
KAFKA_PROXIED_PORT=${KAFKA_PROXIED_PORT:-9094}
KAFKA_PROXY_PORT=${KAFKA_PROXY_PORT:-9095}
PG_PORT=${PG_PORT:-5432}
PG_DATABASE=${PG_DATABASE:-ccxlic}
STACK_DIR=${CCXLIC_STACK_DIR:-$repo/.stack}
CACHE_DIR=${CCXLIC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ccxlic}
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")
KAFKA_LIBS=$CACHE_DIR/kafka-$KAFKA_VERSION/libs
KAFKA_SECURITY=${KAFKA_SECURITY:-plaintext}
case "$KAFKA_SECURITY" in
  plaintext) KAFKA_DIR=$STACK_DIR/kafka ;;
  scram-tls) KAFKA_DIR=$STACK_DIR/kafka-scram-tls ;;
  *) printf 'stack: error: KAFKA_SECURITY=%s: expected plaintext or scram-tls\n' "$KAFKA_SECURITY" >&2; exit 2 ;;
esac
PG_DIR=$STACK_DIR/pg
# The programs with a Kafka user of their own under KAFKA_SECURITY=scram-tls (libs/contract's access.py: PROGRAMS)
KAFKA_PROGRAMS=(consumption compliance alerting agent console cli publisher)
PG_FALLBACK_DIR=${CCXLIC_PG_FALLBACK_DIR:-/var/tmp/ccxlic-stack/pg}
# shellcheck source=deploy/pg-roles.sh
. "$(dirname "${BASH_SOURCE[0]}")/pg-roles.sh"  # PG_PROGRAMS, PG_AUTH_MEMBERS, pg_roles_sql, pg_passwords

say() { printf 'stack: %s\n' "$*"; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

port_owner() {
  # Best effort: which process listens on the port, for the error message.
  if command -v ss >/dev/null 2>&1; then
    ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\(.*\))).*/\1/p' | head -n1
  fi
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

need_port_free() {
  local port=$1 what=$2 var=$3
  if port_in_use "$port"; then
    local owner; owner=$(port_owner "$port")
    die "port $port (for $what) is already taken${owner:+ by $owner}. Stop that process, or pick another port: $var=<port> make up"
  fi
}

# ---------------------------------------------------------------- Kafka
kafka_fetch() {
  [ -f "$KAFKA_LIBS/.complete" ] && return 0
  command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is not installed; it fetches the Kafka jars. Install it: apt-get install -y maven"
  say "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS ..."
  rm -rf "$KAFKA_LIBS"; mkdir -p "$KAFKA_LIBS"
  mvn -B -q -f "$here/kafka/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" \
    || die "mvn could not fetch the Kafka jars (see above). Is Maven Central reachable?"
  touch "$KAFKA_LIBS/.complete"
  say "fetched $(ls "$KAFKA_LIBS" | wc -l) jars"
}

kafka_up() {
  if pid_alive "$KAFKA_DIR/kafka.pid"; then say "kafka already running (pid $(cat "$KAFKA_DIR/kafka.pid")) on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  command -v java >/dev/null 2>&1 || die "Java is not installed; Kafka needs Java 17+. Install it: apt-get install -y openjdk-17-jre-headless"
  need_port_free "$KAFKA_PORT" "the Kafka broker" KAFKA_PORT
  need_port_free "$KAFKA_CONTROLLER_PORT" "the Kafka controller" KAFKA_CONTROLLER_PORT
  kafka_fetch
  mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
  local listener=PLAINTEXT scram=()
  need_port_free "$KAFKA_PROXIED_PORT" "the Kafka listener behind make chaos's proxy" KAFKA_PROXIED_PORT
  if [ "$KAFKA_SECURITY" = scram-tls ]; then
    listener=SASL_SSL
    kafka_tls
    scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$(cat "$KAFKA_DIR/tls/admin.password")]")
    local program
    for program in "${KAFKA_PROGRAMS[@]}"; do
      scram+=(--add-scram "SCRAM-SHA-512=[name=ccxlic-$program,password=$(cat "$KAFKA_DIR/tls/ccxlic-$program.password")]")
    done
  fi
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@LISTENER@|$listener|g" -e "s|@PROXIED_PORT@|$KAFKA_PROXIED_PORT|g" -e "s|@PROXY_PORT@|$KAFKA_PROXY_PORT|g" \
      -e "s|@DATA_DIR@|$KAFKA_DIR/data|g" "$here/kafka/server.properties.in" \
      >"$KAFKA_DIR/server.properties"
  if [ "$KAFKA_SECURITY" = scram-tls ]; then
    cat >>"$KAFKA_DIR/server.properties" <<EOF
# KAFKA_SECURITY=scram-tls: clients and the broker itself authenticate with SCRAM-SHA-512 over TLS.
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(cat "$KAFKA_DIR/tls/admin.password")";
listener.name.proxied.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_DIR/tls/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_DIR/tls/ca.pem
ssl.client.auth=none
# The controller listener takes TLS with a client certificate only: the broker's own (its principal is its subject,
# a super user); no one else on this machine reaches the controller, which could grant ACLs.
listener.security.protocol.map=CONTROLLER:SSL,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,PROXIED:SASL_SSL
listener.name.controller.ssl.client.auth=required
# Authorization: nothing is allowed that no ACL grants (ccxlic kafka setup grants each program its own topics).
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:CN=localhost
EOF
  fi
  local java_opts=(-cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$here/kafka/log4j2.properties"
                   -Dkafka.logs.dir="$KAFKA_DIR/logs")
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    local cluster_id
    # as Kafka's own Uuid.randomUuid: never one that starts with "-", which the tool would read as an option (1 in 64)
    cluster_id=$(python3 -c 'import base64,uuid
while True:
    c = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
    if not c.startswith("-"):
        break
print(c)')
    java "${java_opts[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/server.properties" \
      "${scram[@]}" --ignore-formatted >"$KAFKA_DIR/logs/format.log" 2>&1 || { cat "$KAFKA_DIR/logs/format.log" >&2; die "formatting the Kafka storage failed"; }
  fi
  say "starting kafka $KAFKA_VERSION ($KAFKA_SECURITY) on 127.0.0.1:$KAFKA_PORT (logs: $KAFKA_DIR/logs)"
  : >"$KAFKA_DIR/logs/server.log"
  nohup setsid java -Xms256m -Xmx768m -XX:+UseG1GC "${java_opts[@]}" kafka.Kafka "$KAFKA_DIR/server.properties" \
    >"$KAFKA_DIR/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$KAFKA_DIR/kafka.pid"
  # Ready when it says so. A broker with many partitions from earlier runs (tests and benchmarks make fresh topics)
  # takes longer to load them: keep waiting while its log grows, give up after 60 s without a new line.
  local i size last_size=-1 quiet=0 partitions
  partitions=$(find "$KAFKA_DIR/data" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)
  for i in $(seq 1 3600); do
    if ! pid_alive "$KAFKA_DIR/kafka.pid"; then
      tail -n 30 "$KAFKA_DIR/logs/stdout.log" "$KAFKA_DIR/logs/server.log" >&2 || true
      die "kafka exited during startup (logs above)"
    fi
    if grep -q "Kafka Server started" "$KAFKA_DIR/logs/server.log" 2>/dev/null && port_in_use "$KAFKA_PORT"; then
      kafka_client_env >"$KAFKA_DIR/client.env"; chmod 600 "$KAFKA_DIR/client.env"
      if [ "$KAFKA_SECURITY" = scram-tls ]; then kafka_admin_env >"$KAFKA_DIR/admin.env"; chmod 600 "$KAFKA_DIR/admin.env"; fi
      say "kafka ready after ${i}x0.5 s"; return 0
    fi
    size=$(wc -c <"$KAFKA_DIR/logs/server.log" 2>/dev/null || echo 0)
    if [ "$size" = "$last_size" ]; then quiet=$((quiet + 1)); else quiet=0; last_size=$size; fi
    [ "$quiet" -ge 120 ] && die "kafka did not become ready (no progress for 60 s); see $KAFKA_DIR/logs/server.log"
    if [ $((i % 60)) = 0 ]; then
      say "kafka is still loading its logs ($partitions partition directories in $KAFKA_DIR/data); waiting"
    fi
    sleep 0.5
  done
  die "kafka did not become ready within 30 min; see $KAFKA_DIR/logs/server.log"
}

kafka_tls() {
  # A CA and the broker's certificate (127.0.0.1 and localhost; a server's and, towards its controller, a client's),
  # made once per stack directory, and the passwords of the SCRAM users: `admin` (the broker itself, a super user)
  # and one per program.
  local d=$KAFKA_DIR/tls program
  [ -f "$d/broker.pem" ] && [ -f "$d/ccxlic-publisher.password" ] && return 0
  if [ -f "$KAFKA_DIR/data/meta.properties" ]; then
    say "the scram-tls broker's users changed (one per program now): its data in $KAFKA_DIR/data is made anew"
    rm -rf "$KAFKA_DIR/data"; mkdir -p "$KAFKA_DIR/data"
  fi
  command -v openssl >/dev/null 2>&1 || die "openssl is needed for KAFKA_SECURITY=scram-tls: apt-get install -y openssl"
  rm -rf "$d"; mkdir -p "$d"; chmod 700 "$d"
  (
    cd "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 -subj "/CN=ccx-licensing local CA" \
      -keyout ca.key -out ca.pem
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" -keyout broker.key -out broker.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -extfile broker.ext -out broker.crt
    openssl pkcs8 -topk8 -nocrypt -in broker.key -out broker.p8
    cat broker.p8 broker.crt >broker.pem
    rm -f broker.csr broker.ext broker.p8 ca.srl
    openssl rand -hex 24 >admin.password
    for program in "${KAFKA_PROGRAMS[@]}"; do openssl rand -hex 24 >"ccxlic-$program.password"; done
  ) >"$KAFKA_DIR/logs/tls.log" 2>&1 || { cat "$KAFKA_DIR/logs/tls.log" >&2; die "making the broker's certificate failed"; }
  chmod 600 "$d"/*
}

kafka_client_env() {
  # What a client needs to reach this broker, as the environment variables the services, the CLI and the tests read:
  # under scram-tls, each program's own user (CCXLIC_<PROGRAM>_KAFKA_SASL_USERNAME/PASSWORD).
  printf 'KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:%s\n' "$KAFKA_PORT"
  if [ "$KAFKA_SECURITY" = scram-tls ]; then
    printf 'KAFKA_SECURITY_PROTOCOL=SASL_SSL\nKAFKA_SASL_MECHANISM=SCRAM-SHA-512\nKAFKA_SSL_CAFILE=%s\n' "$KAFKA_DIR/tls/ca.pem"
    local program upper
    for program in "${KAFKA_PROGRAMS[@]}"; do
      upper=$(printf '%s' "$program" | tr '[:lower:]' '[:upper:]')
      printf 'CCXLIC_%s_KAFKA_SASL_USERNAME=ccxlic-%s\nCCXLIC_%s_KAFKA_SASL_PASSWORD=%s\n' \
        "$upper" "$program" "$upper" "$(cat "$KAFKA_DIR/tls/ccxlic-$program.password")"
    done
  fi
}

kafka_admin_env() {
  # The super user's settings: for `ccxlic kafka setup`, the tests and the benchmarks (they make topics of their own).
  printf 'KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:%s\nKAFKA_SECURITY_PROTOCOL=SASL_SSL\nKAFKA_SASL_MECHANISM=SCRAM-SHA-512\nKAFKA_SASL_USERNAME=admin\nKAFKA_SASL_PASSWORD=%s\nKAFKA_SSL_CAFILE=%s\n' \
    "$KAFKA_PORT" "$(cat "$KAFKA_DIR/tls/admin.password")" "$KAFKA_DIR/tls/ca.pem"
}

kafka_down() {
  # Either mode's broker: `make down` stops what runs, whatever KAFKA_SECURITY says now.
  local dir pid stopped=0
  for dir in "$STACK_DIR/kafka" "$STACK_DIR/kafka-scram-tls"; do
    pid_alive "$dir/kafka.pid" || { rm -f "$dir/kafka.pid"; continue; }
    pid=$(cat "$dir/kafka.pid"); stopped=1
    say "stopping kafka (pid $pid, $dir)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { say "kafka did not stop in 30 s; killing it"; kill -KILL "$pid" 2>/dev/null || true; }
    rm -f "$dir/kafka.pid"
  done
  [ "$stopped" = 1 ] || say "kafka is not running"
}

# ---------------------------------------------------------------- PostgreSQL
pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

as_pg() {
  # initdb refuses to run as root, so the cluster belongs to the postgres user.
  # From / : the postgres user may not be able to enter the working directory (pg_ctl says so on every call).
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_choose_dir() {
  # Where this checkout's cluster lives, decided the same way by up, down and status. As root, the cluster belongs
  # to the postgres user, who must be able to reach its directory; a checkout under a private home (mode 700) does
  # not allow that, so the cluster goes to the fallback directory instead.
  [ "$(id -u)" = 0 ] || return 0
  id postgres >/dev/null 2>&1 || die "there is no 'postgres' user; install Debian's package: apt-get install -y postgresql"
  mkdir -p "$PG_DIR"
  if ! runuser -u postgres -- test -x "$PG_DIR" 2>/dev/null; then
    PG_DIR=$PG_FALLBACK_DIR
    PG_FALLBACK=1
  fi
}

pg_prepare_dir() {
  [ "${PG_FALLBACK:-0}" = 1 ] && say "postgres cannot reach $STACK_DIR; keeping the cluster in $PG_DIR instead"
  mkdir -p "$PG_DIR"; chmod 700 "$PG_DIR"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$PG_DIR"
    runuser -u postgres -- test -x "$PG_DIR" || die "the postgres user cannot reach $PG_DIR; set CCXLIC_PG_FALLBACK_DIR to a directory it can"
  fi
}

pg_up() {
  local bin; bin=$(pg_bindir) || die "PostgreSQL server binaries not found. Install Debian's package: apt-get update && apt-get install -y postgresql (or run: make deps)"
  pg_choose_dir
  if [ -f "$PG_DIR/data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
    say "postgresql already running on 127.0.0.1:$PG_PORT"
  else
    need_port_free "$PG_PORT" "PostgreSQL" PG_PORT
    pg_prepare_dir
    if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
      say "initdb $PG_DIR/data"
      # the superuser's first password: replaced by the one pg_roles keeps (initdb wants one for scram-sha-256)
      as_pg sh -c "umask 077; openssl rand -hex 24 >'$PG_DIR/initdb.pw'"
      as_pg "$bin/initdb" -D "$PG_DIR/data" -U postgres -A scram-sha-256 --no-instructions -E UTF8 \
        --pwfile="$PG_DIR/initdb.pw" >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
      as_pg rm -f "$PG_DIR/initdb.pw"
    fi
    as_pg mkdir -p "$PG_DIR/run"
    pg_hba
    say "starting postgresql ($("$bin/postgres" --version | awk '{print $3}')) on 127.0.0.1:$PG_PORT"
    as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $PG_DIR/run -c max_connections=200 -c fsync=off -c synchronous_commit=off" \
      start >/dev/null || { tail -n 20 "$PG_DIR/server.log" >&2; die "postgresql did not start"; }
  fi
  pg_hba  # a cluster that was running keeps no older rule
  if ! pg_sql -tAc "select 1 from pg_database where datname='$PG_DATABASE'" | grep -q 1; then
    pg_sql -qc "create database \"$PG_DATABASE\"" >/dev/null
    say "created database $PG_DATABASE"
  fi
  pg_roles
}

pg_sql() {
  # psql as the superuser over the cluster's private socket (peer authentication: no password, no TCP).
  as_pg "$bin/psql" -h "$PG_DIR/run" -p "$PG_PORT" -U postgres -d "${PGDB:-postgres}" -v ON_ERROR_STOP=1 "$@"
}

pg_hba() {
  # Passwords (scram-sha-256) over TCP; on the socket, only the OS user that runs the cluster (or starts the stack)
  # as the superuser. Rewritten at every start, so a cluster made before (with trust) is brought in line.
  local me; me=$(id -un)
  as_pg sh -c "cat >'$PG_DIR/data/pg_hba.conf'" <<EOF
# written by deploy/stack.sh
local all postgres peer map=stack
host  all all 127.0.0.1/32 scram-sha-256
EOF
  as_pg sh -c "printf 'stack postgres postgres\nstack %s postgres\n' '$me' >'$PG_DIR/data/pg_ident.conf'"
  if as_pg "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then as_pg "$bin/pg_ctl" -D "$PG_DIR/data" reload >/dev/null; fi
}

pg_roles() {
  # One login role per program (passwords drawn once per cluster, kept in it), the auth group, their grants, and the
  # URLs in <stack>/pg.env. Schemas made before the roles existed (by the superuser) are handed to their owners.
  local secrets=$PG_DIR/passwords.env p pw
  if ! as_pg test -f "$secrets"; then
    pg_passwords | as_pg sh -c "umask 077; cat >'$secrets'"
  fi
  local tmp; tmp=$(mktemp); as_pg cat "$secrets" >"$tmp"  # read once: the SQL and the URLs come from this copy
  pg_roles_sql "$PG_DATABASE" "$tmp" | PGDB=$PG_DATABASE pg_sql -q >/dev/null || { rm -f "$tmp"; die "could not set up the roles"; }
  {
    echo "# written by deploy/stack.sh: each program's own login role (make run reads this file)"
    for p in $PG_PROGRAMS; do
      pw=$(sed -n "s/^$p=//p" "$tmp")
      printf 'CCXLIC_%s_DATABASE_URL=postgresql://ccxlic_%s:%s@127.0.0.1:%s/%s\n' "${p^^}" "$p" "$pw" "$PG_PORT" "$PG_DATABASE"
    done
    echo "# the superuser: for the tests and the benchmarks (they make and drop schemas), never for a service"
    printf 'CCXLIC_PG_SUPERUSER_URL=postgresql://postgres:%s@127.0.0.1:%s/%s\n' "$(sed -n 's/^postgres=//p' "$tmp")" "$PG_PORT" "$PG_DATABASE"
  } >"$STACK_DIR/pg.env.tmp"
  rm -f "$tmp"
  chmod 600 "$STACK_DIR/pg.env.tmp"; mv "$STACK_DIR/pg.env.tmp" "$STACK_DIR/pg.env"
}

pg_down() {
  local bin; bin=$(pg_bindir) || { say "postgresql is not installed"; return 0; }
  pg_choose_dir
  if [ -f "$PG_DIR/data/postmaster.pid" ]; then
    say "stopping postgresql ($PG_DIR)"
    as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null || true
  else
    say "postgresql is not running"
  fi
}

status() {
  local dir running=0
  for dir in "$STACK_DIR/kafka" "$STACK_DIR/kafka-scram-tls"; do
    if pid_alive "$dir/kafka.pid"; then
      running=1; say "kafka: running (pid $(cat "$dir/kafka.pid")) at 127.0.0.1:$KAFKA_PORT, $(basename "$dir" | sed 's/^kafka-\?//; s/^$/plaintext/')"
    fi
  done
  [ "$running" = 1 ] || say "kafka: stopped"
  if port_in_use "$PG_PORT"; then say "postgresql: listening at 127.0.0.1:$PG_PORT"; else say "postgresql: stopped"; fi
}

case "${1:-}" in
  up)
    case "${2:-}" in
      kafka) kafka_up ;;
      postgresql) pg_up ;;
      "") kafka_up; pg_up ;;
      *) echo "usage: $0 up [kafka|postgresql]" >&2; exit 2 ;;
    esac
    if [ "$KAFKA_SECURITY" = scram-tls ]; then
      say "up: Kafka over SCRAM+TLS with ACLs; each program's user is in $KAFKA_DIR/client.env (make run reads it), the admin's in admin.env (make test and make bench read it)"
    fi
    say "up: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT; PostgreSQL at 127.0.0.1:$PG_PORT/$PG_DATABASE, one role per program: their URLs are in $STACK_DIR/pg.env"
    ;;
  down)
    case "${2:-}" in
      kafka) kafka_down ;;
      postgresql) pg_down ;;
      "") kafka_down; pg_down ;;
      *) echo "usage: $0 down [kafka|postgresql]" >&2; exit 2 ;;
    esac
    ;;
  status) status ;;
  fetch) kafka_fetch ;;
  *) echo "usage: $0 up|down [kafka|postgresql] | status | fetch" >&2; exit 2 ;;
esac
