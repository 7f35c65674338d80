#!/usr/bin/env bash
# A newcomer's first hour, end to end: `forge new demo --forge-path <this checkout>` in a
# temporary folder, the generated app's own tests (calls, a job's retries drained at once, a
# chosen last attempt, a cron tick), `--help`, then the app itself with `forge run` on the
# embedded PostgreSQL: its query over /rpc, its mutation dispatching its job, the job seen completed
# with `forge jobs show`, a job dispatched with `forge jobs dispatch`, the typed client
# (`forge generate ts` gives what web/forge/ holds; tsc --noEmit; driven from Node; the page at /
# updating live in Chromium), `forge status`, a clean exit on SIGTERM, and its output (to a file) free of terminal escape codes. Run by .ci/run after the test suite; runnable by hand.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

cargo build -q -p forge --bin forge
forge="$root/target/debug/forge"
# The app builds against this checkout; sharing the target folder reuses what the suite built.
export CARGO_TARGET_DIR="$root/target"

work="$(mktemp -d)"
app_pid=""
# Running as root, the embedded cluster of a project the postgres user cannot reach lives under
# /var/tmp/forge-postgres-<hash>: remove the one this run creates.
before="$(ls -d /var/tmp/forge-postgres-* 2>/dev/null || true)"
cleanup() {
  if [ -n "$app_pid" ] && kill -0 "$app_pid" 2>/dev/null; then kill -KILL "$app_pid" 2>/dev/null || true; fi
  for dir in $(ls -d /var/tmp/forge-postgres-* 2>/dev/null || true); do
    if ! grep -qxF "$dir" <<<"$before"; then
      pid_file="$dir/data/postmaster.pid"
      [ -f "$pid_file" ] && kill -KILL "$(head -n 1 "$pid_file")" 2>/dev/null || true
      rm -rf "$dir"
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

step() { echo "== forge-new: $*"; }
fail() { echo "forge-new: FAILED: $*" >&2; [ -f "$work/app.log" ] && tail -n 40 "$work/app.log" >&2; exit 1; }

step "forge new demo"
(cd "$work" && "$forge" new demo --forge-path "$root")
cd "$work/demo"

step "the generated tests (cargo test)"
cargo test -q 2>&1 | tee "$work/tests.log" | tail -n 5
grep -q "test result: ok. 7 passed" "$work/tests.log" || fail "the generated tests did not all run: $(cat "$work/tests.log")"

step "the binary's --help prints usage and starts nothing"
cargo build -q
"$CARGO_TARGET_DIR/debug/demo" --help >"$work/help" || fail "--help exited with $?"
grep -q "Usage: demo" "$work/help" || fail "--help printed: $(cat "$work/help")"
grep -q "DATABASE_URL" "$work/help" || fail "--help does not name DATABASE_URL"

step "forge run: build and start it on the embedded PostgreSQL"
port=$(( 20000 + RANDOM % 20000 ))
# A signing secret, so the Node client below can watch a job with an operator's token.
export FORGE_AUTH_JWT_SECRET="forge-new-end-to-end-secret-$RANDOM-$RANDOM-$RANDOM"
env -u DATABASE_URL FORGE_PORT="$port" "$forge" run >"$work/app.log" 2>&1 &
app_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 1200); do
  curl -fsS "$base/ready" >/dev/null 2>&1 && break
  kill -0 "$app_pid" 2>/dev/null || fail "the app exited"
  sleep 0.25
done
curl -fsS "$base/ready" >/dev/null || fail "the app never became ready"

rpc() { curl -fsS -X POST "$base/rpc/$1" -H 'content-type: application/json' -d "$2"; }

step "its query over /rpc"
count=$(rpc signup_count 'null')
[ "$count" = '{"data":0}' ] || fail "signup_count answered $count"

step "its mutation dispatches its job"
answer=$(rpc sign_up '{"email": "ada@example.com"}')
job=$(echo "$answer" | sed -n 's/^{"data":\([0-9]*\)}$/\1/p')
[ -n "$job" ] || fail "sign_up answered $answer"

