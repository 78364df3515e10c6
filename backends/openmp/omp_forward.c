/*
 * omp_forward.c - the openmp backend's chunkwise forward (float32).
 *
 * The carried state of a sweep is the scalar backend's (docs/algorithms.md): the sources
 * before the next target grouped into the level sets of that target, each set one K x V
 * matrix, read by target t at level(t, first source of the set).  What differs:
 *   - tiles and micro-kernels: every chunk product is a register-tiled float32 GEMM
 *     (omp_kernels.c), the intra block in its lower triangle only;
 *   - lazy decay: a set stores G_ref, the cumulative log gate of the position its matrix
 *     is decayed to; its value at a later position x is exp(G_x - G_ref) times the matrix,
 *     so Mamba-2 never rescales a set per chunk (only when two sets merge), and GDN applies
 *     only the ungated part (I - K^T W) of a chunk's transition;
 *   - strong hierarchy: the previous chunk stays raw (its keys and values), read by the
 *     next chunk as a masked C x C "sub-diagonal" block, and joins the sets one chunk
 *     later, when all its tokens sit on one level (chunks two apart);
 *   - parallel schedule over (sequence, head, segment):
 *       phase 1  each task sweeps its segment of 2^a chunks from an empty state (its
 *                levels are exactly the absolute ones: segments are aligned) and writes
 *                the outputs of the pairs inside the segment; it exports its sets
 *                relative to the next segment's first position;
 *       phase 2  per (sequence, head), a sweep over segments merges the exports into
 *                the sets every segment reads from the sources before it;
 *       phase 3  each segment adds those reads to its outputs (and, for the last one,
 *                to the final state).
 *     Segments are used only when batch x heads is too small to keep every thread busy
 *     (fewer than 2 tasks per thread); otherwise a task is one whole (sequence, head).
 *     With an initial state a sequence is one task.  GDN always runs one task per
 *     (sequence, head) (segment-to-segment transitions would need K x K matrices).
 * Decays below 1e-30 are flushed to zero (lla__omp_decay), so a set whose weight has died
 * away is not read at all (and no subnormal float slows a product down).
 * No allocation: everything lives in the caller's workspace (lla__omp_forward_workspace).
 */
#include "omp_bench.h"
#include "omp_sweep.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------------ data */

/* ------------------------------------------------------------------ workspace layout */

/* Segment storage of one task: exports (the sweep's own sets) and the snapshot read in
 * phase 3, NL + 1 sets each with their pools.  Only pointers: init_sets assigns buffers. */
typedef struct seg_store {
    omp_set *exports, *snapshot;
    float *export_pool, *snapshot_pool;
} seg_store;

static void layout_segment(const omp_ctx *cx, bump *bp, seg_store *ss) {
    int ok = 1;
    const int64_t n = lla__omp_mul_or(cx->NL + 1, cx->set_floats, &ok);
    if (!ok) bp->ok = 0;
    ss->exports = (omp_set *)lla__omp_take(bp, cx->NL + 1, sizeof(omp_set));
    ss->snapshot = (omp_set *)lla__omp_take(bp, cx->NL + 1, sizeof(omp_set));
    ss->export_pool = (float *)lla__omp_take(bp, n, sizeof(float));
    ss->snapshot_pool = (float *)lla__omp_take(bp, n, sizeof(float));
}

static void segment_store(const omp_ctx *cx, int64_t task, seg_store *ss) {
    bump bp;
    bp.base = cx->seg_base + (size_t)task * cx->seg_stride;
    bp.used = 0;
    bp.ok = 1;
    layout_segment(cx, &bp, ss);
}

static void thread_setup(const omp_ctx *cx, int tid, thread_tiles *tl) {
    bump bp;
    int64_t i;
    const int64_t nrow = cx->Cr > cx->K ? cx->Cr : cx->K;
    bp.base = cx->thread_base + (size_t)tid * cx->thread_stride;
    bp.used = 0;
    bp.ok = 1;
    /* the workspace may hold anything (tests poison it): start from zeros so padding
     * columns never carry NaN through a product */
    memset(bp.base, 0, cx->thread_stride);
    lla__omp_layout_thread(cx, &bp, tl);
    lla__omp_init_sets(cx, tl->slots, tl->pool);
    for (i = 0; i < nrow; ++i) tl->neg1[i] = -1.0f;
}

