/*
 * omp_backward.c - the openmp backend's backward (Mamba-2, float32; GDN and other dtypes
 * run on the scalar reference).
 *
 * The forward differentiated is the scalar backend's (docs/algorithms.md, sections 4 and
 * 7): sets relative to each chunk's first position hold every earlier source.  Instead of
 * the scalar's checkpointed reverse sweep (which needs the forward state of every chunk
 * while it carries the state gradient back), the gradients are split so that neither
 * sweep needs the other's state:
 *   pass 1, forward in time: the sets E (as in the forward, lazy decays) give, per chunk,
 *     the reads' gradients dq and dlambda and the intra-chunk pairs' dq, dk, dv, dlambda;
 *     and the row term d_o_t . o_t of the gate gradient (from the same dot products);
 *   pass 2, backward in time: the state gradient dE (one K x V matrix per level set,
 *     relative to each chunk's first position) receives every target's reads
 *     (dE_L += lambda u d_o^T) and is moved back by the transposed cascade; it gives the
 *     token writes' dk and dv, and finally d_initial;
 *   gates, in closed form (SPEC 4.5 generalized): for Mamba-2 every path from a source s
 *     to a target t carries exp(G_t - G_s), so dL/dG_r = d_o_r . o_r - v_r . dv_r
 *     (+ <d_final, final> at the last token); dg is its reverse cumulative sum.
 * Products run in "transposed space" where that avoids transposing a state: dQ^T and dK^T
 * (K x rows) accumulate A-operands that are the sets themselves.
 * Parallel over (sequence, head), dynamically scheduled; dq and dk of the heads sharing a
 * q/k head are summed in per-thread accumulators, then reduced (so with shared q/k heads
 * their last bits may depend on the schedule).
 */
#include "omp_sweep.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define ACC_ROWS 8 /* rows per block of the group accumulators (transposed in the block) */

typedef struct bwd_ctx {
    omp_ctx c; /* dimensions, kernels, inputs; c.initial / c.final as in the forward */
    lla_tensor d_o;
    const lla_state *d_final;
    lla_state *d_initial;
    const lla_grads *g;
    int64_t group;      /* value heads per q/k head */
    int64_t acc_floats; /* per accumulator: tensor rows x qk_heads x K */
    float *acc;         /* nthreads x {dq, dk} accumulators, or NULL (group == 1) */
    char *tile_base;
    size_t tile_stride;
} bwd_ctx;

typedef struct bwd_tiles {
    thread_tiles t;   /* chunk loads, scores s / s2, row scales, the sets of pass 1 */
    float *kr;        /* Cr x ldK: keys as rows (a copy when not contiguous)     */
    const float *kra; /* keys as read: kr or the input rows                  */
    int64_t ldkr;
    float *qt;        /* K x ldC: q^T                                            */
    float *dout;      /* Cr x ldV: d_o (a copy when not contiguous)              */
    const float *doa; /* d_o as read: dout or the input rows                 */
    int64_t lddo;
    float *dot;    /* V x ldC: d_o^T                                          */
    float *dots;   /* V x ldC: d_o^T with scaled columns                      */
    float *vt;     /* V x ldC: v^T (Mamba-2 pass 1) or vs^T (pass 2)          */
    float *rt;     /* K x ldC: a set's read gradient, transposed              */
    float *dqt;    /* K x ldC: dq^T (the reads' part)                         */
    float *dq;     /* Cr x ldK: dq (the intra pairs' part)                    */
    float *qkrows; /* Cr x ldK: dq / dk as rows, for the stores               */
    float *dkt;    /* K x ldC: dk^T                                           */
    float *dv;     /* Cr x ldV                                                */
    float *dos;    /* Cr x ldV: d_o with scaled rows                          */
    float *dlam;   /* Cr x NL                                                 */
    float *erow;   /* ldC                                                     */
    float *wrow;   /* ldC                                                     */
    float *dl;     /* ldC                                                     */
    float *col;    /* ldC: column sums of A .* dA (the pairs' gate terms)      */
    double *row;   /* Cr: d_o . o                                             */
    float *de;     /* NL x K x ldV: the state gradient (pass 2)               */
    float *acc_dq, *acc_dk;
} bwd_tiles;

/* ------------------------------------------------------------------ layout */

