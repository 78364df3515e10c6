/*
 * kernels_backward_sweep.cu - the O(T log T) backward on the CUDA cores: every variant
 * (Mamba-2, GDN), both hierarchies, dense or packed batches, grouped q/k, initial state,
 * d_final and d_initial.
 *
 * A port of the opencl backend's backward (backends/opencl/backward.cl), itself the scalar
 * backend's checkpointed chunkwise reverse sweep (backends/scalar/backward.c,
 * docs/algorithms.md section 7): per (sequence, value head) a forward sweep stores the
 * level states every S ~ sqrt(chunks) chunks, then the reverse sweep re-runs the states of
 * one segment and walks its chunks backwards, carrying dE (the gradient w.r.t. the level
 * states).  Arithmetic in float32 (float64 for F64 tensors); every buffer of a pair is its
 * own slice of the device workspace.
 *
 * Parallelism: one thread per (sequence, head) (one block each, so the pairs spread over
 * the SMs).  This is the correct, simple version; the per-pair loops over K x V are the
 * place to spread over a block's threads next.  dq and dk are per value head partials,
 * summed over each q/k group by group_sum_kernel afterwards (no two threads write one
 * element).
 */
#include "cuda_internal.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace {

template <typename T> struct sio;
template <> struct sio<float> {
    static __device__ __forceinline__ float ld(const void *p, long long i) { return ((const float *)p)[i]; }
    static __device__ __forceinline__ void st(void *p, long long i, float x) { ((float *)p)[i] = x; }
};
template <> struct sio<double> {
    static __device__ __forceinline__ double ld(const void *p, long long i) { return ((const double *)p)[i]; }
    static __device__ __forceinline__ void st(void *p, long long i, double x) { ((double *)p)[i] = x; }
};
template <> struct sio<__nv_bfloat16> {
    static __device__ __forceinline__ float ld(const void *p, long long i) {
        return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    }
    static __device__ __forceinline__ void st(void *p, long long i, float x) {
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(x);
    }
};
template <> struct sio<__half> {
    static __device__ __forceinline__ float ld(const void *p, long long i) {
        return __half2float(((const __half *)p)[i]);
    }
    static __device__ __forceinline__ void st(void *p, long long i, float x) {
        ((__half *)p)[i] = __float2half_rn(x);
    }
};

__device__ __forceinline__ long long sat(const lla_dview &x, long long b, long long t, long long h,
                                         long long d) {
    return b * x.s0 + t * x.s1 + h * x.s2 + d * x.s3;
}

/* Products that must not be contracted into an fma with a later add/sub: the pairs
 * "x += p; y -= p" of the gate gradient then cancel exactly on the diagonal. */
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }

__device__ __forceinline__ float sexp(float x) { return expf(x); }
__device__ __forceinline__ double sexp(double x) { return exp(x); }

/* ---------------------------------------------------------------- levels (SPEC 1.2) */

__device__ __forceinline__ int slevel(int hier, long long t, long long s) {
    if (s == t) return 0;
    if (hier == LLA_HIERARCHY_WEAK) return 64 - __clzll((unsigned long long)(t ^ s));
    int j = 0;
    while (((t >> j) - (s >> j)) > 1) ++j;
    return j + 1;
}

__device__ __forceinline__ long long slevel_start(int hier, int l, long long t) {
    if (l <= 0) return t;
    if (hier == LLA_HIERARCHY_WEAK) return l >= 63 ? 0 : (t >> l) << l;
    if (l - 1 >= 62) return 0;
    long long a = (t >> (l - 1)) - 1;
    return a <= 0 ? 0 : a << (l - 1);
}

/* First source of level L of the sets at target `target` (level 0: the target itself when
 * with_self), or -1 if that set is empty. */
__device__ long long set_first(int hier, long long target, int L, int with_self) {
    if (L == 0) return with_self ? target : -1;
    const long long lo = slevel_start(hier, L, target), hi = slevel_start(hier, L - 1, target);
    return lo < hi ? lo : -1;
}

/* ---------------------------------------------------------------- per-pair buffers */

template <typename Acc> struct chunk_buf {
    int n;            /* tokens in the chunk */
    long long begin;  /* absolute position of its first token */
    Acc *q, *k, *v, *dout, *lam, *gam, *coef, *u, *kap;
    Acc *dq, *dk, *dv, *dlam, *dgam, *dbeta, *du, *dkap;
    Acc *pi, *e, *f, *ds, *walk, *tk, *tv, *tv2;
};

