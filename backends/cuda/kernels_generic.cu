/*
 * kernels_generic.cu - the portable CUDA path: every variant, hierarchy and dtype.
 *
 * Forward: one block per (sequence/head, slice of value columns) sweeps its sequence
 * chunk by chunk and carries the level states R in the workspace.  R is grouped for the
 * NEXT target p: slot L holds sum over s < p with level(p, s) == L of
 * Phi(p-1, s) c_s k_s v_s^T.  Level sets nest (a set that shares one level for target p
 * shares one level for every later target), so moving to a later target only relabels
 * whole slots, and the decoder layout (grouped for the LAST target p-1) converts into R
 * the same way.  Per chunk [p0, p1):
 *   o_t  = sum_{s in chunk, s<=t} lambda[t, level(t,s)] A[t,s] v_s
 *        + sum_{slots L} lambda[t, level(t, first source of L)] (qt_t . R_L)
 *   R'   = relabel(Phi(p1-1, p0-1) R) + sum_{s in chunk} (kt_s v_s^T into level(p1, s))
 * with A[t,s] = q_t^T Phi(t,s) k_s c_s, qt_t = Phi(t, p0-1)^T q_t, kt_s = Phi(p1-1,s) c_s k_s.
 * The last chunk groups for target p_end-1 instead and writes the final decoder state.
 * Arithmetic is float32 (float64 for F64 tensors) on the CUDA cores.
 *
 * Decode: one block per (sequence/head, value slice); every thread owns (row k, column v)
 * elements across all levels, so the cascade relabels in place without barriers.
 */
#include "cuda_internal.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace {

/* ---------------------------------------------------------------- element access */

template <typename T> struct io;
template <> struct io<float> {
    static __device__ __forceinline__ float ld(const void *p, long long i) {
        return ((const float *)p)[i];
    }
    static __device__ __forceinline__ void st(void *p, long long i, float x) {
        ((float *)p)[i] = x;
    }
};
template <> struct io<double> {
    static __device__ __forceinline__ double ld(const void *p, long long i) {
        return ((const double *)p)[i];
    }
    static __device__ __forceinline__ void st(void *p, long long i, double x) {
        ((double *)p)[i] = x;
    }
};
template <> struct io<__nv_bfloat16> {
    static __device__ __forceinline__ float ld(const void *p, long long i) {
        return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    }
    static __device__ __forceinline__ void st(void *p, long long i, float x) {
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(x);
    }
};
template <> struct io<__half> {
    static __device__ __forceinline__ float ld(const void *p, long long i) {
        return __half2float(((const __half *)p)[i]);
    }
    static __device__ __forceinline__ void st(void *p, long long i, float x) {
        ((__half *)p)[i] = __float2half_rn(x);
    }
};

__device__ __forceinline__ long long at(const lla_dview &x, long long b, long long t, long long h,
                                        long long d) {
    return b * x.s0 + t * x.s1 + h * x.s2 + d * x.s3;
}

/* g may be f32 while the other tensors are 16-bit. */
template <typename Tin>
__device__ __forceinline__ float load_gate(const lla_generic_params &P, long long i) {
    return P.g_f32 ? io<float>::ld(P.g.data, i) : (float)io<Tin>::ld(P.g.data, i);
}
template <typename Tin, typename Acc>
__device__ __forceinline__ Acc gate(const lla_generic_params &P, long long i) {
    return (Acc)load_gate<Tin>(P, i);
}
template <>
__device__ __forceinline__ double gate<double, double>(const lla_generic_params &P, long long i) {
    return io<double>::ld(P.g.data, i); /* keep full precision for F64 */
}

__device__ __forceinline__ float dexp(float x) { return expf(x); }
__device__ __forceinline__ double dexp(double x) { return exp(x); }