static void layout_tiles(const bwd_ctx *bx, bump *bp, bwd_tiles *bt) {
    const omp_ctx *cx = &bx->c;
    int ok = 1;
    const int64_t rK = lla__omp_mul_or(cx->Cr, cx->ldK, &ok),
                  rV = lla__omp_mul_or(cx->Cr, cx->ldV, &ok);
    const int64_t kC = lla__omp_mul_or(cx->K, cx->ldC, &ok),
                  vC = lla__omp_mul_or(cx->V, cx->ldC, &ok);
    const int64_t rL = lla__omp_mul_or(cx->Cr, cx->NL, &ok);
    const int64_t vK = lla__omp_mul_or(cx->V, cx->ldK, &ok);
    const int64_t de = lla__omp_mul_or(cx->NL, cx->set_floats, &ok);
    if (!ok) bp->ok = 0;
    lla__omp_layout_thread(cx, bp, &bt->t);
    bt->kr = (float *)lla__omp_take(bp, rK, sizeof(float));
    bt->qt = (float *)lla__omp_take(bp, kC, sizeof(float));
    bt->dout = (float *)lla__omp_take(bp, rV, sizeof(float));
    bt->dot = (float *)lla__omp_take(bp, vC, sizeof(float));
    bt->dots = (float *)lla__omp_take(bp, vC, sizeof(float));
    bt->vt = (float *)lla__omp_take(bp, vC, sizeof(float));
    bt->rt = (float *)lla__omp_take(bp, kC, sizeof(float));
    bt->dqt = (float *)lla__omp_take(bp, kC, sizeof(float));
    bt->qkrows = (float *)lla__omp_take(bp, rK, sizeof(float));
    bt->dkt = (float *)lla__omp_take(bp, kC, sizeof(float));
    bt->dv = (float *)lla__omp_take(bp, rV, sizeof(float));
    bt->dos = (float *)lla__omp_take(bp, rV, sizeof(float));
    bt->dlam = (float *)lla__omp_take(bp, rL, sizeof(float));
    bt->erow = (float *)lla__omp_take(bp, cx->ldC, sizeof(float));
    bt->wrow = (float *)lla__omp_take(bp, cx->ldC, sizeof(float));
    bt->dl = (float *)lla__omp_take(bp, cx->ldC, sizeof(float));
    bt->col = (float *)lla__omp_take(bp, cx->ldC, sizeof(float));
    bt->row = (double *)lla__omp_take(bp, cx->Cr, sizeof(double));
    bt->de = (float *)lla__omp_take(bp, de, sizeof(float));
    (void)vK;
}

static int bwd_layout(bwd_ctx *bx, const lla_problem *p, int nthreads, char *base, size_t *bytes) {
    omp_ctx *cx = &bx->c;
    bump bp, one;
    bwd_tiles bt;
    int ok = 1;
    int64_t rows;
    memset(cx, 0, sizeof *cx);
    cx->p = p;
    cx->gdn = 0;
    cx->C = lla__chunk(p);
    cx->Cr = cx->C < p->seqlen ? cx->C : p->seqlen;
    if (cx->Cr < 1) cx->Cr = 1;
    cx->K = p->dk;
    cx->V = p->dv;
    cx->NL = p->levels;
    cx->ldK = lla__omp_round_pad(p->dk);
    cx->ldV = lla__omp_round_pad(p->dv);
    cx->ldC = lla__omp_round_pad(cx->Cr);
    cx->set_floats = lla__omp_mul_or(cx->K, cx->ldV, &ok);
    cx->nthreads = nthreads < 1 ? 1 : nthreads;
    bx->group = p->heads / p->qk_heads;
    rows = lla__omp_mul_or(p->seq_offsets ? 1 : p->batch, p->seqlen, &ok);
    /* accumulators hold blocks of ACC_ROWS rows transposed: [row / 8][qk head][K][row % 8] */
    bx->acc_floats = lla__omp_mul_or(
        lla__omp_mul_or((rows + ACC_ROWS - 1) / ACC_ROWS * ACC_ROWS, p->qk_heads, &ok), p->dk, &ok);
    if (!ok) return 0;
    one.base = NULL;
    one.used = 0;
    one.ok = 1;
    layout_tiles(bx, &one, &bt);
    if (!one.ok) return 0;
    bx->tile_stride = one.used;
    bp.base = base;
    bp.used = 0;
    bp.ok = 1;
    cx->p0 = (int64_t *)lla__omp_take(&bp, p->batch, sizeof(int64_t));
    bx->tile_base = (char *)lla__omp_take(&bp, cx->nthreads, bx->tile_stride);
    bx->acc = bx->group > 1
                  ? (float *)lla__omp_take(
                        &bp, lla__omp_mul_or(2 * (int64_t)cx->nthreads, bx->acc_floats, &ok),
                        sizeof(float))
                  : NULL;
    if (!ok) return 0;
    *bytes = bp.used;
    return bp.ok;
}

static void tiles_setup(const bwd_ctx *bx, int tid, bwd_tiles *bt) {
    bump bp;
    const omp_ctx *cx = &bx->c;
    const int64_t nrow = cx->Cr > cx->K ? cx->Cr : cx->K;
    int64_t i;
    bp.base = bx->tile_base + (size_t)tid * bx->tile_stride;
    bp.used = 0;
    bp.ok = 1;
    memset(bp.base, 0, bx->tile_stride); /* padding columns never carry poison */
    layout_tiles(bx, &bp, bt);
    lla__omp_init_sets(cx, bt->t.slots, bt->t.pool);
    for (i = 0; i < nrow; ++i) bt->t.neg1[i] = -1.0f;
    if (bx->acc) {
        bt->acc_dq = bx->acc + (size_t)(2 * tid) * (size_t)bx->acc_floats;
        bt->acc_dk = bt->acc_dq + bx->acc_floats;
    } else {
        bt->acc_dq = bt->acc_dk = NULL;
    }
}

/* ------------------------------------------------------------------ small helpers */

