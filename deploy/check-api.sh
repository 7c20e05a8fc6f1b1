#!/usr/bin/env bash
# Checks a running ringchat gateway against its own OpenAPI document with schemathesis
# (property-based API testing): no 5xx, every response matches the documented schema,
# every status code is documented.
#
#   deploy/check-api.sh BASE_URL TOKEN
#   deploy/check-api.sh http://127.0.0.1:18080 "$TOKEN"
#
# BASE_URL is the gateway's public port; the document is read from BASE_URL/api/openapi.json
# and every request goes to BASE_URL only (proxies are ignored, redirects not followed).
# TOKEN is sent as `Authorization: Bearer TOKEN` on every request; it must be valid (it is
# checked first); a registered (non-guest) user's token reaches more code. The run
# writes (it registers users, creates guests, groups, conversations and messages), so
# point it at a test server.
#
# POST /api/auth/logout and POST /api/auth/refresh revoke TOKEN and would turn the rest of
# the run into 401s, so they are left out of the main pass and tested in a second pass with
# fresh guest tokens, one pass each (both answer a revoked token as documented: 200 and
# 401). That
# pass also covers GET /api/openapi.json, which schemathesis leaves out unless it is
# selected by name (it is the operation that serves the document).
#
# schemathesis comes from PyPI into a venv at ${RINGCHAT_TOOLS:-/var/tmp/ringchat-tools}/venv
# (created when missing); a schemathesis 4.x already there or on PATH is used as it is.
# When it cannot be had the script fails; it never skips.
#
# Environment:
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (default 30)
#   SCHEMATHESIS_MAX_SECONDS   time bound of the whole check, both passes (default 600)
#   SCHEMATHESIS_MODE          positive, negative or all (default all)
#   SCHEMATHESIS_WORKERS       concurrent workers (default 1)
#   SCHEMATHESIS_SEED          seed, to reproduce a run
#   SCHEMATHESIS_REPORT_DIR    where the JSON and JUnit reports go (default: a new temp dir)
#   RINGCHAT_TOOLS             tools folder (default /var/tmp/ringchat-tools)
#   RINGCHAT_SCHEMATHESIS      pip requirement to install (default schemathesis==4.32.5)
#   CHECK_API_INSTALL_ONLY=1   only make sure schemathesis is there, then exit (no arguments;
#                              deploy/test.sh installs it early, in the background)
#
# Exit status: 0 when every check passed; 1 on any failure, error or timeout; 2 on bad usage
# or when the server, the token or schemathesis cannot be had.
set -euo pipefail

die() { printf 'check-api: error: %s\n' "$*" >&2; exit 2; }
say() { printf '==> %s\n' "$*"; }

INSTALL_ONLY=${CHECK_API_INSTALL_ONLY:-}
if [ "$INSTALL_ONLY" != 1 ]; then
    [ $# -eq 2 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
    BASE_URL=${1%/}
    TOKEN=$2
    case "$BASE_URL" in
        http://?*|https://?*) ;;
        *) die "BASE_URL must be an http:// or https:// URL, got '$1'" ;;
    esac
    [ -n "$TOKEN" ] || die "TOKEN is empty"
fi

MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-30}
MAX_SECONDS=${SCHEMATHESIS_MAX_SECONDS:-600}
MODE=${SCHEMATHESIS_MODE:-all}
WORKERS=${SCHEMATHESIS_WORKERS:-1}
TOOLS=${RINGCHAT_TOOLS:-/var/tmp/ringchat-tools}
VENV=$TOOLS/venv
REQUIREMENT=${RINGCHAT_SCHEMATHESIS:-schemathesis==4.32.5}
for v in MAX_EXAMPLES MAX_SECONDS WORKERS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "SCHEMATHESIS_$v must be a positive integer, got '${!v}'"
done
case "$MODE" in positive|negative|all) ;; *) die "SCHEMATHESIS_MODE must be positive, negative or all" ;; esac
command -v python3 >/dev/null || die "python3 not found (needed for schemathesis): apt-get install python3 python3-venv"
command -v timeout >/dev/null || die "timeout (coreutils) not found"

