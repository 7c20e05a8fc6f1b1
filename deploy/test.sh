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
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

say "toolchain"
command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs (1.89 or newer)"
cargo --version
rustc --version

say "engines for the distributed profile"
deploy/engines.sh up

say "formatting"
cargo fmt --all -- --check || die "code is not formatted: run 'cargo fmt --all'"

say "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "deployment files (compose, Kubernetes, Dockerfile), validated offline"
deploy/check-deploy.sh

say "tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
unit=$(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")

say "live checks: schemathesis and the web page against a running ringchat"
cargo build -p im-gateway --bin ringchat --locked
deploy/live-checks.sh "${CARGO_TARGET_DIR:-target}/debug/ringchat"

say "fuzzing: a short run of every target (longer runs: deploy/fuzz.sh 600)"
deploy/fuzz.sh "${RINGCHAT_FUZZ_SECONDS:-20}"
fuzz_targets=$(ls gateway/fuzz/fuzz_targets/*.rs | wc -l)

# cargo's own counts, plus the deployment-files check, the three live checks
# (schemathesis, the browser, the stop) and the fuzz targets; any failure has already
# ended this script with a non-zero status
read -r passed failed <<<"$unit"
printf '\nall checks passed: %s cargo tests, 1 deployment check, 3 live checks, %s fuzz targets\n' "$passed" "$fuzz_targets"
printf '%s passed, %s failed\n' "$((passed + 4 + fuzz_targets))" "$failed"
