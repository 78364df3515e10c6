/*
 * forward.c - the scalar backend's chunkwise forward (SPEC 4, docs/algorithms.md).
 *
 * One sequential sweep per (sequence, head) over chunks [c0, c1) aligned to multiples of
 * the chunk length C in absolute position.  The carried state W is exactly the decoder
 * state relative to the next target c0: for the sources s < c0, grouped into the level
 * sets of target c0 (level 0 empty), level l holds
 *     sum over its sources of Phi(c0-1, s) c_s k_s v_s^T     (not yet decayed for token c0).
 * Per chunk:
 *   (a) intra: the C x C block with chunk-local cumulative gates (every exponent <= 0);
 *       GDN through the UT/WY form (SPEC 4.4);
 *   (b) inter: target t reads lambda[t, level(t, first source of set l)] q~_t^T W_l, with
 *       q~_t = scale P_t ... P_c0 applied to q_t from the left (Mamba-2: scale exp(gc_t) q_t);
 *   (c) advance: regroup W to the next target, apply the chunk's whole transition to every
 *       level, add the chunk's tokens at their levels for that target.
 * All arithmetic is float64, whatever the tensor dtype (F32 or F64): outputs and states
 * are rounded once, when stored.  No allocation: every buffer comes from the workspace.
 */
#include "scalar.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ tensors */

static double load(const lla_tensor *x, int64_t b, int64_t t, int64_t h, int64_t d) {
    int64_t off = lla__offset(x, b, t, h, d);
    if (x->dtype == LLA_DTYPE_F64) return ((const double *)x->data)[off];
    return (double)((const float *)x->data)[off];
}

static void store(const lla_tensor *x, int64_t b, int64_t t, int64_t h, int64_t d, double v) {
    int64_t off = lla__offset(x, b, t, h, d);
    if (x->dtype == LLA_DTYPE_F64)
        ((double *)x->data)[off] = v;
    else
        ((float *)x->data)[off] = (float)v;
}

/* ------------------------------------------------------------------ workspace */

/* Everything one (sequence, head) sweep needs.  rows = min(C, seqlen) bounds every chunk. */
typedef struct sweep {
    lla_hierarchy hierarchy;
    int gdn;
    int levels;
    int64_t K, V, C, rows;
    double scale;

    double *W;    /* levels x K x V: the carried state; a level not in `live` is garbage */
    double *q;    /* rows x K: the chunk's queries                                       */
    double *k;    /* rows x K: keys                                                      */
    double *qt;   /* rows x K: q~, queries carried back to the chunk start, with scale  */
    double *v;    /* rows x V: values                                                    */
    double *acc;  /* rows x V: the chunk's outputs                                       */
    double *gc;   /* rows: chunk-local inclusive cumulative log gate                     */
    double *beta; /* rows: GDN beta (1 for Mamba-2)                                      */
    /* GDN only */
    double *w;    /* rows x K: WY vectors, P_i...P_c0 = exp(gc_i) (I - sum_{j<=i} k_j w_j^T) */
    double *u;    /* rows x V: pseudo-values of a token group, or w_j^T W_l              */
    double *row;  /* rows: one target's intra coefficients                              */
    double *gram; /* rows x rows: k_i . k_j for j < i                                    */
} sweep;

/* Reserves count doubles at *used (64-byte aligned pieces); 0 on overflow. */
static int take(size_t *used, int64_t count, char *base, double **out) {
    size_t bytes;
    if (count < 0 || (uint64_t)count > (SIZE_MAX - 64) / sizeof(double)) return 0;
    bytes = lla__round_up64((size_t)count * sizeof(double));
    *out = base ? (double *)(void *)(base + *used) : NULL;
    return lla__size_add_ok(*used, bytes, used);
}

