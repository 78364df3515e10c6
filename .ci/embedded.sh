#!/usr/bin/env bash
# Embedded CI: every cross target, built warning-free with -Werror, tests under emulation.
#   aarch64-linux-gnu   hosted, the full test suite under qemu-aarch64 (meson exe_wrapper)
#   cortex-m4, -m7      freestanding (-Os): MCU decode test + symbol check, qemu-system-arm
#   riscv32             freestanding (-Os): the same, qemu-system-riscv32
# Fails if any build or test fails, or if the decode path's text on Cortex-M4 (-Os) grows
# past its budget (docs/embedded.md says how it is measured and why these numbers):
#   -Derror_messages=false (the small-firmware configuration)  LLA_M4_DECODE_TEXT_BUDGET
#   default, with formatted error messages                      LLA_M4_DECODE_TEXT_BUDGET_MESSAGES
set -euo pipefail
cd "$(dirname "$0")/.."

M4_BUDGET=${LLA_M4_DECODE_TEXT_BUDGET:-8192}
M4_BUDGET_MESSAGES=${LLA_M4_DECODE_TEXT_BUDGET_MESSAGES:-11520}
JOBS=${LLA_CI_JOBS:-2}
script_start=$SECONDS
timings=()
failed=()
# phase NAME COMMAND...: runs a step, records its wall time, and on failure records it and
# goes on with the other targets.  (errexit does not apply inside a tested function, so
# the steps check their commands with `|| return 1`.)
phase() {
    local name=$1 start=$SECONDS rc=0
    shift
    echo "=== $name"
    "$@" || rc=$?
    timings+=("$(printf '%-28s %4d s' "$name" $((SECONDS - start)))")
    [ $rc -eq 0 ] || failed+=("$name (rc $rc)")
}

install_packages() {
    local packages=(meson ninja-build pkg-config python3 gcc
        gcc-aarch64-linux-gnu qemu-user libcmocka-dev:arm64
        gcc-arm-none-eabi picolibc-arm-none-eabi qemu-system-arm
        gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc)
    local missing=() p
    for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "all packages present"
        return
    fi
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    dpkg --print-foreign-architectures | grep -qx arm64 || $sudo dpkg --add-architecture arm64
    $sudo apt-get update -qq || return 1
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || return 1
}

# build TARGET CROSSFILE MESON_OPTIONS...: fresh build dir, build, run its tests.
build_and_test() {
    local target=$1 cross=$2 dir=build-ci-$1
    shift 2
    rm -rf "$dir"
    local log
    log=$(mktemp)
    meson setup "$dir" --cross-file "tools/cross/$cross" -Dwerror=true "$@" >"$log" 2>&1 ||
        { cat "$log"; rm -f "$log"; return 1; }
    rm -f "$log"
    ninja -C "$dir" -j"$JOBS" || return 1
    local rc=0
    meson test -C "$dir" --num-processes "$JOBS" --print-errorlogs || rc=1
    # The MCU test's own summary (per case errors), also on success.
    if [ -f "$dir/meson-logs/testlog.txt" ]; then
        grep -E "MCU decode test|state [0-9]+ B: out|refused with|stack used by|^mcu-decode:" \
            "$dir/meson-logs/testlog.txt" || true
    fi
    return $rc
}

if command -v apt-get >/dev/null; then
    phase "install packages" install_packages
    if [ ${#failed[@]} -ne 0 ]; then exit 1; fi
fi

phase "aarch64 (qemu-user)" build_and_test aarch64 aarch64-linux-gnu.ini -Dcuda=disabled -Dopencl=disabled
phase "cortex-m4 (mps2-an386)" build_and_test m4 cortex-m4.ini -Dfreestanding=true -Dbuildtype=minsize
phase "cortex-m4 terse errors" build_and_test m4-terse cortex-m4.ini -Dfreestanding=true -Dbuildtype=minsize -Derror_messages=false
phase "cortex-m7 (mps2-an500)" build_and_test m7 cortex-m7.ini -Dfreestanding=true -Dbuildtype=minsize
phase "riscv32 (virt)" build_and_test rv32 riscv32.ini -Dfreestanding=true -Dbuildtype=minsize

sizes() {
    local rc=0 t
    for t in m7 rv32; do
        echo "--- $t"
        python3 tools/cross/decode-size.py "build-ci-$t/tests/embedded/decode-min.map" || rc=1
    done
    echo "--- cortex-m4, default (formatted error messages)"
    python3 tools/cross/decode-size.py build-ci-m4/tests/embedded/decode-min.map \
        --budget "$M4_BUDGET_MESSAGES" || rc=1
    echo "--- cortex-m4, -Derror_messages=false"
    python3 tools/cross/decode-size.py build-ci-m4-terse/tests/embedded/decode-min.map \
        --budget "$M4_BUDGET" || rc=1
    return $rc
}
phase "decode path size + M4 budget" sizes

echo "=== embedded CI timings"
printf '%s\n' "${timings[@]}"
echo "total: $((SECONDS - script_start)) s"
if [ ${#failed[@]} -ne 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "embedded CI passed"
