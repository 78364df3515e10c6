/*
 * kernels_mma.cu - tensor-core forward for log-linear Mamba-2, weak hierarchy, 16-bit
 * storage (bf16 or fp16; operands are bf16 on the tensor cores, accumulation fp32).
 *
 * Sequences are cut into blocks of 256 tokens (LLA_MMA_BLOCK), blocks into tiles of 64.
 * For t and s in one block the pair's level is bit_length(t ^ s) <= 8; for s in block js
 * and t in block jt the level is 9 + bit_length(jt ^ js) - 1: the Fenwick decomposition at
 * block granularity.  Three kernels:
 *   1. summary  U_j = sum_{s in block j} exp(G_end(j) - G_s) k_s v_s^T  (per head, K x V)
 *   2. nodes    one pass over the blocks per state element: node(l, i) for even i is the
 *               sum of blocks [i 2^l, (i+1) 2^l) decayed to its end.  Each block index j
 *               completes exactly one such node (l = trailing zeros of j+1), stored in
 *               U_j's slot (in place).  Also the inclusive prefix of block decays (fp64).
 *   3. main     per (head, 64-token query tile): the masked quadratic term inside the
 *               block (tiles of 64 on mma.sync), then for each set bit l of the block
 *               index j the node ending at block ((j >> l) << l) - 1, read through the
 *               tensor cores and scaled per row by lambda[t, 9 + l] * decay.
 * No state is written per chunk per level: the only intermediates are one K x V summary
 * per 256-token block (bf16) and the scalar block decays.
 *
 * mma.sync.m16n8k16 (sm_80+) with ldmatrix; the same code runs on sm_80 and sm_90.
 */
#include "cuda_internal.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace {

constexpr int kBlock = LLA_MMA_BLOCK; /* tokens per Fenwick block */
constexpr int kTile = 64;             /* tokens per tensor-core tile */
constexpr int kVT = 64;               /* value columns per CTA */
constexpr int kThreads = 128;         /* 4 warps */
static_assert(kBlock == 4 * kTile, "four tiles per block");

/* ---------------------------------------------------------------- mma helpers */

__device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
/* c += a (16x16, row) * b (16x8, col), bf16 in, fp32 accumulate */
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
        "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

/* 16-byte asynchronous copy global -> shared; !valid writes zeros (src-size 0). */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* Lane addresses for ldmatrix (see the PTX fragment layouts):
 *  A 16x16 from X[m][k] (k contiguous):         row m = l%8 + ((l/8)%2)*8, col k = (l/16)*8
 *  two B 16x8 from Y[n][k] (k contiguous):      row n = l%8 + (l/16)*8,    col k = ((l/8)%2)*8
 *  two B 16x8 from Z[k][n] (n contiguous, .trans): row k = l%8 + ((l/8)%2)*8, col n = (l/16)*8
 *  A 16x16 from Z[k][m] (m contiguous, .trans): row k = l%8 + (l/16)*8,    col m = ((l/8)%2)*8 */

/* ---------------------------------------------------------------- loads */

/* 8 16-bit values (one 16-byte chunk) as bf16. */
template <bool kBf16> __device__ __forceinline__ uint4 as_bf16x8(uint4 raw) {
    if (kBf16) return raw;
    uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        __half2 h = *(__half2 *)&w[i];
        float2 f = __half22float2(h);
        w[i] = pack_bf16(f.x, f.y);
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
}

template <bool kBf16> __device__ __forceinline__ float ld16(const void *p, long long i) {
    if (kBf16) return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    return __half2float(((const __half *)p)[i]);
}
template <bool kBf16> __device__ __forceinline__ void st16x2(void *p, long long i, float a, float b) {
    if (kBf16) {
        *(__nv_bfloat162 *)((__nv_bfloat16 *)p + i) = __floats2bfloat162_rn(a, b);
    } else {
        *(__half2 *)((__half *)p + i) = __floats2half2_rn(a, b);
    }
}

template <bool kBf16>
__device__ __forceinline__ float load_g(const lla_mma_params &P, long long b, long long t, long long h) {
    long long i = b * P.g.s0 + t * P.g.s1 + h * P.g.s2;
    return P.g_f32 ? ((const float *)P.g.data)[i] : ld16<kBf16>(P.g.data, i);
}

