#!/usr/bin/env bash
# Runs every test of tokenwatch: vet, then the whole suite with the race
# detector. On a fresh Debian machine it first installs, as root, the real
# components the tests meet: Prometheus (promtool and the server) and
# Alertmanager from Debian's packages, headless Chromium, and ORY Hydra built
# from the Go module proxy into ~/.cache/tokenwatch (reused when present).
# Without root, tests that need a missing component say so and skip, except
# under CI=true, where a missing component is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} for the tests" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "not installed: ${missing[*]} (apt-get install ${missing[*]}); the tests that need them will skip" >&2
  fi
fi

# ORY Hydra, the independent authorization server of the integration suite.
if [ -z "${HYDRA_BIN:-}" ] && [ -x scripts/build-hydra.sh ]; then
  if HYDRA_BIN=$(scripts/build-hydra.sh); then
    export HYDRA_BIN
  else
    echo "could not build ORY Hydra; the Hydra tests will skip (or fail under CI=true)" >&2
  fi
fi

go vet ./...
go test -race -count=1 ./... "$@"