/* What one (sequence, head) works on. */
struct seq_info {
    int hier, gdn, K, V, NL, C;
    long long tb, t0, pos0, len;
    int h, hq;
};

template <typename Acc> __device__ Acc vdot(const Acc *a, const Acc *b, int n) {
    Acc s = 0;
    for (int i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}
template <typename Acc> __device__ void vcopy(Acc *dst, const Acc *src, long long n) {
    for (long long i = 0; i < n; ++i) dst[i] = src[i];
}
template <typename Acc> __device__ void vzero(Acc *dst, long long n) {
    for (long long i = 0; i < n; ++i) dst[i] = 0;
}

/* vec <- R_r vec = vec - beta_r k_r (k_r . vec) */
template <typename Acc>
__device__ void apply_r_vec(const chunk_buf<Acc> &cb, int K, int r, Acc *vec) {
    const Acc *kr = cb.k + (long long)r * K;
    const Acc c = cb.coef[r] * vdot(kr, vec, K);
    for (int d = 0; d < K; ++d) vec[d] -= c * kr[d];
}

/* M (K x V) <- R_r M */
template <typename Acc>
__device__ void apply_r_mat(const chunk_buf<Acc> &cb, int K, int V, int r, Acc *m) {
    const Acc *kr = cb.k + (long long)r * K;
    for (int b = 0; b < V; ++b) cb.tv[b] = 0;
    for (int a = 0; a < K; ++a)
        for (int b = 0; b < V; ++b) cb.tv[b] += kr[a] * m[(long long)a * V + b];
    for (int a = 0; a < K; ++a) {
        const Acc c = cb.coef[r] * kr[a];
        for (int b = 0; b < V; ++b) m[(long long)a * V + b] -= c * cb.tv[b];
    }
}

/* Gradients of y = R_r x w.r.t. beta_r and k_r for incoming dy. */
template <typename Acc>
__device__ void r_grads(const chunk_buf<Acc> &cb, int K, int r, const Acc *x, const Acc *dy) {
    const Acc *kr = cb.k + (long long)r * K;
    Acc *dkr = cb.dk + (long long)r * K;
    const Acc kx = vdot(kr, x, K), kd = vdot(kr, dy, K);
    cb.dbeta[r] -= kx * kd;
    for (int d = 0; d < K; ++d) dkr[d] -= cb.coef[r] * (kx * dy[d] + kd * x[d]);
}

__device__ long long chunk_count(const seq_info &s) {
    return (s.pos0 + s.len - 1) / s.C - s.pos0 / s.C + 1;
}

/* Absolute [begin, end) of chunk c, and the target the state after it is aimed at: the
 * next chunk's first token, or after the last chunk the last token itself. */
__device__ void chunk_span(const seq_info &s, long long c, long long *begin, long long *end,
                           long long *next) {
    const long long first = s.pos0 / s.C, last = s.pos0 + s.len;
    *begin = c == 0 ? s.pos0 : (first + c) * s.C;
    *end = (first + c + 1) * s.C;
    if (*end > last) *end = last;
    *next = *end == last ? last - 1 : *end;
}

template <typename Tin, typename Acc>
__device__ __forceinline__ Acc load_g(const lla_sweep_params &P, long long i) {
    return P.g_f32 ? (Acc)sio<float>::ld(P.g.data, i) : (Acc)sio<Tin>::ld(P.g.data, i);
}

/* Loads chunk [begin, end) (and d_o, q, lambda when backward); gam = chunk-local cumsum
 * of g; kap_j = R_{n-1} ... R_{j+1} k_j. */
template <typename Tin, typename Acc>
__device__ void load_chunk(const lla_sweep_params &P, const seq_info &s, chunk_buf<Acc> &cb,
                           long long begin, long long end, int backward) {
    const int K = s.K, V = s.V, n = (int)(end - begin);
    Acc g_sum = 0;
    cb.n = n;
    cb.begin = begin;
    for (int i = 0; i < n; ++i) {
        const long long t = s.t0 + (begin - s.pos0) + i;
        for (int d = 0; d < K; ++d) cb.k[(long long)i * K + d] = sio<Tin>::ld(P.k.data, sat(P.k, s.tb, t, s.hq, d));
        for (int d = 0; d < V; ++d) cb.v[(long long)i * V + d] = sio<Tin>::ld(P.v.data, sat(P.v, s.tb, t, s.h, d));
        g_sum += load_g<Tin, Acc>(P, sat(P.g, s.tb, t, s.h, 0));
        cb.gam[i] = g_sum;
        cb.coef[i] = s.gdn ? (Acc)sio<Tin>::ld(P.beta.data, sat(P.beta, s.tb, t, s.h, 0)) : (Acc)1;
        if (backward) {
            for (int d = 0; d < K; ++d)
                cb.q[(long long)i * K + d] = sio<Tin>::ld(P.q.data, sat(P.q, s.tb, t, s.hq, d));
            for (int d = 0; d < V; ++d)
                cb.dout[(long long)i * V + d] = sio<Tin>::ld(P.dout.data, sat(P.dout, s.tb, t, s.h, d));
            for (int d = 0; d < s.NL; ++d)
                cb.lam[(long long)i * s.NL + d] = sio<Tin>::ld(P.lam.data, sat(P.lam, s.tb, t, s.h, d));
        }
    }
    for (int i = 0; i < n; ++i) {
        Acc *kap = cb.kap + (long long)i * K;
        vcopy(kap, cb.k + (long long)i * K, K);
        if (s.gdn)
            for (int r = i + 1; r < n; ++r) apply_r_vec(cb, K, r, kap);
    }
}

/* State entering the chunk -> state after it, aimed at next. */
template <typename Acc>
__device__ void advance(const seq_info &s, chunk_buf<Acc> &cb, Acc *E, long long next) {
    const int K = s.K, V = s.V, n = cb.n;
    const long long KV = (long long)K * V;
    const Acc decay = sexp(cb.gam[n - 1]);
    for (int L = 0; L < s.NL; ++L) {
        Acc *m = E + L * KV;
        if (set_first(s.hier, cb.begin, L, 0) < 0) continue;
        if (s.gdn)
            for (int r = 0; r < n; ++r) apply_r_mat(cb, K, V, r, m);
        for (long long a = 0; a < KV; ++a) m[a] *= decay;
    }
    for (int L = s.NL - 1; L >= 0; --L) { /* cascade; sets only move up, so go downwards */
        const long long first = set_first(s.hier, cb.begin, L, 0);
        if (first < 0) continue;
        const int to = slevel(s.hier, next, first);
        if (to != L) {
            Acc *src = E + L * KV, *dst = E + to * KV;
            for (long long a = 0; a < KV; ++a) {
                dst[a] += src[a];
                src[a] = 0;
            }
        }
    }
    for (int j = 0; j < n; ++j) {
        const int to = slevel(s.hier, next, cb.begin + j);
        const Acc c = cb.coef[j] * sexp(cb.gam[n - 1] - cb.gam[j]);
        Acc *dst = E + to * KV;
        for (int a = 0; a < K; ++a) {
            const Acc ka = c * cb.kap[(long long)j * K + a];
            for (int b = 0; b < V; ++b) dst[(long long)a * V + b] += ka * cb.v[(long long)j * V + b];
        }
    }
}

/* Backward of one chunk.  E: state entering the chunk.  dE: on entry the gradient w.r.t.
 * the state after the chunk (aimed at next), on exit the gradient w.r.t. E. */
template <typename Acc>
__device__ void chunk_backward(const seq_info &s, chunk_buf<Acc> &cb, const Acc *E, Acc *dE,
                               long long next, Acc scale) {
    const int K = s.K, V = s.V, NL = s.NL, n = cb.n;
    const long long KV = (long long)K * V, B = cb.begin;
    const Acc gam_last = cb.gam[n - 1], decay = sexp(gam_last);
    int i, j, L, r, a, b;

    vzero(cb.dq, (long long)n * K);
    vzero(cb.dk, (long long)n * K);
    vzero(cb.du, (long long)n * K);
    vzero(cb.dv, (long long)n * V);
    vzero(cb.dlam, (long long)n * NL);
    vzero(cb.dgam, n);
    vzero(cb.dbeta, n);

    /* 1. Writes of the chunk's tokens: E'[L_j] += c_j exp(gam_last - gam_j) kap_j v_j^T. */
    for (j = 0; j < n; ++j) {
        const Acc *D = dE + slevel(s.hier, next, B + j) * KV;
        const Acc *kap = cb.kap + (long long)j * K, *vj = cb.v + (long long)j * V;
        const Acc e = sexp(gam_last - cb.gam[j]);
        for (b = 0; b < V; ++b) cb.tv[b] = 0; /* D^T k~_j */
        for (a = 0; a < K; ++a) {
            const Acc ka = e * kap[a];
            Acc acc = 0;
            for (b = 0; b < V; ++b) {
                cb.tv[b] += D[(long long)a * V + b] * ka;
                acc += D[(long long)a * V + b] * vj[b];
            }
            cb.tk[a] = cb.coef[j] * acc; /* d k~_j = c_j D v_j */
        }
        for (b = 0; b < V; ++b) cb.dv[(long long)j * V + b] += cb.coef[j] * cb.tv[b];
        if (s.gdn) cb.dbeta[j] += vdot(vj, cb.tv, V);
        const Acc t = mul_rn(e, vdot(cb.tk, kap, K)); /* d k~ . k~ (see mul_rn) */
        cb.dgam[n - 1] += t;
        cb.dgam[j] -= t;
        for (a = 0; a < K; ++a) cb.dkap[(long long)j * K + a] = e * cb.tk[a];
    }
    /* 2. kap_j = R_{n-1} ... R_{j+1} k_j, backwards. */
    for (j = 0; j < n; ++j) {
        Acc *d = cb.tk;
        vcopy(d, cb.dkap + (long long)j * K, K);
        if (s.gdn && j + 1 < n) {
            Acc *z = cb.walk; /* z[m] = R_{j+m} ... R_{j+1} k_j, z[0] = k_j */
            vcopy(z, cb.k + (long long)j * K, K);
            for (r = j + 1; r < n; ++r) {
                vcopy(z + (long long)(r - j) * K, z + (long long)(r - j - 1) * K, K);
                apply_r_vec(cb, K, r, z + (long long)(r - j) * K);
            }
            for (r = n - 1; r > j; --r) {
                r_grads(cb, K, r, z + (long long)(r - j - 1) * K, d);
                apply_r_vec(cb, K, r, d);
            }
        }
        for (a = 0; a < K; ++a) cb.dk[(long long)j * K + a] += d[a];
    }
    /* 3. Cascade, transposed: each old set takes the gradient of the set it moved into,
     * times the chunk decay (new levels are >= old ones, so ascending order is safe). */
    for (L = 0; L < NL; ++L) {
        const long long first = set_first(s.hier, B, L, 0);
        Acc *dst = dE + L * KV;
        if (first < 0) {
            vzero(dst, KV);
        } else {
            const Acc *src = dE + slevel(s.hier, next, first) * KV;
            for (long long x = 0; x < KV; ++x) dst[x] = decay * src[x];
        }
    }
    /* 4. GDN: the transition R_{n-1} ... R_0 applied to every set. */
    if (s.gdn) {
        for (r = 0; r < n; ++r) { /* pi_r = R_0 ... R_{r-1} k_r */
            Acc *pr = cb.pi + (long long)r * K;
            vcopy(pr, cb.k + (long long)r * K, K);
            for (i = r - 1; i >= 0; --i) apply_r_vec(cb, K, i, pr);
        }
        vzero(cb.e, (long long)n * K);
        vzero(cb.f, (long long)n * K);
        for (L = 0; L < NL; ++L) {
            const Acc *EL = E + L * KV, *dY = dE + L * KV;
            if (set_first(s.hier, B, L, 0) < 0) continue;
            for (r = 0; r < n; ++r) {
                /* alpha = E_L^T pi_r (input side), delta = dY_L^T kap_r (output side) */
                const Acc *pr = cb.pi + (long long)r * K, *kr = cb.kap + (long long)r * K;
                Acc *er = cb.e + (long long)r * K, *fr = cb.f + (long long)r * K;
                for (b = 0; b < V; ++b) cb.tv[b] = cb.tv2[b] = 0;
                for (a = 0; a < K; ++a)
                    for (b = 0; b < V; ++b) {
                        cb.tv[b] += EL[(long long)a * V + b] * pr[a];
                        cb.tv2[b] += dY[(long long)a * V + b] * kr[a];
                    }
                cb.dbeta[r] -= vdot(cb.tv, cb.tv2, V);
                for (a = 0; a < K; ++a) {
                    er[a] += vdot(EL + (long long)a * V, cb.tv2, V);
                    fr[a] += vdot(dY + (long long)a * V, cb.tv, V);
                }
            }
        }
        for (r = 0; r < n; ++r) {
            /* dk_r -= beta_r (R_{r-1}..R_0 e_r + R_{r+1}..R_{n-1} f_r) */
            Acc *er = cb.e + (long long)r * K, *fr = cb.f + (long long)r * K;
            for (i = 0; i < r; ++i) apply_r_vec(cb, K, i, er);
            for (i = n - 1; i > r; --i) apply_r_vec(cb, K, i, fr);
            for (a = 0; a < K; ++a) cb.dk[(long long)r * K + a] -= cb.coef[r] * (er[a] + fr[a]);
        }
        for (L = 0; L < NL; ++L) {
            if (set_first(s.hier, B, L, 0) < 0) continue;
            for (r = n - 1; r >= 0; --r) apply_r_mat(cb, K, V, r, dE + L * KV);
        }
    }
    /* 5. The chunk decay's gate: d gam_last += <dE_chain, E>. */
    for (L = 0; L < NL; ++L)
        if (set_first(s.hier, B, L, 0) >= 0) {
            Acc acc = 0;
            for (long long x = 0; x < KV; ++x) acc += dE[L * KV + x] * E[L * KV + x];
            cb.dgam[n - 1] += acc;
        }
    /* 6. u_i = scale exp(gam_i) R_0 ... R_i q_i. */
    for (i = 0; i < n; ++i) {
        Acc *ui = cb.u + (long long)i * K;
        const Acc e = sexp(cb.gam[i]);
        for (a = 0; a < K; ++a) ui[a] = scale * cb.q[(long long)i * K + a];
        if (s.gdn)
            for (j = i; j >= 0; --j) apply_r_vec(cb, K, j, ui);
        for (a = 0; a < K; ++a) ui[a] *= e;
    }
    /* 7. Reads of the entering state. */
    for (L = 0; L < NL; ++L) {
        const long long first = set_first(s.hier, B, L, 0);
        const Acc *EL = E + L * KV;
        Acc *dEL = dE + L * KV;
        if (first < 0) continue;
        for (i = 0; i < n; ++i) {
            const int lv = slevel(s.hier, B + i, first);
            const Acc lam = cb.lam[(long long)i * NL + lv];
            const Acc *ui = cb.u + (long long)i * K, *doi = cb.dout + (long long)i * V;
            for (a = 0; a < K; ++a) cb.tk[a] = vdot(EL + (long long)a * V, doi, V);
            cb.dlam[(long long)i * NL + lv] += vdot(ui, cb.tk, K);
            for (a = 0; a < K; ++a) {
                const Acc c = lam * ui[a];
                cb.du[(long long)i * K + a] += lam * cb.tk[a];
                for (b = 0; b < V; ++b) dEL[(long long)a * V + b] += c * doi[b];
            }
        }
    }
    /* 8. Intra-chunk pairs and u, by reverse mode through the walk
     * w_i = scale q_i, w_{j-1} = R_j w_j (walk[j+1] = w_j, walk[0] = w_{-1}). */
    for (i = 0; i < n; ++i) {
        Acc *w = cb.walk, *d = cb.tk;
        const Acc *doi = cb.dout + (long long)i * V;
        const Acc ei = sexp(cb.gam[i]);
        for (a = 0; a < K; ++a) w[(long long)(i + 1) * K + a] = scale * cb.q[(long long)i * K + a];
        for (j = i; j >= 0 && s.gdn; --j) { /* Mamba-2: every w_j is scale q_i */
            vcopy(w + (long long)j * K, w + (long long)(j + 1) * K, K);
            apply_r_vec(cb, K, j, w + (long long)j * K);
        }
        for (j = 0; j <= i; ++j) {
            const Acc *wj = w + (long long)(s.gdn ? j + 1 : i + 1) * K;
            const Acc *vj = cb.v + (long long)j * V;
            const int lv = slevel(s.hier, B + i, B + j);
            const Acc lam = cb.lam[(long long)i * NL + lv], e = sexp(cb.gam[i] - cb.gam[j]);
            const Acc sij = vdot(wj, cb.k + (long long)j * K, K);
            const Acc A = lam * cb.coef[j] * e * sij, dA = vdot(doi, vj, V);
            for (b = 0; b < V; ++b) cb.dv[(long long)j * V + b] += A * doi[b];
            cb.dlam[(long long)i * NL + lv] += dA * cb.coef[j] * e * sij;
            if (s.gdn) cb.dbeta[j] += dA * lam * e * sij;
            /* one rounded product for both (see mul_rn): an fma-contracted pair would leave
             * a rounding residual on the diagonal (i == j) instead of zero */
            const Acc dAA = mul_rn(dA, A);
            cb.dgam[i] += dAA;
            cb.dgam[j] -= dAA;
            cb.ds[j] = dA * lam * cb.coef[j] * e;
        }
        for (a = 0; a < K; ++a) d[a] = ei * cb.du[(long long)i * K + a];
        cb.dgam[i] += vdot(cb.du + (long long)i * K, cb.u + (long long)i * K, K);
        for (j = 0; j <= i; ++j) {
            const Acc *wj = w + (long long)(s.gdn ? j + 1 : i + 1) * K;
            if (s.gdn) {
                r_grads(cb, K, j, wj, d);
                apply_r_vec(cb, K, j, d);
            }
            for (a = 0; a < K; ++a) {
                d[a] += cb.ds[j] * cb.k[(long long)j * K + a];
                cb.dk[(long long)j * K + a] += cb.ds[j] * wj[a];
            }
        }
        for (a = 0; a < K; ++a) cb.dq[(long long)i * K + a] += scale * d[a];
    }
    /* 9. dg_r = sum_{i >= r} d gam_i inside the chunk. */
    for (i = n - 2; i >= 0; --i) cb.dgam[i] += cb.dgam[i + 1];
}

/* Chunk buffers: C*(11K + 3V + 2NL + 5) + (C+2)*K + 2V elements from m. */
template <typename Acc> __device__ void carve(Acc *m, int C, int K, int V, int NL, chunk_buf<Acc> &cb) {
    const long long CK = (long long)C * K, CV = (long long)C * V;
    cb.q = m; m += CK;
    cb.k = m; m += CK;
    cb.u = m; m += CK;
    cb.kap = m; m += CK;
    cb.dq = m; m += CK;
    cb.dk = m; m += CK;
    cb.du = m; m += CK;
    cb.dkap = m; m += CK;
    cb.pi = m; m += CK;
    cb.e = m; m += CK;
    cb.f = m; m += CK;
    cb.v = m; m += CV;
    cb.dout = m; m += CV;
    cb.dv = m; m += CV;
    cb.lam = m; m += (long long)C * NL;
    cb.dlam = m; m += (long long)C * NL;
    cb.gam = m; m += C;
    cb.coef = m; m += C;
    cb.dgam = m; m += C;
    cb.dbeta = m; m += C;
    cb.ds = m; m += C;
    cb.walk = m; m += (long long)(C + 1) * K;
    cb.tk = m; m += K;
    cb.tv = m; m += V;
    cb.tv2 = m;
}

/* One block (one thread) per (sequence b, value head h): id = b * H + h. */
template <typename Tin, typename Acc>
__global__ void sweep_kernel(const lla_sweep_params P) {
    const long long id = blockIdx.x;
    if (threadIdx.x != 0 || id >= P.batch * P.heads) return;
    const int K = (int)P.dk, V = (int)P.dv, NL = (int)P.levels, H = (int)P.heads;
    const long long b = id / H, KV = (long long)K * V, state = (long long)NL * KV;
    const int h = (int)(id % H), S = (int)P.spacing;
    Acc *ws = (Acc *)P.slices + id * P.slice;
    Acc *ckpt = ws, *seg_states = ckpt + P.n_ckpt * state;
    Acc *dE = seg_states + (long long)(S - 1) * state;
    Acc *pq = (Acc *)P.pq, *pk = (Acc *)P.pk;
    const Acc *ival = (const Acc *)P.init_values, *dfval = (const Acc *)P.dfinal_values;
    Acc *dival = (Acc *)P.dinit_values;
    const Acc scale = (Acc)P.scale;
    chunk_buf<Acc> cb;
    seq_info s;
    carve(dE + state, P.chunk, K, V, NL, cb);
    s.hier = P.hierarchy;
    s.gdn = P.variant == LLA_VARIANT_GDN;
    s.K = K;
    s.V = V;
    s.NL = NL;
    s.C = P.chunk;
    s.h = h;
    s.hq = (int)(h / (P.heads / P.qk_heads));
    long long start, end;
    if (P.offsets) {
        s.tb = 0;
        start = P.offsets[b];
        end = P.offsets[b + 1];
    } else {
        s.tb = b;
        start = 0;
        end = P.seqlen;
    }
    s.t0 = start;
    s.len = end - start;
    s.pos0 = P.init_positions ? P.init_positions[b] : 0;

    /* dE starts as d_final (the state after the last token, decoder layout). */
    for (int L = 0; L < NL; ++L) {
        if (dfval)
            vcopy(dE + L * KV, dfval + (id * NL + L) * KV, KV);
        else
            vzero(dE + L * KV, KV);
    }
    if (s.len == 0) { /* no tokens: the forward copies the initial slice to the final one */
        if (dival)
            for (int L = 0; L < NL; ++L) vcopy(dival + (id * NL + L) * KV, dE + L * KV, KV);
        return;
    }
    /* E^0: the initial state's sets (decoder layout at pos0 - 1) moved to target pos0. */
    vzero(ckpt, state);
    if (ival && s.pos0 > 0)
        for (int L = 0; L < NL; ++L) {
            const long long first = set_first(s.hier, s.pos0 - 1, L, 1);
            if (first < 0) continue; /* empty level: its content is not part of the state */
            Acc *dst = ckpt + slevel(s.hier, s.pos0, first) * KV;
            const Acc *src = ival + (id * NL + L) * KV;
            for (long long x = 0; x < KV; ++x) dst[x] += src[x];
        }
    /* Forward sweep: checkpoints every S chunks. */
    const long long nc = chunk_count(s), n_seg = (nc + S - 1) / S;
    for (long long seg = 1; seg < n_seg; ++seg) {
        Acc *E = ckpt + seg * state;
        vcopy(E, E - state, state);
        for (long long c = (seg - 1) * S; c < seg * S; ++c) {
            long long begin, cend, next;
            chunk_span(s, c, &begin, &cend, &next);
            load_chunk<Tin, Acc>(P, s, cb, begin, cend, 0);
            advance(s, cb, E, next);
        }
    }
    /* Reverse sweep, one segment at a time: re-run its states, then go backwards. */
    for (long long seg = n_seg - 1; seg >= 0; --seg) {
        const long long c0 = seg * S, c1 = c0 + S < nc ? c0 + S : nc;
        for (long long c = c0 + 1; c < c1; ++c) {
            Acc *E = seg_states + (c - c0 - 1) * state;
            const Acc *prev = c == c0 + 1 ? ckpt + seg * state : E - state;
            long long begin, cend, next;
            vcopy(E, prev, state);
            chunk_span(s, c - 1, &begin, &cend, &next);
            load_chunk<Tin, Acc>(P, s, cb, begin, cend, 0);
            advance(s, cb, E, next);
        }
        for (long long c = c1 - 1; c >= c0; --c) {
            const Acc *E = c == c0 ? ckpt + seg * state : seg_states + (c - c0 - 1) * state;
            long long begin, cend, next;
            chunk_span(s, c, &begin, &cend, &next);
            load_chunk<Tin, Acc>(P, s, cb, begin, cend, 1);
            chunk_backward(s, cb, E, dE, next, scale);
            for (int i = 0; i < cb.n; ++i) { /* store the chunk's gradients */
                const long long t = s.t0 + (cb.begin - s.pos0) + i;
                const long long prow = ((s.tb * P.seqlen + t) * H + h) * (long long)K;
                for (int d = 0; d < K; ++d) {
                    pq[prow + d] = cb.dq[(long long)i * K + d];
                    pk[prow + d] = cb.dk[(long long)i * K + d];
                }
                for (int d = 0; d < V; ++d)
                    sio<Tin>::st((void *)P.gv.data, sat(P.gv, s.tb, t, h, d), cb.dv[(long long)i * V + d]);
                for (int d = 0; d < NL; ++d)
                    sio<Tin>::st((void *)P.glam.data, sat(P.glam, s.tb, t, h, d), cb.dlam[(long long)i * NL + d]);
                if (P.dg_f32)
                    sio<float>::st((void *)P.gg.data, sat(P.gg, s.tb, t, h, 0), (float)cb.dgam[i]);
                else
                    sio<Tin>::st((void *)P.gg.data, sat(P.gg, s.tb, t, h, 0), cb.dgam[i]);
                if (s.gdn) sio<Tin>::st((void *)P.gbeta.data, sat(P.gbeta, s.tb, t, h, 0), cb.dbeta[i]);
            }
        }
    }
    /* d_initial: the transpose of the initial move to target pos0. */
    if (dival)
        for (int L = 0; L < NL; ++L) {
            const long long first = s.pos0 > 0 ? set_first(s.hier, s.pos0 - 1, L, 1) : -1;
            Acc *dst = dival + (id * NL + L) * KV;
            if (first < 0)
                vzero(dst, KV);
            else
                vcopy(dst, dE + slevel(s.hier, s.pos0, first) * KV, KV);
        }
}

/* dq / dk of q/k head g at (tensor batch tb, token t) = the sum of the partials of the value
 * heads of group g.  One thread per (tb, t, g, d). */
template <typename Tin, typename Acc>
__global__ void group_sum_kernel(const lla_sweep_params P, long long bt) {
    const long long id = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const int G = (int)P.qk_heads, group = (int)(P.heads / P.qk_heads), K = (int)P.dk;
    if (id >= bt * P.seqlen * G * K) return;
    const int d = (int)(id % K), g = (int)((id / K) % G);
    const long long t = (id / K / G) % P.seqlen, tb = id / K / G / P.seqlen;
    const Acc *pq = (const Acc *)P.pq, *pk = (const Acc *)P.pk;
    Acc sq = 0, sk = 0;
    for (int h = g * group; h < (g + 1) * group; ++h) {
        const long long i = ((tb * P.seqlen + t) * P.heads + h) * (long long)K + d;
        sq += pq[i];
        sk += pk[i];
    }
    sio<Tin>::st((void *)P.gq.data, sat(P.gq, tb, t, g, d), sq);
    sio<Tin>::st((void *)P.gk.data, sat(P.gk, tb, t, g, d), sk);
}

template <typename Tin, typename Acc>
lla_status launch_sweep(lla_cuda_impl *impl, const lla_sweep_params &P) {
    const long long bt = P.offsets ? 1 : P.batch, n = bt * P.seqlen * P.qk_heads * P.dk;
    sweep_kernel<Tin, Acc><<<(unsigned)(P.batch * P.heads), 1, 0, impl->stream>>>(P);
    LLA_CU(cudaGetLastError());
    if (n > 0) {
        group_sum_kernel<Tin, Acc><<<(unsigned)((n + 255) / 256), 256, 0, impl->stream>>>(P, bt);
        LLA_CU(cudaGetLastError());
    }
    return LLA_OK;
}

} /* namespace */

