/*
 * omp_sweep.c - building blocks of the openmp sweeps (see omp_sweep.h): workspace layout,
 * chunk loading, the summary operands, and the level sets with their lazy decays.
 */
#include "omp_sweep.h"

#include <string.h>

void *lla__omp_take(bump *bp, int64_t count, size_t elem) {
    size_t bytes;
    void *ptr;
    if (!bp->ok || count < 0 || !lla__size_mul_ok((size_t)count, elem, &bytes) ||
        bytes > SIZE_MAX - 64) {
        bp->ok = 0;
        return NULL;
    }
    bytes = lla__round_up64(bytes);
    ptr = bp->base ? bp->base + bp->used : NULL;
    if (!lla__size_add_ok(bp->used, bytes, &bp->used)) bp->ok = 0;
    return ptr;
}

int64_t lla__omp_round_pad(int64_t n) { return (n + LLA_OMP_PAD - 1) / LLA_OMP_PAD * LLA_OMP_PAD; }

/* n * m with overflow flag */
int64_t lla__omp_mul_or(int64_t a, int64_t b, int *ok) {
    int64_t r = 0;
    if (!lla__mul_ok(a, b, &r)) *ok = 0;
    return r;
}

void lla__omp_layout_chunk(const omp_ctx *cx, bump *bp, chunk_tiles *ch) {
    int ok = 1;
    const int64_t rK = lla__omp_mul_or(cx->Cr, cx->ldK, &ok),
                  rV = lla__omp_mul_or(cx->Cr, cx->ldV, &ok);
    const int64_t kC = lla__omp_mul_or(cx->K, cx->ldC, &ok),
                  rC = lla__omp_mul_or(cx->Cr, cx->ldC, &ok);
    const int64_t rL = lla__omp_mul_or(cx->Cr, cx->NL, &ok);
    if (!ok) bp->ok = 0;
    ch->q = (float *)lla__omp_take(bp, rK, sizeof(float));
    ch->kt = (float *)lla__omp_take(bp, kC, sizeof(float));
    ch->v = (float *)lla__omp_take(bp, rV, sizeof(float));
    ch->lam = (float *)lla__omp_take(bp, rL, sizeof(float));
    ch->e = (float *)lla__omp_take(bp, cx->Cr, sizeof(float));
    ch->gc = (double *)lla__omp_take(bp, cx->Cr, sizeof(double));
    if (cx->gdn) {
        ch->kr = (float *)lla__omp_take(bp, rK, sizeof(float));
        ch->dt = (float *)lla__omp_take(bp, kC, sizeof(float));
        ch->vs = ch->v;
        ch->beta = (float *)lla__omp_take(bp, cx->Cr, sizeof(float));
        ch->aw = (float *)lla__omp_take(bp, rC, sizeof(float));
        ch->awb = (float *)lla__omp_take(bp, rC, sizeof(float));
        ch->w = (float *)lla__omp_take(bp, rK, sizeof(float));
    } else {
        ch->kr = NULL;
        ch->dt = ch->kt;
        ch->vs = (float *)lla__omp_take(bp, rV, sizeof(float));
        ch->beta = ch->aw = ch->awb = ch->w = NULL;
    }
}