template <typename Acc> __device__ __forceinline__ Acc warp_sum(Acc x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

/* ---------------------------------------------------------------- levels (SPEC 1.2) */

__device__ __forceinline__ int dlevel(int hier, long long t, long long s) {
    if (s == t) return 0;
    if (hier == LLA_HIERARCHY_WEAK) return 64 - __clzll((unsigned long long)(t ^ s));
    int j = 0;
    while (((t >> j) - (s >> j)) > 1) ++j;
    return j + 1;
}

__device__ __forceinline__ long long dlevel_start(int hier, int l, long long t) {
    if (l <= 0) return t;
    if (hier == LLA_HIERARCHY_WEAK) return l >= 63 ? 0 : (t >> l) << l;
    if (l - 1 >= 62) return 0;
    long long a = (t >> (l - 1)) - 1;
    return a <= 0 ? 0 : a << (l - 1);
}

/* First source of decoder level l for target x (sources <= x), or -1 if empty. */
__device__ __forceinline__ long long first_of_decoder(int hier, int l, long long x) {
    if (x < 0) return -1;
    if (l == 0) return x;
    long long lo = dlevel_start(hier, l, x), hi = dlevel_start(hier, l - 1, x);
    return lo < hi ? lo : -1;
}

/* First source of carried slot l for next target p (sources < p), or -1 if empty. */
__device__ __forceinline__ long long first_of_carry(int hier, int l, long long p) {
    if (l == 0 || p <= 0) return -1;
    long long lo = dlevel_start(hier, l, p), hi = dlevel_start(hier, l - 1, p);
    return lo < hi ? lo : -1;
}

/* Given slot_map[l] (new level of old slot l, -1 if empty), the old slots that land in
 * level L form one range [src_lo[L], src_hi[L]] (levels only grow with the target). */
__device__ void build_ranges(const int *slot_map, int *src_lo, int *src_hi, int NL) {
    for (int L = 0; L < NL; ++L) {
        src_lo[L] = NL;
        src_hi[L] = -1;
    }
    for (int l = 0; l < NL; ++l) {
        int L = slot_map[l];
        if (L < 0 || L >= NL) continue;
        if (l < src_lo[L]) src_lo[L] = l;
        if (l > src_hi[L]) src_hi[L] = l;
    }
}

struct seq_range {
    long long tb, start, end;
};
__device__ __forceinline__ seq_range sequence_of(const lla_generic_params &P, long long b) {
    seq_range r;
    if (P.offsets) {
        r.tb = 0;
        r.start = P.offsets[b];
        r.end = P.offsets[b + 1];
    } else {
        r.tb = b;
        r.start = 0;
        r.end = P.seqlen;
    }
    return r;
}

/* Shared memory of the sweep, in units of Acc then ints. */
__host__ __device__ inline size_t sweep_smem_bytes(int C, int K, int VS, int NL, size_t acc) {
    size_t n = (size_t)3 * C * K + (size_t)C * C + (size_t)C * VS + (size_t)C * NL + 3u * C +
               (size_t)K * VS;
    size_t bytes = (n * acc + 15u) & ~(size_t)15u;
    return bytes + (size_t)NL * 8 + (size_t)NL * 4 * 3 + 16;
}

__host__ __device__ inline size_t decode_smem_bytes(int K, int VS, int NL, size_t acc) {
    size_t n = (size_t)2 * K + VS + NL + (size_t)NL * VS + (size_t)8 * VS;
    size_t bytes = (n * acc + 15u) & ~(size_t)15u;
    return bytes + (size_t)NL * 4 * 3 + 16;
}

/* ---------------------------------------------------------------- forward sweep */

template <typename Tin, typename Acc>
__global__ void __launch_bounds__(256) sweep_forward_kernel(const lla_generic_params P) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int C = P.chunk, VS = P.vslice;
    const int K = (int)P.dk, V = (int)P.dv, NL = (int)P.levels, H = (int)P.heads;
    const int hier = P.hierarchy;
    const bool gdn = P.variant == LLA_VARIANT_GDN;
    Acc *qt = (Acc *)smem;  /* [C][K] q, then Phi(t,p0-1)^T q        */
    Acc *kr = qt + C * K;   /* [C][K] k                                */
    Acc *kt = kr + C * K;   /* [C][K] Phi(p1-1,s) c_s k_s              */
    Acc *A = kt + C * K;    /* [C][C] q_t^T Phi(t,s) k_s c_s           */
    Acc *vv = A + C * C;    /* [C][VS]                                 */
    Acc *lam = vv + C * VS; /* [C][NL]                                 */
    Acc *gc = lam + C * NL; /* [C] chunk-local cumulative log gate     */
    Acc *ga = gc + C;       /* [C] log gate                            */
    Acc *bb = ga + C;       /* [C] beta                                */
    Acc *Rs = bb + C;       /* [K][VS] one carried slot, staged        */
    size_t acc_bytes = ((size_t)(3 * C * K + C * C + C * VS + C * NL + 3 * C + K * VS) *
                        sizeof(Acc) + 15u) & ~(size_t)15u;
    long long *slot_first = (long long *)(smem + acc_bytes);
    int *slot_map = (int *)(slot_first + NL);
    int *src_lo = slot_map + NL;
    int *src_hi = src_lo + NL;

    const long long bh = blockIdx.x, b = bh / H, h = bh % H;
    const long long hq = h / (H / P.qk_heads);
    const int v0 = blockIdx.y * VS;
    const int vn = min(VS, V - v0);
    const int tid = threadIdx.x, nthr = blockDim.x;
    const seq_range sr = sequence_of(P, b);
    const long long pbeg = P.positions ? P.positions[b] : 0;
    const size_t ls = (size_t)K * V; /* one level matrix */
    Acc *R = (Acc *)P.carry + (size_t)bh * NL * ls;
    const Acc *D0 = P.init_values ? (const Acc *)P.init_values + (size_t)bh * NL * ls : nullptr;
    Acc *Df = P.final_values ? (Acc *)P.final_values + (size_t)bh * NL * ls : nullptr;

    if (sr.start == sr.end) { /* empty sequence: the final state is the initial one */
        if (Df)
            for (int e = tid; e < NL * K * vn; e += nthr) {
                int l = e / (K * vn), r = e % (K * vn);
                size_t off = (size_t)l * ls + (size_t)(r / vn) * V + v0 + r % vn;
                Df[off] = D0 ? D0[off] : (Acc)0;
            }
        return;
    }

    /* Initial decoder state (target pbeg-1) -> carried slots for next target pbeg. */
    if (D0) {
        if (tid < NL) {
            long long f = first_of_decoder(hier, tid, pbeg - 1);
            slot_map[tid] = f >= 0 ? dlevel(hier, pbeg, f) : -1;
        }
        __syncthreads();
        if (tid == 0) build_ranges(slot_map, src_lo, src_hi, NL);
        __syncthreads();
        for (int e = tid; e < K * vn; e += nthr) {
            size_t off = (size_t)(e / vn) * V + v0 + e % vn;
            for (int L = NL - 1; L >= 0; --L) {
                Acc acc = 0;
                for (int l = src_lo[L]; l <= src_hi[L]; ++l)
                    if (slot_map[l] == L) acc += D0[(size_t)l * ls + off];
                R[(size_t)L * ls + off] = acc;
            }
        }
        __syncthreads();
    }

    for (long long c0 = sr.start; c0 < sr.end; c0 += C) {
        const int n = (int)min((long long)C, sr.end - c0);
        const long long p0 = pbeg + (c0 - sr.start), p1 = p0 + n;
        const bool last = c0 + n == sr.end;

        /* (a) load the chunk */
        for (int e = tid; e < C * K; e += nthr) {
            int i = e / K, d = e % K;
            Acc qv = 0, kv = 0;
            if (i < n) {
                qv = (Acc)io<Tin>::ld(P.q.data, at(P.q, sr.tb, c0 + i, hq, d)) * (Acc)P.scale;
                kv = (Acc)io<Tin>::ld(P.k.data, at(P.k, sr.tb, c0 + i, hq, d));
            }
            qt[e] = qv;
            kr[e] = kv;
        }
        for (int e = tid; e < C * VS; e += nthr) {
            int i = e / VS, j = e % VS;
            vv[e] = i < n && j < vn ? (Acc)io<Tin>::ld(P.v.data, at(P.v, sr.tb, c0 + i, h, v0 + j))
                                    : (Acc)0;
        }
        for (int e = tid; e < C * NL; e += nthr) {
            int i = e / NL, l = e % NL;
            lam[e] = i < n ? (Acc)io<Tin>::ld(P.lam.data, at(P.lam, sr.tb, c0 + i, h, l)) : (Acc)0;
        }
        if (tid < C) {
            ga[tid] = tid < n ? gate<Tin, Acc>(P, at(P.g, sr.tb, c0 + tid, h, 0)) : (Acc)0;
            bb[tid] = gdn && tid < n
                          ? (Acc)io<Tin>::ld(P.beta.data, at(P.beta, sr.tb, c0 + tid, h, 0))
                          : (Acc)0;
        }
        if (tid < NL) slot_first[tid] = first_of_carry(hier, tid, p0);
        __syncthreads();
        if (tid == 0) {
            Acc s = 0;
            for (int i = 0; i < C; ++i) {
                if (i < n) s += ga[i];
                gc[i] = s;
            }
        }
        __syncthreads();

        /* (b) A, qt, kt */
        if (!gdn) {
            for (int e = tid; e < C * C; e += nthr) {
                int i = e / C, j = e % C;
                Acc a = 0;
                if (j <= i && i < n) {
                    for (int d = 0; d < K; ++d) a += qt[i * K + d] * kr[j * K + d];
                    a *= dexp(gc[i] - gc[j]);
                }
                A[e] = a;
            }
            __syncthreads();
            for (int e = tid; e < C * K; e += nthr) {
                int i = e / K;
                qt[e] = i < n ? qt[e] * dexp(gc[i]) : (Acc)0;
                kt[e] = i < n ? kr[e] * dexp(gc[n - 1] - gc[i]) : (Acc)0;
            }
        } else {
            const int warp = tid / 32, lane = tid % 32, nwarps = nthr / 32;
            for (int i = warp; i < C; i += nwarps) {
                for (int j = lane; j < C; j += 32) A[i * C + j] = 0;
                if (i >= n) {
                    for (int d = lane; d < K; d += 32) qt[i * K + d] = kt[i * K + d] = 0;
                    continue;
                }
                __syncwarp();
                /* u = q_i, walked back to the chunk start: u <- P_j u */
                for (int j = i; j >= 0; --j) {
                    Acc dot = 0;
                    for (int d = lane; d < K; d += 32) dot += qt[i * K + d] * kr[j * K + d];
                    dot = warp_sum(dot);
                    if (lane == 0) A[i * C + j] = bb[j] * dot;
                    Acc a = dexp(ga[j]), bj = bb[j];
                    for (int d = lane; d < K; d += 32)
                        qt[i * K + d] = a * (qt[i * K + d] - bj * kr[j * K + d] * dot);
                    __syncwarp();
                }
                /* w = beta_i k_i, carried forward to the chunk end: w <- P_r w */
                for (int d = lane; d < K; d += 32) kt[i * K + d] = bb[i] * kr[i * K + d];
                __syncwarp();
                for (int r = i + 1; r < n; ++r) {
                    Acc dot = 0;
                    for (int d = lane; d < K; d += 32) dot += kr[r * K + d] * kt[i * K + d];
                    dot = warp_sum(dot);
                    Acc a = dexp(ga[r]), br = bb[r];
                    for (int d = lane; d < K; d += 32)
                        kt[i * K + d] = a * (kt[i * K + d] - br * kr[r * K + d] * dot);
                    __syncwarp();
                }
            }
        }
        __syncthreads();

        /* (c) outputs: intra pairs, then each live slot staged through shared memory */
        {
            constexpr int kMaxOut = 8; /* C * VS <= 64 * 32 outputs over 256 threads */
            Acc out[kMaxOut];
#pragma unroll
            for (int u = 0; u < kMaxOut; ++u) {
                const int e = tid + u * nthr;
                out[u] = 0;
                if (e < n * vn) {
                    const int i = e / vn, j = e % vn;
                    const long long pt = p0 + i;
                    Acc acc = 0;
                    for (int s = 0; s <= i; ++s)
                        acc += lam[i * NL + dlevel(hier, pt, p0 + s)] * A[i * C + s] * vv[s * VS + j];
                    out[u] = acc;
                }
            }
            for (int l = 1; l < NL; ++l) {
                const long long f = slot_first[l];
                if (f < 0) continue;
                for (int e = tid; e < K * vn; e += nthr)
                    Rs[(e / vn) * VS + e % vn] = R[(size_t)l * ls + (size_t)(e / vn) * V + v0 + e % vn];
                __syncthreads();
#pragma unroll
                for (int u = 0; u < kMaxOut; ++u) {
                    const int e = tid + u * nthr;
                    if (e < n * vn) {
                        const int i = e / vn, j = e % vn;
                        Acc dot = 0;
                        for (int d = 0; d < K; ++d) dot += qt[i * K + d] * Rs[d * VS + j];
                        out[u] += lam[i * NL + dlevel(hier, p0 + i, f)] * dot;
                    }
                }
                __syncthreads();
            }
#pragma unroll
            for (int u = 0; u < kMaxOut; ++u) {
                const int e = tid + u * nthr;
                if (e < n * vn) {
                    const int i = e / vn, j = e % vn;
                    io<Tin>::st(P.o, sr.tb * P.o_s0 + (c0 + i) * P.o_s1 + h * P.o_s2 + (v0 + j) * P.o_s3,
                                out[u]);
                }
            }
        }
        __syncthreads();
        if (last && !Df) break;

        /* (d) GDN: carry every live slot through the chunk's transitions P_p0..P_p1-1 */
        if (gdn) {
            for (int e = tid; e < NL * vn; e += nthr) {
                int l = e / vn, j = e % vn;
                if (slot_first[l] < 0) continue;
                Acc *col = R + (size_t)l * ls + v0 + j;
                for (int r = 0; r < n; ++r) {
                    Acc dot = 0;
                    for (int d = 0; d < K; ++d) dot += kr[r * K + d] * col[(size_t)d * V];
                    Acc a = dexp(ga[r]), br = bb[r];
                    for (int d = 0; d < K; ++d)
                        col[(size_t)d * V] = a * (col[(size_t)d * V] - br * kr[r * K + d] * dot);
                }
            }
            __syncthreads();
        }

        /* (e) relabel + add the chunk: for next target p1, or the last token p1-1 */
        {
            const long long X = last ? p1 - 1 : p1;
            Acc *dst = last ? Df : R;
            if (tid < NL) {
                long long f = slot_first[tid];
                slot_map[tid] = f >= 0 ? dlevel(hier, X, f) : -1;
            }
            __syncthreads();
            if (tid == 0) build_ranges(slot_map, src_lo, src_hi, NL);
            __syncthreads();
            const Acc dec = gdn ? (Acc)1 : dexp(gc[n - 1]);
            /* elements in batches so the loads of one level are in flight together */
            constexpr int kBatch = 8;
            for (int e0 = tid; e0 < K * vn; e0 += nthr * kBatch) {
                for (int L = NL - 1; L >= 0; --L) {
                    Acc acc[kBatch];
#pragma unroll
                    for (int u = 0; u < kBatch; ++u) acc[u] = 0;
                    for (int l = src_lo[L]; l <= src_hi[L]; ++l) {
                        if (slot_map[l] != L) continue;
#pragma unroll
                        for (int u = 0; u < kBatch; ++u) {
                            const int e = e0 + u * nthr;
                            if (e < K * vn)
                                acc[u] += R[(size_t)l * ls + (size_t)(e / vn) * V + v0 + e % vn];
                        }
                    }
                    long long lo = L == 0 ? X : dlevel_start(hier, L, X);
                    long long hi = L == 0 ? X + 1 : dlevel_start(hier, L - 1, X);
                    long long jlo = (lo > p0 ? lo : p0) - p0, jhi = (hi < p1 ? hi : p1) - p0;
#pragma unroll
                    for (int u = 0; u < kBatch; ++u) {
                        const int e = e0 + u * nthr;
                        if (e >= K * vn) continue;
                        const int d = e / vn, j = e % vn;
                        Acc a = acc[u] * dec;
                        for (long long s2 = jlo; s2 < jhi; ++s2) a += kt[s2 * K + d] * vv[s2 * VS + j];
                        dst[(size_t)L * ls + (size_t)d * V + v0 + j] = a;
                    }
                }
            }
        }
        __syncthreads();
    }
}