/* Dimensions, plan bound and the whole layout; base NULL: sizes only.  0 on overflow. */
static int fwd_layout(omp_ctx *cx, const lla_problem *p, int nthreads, char *base, size_t *bytes) {
    bump bp;
    thread_tiles tl;
    int ok = 1;
    int64_t bh;
    cx->p = p;
    cx->gdn = p->variant == LLA_VARIANT_GDN;
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
    bh = lla__omp_mul_or(p->batch, p->heads, &ok);
    if (!ok) return 0;
    /* segments only when there are fewer (sequence, head) pairs than 2 per thread; then
     * at most 2 * threads + batch * heads tasks (see make_plan) */
    cx->max_tasks = bh < 2 * (int64_t)cx->nthreads ? 2 * (int64_t)cx->nthreads + bh : bh;

    bp.base = base;
    bp.used = 0;
    bp.ok = 1;
    cx->task_off = (int64_t *)lla__omp_take(&bp, p->batch + 1, sizeof(int64_t));
    cx->nseg = (int64_t *)lla__omp_take(&bp, p->batch, sizeof(int64_t));
    cx->p0 = (int64_t *)lla__omp_take(&bp, p->batch, sizeof(int64_t));
    cx->gseg = (double *)lla__omp_take(&bp, cx->max_tasks, sizeof(double));
    cx->gstart = (double *)lla__omp_take(&bp, cx->max_tasks, sizeof(double));

    /* per-thread tiles: measure one */
    {
        bump one;
        one.base = NULL;
        one.used = 0;
        one.ok = 1;
        lla__omp_layout_thread(cx, &one, &tl);
        if (!one.ok) return 0;
        cx->thread_stride = one.used;
    }
    cx->thread_base = (char *)lla__omp_take(&bp, cx->nthreads, cx->thread_stride);
    if (bh < 2 * (int64_t)cx->nthreads) {
        bump one;
        seg_store ss;
        one.base = NULL;
        one.used = 0;
        one.ok = 1;
        layout_segment(cx, &one, &ss);
        if (!one.ok) return 0;
        cx->seg_stride = one.used;
        cx->seg_base = (char *)lla__omp_take(&bp, cx->max_tasks, cx->seg_stride);
    } else {
        cx->seg_stride = 0;
        cx->seg_base = NULL;
    }
    *bytes = bp.used;
    return bp.ok;
}

/* Segments: chunks per segment a power of two such that all tasks number at most
 * 2 * threads + batch * heads; sequences with an initial position stay whole. */
static void make_plan(omp_ctx *cx) {
    const lla_problem *p = cx->p;
    const int64_t bh = p->batch * p->heads, target = 2 * (int64_t)cx->nthreads;
    int64_t b, total = 0;
    cx->seg_chunks = 0;
    if (bh < target && !cx->gdn) {
        int64_t need, seg = 1;
        for (b = 0; b < p->batch; ++b) {
            int64_t tb, s, e;
            lla__sequence(p, b, &tb, &s, &e);
            total += (e - s + cx->C - 1) / cx->C;
        }
        need = (total * p->heads + target - 1) / target;
        while (seg < need) seg *= 2;
        cx->seg_chunks = seg;
    }
    cx->task_off[0] = 0;
    for (b = 0; b < p->batch; ++b) {
        int64_t tb, s, e, chunks;
        lla__sequence(p, b, &tb, &s, &e);
        chunks = (e - s + cx->C - 1) / cx->C;
        cx->nseg[b] = 1;
        if (cx->seg_chunks && cx->p0[b] == 0 && chunks > cx->seg_chunks)
            cx->nseg[b] = (chunks + cx->seg_chunks - 1) / cx->seg_chunks;
        cx->task_off[b + 1] = cx->task_off[b] + cx->nseg[b] * p->heads;
    }
    cx->ntasks = cx->task_off[p->batch];
}