void lla__omp_layout_thread(const omp_ctx *cx, bump *bp, thread_tiles *tl) {
    int ok = 1;
    const int64_t rC = lla__omp_mul_or(cx->Cr, cx->ldC, &ok),
                  rV = lla__omp_mul_or(cx->Cr, cx->ldV, &ok);
    const int64_t rK = lla__omp_mul_or(cx->Cr, cx->ldK, &ok);
    const int64_t nrow = cx->Cr > cx->K ? cx->Cr : cx->K;
    if (!ok) bp->ok = 0;
    lla__omp_layout_chunk(cx, bp, &tl->ch[0]);
    lla__omp_layout_chunk(cx, bp, &tl->ch[1]);
    tl->s = (float *)lla__omp_take(bp, rC, sizeof(float));
    tl->s2 = (float *)lla__omp_take(bp, rC, sizeof(float));
    tl->o = (float *)lla__omp_take(bp, rV, sizeof(float));
    tl->rs = (float *)lla__omp_take(bp, nrow, sizeof(float));
    tl->neg1 = (float *)lla__omp_take(bp, nrow, sizeof(float));
    tl->lev = (int *)lla__omp_take(bp, cx->Cr, sizeof(int));
    tl->tmp = (float *)lla__omp_take(bp, cx->set_floats, sizeof(float));
    tl->bk = cx->gdn ? (float *)lla__omp_take(bp, rK, sizeof(float)) : NULL;
    tl->x = cx->gdn ? (float *)lla__omp_take(bp, rV, sizeof(float)) : NULL;
    tl->slots = (omp_set *)lla__omp_take(bp, cx->NL + 1, sizeof(omp_set));
    tl->pool =
        (float *)lla__omp_take(bp, lla__omp_mul_or(cx->NL + 1, cx->set_floats, &ok), sizeof(float));
    if (!ok) bp->ok = 0;
}

/* Empty sets, one buffer of the pool each. */
void lla__omp_init_sets(const omp_ctx *cx, omp_set *slots, float *pool) {
    int64_t i;
    for (i = 0; i <= cx->NL; ++i) {
        slots[i].data = pool + (size_t)i * (size_t)cx->set_floats;
        slots[i].live = 0;
    }
}

/* ------------------------------------------------------------------ loading */

void lla__omp_load_rows(const lla_tensor *x, int64_t tb, int64_t t0, int64_t rows, int64_t head,
                        int64_t D, float *dst, int64_t ld) {
    const float *base = (const float *)x->data;
    const int64_t s3 = x->strides[3];
    int64_t i, d;
    for (i = 0; i < rows; ++i) {
        const float *src = base + lla__offset(x, tb, t0 + i, head, 0);
        float *row = dst + i * ld;
        if (s3 == 1)
            memcpy(row, src, (size_t)D * sizeof(float));
        else
            for (d = 0; d < D; ++d) row[d] = src[d * s3];
    }
}

/* Rows [pos_a, pos_a + rows) of a per-head [B,T,H,D] input (values, d_o) into the caches
 * ahead of their chunk: they are read with a large stride (heads x D), which the hardware
 * prefetcher follows poorly. */
void lla__omp_prefetch_rows(const lla_tensor *x, const seq_info *sq, int64_t pos_a, int64_t rows,
                            int64_t D) {
#if defined(__GNUC__)
    const float *p;
    int64_t i, d;
    if (x->strides[3] != 1 || rows <= 0 || pos_a + rows > sq->p0 + sq->n) return;
    p = (const float *)x->data + lla__offset(x, sq->tb, sq->start + (pos_a - sq->p0), sq->h, 0);
    for (i = 0; i < rows; ++i, p += x->strides[1])
        for (d = 0; d < D; d += 16) __builtin_prefetch(p + d, 0, 3);
#else
    (void)x, (void)sq, (void)pos_a, (void)rows, (void)D;
#endif
}

/* lev[i] = level(pos_a + i, lo) for i < rows (lo < pos_a: a set read by a chunk).  A pair's
 * level never decreases as the target moves on, so equal ends mean one level throughout. */
void lla__omp_row_levels(int hierarchy, int64_t pos_a, int64_t rows, int64_t lo, int *lev) {
    const int first = lla__omp_level(hierarchy, pos_a, lo);
    int64_t i;
    if (lla__omp_level(hierarchy, pos_a + rows - 1, lo) == first) {
        for (i = 0; i < rows; ++i) lev[i] = first;
        return;
    }
    for (i = 0; i < rows; ++i) lev[i] = lla__omp_level(hierarchy, pos_a + i, lo);
}

float lla__omp_load_scalar(const lla_tensor *x, int64_t tb, int64_t t, int64_t h) {
    return ((const float *)x->data)[lla__offset(x, tb, t, h, 0)];
}

