#!/usr/bin/env bash
# Area step "fuzz": builds the libFuzzer targets of tests/fuzz with clang
# (-fsanitize=fuzzer,address,undefined; the core and the scalar backend are instrumented
# too) and runs each for a bounded time on a scratch copy of its committed corpus.
# Fails on any crash, sanitizer report, violated property, timeout or out-of-memory.
# Without a clang that can link libFuzzer it prints a SKIP line and succeeds.
#
#   FUZZ_SECONDS   seconds per target (default 20)
#   FUZZ_TARGETS   space-separated subset (default: all)
#   FUZZ_DIR       build / scratch directory (default build-fuzz)
#   CC_FUZZ        the clang to use (default: clang, then clang-14)
# Local long runs: FUZZ_SECONDS=300 bash .ci/fuzz.sh  (new corpus entries land in
# $FUZZ_DIR/corpus/<target>; crashes in $FUZZ_DIR/artifacts/).
set -uo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${FUZZ_SECONDS:-20}
TARGETS=${FUZZ_TARGETS:-"fuzz_problem fuzz_state fuzz_levels"}
DIR=${FUZZ_DIR:-build-fuzz}

CC_FUZZ=${CC_FUZZ:-}
if [ -z "$CC_FUZZ" ]; then
    for c in clang clang-14; do
        if command -v "$c" >/dev/null 2>&1; then CC_FUZZ=$c; break; fi
    done
fi
probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT
if [ -z "$CC_FUZZ" ]; then
    echo "fuzz: SKIP (no clang found; libFuzzer needs clang with compiler-rt)"
    exit 0
fi
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
    > "$probe_dir/probe.c"
if ! "$CC_FUZZ" -fsanitize=fuzzer,address,undefined "$probe_dir/probe.c" -o "$probe_dir/probe" \
    >/dev/null 2>&1; then
    echo "fuzz: SKIP ($CC_FUZZ cannot link -fsanitize=fuzzer; install libclang-rt-<version>-dev)"
    exit 0
fi

echo "fuzz: $("$CC_FUZZ" --version | head -n 1), $SECONDS_PER_TARGET s per target"
rm -rf "$DIR/obj"
mkdir -p "$DIR/obj" "$DIR/artifacts"
CFLAGS=(-std=c99 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Wpedantic -Werror
        -fsanitize=address,undefined -fno-sanitize-recover=undefined
        -Iinclude -Isrc -Itests/fuzz -DLLA_FUZZ_LIBFUZZER)
objs=()
for src in src/*.c backends/scalar/*.c tests/fuzz/fuzz_util.c; do
    obj="$DIR/obj/$(echo "$src" | tr '/' '_').o"
    "$CC_FUZZ" "${CFLAGS[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj" || exit 1
    objs+=("$obj")
done

failed=()
for target in $TARGETS; do
    if [ ! -f "tests/fuzz/$target.c" ]; then
        echo "fuzz: unknown target $target"
        failed+=("$target (unknown)")
        continue
    fi
    "$CC_FUZZ" "${CFLAGS[@]}" -fsanitize=fuzzer "tests/fuzz/$target.c" "${objs[@]}" -lm -lpthread \
        -o "$DIR/$target" || exit 1
    # Scratch corpus: libFuzzer adds new inputs to its first directory; the committed
    # corpus and regressions are read-only inputs.
    mkdir -p "$DIR/corpus/$target"
    seeds=("tests/fuzz/corpus/$target")
    [ -d "tests/fuzz/regressions/$target" ] && seeds+=("tests/fuzz/regressions/$target")
    echo
    echo "=== fuzz: $target for $SECONDS_PER_TARGET s"
    # One in-process fuzzer per target (one core; no -jobs/-workers fork mode, whose
    # output would go to fuzz-N.log files instead of the CI log).
    log="$DIR/$target.log"
    ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
        "$DIR/$target" "$DIR/corpus/$target" "${seeds[@]}" \
            -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
            -max_len=4096 -print_final_stats=1 \
            -artifact_prefix="$DIR/artifacts/$target-" >"$log" 2>&1
    rc=$?
    if [ "$rc" -ne 0 ]; then tail -n 200 "$log"; else tail -n 20 "$log"; fi
    if [ "$rc" -ne 0 ]; then
        echo "=== fuzz: $target FAILED (rc $rc); reproduce with: $DIR/$target $DIR/artifacts/$target-*"
        failed+=("$target (rc $rc)")
    else
        echo "=== fuzz: $target passed"
    fi
done

if [ ${#failed[@]} -ne 0 ]; then
    printf 'fuzz: FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "fuzz: all targets passed"