/* task -> (sequence, head, segment) */
static void locate(const omp_ctx *cx, int64_t task, seq_info *sq, int64_t *seg) {
    const lla_problem *p = cx->p;
    int64_t lo = 0, hi = p->batch - 1, e, r;
    while (lo < hi) { /* last b with task_off[b] <= task */
        int64_t mid = (lo + hi + 1) / 2;
        if (cx->task_off[mid] <= task)
            lo = mid;
        else
            hi = mid - 1;
    }
    sq->b = lo;
    r = task - cx->task_off[lo];
    sq->h = r / cx->nseg[lo];
    *seg = r % cx->nseg[lo];
    sq->hq = lla__qk_head(p, sq->h);
    lla__sequence(p, sq->b, &sq->tb, &sq->start, &e);
    sq->n = e - sq->start;
    sq->p0 = cx->p0[sq->b];
}

static int64_t task_of(const omp_ctx *cx, int64_t b, int64_t h, int64_t seg) {
    return cx->task_off[b] + h * cx->nseg[b] + seg;
}

/* ------------------------------------------------------------------ chunk products */

/* Intra block: o = (mask .* scores) v over the pairs inside the chunk (lower triangle).
 * GDN also turns ch->q into q-hat. */
static void intra(const omp_ctx *cx, thread_tiles *tl, chunk_tiles *ch) {
    const lla_omp_kernels *kn = cx->kern;
    const int64_t rows = ch->rows, ldC = cx->ldC, mr = kn->mr;
    float *S = tl->s;
    int64_t i, s;
    kn->gemm(rows, rows, cx->K, ch->qa, ch->ldq, ch->kt, ldC, S, ldC, NULL, 0, LLA_OMP_LOWER_C);
    if (cx->gdn) {
        /* tril(Q K^T), zero above the diagonal up to the end of each row block */
        for (i = 0; i < rows; ++i) {
            const int64_t end = (i / mr) * mr + mr < rows ? (i / mr) * mr + mr : rows;
            for (s = i + 1; s < end; ++s) S[i * ldC + s] = 0.0f;
        }
        /* q-hat = q - tril(Q K^T) W;  X = tril(Q K^T) Aw diag(beta) */
        kn->gemm(rows, cx->K, rows, S, ldC, ch->w, cx->ldK, ch->q, cx->ldK, tl->neg1, 1,
                 LLA_OMP_LOWER_A);
        kn->gemm(rows, rows, rows, S, ldC, ch->awb, ldC, tl->s2, ldC, NULL, 0,
                 LLA_OMP_LOWER_A | LLA_OMP_LOWER_C);
        S = tl->s2;
    }
    for (i = 0; i < rows; ++i) {
        float *row = S + i * ldC;
        const int64_t end = (i / mr) * mr + mr < rows ? (i / mr) * mr + mr : rows;
        kn->mul_exp(i + 1, row, cx->scale, ch->gc[i], ch->gc);
        for (s = i + 1; s < end; ++s) row[s] = 0.0f;
        if (!cx->unit_lambda)
            lla__omp_lambda_ranges(cx, row, ch->lam + i * cx->NL, ch->pos_a + i, ch->pos_a,
                                   ch->pos_a + i + 1);
    }
    kn->gemm(rows, cx->V, rows, S, ldC, ch->va, ch->ldva, tl->od, tl->ldo, NULL, 0,
             LLA_OMP_LOWER_A);
}

/* Strong: the pairs (t in ch, s in the raw previous chunk pv), which sit on mixed levels. */
static void subdiag(const omp_ctx *cx, thread_tiles *tl, const chunk_tiles *ch,
                    const chunk_tiles *pv) {
    const lla_omp_kernels *kn = cx->kern;
    const int64_t rows = ch->rows, ldC = cx->ldC;
    int64_t i;
    kn->gemm(rows, pv->rows, cx->K, ch->qa, ch->ldq, pv->dt, ldC, tl->s2, ldC, NULL, 0,
             LLA_OMP_FULL);
    for (i = 0; i < rows; ++i) {
        lla__omp_lambda_ranges(cx, tl->s2 + i * ldC, ch->lam + i * cx->NL, ch->pos_a + i, pv->pos_a,
                               pv->pos_a + pv->rows);
        tl->rs[i] = cx->scale * ch->e[i];
    }
    kn->gemm(rows, cx->V, pv->rows, tl->s2, ldC, pv->vs, pv->ldvs, tl->od, tl->ldo, tl->rs, 1,
             LLA_OMP_FULL);
}