/* Tokens [pos_a, pos_a + rows) of the sequence; queries only (phase 3) or everything. */
void lla__omp_load_chunk(const omp_ctx *cx, const seq_info *sq, chunk_tiles *ch, int64_t pos_a,
                         int64_t rows, int queries_only) {
    const lla_inputs *x = cx->x;
    const int64_t t0 = sq->start + (pos_a - sq->p0);
    int64_t i, d;
    double g = 0.0;
    ch->pos_a = pos_a;
    ch->rows = rows;
    if (x->q.strides[3] == 1 && !cx->gdn) { /* read in place (GDN rewrites q) */
        ch->qa = (const float *)x->q.data + lla__offset(&x->q, sq->tb, t0, sq->hq, 0);
        ch->ldq = x->q.strides[1];
    } else {
        lla__omp_load_rows(&x->q, sq->tb, t0, rows, sq->hq, cx->K, ch->q, cx->ldK);
        ch->qa = ch->q;
        ch->ldq = cx->ldK;
    }
    for (i = 0; i < rows; ++i) {
        g += (double)lla__omp_load_scalar(&x->g, sq->tb, t0 + i, sq->h);
        ch->gc[i] = g;
        ch->e[i] = (float)lla__omp_decay(g);
    }
    if (!cx->unit_lambda)
        lla__omp_load_rows(&x->lambda, sq->tb, t0, rows, sq->h, cx->NL, ch->lam, cx->NL);
    if (queries_only) return;
    if (cx->gdn) {
        lla__omp_load_rows(&x->k, sq->tb, t0, rows, sq->hq, cx->K, ch->kr, cx->ldK);
        for (i = 0; i < rows; ++i)
            for (d = 0; d < cx->K; ++d) ch->kt[d * cx->ldC + i] = ch->kr[i * cx->ldK + d];
        for (i = 0; i < rows; ++i)
            ch->beta[i] = lla__omp_load_scalar(&x->beta, sq->tb, t0 + i, sq->h);
    } else if (x->k.strides[3] == 1) { /* the rows are contiguous: one transpose */
        cx->kern->transpose(rows, cx->K,
                            (const float *)x->k.data + lla__offset(&x->k, sq->tb, t0, sq->hq, 0),
                            x->k.strides[1], ch->kt, cx->ldC);
    } else {
        const float *base = (const float *)x->k.data;
        const int64_t s3 = x->k.strides[3];
        for (i = 0; i < rows; ++i) {
            const float *src = base + lla__offset(&x->k, sq->tb, t0 + i, sq->hq, 0);
            for (d = 0; d < cx->K; ++d) ch->kt[d * cx->ldC + i] = src[d * s3];
        }
    }
    if (x->v.strides[3] == 1 && cx->V % cx->kern->nr == 0) {
        ch->va = (const float *)x->v.data + lla__offset(&x->v, sq->tb, t0, sq->h, 0);
        ch->ldva = x->v.strides[1];
    } else {
        lla__omp_load_rows(&x->v, sq->tb, t0, rows, sq->h, cx->V, ch->v, cx->ldV);
        ch->va = ch->v;
        ch->ldva = cx->ldV;
    }
    ch->ldvs = cx->ldV;
}

/* Summary operands: Mamba-2 vs = exp(gc_last - gc) v; GDN the UT/WY form (SPEC 4.4):
 * Aw = (I + A)^-1, W = Aw (beta K), D^T = K^T Aw diag(beta exp(gc_last - gc)). */