/* rows [0, n) of a [rows][cols] 16-bit tile at src (row stride s1 elements, contiguous
 * columns) into dst (bf16, row stride ds); rows >= n are zero. */
template <bool kBf16>
__device__ __forceinline__ void load_tile(__nv_bfloat16 *dst, int ds, const uint16_t *src,
                                          long long s1, int n, int rows, int cols) {
    const int per_row = cols / 8;
    for (int c = threadIdx.x; c < rows * per_row; c += blockDim.x) {
        int r = c / per_row, c8 = (c % per_row) * 8;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (r < n) v = as_bf16x8<kBf16>(*(const uint4 *)(src + r * s1 + c8));
        *(uint4 *)(dst + r * ds + c8) = v;
    }
}

/* Asynchronous copy of rows [0, n) of a [ROWS][COLS] 16-bit tile (row stride s1 elements)
 * into dst (row stride ds); rows >= n become zeros.  Each thread copies the chunks
 * c = threadIdx.x + i * blockDim.x; convert_tile visits the same chunks. */
template <int ROWS, int COLS>
__device__ __forceinline__ void issue_tile(__nv_bfloat16 *dst, int ds, const uint16_t *src,
                                           long long s1, int n) {
    constexpr int per_row = COLS / 8;
    for (int c = threadIdx.x; c < ROWS * per_row; c += blockDim.x) {
        const int r = c / per_row, c8 = (c % per_row) * 8;
        cp_async16(dst + r * ds + c8, r < n ? src + r * s1 + c8 : src, r < n);
    }
}
/* fp16 storage: the thread's own chunks of a landed tile, fp16 -> bf16 in place. */
template <bool kBf16, int ROWS, int COLS>
__device__ __forceinline__ void convert_tile(__nv_bfloat16 *dst, int ds) {
    if (kBf16) return;
    constexpr int per_row = COLS / 8;
    for (int c = threadIdx.x; c < ROWS * per_row; c += blockDim.x) {
        uint4 *q = (uint4 *)(dst + (c / per_row) * ds + (c % per_row) * 8);
        *q = as_bf16x8<false>(*q);
    }
}

/* In-place inclusive scan of x[0..n) (n <= 256) with 128 threads. */
__device__ void block_scan256(float *x, int n) {
    for (int off = 1; off < n; off <<= 1) {
        float a0 = 0.f, a1 = 0.f;
        int i0 = threadIdx.x, i1 = threadIdx.x + 128;
        if (i0 < n && i0 >= off) a0 = x[i0 - off];
        if (i1 < n && i1 >= off) a1 = x[i1 - off];
        __syncthreads();
        if (i0 < n) x[i0] += a0;
        if (i1 < n) x[i1] += a1;
        __syncthreads();
    }
}

/* Block-local inclusive cumulative log gate of tokens [t0, t0 + n) into gl[0..n);
 * tokens >= T count as g = 0. */
template <bool kBf16>
__device__ void block_gates(const lla_mma_params &P, float *gl, long long b, long long h,
                            long long t0, int n) {
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        gl[i] = t0 + i < P.seqlen ? load_g<kBf16>(P, b, t0 + i, h) : 0.f;
    __syncthreads();
    block_scan256(gl, n);
}

/* ---------------------------------------------------------------- 1. summaries */

template <int DK>
__host__ __device__ constexpr int summary_stage_elems() {
    return kTile * (DK + 8) + kTile * (kVT + 8); /* k tile + v tile, bf16 */
}