# --- schemathesis -------------------------------------------------------------------------

# The major version of a schemathesis executable, or nothing.
st_major() {
    "$1" --version 2>/dev/null | sed -n 's/^schemathesis, version \([0-9][0-9]*\)\..*/\1/p'
}

ST=""
if [ -x "$VENV/bin/schemathesis" ] && [ "$(st_major "$VENV/bin/schemathesis")" = 4 ]; then
    ST=$VENV/bin/schemathesis
elif command -v schemathesis >/dev/null && [ "$(st_major "$(command -v schemathesis)")" = 4 ]; then
    ST=$(command -v schemathesis)
else
    say "installing $REQUIREMENT into $VENV"
    mkdir -p "$TOOLS" || die "cannot create $TOOLS (set RINGCHAT_TOOLS to a writable folder)"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" ||
            die "python3 -m venv $VENV failed (on Debian/Ubuntu: apt-get install python3-venv); schemathesis is required, the check is not skipped"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$REQUIREMENT" ||
        die "pip install $REQUIREMENT failed (PyPI unreachable?); schemathesis is required, the check is not skipped"
    [ "$(st_major "$VENV/bin/schemathesis")" = 4 ] ||
        die "$VENV/bin/schemathesis is not schemathesis 4.x after installing $REQUIREMENT"
    ST=$VENV/bin/schemathesis
fi
say "using $("$ST" --version) ($ST)"
[ "$INSTALL_ONLY" = 1 ] && exit 0

# --- from here on, network only to BASE_URL ------------------------------------------------
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export NO_PROXY='*' no_proxy='*'

DEADLINE=$((SECONDS + MAX_SECONDS))
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
REPORTS=${SCHEMATHESIS_REPORT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/check-api.XXXXXX")}
mkdir -p "$REPORTS"

# One HTTP call: prints the response body, fails unless the status is the expected one.
http_call() { # METHOD URL EXPECTED_STATUS [TOKEN]
    python3 - "$@" <<'PY'
import sys, urllib.request, urllib.error
method, url, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
headers = {"Content-Type": "application/json"}
if len(sys.argv) > 4:
    headers["Authorization"] = "Bearer " + sys.argv[4]
data = b"{}" if method in ("POST", "PUT") else None
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(urllib.request.Request(url, data=data, method=method, headers=headers), timeout=10) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
except Exception as e:
    sys.exit(f"{method} {url}: {e}")
if status != expected:
    sys.exit(f"{method} {url}: HTTP {status}, expected {expected}: {body[:300]!r}")
sys.stdout.write(body.decode("utf-8", "replace"))
PY
}

say "checking $BASE_URL"
http_call GET "$BASE_URL/api/openapi.json" 200 >"$WORK/openapi.json" ||
    die "cannot read $BASE_URL/api/openapi.json: is the gateway running there?"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d.get("openapi","").startswith("3.")' "$WORK/openapi.json" ||
    die "$BASE_URL/api/openapi.json is not an OpenAPI 3 document"
http_call GET "$BASE_URL/api/users/info" 200 "$TOKEN" >/dev/null ||
    die "the server does not accept TOKEN (GET /api/users/info is not 200): pass a valid, unrevoked bearer token"

# Spec problems that would silently weaken the run count as failures.
cat >"$WORK/schemathesis.toml" <<'TOML'
[warnings]
fail-on = ["unsupported_regex", "unresolvable_reference"]
TOML

CHECKS=not_a_server_error,response_schema_conformance,status_code_conformance

# One schemathesis pass: NAME TOKEN SECONDS [extra run options...]
run_pass() {
    local name=$1 token=$2 seconds=$3
    shift 3
    local cmd=(
        "$ST" --config-file "$WORK/schemathesis.toml" --no-color
        run "$BASE_URL/api/openapi.json"
        --url "$BASE_URL"
        --header "Authorization: Bearer $token"
        --checks "$CHECKS"
        --mode "$MODE"
        --max-examples "$MAX_EXAMPLES"
        --workers "$WORKERS"
        --request-timeout 10
        --max-redirects 0
        --generation-database none
        --report json,junit
        --report-json-path "$REPORTS/$name.json"
        --report-junit-path "$REPORTS/$name.junit.xml"
    )
    [ -n "${SCHEMATHESIS_SEED:-}" ] && cmd+=(--seed "$SCHEMATHESIS_SEED")
    cmd+=("$@")
    say "pass '$name' (at most ${seconds}s):"
    local a shown=""
    for a in "${cmd[@]}"; do
        case "$a" in
            "Authorization: Bearer "*) a="'Authorization: Bearer <token>'" ;;
            *[!A-Za-z0-9_./:=,@%+-]*) a=$(printf '%q' "$a") ;;
        esac
        shown+=" $a"
    done
    echo "   $shown"
    local rc=0
    (cd "$WORK" && timeout --kill-after=10 "$seconds" "${cmd[@]}") || rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "check-api: pass '$name' did not finish within ${seconds}s (SCHEMATHESIS_MAX_SECONDS=$MAX_SECONDS)" >&2
    fi
    return "$rc"
}