/* o += sum over the sets: lambda[t, level(t, set.lo)] scale exp(gc_t) exp(G0 - ref) q~_t^T S,
 * G0 = G at the position before the chunk. */
static void reads(const omp_ctx *cx, thread_tiles *tl, const chunk_tiles *ch, const omp_set *slots,
                  double G0, int64_t chunk) {
    const lla_omp_kernels *kn = cx->kern;
    int64_t i;
    int l;
    for (l = 0; l <= cx->NL; ++l) {
        const omp_set *st = slots + l;
        double f;
        if (!st->live || st->from_chunk > chunk) continue;
        f = lla__omp_decay(G0 - st->ref) * cx->scale;
        if (f == 0.0) continue;
        if (!cx->unit_lambda) lla__omp_row_levels(cx->hier, ch->pos_a, ch->rows, st->lo, tl->lev);
        for (i = 0; i < ch->rows; ++i) {
            double w = f * ch->e[i];
            if (!cx->unit_lambda) w *= ch->lam[i * cx->NL + tl->lev[i]];
            tl->rs[i] = (float)w;
        }
        kn->gemm(ch->rows, cx->V, cx->K, ch->qa, ch->ldq, st->data, cx->ldV, tl->od, tl->ldo,
                 tl->rs, 1, LLA_OMP_FULL);
    }
}

/* Where this chunk's products write its outputs. */
static void output_rows(const omp_ctx *cx, const seq_info *sq, thread_tiles *tl,
                        const chunk_tiles *ch) {
    if (cx->o_direct) {
        tl->od = (float *)cx->o.data +
                 lla__offset(&cx->o, sq->tb, sq->start + (ch->pos_a - sq->p0), sq->h, 0);
        tl->ldo = cx->o.strides[1];
    } else {
        tl->od = tl->o;
        tl->ldo = cx->ldV;
    }
}

static void store_outputs(const omp_ctx *cx, const seq_info *sq, const chunk_tiles *ch,
                          const float *tile, int add) {
    const lla_tensor *o = &cx->o;
    float *base = (float *)o->data;
    const int64_t s3 = o->strides[3], t0 = sq->start + (ch->pos_a - sq->p0);
    int64_t i, d;
    for (i = 0; i < ch->rows; ++i) {
        float *dst = base + lla__offset(o, sq->tb, t0 + i, sq->h, 0);
        const float *src = tile + i * cx->ldV;
        if (add) {
            for (d = 0; d < cx->V; ++d) dst[d * s3] += src[d];
        } else if (s3 == 1) {
            memcpy(dst, src, (size_t)cx->V * sizeof(float));
        } else {
            for (d = 0; d < cx->V; ++d) dst[d * s3] = src[d];
        }
    }
}

/* ------------------------------------------------------------------ sets */

/* ------------------------------------------------------------------ states */

/* ------------------------------------------------------------------ phases */