template <int DK, bool kBf16>
__global__ void __launch_bounds__(kThreads) summary_kernel(const lla_mma_params P) {
    constexpr int KS = DK + 8, VS = kVT + 8; /* padded smem rows: no ldmatrix conflicts */
    constexpr int MT = DK / 64;               /* m16 tiles per warp (DK / 4 warps / 16) */
    constexpr int STAGE = summary_stage_elems<DK>();
    extern __shared__ __align__(16) unsigned char smem[];
    __nv_bfloat16 *stage = (__nv_bfloat16 *)smem; /* 2 stages: [k tile | v tile] */
    float *gl = (float *)(stage + 2 * STAGE);
    const int j = blockIdx.x, vt = blockIdx.z;
    const long long bh = blockIdx.y, b = bh / P.heads, h = bh % P.heads;
    const long long hq = h / (P.heads / P.qk_heads);
    const long long t0 = (long long)j * kBlock;
    const int nreal = (int)min((long long)kBlock, P.seqlen - t0);
    const int nsub = (nreal + kTile - 1) / kTile;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const uint16_t *kbase = (const uint16_t *)P.k.data + b * P.k.s0 + hq * P.k.s2;
    const uint16_t *vbase = (const uint16_t *)P.v.data + b * P.v.s0 + h * P.v.s2 + vt * kVT;

    auto issue = [&](int sub) {
        __nv_bfloat16 *st = stage + (sub & 1) * STAGE;
        const long long ts = t0 + sub * kTile;
        const int n = min(kTile, nreal - sub * kTile);
        issue_tile<kTile, DK>(st, KS, kbase + ts * P.k.s1, P.k.s1, n);
        issue_tile<kTile, kVT>(st + kTile * KS, VS, vbase + ts * P.v.s1, P.v.s1, n);
        cp_async_commit();
    };
    issue(0);
    block_gates<kBf16>(P, gl, b, h, t0, kBlock); /* overlaps the first copy */
    const float gend = gl[kBlock - 1];
    if (vt == 0) /* the main kernel reads these instead of scanning again */
        for (int i = threadIdx.x; i < kBlock; i += blockDim.x)
            P.gates[((size_t)bh * P.nblk + j) * kBlock + i] = gl[i];

    float acc[MT][8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
            for (int x = 0; x < 4; ++x) acc[mt][nt][x] = 0.f;

    for (int sub = 0; sub < nsub; ++sub) {
        if (sub + 1 < nsub) {
            issue(sub + 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __nv_bfloat16 *ks = stage + (sub & 1) * STAGE, *ws = ks + kTile * KS;
        convert_tile<kBf16, kTile, DK>(ks, KS);
        /* own chunks of the v tile: w_s v_s with w_s = exp(G_end - G_s) <= 1, as bf16 */
        for (int c = threadIdx.x; c < kTile * (kVT / 8); c += blockDim.x) {
            const int r = c / (kVT / 8);
            uint4 *q = (uint4 *)(ws + r * VS + (c % (kVT / 8)) * 8);
            const float w = __expf(gend - gl[sub * kTile + r]);
            const uint4 raw = *q;
            const uint32_t in[4] = {raw.x, raw.y, raw.z, raw.w};
            uint32_t out[4];
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                float2 f;
                if (kBf16)
                    f = __bfloat1622float2(*(const __nv_bfloat162 *)&in[x]);
                else
                    f = __half22float2(*(const __half2 *)&in[x]);
                out[x] = pack_bf16(w * f.x, w * f.y);
            }
            *q = make_uint4(out[0], out[1], out[2], out[3]);
        }
        __syncthreads();
        /* U[d][v] += sum_tok K[tok][d] W[tok][v]: A = K^T (trans from ks), B = W (trans) */
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk) {
            uint32_t af[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                int row = kk * 16 + lane % 8 + (lane / 16) * 8;
                int col = warp * (DK / 4) + mt * 16 + ((lane / 8) % 2) * 8;
                ldsm_x4_t(af[mt], ks + row * KS + col);
            }
#pragma unroll
            for (int np = 0; np < 4; ++np) {
                uint32_t bf[4];
                int row = kk * 16 + lane % 8 + ((lane / 8) % 2) * 8;
                int col = np * 16 + (lane / 16) * 8;
                ldsm_x4_t(bf, ws + row * VS + col);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma16816(acc[mt][2 * np], af[mt], bf[0], bf[1]);
                    mma16816(acc[mt][2 * np + 1], af[mt], bf[2], bf[3]);
                }
            }
        }
        __syncthreads(); /* this stage is refilled two iterations later */
    }
    /* U -> nodes[bh][j][d][v] (bf16) */
    __nv_bfloat16 *dst = (__nv_bfloat16 *)P.nodes + ((size_t)bh * P.nblk + j) * DK * P.dv + vt * kVT;
    const int g = lane / 4, tig = lane % 4;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
            int d = warp * (DK / 4) + mt * 16 + g, v = nt * 8 + 2 * tig;
            *(__nv_bfloat162 *)(dst + (size_t)d * P.dv + v) =
                __floats2bfloat162_rn(acc[mt][nt][0], acc[mt][nt][1]);
            *(__nv_bfloat162 *)(dst + (size_t)(d + 8) * P.dv + v) =
                __floats2bfloat162_rn(acc[mt][nt][2], acc[mt][nt][3]);
        }
    if (threadIdx.x == 0 && vt == 0) P.blk_decay[bh * P.nblk + j] = gend;
}

