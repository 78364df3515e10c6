#!/usr/bin/env bash
# Run on the GPU machine from DEST/src (see stage.sh): checks and benchmarks of the CUDA
# backend.  Stages (default: info test bench sdpa): info test sanitize sanitize_bwd fwdbwd
# bench sdpa ncu.
# Logs go to $OUT (the device tool's result folder) or /tmp/lla-gpu.
set -uo pipefail
G=$(cd "$(dirname "$0")/../../.." && pwd)
OUT=${OUT:-/tmp/lla-gpu}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$G/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export LLA_GOLDEN_DIR="$G/golden" CMOCKA_MESSAGE_OUTPUT=stdout PYTHONUNBUFFERED=1
stages="${*:-info test bench sdpa}"
rc=0
step() { echo "=== $*"; }
for s in $stages; do
  case $s in
  info)
    step info
    echo "commit $(cat "$G/COMMIT") dirty: $(cat "$G/DIRTY" | tr '\n' ' ')"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv
    nvcc --version | tail -2
    echo "SASS of liblla: $(cuobjdump -sass "$G/lib/liblla.so.0" | grep -c HMMA) HMMA, $(cuobjdump -sass "$G/lib/liblla.so.0" | grep -c LDSM) LDSM instructions"
    ;;
  test)
    step "test_cuda_probe + test_cuda"
    "$G/bin/test_cuda_probe" > "$OUT/test_probe.log" 2>&1 || rc=1
    tail -3 "$OUT/test_probe.log"
    timeout 300 "$G/bin/test_cuda" > "$OUT/test_cuda.log" 2>&1 || rc=1
    grep -E "rel err|OK|FAIL|PASSED|ERROR|error|SKIP" "$OUT/test_cuda.log" | grep -vE "^\s+(golden|mamba2|gdn).*rel err" | tail -40
    grep -cE "rel err" "$OUT/test_cuda.log"
    ;;
  sanitize)
    for tool in memcheck racecheck; do
      step "compute-sanitizer $tool (LLA_TEST_QUICK=1)"
      LLA_TEST_QUICK=1 timeout ${SAN_TIMEOUT:-240} compute-sanitizer --tool $tool --error-exitcode 3 \
        "$G/bin/test_cuda" > "$OUT/sanitize_$tool.log" 2>&1
      echo "exit $?"
      grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED" "$OUT/sanitize_$tool.log" | tail -4
    done
    ;;
  sanitize_bwd)
    step "compute-sanitizer memcheck on the backward tests (LLA_TEST_QUICK=1)"
    LLA_TEST_QUICK=1 LLA_TEST_FILTER='backward*' timeout ${SAN_TIMEOUT:-240} compute-sanitizer \
      --tool memcheck --error-exitcode 3 "$G/bin/test_cuda" > "$OUT/sanitize_bwd.log" 2>&1
    echo "exit $?"
    grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/sanitize_bwd.log" | tail -4
    ;;
  fwdbwd)
    step "cuda_bench --fwdbwd (both backward routes)"
    timeout ${FWDBWD_TIMEOUT:-300} "$G/bin/cuda_bench" --fwdbwd 2>&1 | tee "$OUT/fwdbwd.log" | grep -v '^csv'
    ;;
  bench)
    step cuda_bench
    timeout 300 "$G/bin/cuda_bench" 2>&1 | tee "$OUT/bench.log" | grep -v '^csv'
    ;;
  sdpa)
    step "FlashAttention-2 via PyTorch SDPA"
    timeout 200 python3 "$G/src/tools/gpu/sdpa_baseline.py" 2>&1 | tee "$OUT/sdpa.log" | grep -v '^csv'
    ;;
  ncu)
    step "ncu: forward kernels at T=8K (second call), decode kernel"
    M=gpu__time_duration.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,launch__occupancy_limit_registers,launch__registers_per_thread
    timeout 200 ncu --metrics $M --kernel-name regex:'summary|nodes|main' --launch-skip 3 \
      --launch-count 3 "$G/bin/cuda_bench" --T ${NCU_T:-8192} > "$OUT/ncu_fwd.log" 2>&1
    grep -E "kernel|gpu__time|sm__throughput|dram__|warps_active|occupancy_limit|registers" "$OUT/ncu_fwd.log" | sed 's/  */ /g' | head -40
    timeout 200 ncu --section SpeedOfLight --section WarpStateStats --section Occupancy \
      --kernel-name regex:'decode_kernel' --launch-skip 20 --launch-count 1 "$G/bin/cuda_bench" \
      --decode-only > "$OUT/ncu_decode.log" 2>&1
    grep -vE "^==PROF==|^ *$|----" "$OUT/ncu_decode.log" | sed 's/  */ /g' | grep -E "Duration|Throughput|Stall|Occupancy|Warp Cycles|Registers|Block Limit|Eligible|Active Warps" | head -30
    ;;
  ncu_main)
    step "ncu: main kernel details at T=8K"
    timeout 200 ncu --section SpeedOfLight --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis \
      --kernel-name regex:main_kernel --launch-skip 1 --launch-count 1 "$G/bin/cuda_bench" --T 8192 > "$OUT/ncu_main.log" 2>&1
    grep -vE "^==PROF==|^ *$|----" "$OUT/ncu_main.log" | sed 's/  */ /g' | grep -E "Duration|Throughput|Stall|Occupancy|Warp Cycles|Registers|Block Limit|Issued|Eligible|L1|L2|DRAM" | head -50
    ;;
  esac
done
exit $rc
