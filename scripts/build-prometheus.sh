#!/usr/bin/env bash
# Builds the Prometheus and Alertmanager the tests meet, the versions users
# run now, from the Go module proxy, and prints the path of each binary
# asked for on stdout, one a line, in the order asked (nothing else goes
# there):
#
#   prometheus, promtool   github.com/prometheus/prometheus@v0.316.0 (Prometheus 3.16.0)
#                          -> ~/.cache/tokenwatch/prometheus-v0.316.0/{prometheus,promtool}
#   alertmanager, amtool   github.com/prometheus/alertmanager@v0.35.0
#                          -> ~/.cache/tokenwatch/alertmanager-v0.35.0/{alertmanager,amtool}
#
#   scripts/build-prometheus.sh [prometheus|promtool|alertmanager|amtool]...   (none: all four)
#
# Each pair is built once (under $XDG_CACHE_HOME instead of ~/.cache if set)
# and reused while present; nothing of them is committed. Cold, on 2 cores:
# Prometheus 10 to 40 minutes, Alertmanager 4 to 7.
#
# Neither module ships its web UI's compiled assets (upstream builds them
# with npm before a release): Prometheus is built without the builtinassets
# tag and answers its UI pages with an error, Alertmanager with stub pages.
# Their APIs, which the tests use, are whole. The version each prints
# (--version) is the release's own, from the module's VERSION file.
set -euo pipefail

prometheus_module=v0.316.0
alertmanager_module=v0.35.0

cache="${XDG_CACHE_HOME:-$HOME/.cache}/tokenwatch"
command -v go >/dev/null 2>&1 || { echo "build-prometheus: go is not installed" >&2; exit 1; }
mkdir -p "$cache"

# Built outside this repository: no go.work of ours, no flags of ours. Static,
# as upstream releases them.
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0

tmps=()
cleanup() { ((${#tmps[@]} == 0)) || rm -rf "${tmps[@]}"; }
trap cleanup EXIT
# scratch NAME: a new temporary directory in $dir, removed on exit. It is in
# the cache, on the same file system as what it builds: the last step is a rename.
scratch() {
  dir=$(mktemp -d "$cache/.build-$1.XXXXXX")
  tmps+=("$dir")
}

# lock NAME: one build of NAME at a time (the test script and a developer may
# start together); whoever waited then finds what the other one built.
lock() {
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$cache/$1.lock"
  flock 9
}

# ldflags VERSION MODULE_VERSION: the version information Prometheus projects
# set at build time (github.com/prometheus/common/version). A module zip has
# no git history: the revision names the module version it was built from.
ldflags() {
  local p=github.com/prometheus/common/version
  echo "-s -w -X $p.Version=$1 -X $p.Revision=module-proxy-$2 -X $p.Branch=HEAD" \
    "-X $p.BuildUser=tokenwatch-scripts -X $p.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)"
}

# moduledir MODULE@VERSION: download a module and print its directory.
moduledir() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# install_built FROM TO BIN...: moves the built binaries FROM/BIN into the
# directory TO, after checking that each runs; the renames are last, so an
# interrupted build never leaves half a binary in the cache.
install_built() {
  local from=$1 to=$2 b
  shift 2
  mkdir -p "$to"
  for b; do
    "$from/$b" --version >&2 || { echo "build-prometheus: the built $b does not run" >&2; return 1; }
  done
  for b; do mv -f "$from/$b" "$to/$b"; done
}

build_prometheus() {
  local out="$cache/prometheus-$prometheus_module"
  [ -x "$out/prometheus" ] && [ -x "$out/promtool" ] && return 0
  lock prometheus-build
  [ -x "$out/prometheus" ] && [ -x "$out/promtool" ] && return 0
  echo "build-prometheus: building Prometheus $prometheus_module (cold: 10 to 40 minutes on 2 cores)" >&2
  scratch prometheus
  # set -e holds inside the subshell only outside a condition: its status is
  # taken apart.
  set +e
  (
    set -euo pipefail
    cd "$dir"
    go mod init prometheusbuild
    # The commands' packages, not the module root: go get of the root alone
    # does not fetch what the commands import.
    go get "github.com/prometheus/prometheus/cmd/prometheus@$prometheus_module" \
      "github.com/prometheus/prometheus/cmd/promtool@$prometheus_module"
    src=$(moduledir "github.com/prometheus/prometheus@$prometheus_module")
    version=$(cat "$src/VERSION")
    mkdir bin
    go build -trimpath -tags netgo -ldflags "$(ldflags "$version" "$prometheus_module")" -o bin/ \
      github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool
    install_built bin "$out" prometheus promtool
  ) >&2
  local status=$?
  set -e
  if [ "$status" != 0 ]; then
    echo "build-prometheus: building Prometheus failed" >&2
    return 1
  fi
}

build_alertmanager() {
  local out="$cache/alertmanager-$alertmanager_module"
  [ -x "$out/alertmanager" ] && [ -x "$out/amtool" ] && return 0
  lock alertmanager-build
  [ -x "$out/alertmanager" ] && [ -x "$out/amtool" ] && return 0
  echo "build-prometheus: building Alertmanager $alertmanager_module (cold: 4 to 7 minutes on 2 cores)" >&2
  scratch alertmanager
  set +e
  (
    set -euo pipefail
    cd "$dir"
    src=$(moduledir "github.com/prometheus/alertmanager@$alertmanager_module")
    # Built as the main module, in a writable copy: its go.mod and go.sum
    # decide the dependencies, and the UI's assets (ui/web.go embeds
    # app/dist, and serves app/dist/elm and app/dist/mantine) get stubs.
    cp -r "$src" am
    chmod -R u+w am
    cd am
    for ui in elm mantine; do
      mkdir -p "ui/app/dist/$ui"
      echo '<!DOCTYPE html><title>Alertmanager</title><p>This build has no web UI; the API is at /api/v2/.' \
        >"ui/app/dist/$ui/index.html"
    done
    version=$(cat VERSION)
    mkdir ../bin
    go build -trimpath -tags netgo -ldflags "$(ldflags "$version" "$alertmanager_module")" -o ../bin/ \
      ./cmd/alertmanager ./cmd/amtool
    install_built ../bin "$out" alertmanager amtool
  ) >&2
  local status=$?
  set -e
  if [ "$status" != 0 ]; then
    echo "build-prometheus: building Alertmanager failed" >&2
    return 1
  fi
}

(($#)) || set -- prometheus promtool alertmanager amtool
for tool; do
  case $tool in
    # Called as statements, not conditions, so that a failed build stops the script.
    prometheus | promtool)
      build_prometheus
      echo "$cache/prometheus-$prometheus_module/$tool"
      ;;
    alertmanager | amtool)
      build_alertmanager
      echo "$cache/alertmanager-$alertmanager_module/$tool"
      ;;
    *) echo "build-prometheus: unknown tool $tool (prometheus, promtool, alertmanager, amtool)" >&2; exit 2 ;;
  esac
done
