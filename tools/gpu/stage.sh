#!/usr/bin/env bash
# Run on the build machine (nvcc, no GPU needed): builds a release build of this checkout
# and stages binaries, libraries, sources and golden files into DEST (default
# /work/main/.gpu), the folder the device tool carries to the GPU machine.
#   DEST/bin   test_cuda, test_cuda_probe, cuda_bench
#   DEST/lib   liblla.so.0, libcmocka.so.0, libcudart.so.13 (the GPU image may lack cmocka)
#   DEST/src   the sources (scripts run from here), DEST/golden the golden vectors
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${1:-/work/main/.gpu}
GOLDEN=${LLA_GOLDEN_DIR:-$SRC/../shared/golden}
cd "$SRC"
[ -d build-gpu ] || meson setup build-gpu -Dwerror=true -Dbuildtype=release >/dev/null
ninja -C build-gpu -j2
mkdir -p "$DEST/bin" "$DEST/lib" "$DEST/golden"
rm -rf "$DEST/src" "$DEST/golden" && mkdir -p "$DEST/src" "$DEST/golden"
tar -C "$SRC" --exclude './build*' --exclude ./.git -cf - . | tar -C "$DEST/src" -xf -
cp build-gpu/tests/cuda/test_cuda build-gpu/tests/cuda/test_cuda_probe build-gpu/tools/gpu/cuda_bench "$DEST/bin/"
cp -L build-gpu/liblla.so.0 "$DEST/lib/"
cp -L "$(ldconfig -p | awk '/libcmocka.so.0 /{print $NF; exit}')" "$DEST/lib/libcmocka.so.0"
cp -L "$(ldd build-gpu/liblla.so.0 | awk '/libcudart.so/{print $3}')" "$DEST/lib/"
cp -a "$GOLDEN/." "$DEST/golden/"
git -C "$SRC" rev-parse HEAD > "$DEST/COMMIT"
git -C "$SRC" status --porcelain | head -5 > "$DEST/DIRTY"
du -sh "$DEST"