/* d_o and the keys as rows of the loaded chunk; pass 1 also q^T and d_o^T. */
static void load_extra(const bwd_ctx *bx, const seq_info *sq, bwd_tiles *bt, const chunk_tiles *ch,
                       int pass) {
    const omp_ctx *cx = &bx->c;
    const lla_tensor *k = &cx->x->k;
    const int64_t t0 = sq->start + (ch->pos_a - sq->p0);
    if (bx->d_o.strides[3] == 1 && cx->V % cx->kern->nr == 0) { /* a B operand: whole tiles */
        bt->doa = (const float *)bx->d_o.data + lla__offset(&bx->d_o, sq->tb, t0, sq->h, 0);
        bt->lddo = bx->d_o.strides[1];
    } else {
        lla__omp_load_rows(&bx->d_o, sq->tb, t0, ch->rows, sq->h, cx->V, bt->dout, cx->ldV);
        bt->doa = bt->dout;
        bt->lddo = cx->ldV;
    }
    if (pass == 1) {
        cx->kern->transpose(ch->rows, cx->K, ch->qa, ch->ldq, bt->qt, cx->ldC);
        cx->kern->transpose(ch->rows, cx->V, bt->doa, bt->lddo, bt->dot, cx->ldC);
    }
    /* in place when contiguous; pass 1 reads them as a B operand, whole tiles of nr
     * columns, so there only when K is a multiple of nr */
    if (k->strides[3] == 1 && (pass == 2 || cx->K % cx->kern->nr == 0)) {
        bt->kra = (const float *)k->data + lla__offset(k, sq->tb, t0, sq->hq, 0);
        bt->ldkr = k->strides[1];
    } else {
        lla__omp_load_rows(k, sq->tb, t0, ch->rows, sq->hq, cx->K, bt->kr, cx->ldK);
        bt->kra = bt->kr;
        bt->ldkr = cx->ldK;
    }
}

/* Adds (or stores) the chunk's dq or dk, given transposed (t: K x rows): into the thread's
 * group accumulator, whose blocks are transposed too (no transpose here), or as rows into
 * the output tensor (one head per q/k head). */
static void put_qk(const bwd_ctx *bx, bwd_tiles *bt, const seq_info *sq, const chunk_tiles *ch,
                   const float *t, const lla_tensor *out, float *acc, int add) {
    const omp_ctx *cx = &bx->c;
    const int64_t t0 = sq->start + (ch->pos_a - sq->p0), K = cx->K, G = cx->p->qk_heads;
    int64_t i, d;
    if (acc) {
        for (i = 0; i < ch->rows;) {
            const int64_t r = sq->tb * cx->p->seqlen + t0 + i, lane = r % ACC_ROWS;
            const int64_t n = ACC_ROWS - lane < ch->rows - i ? ACC_ROWS - lane : ch->rows - i;
            float *blk = acc + ((r / ACC_ROWS) * G + sq->hq) * K * ACC_ROWS + lane;
            int64_t j;
            for (d = 0; d < K; ++d)
                for (j = 0; j < n; ++j) blk[d * ACC_ROWS + j] += t[d * cx->ldC + i + j];
            i += n;
        }
        return;
    }
    {
        float *rows = bt->qkrows;
        cx->kern->transpose(K, ch->rows, t, cx->ldC, rows, cx->ldK);
        for (i = 0; i < ch->rows; ++i) {
            const float *src = rows + i * cx->ldK;
            float *dst = (float *)out->data + lla__offset(out, sq->tb, t0 + i, sq->hq, 0);
            const int64_t s3 = out->strides[3];
            if (add)
                for (d = 0; d < K; ++d) dst[d * s3] += src[d];
            else if (s3 == 1)
                memcpy(dst, src, (size_t)K * sizeof(float));
            else
                for (d = 0; d < K; ++d) dst[d * s3] = src[d];
        }
    }
}

static void put_rows(const seq_info *sq, const chunk_tiles *ch, const float *t, int64_t ld,
                     int64_t D, const lla_tensor *out, int add) {
    const int64_t t0 = sq->start + (ch->pos_a - sq->p0);
    int64_t i, d;
    for (i = 0; i < ch->rows; ++i) {
        float *dst = (float *)out->data + lla__offset(out, sq->tb, t0 + i, sq->h, 0);
        const int64_t s3 = out->strides[3];
        if (add)
            for (d = 0; d < D; ++d) dst[d * s3] += t[i * ld + d];
        else
            for (d = 0; d < D; ++d) dst[d * s3] = t[i * ld + d];
    }
}

/* ------------------------------------------------------------------ pass 1 */

/* Intra-chunk pairs: A_ij = lambda_ij scale e^{gc_i - gc_j} (q_i . k_j), dA = d_o v^T.
 * dq^T = K^T (dA .* P)^T, dk^T = Q^T (dA .* P), dv = A^T d_o, dlambda, and the pairs' gate
 * terms row_i = sum_j (A .* dA)_ij - sum_j (A .* dA)_ji (same products, so a token's own
 * pair cancels exactly). */
