#!/usr/bin/env bash
# Run on the GPU machine from the repository root, after stage_opencl.sh and with its
# folder carried (default .ocl): the opencl backend on NVIDIA's OpenCL driver.  Points the
# carried ICD loader at the driver's libnvidia-opencl (the image may lack the .icd file),
# then lla-info, the opencl test programs, the differential driver and lla-bench
# (opencl next to openmp on the same problem).  Logs go to $OUT (or /tmp/lla-ocl).
set -uo pipefail
G=$(cd "${1:-.ocl}" && pwd)
OUT=${OUT:-/tmp/lla-ocl}; mkdir -p "$OUT"
export LD_LIBRARY_PATH="$G/lib:${LD_LIBRARY_PATH:-}"
export LLA_GOLDEN_DIR="$G/golden" CMOCKA_MESSAGE_OUTPUT=stdout LLA_REQUIRE_OPENCL=1
echo "=== commit $(cat "$G/COMMIT")"; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "=== ICD files: $(ls /etc/OpenCL/vendors 2>&1 | tr '\n' ' ')"
lib=$(find /usr/local/nvidia /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib -maxdepth 3 -name 'libnvidia-opencl.so*' 2>/dev/null | sort | head -1)
echo "=== NVIDIA OpenCL driver library: ${lib:-none found}"
if [ -n "$lib" ]; then
  mkdir -p /tmp/lla-icd && echo "$lib" > /tmp/lla-icd/nvidia.icd
  export OCL_ICD_VENDORS=/tmp/lla-icd
fi
step() { echo "=== $*"; }
step lla-info; "$G/bin/lla-info" 2>&1 | tee "$OUT/lla-info.log"
rc=0
for t in "$G"/bin/test_opencl_*; do
  n=$(basename "$t"); step "$n"
  LLA_BACKEND=opencl timeout 300 "$t" > "$OUT/$n.log" 2>&1; r=$?; [ $r -ne 0 ] && rc=1
  echo "exit $r"; grep -E "^\[  (PASSED|FAILED|  SKIPPED) \]|^\[==========\]" "$OUT/$n.log" | tail -4
done
step test_diff; timeout 400 "$G/bin/test_diff" > "$OUT/test_diff.log" 2>&1; r=$?; [ $r -ne 0 ] && rc=1
echo "exit $r"; grep -E "opencl|PASSED|FAILED" "$OUT/test_diff.log" | tail -6
step "lla-bench forward T=16K, B=1 H=8 G=1 K=128 V=64 chunk 64 f32 mamba2 weak"
for be in opencl openmp; do
  "$G/bin/lla-bench" --backend $be --T 16K --H 8 --K 128 --V 64 --mode forward,fwdbwd,decode --pos 1K,1M --steps 256 \
    --reps 5 --warmup 2 --no-scalar --no-linear --no-gemm --csv "$OUT/bench_$be.csv" 2>&1 | tail -12
done
exit $rc
