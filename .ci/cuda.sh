#!/usr/bin/env bash
# CI area step of the CUDA backend (CI has nvcc but no GPU).  When nvcc is present, the
# release build (build-ci) must contain the cuda backend; cuda_probe must pass and
# test_cuda must skip (exit 77) with its "no CUDA device: ..." reason, or pass where a GPU
# exists.  GPU runs themselves are tools/gpu/run_all.sh on a GPU machine.
set -euo pipefail
if ! command -v nvcc >/dev/null 2>&1; then
    echo "no nvcc on PATH: the CUDA backend is not built on this machine (nothing to check)"
    exit 0
fi
nvcc --version | tail -1
if [ ! -x build-ci/tests/cuda/test_cuda ]; then
    echo "nvcc is present but build-ci has no tests/cuda/test_cuda: the CUDA backend was not built"
    exit 1
fi
build-ci/tools/lla-info | grep -i cuda || { echo "lla-info does not list the cuda backend"; exit 1; }
build-ci/tests/cuda/test_cuda_probe | tail -4
set +e
out=$(LLA_GOLDEN_DIR="${LLA_GOLDEN_DIR:-../shared/golden}" build-ci/tests/cuda/test_cuda 2>&1)
rc=$?
set -e
echo "$out" | tail -5
if [ "$rc" -eq 77 ]; then
    if ! echo "$out" | grep -q "no CUDA device"; then
        echo "test_cuda skipped without the expected 'no CUDA device' reason"
        exit 1
    fi
    echo "test_cuda: skipped, no GPU on this machine (expected on CI)"
    exit 0
fi
exit "$rc"
