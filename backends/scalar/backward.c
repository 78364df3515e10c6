/*
 * backward.c - chunkwise backward pass of the scalar backend (all variants, both hierarchies).
 *
 * The forward as this file sees it (docs/algorithms.md, "Backward", has the derivation):
 * per (sequence, head), chunks of C tokens aligned to absolute positions (the first one
 * starts at the initial state's position and may be short).  Entering chunk c at absolute
 * position B, a state E holds one K x V matrix per level L: the sum of
 * Phi(B-1, s) c_s k_s v_s^T over the sources s < B with level(B, s) == L (the initial
 * state's sets included).  Level sets only ever merge as the target moves on, so a target
 * t of the chunk reads set L at level(t, first source of L) for any hierarchy:
 *
 *     o_t = sum_L lambda[t, level(t, first_L)] E_L^T u_t  +  sum_{s in chunk, s<=t} A_ts v_s
 *     u_t = scale Phi(t, B-1)^T q_t,   A_ts = lambda[t, level(t,s)] scale (q_t^T Phi(t,s) k_s) c_s
 *
 * and the state moves on by decaying every set with the chunk's transition Phi_c, moving
 * each set whole to its level relative to the next target (the decoder's cascade) and
 * adding the chunk's own tokens Phi(end, s) c_s k_s v_s^T at their levels.  After the last
 * chunk the same step, aimed at the last token, yields exactly the decoder state.
 *
 * The backward is the transpose: a reverse sweep carries dE (one K x V gradient per level)
 * from d_final (or zero) back to d_initial.  Each chunk needs the state E that entered it;
 * E is recomputed from checkpoints: the forward sweep stores every S-th chunk's state
 * (S = ceil(sqrt(chunks))), and each segment of S chunks is re-run forward before it is
 * processed backwards.  Gates enter as exp of chunk-local cumulative sums gamma; all gate
 * gradients are collected as d gamma and turned into dg by a reverse cumulative sum inside
 * the chunk (SPEC pitfall 12).  GDN's transitions R_r = I - beta_r k_r k_r^T are handled
 * by reverse mode through the rank-1 walks (no K x K matrix is formed).
 *
 * Internal arithmetic is float64 for both tensor dtypes.  Workspace (doubles):
 *     (n_ckpt + S) * NL*K*V  +  C*(11K + 3V + 2NL + 5) + (C+2)*K + 2V
 * with NC = ceil(T_max / C) + 1, S = ceil(sqrt(NC)), n_ckpt = ceil(NC / S).
 */
#include "backward.h"
#include "check.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ sizes */

typedef struct bw_plan {
    int64_t K, V, NL, C;
    int64_t spacing;    /* S: chunks per checkpoint segment */
    int64_t n_ckpt;     /* checkpoints stored */
    int64_t state;      /* doubles of one state: NL*K*V */
    int64_t chunk_doubles;
    int64_t total;      /* doubles of the whole workspace */
} bw_plan;

static lla_status make_plan(const lla_problem *p, bw_plan *w) {
    int64_t longest, max_chunks, s, chunk_part, t, probe;
    lla_status st = lla__check_problem(p, &longest);
    if (st != LLA_OK) return st;
    w->K = p->dk;
    w->V = p->dv;
    w->NL = p->levels;
    w->C = lla__chunk(p);
    max_chunks = (longest + w->C - 1) / w->C + 1; /* + 1: an unaligned initial position */
    s = 1;
    while (s * s < max_chunks) ++s; /* max_chunks >= 2, so s >= 2 */
    w->spacing = s;
    w->n_ckpt = (max_chunks + s - 1) / s;
    if (!lla__mul_ok(w->NL, w->K, &w->state) || !lla__mul_ok(w->state, w->V, &w->state))
        return lla__set_error(LLA_ERR_SHAPE, "backward state size overflows");
    /* chunk buffers: C*(11K + 3V + 2NL + 5) + (C+2)*K + 2V */
    if (!lla__mul_ok(11, w->K, &chunk_part) || !lla__mul_ok(3, w->V, &t) ||
        !lla__add_ok(chunk_part, t, &chunk_part) || !lla__mul_ok(2, w->NL, &t) ||
        !lla__add_ok(chunk_part, t + 5, &chunk_part) ||
        !lla__mul_ok(chunk_part, w->C, &chunk_part) || !lla__mul_ok(w->C + 2, w->K, &t) ||
        !lla__add_ok(chunk_part, t, &chunk_part) || !lla__add_ok(chunk_part, 2 * w->V, &chunk_part))
        return lla__set_error(LLA_ERR_SHAPE, "backward chunk buffers overflow");
    w->chunk_doubles = chunk_part;
    if (!lla__mul_ok(w->n_ckpt + w->spacing, w->state, &probe) ||
        !lla__add_ok(probe, chunk_part, &w->total) || w->total > (int64_t)(SIZE_MAX / 8))
        return lla__set_error(LLA_ERR_SHAPE, "backward workspace size overflows");
    return LLA_OK;
}

