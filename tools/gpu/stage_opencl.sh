#!/usr/bin/env bash
# Run on the build machine: builds this checkout with the opencl backend (no cuda) and
# stages what tools/gpu/opencl_nvidia.sh needs on the GPU machine into DEST (default
# /work/main/.ocl, git-ignored; name it in the device tool's `carry`):
#   DEST/bin  lla-info, lla-bench and the opencl + differential test programs
#   DEST/lib  liblla.so.0 and the shared libraries the GPU image may lack (ICD loader,
#             cmocka, OpenBLAS and its runtime, libgomp)
#   DEST/golden, DEST/COMMIT
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${1:-/work/main/.ocl}
GOLDEN=${LLA_GOLDEN_DIR:-$SRC/../shared/golden}
B=$SRC/build-ocl
cd "$SRC"
[ -d "$B" ] || meson setup "$B" -Dbuildtype=release -Dcuda=disabled -Dopencl=enabled -Dwerror=true >/dev/null
ninja -C "$B" -j2 >/dev/null
rm -rf "$DEST" && mkdir -p "$DEST/bin" "$DEST/lib" "$DEST/golden"
cp "$B"/tools/lla-info "$B"/tools/lla-bench "$B"/tests/diff/test_diff "$B"/tests/opencl/test_opencl_* "$DEST/bin/" 2>/dev/null || true
find "$DEST/bin" -name '*.p' -prune -exec rm -rf {} + ; rm -f "$DEST"/bin/*.a
cp -L "$B/liblla.so.0" "$DEST/lib/"
for l in $(ldd "$DEST"/bin/* "$B/liblla.so.0" | awk '/=> \//{print $3}' | sort -u); do
  case $(basename "$l") in libc.so*|libm.so*|libpthread*|libdl*|ld-linux*|liblla*|libgcc_s*|librt*) ;;
  *) cp -L "$l" "$DEST/lib/" ;; esac
done
cp -a "$GOLDEN/." "$DEST/golden/"
git -C "$SRC" rev-parse HEAD > "$DEST/COMMIT"
cp "$SRC/tools/gpu/opencl_nvidia.sh" "$DEST/"
du -sh "$DEST"; ls "$DEST/lib"
