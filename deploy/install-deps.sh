#!/usr/bin/env bash
# Install what a fresh machine lacks for `make test` / `make run`: uv (from PyPI), Debian's postgresql, and a check
# for Java and Maven (needed to fetch and run Kafka). Idempotent and quiet when everything is there.
# `install-deps.sh browser`: only the browser of the console's tests (Debian's chromium; Playwright's own download
# cannot be reached from everywhere, so the tests drive the system's).
set -euo pipefail

say() { printf 'deps: %s\n' "$*"; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null 2>&1 || die "python3 (3.11+) is required"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python 3.11+ is required; python3 is $(python3 -V)"

if ! command -v uv >/dev/null 2>&1; then
  say "installing uv from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check uv 2>/dev/null \
    || python3 -m pip install --quiet --user --disable-pip-version-check uv \
    || die "could not install uv: pip install uv failed"
fi

apt_install() {
  if [ "$(id -u)" != 0 ]; then die "$1 is missing and installing it needs root: sudo apt-get install -y $2"; fi
  say "installing $2 (apt-get)"
  if [ -z "${_apt_updated:-}" ]; then apt-get update -qq >/dev/null; _apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null || die "apt-get install $2 failed"
}

# Where downloaded and built tools are kept: the same place as deploy/stack.sh's Kafka jars.
CACHE_DIR=${CCXLIC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ccxlic}

go_tool() {
  # go_tool NAME MODULE VERSION [TAGS]: build a Go command once from its module, cached in CACHE_DIR/NAME-VERSION.
  local name=$1 module=$2 version=$3 tags=${4:-} dir
  dir=$CACHE_DIR/$name-$version
  [ -x "$dir/$name" ] && return 0
  command -v go >/dev/null 2>&1 || die "Go is needed to build $name ($module@$version)"
  say "building $name $version from its Go module (a few minutes with an empty Go cache, once; cached in $dir)"
  rm -rf "$dir.tmp"
  GOBIN="$dir.tmp" GOFLAGS=-buildvcs=false go install ${tags:+-tags "$tags"} "$module@$version" || die "building $name failed"
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
}

if [ "${1:-}" = promtool ]; then
  # promtool (Prometheus 3.x) for the rules and dashboards checks, at the version in deploy/promtool.version, without
  # the service-discovery plugins (promtool's checks do not use them).
  go_tool promtool github.com/prometheus/prometheus/cmd/promtool "$(tr -d '[:space:]' <"$(dirname "$0")/promtool.version")" remove_all_sd
  exit 0
fi

if [ "${1:-}" = kustomize ]; then
  # kustomize, to build deploy/k8s for its validation, at the version in deploy/kustomize.version.
  go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$(tr -d '[:space:]' <"$(dirname "$0")/kustomize.version")"
  exit 0
fi

if [ "${1:-}" = asyncapi ]; then
  # The AsyncAPI 3.0 JSON Schema, to validate docs/schemas/asyncapi.json: from the npm package @asyncapi/specs, fetched
  # once from the npm registry, checked against its published integrity, and cached.
  version=6.11.1
  integrity=A3WBLqAKGoJ2+6FWFtpjBlCQ1oFCcs4GxF7zsIGvNqp/klGUHjlA3aAcZ9XMMpLGE8zPeYDz2x9FmO6DSuKraQ==
  dir=$CACHE_DIR/asyncapi-specs-$version
  if [ ! -f "$dir/3.0.0-without-\$id.json" ]; then
    say "fetching the AsyncAPI 3.0 schema (@asyncapi/specs $version from registry.npmjs.org)"
    tmp=$(mktemp -d)
    curl -fsSL --retry 3 -o "$tmp/specs.tgz" "https://registry.npmjs.org/@asyncapi/specs/-/specs-$version.tgz" \
      || { rm -rf "$tmp"; die "could not fetch @asyncapi/specs $version from registry.npmjs.org"; }
    [ "$(openssl dgst -sha512 -binary "$tmp/specs.tgz" | base64 -w0)" = "$integrity" ] \
      || { rm -rf "$tmp"; die "@asyncapi/specs $version does not match its published integrity"; }
    tar -xzf "$tmp/specs.tgz" -C "$tmp" 'package/schemas/3.0.0-without-$id.json' package/LICENSE
    mkdir -p "$dir"; mv "$tmp/package/schemas/3.0.0-without-\$id.json" "$tmp/package/LICENSE" "$dir/"; rm -rf "$tmp"
  fi
  exit 0
fi

if [ "${1:-}" = browser ]; then
  command -v chromium >/dev/null 2>&1 || [ -n "${CCXLIC_CHROMIUM:-}" ] || apt_install "Chromium (the console's browser tests)" chromium
  exit 0
fi

ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install "the PostgreSQL server" postgresql
command -v psql >/dev/null 2>&1 || apt_install "psql" postgresql-client
command -v java >/dev/null 2>&1 || apt_install "Java (for Kafka)" openjdk-17-jre-headless
command -v mvn >/dev/null 2>&1 || apt_install "Maven (fetches the Kafka jars)" maven
command -v openssl >/dev/null 2>&1 || apt_install "openssl (the stack's passwords and certificates)" openssl
command -v kcat >/dev/null 2>&1 || apt_install "kcat (the tests publish as librdkafka clients do)" kcat
exit 0
