#!/usr/bin/env bash
# Coverage-guided fuzzing of the edge (libFuzzer via cargo-fuzz), bounded.
#
#   guest/fuzz/run.sh                 every target, FUZZ_SECONDS (60) each
#   FUZZ_SECONDS=600 guest/fuzz/run.sh typed_evaluate
#
# Idempotent: installs cargo-fuzz (pinned) into .build/cargo-fuzz, writes the
# seed corpora from tests/vectors into .build/fuzz-corpus/seeds, builds the
# targets into .build/fuzz/target and runs each for FUZZ_SECONDS. Exits
# non-zero if any target crashes (panic, failed invariant, malloc over
# FUZZ_MALLOC_MB, RSS over FUZZ_RSS_MB, an input slower than FUZZ_TIMEOUT
# seconds, a leak). A failing input is saved in .build/fuzz-artifacts/<target>/;
# replay it with `<binary> <file>` (the binary's path is printed below).
#
# Runs on stable Rust: cargo-fuzz passes -Zsanitizer=address and other -Z
# flags to rustc, which RUSTC_BOOTSTRAP=1 lets a stable compiler accept (the
# ASan runtime ships with the stable x86_64-linux rust-std). ASan is what
# makes -malloc_limit_mb effective: libFuzzer sees each allocation through
# the sanitizer's malloc hooks.
#
# Environment (all optional):
#   FUZZ_SECONDS   seconds per target (60)
#   FUZZ_TARGETS   space-separated targets (all three; or pass them as args)
#   FUZZ_MAX_LEN   largest input libFuzzer generates, bytes (4096)
#   FUZZ_RSS_MB    -rss_limit_mb (1024)
#   FUZZ_MALLOC_MB -malloc_limit_mb: any single allocation this big fails (64)
#   FUZZ_TIMEOUT   -timeout, seconds for one input (10)
#   FUZZ_SEED      -seed, for a reproducible run (libFuzzer picks one)
#   FUZZ_FRESH=1   start from the seeds only (drop the grown corpus)
#   FUZZ_ARGS      more libFuzzer flags
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD="$ROOT/.build"
CARGO_FUZZ_VERSION=0.13.2
CARGO_FUZZ_ROOT="$BUILD/cargo-fuzz"
TARGET_DIR="$BUILD/fuzz/target"
CORPUS="$BUILD/fuzz-corpus"
ARTIFACTS="$BUILD/fuzz-artifacts"
LOGS="$BUILD/fuzz-logs"

ALL_TARGETS="encoded_head typed_evaluate encoded_config"
if [ $# -gt 0 ]; then
    TARGETS="$*"
else
    TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
fi
SECONDS_EACH=${FUZZ_SECONDS:-60}
MAX_LEN=${FUZZ_MAX_LEN:-4096}
RSS_MB=${FUZZ_RSS_MB:-1024}
MALLOC_MB=${FUZZ_MALLOC_MB:-64}
TIMEOUT=${FUZZ_TIMEOUT:-10}

for t in $TARGETS; do
    case " $ALL_TARGETS " in
        *" $t "*) ;;
        *) echo "run.sh: unknown target '$t' (targets: $ALL_TARGETS)" >&2; exit 2 ;;
    esac
done

# 1. cargo-fuzz, pinned, project-local.
if ! "$CARGO_FUZZ_ROOT/bin/cargo-fuzz" --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION into $CARGO_FUZZ_ROOT"
    cargo install --locked --quiet --version "$CARGO_FUZZ_VERSION" --root "$CARGO_FUZZ_ROOT" cargo-fuzz
fi
export PATH="$CARGO_FUZZ_ROOT/bin:$PATH"

# 2. Stable toolchain, with the -Z flags cargo-fuzz passes allowed.
export RUSTC_BOOTSTRAP=1
echo "== $(rustc --version), $(cargo-fuzz --version)"

# 3. Seeds from the vectors (rewritten every run), and the grown corpus.
python3 "$HERE/seeds.py" "$ROOT/tests/vectors" "$CORPUS/seeds"
if [ "${FUZZ_FRESH:-0}" = 1 ]; then
    for t in $TARGETS; do rm -rf "${CORPUS:?}/$t"; done
fi

# 4. Build every target: release, debug assertions and overflow checks on,
#    AddressSanitizer, SanitizerCoverage with compare tracing.
echo "== building fuzz targets"
(cd "$HERE" && cargo fuzz build --sanitizer address --target-dir "$TARGET_DIR")
BIN_DIR="$TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release"

# 5. A bounded run of each target.
# Smaller ASan quarantine: RSS then measures the program, not freed memory
# kept for use-after-free detection (no unsafe code here to need it).
export ASAN_OPTIONS="quarantine_size_mb=16${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
# A failed check prints its Rust backtrace before libFuzzer's crash report.
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
mkdir -p "$LOGS"
failed=""
summary=""
for t in $TARGETS; do
    mkdir -p "$CORPUS/$t" "$ARTIFACTS/$t"
    log="$LOGS/$t.log"
    args=(
        "-max_total_time=$SECONDS_EACH"
        "-max_len=$MAX_LEN"
        "-rss_limit_mb=$RSS_MB"
        "-malloc_limit_mb=$MALLOC_MB"
        "-timeout=$TIMEOUT"
        "-dict=$HERE/edge.dict"
        "-artifact_prefix=$ARTIFACTS/$t/"
        "-print_final_stats=1"
    )
    [ -n "${FUZZ_SEED:-}" ] && args+=("-seed=$FUZZ_SEED")
    # shellcheck disable=SC2206 # FUZZ_ARGS is a list of flags
    [ -n "${FUZZ_ARGS:-}" ] && args+=($FUZZ_ARGS)
    echo "== $t: ${SECONDS_EACH}s, log $log"
    echo "   $BIN_DIR/$t ${args[*]} $CORPUS/$t $CORPUS/seeds/$t"
    start=$(date +%s)
    set +e
    "$BIN_DIR/$t" "${args[@]}" "$CORPUS/$t" "$CORPUS/seeds/$t" >"$log" 2>&1
    rc=$?
    set -e
    took=$(( $(date +%s) - start ))
    stats=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 |
        sed -E 's/.*(cov: [0-9]+).*(corp: [^ ]+).*(exec\/s: [0-9]+).*(rss: [0-9]+Mb).*/\1 \2 \3 \4/' || true)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" || true)
    line="$t: exit $rc in ${took}s, ${runs:-?} runs, $stats"
    echo "   $line"
    summary+="$line"$'\n'
    if [ $rc -ne 0 ]; then
        failed+=" $t"
        echo "!! $t failed: last lines of $log:"
        grep -E 'ERROR|panicked|SUMMARY|Test unit written|assertion' "$log" | head -20 || true
        tail -40 "$log"
    fi
done

echo "== summary"
printf '%s' "$summary"
if [ -n "$failed" ]; then
    echo "FAILED:$failed (inputs in $ARTIFACTS/<target>/, replay: $BIN_DIR/<target> <file>)"
    exit 1
fi
echo "no crash in:$(printf ' %s' $TARGETS)"