lla_status lla__scalar_backward_workspace(lla_backend *self, const lla_problem *p,
                                          lla_dtype dtype, size_t *bytes) {
    bw_plan w;
    lla_status st;
    (void)self;
    if (dtype != LLA_DTYPE_F32 && dtype != LLA_DTYPE_F64)
        return lla__set_error(LLA_ERR_DTYPE, "scalar backward supports f32 and f64, not %s",
                              lla_dtype_name(dtype));
    if ((st = make_plan(p, &w)) != LLA_OK) return st;
    *bytes = (size_t)w.total * sizeof(double);
    return LLA_OK;
}

/* ------------------------------------------------------------------ one (sequence, head) */

typedef struct chunk_buf {
    int64_t n;     /* tokens in the chunk */
    int64_t begin; /* absolute position of its first token */
    double *q, *k, *v, *dout, *lam, *gam, *coef; /* inputs; gam: chunk-local cumsum of g */
    double *beta;  /* GDN beta (R_r = I - beta_r k_r k_r^T); equals coef */
    double *u, *kap;                             /* u_t and kappa_j (ungated k~) */
    double *dq, *dk, *dv, *dlam, *dgam, *dbeta, *du, *dkap;
    double *pi, *e, *f, *ds;                     /* GDN transition-chain scratch, intra row */
    double *walk;                                /* (C+1) x K */
    double *tk, *tv, *tv2;                       /* K, V, V */
} chunk_buf;

typedef struct seq_ctx {
    const lla_problem *p;
    const lla_inputs *x;
    const lla_tensor *d_o;
    const lla_grads *grads;
    lla_hierarchy hier;
    int gdn;
    int64_t K, V, NL, C;
    int64_t tb, t0;   /* tensor batch index and tensor time index of the first token */
    int64_t pos0;     /* absolute position of the first token */
    int64_t len;      /* tokens of the sequence */
    int64_t h, hq;
    int add_qk;       /* dq/dk: add into the output (not the group's first head) */
} seq_ctx;

/* First source of level L of the sets at target `target` (sources < target, plus the
 * target itself at level 0 when with_self), or -1 if that set is empty. */
static int64_t set_first(lla_hierarchy h, int64_t target, int64_t L, int with_self) {
    int64_t lo, hi;
    if (L == 0) return with_self ? target : -1;
    lo = lla__level_start(h, (int)L, target);
    hi = lla__level_start(h, (int)L - 1, target);
    return lo < hi ? lo : -1;
}

