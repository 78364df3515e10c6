/*
 * kernels_backward.cu - Mamba-2 backward on the CUDA cores (weak and strong, any dtype,
 * dense or packed batches, grouped q/k).  Not yet the O(T log T) algorithm: it evaluates
 * the closed forms of SPEC 4.5 pair by pair, O(T^2 (K + V)) per head, tiled through shared
 * memory.  With P = scale exp(G_t - G_s) (q_t . k_s), M = lambda[t, l(t,s)] P and
 * dS = d_o_t . v_s for s <= t:
 *   dq_t = sum_s lambda exp(.) scale dS k_s      dk_s = sum_t lambda exp(.) scale dS q_t
 *   dv_s = sum_t M d_o_t                         dlambda[t, l] = sum_{s: l(t,s)=l} P dS
 *   dG_t = sum_s M dS - sum_t' M[t',t] dS[t',t]  dg_r = sum_{t >= r} dG_t
 * G is the inclusive cumulative log gate of each sequence in float64, so exp(G_t - G_s)
 * keeps full precision for the pairs that matter.  Kernels: gate prefix, rows (dq, dlambda,
 * row part of dG), columns (dk, dv, column part of dG), then the reverse cumsum into dg.
 * dq and dk are summed over the value heads of a q/k group inside one block (no atomics
 * on global memory); per-block shared-memory atomics accumulate dlambda and dG.
 */
#include "cuda_internal.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace {

template <typename T> struct bio;
template <> struct bio<float> {
    static __device__ __forceinline__ float ld(const void *p, long long i) { return ((const float *)p)[i]; }
    static __device__ __forceinline__ void st(void *p, long long i, float x) { ((float *)p)[i] = x; }
};
template <> struct bio<double> {
    static __device__ __forceinline__ double ld(const void *p, long long i) { return ((const double *)p)[i]; }
    static __device__ __forceinline__ void st(void *p, long long i, double x) { ((double *)p)[i] = x; }
};
template <> struct bio<__nv_bfloat16> {
    static __device__ __forceinline__ float ld(const void *p, long long i) {
        return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    }
    static __device__ __forceinline__ void st(void *p, long long i, float x) {
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(x);
    }
};
template <> struct bio<__half> {
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

__device__ __forceinline__ int blevel(int hier, long long t, long long s) {
    if (s == t) return 0;
    if (hier == LLA_HIERARCHY_WEAK) return 64 - __clzll((unsigned long long)(t ^ s));
    int j = 0;
    while (((t >> j) - (s >> j)) > 1) ++j;
    return j + 1;
}

struct bseq {
    long long tb, start, end;
};
__device__ __forceinline__ bseq seq_of(const lla_bwd_params &P, long long b) {
    bseq r;
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

/* flat index of per-token, per-head float64 scratch */
__device__ __forceinline__ long long tok(const lla_bwd_params &P, long long tb, long long t, long long h) {
    return (tb * P.seqlen + t) * P.heads + h;
}

template <typename Tin>
__device__ __forceinline__ double load_gate(const lla_bwd_params &P, long long i) {
    return P.g_f32 ? (double)bio<float>::ld(P.g.data, i) : (double)bio<Tin>::ld(P.g.data, i);
}

/* ---------------------------------------------------------------- gate prefix */

/* One warp per (sequence, head): G_t = sum_{r <= t} g_r, float64, in chunks of 32. */
template <typename Tin>
__global__ void gate_prefix_kernel(const lla_bwd_params P) {
    const long long bh = blockIdx.x, b = bh / P.heads, h = bh % P.heads;
    const bseq sq = seq_of(P, b);
    const int lane = threadIdx.x;
    double carry = 0.0;
    for (long long c = sq.start; c < sq.end; c += 32) {
        const long long t = c + lane;
        double x = t < sq.end ? load_gate<Tin>(P, at(P.g, sq.tb, t, h, 0)) : 0.0;
        for (int o = 1; o < 32; o <<= 1) {
            double y = __shfl_up_sync(0xffffffffu, x, o);
            if (lane >= o) x += y;
        }
        if (t < sq.end) P.G[tok(P, sq.tb, t, h)] = carry + x;
        carry += __shfl_sync(0xffffffffu, x, 31);
    }
}

/* ---------------------------------------------------------------- pair tiles */

constexpr int kT = 32; /* targets (rows) or sources (columns) per tile */

/* Shared layout of both pair kernels (Acc units): own tile [kT][K] and [kT][V] of one
 * side, the other side's [kT][K] and [kT][V], the coefficient tiles c and m [kT][kT],
 * the gradient accumulators [kT][K] (group sum) and [kT][V] (per head), per-row/column
 * scalars [kT] and the lambda gradient [kT][NL]. */
__host__ __device__ inline size_t pair_smem(int K, int V, int NL, size_t acc) {
    size_t n = (size_t)4 * kT * (K + 1) + (size_t)3 * kT * (V + 1) + (size_t)2 * kT * kT + (size_t)2 * kT * NL +
               2 * kT;
    return n * acc + 2 * kT * 8 + 128; /* + the two gate-prefix tiles (float64) */
}

/* Rows: block = (sequence b, q/k head g, target tile).  dq (group sum), dlambda and the
 * row part of dG (per value head). */
template <typename Tin, typename Acc>
__global__ void __launch_bounds__(256) rows_kernel(const lla_bwd_params P) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int K = (int)P.dk, V = (int)P.dv, NL = (int)P.levels;
    const int KP = K + 1, VP = V + 1; /* padded rows: lanes read different rows */
    Acc *qt = (Acc *)smem;      /* [kT][KP] queries of the targets */
    Acc *ks = qt + kT * KP;     /* [kT][KP] keys of the sources    */
    Acc *dq = ks + kT * KP;     /* [kT][K]                         */
    Acc *dot = dq + kT * K;     /* [kT][VP] d_o of the targets     */
    Acc *vs = dot + kT * VP;    /* [kT][VP] values of the sources  */
    Acc *cm = vs + kT * VP;     /* [kT][kT] dq/dk pair coefficients */
    Acc *dl = cm + kT * kT;     /* [kT][NL] dlambda of this head   */
    Acc *dgr = dl + kT * NL;    /* [kT] row part of dG             */
    Acc *lr = dgr + kT;         /* [kT][NL] lambda of the targets  */
    double *gt = (double *)(((uintptr_t)(lr + kT * NL) + 15u) & ~(uintptr_t)15u); /* [kT] G of targets */
    double *gs = gt + kT;       /* [kT] G of the sources           */
    const int HG = (int)(P.heads / P.qk_heads);
    const long long b = blockIdx.x / P.qk_heads, g = blockIdx.x % P.qk_heads;
    const bseq sq = seq_of(P, b);
    const long long t0 = sq.start + (long long)blockIdx.y * kT;
    if (t0 >= sq.end) return;
    const int nt = (int)min((long long)kT, sq.end - t0);
    const int tid = threadIdx.x, nthr = blockDim.x;

    for (int e = tid; e < kT * K; e += nthr) {
        const int i = e / K, d = e % K;
        qt[i * KP + d] = i < nt ? (Acc)bio<Tin>::ld(P.q.data, at(P.q, sq.tb, t0 + i, g, d)) : (Acc)0;
        dq[e] = 0;
    }
    for (int hh = 0; hh < HG; ++hh) {
        const long long h = g * HG + hh;
        __syncthreads();
        for (int e = tid; e < kT * V; e += nthr) {
            const int i = e / V, d = e % V;
            dot[i * VP + d] = i < nt ? (Acc)bio<Tin>::ld(P.dout.data, at(P.dout, sq.tb, t0 + i, h, d)) : (Acc)0;
        }
        for (int e = tid; e < kT * NL; e += nthr) {
            const int i = e / NL, l = e % NL;
            dl[e] = 0;
            lr[e] = i < nt ? (Acc)bio<Tin>::ld(P.lam.data, at(P.lam, sq.tb, t0 + i, h, l)) : (Acc)0;
        }
        for (int e = tid; e < kT; e += nthr) {
            dgr[e] = 0;
            gt[e] = e < nt ? P.G[tok(P, sq.tb, t0 + e, h)] : 0.0;
        }
        for (long long s0 = sq.start; s0 < t0 + nt; s0 += kT) {
            const int ns = (int)min((long long)kT, sq.end - s0);
            __syncthreads();
            for (int e = tid; e < kT * K; e += nthr) {
                const int j = e / K, d = e % K;
                ks[j * KP + d] = j < ns ? (Acc)bio<Tin>::ld(P.k.data, at(P.k, sq.tb, s0 + j, g, d)) : (Acc)0;
            }
            for (int e = tid; e < kT * V; e += nthr) {
                const int j = e / V, d = e % V;
                vs[j * VP + d] = j < ns ? (Acc)bio<Tin>::ld(P.v.data, at(P.v, sq.tb, s0 + j, h, d)) : (Acc)0;
            }
            for (int e = tid; e < kT; e += nthr) gs[e] = e < ns ? P.G[tok(P, sq.tb, s0 + e, h)] : 0.0;
            __syncthreads();
            for (int e = tid; e < kT * kT; e += nthr) {
                const int i = e / kT, j = e % kT;
                const long long t = t0 + i, s = s0 + j;
                Acc c = 0;
                if (i < nt && j < ns && s <= t) {
                    Acc qk = 0, ds = 0;
                    for (int d = 0; d < K; ++d) qk += qt[i * KP + d] * ks[j * KP + d];
                    for (int d = 0; d < V; ++d) ds += dot[i * VP + d] * vs[j * VP + d];
                    const int lev = blevel(P.hierarchy, t - sq.start, s - sq.start);
                    const Acc lam = lr[i * NL + lev];
                    const Acc decay = (Acc)exp(gt[i] - gs[j]);
                    const Acc prob = (Acc)P.scale * decay * qk;
                    c = lam * decay * ds * (Acc)P.scale;
                    atomicAdd(&dl[i * NL + lev], prob * ds);
                    atomicAdd(&dgr[i], lam * prob * ds);
                }
                cm[e] = c;
            }
            __syncthreads();
            for (int e = tid; e < kT * K; e += nthr) {
                const int i = e / K, d = e % K;
                Acc a = 0;
                for (int j = 0; j < kT; ++j) a += cm[i * kT + j] * ks[j * KP + d];
                dq[e] += a;
            }
        }
        __syncthreads();
        for (int e = tid; e < nt * NL; e += nthr) {
            const int i = e / NL, l = e % NL;
            bio<Tin>::st((void *)P.glam.data, at(P.glam, sq.tb, t0 + i, h, l), dl[e]);
        }
        for (int i = tid; i < nt; i += nthr) P.dGrow[tok(P, sq.tb, t0 + i, h)] = (double)dgr[i];
    }
    __syncthreads();
    for (int e = tid; e < nt * K; e += nthr) {
        const int i = e / K, d = e % K;
        bio<Tin>::st((void *)P.gq.data, at(P.gq, sq.tb, t0 + i, g, d), dq[e]);
    }
}

/* Columns: block = (sequence b, q/k head g, source tile).  dk (group sum), dv and the
 * column part of dG (per value head). */
template <typename Tin, typename Acc>
__global__ void __launch_bounds__(256) cols_kernel(const lla_bwd_params P) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int K = (int)P.dk, V = (int)P.dv, NL = (int)P.levels;
    const int KP = K + 1, VP = V + 1; /* padded rows: lanes read different rows */
    Acc *ks = (Acc *)smem;      /* [kT][KP] keys of the sources    */
    Acc *qt = ks + kT * KP;     /* [kT][KP] queries of the targets */
    Acc *dk = qt + kT * KP;     /* [kT][K]                         */
    Acc *vs = dk + kT * K;      /* [kT][VP] values of the sources  */
    Acc *dot = vs + kT * VP;    /* [kT][VP] d_o of the targets     */
    Acc *dv = dot + kT * VP;    /* [kT][V]                         */
    Acc *cm = dv + kT * V;      /* [kT][kT] c, indexed [target][source] */
    Acc *mm = cm + kT * kT;     /* [kT][kT] M                      */
    Acc *dgc = mm + kT * kT;    /* [kT] column part of dG          */
    Acc *lr = dgc + kT;         /* [kT][NL] lambda of the targets  */
    double *gt = (double *)(((uintptr_t)(lr + kT * NL) + 15u) & ~(uintptr_t)15u); /* [kT] G of targets */
    double *gs = gt + kT;       /* [kT] G of the sources           */
    const int HG = (int)(P.heads / P.qk_heads);
    const long long b = blockIdx.x / P.qk_heads, g = blockIdx.x % P.qk_heads;
    const bseq sq = seq_of(P, b);
    const long long s0 = sq.start + (long long)blockIdx.y * kT;
    if (s0 >= sq.end) return;
    const int ns = (int)min((long long)kT, sq.end - s0);
    const int tid = threadIdx.x, nthr = blockDim.x;

    for (int e = tid; e < kT * K; e += nthr) {
        const int j = e / K, d = e % K;
        ks[j * KP + d] = j < ns ? (Acc)bio<Tin>::ld(P.k.data, at(P.k, sq.tb, s0 + j, g, d)) : (Acc)0;
        dk[e] = 0;
    }
    for (int hh = 0; hh < HG; ++hh) {
        const long long h = g * HG + hh;
        __syncthreads();
        for (int e = tid; e < kT * V; e += nthr) {
            const int j = e / V, d = e % V;
            vs[j * VP + d] = j < ns ? (Acc)bio<Tin>::ld(P.v.data, at(P.v, sq.tb, s0 + j, h, d)) : (Acc)0;
            dv[e] = 0;
        }
        for (int e = tid; e < kT; e += nthr) {
            dgc[e] = 0;
            gs[e] = e < ns ? P.G[tok(P, sq.tb, s0 + e, h)] : 0.0;
        }
        for (long long t0 = s0; t0 < sq.end; t0 += kT) {
            const int nt = (int)min((long long)kT, sq.end - t0);
            __syncthreads();
            for (int e = tid; e < kT * K; e += nthr) {
                const int i = e / K, d = e % K;
                qt[i * KP + d] = i < nt ? (Acc)bio<Tin>::ld(P.q.data, at(P.q, sq.tb, t0 + i, g, d)) : (Acc)0;
            }
            for (int e = tid; e < kT * V; e += nthr) {
                const int i = e / V, d = e % V;
                dot[i * VP + d] = i < nt ? (Acc)bio<Tin>::ld(P.dout.data, at(P.dout, sq.tb, t0 + i, h, d)) : (Acc)0;
            }
            for (int e = tid; e < kT * NL; e += nthr) {
                const int i = e / NL, l = e % NL;
                lr[e] = i < nt ? (Acc)bio<Tin>::ld(P.lam.data, at(P.lam, sq.tb, t0 + i, h, l)) : (Acc)0;
            }
            for (int e = tid; e < kT; e += nthr) gt[e] = e < nt ? P.G[tok(P, sq.tb, t0 + e, h)] : 0.0;
            __syncthreads();
            for (int e = tid; e < kT * kT; e += nthr) {
                const int i = e / kT, j = e % kT;
                const long long t = t0 + i, s = s0 + j;
                Acc c = 0, m = 0;
                if (i < nt && j < ns && s <= t) {
                    Acc qk = 0, ds = 0;
                    for (int d = 0; d < K; ++d) qk += qt[i * KP + d] * ks[j * KP + d];
                    for (int d = 0; d < V; ++d) ds += dot[i * VP + d] * vs[j * VP + d];
                    const int lev = blevel(P.hierarchy, t - sq.start, s - sq.start);
                    const Acc lam = lr[i * NL + lev];
                    const Acc decay = (Acc)exp(gt[i] - gs[j]);
                    m = lam * (Acc)P.scale * decay * qk;
                    c = lam * decay * ds * (Acc)P.scale;
                    atomicAdd(&dgc[j], m * ds);
                }
                cm[e] = c;
                mm[e] = m;
            }
            __syncthreads();
            for (int e = tid; e < kT * K; e += nthr) {
                const int j = e / K, d = e % K;
                Acc a = 0;
                for (int i = 0; i < kT; ++i) a += cm[i * kT + j] * qt[i * KP + d];
                dk[e] += a;
            }
            for (int e = tid; e < kT * V; e += nthr) {
                const int j = e / V, d = e % V;
                Acc a = 0;
                for (int i = 0; i < kT; ++i) a += mm[i * kT + j] * dot[i * VP + d];
                dv[e] += a;
            }
        }
        __syncthreads();
        for (int e = tid; e < ns * V; e += nthr) {
            const int j = e / V, d = e % V;
            bio<Tin>::st((void *)P.gv.data, at(P.gv, sq.tb, s0 + j, h, d), dv[e]);
        }
        for (int j = tid; j < ns; j += nthr) P.dGcol[tok(P, sq.tb, s0 + j, h)] = (double)dgc[j];
    }
    __syncthreads();
    for (int e = tid; e < ns * K; e += nthr) {
        const int j = e / K, d = e % K;
        bio<Tin>::st((void *)P.gk.data, at(P.gk, sq.tb, s0 + j, g, d), dk[e]);
    }
}

