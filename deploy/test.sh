#!/usr/bin/env bash
# ringchat's whole test suite: the one command the README names and CI runs.
#
# It checks for what the tests need and installs or starts what is missing, and fails
# (never skips) when something cannot be had. Today the suite needs only a Rust toolchain;
# the distributed profile's engine checks (MariaDB, Redis, etcd, a Kafka broker) join here
# with their adapters.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

say "toolchain"
command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs (1.85 or newer)"
cargo --version
rustc --version

say "formatting"
cargo fmt --all -- --check || die "code is not formatted: run 'cargo fmt --all'"

say "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "tests"
cargo test --workspace --locked "$@"
