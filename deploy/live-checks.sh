#!/usr/bin/env bash
# Checks of a live embedded ringchat, as its users meet it: the `ringchat` binary started
# on free loopback ports with a fresh data dir, then
#   1. schemathesis against its own OpenAPI document (deploy/check-api.sh), and
#   2. the web page at / in headless Chromium (deploy/check-browser.sh),
# then a graceful stop (SIGTERM) that must exit 0.
#
#   deploy/live-checks.sh [RINGCHAT_BINARY]    (default: $CARGO_TARGET_DIR/debug/ringchat)
#
# Part of deploy/test.sh. Fails, never skips, when a tool cannot be had.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'live-checks: error: %s\n' "$*" >&2; exit 1; }

BIN="${1:-${CARGO_TARGET_DIR:-target}/debug/ringchat}"
[ -x "$BIN" ] || die "no ringchat binary at $BIN (build it with cargo build -p im-gateway)"
command -v curl >/dev/null || die "curl not found"
command -v python3 >/dev/null || die "python3 not found"

# two free loopback ports (bound and released; a race with another process is possible
# but harmless here: the server then fails to start and this script says so)
read -r API_PORT ADMIN_PORT < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()')
BASE="http://127.0.0.1:$API_PORT"
DATA=$(mktemp -d)
LOG="$DATA/server.log"

RINGCHAT_GATEWAY__LISTEN="127.0.0.1:$API_PORT" \
RINGCHAT_GATEWAY__ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT" \
RINGCHAT_AUTH__JWT_SECRET="live-checks-$(date +%s%N)" \
RINGCHAT_STORE__URL="sqlite://$DATA/ringchat.db" \
RINGCHAT_GATEWAY__HTTP_REQUESTS_PER_SEC=100000 RINGCHAT_GATEWAY__HTTP_REQUESTS_BURST=100000 \
RINGCHAT_GATEWAY__ACCOUNTS_PER_MINUTE=100000 RINGCHAT_GATEWAY__ACCOUNTS_BURST=100000 \
  "$BIN" >"$LOG" 2>&1 &
PID=$!
cleanup() {
  if kill -0 "$PID" 2>/dev/null; then kill -9 "$PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

ready=""
for _ in $(seq 1 150); do
  if curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null; then ready=1; break; fi
  kill -0 "$PID" 2>/dev/null || { cat "$LOG" >&2; die "ringchat exited while starting"; }
  sleep 0.2
done
[ -n "$ready" ] || { cat "$LOG" >&2; die "ringchat not ready on $BASE within 30 s"; }
echo "ringchat (pid $PID) ready on $BASE, data in $DATA"

# a registered user for the authenticated operations
curl -sf -XPOST "$BASE/api/auth/register" -H 'content-type: application/json' \
  -d '{"username":"live_checks","password":"secret12"}' >/dev/null || die "register failed"
TOKEN=$(curl -sf -XPOST "$BASE/api/auth/login" -H 'content-type: application/json' \
  -d '{"username":"live_checks","password":"secret12"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])') || die "login failed"

say "schemathesis against $BASE/api/openapi.json"
deploy/check-api.sh "$BASE" "$TOKEN"

say "the web page at $BASE/ in headless Chromium"
deploy/check-browser.sh "$BASE"

say "graceful stop"
kill -TERM "$PID"
code=0
wait "$PID" || code=$?
[ "$code" = 0 ] || { tail -20 "$LOG" >&2; die "ringchat exited with $code after SIGTERM"; }
grep -q "backend stopped" "$LOG" || die "no clean shutdown in the log"
if grep -q "panicked" "$LOG"; then
  grep -B2 -A8 "panicked" "$LOG" >&2
  die "the server panicked during the live checks"
fi
echo "ringchat stopped cleanly"
rm -rf "$DATA"
