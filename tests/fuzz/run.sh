#!/usr/bin/env bash
# Builds the cargo-fuzz targets of tests/fuzz and fuzzes each for a bounded time, one after the
# other, on the stable toolchain (see README.md beside this file for why `-s none` works there).
#
#   bash tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 20; the targets default to all of them. Installs cargo-fuzz
# (pinned, `cargo install --locked`) when the one on PATH is not that version. Each run starts
# from the committed seeds (corpus/TARGET) plus a scratch corpus in $FUZZ_WORK (default: a
# temporary folder, removed at the end unless FUZZ_KEEP=1), so the tree stays clean. A crash,
# a failed invariant, an input slower than 10 s or one over 2 GiB fails the run; the input is
# kept in tests/fuzz/artifacts/TARGET/ and the command to replay it is printed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
fuzz_dir=$PWD
cd ../..

CARGO_FUZZ_VERSION=0.13.2
seconds=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(jsonrpc sse config routing_headers schema)
started=$SECONDS

if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
    echo "== cargo install --locked cargo-fuzz $CARGO_FUZZ_VERSION =="
    cargo install --locked --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi

# Stable rustc: no -Zsanitizer, so no AddressSanitizer (`-s none`); the SanitizerCoverage
# instrumentation libFuzzer needs comes from stable -C flags.
echo "== cargo fuzz build =="
cargo fuzz build --fuzz-dir "$fuzz_dir" -s none
built=$SECONDS

work=${FUZZ_WORK:-}
if [ -z "$work" ]; then
    work=$(mktemp -d)
    [ "${FUZZ_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
fi
failed=()
summary=()
for target in "${targets[@]}"; do
    echo "== fuzz $target for ${seconds} s =="
    mkdir -p "$work/corpus/$target"
    log="$work/$target.log"
    status=0
    cargo fuzz run --fuzz-dir "$fuzz_dir" -s none "$target" \
        "$work/corpus/$target" "$fuzz_dir/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^Done [0-9]+ runs' "$log" || true
    if [ "$status" -ne 0 ]; then
        # From the panic (or libFuzzer's timeout, out-of-memory or signal report) on.
        awk '/panicked at|ERROR: libFuzzer|ALARM:|out-of-memory/ {on = 1} on && n++ < 60' "$log"
        artifact=$(grep -o "Test unit written to [^ ]*" "$log" | tail -n 1 | cut -d' ' -f5 || true)
        echo "FAIL: $target (exit $status)${artifact:+; replay: cargo fuzz run --fuzz-dir tests/fuzz -s none $target $artifact}"
        failed+=("$target")
    fi
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
    summary+=("$(printf '%-16s %s' "$target" "${done_line:-no DONE line}")")
done

echo "== fuzz summary (build $((built - started)) s, total $((SECONDS - started)) s) =="
printf '%s\n' "${summary[@]}"
[ -z "${FUZZ_WORK:-}" ] && [ "${FUZZ_KEEP:-0}" != 1 ] || echo "corpora and logs kept in $work"
echo "fuzz: $((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