static double dot(const double *a, const double *b, int64_t n) {
    double s = 0.0;
    int64_t i;
    for (i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

/* vec <- R_r vec = vec - beta_r k_r (k_r . vec) */
static void apply_r_vec(const chunk_buf *cb, int64_t K, int64_t r, double *vec) {
    const double *kr = cb->k + r * K;
    double c = cb->beta[r] * dot(kr, vec, K);
    int64_t d;
    for (d = 0; d < K; ++d) vec[d] -= c * kr[d];
}

/* M (K x V) <- R_r M */
static void apply_r_mat(const chunk_buf *cb, int64_t K, int64_t V, int64_t r, double *m,
                        double *tv) {
    const double *kr = cb->k + r * K;
    int64_t a, b;
    for (b = 0; b < V; ++b) tv[b] = 0.0;
    for (a = 0; a < K; ++a)
        for (b = 0; b < V; ++b) tv[b] += kr[a] * m[a * V + b];
    for (a = 0; a < K; ++a) {
        double c = cb->beta[r] * kr[a];
        for (b = 0; b < V; ++b) m[a * V + b] -= c * tv[b];
    }
}

/* Gradients of y = R_r x w.r.t. beta_r and k_r for incoming dy. */
static void r_grads(chunk_buf *cb, int64_t K, int64_t r, const double *x, const double *dy) {
    const double *kr = cb->k + r * K;
    double kx = dot(kr, x, K), kd = dot(kr, dy, K);
    double *dkr = cb->dk + r * K;
    int64_t d;
    cb->dbeta[r] -= kx * kd;
    for (d = 0; d < K; ++d) dkr[d] -= cb->beta[r] * (kx * dy[d] + kd * x[d]);
}

static int64_t chunk_count(const seq_ctx *s) {
    return (s->pos0 + s->len - 1) / s->C - s->pos0 / s->C + 1;
}

/* Absolute [begin, end) of chunk c, and the target the state after it is aimed at: the
 * next chunk's first token, or after the last chunk the last token itself (the decoder
 * layout, where that token is level 0). */
static void chunk_span(const seq_ctx *s, int64_t c, int64_t *begin, int64_t *end,
                       int64_t *next_target) {
    int64_t first = s->pos0 / s->C, last = s->pos0 + s->len;
    *begin = c == 0 ? s->pos0 : (first + c) * s->C;
    *end = (first + c + 1) * s->C;
    if (*end > last) *end = last;
    *next_target = *end == last ? last - 1 : *end;
}

/* Loads chunk c's inputs (and d_o when backward) into cb; gam = chunk-local cumsum of g;
 * kap_j = R_{n-1} ... R_{j+1} k_j. */
static void load_chunk(const seq_ctx *s, chunk_buf *cb, int64_t begin, int64_t end,
                       int backward) {
    const lla_inputs *x = s->x;
    int64_t K = s->K, V = s->V, n = end - begin, i, d, r;
    double g_sum = 0.0;
    cb->n = n;
    cb->begin = begin;
    for (i = 0; i < n; ++i) {
        int64_t t = s->t0 + (begin - s->pos0) + i;
        for (d = 0; d < K; ++d) cb->k[i * K + d] = lla__load(&x->k, s->tb, t, s->hq, d);
        for (d = 0; d < V; ++d) cb->v[i * V + d] = lla__load(&x->v, s->tb, t, s->h, d);
        g_sum += lla__load(&x->g, s->tb, t, s->h, 0);
        cb->gam[i] = g_sum;
        cb->coef[i] = s->gdn ? lla__load(&x->beta, s->tb, t, s->h, 0) : 1.0;
        if (backward) {
            for (d = 0; d < K; ++d) cb->q[i * K + d] = lla__load(&x->q, s->tb, t, s->hq, d);
            for (d = 0; d < V; ++d) cb->dout[i * V + d] = lla__load(s->d_o, s->tb, t, s->h, d);
            for (d = 0; d < s->NL; ++d)
                cb->lam[i * s->NL + d] = lla__load(&x->lambda, s->tb, t, s->h, d);
        }
    }
    for (i = 0; i < n; ++i) {
        double *kap = cb->kap + i * K;
        memcpy(kap, cb->k + i * K, (size_t)K * sizeof *kap);
        if (s->gdn)
            for (r = i + 1; r < n; ++r) apply_r_vec(cb, K, r, kap);
    }
}

/* State entering chunk (begin) -> state after it, aimed at next_target. */
static void advance(const seq_ctx *s, chunk_buf *cb, double *E, int64_t next_target) {
    int64_t K = s->K, V = s->V, KV = K * V, n = cb->n, L, j, a, b, r;
    double decay = exp(cb->gam[n - 1]);
    for (L = 0; L < s->NL; ++L) {
        double *m = E + L * KV;
        if (set_first(s->hier, cb->begin, L, 0) < 0) continue;
        if (s->gdn)
            for (r = 0; r < n; ++r) apply_r_mat(cb, K, V, r, m, cb->tv);
        for (a = 0; a < KV; ++a) m[a] *= decay;
    }
    for (L = s->NL - 1; L >= 0; --L) { /* cascade; sets only move up, so go downwards */
        int64_t first = set_first(s->hier, cb->begin, L, 0), to;
        if (first < 0) continue;
        to = lla__level(s->hier, next_target, first);
        if (to != L) {
            double *src = E + L * KV, *dst = E + to * KV;
            for (a = 0; a < KV; ++a) {
                dst[a] += src[a];
                src[a] = 0.0;
            }
        }
    }
    for (j = 0; j < n; ++j) {
        int64_t to = lla__level(s->hier, next_target, cb->begin + j);
        double c = cb->coef[j] * exp(cb->gam[n - 1] - cb->gam[j]);
        double *dst = E + to * KV;
        for (a = 0; a < K; ++a) {
            double ka = c * cb->kap[j * K + a];
            for (b = 0; b < V; ++b) dst[a * V + b] += ka * cb->v[j * V + b];
        }
    }
}

/* Writes chunk gradients to the output tensors. */
static void store_chunk(const seq_ctx *s, const chunk_buf *cb) {
    const lla_grads *g = s->grads;
    int64_t K = s->K, V = s->V, NL = s->NL, n = cb->n, i, d;
    for (i = 0; i < n; ++i) {
        int64_t t = s->t0 + (cb->begin - s->pos0) + i;
        for (d = 0; d < K; ++d) {
            double dq = cb->dq[i * K + d], dk = cb->dk[i * K + d];
            if (s->add_qk) {
                dq += lla__load(&g->dq, s->tb, t, s->hq, d);
                dk += lla__load(&g->dk, s->tb, t, s->hq, d);
            }
            lla__store(&g->dq, s->tb, t, s->hq, d, dq);
            lla__store(&g->dk, s->tb, t, s->hq, d, dk);
        }
        for (d = 0; d < V; ++d) lla__store(&g->dv, s->tb, t, s->h, d, cb->dv[i * V + d]);
        for (d = 0; d < NL; ++d) lla__store(&g->dlambda, s->tb, t, s->h, d, cb->dlam[i * NL + d]);
        lla__store(&g->dg, s->tb, t, s->h, 0, cb->dgam[i]);
        if (s->gdn) lla__store(&g->dbeta, s->tb, t, s->h, 0, cb->dbeta[i]);
    }
}

/* Backward of one chunk.  E: state entering the chunk (read only).  dE: on entry the
 * gradient w.r.t. the state after the chunk (aimed at next_target), on exit the gradient
 * w.r.t. E. */
static void backward_chunk(const seq_ctx *s, chunk_buf *cb, const double *E, double *dE,
                           int64_t next_target) {
    int64_t K = s->K, V = s->V, NL = s->NL, KV = K * V, n = cb->n, B = cb->begin;
    int64_t i, j, L, r, a, b;
    double gam_last = cb->gam[n - 1], decay = exp(gam_last);
    double scale = s->p->scale;

    memset(cb->dq, 0, (size_t)(n * K) * sizeof(double));
    memset(cb->dk, 0, (size_t)(n * K) * sizeof(double));
    memset(cb->du, 0, (size_t)(n * K) * sizeof(double));
    memset(cb->dv, 0, (size_t)(n * V) * sizeof(double));
    memset(cb->dlam, 0, (size_t)(n * NL) * sizeof(double));
    memset(cb->dgam, 0, (size_t)n * sizeof(double));
    memset(cb->dbeta, 0, (size_t)n * sizeof(double));

    /* 1. Writes of the chunk's tokens: E'[L_j] += c_j exp(gam_last - gam_j) kap_j v_j^T. */
    for (j = 0; j < n; ++j) {
        const double *D = dE + lla__level(s->hier, next_target, B + j) * KV;
        const double *kap = cb->kap + j * K, *vj = cb->v + j * V;
        double e = exp(gam_last - cb->gam[j]), t;
        for (b = 0; b < V; ++b) cb->tv[b] = 0.0; /* D^T k~_j */
        for (a = 0; a < K; ++a) {
            double ka = e * kap[a], acc = 0.0;
            for (b = 0; b < V; ++b) {
                cb->tv[b] += D[a * V + b] * ka;
                acc += D[a * V + b] * vj[b];
            }
            cb->tk[a] = cb->coef[j] * acc; /* d k~_j = c_j D v_j */
        }
        for (b = 0; b < V; ++b) cb->dv[j * V + b] += cb->coef[j] * cb->tv[b];
        if (s->gdn) cb->dbeta[j] += dot(vj, cb->tv, V);
        t = e * dot(cb->tk, kap, K); /* d k~ . k~ */
        cb->dgam[n - 1] += t;
        cb->dgam[j] -= t;
        for (a = 0; a < K; ++a) cb->dkap[j * K + a] = e * cb->tk[a];
    }
    /* 2. kap_j = R_{n-1} ... R_{j+1} k_j, backwards. */
    for (j = 0; j < n; ++j) {
        double *d = cb->tk;
        memcpy(d, cb->dkap + j * K, (size_t)K * sizeof *d);
        if (s->gdn && j + 1 < n) {
            double *z = cb->walk; /* z[m] = R_{j+m} ... R_{j+1} k_j, z[0] = k_j */
            memcpy(z, cb->k + j * K, (size_t)K * sizeof *z);
            for (r = j + 1; r < n; ++r) {
                memcpy(z + (r - j) * K, z + (r - j - 1) * K, (size_t)K * sizeof *z);
                apply_r_vec(cb, K, r, z + (r - j) * K);
            }
            for (r = n - 1; r > j; --r) {
                r_grads(cb, K, r, z + (r - j - 1) * K, d);
                apply_r_vec(cb, K, r, d);
            }
        }
        for (a = 0; a < K; ++a) cb->dk[j * K + a] += d[a];
    }
    /* 3. Cascade, transposed: each old set takes the gradient of the set it moved into,
     * times the chunk decay (new levels are >= old ones, so ascending order is safe). */
    for (L = 0; L < NL; ++L) {
        int64_t first = set_first(s->hier, B, L, 0);
        double *dst = dE + L * KV;
        if (first < 0) {
            memset(dst, 0, (size_t)KV * sizeof *dst);
        } else {
            const double *src = dE + lla__level(s->hier, next_target, first) * KV;
            for (a = 0; a < KV; ++a) dst[a] = decay * src[a];
        }
    }
    /* 4. GDN: the transition R_{n-1} ... R_0 applied to every set. */
    if (s->gdn) {
        for (r = 0; r < n; ++r) { /* pi_r = R_0 ... R_{r-1} k_r */
            double *pr = cb->pi + r * K;
            memcpy(pr, cb->k + r * K, (size_t)K * sizeof *pr);
            for (i = r - 1; i >= 0; --i) apply_r_vec(cb, K, i, pr);
        }
        memset(cb->e, 0, (size_t)(n * K) * sizeof(double));
        memset(cb->f, 0, (size_t)(n * K) * sizeof(double));
        for (L = 0; L < NL; ++L) {
            const double *EL = E + L * KV, *dY = dE + L * KV;
            if (set_first(s->hier, B, L, 0) < 0) continue;
            for (r = 0; r < n; ++r) {
                /* alpha = E_L^T pi_r (input side), delta = dY_L^T kap_r (output side) */
                const double *pr = cb->pi + r * K, *kr = cb->kap + r * K;
                double *er = cb->e + r * K, *fr = cb->f + r * K;
                for (b = 0; b < V; ++b) cb->tv[b] = cb->tv2[b] = 0.0;
                for (a = 0; a < K; ++a)
                    for (b = 0; b < V; ++b) {
                        cb->tv[b] += EL[a * V + b] * pr[a];
                        cb->tv2[b] += dY[a * V + b] * kr[a];
                    }
                cb->dbeta[r] -= dot(cb->tv, cb->tv2, V);
                for (a = 0; a < K; ++a) {
                    er[a] += dot(EL + a * V, cb->tv2, V);
                    fr[a] += dot(dY + a * V, cb->tv, V);
                }
            }
        }
        for (r = 0; r < n; ++r) {
            /* dk_r -= beta_r (R_{r-1}..R_0 e_r + R_{r+1}..R_{n-1} f_r) */
            double *er = cb->e + r * K, *fr = cb->f + r * K;
            for (i = 0; i < r; ++i) apply_r_vec(cb, K, i, er);
            for (i = n - 1; i > r; --i) apply_r_vec(cb, K, i, fr);
            for (a = 0; a < K; ++a) cb->dk[r * K + a] -= cb->beta[r] * (er[a] + fr[a]);
        }
        for (L = 0; L < NL; ++L) {
            if (set_first(s->hier, B, L, 0) < 0) continue;
            for (r = n - 1; r >= 0; --r) apply_r_mat(cb, K, V, r, dE + L * KV, cb->tv);
        }
    }
    /* 5. The chunk decay's gate: d gam_last += <dE_chain, E>. */
    for (L = 0; L < NL; ++L)
        if (set_first(s->hier, B, L, 0) >= 0) cb->dgam[n - 1] += dot(dE + L * KV, E + L * KV, KV);
    /* 6. u_i = scale exp(gam_i) R_0 ... R_i q_i. */
    for (i = 0; i < n; ++i) {
        double *ui = cb->u + i * K, e = exp(cb->gam[i]);
        for (a = 0; a < K; ++a) ui[a] = scale * cb->q[i * K + a];
        if (s->gdn)
            for (j = i; j >= 0; --j) apply_r_vec(cb, K, j, ui);
        for (a = 0; a < K; ++a) ui[a] *= e;
    }
    /* 7. Reads of the entering state. */
    for (L = 0; L < NL; ++L) {
        int64_t first = set_first(s->hier, B, L, 0);
        const double *EL = E + L * KV;
        double *dEL = dE + L * KV;
        if (first < 0) continue;
        for (i = 0; i < n; ++i) {
            int64_t lv = lla__level(s->hier, B + i, first);
            double lam = cb->lam[i * NL + lv];
            const double *ui = cb->u + i * K, *doi = cb->dout + i * V;
            for (a = 0; a < K; ++a) cb->tk[a] = dot(EL + a * V, doi, V); /* E_L do_i */
            cb->dlam[i * NL + lv] += dot(ui, cb->tk, K);
            for (a = 0; a < K; ++a) {
                double c = lam * ui[a];
                cb->du[i * K + a] += lam * cb->tk[a];
                for (b = 0; b < V; ++b) dEL[a * V + b] += c * doi[b];
            }
        }
    }
    /* 8. Intra-chunk pairs and u, by reverse mode through the walk
     * w_i = scale q_i, w_{j-1} = R_j w_j (walk[j+1] = w_j, walk[0] = w_{-1}). */
    for (i = 0; i < n; ++i) {
        double *w = cb->walk, *d = cb->tk, ei = exp(cb->gam[i]);
        const double *doi = cb->dout + i * V;
        for (a = 0; a < K; ++a) w[(i + 1) * K + a] = scale * cb->q[i * K + a];
        for (j = i; j >= 0 && s->gdn; --j) { /* Mamba-2: every w_j is scale q_i */
            memcpy(w + j * K, w + (j + 1) * K, (size_t)K * sizeof *w);
            apply_r_vec(cb, K, j, w + j * K);
        }
        for (j = 0; j <= i; ++j) {
            const double *wj = w + (s->gdn ? j + 1 : i + 1) * K, *vj = cb->v + j * V;
            int lv = lla__level(s->hier, B + i, B + j);
            double lam = cb->lam[i * NL + lv], e = exp(cb->gam[i] - cb->gam[j]);
            double sij = dot(wj, cb->k + j * K, K), A = lam * cb->coef[j] * e * sij;
            double dA = dot(doi, vj, V);
            for (b = 0; b < V; ++b) cb->dv[j * V + b] += A * doi[b];
            cb->dlam[i * NL + lv] += dA * cb->coef[j] * e * sij;
            if (s->gdn) cb->dbeta[j] += dA * lam * e * sij;
            cb->dgam[i] += dA * A;
            cb->dgam[j] -= dA * A;
            cb->ds[j] = dA * lam * cb->coef[j] * e;
        }
        for (a = 0; a < K; ++a) d[a] = ei * cb->du[i * K + a];
        cb->dgam[i] += dot(cb->du + i * K, cb->u + i * K, K);
        for (j = 0; j <= i; ++j) {
            const double *wj = w + (s->gdn ? j + 1 : i + 1) * K;
            if (s->gdn) {
                r_grads(cb, K, j, wj, d);
                apply_r_vec(cb, K, j, d);
            }
            for (a = 0; a < K; ++a) {
                d[a] += cb->ds[j] * cb->k[j * K + a];
                cb->dk[j * K + a] += cb->ds[j] * wj[a];
            }
        }
        for (a = 0; a < K; ++a) cb->dq[i * K + a] += scale * d[a];
    }
    /* 9. dg_r = sum_{i >= r} d gam_i inside the chunk. */
    for (i = n - 2; i >= 0; --i) cb->dgam[i] += cb->dgam[i + 1];
}

/* dst (K x V doubles) = or += one (b, h) level matrix of a state block. */
static void state_load(const lla_state *st, int64_t b, int64_t h, int64_t L, double *dst,
                       int64_t KV, int add) {
    size_t off = (size_t)(((b * st->heads + h) * st->levels + L) * KV);
    const void *base = lla__state_values(st);
    int64_t a;
    if (!add) memset(dst, 0, (size_t)KV * sizeof *dst);
    if (st->dtype == LLA_DTYPE_F64)
        for (a = 0; a < KV; ++a) dst[a] += ((const double *)base)[off + (size_t)a];
    else
        for (a = 0; a < KV; ++a) dst[a] += (double)((const float *)base)[off + (size_t)a];
}

static void state_store(lla_state *st, int64_t b, int64_t h, int64_t L, const double *src,
                        int64_t KV) {
    size_t off = (size_t)(((b * st->heads + h) * st->levels + L) * KV);
    void *base = lla__state_values(st);
    int64_t a;
    if (st->dtype == LLA_DTYPE_F64)
        for (a = 0; a < KV; ++a) ((double *)base)[off + (size_t)a] = src ? src[a] : 0.0;
    else
        for (a = 0; a < KV; ++a) ((float *)base)[off + (size_t)a] = src ? (float)src[a] : 0.0f;
}

static void carve_chunk(const bw_plan *w, double *m, chunk_buf *cb) {
    int64_t C = w->C, K = w->K, V = w->V, NL = w->NL;
    cb->q = m; m += C * K;
    cb->k = m; m += C * K;
    cb->u = m; m += C * K;
    cb->kap = m; m += C * K;
    cb->dq = m; m += C * K;
    cb->dk = m; m += C * K;
    cb->du = m; m += C * K;
    cb->dkap = m; m += C * K;
    cb->pi = m; m += C * K;
    cb->e = m; m += C * K;
    cb->f = m; m += C * K;
    cb->v = m; m += C * V;
    cb->dout = m; m += C * V;
    cb->dv = m; m += C * V;
    cb->lam = m; m += C * NL;
    cb->dlam = m; m += C * NL;
    cb->gam = m; m += C;
    cb->coef = m; m += C;
    cb->dgam = m; m += C;
    cb->dbeta = m; m += C;
    cb->ds = m; m += C;
    cb->walk = m; m += (C + 1) * K;
    cb->tk = m; m += K;
    cb->tv = m; m += V;
    cb->tv2 = m;
    cb->beta = cb->coef;
}

/* The whole backward of one (sequence, head). */
static void backward_sequence(const seq_ctx *s, const bw_plan *w, double *ws,
                              const lla_state *initial, const lla_state *d_final,
                              lla_state *d_initial, int64_t b) {
    int64_t KV = s->K * s->V, S = w->spacing, L, c, nc, n_seg, seg;
    double *ckpt = ws, *seg_states = ckpt + w->n_ckpt * w->state;
    double *dE = seg_states + (S - 1) * w->state;
    chunk_buf cb;
    carve_chunk(w, dE + w->state, &cb);

    /* dE starts as d_final (the state after the last token, decoder layout). */
    for (L = 0; L < s->NL; ++L) {
        if (d_final)
            state_load(d_final, b, s->h, L, dE + L * KV, KV, 0);
        else
            memset(dE + L * KV, 0, (size_t)KV * sizeof(double));
    }
    if (s->len == 0) { /* no tokens: the forward copies the initial slice to the final one */
        if (d_initial)
            for (L = 0; L < s->NL; ++L) state_store(d_initial, b, s->h, L, dE + L * KV, KV);
        return;
    }
    /* E^0: the initial state's sets (decoder layout at pos0 - 1) moved to target pos0. */
    memset(ckpt, 0, (size_t)w->state * sizeof(double));
    if (initial && s->pos0 > 0)
        for (L = 0; L < s->NL; ++L) {
            int64_t first = set_first(s->hier, s->pos0 - 1, L, 1);
            if (first < 0) continue; /* empty level: its content is not part of the state */
            state_load(initial, b, s->h, L, ckpt + lla__level(s->hier, s->pos0, first) * KV, KV, 1);
        }
    /* Forward sweep: checkpoints every S chunks. */
    nc = chunk_count(s);
    n_seg = (nc + S - 1) / S;
    for (seg = 1; seg < n_seg; ++seg) {
        double *E = ckpt + seg * w->state;
        memcpy(E, E - w->state, (size_t)w->state * sizeof(double));
        for (c = (seg - 1) * S; c < seg * S; ++c) {
            int64_t begin, end, next;
            chunk_span(s, c, &begin, &end, &next);
            load_chunk(s, &cb, begin, end, 0);
            advance(s, &cb, E, next);
        }
    }
    /* Reverse sweep, one segment at a time: re-run its states, then go backwards. */
    for (seg = n_seg - 1; seg >= 0; --seg) {
        int64_t c0 = seg * S, c1 = c0 + S < nc ? c0 + S : nc;
        for (c = c0 + 1; c < c1; ++c) {
            double *E = seg_states + (c - c0 - 1) * w->state;
            const double *prev = c == c0 + 1 ? ckpt + seg * w->state : E - w->state;
            int64_t begin, end, next;
            memcpy(E, prev, (size_t)w->state * sizeof(double));
            chunk_span(s, c - 1, &begin, &end, &next);
            load_chunk(s, &cb, begin, end, 0);
            advance(s, &cb, E, next);
        }
        for (c = c1 - 1; c >= c0; --c) {
            const double *E = c == c0 ? ckpt + seg * w->state
                                      : seg_states + (c - c0 - 1) * w->state;
            int64_t begin, end, next;
            chunk_span(s, c, &begin, &end, &next);
            load_chunk(s, &cb, begin, end, 1);
            backward_chunk(s, &cb, E, dE, next);
            store_chunk(s, &cb);
        }
    }
    /* d_initial: the transpose of the initial move to target pos0. */
    if (d_initial)
        for (L = 0; L < s->NL; ++L) {
            int64_t first = s->pos0 > 0 ? set_first(s->hier, s->pos0 - 1, L, 1) : -1;
            state_store(d_initial, b, s->h, L,
                        first < 0 ? NULL : dE + lla__level(s->hier, s->pos0, first) * KV, KV);
        }
}

lla_status lla__scalar_backward(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                                lla_tensor d_o, const lla_state *initial,
                                const lla_state *d_final, const lla_grads *grads,
                                lla_state *d_initial, void *workspace, size_t workspace_bytes) {
    bw_plan w;
    lla_status st;
    int64_t b, h, group_size;
    seq_ctx s;
    (void)self;
    if (d_o.dtype != LLA_DTYPE_F32 && d_o.dtype != LLA_DTYPE_F64)
        return lla__set_error(LLA_ERR_DTYPE, "scalar backward supports f32 and f64, not %s",
                              lla_dtype_name(d_o.dtype));
    if ((st = make_plan(p, &w)) != LLA_OK) return st;
    if (w.total > 0 && (!workspace || workspace_bytes < (size_t)w.total * sizeof(double)))
        return lla__set_error(LLA_ERR_WORKSPACE, "scalar backward workspace too small");
    memset(&s, 0, sizeof s);
    s.p = p;
    s.x = x;
    s.d_o = &d_o;
    s.grads = grads;
    s.hier = p->hierarchy;
    s.gdn = p->variant == LLA_VARIANT_GDN;
    s.K = p->dk;
    s.V = p->dv;
    s.NL = p->levels;
    s.C = w.C;
    group_size = p->heads / p->qk_heads;
    for (b = 0; b < p->batch; ++b) {
        int64_t start, end;
        lla__sequence(p, b, &s.tb, &start, &end);
        s.t0 = start;
        s.len = end - start;
        s.pos0 = initial ? lla__state_positions(initial)[b] : 0;
        if (d_initial) lla__state_positions(d_initial)[b] = s.pos0;
        for (h = 0; h < p->heads; ++h) {
            s.h = h;
            s.hq = lla__qk_head(p, h);
            s.add_qk = h % group_size != 0;
            backward_sequence(&s, &w, (double *)workspace, initial, d_final, d_initial, b);
        }
    }
    return LLA_OK;
}
