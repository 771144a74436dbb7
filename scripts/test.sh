#!/usr/bin/env bash
# Runs every test of tokenwatch: vet, golangci-lint (LINT=0 skips it),
# govulncheck, then the whole suite with the race detector. On a fresh Debian
# machine it first provides the real components the tests meet: headless
# Chromium and systemd-analyze from Debian's packages (as root), and, built
# from the Go module proxy into ~/.cache/tokenwatch (reused when present),
# ORY Hydra, Prometheus 3.16 (the server and promtool) and Alertmanager 0.35
# (scripts/build-prometheus.sh; a cold build takes 15 to 45 minutes, a warm
# one nothing). Tests that need a missing component say so and skip, except
# under CI=true, where a missing component is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
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

# Prometheus and Alertmanager, the releases users run now (not Debian's, from
# early 2023, whose promtool lacks Kubernetes discovery). The tests find them
# through these variables (internal/e2etest.Tool); set one to try another
# build, say PROMETHEUS_BIN=/usr/bin/prometheus for Debian's.
if [ -z "${PROMETHEUS_BIN:-}" ] || [ -z "${PROMTOOL_BIN:-}" ] || [ -z "${ALERTMANAGER_BIN:-}" ] || [ -z "${AMTOOL_BIN:-}" ]; then
  if tools=$(scripts/build-prometheus.sh prometheus promtool alertmanager amtool); then
    { read -r prometheus && read -r promtool && read -r alertmanager && read -r amtool; } <<<"$tools"
    export PROMETHEUS_BIN=${PROMETHEUS_BIN:-$prometheus} PROMTOOL_BIN=${PROMTOOL_BIN:-$promtool}
    export ALERTMANAGER_BIN=${ALERTMANAGER_BIN:-$alertmanager} AMTOOL_BIN=${AMTOOL_BIN:-$amtool}
  elif [ "${CI:-}" = true ]; then
    echo "could not build Prometheus and Alertmanager" >&2
    exit 1
  else
    echo "could not build Prometheus and Alertmanager; the tests that need them will skip" >&2
  fi
fi
for bin in "${PROMETHEUS_BIN:-}" "${ALERTMANAGER_BIN:-}"; do
  [ -z "$bin" ] || { "$bin" --version 2>&1 | head -n1; } || true
done

go vet ./...

# golangci-lint (.golangci.yml, gosec, errorlint, staticcheck among its
# linters): a finding fails the run. LINT=0 skips it; without its binary
# (not built, not CI) it says so and goes on.
if [ "${LINT:-1}" != 0 ]; then
  if lint=$(scripts/build-tools.sh golangci-lint); then
    "$lint" run ./...
  elif [ "${CI:-}" = true ]; then
    echo "could not build golangci-lint" >&2
    exit 1
  else
    echo "could not build golangci-lint; the lint is skipped" >&2
  fi
fi

# Known vulnerabilities that our code calls: govulncheck, with a local copy of
# the Go vulnerability database (scripts/build-tools.sh). One in a module we
# depend on fails the run; one in the standard library fails it unless the Go
# that releases are built with (deploy/Dockerfile's builder) fixes it.
# Its answer depends on nothing but what the key below hashes (the database is
# pinned), so a tree that passed is not scanned again: its report is replayed.
if tools=$(scripts/build-tools.sh govulncheck vulndb); then
  { read -r govulncheck && read -r vulndb; } <<<"$tools"
  build_go=$(sed -n 's/^FROM golang:\([0-9.]*\)-[^ ]* AS .*/\1/p' deploy/Dockerfile)
  key=$({
    echo "$govulncheck $vulndb $build_go"
    go env GOVERSION GOOS GOARCH GOFLAGS
    find . -name '*.go' -not -path './.git/*' -print0 | sort -z | xargs -0 sha256sum
    sha256sum go.mod go.sum
  } | sha256sum | cut -c1-32)
  passed="${XDG_CACHE_HOME:-$HOME/.cache}/tokenwatch/vulncheck-passed/$key"
  if [ -f "$passed" ]; then
    echo "govulncheck: this tree passed before; its report:"
    cat "$passed"
  else
    mkdir -p "$(dirname "$passed")"
    "$govulncheck" -format json -db "file://$vulndb" ./... |
      go run scripts/vulncheck.go -build-go "$build_go" | tee "$passed.tmp"
    mv "$passed.tmp" "$passed"
  fi
elif [ "${CI:-}" = true ]; then
  echo "could not build govulncheck or its database" >&2
  exit 1
else
  echo "could not build govulncheck or its database; the vulnerability check is skipped" >&2
fi

go test -race -count=1 ./... "$@"

# A snapshot release (.goreleaser.yaml, goreleaser built by
# scripts/build-tools.sh) into dist/, and a look into its archives
# (scripts/checkrelease.go). Under CI=true, or with RELEASE=1: the first run
# on a machine cross-compiles four platforms from scratch (about 10 minutes on
# 2 cores), later ones take about half a minute.
if [ "${CI:-}" = true ] || [ "${RELEASE:-}" = 1 ]; then
  goreleaser=$(scripts/build-tools.sh goreleaser)
  "$goreleaser" check
  log=$(mktemp)
  "$goreleaser" release --snapshot --clean --skip=docker >"$log" 2>&1 || {
    cat "$log"
    echo "the snapshot release failed" >&2
    exit 1
  }
  rm -f "$log"
  # goreleaser reads the commit only in a clone with a remote (CI's is one).
  revision=
  [ -z "$(git remote)" ] || revision=$(git rev-parse HEAD)
  go run scripts/checkrelease.go -dist dist -revision "$revision"
fi

# Each fuzz target for a few seconds beyond its seeds (the seeds already ran
# above as ordinary tests). FUZZTIME=0 skips this.
fuzztime=${FUZZTIME:-5s}
if [ "$fuzztime" != 0 ]; then
  for target in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs grep -ho '^func Fuzz[A-Za-z0-9_]*' | sed 's/^func //' | sort -u); do
    pkg=$(dirname "$(grep -rl --include='*_test.go' "^func $target(" . | head -1)")
    if ! out=$(go test -run='^$' -fuzz="^$target\$" -fuzztime="$fuzztime" "$pkg" 2>&1); then
      echo "$out"
      echo "fuzz $target ($pkg) failed; the failing input is under $pkg/testdata/fuzz/$target" >&2
      exit 1
    fi
    echo "fuzz $target ($pkg): $fuzztime without a failure"
  done
fi