static void intra_backward(const bwd_ctx *bx, bwd_tiles *bt, const chunk_tiles *ch) {
    const omp_ctx *cx = &bx->c;
    const lla_omp_kernels *kn = cx->kern;
    const int64_t rows = ch->rows, ldC = cx->ldC;
    float *S = bt->t.s, *dA = bt->t.s2;
    int64_t i, j;
    kn->gemm(rows, rows, cx->K, ch->qa, ch->ldq, ch->kt, ldC, S, ldC, NULL, 0, LLA_OMP_LOWER_C);
    kn->gemm(rows, rows, cx->V, bt->doa, bt->lddo, bt->vt, ldC, dA, ldC, NULL, 0, LLA_OMP_LOWER_C);
    for (j = 0; j < rows; ++j) bt->col[j] = 0.0f;
    for (i = 0; i < rows; ++i) {
        float *srow = S + i * ldC, *drow = dA + i * ldC, *e = bt->erow, *w = bt->wrow;
        const float *lam = ch->lam + i * cx->NL;
        const int64_t t = ch->pos_a + i;
        int64_t hi = t + 1;
        float rowsum = 0.0f; /* float, like col: a lone pair cancels exactly */
        int l;
        for (j = 0; j <= i; ++j) e[j] = 1.0f;
        kn->mul_exp(i + 1, e, cx->scale, ch->gc[i], ch->gc); /* scale e^{gc_i - gc_j} */
        for (j = 0; j <= i; ++j) {
            w[j] = drow[j] * srow[j] * e[j]; /* dA S E: dlambda before the level sum */
            srow[j] *= e[j];                 /* S E    (A without lambda)            */
            drow[j] *= e[j];                 /* dA E   (Z without lambda)            */
        }
        for (l = 0; l < cx->NL; ++l) { /* level ranges [lo, hi) of target t in the chunk */
            const int64_t lo = lla__omp_level_start(cx->hier, l, t);
            const int64_t a = lo > ch->pos_a ? lo - ch->pos_a : 0, b = hi - ch->pos_a;
            if (a < b) {
                const float f = cx->unit_lambda ? 1.0f : lam[l];
                float sw = 0.0f;
                for (j = a; j < b; ++j) {
                    sw += w[j];
                    bt->col[j] += f * w[j];
                    srow[j] *= f;
                    drow[j] *= f;
                }
                bt->dlam[i * cx->NL + l] = sw;
                rowsum += f * sw;
            }
            if (lo <= ch->pos_a) break;
            hi = lo;
        }
        for (j = i + 1; j < rows; ++j) srow[j] = drow[j] = 0.0f; /* read by the transposes */
        bt->row[i] = rowsum;
    }
    for (i = 0; i < rows; ++i) bt->row[i] -= bt->col[i];
    /* dv = A^T d_o  (A read transposed; A^T upper triangular) */
    kn->gemm(rows, cx->V, rows, S, ldC, bt->doa, bt->lddo, bt->dv, cx->ldV, NULL, 0,
             LLA_OMP_TRANS_A | LLA_OMP_UPPER_A);
    /* dk^T = Q^T Z  (q read transposed; Z lower triangular) */
    kn->gemm(cx->K, rows, rows, ch->qa, ch->ldq, dA, ldC, bt->dkt, ldC, NULL, 0,
             LLA_OMP_TRANS_A | LLA_OMP_LOWER_B);
    /* dq^T = K^T Z^T  (Z^T upper triangular; S is free now) */
    kn->transpose(rows, rows, dA, ldC, S, ldC);
    kn->gemm(cx->K, rows, rows, ch->kt, ldC, S, ldC, bt->dqt, ldC, NULL, 1, LLA_OMP_UPPER_B);
}

/* Reads of the sets E: with r = E_L d_o_i (true E = f_L data) and u_i = scale e^{gc_i} q_i:
 * dq_i += lambda scale e^{gc_i} r, dlambda[i, lev] += u_i . r, row_i += lambda u_i . r. */
static void reads_backward(const bwd_ctx *bx, bwd_tiles *bt, const chunk_tiles *ch,
                           const omp_set *slots, double G0) {
    const omp_ctx *cx = &bx->c;
    const lla_omp_kernels *kn = cx->kern;
    const int64_t rows = ch->rows, ldC = cx->ldC;
    int64_t i;
    int l;
    for (l = 0; l <= cx->NL; ++l) {
        const omp_set *st = slots + l;
        double f;
        if (!st->live) continue;
        f = lla__omp_decay(G0 - st->ref) * cx->scale;
        if (f == 0.0) continue;
        /* rt = E_L d_o^T (K x rows); the column factors f scale e^{gc_i} come after */
        kn->gemm(cx->K, rows, cx->V, st->data, cx->ldV, bt->dot, ldC, bt->rt, ldC, NULL, 0,
                 LLA_OMP_FULL);
        lla__omp_row_levels(cx->hier, ch->pos_a, rows, st->lo, bt->t.lev);
        for (i = 0; i < rows; ++i) {
            const int lev = bt->t.lev[i];
            const float lam = cx->unit_lambda ? 1.0f : ch->lam[i * cx->NL + lev];
            bt->erow[i] = (float)(f * ch->e[i]);
            bt->wrow[i] = lam * bt->erow[i];
            bt->dl[i] = 0.0f;
        }
        kn->coldot_axpy(cx->K, rows, bt->qt, ldC, bt->rt, ldC, bt->wrow, bt->dl, bt->dqt, ldC);
        for (i = 0; i < rows; ++i) {
            const int lev = bt->t.lev[i];
            const float d = bt->erow[i] * bt->dl[i];
            bt->dlam[i * cx->NL + lev] += d;
            bt->row[i] += (double)(bt->wrow[i] * bt->dl[i]);
        }
    }
}

