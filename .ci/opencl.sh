#!/usr/bin/env bash
# OpenCL CI: the opencl backend on PoCL (the portable CPU OpenCL driver), for real.
#   1. installs pocl-opencl-icd, ocl-icd-opencl-dev, opencl-headers (and clinfo) if missing
#   2. lists the OpenCL platforms and devices (clinfo -l): there must be one
#   3. release build with -Dopencl=enabled -Werror; runs the opencl suite (and the
#      differential driver, when the tree has one) with LLA_REQUIRE_OPENCL=1, so a
#      missing device fails instead of skipping
#   4. the opencl suite again under AddressSanitizer + UBSan (leak detection on)
#   5. prints lla-info and one lla-time run (a record, never a pass/fail)
# PoCL compiles kernels on first use (about 10 s of CPU for the forward kernel); each
# build's tests keep them in <build>/pocl-cache (POCL_CACHE_DIR, set by the test
# environment), and the tests run one at a time so that only the first one compiles.
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${LLA_CI_JOBS:-2}
script_start=$SECONDS
timings=()
failed=()
testlogs=()
# phase NAME COMMAND...: runs a step, records its wall time, and on failure records it and
# goes on.  (errexit does not apply inside a tested function: steps use `|| return 1`.)
phase() {
    local name=$1 start=$SECONDS rc=0
    shift
    echo "=== $name"
    "$@" || rc=$?
    timings+=("$(printf '%-34s %4d s' "$name" $((SECONDS - start)))")
    [ $rc -eq 0 ] || failed+=("$name (rc $rc)")
}

install_packages() {
    local packages=(meson ninja-build pkg-config python3 gcc libcmocka-dev
        pocl-opencl-icd ocl-icd-opencl-dev opencl-headers clinfo)
    local missing=() p sudo=
    for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "all packages present: ${packages[*]}"
        return
    fi
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq || return 1
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || return 1
}

list_devices() {
    clinfo -l || return 1
    clinfo -l | grep -q "Device #" || { echo "no OpenCL device visible"; return 1; }
}

# build_and_test DIR MESON_OPTIONS...: fresh build, then the opencl suite and, if the tree
# has it, the differential driver.
build_and_test() {
    local dir=$1 tests
    shift
    rm -rf "$dir"
    meson setup "$dir" -Dwerror=true -Dopencl=enabled "$@" || return 1
    ninja -C "$dir" -j"$JOBS" || return 1
    testlogs+=("$dir/meson-logs/testlog.json")
    tests=(--suite opencl)
    if meson test -C "$dir" --list 2>/dev/null | grep -q "diff_backends"; then
        tests+=(diff_backends)
    fi
    LLA_REQUIRE_OPENCL=1 meson test -C "$dir" -v --print-errorlogs "${tests[@]}" || return 1
}

record() {
    export POCL_CACHE_DIR="$PWD/build-ci-opencl/pocl-cache"
    ./build-ci-opencl/tools/lla-info || return 1
    echo "load: $(cat /proc/loadavg 2>/dev/null || echo unknown); $(nproc) cores"
    ./build-ci-opencl/tools/lla-time --backend opencl --reps 3 || return 1
}

# "N passed, N failed" over this script's meson test logs.
summarize() {
    python3 - "$@" <<'PY'
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        print(f"(no test log {path})")
        failed += 1
        continue
    for line in lines:
        if not line.strip():
            continue
        result = json.loads(line).get("result", "")
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:
            failed += 1
print(f"opencl: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
PY
}

if command -v apt-get >/dev/null; then
    phase "install packages" install_packages
    if [ ${#failed[@]} -ne 0 ]; then exit 1; fi
fi
phase "OpenCL devices" list_devices
phase "opencl (release, -Werror)" build_and_test build-ci-opencl
ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
    phase "opencl (ASan + UBSan)" build_and_test build-ci-opencl-asan \
    -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args=-fno-sanitize-recover=undefined
phase "record: lla-info, lla-time" record

echo "=== opencl timings"
printf '%s\n' "${timings[@]}"
printf '%-34s %4d s\n' "total" $((SECONDS - script_start))
[ ${#testlogs[@]} -eq 0 ] || summarize "${testlogs[@]}"
if [ ${#failed[@]} -ne 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "opencl CI passed"