void lla__omp_prepare_chunk(const omp_ctx *cx, thread_tiles *tl, chunk_tiles *ch) {
    const lla_omp_kernels *kn = cx->kern;
    const int64_t rows = ch->rows, K = cx->K, ldC = cx->ldC, ldK = cx->ldK, ldV = cx->ldV;
    const double glast = ch->gc[rows - 1];
    int64_t i, l, s;
    if (!cx->gdn) {
        for (i = 0; i < rows; ++i) {
            const float dec = (float)lla__omp_decay(glast - ch->gc[i]);
            const float *vi = ch->va + i * ch->ldva;
            float *wi = ch->vs + i * ldV;
            for (s = 0; s < cx->V; ++s) wi[s] = dec * vi[s];
        }
        return;
    }
    ch->vs = (float *)ch->va; /* GDN: the summary values are the values */
    ch->ldvs = ch->ldva;
    /* Gram matrix K K^T, lower tiles */
    kn->gemm(rows, rows, K, ch->kr, ldK, ch->kt, ldC, tl->s, ldC, NULL, 0, LLA_OMP_LOWER_C);
    /* forward substitution: Aw_i = e_i - sum_{l<i} beta_i (k_i.k_l) Aw_l */
    for (i = 0; i < rows; ++i) {
        float *ri = ch->aw + i * ldC;
        for (s = 0; s < ldC; ++s) ri[s] = 0.0f;
        ri[i] = 1.0f;
        for (l = 0; l < i; ++l) {
            const float a = ch->beta[i] * tl->s[i * ldC + l];
            const float *rl = ch->aw + l * ldC;
            if (a == 0.0f) continue;
            for (s = 0; s <= l; ++s) ri[s] -= a * rl[s];
        }
        for (s = 0; s < ldC; ++s) ch->awb[i * ldC + s] = s < rows ? ri[s] * ch->beta[s] : 0.0f;
    }
    /* W = Aw (beta K) */
    for (i = 0; i < rows; ++i)
        for (s = 0; s < K; ++s) tl->bk[i * ldK + s] = ch->beta[i] * ch->kr[i * ldK + s];
    kn->gemm(rows, K, rows, ch->aw, ldC, tl->bk, ldK, ch->w, ldK, NULL, 0, LLA_OMP_LOWER_A);
    /* D^T = K^T Aw, columns scaled by beta_s exp(gc_last - gc_s) */
    kn->gemm(K, rows, rows, ch->kt, ldC, ch->aw, ldC, ch->dt, ldC, NULL, 0, LLA_OMP_FULL);
    for (s = 0; s < rows; ++s) tl->rs[s] = ch->beta[s] * (float)lla__omp_decay(glast - ch->gc[s]);
    for (i = 0; i < K; ++i) {
        float *r = ch->dt + i * ldC;
        for (s = 0; s < rows; ++s) r[s] *= tl->rs[s];
    }
}

/* row[s - src_a] *= lambda[level(t, s)] for the sources s in [src_a, src_e), all <= t. */
void lla__omp_lambda_ranges(const omp_ctx *cx, float *row, const float *lam, int64_t t,
                            int64_t src_a, int64_t src_e) {
    int64_t hi = t + 1, s;
    int l;
    for (l = 0; l < cx->NL; ++l) {
        const int64_t lo = lla__omp_level_start(cx->hier, l, t);
        const int64_t a = lo > src_a ? lo : src_a, e = hi < src_e ? hi : src_e;
        if (a < e) {
            const float f = lam[l];
            for (s = a; s < e; ++s) row[s - src_a] *= f;
        }
        if (lo <= src_a) break;
        hi = lo;
    }
}

void lla__omp_set_scale(const omp_ctx *cx, omp_set *st, double ref) {
    const float f = (float)lla__omp_decay(ref - st->ref);
    if (f != 1.0f) cx->kern->axpby(cx->set_floats, f, st->data, 0.0f, st->data);
    st->ref = ref;
}

/* dst += src (both live), referenced to the later of the two positions (smaller G). */
void lla__omp_set_merge(const omp_ctx *cx, omp_set *dst, const omp_set *src) {
    const double r = dst->ref < src->ref ? dst->ref : src->ref;
    cx->kern->axpby(cx->set_floats, (float)lla__omp_decay(r - dst->ref), dst->data,
                    (float)lla__omp_decay(r - src->ref), src->data);
    dst->ref = r;
    if (src->lo < dst->lo) dst->lo = src->lo;
    if (src->from_chunk > dst->from_chunk) dst->from_chunk = src->from_chunk;
}

void lla__omp_set_copy(const omp_ctx *cx, omp_set *dst, const omp_set *src, double ref_shift) {
    float *data = dst->data;
    memcpy(data, src->data, (size_t)cx->set_floats * sizeof(float));
    *dst = *src;
    dst->data = data;
    dst->ref += ref_shift;
}