/* Lays the sweep's buffers out from base (NULL: sizes only).  0 on overflow. */
static int layout(const lla_problem *p, char *base, sweep *sw, size_t *bytes) {
    int64_t C = lla__chunk(p), rows = C < p->seqlen ? C : p->seqlen;
    int64_t nW, rK, rV, rr;
    size_t used = 0;
    int ok;
    sw->hierarchy = p->hierarchy;
    sw->gdn = p->variant == LLA_VARIANT_GDN;
    sw->levels = (int)p->levels;
    sw->K = p->dk;
    sw->V = p->dv;
    sw->C = C;
    sw->rows = rows;
    sw->scale = p->scale;
    *bytes = 0;
    if (!lla__mul_ok(p->levels, p->dk, &nW) || !lla__mul_ok(nW, p->dv, &nW) ||
        !lla__mul_ok(rows, p->dk, &rK) || !lla__mul_ok(rows, p->dv, &rV) ||
        !lla__mul_ok(rows, rows, &rr))
        return 0;
    ok = take(&used, nW, base, &sw->W) && take(&used, rK, base, &sw->q) &&
         take(&used, rK, base, &sw->k) && take(&used, rK, base, &sw->qt) &&
         take(&used, rV, base, &sw->v) && take(&used, rV, base, &sw->acc) &&
         take(&used, rows, base, &sw->gc) && take(&used, rows, base, &sw->beta);
    if (sw->gdn)
        ok = ok && take(&used, rK, base, &sw->w) && take(&used, rV, base, &sw->u) &&
             take(&used, rows, base, &sw->row) && take(&used, rr, base, &sw->gram);
    else
        sw->w = sw->u = sw->row = sw->gram = NULL;
    *bytes = used;
    return ok;
}

lla_status lla__scalar_forward_workspace(lla_backend *self, const lla_problem *p,
                                         lla_dtype dtype, size_t *bytes) {
    sweep sw;
    (void)self;
    (void)dtype; /* float64 internally for F32 and F64 tensors */
    if (!layout(p, NULL, &sw, bytes))
        return lla__set_error(LLA_ERR_SHAPE, "scalar forward: workspace size overflows");
    return LLA_OK;
}

/* ------------------------------------------------------------------ small kernels */