/* <d_final, final state>: the final state's gate term (at the last token). */
static double final_dot(const bwd_ctx *bx, const seq_info *sq, const omp_set *slots, double G_end) {
    const omp_ctx *cx = &bx->c;
    const float *df = (const float *)lla__state_values(bx->d_final) +
                      (sq->b * cx->p->heads + sq->h) * cx->NL * cx->K * cx->V;
    double s = 0.0;
    int64_t i, j;
    int l;
    for (l = 0; l < cx->NL; ++l) {
        const omp_set *st = slots + l;
        const float *d = df + l * cx->K * cx->V;
        double part = 0.0;
        if (!st->live) continue;
        for (i = 0; i < cx->K; ++i)
            for (j = 0; j < cx->V; ++j)
                part += (double)d[i * cx->V + j] * st->data[i * cx->ldV + j];
        s += part * lla__omp_decay(G_end - st->ref);
    }
    return s;
}

static void pass1(const bwd_ctx *bx, bwd_tiles *bt, const seq_info *sq) {
    const omp_ctx *cx = &bx->c;
    omp_set *slots = bt->t.slots;
    chunk_tiles *ch = &bt->t.ch[0];
    const int64_t end_pos = sq->p0 + sq->n;
    const int64_t c_first = sq->p0 / cx->C, c_last = (end_pos - 1) / cx->C;
    int64_t c, i;
    double G = 0.0;
    lla__omp_clear_sets(cx, slots);
    if (sq->p0 > 0 && cx->initial) {
        lla__omp_import_initial(cx, sq, slots);
        lla__omp_regroup(cx, slots, sq->p0 - 1, sq->p0);
    }
    for (c = c_first; c <= c_last; ++c) {
        const int64_t pos_a = c * cx->C > sq->p0 ? c * cx->C : sq->p0;
        const int64_t pos_e = (c + 1) * cx->C < end_pos ? (c + 1) * cx->C : end_pos;
        const int last = c == c_last;
        lla__omp_load_chunk(cx, sq, ch, pos_a, pos_e - pos_a, 0);
        if (!last) {
            const int64_t n2 = (c + 2) * cx->C < end_pos ? cx->C : end_pos - pos_e;
            lla__omp_prefetch_rows(&cx->x->v, sq, pos_e, n2, cx->V);
            lla__omp_prefetch_rows(&bx->d_o, sq, pos_e, n2, cx->V);
        }
        lla__omp_prepare_chunk(cx, &bt->t, ch);
        load_extra(bx, sq, bt, ch, 1);
        cx->kern->transpose(ch->rows, cx->V, ch->va, ch->ldva, bt->vt, cx->ldC);
        memset(bt->dlam, 0, (size_t)(ch->rows * cx->NL) * sizeof(float));
        memset(bt->dqt, 0, (size_t)(cx->K * cx->ldC) * sizeof(float));
        intra_backward(bx, bt, ch);
        reads_backward(bx, bt, ch, slots, G);
        /* dq (complete), the intra part of dk and dv, dlambda (complete), the row term */
        put_qk(bx, bt, sq, ch, bt->dqt, &bx->g->dq, bt->acc_dq, 0);
        put_qk(bx, bt, sq, ch, bt->dkt, &bx->g->dk, bt->acc_dk, 0);
        put_rows(sq, ch, bt->dv, cx->ldV, cx->V, &bx->g->dv, 0);
        put_rows(sq, ch, bt->dlam, cx->NL, cx->NL, &bx->g->dlambda, 0);
        for (i = 0; i < ch->rows; ++i) bt->dl[i] = (float)bt->row[i];
        put_rows(sq, ch, bt->dl, 1, 1, &bx->g->dg, 0);
        if (!last || bx->d_final)
            lla__omp_advance(cx, &bt->t, slots, ch, NULL, 0, 0, G, last ? end_pos - 1 : pos_e);
        G += ch->gc[ch->rows - 1];
        if (last && bx->d_final) {
            float *dg = (float *)bx->g->dg.data +
                        lla__offset(&bx->g->dg, sq->tb, sq->start + sq->n - 1, sq->h, 0);
            *dg = (float)(*dg + final_dot(bx, sq, slots, G));
        }
    }
}

/* ------------------------------------------------------------------ pass 2 */

/* dk^T[:, i:e] += diag(rs) D vs^T[:, i:e] (rs = bt->t.rs, K entries).  Products write whole
 * register tiles of columns, and
 * the columns past e belong to other runs: unless the run ends the chunk and starts on a
 * tile boundary, it goes through scratch tiles (columns from 0). */
static void dkt_columns(const omp_ctx *cx, bwd_tiles *bt, const float *D, int64_t i, int64_t e,
                        int64_t rows) {
    const lla_omp_kernels *kn = cx->kern;
    int64_t k, j;
    if (i % kn->nr == 0 && e == rows) {
        kn->gemm(cx->K, e - i, cx->V, D, cx->ldV, bt->vt + i, cx->ldC, bt->dkt + i, cx->ldC,
                 bt->t.rs, 1, LLA_OMP_FULL);
        return;
    }
    for (k = 0; k < cx->V; ++k)
        for (j = i; j < e; ++j) bt->dots[k * cx->ldC + j - i] = bt->vt[k * cx->ldC + j];
    kn->gemm(cx->K, e - i, cx->V, D, cx->ldV, bt->dots, cx->ldC, bt->rt, cx->ldC, bt->t.rs, 0,
             LLA_OMP_FULL);
    for (k = 0; k < cx->K; ++k)
        for (j = i; j < e; ++j) bt->dkt[k * cx->ldC + j] += bt->rt[k * cx->ldC + j - i];
}