int lla_cuda_sweep_layout(const lla_problem *p, lla_dtype dtype, lla_sweep_layout *out) {
    lla_sweep_layout w;
    int64_t longest = 0, max_chunks, s, state, chunk_part, t, n, bt, b;
    size_t bytes;
    const size_t elem = dtype == LLA_DTYPE_F64 ? 8 : 4;
    if (p->seq_offsets) {
        for (b = 0; b < p->batch; ++b)
            if (p->seq_offsets[b + 1] - p->seq_offsets[b] > longest)
                longest = p->seq_offsets[b + 1] - p->seq_offsets[b];
    } else {
        longest = p->seqlen;
    }
    w.chunk = lla__chunk(p);
    max_chunks = (longest + w.chunk - 1) / w.chunk + 1; /* + 1: an unaligned initial position */
    s = 1;
    while (s * s < max_chunks) ++s;
    w.spacing = s;
    w.n_ckpt = (max_chunks + s - 1) / s;
    /* per pair: (n_ckpt + S) states + C*(11K + 3V + 2NL + 5) + (C+2)*K + 2V elements */
    if (!lla__mul_ok(p->levels * p->dk, p->dv, &state) ||
        !lla__mul_ok(w.n_ckpt + w.spacing, state, &n) ||
        !lla__mul_ok(11 * p->dk + 3 * p->dv + 2 * p->levels + 5, w.chunk, &chunk_part) ||
        !lla__mul_ok(w.chunk + 2, p->dk, &t) || !lla__add_ok(n, chunk_part, &n) ||
        !lla__add_ok(n, t + 2 * p->dv, &n))
        return 0;
    w.slice = (n + 15) / 16 * 16; /* elements; 64-byte multiples */
    bt = p->seq_offsets ? 1 : p->batch;
    w.slices_at = 0;
    if (!lla__mul_ok(p->batch * p->heads, w.slice, &n) || !lla__size_mul_ok((size_t)n, elem, &bytes) ||
        !lla__size_add_ok(w.slices_at, bytes, &w.pq_at) || !lla__mul_ok(bt, p->seqlen, &n) ||
        !lla__mul_ok(n, p->heads, &n) || !lla__mul_ok(n, p->dk, &n) ||
        !lla__size_mul_ok((size_t)n, elem, &bytes) ||
        !lla__size_add_ok(w.pq_at, lla__round_up64(bytes), &w.pk_at) ||
        !lla__size_add_ok(w.pk_at, lla__round_up64(bytes), &w.total))
        return 0;
    if (out) *out = w;
    return 1;
}

lla_status lla_cuda_sweep_run(lla_cuda_impl *impl, lla_dtype dtype, const lla_sweep_params *P) {
    if (P->batch * P->heads > 2147483647LL)
        return lla__set_error(LLA_ERR_UNSUPPORTED, "cuda backward: too many (sequence, head) pairs");
    switch (dtype) {
    case LLA_DTYPE_F32: return launch_sweep<float, float>(impl, *P);
    case LLA_DTYPE_F64: return launch_sweep<double, double>(impl, *P);
    case LLA_DTYPE_BF16: return launch_sweep<__nv_bfloat16, float>(impl, *P);
    case LLA_DTYPE_F16: return launch_sweep<__half, float>(impl, *P);
    }
    return lla__set_error(LLA_ERR_DTYPE, "cuda: unknown dtype %d", (int)dtype);
}