/* ---------------------------------------------------------------- 2. nodes */

/* E consecutive elements per thread so the per-level bookkeeping is shared. */
template <int E> struct bf16_vec;
template <> struct bf16_vec<8> { typedef uint4 type; };
template <> struct bf16_vec<4> { typedef uint2 type; };
template <> struct bf16_vec<2> { typedef uint32_t type; };

template <int NLV, int E>
__global__ void __launch_bounds__(256) nodes_kernel(const lla_mma_params P, int nlevels) {
    typedef typename bf16_vec<E>::type vec_t;
    const long long bh = blockIdx.y;
    const long long elems = P.dk * P.dv;
    const long long e0 = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * E;
    if (blockIdx.x == 0 && threadIdx.x == 0) { /* inclusive prefix of block decays */
        double s = 0.0;
        for (int j = 0; j < P.nblk; ++j) {
            s += (double)P.blk_decay[bh * P.nblk + j];
            P.blk_cum[bh * P.nblk + j] = s;
        }
    }
    if (e0 >= elems) return;
    vec_t *u = (vec_t *)((__nv_bfloat16 *)P.nodes + (size_t)bh * P.nblk * elems + e0);
    const size_t stride = (size_t)elems / E; /* in vectors, from one block to the next */
    const float *dec = P.blk_decay + bh * P.nblk;
    float acc[NLV][E];
#pragma unroll
    for (int l = 0; l < NLV; ++l)
#pragma unroll
        for (int e = 0; e < E; ++e) acc[l][e] = 0.f;
    vec_t next = u[0];
    for (int j = 0; j < P.nblk; ++j) {
        float x[E];
        {
            const __nv_bfloat162 *h2 = (const __nv_bfloat162 *)&next;
#pragma unroll
            for (int e = 0; e < E / 2; ++e) {
                float2 f = __bfloat1622float2(h2[e]);
                x[2 * e] = f.x;
                x[2 * e + 1] = f.y;
            }
        }
        if (j + 1 < P.nblk) next = u[(size_t)(j + 1) * stride]; /* prefetch */
        const float a = __expf(dec[j]);
        const int tz = __ffs(j + 1) - 1; /* the node completed by block j */
        float nd[E];
#pragma unroll
        for (int e = 0; e < E; ++e) nd[e] = 0.f;
#pragma unroll
        for (int l = 0; l < NLV; ++l) {
            if (l < nlevels) {
#pragma unroll
                for (int e = 0; e < E; ++e) acc[l][e] = acc[l][e] * a + x[e];
                if (l == tz)
#pragma unroll
                    for (int e = 0; e < E; ++e) nd[e] = acc[l][e];
                if (l <= tz)
#pragma unroll
                    for (int e = 0; e < E; ++e) acc[l][e] = 0.f;
            }
        }
        vec_t out;
        {
            uint32_t *o32 = (uint32_t *)&out;
#pragma unroll
            for (int e = 0; e < E / 2; ++e) o32[e] = pack_bf16(nd[2 * e], nd[2 * e + 1]);
        }
        u[(size_t)j * stride] = out;
    }
}

/* ---------------------------------------------------------------- 3. main */

template <int DK>
__host__ __device__ constexpr int main_stage_elems() {
    /* a k tile + a v tile, or one node [DK][kVT + 8] */
    return kTile * (DK + 8) + kTile * (kVT + 8);
}
template <int DK>
__host__ __device__ constexpr size_t main_smem_fixed() {
    /* q tile | 2 stages | gates | column decays of the off-diagonal key tiles */
    return (size_t)kTile * (DK + 8) * 2 + (size_t)2 * main_stage_elems<DK>() * 2 + (size_t)kBlock * 4 +
           (size_t)3 * kTile * 4;
}

/* Work items of one CTA, in order: key tiles 0..qt of its own block, then one Fenwick node
 * per set bit of the block index.  Item it+1 is copied (cp.async) while item it computes. */
