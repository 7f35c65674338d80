#!/usr/bin/env bash
# Forge's developer commands. The two a newcomer needs:
#   ./dev.sh run    the quickstart app on the embedded PostgreSQL, gateway on http://127.0.0.1:8080
#   ./dev.sh test   every test, against real PostgreSQL (DATABASE_URL if set, else the embedded one)
# and the rest:
#   ./dev.sh setup  install what the project needs: PostgreSQL server binaries, rustfmt, clippy,
#                   for the dashboard's browser test Chromium, Node.js and playwright-core, and for the
#                   job API's fuzz test Schemathesis (PyPI, into tests/api/.venv)
#   ./dev.sh bench  forge-bench scenarios (release build), JSON on stdout
#   ./dev.sh db     psql into the dev database
#   ./dev.sh clean  stop the embedded PostgreSQL, delete .forge/ and the build
set -euo pipefail
cd "$(dirname "$0")"

have_server_binaries() {
  command -v initdb >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "dev.sh: need root to run: $*" >&2; return 1
  fi
}

setup() {
  if ! have_server_binaries; then
    if command -v apt-get >/dev/null 2>&1; then
      echo "dev.sh: installing the PostgreSQL server package (initdb, pg_ctl, postgres)"
      as_root apt-get update -qq
      DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
    else
      echo "dev.sh: PostgreSQL server binaries are missing and apt-get is not available;" >&2
      echo "        install PostgreSQL (initdb, pg_ctl, postgres) or set DATABASE_URL" >&2
      return 1
    fi
  fi
  if ! command -v psql >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql-client >/dev/null
  fi
  if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
  fi
  setup_browser
  setup_api_fuzz
}

api_fuzz_ready() {
  [ -x tests/api/.venv/bin/schemathesis ]
}

# The job API's fuzz test (crates/forge/tests/job_api_openapi.rs) runs Schemathesis from PyPI,
# installed into tests/api/.venv.
setup_api_fuzz() {
  api_fuzz_ready && return 0
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
      echo "dev.sh: installing python3-venv for the job API's fuzz test"
      as_root apt-get update -qq
      DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3 python3-venv >/dev/null
    else
      echo "dev.sh: the job API's fuzz test needs python3 with venv" >&2
      return 1
    fi
  fi
  rm -rf tests/api/.venv
  python3 -m venv tests/api/.venv
  tests/api/.venv/bin/pip install -q --disable-pip-version-check -r tests/api/requirements.txt
}

browser_ready() {
  [ -x "${CHROMIUM:-/usr/bin/chromium}" ] && command -v node >/dev/null 2>&1 \
    && [ -d tests/browser/node_modules/playwright-core ]
}

# The dashboard's browser test (crates/forge/tests/dashboard_browser.rs) drives Debian's
# Chromium with playwright-core from npm; nothing is downloaded at test time.
setup_browser() {
  local missing=()
  [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
      echo "dev.sh: the browser test needs ${missing[*]}; install them (or set CHROMIUM)" >&2
      return 1
    fi
    echo "dev.sh: installing ${missing[*]} for the dashboard's browser test"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/standardwebhooks ] \
    || [ ! -x tests/browser/node_modules/.bin/tsc ]; then
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

cmd="${1:-help}"
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup ;;
  run)
    [ -n "${DATABASE_URL:-}" ] || have_server_binaries || setup
    exec cargo run -p quickstart "$@"
    ;;
  test)
    [ -n "${DATABASE_URL:-}" ] || have_server_binaries || setup
    browser_ready || setup_browser
    api_fuzz_ready || setup_api_fuzz
    exec cargo test --workspace "$@"
    ;;
  bench)
    [ -n "${DATABASE_URL:-}" ] || have_server_binaries || setup
    exec cargo run --release -q -p forge-bench -- "${@:-testdb}"
    ;;
  db)
    [ -n "${DATABASE_URL:-}" ] || have_server_binaries || setup
    exec cargo run -q -p forge -- db shell "$@"
    ;;
  clean)
    data=.forge/postgres/data
    if [ -f "$data/postmaster.pid" ]; then
      bin=$(dirname "$(readlink -f "$(command -v pg_ctl 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/pg_ctl | tail -n 1)")")
      if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$bin/pg_ctl" stop -D "$data" -m fast || true
      else "$bin/pg_ctl" stop -D "$data" -m fast || true; fi
    fi
    rm -rf .forge
    cargo clean
    ;;
  help|-h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) echo "dev.sh: unknown command '$cmd' (try: setup, run, test, bench, db, clean)" >&2; exit 2 ;;
esac
