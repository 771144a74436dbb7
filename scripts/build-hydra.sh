#!/usr/bin/env bash
# Builds ORY Hydra v2.3.0, the independent authorization server of the
# integration suite (e2e/hydra) and of bench/blackbox, from the Go module
# proxy, and prints the binary's path on stdout (nothing else goes there).
#
# Hydra cannot be built with `go install ...@v2.3.0` because its go.mod has
# replace directives, so it is built in a scratch module outside this
# repository. The binary is cached at ~/.cache/tokenwatch/hydra-v2.3.0/hydra
# (or under $XDG_CACHE_HOME) and reused when present; nothing of Hydra is
# committed. A cold build takes about a minute and needs gcc (sqlite).
set -euo pipefail

version=v2.3.0
pop_replacement=github.com/ory/pop/v6@v6.2.1-0.20241121111754-e5dfc0f3344b

cache="${XDG_CACHE_HOME:-$HOME/.cache}/tokenwatch"
bin="$cache/hydra-$version/hydra"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null 2>&1 || { echo "build-hydra: go is not installed" >&2; exit 1; }
command -v gcc >/dev/null 2>&1 || { echo "build-hydra: gcc is needed (sqlite); apt-get install gcc" >&2; exit 1; }

work="$cache/hydra-build"
mkdir -p "$work" "$(dirname "$bin")"
cd "$work"
# One build at a time (the test script and the bench may start together);
# whoever waited finds the binary the other one built.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache/hydra-build.lock"
  flock 9
  if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
  fi
fi
# The scratch module must not see the repository's go.work or flags.
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=1

echo "build-hydra: building ORY Hydra $version in $work (about a minute cold)" >&2
if ! {
  { [ -f go.mod ] || go mod init hydrabuild; } &&
    go get -tool "github.com/ory/hydra/v2@$version" &&
    go mod edit -replace "github.com/gobuffalo/pop/v6=$pop_replacement" &&
    go mod tidy &&
    go build -tags sqlite,sqlite_omit_load_extension -o "$bin.tmp" github.com/ory/hydra/v2
} >&2; then
  echo "build-hydra: building Hydra failed" >&2
  rm -f "$bin.tmp"
  exit 1
fi

# Rename last, so an interrupted build never leaves a half-written binary in the cache.
mv "$bin.tmp" "$bin"
"$bin" version >&2 || { echo "build-hydra: the built binary does not run" >&2; rm -f "$bin"; exit 1; }
echo "$bin"
