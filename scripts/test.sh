#!/usr/bin/env bash
# Runs every test of tokenwatch: vet, then the whole suite with the race
# detector. On a fresh Debian machine it first installs, as root, the real
# components the tests meet (Prometheus' promtool from Debian's prometheus
# package). Without root, tests that need a missing component say so and skip,
# except under CI=true, where a missing component is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} for the tests" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "not installed: ${missing[*]} (apt-get install ${missing[*]}); the tests that need them will skip" >&2
  fi
fi

go vet ./...
go test -race -count=1 ./... "$@"