template <int DK, bool kBf16>
__global__ void __launch_bounds__(kThreads, 3) main_kernel(const lla_mma_params P) {
    constexpr int KS = DK + 8, VS = kVT + 8, KSTEPS = DK / 16;
    constexpr int STAGE = main_stage_elems<DK>();
    static_assert(DK * VS <= STAGE, "node fits a stage");
    extern __shared__ __align__(16) unsigned char smem[];
    __nv_bfloat16 *qs = (__nv_bfloat16 *)smem;
    __nv_bfloat16 *stage = qs + kTile * KS;
    float *gl = (float *)(stage + 2 * STAGE);
    float *colf = gl + kBlock; /* [3][kTile] */
    uint16_t *lam = (uint16_t *)(colf + 3 * kTile); /* [kTile][NL], raw 16-bit */
    const int NL = (int)P.levels;

    const int j = blockIdx.x / 4, qt = blockIdx.x % 4, vt = blockIdx.z;
    const long long bh = blockIdx.y, b = bh / P.heads, h = bh % P.heads;
    const long long hq = h / (P.heads / P.qk_heads);
    const long long tb = (long long)j * kBlock, tq0 = tb + qt * kTile;
    if (tq0 >= P.seqlen) return;
    const int nq = (int)min((long long)kTile, P.seqlen - tq0);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tig = lane % 4;
    const int nkey = qt + 1, nitems = nkey + __popc(j);
    const uint16_t *kbase = (const uint16_t *)P.k.data + b * P.k.s0 + hq * P.k.s2;
    const uint16_t *vbase = (const uint16_t *)P.v.data + b * P.v.s0 + h * P.v.s2 + vt * kVT;
    const __nv_bfloat16 *nbase = (const __nv_bfloat16 *)P.nodes + (size_t)bh * P.nblk * DK * P.dv + vt * kVT;

    /* the it-th item's node level (it >= nkey): the (it - nkey)-th set bit of j */
    auto node_level = [&](int it) {
        int m = it - nkey, l = 0;
        for (;; ++l)
            if ((j >> l) & 1) {
                if (m == 0) break;
                --m;
            }
        return l;
    };
    auto issue = [&](int it) {
        __nv_bfloat16 *st = stage + (it & 1) * STAGE;
        if (it < nkey) {
            const long long tk0 = tb + it * kTile;
            const int nk = (int)min((long long)kTile, P.seqlen - tk0);
            issue_tile<kTile, DK>(st, KS, kbase + tk0 * P.k.s1, P.k.s1, nk);
            issue_tile<kTile, kVT>(st + kTile * KS, VS, vbase + tk0 * P.v.s1, P.v.s1, nk);
        } else {
            const int l = node_level(it);
            const int e = ((j >> l) << l) - 1;
            issue_tile<DK, kVT>(st, VS, (const uint16_t *)(nbase + (size_t)e * DK * P.dv), P.dv, DK);
        }
        cp_async_commit();
    };

    /* q tile and the first item in flight while gates and lambda are read */
    issue_tile<kTile, DK>(qs, KS, (const uint16_t *)P.q.data + b * P.q.s0 + tq0 * P.q.s1 + hq * P.q.s2,
                          P.q.s1, nq);
    issue(0);
    for (int i = threadIdx.x; i < (qt + 1) * kTile; i += blockDim.x)
        gl[i] = P.gates[((size_t)bh * P.nblk + j) * kBlock + i];
    {
        const uint16_t *lsrc = (const uint16_t *)P.lam.data + b * P.lam.s0 + h * P.lam.s2;
        for (int e = threadIdx.x; e < kTile * NL; e += blockDim.x) {
            const int r = e / NL, l = e % NL;
            lam[e] = r < nq ? lsrc[(tq0 + r) * P.lam.s1 + l * P.lam.s3] : (uint16_t)0;
        }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < qt * kTile; e += blockDim.x) {
        const int kt = e / kTile;
        colf[e] = __expf(gl[kt * kTile + kTile - 1] - gl[e]);
    }

    /* this thread's two query rows (tile-local) and their block-local positions */
    const int r0 = warp * 16 + g, r1 = r0 + 8;
    const int p0 = qt * kTile + r0, p1 = qt * kTile + r1;
    const float gl0 = gl[p0], gl1 = gl[p1];
    auto lam_at = [&](int r, int l) { return l < NL ? ld16<kBf16>(lam, r * NL + l) : 0.f; };
    /* A fragments of this warp's 16 query rows are read from shared memory at each use
     * (keeping them in registers costs 32 registers). */
    const __nv_bfloat16 *qa = qs + (warp * 16 + lane % 8 + ((lane / 8) % 2) * 8) * KS + (lane / 16) * 8;

    float o[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
        for (int x = 0; x < 4; ++x) o[nt][x] = 0.f;

    for (int it = 0; it < nitems; ++it) {
        if (it + 1 < nitems) {
            issue(it + 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __nv_bfloat16 *st = stage + (it & 1) * STAGE;
        if (it == 0) convert_tile<kBf16, kTile, DK>(qs, KS);
        if (it < nkey) {
            convert_tile<kBf16, kTile, DK>(st, KS);
            convert_tile<kBf16, kTile, kVT>(st + kTile * KS, VS);
        }
        __syncthreads();

        float s[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
            for (int x = 0; x < 4; ++x) s[nt][x] = 0.f;

        if (it < nkey) {
            /* ---- key tile kt = it of the own block */
            const int kt = it;
            const __nv_bfloat16 *ks = st, *vs = st + kTile * KS;
#pragma unroll
            for (int kk = 0; kk < KSTEPS; ++kk) { /* 8 independent accumulators per step */
                uint32_t af[4];
                ldsm_x4(af, qa + kk * 16);
#pragma unroll
                for (int np = 0; np < 4; ++np) {
                    uint32_t bf[4];
                    ldsm_x4(bf, ks + (np * 16 + lane % 8 + (lane / 16) * 8) * KS + kk * 16 + ((lane / 8) % 2) * 8);
                    mma16816(s[2 * np], af, bf[0], bf[1]);
                    mma16816(s[2 * np + 1], af, bf[2], bf[3]);
                }
            }
            /* mask: lambda[t, level(t,s)] * exp(G_t - G_s), causal */
            if (kt == qt) {
#pragma unroll
                for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                    for (int x = 0; x < 4; ++x) {
                        const int r = x < 2 ? r0 : r1, pt = x < 2 ? p0 : p1;
                        const int ps = kt * kTile + nt * 8 + 2 * tig + (x & 1);
                        float coef = 0.f;
                        if (ps <= pt) {
                            const int lev = ps == pt ? 0 : 32 - __clz(pt ^ ps);
                            coef = lam_at(r, lev) * __expf((x < 2 ? gl0 : gl1) - gl[ps]);
                        }
                        s[nt][x] *= coef;
                    }
            } else {
                const int L = 6 + 32 - __clz(qt ^ kt);
                const float ref = gl[kt * kTile + kTile - 1];
                const float rs0 = lam_at(r0, L) * __expf(gl0 - ref);
                const float rs1 = lam_at(r1, L) * __expf(gl1 - ref);
                const float *cf = colf + kt * kTile;
#pragma unroll
                for (int nt = 0; nt < 8; ++nt) {
                    const float c0 = cf[nt * 8 + 2 * tig], c1 = cf[nt * 8 + 2 * tig + 1];
                    s[nt][0] *= rs0 * c0;
                    s[nt][1] *= rs0 * c1;
                    s[nt][2] *= rs1 * c0;
                    s[nt][3] *= rs1 * c1;
                }
            }
            /* o += P V */
#pragma unroll
            for (int kk = 0; kk < kTile / 16; ++kk) {
                uint32_t af[4];
                af[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
                af[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
                af[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                af[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
                for (int np = 0; np < 4; ++np) {
                    uint32_t bf[4];
                    ldsm_x4_t(bf, vs + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * VS + np * 16 + (lane / 16) * 8);
                    mma16816(o[2 * np], af, bf[0], bf[1]);
                    mma16816(o[2 * np + 1], af, bf[2], bf[3]);
                }
            }
        } else {
            /* ---- Fenwick node of level l: blocks [e + 1 - 2^l, e], e = ((j >> l) << l) - 1 */
            const int l = node_level(it);
            const int e = ((j >> l) << l) - 1;
            const float dec = (float)exp(P.blk_cum[bh * P.nblk + j - 1] - P.blk_cum[bh * P.nblk + e]);
            const __nv_bfloat16 *ns = st;
#pragma unroll
            for (int kk = 0; kk < KSTEPS; ++kk) {
                uint32_t af[4];
                ldsm_x4(af, qa + kk * 16);
#pragma unroll
                for (int np = 0; np < 4; ++np) {
                    uint32_t bf[4];
                    ldsm_x4_t(bf, ns + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * VS + np * 16 + (lane / 16) * 8);
                    mma16816(s[2 * np], af, bf[0], bf[1]);
                    mma16816(s[2 * np + 1], af, bf[2], bf[3]);
                }
            }
            const int L = 9 + l;
            const float f0 = lam_at(r0, L) * __expf(gl0) * dec;
            const float f1 = lam_at(r1, L) * __expf(gl1) * dec;
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) {
                o[nt][0] += f0 * s[nt][0];
                o[nt][1] += f0 * s[nt][1];
                o[nt][2] += f1 * s[nt][2];
                o[nt][3] += f1 * s[nt][3];
            }
        }
        __syncthreads(); /* this stage is refilled by the item after next */
    }

    /* ---- store scale * o */
    const float sc = P.scale;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
        const int v = vt * kVT + nt * 8 + 2 * tig;
        if (r0 < nq)
            st16x2<kBf16>(P.o, b * P.o_s0 + (tq0 + r0) * P.o_s1 + h * P.o_s2 + v, sc * o[nt][0],
                          sc * o[nt][1]);
        if (r1 < nq)
            st16x2<kBf16>(P.o, b * P.o_s0 + (tq0 + r1) * P.o_s1 + h * P.o_s2 + v, sc * o[nt][2],
                          sc * o[nt][3]);
    }
}

/* ---------------------------------------------------------------- host side */

int aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }
int rows_ok(const lla_tensor *t) {
    return t->strides[3] == 1 && t->strides[0] % 8 == 0 && t->strides[1] % 8 == 0 &&
           t->strides[2] % 8 == 0 && aligned16(t->data);
}

struct mma_layout {
    size_t nodes, decay, cum, gates, total;
};
int mma_layout_of(const lla_problem *p, mma_layout *m) {
    int64_t nblk = (p->seqlen + kBlock - 1) / kBlock, n;
    size_t nodes, decay, cum, gates;
    if (!lla__mul_ok(p->batch, p->heads, &n) || !lla__mul_ok(n, nblk, &n)) return 0;
    decay = lla__round_up64((size_t)n * 4);
    cum = lla__round_up64((size_t)n * 8);
    if (!lla__size_mul_ok((size_t)n, (size_t)kBlock * 4, &gates)) return 0;
    gates = lla__round_up64(gates);
    if (!lla__mul_ok(n, p->dk, &n) || !lla__mul_ok(n, p->dv, &n) ||
        !lla__size_mul_ok((size_t)n, 2, &nodes))
        return 0;
    nodes = lla__round_up64(nodes);
    m->nodes = 0;
    m->decay = nodes;
    m->cum = nodes + decay;
    m->gates = nodes + decay + cum;
    m->total = nodes + decay + cum + gates;
    return 1;
}

template <int DK, bool kBf16>
lla_status launch_all(lla_cuda_impl *impl, const lla_mma_params &P) {
    const unsigned bh = (unsigned)(P.batch * P.heads), vts = (unsigned)(P.dv / kVT);
    int nlevels = 1;
    while ((1LL << nlevels) <= P.nblk) ++nlevels;
    {
        const size_t smem = (size_t)2 * summary_stage_elems<DK>() * 2 + kBlock * 4;
        LLA_CU(cudaFuncSetAttribute(summary_kernel<DK, kBf16>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        summary_kernel<DK, kBf16><<<dim3((unsigned)P.nblk, bh, vts), kThreads, smem,
                                    impl->stream>>>(P);
        LLA_CU(cudaGetLastError());
    }
    {
        long long pairs = P.dk * P.dv / 2;
        const long long elems = 2 * pairs;
#define LLA_NODES(NLV, E)                                                                 \
    nodes_kernel<NLV, E><<<dim3((unsigned)((elems / E + 255) / 256), bh), 256, 0, impl->stream>>>( \
        P, nlevels)
        if (nlevels <= 4)
            LLA_NODES(4, 8);
        else if (nlevels <= 8)
            LLA_NODES(8, 8);
        else if (nlevels <= 12)
            LLA_NODES(12, 4);
        else if (nlevels <= 16)
            LLA_NODES(16, 4);
        else
            LLA_NODES(32, 2);
#undef LLA_NODES
        LLA_CU(cudaGetLastError());
    }
    {
        size_t smem = main_smem_fixed<DK>() + (size_t)kTile * P.levels * 2;
        LLA_CU(cudaFuncSetAttribute(main_kernel<DK, kBf16>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        /* four CTAs per SM need most of the unified L1/shared memory as shared */
        LLA_CU(cudaFuncSetAttribute(main_kernel<DK, kBf16>,
                                    cudaFuncAttributePreferredSharedMemoryCarveout, 100));
        main_kernel<DK, kBf16><<<dim3((unsigned)(4 * P.nblk), bh, vts), kThreads, smem,
                                 impl->stream>>>(P);
        LLA_CU(cudaGetLastError());
    }
    return LLA_OK;
}

} /* namespace */

int lla_cuda_mma_eligible(const lla_cuda_impl *impl, const lla_problem *p, lla_dtype dtype,
                          const lla_inputs *x, const lla_tensor *o, int has_initial, int has_final, char *why,
                          size_t why_len) {
    const char *no = NULL;
    mma_layout m;
    if (dtype != LLA_DTYPE_BF16 && dtype != LLA_DTYPE_F16) no = "tensors are not bf16/fp16";
    else if (p->variant != LLA_VARIANT_MAMBA2) no = "variant is not mamba2";
    else if (p->hierarchy != LLA_HIERARCHY_WEAK) no = "hierarchy is not weak";
    else if (has_initial || has_final) no = "initial or final state requested";
    else if (p->seq_offsets) no = "packed variable-length batch";
    else if (p->dk != 64 && p->dk != 128) no = "dk is not 64 or 128";
    else if (p->dv % kVT != 0) no = "dv is not a multiple of 64";
    else if (!rows_ok(&x->q) || !rows_ok(&x->k) || !rows_ok(&x->v) || !rows_ok(o))
        no = "q/k/v/o rows are not contiguous and 16-byte aligned";
    else if (p->seqlen / kBlock > (1LL << 28) || p->batch * p->heads > 65535 || p->dv / kVT > 65535)
        no = "grid too large";
    else if (main_smem_fixed<128>() + (size_t)kTile * p->levels * 2 > impl->smem_optin)
        no = "shared memory";
    else if (!mma_layout_of(p, &m))
        no = "workspace size overflows";
    if (no) {
        lla__snprintf(why, why_len, "tensor-core path not taken: %s", no);
        return 0;
    }
    return 1;
}

size_t lla_cuda_mma_workspace(const lla_problem *p) {
    mma_layout m;
    if (p->variant != LLA_VARIANT_MAMBA2 || p->hierarchy != LLA_HIERARCHY_WEAK ||
        (p->dk != 64 && p->dk != 128) || p->dv % kVT != 0 || p->seq_offsets)
        return 0;
    return mma_layout_of(p, &m) ? m.total : (size_t)-1;
}

lla_status lla_cuda_mma_forward(lla_cuda_impl *impl, lla_mma_params *mp, void *workspace) {
    mma_layout m;
    char *ws = (char *)workspace;
    lla_problem p;
    memset(&p, 0, sizeof p);
    p.batch = mp->batch;
    p.seqlen = mp->seqlen;
    p.heads = mp->heads;
    p.dk = mp->dk;
    p.dv = mp->dv;
    if (!mma_layout_of(&p, &m)) return lla__set_error(LLA_ERR_SHAPE, "cuda: workspace overflows");
    mp->nblk = (int)((mp->seqlen + kBlock - 1) / kBlock);
    mp->nodes = ws + m.nodes;
    mp->blk_decay = (float *)(ws + m.decay);
    mp->blk_cum = (double *)(ws + m.cum);
    mp->gates = (float *)(ws + m.gates);
    if (mp->dk == 128)
        return mp->is_bf16 ? launch_all<128, true>(impl, *mp) : launch_all<128, false>(impl, *mp);
    return mp->is_bf16 ? launch_all<64, true>(impl, *mp) : launch_all<64, false>(impl, *mp);
}
