#!/usr/bin/env bash
# Builds the checking tools of scripts/test.sh from the Go module proxy and
# prints the path of each one asked for on stdout, one a line, in the order
# asked (nothing else goes there):
#
#   govulncheck    golang.org/x/vuln/cmd/govulncheck
#                  -> ~/.cache/tokenwatch/govulncheck-v1.9.0/govulncheck
#   vulndb         the Go vulnerability database, offline: the vulnerability
#                  database site cannot be reached from our machines, but the
#                  module proxy serves golang.org/x/vulndb, whose zip holds the
#                  same reports (data/osv); that module's own cmd/indexdb turns
#                  them into a database for `govulncheck -db file://DIR`
#                  -> ~/.cache/tokenwatch/vulndb-<x/vulndb version>/ (a directory)
#   golangci-lint  github.com/golangci/golangci-lint/v2/cmd/golangci-lint
#                  -> ~/.cache/tokenwatch/golangci-lint-v2.15.0/golangci-lint
#   goreleaser     github.com/goreleaser/goreleaser/v2, the release builder
#                  (.goreleaser.yaml)
#                  -> ~/.cache/tokenwatch/goreleaser-v2.15.1/goreleaser
#
#   scripts/build-tools.sh [govulncheck|vulndb|golangci-lint|goreleaser]...   (none: all)
#
# Each is built once (under $XDG_CACHE_HOME instead of ~/.cache if set) and
# reused while present; nothing of them is committed. A binary built by an
# older Go (major.minor) than the one in use is built again: a linter or type
# checker cannot read code for a newer Go. Cold, on 2 cores: govulncheck about
# half a minute, the database about a minute, golangci-lint 20 to 30 minutes,
# goreleaser about 20 (its snapshot builds: see scripts/test.sh).
# To take a newer vulnerability database, raise vulndb_version (any
# pseudo-version the module proxy serves) and run this again.
set -euo pipefail

govulncheck_version=v1.9.0
vulndb_version=v0.0.0-20261105234957-e22db6528018
golangci_lint_version=v2.15.0
# The newest goreleaser the module proxy serves that builds with Go 1.26.
goreleaser_version=v2.15.1

cache="${XDG_CACHE_HOME:-$HOME/.cache}/tokenwatch"
command -v go >/dev/null 2>&1 || { echo "build-tools: go is not installed" >&2; exit 1; }
mkdir -p "$cache"

# scratch NAME: a new temporary directory in $dir, removed on exit. It is in
# the cache, on the same file system as what it builds: the last step is a rename.
tmps=()
cleanup() { ((${#tmps[@]} == 0)) || rm -rf "${tmps[@]}"; }
trap cleanup EXIT
scratch() {
  dir=$(mktemp -d "$cache/.build-$1.XXXXXX")
  tmps+=("$dir")
}

# Built outside this repository: no go.work of ours, no flags of ours.
export GOWORK=off GOFLAGS=-mod=mod

go_minor() { sed -E 's/^go([0-9]+)\.([0-9]+).*/\1.\2/' <<<"$1"; }
current_go=$(go_minor "$(go env GOVERSION)")
# usable BIN: it exists and was built by the Go in use or a newer one.
usable() {
  [ -x "$1" ] || return 1
  local built
  built=$(go version "$1" 2>/dev/null | awk '{print $NF}') || return 1
  built=$(go_minor "$built")
  [ "$(printf '%s\n%s\n' "$built" "$current_go" | sort -V | head -n1)" = "$current_go" ]
}

# lock NAME: one build of NAME at a time (the test script and a developer may
# start together); whoever waited then finds what the other one built.
lock() {
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$cache/$1.lock"
  flock 9
}

# install NAME PKG VERSION BIN [LDFLAGS]: go install PKG@VERSION as BIN.
install() {
  local name=$1 pkg=$2 version=$3 bin=$4 ldflags=${5:-} dir
  usable "$bin" && return 0
  lock "$name"
  usable "$bin" && return 0
  echo "build-tools: building $name $version (cold: see scripts/build-tools.sh)" >&2
  scratch "$name"
  mkdir -p "$(dirname "$bin")"
  if ! (cd "$dir" && GOBIN="$dir" go install -trimpath -ldflags="-s -w $ldflags" "$pkg@$version") >&2; then
    echo "build-tools: building $name failed" >&2
    return 1
  fi
  # go install names a command after its path less a major version suffix
  # (.../goreleaser/v2 -> goreleaser).
  local built=$(basename "$pkg")
  [[ $built =~ ^v[0-9]+$ ]] && built=$(basename "$(dirname "$pkg")")
  # Renamed last, so an interrupted build never leaves half a binary in the cache.
  mv -f "$dir/$built" "$bin"
}

build_govulncheck() {
  local bin="$cache/govulncheck-$govulncheck_version/govulncheck"
  install govulncheck golang.org/x/vuln/cmd/govulncheck "$govulncheck_version" "$bin"
  echo "$bin"
}

build_golangci_lint() {
  local bin="$cache/golangci-lint-$golangci_lint_version/golangci-lint"
  install golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint "$golangci_lint_version" "$bin" \
    "-X main.version=${golangci_lint_version#v}"
  echo "$bin"
}

build_goreleaser() {
  local bin="$cache/goreleaser-$goreleaser_version/goreleaser"
  install goreleaser github.com/goreleaser/goreleaser/v2 "$goreleaser_version" "$bin" \
    "-X main.version=${goreleaser_version#v} -X main.builtBy=tokenwatch-build-tools"
  echo "$bin"
}

build_vulndb() {
  local db="$cache/vulndb-$vulndb_version" dir src
  if [ ! -f "$db/index/db.json" ]; then
    lock vulndb
    if [ ! -f "$db/index/db.json" ]; then
      echo "build-tools: building the vulnerability database from golang.org/x/vulndb@$vulndb_version" >&2
      scratch vulndb
      if ! (
        set -euo pipefail
        cd "$dir"
        GOBIN="$dir" go install -trimpath "golang.org/x/vulndb/cmd/indexdb@$vulndb_version"
        src=$(go mod download -json "golang.org/x/vulndb@$vulndb_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
        [ -d "$src/data/osv" ] || { echo "build-tools: no data/osv in golang.org/x/vulndb@$vulndb_version" >&2; exit 1; }
        ./indexdb -vulns "$src/data/osv" -out "$dir/db"
        # The zip's reports carry no modification time (upstream fills it from
        # the git history, which a module zip lacks): date the database by the
        # pseudo-version's commit time, which govulncheck prints.
        if [[ $vulndb_version =~ -([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})- ]]; then
          printf '{"modified":"%s-%s-%sT%s:%s:%sZ"}' "${BASH_REMATCH[@]:1:6}" >"$dir/db/index/db.json"
          gzip -9nc "$dir/db/index/db.json" >"$dir/db/index/db.json.gz"
        fi
        [ -f "$dir/db/index/modules.json" ] && [ -d "$dir/db/ID" ]
      ) >&2; then
        echo "build-tools: building the vulnerability database failed" >&2
        return 1
      fi
      rm -rf "$db"
      mv "$dir/db" "$db"
    fi
  fi
  echo "$db"
}

(($#)) || set -- govulncheck vulndb golangci-lint goreleaser
for tool; do
  case $tool in
    govulncheck) build_govulncheck ;;
    vulndb) build_vulndb ;;
    golangci-lint) build_golangci_lint ;;
    goreleaser) build_goreleaser ;;
    *) echo "build-tools: unknown tool $tool (govulncheck, vulndb, golangci-lint, goreleaser)" >&2; exit 2 ;;
  esac
done