/* ---------------------------------------------------------------- decode step */

/* VW consecutive state columns per thread, moved as one vector. */
template <typename Acc, int VW> struct vecio {
    static __device__ __forceinline__ void ld(const Acc *p, Acc (&x)[VW]) {
#pragma unroll
        for (int w = 0; w < VW; ++w) x[w] = p[w];
    }
    static __device__ __forceinline__ void st(Acc *p, const Acc (&x)[VW]) {
#pragma unroll
        for (int w = 0; w < VW; ++w) p[w] = x[w];
    }
};
template <> struct vecio<float, 4> {
    static __device__ __forceinline__ void ld(const float *p, float (&x)[4]) {
        float4 v = *(const float4 *)p;
        x[0] = v.x; x[1] = v.y; x[2] = v.z; x[3] = v.w;
    }
    static __device__ __forceinline__ void st(float *p, const float (&x)[4]) {
        *(float4 *)p = make_float4(x[0], x[1], x[2], x[3]);
    }
};
template <> struct vecio<double, 2> {
    static __device__ __forceinline__ void ld(const double *p, double (&x)[2]) {
        double2 v = *(const double2 *)p;
        x[0] = v.x; x[1] = v.y;
    }
    static __device__ __forceinline__ void st(double *p, const double (&x)[2]) {
        *(double2 *)p = make_double2(x[0], x[1]);
    }
};