static void phase1(const omp_ctx *cx, thread_tiles *tl, int64_t task) {
    seq_info sq;
    int64_t seg, c, cs, ce, end_pos;
    omp_set *slots;
    chunk_tiles *cur = &tl->ch[0], *pv = &tl->ch[1];
    int prev_valid = 0, prev_foreign = 0, segmented, last_seg;
    double G = 0.0;
    locate(cx, task, &sq, &seg);
    end_pos = sq.p0 + sq.n;
    segmented = cx->nseg[sq.b] > 1;
    last_seg = seg == cx->nseg[sq.b] - 1;
    if (sq.n == 0) {
        if (cx->final) lla__omp_pass_through(cx, &sq);
        return;
    }
    if (segmented) {
        seg_store ss;
        segment_store(cx, task, &ss);
        lla__omp_init_sets(cx, ss.exports, ss.export_pool);
        slots = ss.exports;
        cs = seg * cx->seg_chunks;
        ce = cs + cx->seg_chunks;
        if (ce > (end_pos - 1) / cx->C + 1) ce = (end_pos - 1) / cx->C + 1;
    } else {
        slots = tl->slots;
        cs = sq.p0 / cx->C;
        ce = (end_pos - 1) / cx->C + 1;
    }
    lla__omp_clear_sets(cx, slots);
    if (!segmented && sq.p0 > 0 && cx->initial) {
        lla__omp_import_initial(cx, &sq, slots);
        lla__omp_regroup(cx, slots, sq.p0 - 1, sq.p0);
    }
    if (cx->strong && segmented && seg > 0) { /* the chunk before the segment, raw */
        lla__omp_load_chunk(cx, &sq, pv, (cs - 1) * cx->C, cx->C, 0);
        lla__omp_prepare_chunk(cx, tl, pv);
        prev_valid = prev_foreign = 1;
    }
    for (c = cs; c < ce; ++c) {
        const int64_t pos_a = c * cx->C > sq.p0 ? c * cx->C : sq.p0;
        const int64_t pos_e = (c + 1) * cx->C < end_pos ? (c + 1) * cx->C : end_pos;
        chunk_tiles *t;
        lla__omp_load_chunk(cx, &sq, cur, pos_a, pos_e - pos_a, 0);
        lla__omp_prefetch_rows(&cx->x->v, &sq, pos_e,
                               (c + 2) * cx->C < end_pos ? cx->C : end_pos - pos_e, cx->V);
        lla__omp_prepare_chunk(cx, tl, cur);
        output_rows(cx, &sq, tl, cur);
        intra(cx, tl, cur);
        if (cx->strong && prev_valid) subdiag(cx, tl, cur, pv);
        reads(cx, tl, cur, slots, G, c);
        if (!cx->o_direct) store_outputs(cx, &sq, cur, tl->o, 0);
        if (c + 1 < ce) {
            lla__omp_advance(cx, tl, slots, cur, pv, cx->strong && prev_valid && !prev_foreign,
                             cx->strong, G, pos_e);
        } else if (!last_seg) { /* export, relative to the next segment's first position */
            lla__omp_advance(cx, tl, slots, cur, pv, cx->strong && prev_valid && !prev_foreign,
                             cx->strong, G, pos_e);
            if (cx->strong) { /* this chunk, whole, as the pseudo set */
                omp_set *ps = slots + cx->NL;
                cx->kern->gemm(cx->K, cx->V, cur->rows, cur->dt, cx->ldC, cur->vs, cur->ldvs,
                               ps->data, cx->ldV, NULL, 0, LLA_OMP_FULL);
                ps->ref = G + cur->gc[cur->rows - 1];
                ps->lo = pos_a;
                ps->from_chunk = c + 2;
                ps->live = 1;
            }
        } else if (cx->final) { /* relative to the last token */
            lla__omp_advance(cx, tl, slots, cur, pv,
                             cx->strong && prev_valid && (!prev_foreign || c == cs), 0, G,
                             end_pos - 1);
            lla__omp_write_final(cx, &sq, slots, G + cur->gc[cur->rows - 1], 0);
        }
        G += cur->gc[cur->rows - 1];
        t = cur;
        cur = pv;
        pv = t;
        prev_valid = 1;
        prev_foreign = 0;
    }
    if (segmented) ((omp_ctx *)cx)->gseg[task] = G;
}