/* dg_r = sum_{t >= r} (dGrow_t - dGcol_t): one warp per (sequence, head), from the end. */
template <typename Tin>
__global__ void dgate_kernel(const lla_bwd_params P) {
    const long long bh = blockIdx.x, b = bh / P.heads, h = bh % P.heads;
    const bseq sq = seq_of(P, b);
    const int lane = threadIdx.x;
    double carry = 0.0;
    for (long long c = sq.end - 1; c >= sq.start; c -= 32) {
        const long long t = c - lane; /* lane 0 takes the latest token */
        double x = t >= sq.start ? P.dGrow[tok(P, sq.tb, t, h)] - P.dGcol[tok(P, sq.tb, t, h)] : 0.0;
        for (int o = 1; o < 32; o <<= 1) {
            double y = __shfl_up_sync(0xffffffffu, x, o);
            if (lane >= o) x += y;
        }
        if (t >= sq.start) {
            const long long i = at(P.gg, sq.tb, t, h, 0);
            if (P.dg_f32)
                bio<float>::st((void *)P.gg.data, i, (float)(carry + x));
            else
                bio<Tin>::st((void *)P.gg.data, i, carry + x);
        }
        carry += __shfl_sync(0xffffffffu, x, 31);
    }
}

template <typename Tin, typename Acc>
lla_status launch_backward(lla_cuda_impl *impl, const lla_bwd_params &P, long long tiles) {
    const size_t smem = pair_smem((int)P.dk, (int)P.dv, (int)P.levels, sizeof(Acc));
    const dim3 grid((unsigned)(P.batch * P.qk_heads), (unsigned)tiles);
    gate_prefix_kernel<Tin><<<(unsigned)(P.batch * P.heads), 32, 0, impl->stream>>>(P);
    LLA_CU(cudaGetLastError());
    LLA_CU(cudaFuncSetAttribute(rows_kernel<Tin, Acc>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)smem));
    LLA_CU(cudaFuncSetAttribute(cols_kernel<Tin, Acc>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)smem));
    rows_kernel<Tin, Acc><<<grid, 256, smem, impl->stream>>>(P);
    LLA_CU(cudaGetLastError());
    cols_kernel<Tin, Acc><<<grid, 256, smem, impl->stream>>>(P);
    LLA_CU(cudaGetLastError());
    dgate_kernel<Tin><<<(unsigned)(P.batch * P.heads), 32, 0, impl->stream>>>(P);
    LLA_CU(cudaGetLastError());
    return LLA_OK;
}

} /* namespace */

size_t lla_cuda_backward_smem(const lla_problem *p, lla_dtype dtype) {
    return pair_smem((int)p->dk, (int)p->dv, (int)p->levels, dtype == LLA_DTYPE_F64 ? 8 : 4);
}

lla_status lla_cuda_backward_run(lla_cuda_impl *impl, lla_dtype dtype, const lla_bwd_params *P,
                                 long long longest) {
    const long long tiles = (longest + kT - 1) / kT;
    if (tiles < 1) return LLA_OK;
    if (tiles > 65535)
        return lla__set_error(LLA_ERR_UNSUPPORTED,
                              "cuda backward: sequences of %lld tokens exceed the grid (max %d)",
                              longest, 65535 * kT);
    switch (dtype) {
    case LLA_DTYPE_F32: return launch_backward<float, float>(impl, *P, tiles);
    case LLA_DTYPE_F64: return launch_backward<double, double>(impl, *P, tiles);
    case LLA_DTYPE_BF16: return launch_backward<__nv_bfloat16, float>(impl, *P, tiles);
    case LLA_DTYPE_F16: return launch_backward<__half, float>(impl, *P, tiles);
    }
    return lla__set_error(LLA_ERR_DTYPE, "cuda: unknown dtype %d", (int)dtype);
}