void lla__omp_clear_sets(const omp_ctx *cx, omp_set *slots) {
    int l;
    for (l = 0; l <= cx->NL; ++l) slots[l].live = 0;
}

/* Every set relative to target `from` moves whole to its level for target `to` (sets
 * nest, so they only move up: top-down never overwrites a set that has yet to move).
 * The pseudo set (slot NL, a whole raw chunk) goes last, to wherever it now belongs. */
void lla__omp_regroup(const omp_ctx *cx, omp_set *slots, int64_t from, int64_t to) {
    int l;
    if (from == to) return;
    for (l = (int)cx->NL - 1; l >= -1; --l) {
        omp_set *st = slots + (l < 0 ? cx->NL : l);
        int dst;
        if (!st->live) continue;
        dst = lla__omp_level(cx->hier, to, st->lo);
        if (dst == l) continue;
        if (slots[dst].live) {
            lla__omp_set_merge(cx, slots + dst, st);
            st->live = 0;
        } else {
            omp_set tmp = slots[dst];
            slots[dst] = *st;
            *st = tmp;
            st->live = 0;
        }
    }
}

/* slots[dst] += Dt[:, 0:kd] Vs[0:kd, :], a summary decayed to position ref (G). */
void lla__omp_add_summary(const omp_ctx *cx, thread_tiles *tl, omp_set *slots, int dst,
                          const float *dt, const float *vs, int64_t ldvs, int64_t kd, double ref,
                          int64_t lo) {
    const lla_omp_kernels *kn = cx->kern;
    omp_set *d = slots + dst;
    if (!d->live) {
        kn->gemm(cx->K, cx->V, kd, dt, cx->ldC, vs, ldvs, d->data, cx->ldV, NULL, 0, LLA_OMP_FULL);
        d->ref = ref;
        d->lo = lo;
        d->from_chunk = 0;
        d->live = 1;
        return;
    }
    if (d->ref >= ref) { /* d holds older sources: bring it forward, then accumulate */
        lla__omp_set_scale(cx, d, ref);
        kn->gemm(cx->K, cx->V, kd, dt, cx->ldC, vs, ldvs, d->data, cx->ldV, NULL, 1, LLA_OMP_FULL);
    } else {
        kn->gemm(cx->K, cx->V, kd, dt, cx->ldC, vs, ldvs, tl->tmp, cx->ldV, NULL, 0, LLA_OMP_FULL);
        kn->axpby(cx->set_floats, 1.0f, d->data, (float)lla__omp_decay(d->ref - ref), tl->tmp);
    }
    if (lo < d->lo) d->lo = lo;
}

/* Rows [i0, i1) of chunk ch, grouped into runs that share a level for `target`. */
void lla__omp_add_runs(const omp_ctx *cx, thread_tiles *tl, omp_set *slots, const chunk_tiles *ch,
                       int64_t i0, int64_t i1, int64_t target, double ref) {
    int64_t i = i0;
    while (i < i1) {
        const int dst = lla__omp_level(cx->hier, target, ch->pos_a + i);
        int64_t j = i + 1;
        while (j < i1 && lla__omp_level(cx->hier, target, ch->pos_a + j) == dst) ++j;
        lla__omp_add_summary(cx, tl, slots, dst, ch->dt + i, ch->vs + i * ch->ldvs, ch->ldvs, j - i,
                             ref, ch->pos_a + i);
        i = j;
    }
}

/* GDN: the ungated part of the chunk's transition, S = (I - K^T W) S, on every set. */
void lla__omp_transition(const omp_ctx *cx, thread_tiles *tl, omp_set *slots,
                         const chunk_tiles *ch) {
    const lla_omp_kernels *kn = cx->kern;
    int l;
    for (l = 0; l <= cx->NL; ++l) {
        omp_set *st = slots + l;
        if (!st->live) continue;
        kn->gemm(ch->rows, cx->V, cx->K, ch->w, cx->ldK, st->data, cx->ldV, tl->x, cx->ldV, NULL, 0,
                 LLA_OMP_FULL);
        kn->gemm(cx->K, cx->V, ch->rows, ch->kt, cx->ldC, tl->x, cx->ldV, st->data, cx->ldV,
                 tl->neg1, 1, LLA_OMP_FULL);
    }
}