/* Non-empty sets of target t among the sources < t (level 0 excluded). */
static uint64_t sets_before(int hier, int64_t NL, int64_t t) {
    uint64_t live = 0;
    int l;
    for (l = 1; l < NL; ++l)
        if (lla__omp_level_start(hier, l, t) < lla__omp_level_start(hier, l - 1, t))
            live |= (uint64_t)1 << l;
    return live;
}

static void pass2(const bwd_ctx *bx, bwd_tiles *bt, const seq_info *sq) {
    const omp_ctx *cx = &bx->c;
    const lla_omp_kernels *kn = cx->kern;
    chunk_tiles *ch = &bt->t.ch[0];
    const int64_t KV = cx->K * cx->V, end_pos = sq->p0 + sq->n;
    const int64_t c_first = sq->p0 / cx->C, c_last = (end_pos - 1) / cx->C;
    float *de = bt->de;
    float dfac[64]; /* true dE_l = dfac[l] * de_l: the cascade's decay costs no pass */
    uint64_t live = 0;
    int64_t c, i, j;
    int l;
    /* dE after the last token: d_final, on the sets the final state has */
    if (bx->d_final) {
        const float *df =
            (const float *)lla__state_values(bx->d_final) + lla__omp_state_head(cx, sq->b, sq->h);
        for (l = 0; l < cx->NL; ++l) {
            const int64_t t = end_pos - 1;
            const int64_t lo = lla__omp_level_start(cx->hier, l, t);
            const int64_t hi = l == 0 ? t + 1 : lla__omp_level_start(cx->hier, l - 1, t);
            if (lo >= hi) continue;
            for (i = 0; i < cx->K; ++i)
                memcpy(de + l * cx->set_floats + i * cx->ldV, df + l * KV + i * cx->V,
                       (size_t)cx->V * sizeof(float));
            dfac[l] = 1.0f;
            live |= (uint64_t)1 << l;
        }
    }
    for (c = c_last; c >= c_first; --c) {
        const int64_t pos_a = c * cx->C > sq->p0 ? c * cx->C : sq->p0;
        const int64_t pos_e = (c + 1) * cx->C < end_pos ? (c + 1) * cx->C : end_pos;
        const int64_t target = c == c_last ? end_pos - 1 : pos_e;
        const int64_t rows = pos_e - pos_a;
        uint64_t now;
        float decay;
        lla__omp_load_chunk(cx, sq, ch, pos_a, rows, 1); /* q, gates, lambda */
        if (c > c_first) { /* the previous chunk is next in this reverse sweep */
            const int64_t a0 = (c - 1) * cx->C > sq->p0 ? (c - 1) * cx->C : sq->p0;
            lla__omp_prefetch_rows(&cx->x->v, sq, a0, pos_a - a0, cx->V);
            lla__omp_prefetch_rows(&bx->d_o, sq, a0, pos_a - a0, cx->V);
        }
        load_extra(bx, sq, bt, ch, 2);
        { /* the values (rows) and vs^T = (e^{G - gc} v)^T */
            const lla_tensor *v = &cx->x->v;
            const int64_t t0 = sq->start + (pos_a - sq->p0);
            if (v->strides[3] == 1) {
                ch->va = (const float *)v->data + lla__offset(v, sq->tb, t0, sq->h, 0);
                ch->ldva = v->strides[1];
            } else {
                lla__omp_load_rows(v, sq->tb, t0, rows, sq->h, cx->V, ch->v, cx->ldV);
                ch->va = ch->v;
                ch->ldva = cx->ldV;
            }
            for (i = 0; i < rows; ++i)
                bt->wrow[i] = (float)lla__omp_decay(ch->gc[rows - 1] - ch->gc[i]);
            kn->scale_rows(rows, cx->V, bt->wrow, ch->va, ch->ldva, bt->dos, cx->ldV);
            kn->transpose(rows, cx->V, bt->dos, cx->ldV, bt->vt, cx->ldC);
        }
        memset(bt->dv, 0, (size_t)(rows * cx->ldV) * sizeof(float));
        memset(bt->dkt, 0, (size_t)(cx->K * cx->ldC) * sizeof(float));
        /* 1. token writes: dv_j += e^{G-gc_j} D^T k_j, dk_j += D vs_j, D = dE of j's set */
        for (i = 0; i < rows;) {
            const int dst = lla__omp_level(cx->hier, target, pos_a + i);
            int64_t e = i + 1;
            while (e < rows && lla__omp_level(cx->hier, target, pos_a + e) == dst) ++e;
            if ((live >> dst) & 1u) {
                const float *D = de + dst * cx->set_floats;
                for (j = i; j < e; ++j)
                    bt->t.rs[j - i] =
                        dfac[dst] * (float)lla__omp_decay(ch->gc[rows - 1] - ch->gc[j]);
                kn->gemm(e - i, cx->V, cx->K, bt->kra + i * bt->ldkr, bt->ldkr, D, cx->ldV,
                         bt->dv + i * cx->ldV, cx->ldV, bt->t.rs, 1, LLA_OMP_FULL);
                for (j = 0; j < cx->K; ++j) bt->t.rs[j] = dfac[dst];
                dkt_columns(cx, bt, D, i, e, rows);
            }
            i = e;
        }
        /* 2. the cascade, transposed: set l of target pos_a takes e^{G} times the gradient
         * of the set it moved into (levels only go up: ascending order is in place) */
        now = sets_before(cx->hier, cx->NL, pos_a);
        decay = (float)lla__omp_decay(ch->gc[rows - 1]);
        {
            uint64_t next = 0;
            for (l = 1; l < cx->NL; ++l) {
                int to;
                if (!((now >> l) & 1u)) continue;
                to = lla__omp_level(cx->hier, target, lla__omp_level_start(cx->hier, l, pos_a));
                if ((live >> to) & 1u) {
                    if (to != l)
                        memcpy(de + l * cx->set_floats, de + to * cx->set_floats,
                               (size_t)cx->set_floats * sizeof(float));
                    dfac[l] = dfac[to] * decay;
                    next |= (uint64_t)1 << l;
                }
            }
            live = next;
        }
        /* 3. the reads of those sets by this chunk: dE_l += Q^T diag(lambda scale e^{gc}) d_o */
        for (l = 1; l < cx->NL; ++l) {
            const int64_t lo = lla__omp_level_start(cx->hier, l, pos_a);
            float *D = de + l * cx->set_floats;
            if (!((now >> l) & 1u)) continue;
            lla__omp_row_levels(cx->hier, pos_a, rows, lo, bt->t.lev);
            for (i = 0; i < rows; ++i) {
                const int lev = bt->t.lev[i];
                bt->wrow[i] =
                    cx->scale * ch->e[i] * (cx->unit_lambda ? 1.0f : ch->lam[i * cx->NL + lev]);
            }
            kn->scale_rows(rows, cx->V, bt->wrow, bt->doa, bt->lddo, bt->dos, cx->ldV);
            kn->gemm(cx->K, cx->V, rows, ch->qa, ch->ldq, bt->dos, cx->ldV, D, cx->ldV, NULL,
                     ((live >> l) & 1u) ? dfac[l] : 0.0f, LLA_OMP_TRANS_A);
            dfac[l] = 1.0f;
            live |= (uint64_t)1 << l;
        }
        /* the writes' part of the gate term: dG_j -= v_j . dv_j(writes) */
        for (i = 0; i < rows; ++i) {
            const float *vi = ch->va + i * ch->ldva, *dvi = bt->dv + i * cx->ldV;
            float s = 0.0f;
            for (j = 0; j < cx->V; ++j) s += vi[j] * dvi[j];
            bt->dl[i] = -s;
        }
        put_rows(sq, ch, bt->dl, 1, 1, &bx->g->dg, 1);
        put_qk(bx, bt, sq, ch, bt->dkt, &bx->g->dk, bt->acc_dk, 1);
        put_rows(sq, ch, bt->dv, cx->ldV, cx->V, &bx->g->dv, 1);
    }
    /* d_initial: the transpose of the initial move from target p0 - 1 to p0 */
    if (bx->d_initial) {
        float *di =
            (float *)lla__state_values(bx->d_initial) + lla__omp_state_head(cx, sq->b, sq->h);
        for (l = 0; l < cx->NL; ++l) {
            float *d = di + l * KV;
            int to = -1;
            if (sq->p0 > 0) {
                const int64_t t = sq->p0 - 1;
                const int64_t lo = lla__omp_level_start(cx->hier, l, t);
                const int64_t hi = l == 0 ? t + 1 : lla__omp_level_start(cx->hier, l - 1, t);
                if (lo < hi) to = lla__omp_level(cx->hier, sq->p0, lo);
            }
            if (to < 0 || !((live >> to) & 1u)) {
                memset(d, 0, (size_t)KV * sizeof(float));
                continue;
            }
            for (i = 0; i < cx->K; ++i)
                for (j = 0; j < cx->V; ++j)
                    d[i * cx->V + j] = dfac[to] * de[to * cx->set_floats + i * cx->ldV + j];
        }
    }
}