/* Block: one (sequence, head) and VS = CG * VW value columns; thread (row group kg,
 * column group cg) owns rows kg, kg + KG, ... and columns cg*VW .. cg*VW + VW - 1 of every
 * level.  Offsets inside one head's state are 32-bit (the host checks NL*K*V < 2^31). */
template <typename Tin, typename Acc, int VW>
__global__ void __launch_bounds__(256) decode_kernel(const lla_generic_params P) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int VS = P.vslice, CG = VS / VW;
    const int K = (int)P.dk, V = (int)P.dv, NL = (int)P.levels, H = (int)P.heads;
    const int hier = P.hierarchy;
    const bool gdn = P.variant == LLA_VARIANT_GDN;
    Acc *qs = (Acc *)smem;
    Acc *ks = qs + K;
    Acc *vs = ks + K;
    Acc *lam = vs + VS;
    Acc *dots = lam + NL; /* [NL][VS] k^T S_l for GDN */
    Acc *yred = dots + NL * VS; /* [8 warps][VS] partial outputs */
    size_t acc_bytes = ((size_t)(2 * K + VS + NL + NL * VS + 8 * VS) * sizeof(Acc) + 15u) & ~(size_t)15u;
    int *slot_map = (int *)(smem + acc_bytes);
    int *src_lo = slot_map + NL;
    int *src_hi = src_lo + NL;

    const long long bh = blockIdx.x, b = bh / H, h = bh % H;
    const long long hq = h / (H / P.qk_heads);
    const int v0 = blockIdx.y * VS, vn = min(VS, V - v0);
    const int tid = threadIdx.x, nthr = blockDim.x;
    const long long p = P.positions[b];
    const unsigned ls = (unsigned)K * (unsigned)V;
    Acc *S = (Acc *)P.final_values + (size_t)bh * NL * ls;

    for (int d = tid; d < K; d += nthr) {
        qs[d] = (Acc)io<Tin>::ld(P.q.data, at(P.q, b, 0, hq, d)) * (Acc)P.scale;
        ks[d] = (Acc)io<Tin>::ld(P.k.data, at(P.k, b, 0, hq, d));
    }
    for (int j = tid; j < VS; j += nthr)
        vs[j] = j < vn ? (Acc)io<Tin>::ld(P.v.data, at(P.v, b, 0, h, v0 + j)) : (Acc)0;
    for (int e = tid; e < 8 * VS; e += nthr) yred[e] = 0;
    for (int l = tid; l < NL; l += nthr) {
        lam[l] = (Acc)io<Tin>::ld(P.lam.data, at(P.lam, b, 0, h, l));
        long long f = first_of_decoder(hier, l, p - 1);
        slot_map[l] = f >= 0 ? dlevel(hier, p, f) : -1;
    }
    for (int e = tid; e < NL * VS; e += nthr) dots[e] = 0;
    const Acc a = dexp(gate<Tin, Acc>(P, at(P.g, b, 0, h, 0)));
    const Acc beta = gdn ? (Acc)io<Tin>::ld(P.beta.data, at(P.beta, b, 0, h, 0)) : (Acc)1;
    __syncthreads();
    if (tid == 0) build_ranges(slot_map, src_lo, src_hi, NL);

    const int KG = nthr / CG;
    const int cg = tid % CG, kg = tid / CG;
    const int jc = cg * VW; /* first column of this thread inside the slice */
    const bool active = kg < KG && jc < vn; /* vn is a multiple of VW when VW > 1 */
    const unsigned col = (unsigned)(v0 + jc);
    if (gdn && active) { /* k^T S_l of every live level, before the update */
        for (int l = 0; l < NL; ++l) {
            if (slot_map[l] < 0) continue;
            Acc part[VW];
#pragma unroll
            for (int w = 0; w < VW; ++w) part[w] = 0;
            for (int d = kg; d < K; d += KG) {
                Acc x[VW];
                vecio<Acc, VW>::ld(S + l * ls + (unsigned)d * V + col, x);
#pragma unroll
                for (int w = 0; w < VW; ++w) part[w] += ks[d] * x[w];
            }
#pragma unroll
            for (int w = 0; w < VW; ++w) atomicAdd(&dots[l * VS + jc + w], part[w]);
        }
    }
    __syncthreads();

    /* Rows in batches of kRows: the loads of one level for the whole batch are issued
     * together (a store to level L may alias a later load). */
    constexpr int kRows = 4;
    Acc y[VW];
