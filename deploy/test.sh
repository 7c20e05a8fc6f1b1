#!/usr/bin/env bash
# ringchat's whole test suite: the one command the README names and CI runs.
#
# It checks for what the tests need and installs or starts what is missing, and fails
# (never skips) when something cannot be had: a Rust toolchain, then for the live checks
# Python 3 (schemathesis from PyPI), Node.js and npm (playwright-core) and Debian's
# chromium. The distributed profile's engine checks (MariaDB, Redis, etcd, a Kafka broker)
# join here with their adapters.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

say "toolchain"
command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs (1.89 or newer)"
cargo --version
rustc --version

say "formatting"
cargo fmt --all -- --check || die "code is not formatted: run 'cargo fmt --all'"

say "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
unit=$(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")

say "live checks: schemathesis and the web page against a running ringchat"
cargo build -p im-gateway --bin ringchat --locked
deploy/live-checks.sh "${CARGO_TARGET_DIR:-target}/debug/ringchat"

# cargo's own counts, plus the three live checks (schemathesis, the browser, the stop);
# any failure has already ended this script with a non-zero status
read -r passed failed <<<"$unit"
printf '
all checks passed: %s cargo tests and 3 live checks
' "$passed"
printf '%s passed, %s failed
' "$((passed + 3))" "$failed"