/* dg: the gate terms dG_r = d_o_r . o_r - v_r . dv_r (+ <d_final, final> at the last
 * token) wait in dg, assembled by the passes; dg is their reverse cumulative sum. */
static void gates(const bwd_ctx *bx, const seq_info *sq) {
    const lla_tensor *dg = &bx->g->dg;
    double run = 0.0;
    int64_t i;
    for (i = sq->n - 1; i >= 0; --i) {
        float *g = (float *)dg->data + lla__offset(dg, sq->tb, sq->start + i, sq->h, 0);
        run += (double)*g;
        *g = (float)run;
    }
}

/* A zero-length sequence: its final state is its initial one. */
static void pass_through_grad(const bwd_ctx *bx, const seq_info *sq) {
    const omp_ctx *cx = &bx->c;
    const size_t n = (size_t)(cx->NL * cx->K * cx->V) * sizeof(float);
    float *d = (float *)lla__state_values(bx->d_initial) + lla__omp_state_head(cx, sq->b, sq->h);
    if (bx->d_final) {
        const float *s =
            (const float *)lla__state_values(bx->d_final) + lla__omp_state_head(cx, sq->b, sq->h);
        if (s != d) memcpy(d, s, n);
    } else {
        memset(d, 0, n);
    }
}

/* ------------------------------------------------------------------ entry points */

