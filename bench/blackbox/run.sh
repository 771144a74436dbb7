#!/usr/bin/env bash
# Side by side: tokenwatch and blackbox_exporter 0.23 against the same ORY
# Hydra v2.3.0 (and one simulated Salesforce org), on loopback only.
#
#   bench/blackbox/run.sh            # under a minute once Hydra is built; N=500 probes per timing row
#   N=2000 bench/blackbox/run.sh     # more probes per timing row
#   KEEP=1 bench/blackbox/run.sh     # keep the working folder (configs, logs, raw answers)
#
# It starts Hydra, blackbox_exporter (Debian package prometheus-blackbox-exporter,
# installed with apt-get when missing and run as root), the tokenwatch daemon,
# a latency-injecting proxy (slowproxy) and a simulated Salesforce org with the
# introspection permission gap (seedorg); injects four faults (wrong secret,
# revoked token, slow token endpoint, introspection permission gap); prints what
# each tool reports for each; then times healthy probes of each tool
# (timeprobes) and prints the table recorded in docs/comparison.md. Everything
# it starts is stopped when it ends, and it gives up after LIMIT seconds
# (default 600).
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-500}
LIMIT=${LIMIT:-600}
DELAY=${DELAY:-500ms}

log() { echo "run.sh: $*" >&2; }
die() { log "$*"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/tokenwatch-vs-blackbox.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The whole run is bounded: a watchdog ends it after LIMIT seconds. Killed at
# the end, it takes its sleep along, so nothing outlives the script.
(
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  sleep "$LIMIT" & sleeper=$!
  wait "$sleeper"
  echo "run.sh: time limit of ${LIMIT}s reached" >&2
  kill -TERM $$
) >/dev/null &
pids+=($!)

# --- peers -------------------------------------------------------------------
need=()
command -v prometheus-blackbox-exporter >/dev/null 2>&1 || need+=(prometheus-blackbox-exporter)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v curl >/dev/null 2>&1 || need+=(curl)
if ((${#need[@]})); then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || die "missing ${need[*]}: apt-get install ${need[*]}"
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
hydra=$(scripts/build-hydra.sh) || die "could not build ORY Hydra"
blackbox_version=$(prometheus-blackbox-exporter --version 2>&1 | head -1)

log "building tokenwatch and the bench helpers"
go build -o "$work/tokenwatch" ./cmd/tokenwatch
for helper in slowproxy seedorg timeprobes; do
  go build -o "$work/$helper" "./bench/blackbox/$helper"
done

# free_port prints a loopback port nothing listens on.
free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}
random_secret() { head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32; }

# wait_http URL: until it answers 200, for at most 30 s.
wait_http() {
  for _ in $(seq 1 300); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ]; then return; fi
    sleep 0.1
  done
  die "$1 did not answer within 30s"
}

# Every secret and token goes in here; scrub removes them from anything printed.
secrets=()
scrub() {
  local s sed_args=()
  for s in "${secrets[@]}"; do sed_args+=(-e "s|$s|<redacted>|g"); done
  sed "${sed_args[@]}"
}

# --- ORY Hydra -----------------------------------------------------------------
public_port=$(free_port); admin_port=$(free_port)
hydra_public=http://127.0.0.1:$public_port
hydra_admin=http://127.0.0.1:$admin_port
cat >"$work/hydra.yml" <<EOF
dsn: memory
serve:
  public: {host: 127.0.0.1, port: $public_port}
  admin: {host: 127.0.0.1, port: $admin_port}
urls:
  self: {issuer: $hydra_public, public: $hydra_public}
secrets:
  system: ["$(random_secret)"]
log: {level: warn}
EOF
"$hydra" serve all --dev --sqa-opt-out -c "$work/hydra.yml" >"$work/hydra.log" 2>&1 &
hydra_pid=$!; pids+=($hydra_pid)
wait_http "$hydra_public/health/ready"; wait_http "$hydra_admin/health/ready"

cc_secret=$(random_secret); keep_secret=$(random_secret); wrong_secret=$(random_secret)
secrets+=("$cc_secret" "$keep_secret" "$wrong_secret")
register() { # id secret
  curl -sf -o /dev/null -X POST "$hydra_admin/admin/clients" -H 'Content-Type: application/json' -d "{
    \"client_id\": \"$1\", \"client_secret\": \"$2\", \"grant_types\": [\"client_credentials\"],
    \"scope\": \"read\", \"token_endpoint_auth_method\": \"client_secret_basic\"}" || die "registering client $1 failed"
}
register bench-cc "$cc_secret"
register bench-keep "$keep_secret"

mint() { # id secret -> access token
  curl -sf -u "$1:$2" "$hydra_public/oauth2/token" -d grant_type=client_credentials -d scope=read | jq -r .access_token
}
live_token=$(mint bench-cc "$cc_secret")
revoked_token=$(mint bench-cc "$cc_secret")
curl -sf -o /dev/null -u "bench-cc:$cc_secret" "$hydra_public/oauth2/revoke" -d "token=$revoked_token"
secrets+=("$live_token" "$revoked_token")

# --- fault injectors -----------------------------------------------------------------
slow_port=$(free_port)
"$work/slowproxy" -listen "127.0.0.1:$slow_port" -target "$hydra_public" -path /oauth2/token -delay "$DELAY" \
  -lifetime "${LIMIT}s" 2>"$work/slowproxy.log" &
pids+=($!)
slow_public=http://127.0.0.1:$slow_port

seed_port=$(free_port)
seed_url=http://127.0.0.1:$seed_port
seed_secret=$(random_secret); seed_password=$(random_secret)
secrets+=("$seed_secret" "$seed_password")
SEEDORG_CLIENT_SECRET=$seed_secret SEEDORG_PASSWORD=$seed_password \
  "$work/seedorg" -listen "127.0.0.1:$seed_port" -lifetime "${LIMIT}s" 2>"$work/seedorg.log" &
pids+=($!)
wait_http "$seed_url/.well-known/openid-configuration"
# blackbox cannot obtain a password-grant token; it is handed one, as it is for introspection.
seed_token=$(curl -sf "$seed_url/services/oauth2/token" -d grant_type=password -d client_id=seed-app \
  -d "client_secret=$seed_secret" -d username=integration@seed.example -d "password=$seed_password" | jq -r .access_token)
secrets+=("$seed_token")

# --- blackbox_exporter ---------------------------------------------------------------
# Its oauth2 client settings sit directly under http: in 0.23. The
# introspection modules carry the token in their body: blackbox cannot pass a
# token it fetched on to a second request.
oauth2_module() { # token_url secret
  cat <<EOF
    prober: http
    timeout: 10s
    http:
      method: GET
      valid_status_codes: [200]
      oauth2:
        client_id: bench-cc
        client_secret: "$2"
        token_url: $1
        scopes: [read]
EOF
}
introspect_module() { # form body
  cat <<EOF
    prober: http
    timeout: 10s
    http:
      method: POST
      headers: {Content-Type: application/x-www-form-urlencoded}
      body: "$1"
      valid_status_codes: [200]
      fail_if_body_not_matches_regexp: ['"active":\s*true']
EOF
}
bearer_module() { # token
  cat <<EOF
    prober: http
    timeout: 10s
    http:
      method: GET
      valid_status_codes: [200]
      authorization: {type: Bearer, credentials: "$1"}
EOF
}
{
  echo "modules:"
  echo "  oauth2_userinfo:";              oauth2_module "$hydra_public/oauth2/token" "$cc_secret"
  echo "  oauth2_userinfo_wrong_secret:"; oauth2_module "$hydra_public/oauth2/token" "$wrong_secret"
  echo "  oauth2_userinfo_slow_token:";   oauth2_module "$slow_public/oauth2/token" "$cc_secret"
  echo "  introspect_live:";              introspect_module "token=$live_token"
  echo "  introspect_revoked:";           introspect_module "token=$revoked_token"
  echo "  userinfo_revoked:";             bearer_module "$revoked_token"
  echo "  seed_introspect:";              introspect_module "token=$seed_token&client_id=seed-app&client_secret=$seed_secret"
  echo "  seed_userinfo:";                bearer_module "$seed_token"
} >"$work/blackbox.yml"
chmod 600 "$work/blackbox.yml"
blackbox_port=$(free_port)
blackbox=http://127.0.0.1:$blackbox_port
prometheus-blackbox-exporter --config.file="$work/blackbox.yml" --web.listen-address="127.0.0.1:$blackbox_port" \
  >"$work/blackbox.log" 2>&1 &
blackbox_pid=$!; pids+=($blackbox_pid)
wait_http "$blackbox/-/healthy"

# --- tokenwatch ----------------------------------------------------------------------
# The schedule fires once a year: apart from the check at start, only this
# script's /probe requests run checks. One check at a time, because Hydra's
# in-memory database answers concurrent requests with transient errors.
cat >"$work/tokenwatch.yml" <<EOF
global:
  schedule: "0 0 1 1 *"
  timeout: 10s
  max_concurrent_checks: 1
orgs:
  - name: hydra-full                 # token, introspect, userinfo, revoke
    provider: generic
    token_url: $hydra_public/oauth2/token
    introspection_url: $hydra_admin/admin/oauth2/introspect
    revocation_url: $hydra_public/oauth2/revoke
    userinfo_url: $hydra_public/userinfo
    introspection: {client: {id: hydra-admin, auth_method: none}}
    client: {id: bench-cc, secret: "\${BENCH_CC_SECRET}"}
    grant: {type: client_credentials, scope: read}
  - name: hydra-token-userinfo       # what blackbox's oauth2 module does: token, userinfo
    provider: generic
    token_url: $hydra_public/oauth2/token
    userinfo_url: $hydra_public/userinfo
    client: {id: bench-cc, secret: "\${BENCH_CC_SECRET}"}
    grant: {type: client_credentials, scope: read}
  - name: hydra-wrong-secret
    provider: generic
    token_url: $hydra_public/oauth2/token
    introspection_url: $hydra_admin/admin/oauth2/introspect
    revocation_url: $hydra_public/oauth2/revoke
    userinfo_url: $hydra_public/userinfo
    introspection: {client: {id: hydra-admin, auth_method: none}}
    client: {id: bench-cc, secret: "\${BENCH_WRONG_SECRET}"}
    grant: {type: client_credentials, scope: read}
  - name: hydra-slow-token
    provider: generic
    token_url: $slow_public/oauth2/token
    introspection_url: $hydra_admin/admin/oauth2/introspect
    revocation_url: $hydra_public/oauth2/revoke
    userinfo_url: $hydra_public/userinfo
    introspection: {client: {id: hydra-admin, auth_method: none}}
    client: {id: bench-cc, secret: "\${BENCH_CC_SECRET}"}
    grant: {type: client_credentials, scope: read}
  - name: hydra-kept                 # token_mode reuse: the token lives across checks
    provider: generic
    token_url: $hydra_public/oauth2/token
    introspection_url: $hydra_admin/admin/oauth2/introspect
    revocation_url: $hydra_public/oauth2/revoke
    userinfo_url: $hydra_public/userinfo
    introspection: {client: {id: hydra-admin, auth_method: none}}
    client: {id: bench-keep, secret: "\${BENCH_KEEP_SECRET}"}
    grant: {type: client_credentials, scope: read}
    token_mode: reuse
  - name: seed-org                   # simulated Salesforce org with the permission gap
    provider: salesforce
    url: $seed_url
    client: {id: seed-app, secret: "\${BENCH_SEED_SECRET}"}
    grant: {type: password, username: integration@seed.example, password: "\${BENCH_SEED_PASSWORD}"}
EOF
tokenwatch_port=$(free_port)
tokenwatch=http://127.0.0.1:$tokenwatch_port
BENCH_CC_SECRET=$cc_secret BENCH_WRONG_SECRET=$wrong_secret BENCH_KEEP_SECRET=$keep_secret \
BENCH_SEED_SECRET=$seed_secret BENCH_SEED_PASSWORD=$seed_password \
  "$work/tokenwatch" --config.file="$work/tokenwatch.yml" --web.listen-address="127.0.0.1:$tokenwatch_port" \
  >"$work/tokenwatch.log" 2>&1 &
tokenwatch_pid=$!; pids+=($tokenwatch_pid)
wait_http "$tokenwatch/-/ready"
for _ in $(seq 1 300); do
  pending=$(curl -sf "$tokenwatch/api/v1/orgs" | jq '[.orgs[] | select(.last == null)] | length')
  [ "$pending" = 0 ] && break
  sleep 0.1
done
[ "$pending" = 0 ] || die "tokenwatch did not finish its first checks"

# --- faults --------------------------------------------------------------------------
enc() { jq -rn --arg v "$1" '$v|@uri'; }

# tokenwatch_probe ORG: run one check now; print what a person would read.
tokenwatch_probe() {
  curl -sf "$tokenwatch/probe?org=$1" >"$work/tw-probe-$1.txt"
  curl -sf "$tokenwatch/api/v1/orgs" | jq -r --arg o "$1" '.orgs[] | select(.name == $o) | .last |
    "  tokenwatch: outcome \(.outcome) (probe_success \(if .outcome == "ok" then 1 else 0 end)); steps: " +
    ([.steps[] | select(.skipped | not) | "\(.step) \(.status) \(.outcome) \((.duration_seconds * 10000 | floor) / 10)ms"] | join(", ")) +
    "\n    why: \(.explanation)"' | scrub
}

# tokenwatch_phases ORG STEP: the httptrace phases of one step of the org's last check.
tokenwatch_phases() {
  curl -sf "$tokenwatch/api/v1/orgs" | jq -r --arg o "$1" --arg s "$2" '.orgs[] | select(.name == $o) | .last.steps[] |
    select(.step == $s) | "    tokenwatch phases of \($s): " + ([.phases | to_entries[] | "\(.key | sub("_seconds$"; "")) \((.value * 10000 | floor) / 10)ms"] | join(", "))'
}

# blackbox_probe MODULE TARGET: one probe, its verdict metrics and the log lines saying why.
blackbox_probe() {
  local q="module=$1&target=$(enc "$2")"
  curl -s "$blackbox/probe?$q" >"$work/bb-probe-$1.txt"
  awk '/^probe_(success|http_status_code|duration_seconds) /{printf "%s%s %s", sep, $1, $2; sep=", "} END{print ""}' \
    "$work/bb-probe-$1.txt" | sed 's/^/  blackbox:   /'
  # The debug answer also prints the module, with the handed token in its body: only log lines are shown, scrubbed.
  curl -s "$blackbox/probe?$q&debug=true" | sed -n '/^Logs for the probe:/,/^Metrics that would have been returned:/p' >"$work/bb-debug-$1.txt"
  grep -E 'level=error|Invalid HTTP response status code|Body did not match' "$work/bb-debug-$1.txt" |
    while IFS= read -r line; do
      echo "    says: $(grep -oE 'msg=("([^"\\]|\\.)*"|[^ ]*)|err="([^"\\]|\\.)*"|status_code=[0-9]+|regexp=("([^"\\]|\\.)*"|[^ ]*)' <<<"$line" | paste -sd' ')"
    done | scrub || true
}

echo "# tokenwatch vs blackbox_exporter: faults"
echo "hydra v2.3.0 ($hydra_public, admin $hydra_admin); $blackbox_version; tokenwatch $("$work/tokenwatch" version 2>&1 | head -1)"
echo
echo "## healthy"
tokenwatch_probe hydra-full
blackbox_probe oauth2_userinfo "$hydra_public/userinfo"
blackbox_probe introspect_live "$hydra_admin/admin/oauth2/introspect"
echo
echo "## wrong client secret"
tokenwatch_probe hydra-wrong-secret
blackbox_probe oauth2_userinfo_wrong_secret "$hydra_public/userinfo"
echo
echo "## revoked token"
echo "  (tokenwatch: a kept token, token_mode reuse, whose tokens Hydra's admin API then deletes)"
tokenwatch_probe hydra-kept >/dev/null
curl -sf -o /dev/null -X DELETE "$hydra_admin/admin/oauth2/tokens?client_id=bench-keep"
tokenwatch_probe hydra-kept
echo "  (blackbox: handed a token revoked beforehand, to introspection and to userinfo)"
blackbox_probe introspect_revoked "$hydra_admin/admin/oauth2/introspect"
blackbox_probe userinfo_revoked "$hydra_public/userinfo"
echo
echo "## slow token endpoint (+$DELAY on /oauth2/token)"
tokenwatch_probe hydra-slow-token
tokenwatch_phases hydra-slow-token token
blackbox_probe oauth2_userinfo_slow_token "$hydra_public/userinfo"
awk '/^probe_http_duration_seconds/{printf "    blackbox phases: %s %s\n", $1, $2}' "$work/bb-probe-oauth2_userinfo_slow_token.txt"
echo
echo "## introspection permission gap (simulated Salesforce org, password grant, app without \"Introspect All Tokens\")"
tokenwatch_probe seed-org
blackbox_probe seed_introspect "$seed_url/services/oauth2/introspect"
blackbox_probe seed_userinfo "$seed_url/services/oauth2/userinfo"
echo

# --- timing --------------------------------------------------------------------------
log "timing $N probes per row"
echo "# tokenwatch vs blackbox_exporter: time per healthy probe against Hydra (N=$N per row, one at a time)"
echo
"$work/timeprobes" -n "$N" -server-pid "$hydra_pid" \
  -tool-pid "blackbox oauth2 module: token + userinfo=$blackbox_pid" \
  -tool-pid "blackbox introspection module (handed token)=$blackbox_pid" \
  -tool-pid "tokenwatch: token + userinfo=$tokenwatch_pid" \
  -tool-pid "tokenwatch: token + introspect + userinfo + revoke=$tokenwatch_pid" \
  -self "blackbox oauth2 module: token + userinfo=probe_duration_seconds" \
  -self "blackbox introspection module (handed token)=probe_duration_seconds" \
  -self "tokenwatch: token + userinfo=tokenwatch_check_duration_seconds" \
  -self "tokenwatch: token + introspect + userinfo + revoke=tokenwatch_check_duration_seconds" \
  "blackbox oauth2 module: token + userinfo=$blackbox/probe?module=oauth2_userinfo&target=$(enc "$hydra_public/userinfo")" \
  "blackbox introspection module (handed token)=$blackbox/probe?module=introspect_live&target=$(enc "$hydra_admin/admin/oauth2/introspect")" \
  "tokenwatch: token + userinfo=$tokenwatch/probe?org=hydra-token-userinfo" \
  "tokenwatch: token + introspect + userinfo + revoke=$tokenwatch/probe?org=hydra-full"
echo
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
