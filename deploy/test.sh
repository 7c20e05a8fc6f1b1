#!/usr/bin/env bash
# ringchat's whole test suite: the one command the README names and CI runs.
#
# It checks for what the tests need and installs or starts what is missing, and fails
# (never skips) when something cannot be had: a Rust toolchain (cargo-fuzz is installed
# with cargo when missing), then for the live checks Python 3 (schemathesis from PyPI),
# Node.js and npm (playwright-core) and Debian's chromium, and the distributed profile's
# engines (MariaDB, Redis, etcd and a Kafka-protocol broker, tansu: deploy/engines.sh
# installs and starts what is missing), which its adapters' conformance suites and the
# multi-process tests use.
#
# On a fresh machine the slow installs (tansu is a ~15 minute cargo build; chromium,
# schemathesis, playwright-core and cargo-fuzz come from the network) start in the
# background at once and run while the code is checked and built; the tests start only
# when they have finished, so no build competes with a timing-sensitive test.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
t0=$SECONDS
took() { printf '(%s: %d s so far)\n' "$1" "$((SECONDS - t0))"; }

say "toolchain"
command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs (1.89 or newer)"
cargo --version
rustc --version

say "installs in the background (tools that are missing)"
prep=$(mktemp -d "${TMPDIR:-/tmp}/ringchat-test.XXXXXX")
declare -A bg_pid
# an early exit stops what still runs in the background (each in its own process group)
trap 'for p in "${bg_pid[@]}"; do kill -- "-$p" 2>/dev/null || true; done; rm -rf "$prep"' EXIT
in_bg() { # name command...: runs the command in the background, its output in $prep/name.log
    local name=$1
    shift
    setsid "$@" >"$prep/$name.log" 2>&1 </dev/null &
    bg_pid[$name]=$!
    printf '  %-10s started (pid %s, log %s)\n' "$name" "$!" "$prep/$name.log"
}
bg_wait() { # name: waits for a background install; its failure ends the run
    local code=0
    wait "${bg_pid[$1]}" || code=$?
    unset "bg_pid[$1]"
    if [[ $code != 0 ]]; then
        cat "$prep/$1.log" >&2
        die "installing $1 failed (exit $code; its output is above)"
    fi
    printf '  %-10s ready\n' "$1"
}
# the broker (tansu) and cargo-fuzz one after the other: two more parallel builds on two
# cores would only slow each other and the checks below
in_bg cargo bash -c 'deploy/engines.sh install-kafka && FUZZ_INSTALL_ONLY=1 deploy/fuzz.sh'
in_bg api-tool env CHECK_API_INSTALL_ONLY=1 deploy/check-api.sh
in_bg browser env CHECK_BROWSER_INSTALL_ONLY=1 deploy/check-browser.sh http://127.0.0.1:1

say "formatting"
cargo fmt --all -- --check || die "code is not formatted: run 'cargo fmt --all'"

say "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings
# the fuzz crate is outside the workspace: compile it now, not first in the fuzz stage
cargo check --manifest-path gateway/fuzz/Cargo.toml --locked --bins
took lints

say "deployment files (compose, Kubernetes, Dockerfile), validated offline"
deploy/check-deploy.sh

say "building the tests"
cargo test --workspace --locked --no-run "$@"
took build

say "engines for the distributed profile"
bg_wait cargo
deploy/engines.sh up
took engines

say "tests"
log=$prep/tests.log
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
took tests
unit=$(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")

say "live checks: schemathesis and the web page against a running ringchat"
cargo build -p im-gateway --bin ringchat --locked
bg_wait api-tool
bg_wait browser
deploy/live-checks.sh "${CARGO_TARGET_DIR:-target}/debug/ringchat"
took "live checks"

say "fuzzing: a short run of every target (longer runs: deploy/fuzz.sh 600)"
deploy/fuzz.sh "${RINGCHAT_FUZZ_SECONDS:-20}"
fuzz_targets=$(ls gateway/fuzz/fuzz_targets/*.rs | wc -l)

# cargo's own counts, plus the deployment-files check, the three live checks
# (schemathesis, the browser, the stop) and the fuzz targets; any failure has already
# ended this script with a non-zero status
read -r passed failed <<<"$unit"
printf '\nall checks passed: %s cargo tests, 1 deployment check, 3 live checks, %s fuzz targets\n' "$passed" "$fuzz_targets"
took "fuzzing (the whole run)"
printf '%s passed, %s failed\n' "$((passed + 4 + fuzz_targets))" "$failed"
