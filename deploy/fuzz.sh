#!/usr/bin/env bash
# Fuzzes ringchat's own parsers with cargo-fuzz (libFuzzer): every target in gateway/fuzz
# (HTTP heads and body framing, WebSocket frames, client JSON frames, config files with
# environment overrides) for SECONDS_PER_TARGET seconds each, one after another.
#
#   deploy/fuzz.sh [SECONDS_PER_TARGET]       (default 60)
#
# Each target starts from its committed seeds (gateway/fuzz/corpus/<target>/seed-*) copied
# into a scratch folder, so what the fuzzer adds never lands in the repo. Prints per target
# the executions (libFuzzer's stat::number_of_executed_units) and whether it found a crash;
# exits non-zero on any crash, naming the crash input (keep it: it becomes a regression
# test in gateway/tests/fuzz_regressions.rs).
#
# Environment: FUZZ_TARGETS="http_head config" runs only those; FUZZ_WORK=DIR keeps the
# scratch corpora and logs there (default: a temporary folder, removed unless something
# crashed); CARGO_TARGET_DIR=DIR builds in DIR/fuzz (default gateway/fuzz/target);
# FUZZ_INSTALL_ONLY=1 only installs cargo-fuzz when it is missing (deploy/test.sh does that
# early, in the background); FUZZ_KEEP_GOING=1 goes on after a crash for the whole time
# (libFuzzer's fork mode, to collect several different crashes in one run; executions are
# then the parent's count).
#
# cargo-fuzz needs unstable compiler flags (-Zsanitizer=address, sanitizer coverage):
# RUSTC_BOOTSTRAP=1 lets the stable toolchain take them, so no nightly is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fuzz_dir=$root/gateway/fuzz

die() { printf 'error: %s\n' "$*" >&2; exit 2; }

secs=${1:-60}
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || die "SECONDS_PER_TARGET must be a positive number, not '$secs'"

command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version
[[ ${FUZZ_INSTALL_ONLY:-} == 1 ]] && exit 0

export RUSTC_BOOTSTRAP=1
if [[ -n ${CARGO_TARGET_DIR:-} ]]; then
    export CARGO_TARGET_DIR=$CARGO_TARGET_DIR/fuzz
else
    export CARGO_TARGET_DIR=$fuzz_dir/target
fi

targets=${FUZZ_TARGETS:-$(cargo fuzz list --fuzz-dir "$fuzz_dir")}

echo "==> building the fuzz targets (release, AddressSanitizer, debug assertions) in $CARGO_TARGET_DIR"
start=$(date +%s)
cargo fuzz build --fuzz-dir "$fuzz_dir"
echo "built in $(($(date +%s) - start)) s"

if [[ -n ${FUZZ_WORK:-} ]]; then
    work=$FUZZ_WORK
    mkdir -p "$work"
    keep=1
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/ringchat-fuzz.XXXXXX")
    keep=0
fi

summary=()
crashed=0
for t in $targets; do
    corpus=$work/corpus/$t
    artifacts=$work/artifacts/$t
    log=$work/$t.log
    rm -rf "$corpus"
    mkdir -p "$corpus" "$artifacts"
    cp "$fuzz_dir"/corpus/"$t"/seed-* "$corpus"/
    args=(
        -max_total_time="$secs"
        -print_final_stats=1
        -artifact_prefix="$artifacts/"
        -max_len=4096
        -timeout=10
        -rss_limit_mb=2048
    )
    [[ -f $fuzz_dir/dicts/$t.dict ]] && args+=(-dict="$fuzz_dir/dicts/$t.dict")
    [[ -n ${FUZZ_KEEP_GOING:-} ]] && args+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
    echo "==> $t: ${secs}s from $(ls "$corpus" | wc -l) seeds (log: $log)"
    set +e
    cargo fuzz run --fuzz-dir "$fuzz_dir" "$t" "$corpus" -- "${args[@]}" >"$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [[ -z $execs ]]; then
        # fork mode: the parent's last status line, "#N: cov: ..."
        execs=$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "$log" | tail -1)
    fi
    found=$(find "$artifacts" -type f | sort)
    if [[ $rc -ne 0 || -n $found ]]; then
        crashed=1
        # the panic message or the sanitizer's report (the full log stays in $work)
        if grep -q "panicked at" "$log"; then
            awk '/panicked at/ { p = 1 } /^stack backtrace:/ { p = 0 } p' "$log" | head -40
        else
            grep -E -A8 "ERROR: (libFuzzer|AddressSanitizer)" "$log" | head -30 || tail -30 "$log"
        fi
        line="$t: ${execs:-?} executions, CRASH (exit $rc):"
        n=$(printf '%s\n' $found | grep -c . || true)
        for a in $(printf '%s\n' $found | head -3); do line+=" $a"; done
        [[ $n -le 3 ]] || line+=" (and $((n - 3)) more in $artifacts)"
        [[ -n $found ]] || line+=" no artifact written, see $log"
    else
        line="$t: ${execs:-?} executions in ${secs}s, no crash (corpus: $(ls "$corpus" | wc -l) inputs)"
    fi
    echo "$line"
    summary+=("$line")
done

echo
echo "==> fuzzing summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
if [[ $crashed -ne 0 ]]; then
    echo "crash inputs and logs kept in $work; reproduce with:"
    echo "  RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir gateway/fuzz <target> <crash-file>"
    exit 1
fi
if [[ $keep -eq 0 ]]; then
    rm -rf "$work"
fi
echo "no crashes"