lla_status lla__omp_backward_workspace(lla_backend *self, const lla_problem *p, lla_dtype dtype,
                                       size_t *bytes) {
    bwd_ctx bx;
    (void)dtype;
    memset(&bx, 0, sizeof bx);
    if (!bwd_layout(&bx, p, lla__omp_threads(self), NULL, bytes))
        return lla__set_error(LLA_ERR_SHAPE, "openmp backward: workspace size overflows");
    return LLA_OK;
}

lla_status lla__omp_backward(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                             lla_tensor d_o, const lla_state *initial, const lla_state *d_final,
                             const lla_grads *grads, lla_state *d_initial, void *workspace,
                             size_t workspace_bytes) {
    bwd_ctx bx;
    lla_omp_impl *impl = (lla_omp_impl *)self->impl;
    size_t need = 0;
    int64_t b;
    memset(&bx, 0, sizeof bx);
    if (!bwd_layout(&bx, p, lla__omp_threads(self), (char *)workspace, &need) ||
        need > workspace_bytes)
        return lla__set_error(LLA_ERR_WORKSPACE,
                              "openmp backward: workspace has %zu bytes, needs %zu",
                              workspace_bytes, need);
    bx.c.x = x;
    bx.c.initial = initial;
    bx.c.kern = impl->kern;
    bx.c.hier = (int)p->hierarchy;
    bx.c.strong = 0; /* the backward keeps every earlier chunk in the sets */
    bx.c.scale = (float)p->scale;
    bx.d_o = d_o;
    bx.d_final = d_final;
    bx.d_initial = d_initial;
    bx.g = grads;
    for (b = 0; b < p->batch; ++b) bx.c.p0[b] = initial ? lla__state_positions(initial)[b] : 0;

#pragma omp parallel num_threads(bx.c.nthreads)
    {
        bwd_tiles bt;
        int tid = 0, team = 1;
        int64_t task, r;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        team = omp_get_num_threads();
#endif
        tiles_setup(&bx, tid, &bt);
        if (bx.acc) memset(bt.acc_dq, 0, (size_t)(2 * bx.acc_floats) * sizeof(float));
#pragma omp barrier
            /* dynamic: a thread slowed down by other work hands heads to the others.  With heads
             * sharing a q/k head, which heads meet in which accumulator then varies, and so can
             * the last bits of dq and dk (not of anything else) */
#pragma omp for schedule(dynamic, 1)
        for (task = 0; task < p->batch * p->heads; ++task) {
            seq_info sq;
            int64_t e;
            sq.b = task / p->heads;
            sq.h = task % p->heads;
            sq.hq = lla__qk_head(p, sq.h);
            lla__sequence(p, sq.b, &sq.tb, &sq.start, &e);
            sq.n = e - sq.start;
            sq.p0 = bx.c.p0[sq.b];
            if (sq.n == 0) {
                if (d_initial) pass_through_grad(&bx, &sq);
                continue;
            }
            pass1(&bx, &bt, &sq);
            pass2(&bx, &bt, &sq);
            gates(&bx, &sq);
        }
        /* dq, dk: sum of the threads' group accumulators, block by block */
        if (bx.acc) {
            const int64_t rows = (p->seq_offsets ? 1 : p->batch) * p->seqlen;
            const int64_t nblk = (rows + ACC_ROWS - 1) / ACC_ROWS * p->qk_heads;
#pragma omp for schedule(static)
            for (r = 0; r < nblk; ++r) {
                const int64_t hq = r % p->qk_heads, r0 = (r / p->qk_heads) * ACC_ROWS;
                int64_t d, th, lane;
                for (lane = 0; lane < ACC_ROWS && r0 + lane < rows; ++lane) {
                    const int64_t t = (r0 + lane) % p->seqlen, tb = (r0 + lane) / p->seqlen;
                    float *dq = (float *)grads->dq.data + lla__offset(&grads->dq, tb, t, hq, 0);
                    float *dk = (float *)grads->dk.data + lla__offset(&grads->dk, tb, t, hq, 0);
                    for (d = 0; d < p->dk; ++d) {
                        const int64_t at = (r * p->dk + d) * ACC_ROWS + lane;
                        float sq_ = 0.0f, sk = 0.0f;
                        for (th = 0; th < team; ++th) {
                            const float *a = bx.acc + (size_t)(2 * th) * (size_t)bx.acc_floats;
                            sq_ += a[at];
                            sk += a[bx.acc_floats + at];
                        }
                        dq[d * grads->dq.strides[3]] = sq_;
                        dk[d * grads->dk.strides[3]] = sk;
                    }
                }
            }
        }
    }
    if (d_initial)
        for (b = 0; b < p->batch; ++b) lla__state_positions(d_initial)[b] = bx.c.p0[b];
    return LLA_OK;
}