# The CLI reaches the same embedded cluster (no DATABASE_URL) while the app runs.
wait_completed() {
  local state=""
  for _ in $(seq 1 120); do
    state=$(env -u DATABASE_URL "$forge" --json jobs show "$1" | sed -n 's/.*"state":"\([a-z]*\)".*/\1/p')
    [ "$state" = completed ] && return 0
    sleep 0.25
  done
  fail "job $1 is $state, not completed"
}
step "job $job completes (forge jobs show)"
wait_completed "$job"
[ "$(rpc signup_count 'null')" = '{"data":1}' ] || fail "the sign-up was not counted"

step "forge jobs dispatch: the running app checks the arguments against the Rust type"
cli() { env -u DATABASE_URL FORGE_PORT="$port" "$forge" "$@"; }
dispatched=$(cli --json jobs dispatch send_welcome --args '{"email": "grace@example.com"}')
job2=$(echo "$dispatched" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
[ -n "$job2" ] || fail "forge jobs dispatch answered $dispatched"
echo "$dispatched" | grep -q '"checked":"type"' || fail "the app did not check the arguments: $dispatched"
wait_completed "$job2"
if cli jobs dispatch send_welcome --args '{"email": 7}' 2>"$work/err"; then fail "a wrong argument type was dispatched"; fi
grep -q 'email' "$work/err" || fail "unexpected error: $(cat "$work/err")"
if cli jobs dispatch no_such_job 2>"$work/err"; then fail "an unknown kind was dispatched"; fi
grep -q 'no_such_job' "$work/err" || fail "unexpected error: $(cat "$work/err")"

step "forge generate ts: the client in web/forge/ is the one the app's functions give"
"$forge" generate ts --out "$work/generated" | tee "$work/generate.log"
grep -q "client of 3 function" "$work/generate.log" || fail "forge generate ts said: $(cat "$work/generate.log")"
if grep -q "warning" "$work/generate.log"; then fail "untyped functions: $(cat "$work/generate.log")"; fi
diff -r web/forge "$work/generated" || fail "web/forge/ is not what forge generate ts writes"

browser="$root/tests/browser"
if [ -x "$browser/node_modules/.bin/tsc" ] && command -v node >/dev/null 2>&1; then
  step "the generated client type-checks (tsc --noEmit --strict), wrong calls refused"
  cp "$browser/client-check.ts" web/client-check.ts
  "$browser/node_modules/.bin/tsc" --noEmit --strict --target es2022 --module esnext --moduleResolution bundler \
    --lib es2022,dom web/client-check.ts || fail "tsc refused the generated client"
  rm web/client-check.ts

  step "the generated client from Node: live query, mutation, typed error, job watch"
  token=$(cli keys token --sub forge-new --role forge:admin)
  node --experimental-websocket "$browser/client.mjs" "$base" "$work/demo/web/forge/api.js" "$token" \
    || fail "the Node client failed"

  step "the page at / in Chromium: another client's sign-up appears without a reload"
  node "$browser/live-page.mjs" "$base" "$work/shots" || fail "the live page failed"
else
  [ -n "${CI:-}" ] && fail "tsc, node or Chromium missing: run ./dev.sh setup"
  echo "forge-new: tsc or node missing (./dev.sh setup installs them): the client checks are skipped"
fi

step "forge status"
env -u DATABASE_URL "$forge" status | tee "$work/status"
grep -q "1 live, leader" "$work/status" || fail "forge status does not show the running node as leader"

step "SIGTERM to forge run: passed on, a clean exit"
kill -TERM "$app_pid"
wait "$app_pid" || fail "the app exited with $?"
app_pid=""

step "the app's output to a file: no escape codes, no probe lines, a start line in words"
if grep -q $'\x1b' "$work/app.log"; then fail "escape codes in the app's output"; fi
if grep -q 'path=/ready' "$work/app.log"; then fail "a /ready probe was logged at info"; fi
grep -q "forge node started: serving http://127.0.0.1:$port" "$work/app.log" || fail "the start line does not say where it listens"
grep -q "the embedded PostgreSQL in" "$work/app.log" || fail "the start line does not say which database"
echo "forge-new: passed"