/* Per (sequence, head): the sets each segment reads from the sources before it. */
static void phase2(const omp_ctx *cx, int64_t b, int64_t h) {
    int64_t j;
    int l;
    for (j = 0; j < cx->nseg[b]; ++j) {
        const int64_t task = task_of(cx, b, h, j);
        omp_set *snap, *exp_prev, *snap_prev;
        seg_store ss, sp;
        int64_t prev;
        segment_store(cx, task, &ss);
        snap = ss.snapshot;
        lla__omp_init_sets(cx, snap, ss.snapshot_pool);
        if (j == 0) {
            cx->gstart[task] = 0.0;
            continue;
        }
        prev = task_of(cx, b, h, j - 1);
        cx->gstart[task] = cx->gstart[prev] + cx->gseg[prev];
        segment_store(cx, prev, &sp);
        exp_prev = sp.exports;
        snap_prev = sp.snapshot;
        if (j > 1) {
            for (l = 0; l <= cx->NL; ++l)
                if (snap_prev[l].live) lla__omp_set_copy(cx, snap + l, snap_prev + l, 0.0);
            lla__omp_regroup(cx, snap, (j - 1) * cx->seg_chunks * cx->C,
                             j * cx->seg_chunks * cx->C);
        }
        for (l = 0; l <= cx->NL; ++l) {
            omp_set shifted;
            if (!exp_prev[l].live) continue;
            shifted = exp_prev[l];
            shifted.ref += cx->gstart[prev];
            if (snap[l].live)
                lla__omp_set_merge(cx, snap + l, &shifted);
            else
                lla__omp_set_copy(cx, snap + l, &shifted, 0.0);
        }
    }
}

/* Segment j >= 1: outputs += the reads of the sources before the segment. */
static void phase3(const omp_ctx *cx, thread_tiles *tl, int64_t task) {
    seq_info sq;
    int64_t seg, c, cs, ce, end_pos;
    omp_set *snap;
    seg_store ss;
    chunk_tiles *ch = &tl->ch[0];
    double G;
    locate(cx, task, &sq, &seg);
    if (cx->nseg[sq.b] < 2 || seg == 0) return;
    segment_store(cx, task, &ss);
    snap = ss.snapshot;
    end_pos = sq.p0 + sq.n;
    cs = seg * cx->seg_chunks;
    ce = cs + cx->seg_chunks;
    if (ce > (end_pos - 1) / cx->C + 1) ce = (end_pos - 1) / cx->C + 1;
    G = cx->gstart[task];
    for (c = cs; c < ce; ++c) {
        const int64_t pos_a = c * cx->C;
        const int64_t pos_e = (c + 1) * cx->C < end_pos ? (c + 1) * cx->C : end_pos;
        lla__omp_load_chunk(cx, &sq, ch, pos_a, pos_e - pos_a, 1);
        output_rows(cx, &sq, tl, ch);
        if (!cx->o_direct) memset(tl->o, 0, (size_t)(ch->rows * cx->ldV) * sizeof(float));
        reads(cx, tl, ch, snap, G, c); /* accumulates into the outputs */
        if (!cx->o_direct) store_outputs(cx, &sq, ch, tl->o, 1);
        G += ch->gc[ch->rows - 1];
    }
    if (cx->final && seg == cx->nseg[sq.b] - 1) {
        /* the last token in the segment's first chunk: the local sweep already placed
         * the previous (pseudo) chunk token by token */
        if ((end_pos - 1) / cx->C == cs) snap[cx->NL].live = 0;
        lla__omp_regroup(cx, snap, cs * cx->C, end_pos - 1);
        lla__omp_write_final(cx, &sq, snap, G, 1);
    }
}

/* ------------------------------------------------------------------ entry points */

