#!/usr/bin/env bash
# Run the ccx-licensing services in the foreground, each as its own process, against the stack named by
# KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL (default: `make up`). Ctrl-C (or SIGTERM) stops them all gracefully;
# when one exits on its own, the others are stopped too and its exit code is returned.
# usage: deploy/run-services.sh [service ...]   (default: every service)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
services=("$@")
[ ${#services[@]} -gt 0 ] || services=(consumption compliance alerting)
declare -A port_var=([consumption]=CCXLIC_CONSUMPTION_HTTP_PORT [compliance]=CCXLIC_COMPLIANCE_HTTP_PORT [alerting]=CCXLIC_ALERTING_HTTP_PORT)
declare -A port_default=([consumption]=8181 [compliance]=8182 [alerting]=8183)
pids=()
for s in "${services[@]}"; do
  if [ -z "${port_var[$s]:-}" ]; then
    echo "run-services: unknown service '$s' (known: ${!port_var[*]})" >&2
    exit 2
  fi
  var=${port_var[$s]}
  echo "run-services: starting $s (http://127.0.0.1:${!var:-${port_default[$s]}}/metrics)" >&2
  "$PY" -m "ccxlic_$s" &
  pids+=($!)
done
stop() { kill -TERM "${pids[@]}" 2>/dev/null; }
trap 'stop' INT TERM
wait -n "${pids[@]}"
rc=$?
stop
wait "${pids[@]}" 2>/dev/null
echo "run-services: stopped (first exit code $rc)" >&2
exit $rc