#pragma unroll
    for (int w = 0; w < VW; ++w) y[w] = 0;
    if (active)
        for (int d0 = kg; d0 < K; d0 += KG * kRows) {
            Acc qd[kRows], kd[kRows];
#pragma unroll
            for (int i = 0; i < kRows; ++i) {
                const int d = d0 + i * KG;
                qd[i] = d < K ? qs[d] : (Acc)0;
                kd[i] = d < K ? ks[d] : (Acc)0;
            }
            for (int L = NL - 1; L >= 0; --L) {
                Acc nv[kRows][VW];
                bool write = true;
                if (L == 0) {
#pragma unroll
                    for (int i = 0; i < kRows; ++i)
#pragma unroll
                        for (int w = 0; w < VW; ++w) nv[i][w] = beta * kd[i] * vs[jc + w];
                } else {
                    Acc dsum[VW];
#pragma unroll
                    for (int w = 0; w < VW; ++w) dsum[w] = 0;
#pragma unroll
                    for (int i = 0; i < kRows; ++i)
#pragma unroll
                        for (int w = 0; w < VW; ++w) nv[i][w] = 0;
                    bool any = false;
                    for (int l = src_lo[L]; l <= src_hi[L]; ++l) {
                        if (slot_map[l] != L) continue;
                        const Acc *src = S + l * ls + col;
#pragma unroll
                        for (int i = 0; i < kRows; ++i) {
                            const int d = d0 + i * KG;
                            if (d < K) {
                                Acc x[VW];
                                vecio<Acc, VW>::ld(src + (unsigned)d * V, x);
#pragma unroll
                                for (int w = 0; w < VW; ++w) nv[i][w] += x[w];
                            }
                        }
#pragma unroll
                        for (int w = 0; w < VW; ++w) dsum[w] += dots[l * VS + jc + w];
                        any = true;
                    }
                    write = any || slot_map[L] >= 0;
#pragma unroll
                    for (int i = 0; i < kRows; ++i)
#pragma unroll
                        for (int w = 0; w < VW; ++w)
                            nv[i][w] = !any ? (Acc)0
                                       : gdn ? a * (nv[i][w] - beta * kd[i] * dsum[w])
                                             : a * nv[i][w];
                }
                const Acc lq = lam[L];
#pragma unroll
                for (int i = 0; i < kRows; ++i) {
                    const int d = d0 + i * KG;
                    if (d >= K) continue;
                    if (write) vecio<Acc, VW>::st(S + L * ls + (unsigned)d * V + col, nv[i]);
#pragma unroll
                    for (int w = 0; w < VW; ++w) y[w] += lq * qd[i] * nv[i][w];
                }
            }
        }
    /* y over the row groups: lanes tid % CG == cg of a warp share columns; a shuffle tree
     * when CG is a power of two (fixed order, no atomics), else shared atomics. */
    const int warp = tid / 32, lane = tid % 32;
    if ((CG & (CG - 1)) == 0 && CG <= 32) {
        for (int o = CG; o < 32; o *= 2)
#pragma unroll
            for (int w = 0; w < VW; ++w) y[w] += __shfl_xor_sync(0xffffffffu, y[w], o);
        if (lane < CG && jc < vn)
#pragma unroll
            for (int w = 0; w < VW; ++w) yred[warp * VS + jc + w] = y[w];
    } else if (active) {
#pragma unroll
        for (int w = 0; w < VW; ++w) atomicAdd(&yred[jc + w], y[w]);
    }
    __syncthreads();
    if (tid < vn) {
        Acc sum = 0;
        for (int wp = 0; wp < 8; ++wp) sum += yred[wp * VS + tid];
        io<Tin>::st(P.o, b * P.o_s0 + h * P.o_s2 + (v0 + tid) * P.o_s3, sum);
    }
}

