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
#   CCXLIC_STACK_DIR [<repo>/.stack]   data, logs and pid files
#   CCXLIC_CACHE_DIR [~/.cache/ccxlic] downloaded Kafka jars, shared by every checkout
#   CCXLIC_PG_FALLBACK_DIR [/var/tmp/ccxlic-stack/pg] the PostgreSQL cluster when run as root from a directory the
#                      postgres user cannot reach (a checkout in root's home): every such checkout shares it
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
PG_PORT=${PG_PORT:-5432}
PG_DATABASE=${PG_DATABASE:-ccxlic}
STACK_DIR=${CCXLIC_STACK_DIR:-$repo/.stack}
CACHE_DIR=${CCXLIC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ccxlic}
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")
KAFKA_LIBS=$CACHE_DIR/kafka-$KAFKA_VERSION/libs
KAFKA_DIR=$STACK_DIR/kafka
PG_DIR=$STACK_DIR/pg
PG_FALLBACK_DIR=${CCXLIC_PG_FALLBACK_DIR:-/var/tmp/ccxlic-stack/pg}

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
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@DATA_DIR@|$KAFKA_DIR/data|g" "$here/kafka/server.properties.in" >"$KAFKA_DIR/server.properties"
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
      --ignore-formatted >"$KAFKA_DIR/logs/format.log" 2>&1 || { cat "$KAFKA_DIR/logs/format.log" >&2; die "formatting the Kafka storage failed"; }
  fi
  say "starting kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (logs: $KAFKA_DIR/logs)"
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

kafka_down() {
  if pid_alive "$KAFKA_DIR/kafka.pid"; then
    local pid; pid=$(cat "$KAFKA_DIR/kafka.pid")
    say "stopping kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { say "kafka did not stop in 30 s; killing it"; kill -KILL "$pid" 2>/dev/null || true; }
  else
    say "kafka is not running"
  fi
  rm -f "$KAFKA_DIR/kafka.pid"
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
      as_pg "$bin/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    fi
    as_pg mkdir -p "$PG_DIR/run"
    say "starting postgresql ($("$bin/postgres" --version | awk '{print $3}')) on 127.0.0.1:$PG_PORT"
    as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $PG_DIR/run -c max_connections=200 -c fsync=off -c synchronous_commit=off" \
      start >/dev/null || { tail -n 20 "$PG_DIR/server.log" >&2; die "postgresql did not start"; }
  fi
  if ! "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "select 1 from pg_database where datname='$PG_DATABASE'" | grep -q 1; then
    "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "create database \"$PG_DATABASE\"" >/dev/null
    say "created database $PG_DATABASE"
  fi
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
  if pid_alive "$KAFKA_DIR/kafka.pid"; then say "kafka: running (pid $(cat "$KAFKA_DIR/kafka.pid")) at 127.0.0.1:$KAFKA_PORT"; else say "kafka: stopped"; fi
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
    say "up: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT DATABASE_URL=postgresql://postgres@127.0.0.1:$PG_PORT/$PG_DATABASE"
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