static double dot(const double *a, const double *b, int64_t n) {
    double s = 0.0;
    int64_t i;
    for (i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

/* y += alpha x */
static void axpy(double *y, double alpha, const double *x, int64_t n) {
    int64_t i;
    for (i = 0; i < n; ++i) y[i] += alpha * x[i];
}

/* M (K x V) += alpha a b^T */
static void rank1(double *M, double alpha, const double *a, const double *b, int64_t K,
                  int64_t V) {
    int64_t i;
    for (i = 0; i < K; ++i) axpy(M + i * V, alpha * a[i], b, V);
}

static int is_live(uint64_t live, int l) { return (int)((live >> l) & 1u); }

/* ------------------------------------------------------------------ level sets */

/* Moves every live level set of target `from` whole to its level for target `to` >= from
 * and returns the live mask relative to `to`.  Level l holds the sources
 * [lo_l(from), lo_{l-1}(from)) (level 0: {from}); these ranges nest, so a set never
 * splits and only moves up: going from the top level down never overwrites a set that has
 * not moved yet. */
static uint64_t regroup(sweep *sw, uint64_t live, int64_t from, int64_t to) {
    const int64_t KV = sw->K * sw->V;
    uint64_t out = 0;
    int l;
    for (l = sw->levels - 1; l >= 0; --l) {
        int dst;
        if (!is_live(live, l)) continue;
        dst = lla__level(sw->hierarchy, to, lla__level_start(sw->hierarchy, l, from));
        if (dst != l) {
            double *d = sw->W + dst * KV, *s = sw->W + l * KV;
            if (is_live(out, dst))
                axpy(d, 1.0, s, KV);
            else
                memcpy(d, s, (size_t)KV * sizeof *d);
        }
        out |= (uint64_t)1 << dst;
    }
    return out;
}

/* Non-empty levels of a decoder state relative to target t (level 0 = {t}). */
static uint64_t levels_of_target(const sweep *sw, int64_t t) {
    uint64_t live = 1u;
    int l;
    for (l = 1; l < sw->levels; ++l)
        if (lla__level_start(sw->hierarchy, l, t) < lla__level_start(sw->hierarchy, l - 1, t))
            live |= (uint64_t)1 << l;
    return live;
}

/* ------------------------------------------------------------------ states */

static int64_t head_offset(const lla_state *s, int64_t b, int64_t h) {
    return (b * s->heads + h) * s->levels * s->dk * s->dv;
}

/* W(p0) from the initial state (relative to target p0-1); returns its live mask. */
static uint64_t load_initial(sweep *sw, const lla_state *initial, int64_t b, int64_t h,
                             int64_t p0) {
    const int64_t KV = sw->K * sw->V, base = head_offset(initial, b, h);
    uint64_t live;
    int64_t i;
    int l;
    if (p0 == 0) return 0; /* nothing consumed yet */
    live = levels_of_target(sw, p0 - 1);
    for (l = 0; l < sw->levels; ++l) {
        double *Wl = sw->W + l * KV;
        if (!is_live(live, l)) continue;
        if (initial->dtype == LLA_DTYPE_F64) {
            const double *s = (const double *)lla__state_values(initial) + base + l * KV;
            for (i = 0; i < KV; ++i) Wl[i] = s[i];
        } else {
            const float *s = (const float *)lla__state_values(initial) + base + l * KV;
            for (i = 0; i < KV; ++i) Wl[i] = (double)s[i];
        }
    }
    return regroup(sw, live, p0 - 1, p0);
}

/* The state relative to the last token: live levels of W, zeros elsewhere. */
static void write_final(const sweep *sw, lla_state *final, int64_t b, int64_t h,
                        uint64_t live) {
    const int64_t KV = sw->K * sw->V, base = head_offset(final, b, h);
    int64_t i;
    int l;
    for (l = 0; l < sw->levels; ++l) {
        const double *Wl = sw->W + l * KV;
        int on = is_live(live, l);
        if (final->dtype == LLA_DTYPE_F64) {
            double *d = (double *)lla__state_values(final) + base + l * KV;
            for (i = 0; i < KV; ++i) d[i] = on ? Wl[i] : 0.0;
        } else {
            float *d = (float *)lla__state_values(final) + base + l * KV;
            for (i = 0; i < KV; ++i) d[i] = on ? (float)Wl[i] : 0.0f;
        }
    }
}

/* Zero-length sequence: the final state is the initial one (or empty). */
static void pass_through(const lla_state *initial, lla_state *final, int64_t b, int64_t h) {
    size_t elem = lla_dtype_size(final->dtype);
    size_t n = (size_t)(final->levels * final->dk * final->dv) * elem;
    char *d = (char *)lla__state_values(final) + (size_t)head_offset(final, b, h) * elem;
    if (!initial) {
        memset(d, 0, n);
    } else {
        const char *s = (const char *)lla__state_values(initial) +
                        (size_t)head_offset(initial, b, h) * elem;
        if (s != d) memcpy(d, s, n);
    }
}

/* ------------------------------------------------------------------ one chunk */

/* Copies tokens [tok0, tok0 + L) (tensor time index) into the sweep's buffers. */
static void load_chunk(sweep *sw, const lla_inputs *x, int64_t tb, int64_t tok0, int64_t L,
                       int64_t h, int64_t hq) {
    int64_t i, d;
    for (i = 0; i < L; ++i) {
        int64_t t = tok0 + i;
        for (d = 0; d < sw->K; ++d) {
            sw->q[i * sw->K + d] = load(&x->q, tb, t, hq, d);
            sw->k[i * sw->K + d] = load(&x->k, tb, t, hq, d);
        }
        for (d = 0; d < sw->V; ++d) sw->v[i * sw->V + d] = load(&x->v, tb, t, h, d);
        sw->gc[i] = (i ? sw->gc[i - 1] : 0.0) + load(&x->g, tb, t, h, 0);
        sw->beta[i] = sw->gdn ? load(&x->beta, tb, t, h, 0) : 1.0;
    }
}

/* GDN: Gram matrix and WY vectors w_i = beta_i (k_i - sum_{j<i} (k_i.k_j) w_j), so that
 * (I - b_i k_i k_i^T) ... (I - b_0 k_0 k_0^T) = I - sum_{j<=i} k_j w_j^T (ungated). */
static void prepare_wy(sweep *sw, int64_t L) {
    const int64_t K = sw->K;
    int64_t i, j, d;
    for (i = 0; i < L; ++i) {
        double *wi = sw->w + i * K;
        for (j = 0; j < i; ++j) sw->gram[i * sw->rows + j] = dot(sw->k + i * K, sw->k + j * K, K);
        for (d = 0; d < K; ++d) wi[d] = sw->k[i * K + d];
        for (j = 0; j < i; ++j) axpy(wi, -sw->gram[i * sw->rows + j], sw->w + j * K, K);
        for (d = 0; d < K; ++d) wi[d] *= sw->beta[i];
    }
}

/* Outputs of the chunk [c0, c0+L): intra block plus the reads of W(c0). */
static void chunk_outputs(sweep *sw, const lla_inputs *x, const lla_tensor *o, int64_t tb,
                          int64_t tok0, int64_t h, int64_t c0, int64_t L, uint64_t live) {
    const int64_t K = sw->K, V = sw->V, KV = sw->K * sw->V;
    double lam[64]; /* levels <= 62 (checked by the core) */
    int64_t i, j, d;
    int l;
    for (i = 0; i < L; ++i) {
        const int64_t t = c0 + i;
        const double *qi = sw->q + i * K;
        double *acc = sw->acc + i * V, *qt = sw->qt + i * K;
        for (l = 0; l < sw->levels; ++l) lam[l] = load(&x->lambda, tb, tok0 + i, h, l);
        for (d = 0; d < V; ++d) acc[d] = 0.0;

        /* (a) intra */
        if (!sw->gdn) {
            for (j = 0; j <= i; ++j) {
                double coef = lam[lla__level(sw->hierarchy, t, c0 + j)] * sw->scale *
                              dot(qi, sw->k + j * K, K) * exp(sw->gc[i] - sw->gc[j]);
                axpy(acc, coef, sw->v + j * V, V);
            }
            for (d = 0; d < K; ++d) qt[d] = sw->scale * exp(sw->gc[i]) * qi[d];
        } else {
            double *x_row = sw->row;
            /* q_i . k_j, then q~_i = scale exp(gc_i) (q_i - sum_{j<=i} (q_i.k_j) w_j) */
            for (j = 0; j <= i; ++j) x_row[j] = dot(qi, sw->k + j * K, K);
            for (d = 0; d < K; ++d) qt[d] = qi[d];
            for (j = 0; j <= i; ++j) axpy(qt, -x_row[j], sw->w + j * K, K);
            for (d = 0; d < K; ++d) qt[d] *= sw->scale * exp(sw->gc[i]);
            /* x = row i of tril(QK^T) (I + A)^-1, A[m][j] = beta_m k_m.k_j (m > j):
             * x_j = (q_i.k_j) - sum_{m=j+1..i} x_m A[m][j]; then x_j is the ungated
             * q_i^T (I - b_i k_i k_i^T) ... (I - b_{j+1} k_{j+1} k_{j+1}^T) k_j. */
            for (j = i; j >= 0; --j) {
                double xj = x_row[j];
                int64_t m;
                for (m = j + 1; m <= i; ++m) xj -= x_row[m] * sw->beta[m] * sw->gram[m * sw->rows + j];
                x_row[j] = xj;
            }
            for (j = 0; j <= i; ++j) {
                double coef = lam[lla__level(sw->hierarchy, t, c0 + j)] * sw->scale * x_row[j] *
                              exp(sw->gc[i] - sw->gc[j]) * sw->beta[j];
                axpy(acc, coef, sw->v + j * V, V);
            }
        }

        /* (b) inter: every set of W(c0) sits at one level relative to t */
        for (l = 1; l < sw->levels; ++l) {
            const double *Wl = sw->W + l * KV;
            double lt;
            if (!is_live(live, l)) continue;
            lt = lam[lla__level(sw->hierarchy, t, lla__level_start(sw->hierarchy, l, c0))];
            for (d = 0; d < K; ++d) axpy(acc, lt * qt[d], Wl + d * V, V);
        }

        for (d = 0; d < V; ++d) store(o, tb, tok0 + i, h, d, acc[d]);
    }
}

/* Adds the chunk tokens [a, e) (all at level dst for the target) to W_dst:
 *   sum_{s in [a,e)} Phi(c0+L-1, s) c_s k_s v_s^T.
 * Mamba-2: Phi = exp(gc_last - gc_s).  GDN: the chunk's delta rule started from zero with
 * values outside [a, e) set to zero, in the UT form: u = (I + A o Gamma)^-1 (beta v), then
 * sum_i exp(gc_last - gc_i) k_i u_i^T (rows i < a have u_i = 0). */
static void add_tokens(sweep *sw, int64_t L, int64_t a, int64_t e, int dst, int dst_live) {
    const int64_t K = sw->K, V = sw->V, KV = sw->K * sw->V;
    const double glast = sw->gc[L - 1];
    double *Wd = sw->W + dst * KV;
    int64_t i, j, d;
    if (!dst_live)
        for (i = 0; i < KV; ++i) Wd[i] = 0.0;
    if (!sw->gdn) {
        for (i = a; i < e; ++i)
            rank1(Wd, exp(glast - sw->gc[i]), sw->k + i * K, sw->v + i * V, K, V);
        return;
    }
    for (i = a; i < L; ++i) {
        double *ui = sw->u + i * V;
        for (d = 0; d < V; ++d) ui[d] = i < e ? sw->beta[i] * sw->v[i * V + d] : 0.0;
        for (j = a; j < i; ++j)
            axpy(ui, -sw->beta[i] * sw->gram[i * sw->rows + j] * exp(sw->gc[i] - sw->gc[j]),
                 sw->u + j * V, V);
    }
    for (i = a; i < L; ++i) rank1(Wd, exp(glast - sw->gc[i]), sw->k + i * K, sw->u + i * V, K, V);
}

/* W(c0) -> the state relative to `target` (c0+L, or c0+L-1 for a final state) after the
 * chunk's tokens.  Returns the new live mask. */
static uint64_t advance(sweep *sw, int64_t c0, int64_t L, int64_t target, uint64_t live) {
    const int64_t K = sw->K, V = sw->V, KV = sw->K * sw->V;
    const double decay = exp(sw->gc[L - 1]);
    int64_t i, j, d;
    int l;
    live = regroup(sw, live, c0, target);

    /* the chunk's transition P_{c0+L-1} ... P_c0 on every set */
    for (l = 0; l < sw->levels; ++l) {
        double *Wl = sw->W + l * KV;
        if (!is_live(live, l)) continue;
        if (sw->gdn) { /* W = exp(gc_last) (W - sum_j k_j (w_j^T W)) */
            for (j = 0; j < L; ++j) {
                double *uj = sw->u + j * V;
                for (d = 0; d < V; ++d) uj[d] = 0.0;
                for (i = 0; i < K; ++i) axpy(uj, sw->w[j * K + i], Wl + i * V, V);
            }
            for (j = 0; j < L; ++j) rank1(Wl, -1.0, sw->k + j * K, sw->u + j * V, K, V);
        }
        for (i = 0; i < KV; ++i) Wl[i] *= decay;
    }

    /* the chunk's tokens, in runs that share a level for the target */
    for (i = 0; i < L;) {
        int dst = lla__level(sw->hierarchy, target, c0 + i);
        int64_t e = i + 1;
        while (e < L && lla__level(sw->hierarchy, target, c0 + e) == dst) ++e;
        add_tokens(sw, L, i, e, dst, is_live(live, dst));
        live |= (uint64_t)1 << dst;
        i = e;
    }
    return live;
}

/* ------------------------------------------------------------------ the sweep */

static void sweep_head(sweep *sw, const lla_problem *p, const lla_inputs *x,
                       const lla_tensor *o, int64_t b, int64_t h, int64_t p0,
                       const lla_state *initial, lla_state *final) {
    int64_t tb, start, end, c0, c1, stop;
    int64_t hq = lla__qk_head(p, h);
    uint64_t live;
    lla__sequence(p, b, &tb, &start, &end);
    stop = p0 + (end - start); /* absolute position after the last token */
    live = initial ? load_initial(sw, initial, b, h, p0) : 0;
    for (c0 = p0; c0 < stop; c0 = c1) {
        int64_t L, tok0 = start + (c0 - p0);
        c1 = (c0 / sw->C + 1) * sw->C;
        if (c1 > stop) c1 = stop;
        L = c1 - c0;
        load_chunk(sw, x, tb, tok0, L, h, hq);
        if (sw->gdn) prepare_wy(sw, L);
        chunk_outputs(sw, x, o, tb, tok0, h, c0, L, live);
        if (c1 < stop) {
            live = advance(sw, c0, L, c1, live);
        } else if (final) { /* decoder layout: relative to the last token, which is level 0 */
            live = advance(sw, c0, L, c1 - 1, live);
            write_final(sw, final, b, h, live);
        }
    }
}

lla_status lla__scalar_forward(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                               lla_tensor o, const lla_state *initial, lla_state *final,
                               void *workspace, size_t workspace_bytes) {
    sweep sw;
    size_t need = 0;
    int64_t b, h;
    (void)self;
    if (!layout(p, (char *)workspace, &sw, &need) || need > workspace_bytes)
        return lla__set_error(LLA_ERR_WORKSPACE, "scalar forward: workspace has %zu bytes, needs %zu",
                              workspace_bytes, need);
    for (b = 0; b < p->batch; ++b) {
        int64_t tb, start, end;
        /* read before any write: final may be the same memory as initial */
        int64_t p0 = initial ? lla__state_positions(initial)[b] : 0;
        lla__sequence(p, b, &tb, &start, &end);
        for (h = 0; h < p->heads; ++h) {
            if (end == start) {
                if (final) pass_through(initial, final, b, h);
                continue;
            }
            sweep_head(&sw, p, x, &o, b, h, p0, initial, final);
        }
        if (final) lla__state_positions(final)[b] = p0 + (end - start);
    }
    return LLA_OK;
}