__global__ void positions_kernel(const long long *init, const long long *offsets, long long seqlen,
                                 long long batch, long long add, long long *out) {
    long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= batch) return;
    long long len = add >= 0 ? add : offsets ? offsets[b + 1] - offsets[b] : seqlen;
    out[b] = (init ? init[b] : 0) + len;
}

template <typename Tin, typename Acc>
lla_status launch_sweep(lla_cuda_impl *impl, const lla_generic_params *gp, size_t smem) {
    dim3 grid((unsigned)(gp->batch * gp->heads), (unsigned)((gp->dv + gp->vslice - 1) / gp->vslice));
    LLA_CU(cudaFuncSetAttribute(sweep_forward_kernel<Tin, Acc>,
                                cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    sweep_forward_kernel<Tin, Acc><<<grid, 256, smem, impl->stream>>>(*gp);
    LLA_CU(cudaGetLastError());
    return LLA_OK;
}

template <typename Tin, typename Acc, int VW>
lla_status launch_decode_vw(lla_cuda_impl *impl, const lla_generic_params *gp, size_t smem) {
    dim3 grid((unsigned)(gp->batch * gp->heads), (unsigned)((gp->dv + gp->vslice - 1) / gp->vslice));
    if (smem > 48 * 1024)
        LLA_CU(cudaFuncSetAttribute(decode_kernel<Tin, Acc, VW>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    decode_kernel<Tin, Acc, VW><<<grid, 256, smem, impl->stream>>>(*gp);
    LLA_CU(cudaGetLastError());
    return LLA_OK;
}

/* Vector width: 16-byte state accesses when the columns and the state allow it. */
template <typename Tin, typename Acc>
lla_status launch_decode(lla_cuda_impl *impl, lla_generic_params *gp, size_t acc) {
    const int vmax = 16 / (int)sizeof(Acc);
    const int vw = gp->dv % vmax == 0 && ((uintptr_t)gp->final_values & 15u) == 0 ? vmax : 1;
    const int cg = vw == 1 ? (gp->dv < 16 ? (int)gp->dv : 16) : 4;
    gp->vslice = cg * vw;
    const size_t smem = decode_smem_bytes((int)gp->dk, gp->vslice, (int)gp->levels, acc);
    if (vw == 4) return launch_decode_vw<Tin, Acc, 4>(impl, gp, smem);
    if (vw == 2) return launch_decode_vw<Tin, Acc, 2>(impl, gp, smem);
    return launch_decode_vw<Tin, Acc, 1>(impl, gp, smem);
}

size_t acc_size(lla_dtype dtype) { return dtype == LLA_DTYPE_F64 ? 8 : 4; }

} /* namespace */

/* ---------------------------------------------------------------- host entry points */

lla_status lla_cuda_generic_plan(const lla_cuda_impl *impl, const lla_problem *p, lla_dtype dtype,
                                 int *chunk, int *vslice, size_t *smem) {
    const size_t acc = acc_size(dtype);
    const size_t limit = impl->smem_optin < 96 * 1024 ? impl->smem_optin : 96 * 1024;
    int C = 64;
    const int VS = p->dv < 32 ? (int)p->dv : 32;
    if (p->dk > 65536 || p->dv > (int64_t)65535 * 32 || p->batch * p->heads > 2147483647LL)
        return lla__set_error(LLA_ERR_UNSUPPORTED,
                              "cuda: dk %lld / dv %lld / batch*heads %lld exceed the kernels' "
                              "grid limits", (long long)p->dk, (long long)p->dv,
                              (long long)(p->batch * p->heads));
    while (C > 1 && sweep_smem_bytes(C, (int)p->dk, VS, (int)p->levels, acc) > limit) C /= 2;
    if (sweep_smem_bytes(C, (int)p->dk, VS, (int)p->levels, acc) > limit ||
        decode_smem_bytes((int)p->dk, VS, (int)p->levels, acc) > impl->smem_optin)
        return lla__set_error(LLA_ERR_UNSUPPORTED,
                              "cuda: dk = %lld is too large for the shared memory of this device "
                              "(%zu bytes per block)", (long long)p->dk, impl->smem_optin);
    *chunk = C;
    *vslice = VS;
    *smem = sweep_smem_bytes(C, (int)p->dk, VS, (int)p->levels, acc);
    return LLA_OK;
}

lla_status lla_cuda_generic_forward(lla_cuda_impl *impl, lla_dtype dtype,
                                    const lla_generic_params *gp, size_t smem) {
    switch (dtype) {
    case LLA_DTYPE_F32: return launch_sweep<float, float>(impl, gp, smem);
    case LLA_DTYPE_F64: return launch_sweep<double, double>(impl, gp, smem);
    case LLA_DTYPE_BF16: return launch_sweep<__nv_bfloat16, float>(impl, gp, smem);
    case LLA_DTYPE_F16: return launch_sweep<__half, float>(impl, gp, smem);
    }
    return lla__set_error(LLA_ERR_DTYPE, "cuda: unknown dtype %d", (int)dtype);
}

lla_status lla_cuda_write_positions(lla_cuda_impl *impl, const lla_generic_params *gp,
                                    long long *final_positions) {
    unsigned blocks = (unsigned)((gp->batch + 255) / 256);
    positions_kernel<<<blocks, 256, 0, impl->stream>>>(gp->positions, gp->offsets, gp->seqlen,
                                                       gp->batch, -1, final_positions);
    LLA_CU(cudaGetLastError());
    return LLA_OK;
}

lla_status lla_cuda_generic_decode(lla_cuda_impl *impl, lla_dtype dtype,
                                   const lla_generic_params *gp_in, long long *positions_dev) {
    lla_generic_params gp = *gp_in;
    const size_t acc = acc_size(dtype);
    lla_status st;
    if ((long long)gp.levels * gp.dk * gp.dv >= (1LL << 31))
        return lla__set_error(LLA_ERR_UNSUPPORTED,
                              "cuda decode: levels*dk*dv = %lld does not fit 32-bit offsets",
                              (long long)(gp.levels * gp.dk * gp.dv));
    switch (dtype) {
    case LLA_DTYPE_F32: st = launch_decode<float, float>(impl, &gp, acc); break;
    case LLA_DTYPE_F64: st = launch_decode<double, double>(impl, &gp, acc); break;
    case LLA_DTYPE_BF16: st = launch_decode<__nv_bfloat16, float>(impl, &gp, acc); break;
    case LLA_DTYPE_F16: st = launch_decode<__half, float>(impl, &gp, acc); break;
    default: return lla__set_error(LLA_ERR_DTYPE, "cuda: unknown dtype %d", (int)dtype);
    }
    if (st != LLA_OK) return st;
    {
        unsigned blocks = (unsigned)((gp.batch + 255) / 256);
        positions_kernel<<<blocks, 256, 0, impl->stream>>>(positions_dev, nullptr, 0, gp.batch, 1,
                                                           positions_dev);
        LLA_CU(cudaGetLastError());
    }
    return LLA_OK;
}