/* Sets relative to ch's first position -> relative to `target`, after ch's tokens.
 * use_prev: the raw previous chunk joins the sets now; keep_raw: ch stays raw. */
void lla__omp_advance(const omp_ctx *cx, thread_tiles *tl, omp_set *slots, const chunk_tiles *ch,
                      const chunk_tiles *pv, int use_prev, int keep_raw, double G0,
                      int64_t target) {
    lla__omp_regroup(cx, slots, ch->pos_a, target);
    if (use_prev) lla__omp_add_runs(cx, tl, slots, pv, 0, pv->rows, target, G0);
    if (cx->gdn) lla__omp_transition(cx, tl, slots, ch);
    if (!keep_raw)
        lla__omp_add_runs(cx, tl, slots, ch, 0, ch->rows, target, G0 + ch->gc[ch->rows - 1]);
}

int64_t lla__omp_state_head(const omp_ctx *cx, int64_t b, int64_t h) {
    return (b * cx->p->heads + h) * cx->NL * cx->K * cx->V;
}

/* The initial state (relative to target p0 - 1, decayed to p0 - 1 = G origin 0). */
void lla__omp_import_initial(const omp_ctx *cx, const seq_info *sq, omp_set *slots) {
    const float *src =
        (const float *)lla__state_values(cx->initial) + lla__omp_state_head(cx, sq->b, sq->h);
    const int64_t t = sq->p0 - 1;
    int64_t i;
    int l;
    for (l = 0; l < cx->NL; ++l) {
        const int64_t lo = lla__omp_level_start(cx->hier, l, t);
        const int64_t hi = l == 0 ? t + 1 : lla__omp_level_start(cx->hier, l - 1, t);
        omp_set *st = slots + l;
        if (lo >= hi) continue;
        for (i = 0; i < cx->K; ++i)
            memcpy(st->data + i * cx->ldV, src + (l * cx->K + i) * cx->V,
                   (size_t)cx->V * sizeof(float));
        st->ref = 0.0;
        st->lo = lo;
        st->from_chunk = 0;
        st->live = 1;
    }
}

/* Decoder layout relative to the last token (sets already regrouped to it), at G_end. */
void lla__omp_write_final(const omp_ctx *cx, const seq_info *sq, const omp_set *slots, double G_end,
                          int add) {
    float *dst = (float *)lla__state_values(cx->final) + lla__omp_state_head(cx, sq->b, sq->h);
    int64_t i, j;
    int l;
    for (l = 0; l < cx->NL; ++l) {
        const omp_set *st = slots + l;
        float *d = dst + l * cx->K * cx->V;
        if (!st->live) {
            if (!add) memset(d, 0, (size_t)(cx->K * cx->V) * sizeof(float));
            continue;
        }
        {
            const float f = (float)lla__omp_decay(G_end - st->ref);
            for (i = 0; i < cx->K; ++i)
                for (j = 0; j < cx->V; ++j) {
                    const float v = f * st->data[i * cx->ldV + j];
                    d[i * cx->V + j] = add ? d[i * cx->V + j] + v : v;
                }
        }
    }
}

void lla__omp_pass_through(const omp_ctx *cx, const seq_info *sq) {
    float *d = (float *)lla__state_values(cx->final) + lla__omp_state_head(cx, sq->b, sq->h);
    const size_t n = (size_t)(cx->NL * cx->K * cx->V) * sizeof(float);
    if (cx->initial && sq->p0 > 0) {
        const float *s =
            (const float *)lla__state_values(cx->initial) + lla__omp_state_head(cx, sq->b, sq->h);
        if (s != d) memcpy(d, s, n);
    } else {
        memset(d, 0, n);
    }
}