static lla_status run_forward(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                              lla_tensor o, const lla_state *initial, lla_state *final,
                              void *workspace, size_t workspace_bytes, int flat) {
    omp_ctx cx;
    lla_omp_impl *impl = (lla_omp_impl *)self->impl;
    size_t need = 0;
    int64_t b;
    memset(&cx, 0, sizeof cx);
    if (!fwd_layout(&cx, p, lla__omp_threads(self), (char *)workspace, &need) ||
        need > workspace_bytes)
        return lla__set_error(LLA_ERR_WORKSPACE,
                              "openmp forward: workspace has %zu bytes, needs %zu", workspace_bytes,
                              need);
    cx.x = x;
    cx.o = o;
    cx.initial = initial;
    cx.final = final;
    cx.kern = impl->kern;
    cx.hier = flat ? LLA_OMP_FLAT : (int)p->hierarchy;
    cx.strong = cx.hier == LLA_HIERARCHY_STRONG;
    cx.unit_lambda = flat;
    cx.scale = (float)p->scale;
    cx.o_direct = o.strides[3] == 1 && p->dv % cx.kern->nr == 0;
    /* read every start position before anything is written: final may alias initial */
    for (b = 0; b < p->batch; ++b) cx.p0[b] = initial ? lla__state_positions(initial)[b] : 0;
    make_plan(&cx);

#pragma omp parallel num_threads(cx.nthreads)
    {
        thread_tiles tl;
        int tid = 0;
        int64_t task, bh;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        thread_setup(&cx, tid, &tl);
#pragma omp for schedule(dynamic, 1)
        for (task = 0; task < cx.ntasks; ++task) phase1(&cx, &tl, task);
        if (cx.seg_chunks) {
#pragma omp for schedule(dynamic, 1)
            for (bh = 0; bh < p->batch * p->heads; ++bh)
                if (cx.nseg[bh / p->heads] > 1) phase2(&cx, bh / p->heads, bh % p->heads);
#pragma omp for schedule(dynamic, 1)
            for (task = 0; task < cx.ntasks; ++task) phase3(&cx, &tl, task);
        }
    }

    if (final)
        for (b = 0; b < p->batch; ++b) {
            int64_t tb, s, e;
            lla__sequence(p, b, &tb, &s, &e);
            lla__state_positions(final)[b] = cx.p0[b] + (e - s);
        }
    return LLA_OK;
}

lla_status lla__omp_forward_workspace(lla_backend *self, const lla_problem *p, lla_dtype dtype,
                                      size_t *bytes) {
    omp_ctx cx;
    (void)dtype;
    memset(&cx, 0, sizeof cx);
    if (!fwd_layout(&cx, p, lla__omp_threads(self), NULL, bytes))
        return lla__set_error(LLA_ERR_SHAPE, "openmp forward: workspace size overflows");
    return LLA_OK;
}

lla_status lla__omp_forward(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                            lla_tensor o, const lla_state *initial, lla_state *final,
                            void *workspace, size_t workspace_bytes) {
    return run_forward(self, p, x, o, initial, final, workspace, workspace_bytes, 0);
}

/* ------------------------------------------------------------------ lla-bench hooks */

static lla_status check_linear(lla_backend *b, const lla_problem *p) {
    lla_status st;
    if (!b || !p) return lla__set_error(LLA_ERR_ARG, "backend or problem is NULL");
    if (strcmp(b->own->name, "openmp") != 0)
        return lla__set_error(LLA_ERR_BACKEND, "the linear baseline needs the openmp backend");
    if ((st = lla_problem_check(p)) != LLA_OK) return st;
    if (p->variant != LLA_VARIANT_MAMBA2)
        return lla__set_error(LLA_ERR_UNSUPPORTED, "the linear baseline is Mamba-2 only");
    return LLA_OK;
}

lla_status lla__openmp_linear_workspace(lla_backend *backend, const lla_problem *p, size_t *bytes) {
    lla_status st = check_linear(backend, p);
    if (st != LLA_OK) return st;
    if ((st = lla__omp_forward_workspace(backend, p, LLA_DTYPE_F32, bytes)) != LLA_OK) return st;
    if (!lla__size_add_ok(*bytes, 63, bytes))
        return lla__set_error(LLA_ERR_SHAPE, "workspace size overflows");
    return LLA_OK;
}

lla_status lla__openmp_linear_forward(lla_backend *backend, const lla_problem *p,
                                      const lla_inputs *x, lla_tensor o, void *workspace,
                                      size_t workspace_bytes) {
    lla_status st = check_linear(backend, p);
    uintptr_t a;
    size_t pad;
    if (st != LLA_OK) return st;
    if (o.dtype != LLA_DTYPE_F32 || x->q.dtype != LLA_DTYPE_F32)
        return lla__set_error(LLA_ERR_DTYPE, "the linear baseline is float32 only");
    if (!workspace) return lla__set_error(LLA_ERR_WORKSPACE, "workspace is NULL");
    a = (uintptr_t)workspace;
    pad = (size_t)((64u - (a & 63u)) & 63u);
    if (workspace_bytes < pad) return lla__set_error(LLA_ERR_WORKSPACE, "workspace too small");
    return run_forward(backend, p, x, o, NULL, NULL, (char *)workspace + pad, workspace_bytes - pad,
                       1);
}