status=0
run_pass main "$TOKEN" "$MAX_SECONDS" --exclude-path /api/auth/logout \
    --exclude-path /api/auth/refresh || status=1

# a pass over operations that revoke the token they are given, with a fresh guest's
guest_pass() { # name schemathesis-options...
    local name=$1 left guest guest_token
    shift
    left=$((DEADLINE - SECONDS))
    if [ "$left" -lt 30 ]; then
        echo "check-api: no time left for the $name pass (SCHEMATHESIS_MAX_SECONDS=$MAX_SECONDS)" >&2
        return 1
    fi
    guest=$(http_call POST "$BASE_URL/api/auth/guest" 200) || {
        echo "check-api: POST /api/auth/guest failed, so the $name pass cannot run" >&2
        return 1
    }
    guest_token=$(printf '%s' "$guest" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])') || {
        echo "check-api: POST /api/auth/guest gave no data.token" >&2
        return 1
    }
    run_pass "$name" "$guest_token" "$left" "$@"
}
# each alone: after a logout, a refresh could only meet 401s (and the other way round)
guest_pass logout --include-path /api/auth/logout --include-path /api/openapi.json || status=1
guest_pass refresh --include-path /api/auth/refresh || status=1

# --- summary ----------------------------------------------------------------------------
python3 - "$REPORTS" "$status" <<'PY' || status=1
import json, os, sys
reports, status = sys.argv[1], int(sys.argv[2])
tested = selected = generated = failed_cases = unique = errors = 0
missing = []
for name in ("main", "logout", "refresh"):
    path = os.path.join(reports, name + ".json")
    if not os.path.exists(path):
        missing.append(name)
        continue
    r = json.load(open(path))
    ops, cases = r.get("operations", {}), r.get("test_cases", {})
    tested += ops.get("tested", 0)
    selected += ops.get("selected", 0)
    generated += cases.get("generated", 0)
    failed_cases += cases.get("with_failures", 0)
    unique += cases.get("unique_failures", 0)
    errors += cases.get("errored", 0) + len(r.get("errors", []))
ok = status == 0 and not missing and tested > 0 and unique == 0 and errors == 0
line = (f"check-api: {'PASS' if ok else 'FAIL'}: operations tested {tested}/{selected}, "
        f"test cases generated {generated}, failing test cases {failed_cases} "
        f"({unique} unique failures), errors {errors}")
if missing:
    line += f"; no report from pass {', '.join(missing)}"
print(line)
print(f"check-api: reports in {reports}")
sys.exit(0 if ok else 1)
PY
exit "$status"
