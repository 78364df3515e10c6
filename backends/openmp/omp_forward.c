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
 * No allocation: everything lives in the caller's workspace (lla__omp_forward_workspace).
 */
#include "omp_bench.h"
#include "omp_internal.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------------ data */

typedef struct omp_set {
    float *data;        /* K x ldV                                                       */
    double ref;         /* cumulative log gate of the position data is decayed to        */
    int64_t lo;         /* first source position                                          */
    int64_t from_chunk; /* read only by target chunks >= from_chunk                       */
    int live;
} omp_set;

/* One loaded chunk: rows tokens from absolute position pos_a. */
typedef struct chunk_tiles {
    int64_t pos_a, rows;
    const float *qa; /* queries as read by the products: the input rows themselves when  */
    int64_t ldq;     /* they are contiguous (Mamba-2), else q                             */
    const float *va; /* values likewise (input rows when contiguous and V % nr == 0)     */
    int64_t ldva, ldvs;
    float *q;    /* rows x ldK: queries; GDN: q-hat = q - sum_{j<=i} (q.k_j) w_j after intra */
    float *kt;   /* K x ldC: keys, transposed                                            */
    float *kr;   /* rows x ldK: keys (GDN)                                                */
    float *v;    /* rows x ldV: values                                                    */
    float *vs;   /* rows x ldV: summary values (Mamba-2: exp(gc_last - gc_s) v_s; GDN: v) */
    float *dt;   /* K x ldC: summary keys, the source vectors decayed to the chunk end    */
                 /* (Mamba-2: kt itself; GDN: D^T = K^T Aw diag(beta exp(gc_last - gc)))  */
    float *lam;  /* rows x NL                                                             */
    float *e;    /* rows: exp(gc)                                                         */
    float *beta; /* rows (GDN)                                                            */
    float *aw;   /* rows x ldC: (I + A)^-1, A = strictly lower beta_i k_i.k_j (GDN)       */
    float *awb;  /* rows x ldC: Aw diag(beta) (GDN)                                       */
    float *w;    /* rows x ldK: WY vectors W = Aw (beta K) (GDN)                          */
    double *gc;  /* rows: inclusive cumulative log gate from pos_a                        */
} chunk_tiles;

typedef struct thread_tiles {
    chunk_tiles ch[2]; /* current and previous chunk, swapped after each chunk        */
    float *s, *s2;     /* Cr x ldC scores                                              */
    float *o;          /* Cr x ldV outputs of the chunk                                */
    float *od;         /* where the products write them: o, or the output tensor rows  */
    int64_t ldo;
    float *rs, *neg1;  /* max(Cr, K): row scales, and -1 everywhere                    */
    float *tmp;        /* K x ldV                                                      */
    float *bk;         /* Cr x ldK (GDN: beta k)                                       */
    float *x;          /* Cr x ldV (GDN: W H)                                          */
    omp_set *slots;    /* NL + 1 sets (one-task sequences)                             */
    float *pool;       /* their buffers                                                */
} thread_tiles;

typedef struct fwd_ctx {
    const lla_problem *p;
    const lla_inputs *x;
    lla_tensor o;
    const lla_state *initial;
    lla_state *final;
    const lla_omp_kernels *kern;
    int hier, gdn, strong, unit_lambda;
    int o_direct; /* outputs written in place: contiguous rows and V % nr == 0 */
    int64_t C, Cr, K, V, NL, ldK, ldV, ldC;
    int64_t set_floats; /* K * ldV */
    float scale;
    /* plan */
    int nthreads;
    int64_t seg_chunks; /* chunks per segment; 0: one task per (sequence, head) */
    int64_t max_tasks, ntasks;
    int64_t *task_off;  /* batch + 1 */
    int64_t *nseg;      /* batch */
    int64_t *p0;        /* batch: absolute position of the sequence's first token */
    double *gseg;       /* max_tasks: total log gate of the segment (phase 1) */
    double *gstart;     /* max_tasks: G before the segment (phase 2)          */
    char *seg_base;     /* max_tasks x seg_stride: exports + snapshot sets    */
    size_t seg_stride;
    char *thread_base;
    size_t thread_stride;
} fwd_ctx;

typedef struct seq_info {
    int64_t b, h, hq, tb;
    int64_t start, n; /* tensor time index of the first token, token count */
    int64_t p0;       /* absolute position of the first token               */
} seq_info;

/* ------------------------------------------------------------------ workspace layout */

typedef struct bump {
    char *base;
    size_t used;
    int ok;
} bump;

static void *take(bump *bp, int64_t count, size_t elem) {
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

static int64_t round_pad(int64_t n) {
    return (n + LLA_OMP_PAD - 1) / LLA_OMP_PAD * LLA_OMP_PAD;
}

/* n * m with overflow flag */
static int64_t mul_or(int64_t a, int64_t b, int *ok) {
    int64_t r = 0;
    if (!lla__mul_ok(a, b, &r)) *ok = 0;
    return r;
}

static void layout_chunk(const fwd_ctx *cx, bump *bp, chunk_tiles *ch) {
    int ok = 1;
    const int64_t rK = mul_or(cx->Cr, cx->ldK, &ok), rV = mul_or(cx->Cr, cx->ldV, &ok);
    const int64_t kC = mul_or(cx->K, cx->ldC, &ok), rC = mul_or(cx->Cr, cx->ldC, &ok);
    const int64_t rL = mul_or(cx->Cr, cx->NL, &ok);
    if (!ok) bp->ok = 0;
    ch->q = (float *)take(bp, rK, sizeof(float));
    ch->kt = (float *)take(bp, kC, sizeof(float));
    ch->v = (float *)take(bp, rV, sizeof(float));
    ch->lam = (float *)take(bp, rL, sizeof(float));
    ch->e = (float *)take(bp, cx->Cr, sizeof(float));
    ch->gc = (double *)take(bp, cx->Cr, sizeof(double));
    if (cx->gdn) {
        ch->kr = (float *)take(bp, rK, sizeof(float));
        ch->dt = (float *)take(bp, kC, sizeof(float));
        ch->vs = ch->v;
        ch->beta = (float *)take(bp, cx->Cr, sizeof(float));
        ch->aw = (float *)take(bp, rC, sizeof(float));
        ch->awb = (float *)take(bp, rC, sizeof(float));
        ch->w = (float *)take(bp, rK, sizeof(float));
    } else {
        ch->kr = NULL;
        ch->dt = ch->kt;
        ch->vs = (float *)take(bp, rV, sizeof(float));
        ch->beta = ch->aw = ch->awb = ch->w = NULL;
    }
}

static void layout_thread(const fwd_ctx *cx, bump *bp, thread_tiles *tl) {
    int ok = 1;
    const int64_t rC = mul_or(cx->Cr, cx->ldC, &ok), rV = mul_or(cx->Cr, cx->ldV, &ok);
    const int64_t rK = mul_or(cx->Cr, cx->ldK, &ok);
    const int64_t nrow = cx->Cr > cx->K ? cx->Cr : cx->K;
    if (!ok) bp->ok = 0;
    layout_chunk(cx, bp, &tl->ch[0]);
    layout_chunk(cx, bp, &tl->ch[1]);
    tl->s = (float *)take(bp, rC, sizeof(float));
    tl->s2 = (float *)take(bp, rC, sizeof(float));
    tl->o = (float *)take(bp, rV, sizeof(float));
    tl->rs = (float *)take(bp, nrow, sizeof(float));
    tl->neg1 = (float *)take(bp, nrow, sizeof(float));
    tl->tmp = (float *)take(bp, cx->set_floats, sizeof(float));
    tl->bk = cx->gdn ? (float *)take(bp, rK, sizeof(float)) : NULL;
    tl->x = cx->gdn ? (float *)take(bp, rV, sizeof(float)) : NULL;
    tl->slots = (omp_set *)take(bp, cx->NL + 1, sizeof(omp_set));
    tl->pool = (float *)take(bp, mul_or(cx->NL + 1, cx->set_floats, &ok), sizeof(float));
    if (!ok) bp->ok = 0;
}

/* Segment storage of one task: exports (the sweep's own sets) and the snapshot read in
 * phase 3, NL + 1 sets each with their pools.  Only pointers: init_sets assigns buffers. */
typedef struct seg_store {
    omp_set *exports, *snapshot;
    float *export_pool, *snapshot_pool;
} seg_store;

static void layout_segment(const fwd_ctx *cx, bump *bp, seg_store *ss) {
    int ok = 1;
    const int64_t n = mul_or(cx->NL + 1, cx->set_floats, &ok);
    if (!ok) bp->ok = 0;
    ss->exports = (omp_set *)take(bp, cx->NL + 1, sizeof(omp_set));
    ss->snapshot = (omp_set *)take(bp, cx->NL + 1, sizeof(omp_set));
    ss->export_pool = (float *)take(bp, n, sizeof(float));
    ss->snapshot_pool = (float *)take(bp, n, sizeof(float));
}

static void segment_store(const fwd_ctx *cx, int64_t task, seg_store *ss) {
    bump bp;
    bp.base = cx->seg_base + (size_t)task * cx->seg_stride;
    bp.used = 0;
    bp.ok = 1;
    layout_segment(cx, &bp, ss);
}

/* Empty sets, one buffer of the pool each. */
static void init_sets(const fwd_ctx *cx, omp_set *slots, float *pool) {
    int64_t i;
    for (i = 0; i <= cx->NL; ++i) {
        slots[i].data = pool + (size_t)i * (size_t)cx->set_floats;
        slots[i].live = 0;
    }
}

static void thread_setup(const fwd_ctx *cx, int tid, thread_tiles *tl) {
    bump bp;
    int64_t i;
    const int64_t nrow = cx->Cr > cx->K ? cx->Cr : cx->K;
    bp.base = cx->thread_base + (size_t)tid * cx->thread_stride;
    bp.used = 0;
    bp.ok = 1;
    /* the workspace may hold anything (tests poison it): start from zeros so padding
     * columns never carry NaN through a product */
    memset(bp.base, 0, cx->thread_stride);
    layout_thread(cx, &bp, tl);
    init_sets(cx, tl->slots, tl->pool);
    for (i = 0; i < nrow; ++i) tl->neg1[i] = -1.0f;
}

/* Dimensions, plan bound and the whole layout; base NULL: sizes only.  0 on overflow. */
static int fwd_layout(fwd_ctx *cx, const lla_problem *p, int nthreads, char *base,
                      size_t *bytes) {
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
    cx->ldK = round_pad(p->dk);
    cx->ldV = round_pad(p->dv);
    cx->ldC = round_pad(cx->Cr);
    cx->set_floats = mul_or(cx->K, cx->ldV, &ok);
    cx->nthreads = nthreads < 1 ? 1 : nthreads;
    bh = mul_or(p->batch, p->heads, &ok);
    if (!ok) return 0;
    /* segments only when there are fewer (sequence, head) pairs than 2 per thread; then
     * at most 2 * threads + batch * heads tasks (see make_plan) */
    cx->max_tasks = bh < 2 * (int64_t)cx->nthreads ? 2 * (int64_t)cx->nthreads + bh : bh;

    bp.base = base;
    bp.used = 0;
    bp.ok = 1;
    cx->task_off = (int64_t *)take(&bp, p->batch + 1, sizeof(int64_t));
    cx->nseg = (int64_t *)take(&bp, p->batch, sizeof(int64_t));
    cx->p0 = (int64_t *)take(&bp, p->batch, sizeof(int64_t));
    cx->gseg = (double *)take(&bp, cx->max_tasks, sizeof(double));
    cx->gstart = (double *)take(&bp, cx->max_tasks, sizeof(double));

    /* per-thread tiles: measure one */
    {
        bump one;
        one.base = NULL;
        one.used = 0;
        one.ok = 1;
        layout_thread(cx, &one, &tl);
        if (!one.ok) return 0;
        cx->thread_stride = one.used;
    }
    cx->thread_base = (char *)take(&bp, cx->nthreads, cx->thread_stride);
    if (bh < 2 * (int64_t)cx->nthreads) {
        bump one;
        seg_store ss;
        one.base = NULL;
        one.used = 0;
        one.ok = 1;
        layout_segment(cx, &one, &ss);
        if (!one.ok) return 0;
        cx->seg_stride = one.used;
        cx->seg_base = (char *)take(&bp, cx->max_tasks, cx->seg_stride);
    } else {
        cx->seg_stride = 0;
        cx->seg_base = NULL;
    }
    *bytes = bp.used;
    return bp.ok;
}

/* Segments: chunks per segment a power of two such that all tasks number at most
 * 2 * threads + batch * heads; sequences with an initial position stay whole. */
static void make_plan(fwd_ctx *cx) {
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
static void locate(const fwd_ctx *cx, int64_t task, seq_info *sq, int64_t *seg) {
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

static int64_t task_of(const fwd_ctx *cx, int64_t b, int64_t h, int64_t seg) {
    return cx->task_off[b] + h * cx->nseg[b] + seg;
}

/* exp(d) of a decay d <= 0, flushed to 0 below 1e-30: such a term is far below float
 * resolution next to the token's own (undecayed) term, and keeping it would breed
 * subnormal floats that slow every later product on them by orders of magnitude. */
static double decay(double d) { return d < -69.0 ? 0.0 : exp(d); }

/* ------------------------------------------------------------------ loading */

static void load_rows(const lla_tensor *x, int64_t tb, int64_t t0, int64_t rows, int64_t head,
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

static float load_scalar(const lla_tensor *x, int64_t tb, int64_t t, int64_t h) {
    return ((const float *)x->data)[lla__offset(x, tb, t, h, 0)];
}

/* Tokens [pos_a, pos_a + rows) of the sequence; queries only (phase 3) or everything. */
static void load_chunk(const fwd_ctx *cx, const seq_info *sq, chunk_tiles *ch, int64_t pos_a,
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
        load_rows(&x->q, sq->tb, t0, rows, sq->hq, cx->K, ch->q, cx->ldK);
        ch->qa = ch->q;
        ch->ldq = cx->ldK;
    }
    for (i = 0; i < rows; ++i) {
        g += (double)load_scalar(&x->g, sq->tb, t0 + i, sq->h);
        ch->gc[i] = g;
        ch->e[i] = (float)decay(g);
    }
    if (!cx->unit_lambda)
        load_rows(&x->lambda, sq->tb, t0, rows, sq->h, cx->NL, ch->lam, cx->NL);
    if (queries_only) return;
    if (cx->gdn) {
        load_rows(&x->k, sq->tb, t0, rows, sq->hq, cx->K, ch->kr, cx->ldK);
        for (i = 0; i < rows; ++i)
            for (d = 0; d < cx->K; ++d) ch->kt[d * cx->ldC + i] = ch->kr[i * cx->ldK + d];
        for (i = 0; i < rows; ++i) ch->beta[i] = load_scalar(&x->beta, sq->tb, t0 + i, sq->h);
    } else { /* transposed in blocks of 8 x 8: rows of kt stay in cache */
        const float *base = (const float *)x->k.data;
        const int64_t s3 = x->k.strides[3];
        int64_t i0, d0;
        for (i0 = 0; i0 < rows; i0 += 8) {
            const int64_t i1 = i0 + 8 < rows ? i0 + 8 : rows;
            for (d0 = 0; d0 < cx->K; d0 += 8) {
                const int64_t d1 = d0 + 8 < cx->K ? d0 + 8 : cx->K;
                for (i = i0; i < i1; ++i) {
                    const float *src = base + lla__offset(&x->k, sq->tb, t0 + i, sq->hq, 0);
                    for (d = d0; d < d1; ++d) ch->kt[d * cx->ldC + i] = src[d * s3];
                }
            }
        }
    }
    if (x->v.strides[3] == 1 && cx->V % cx->kern->nr == 0) {
        ch->va = (const float *)x->v.data + lla__offset(&x->v, sq->tb, t0, sq->h, 0);
        ch->ldva = x->v.strides[1];
    } else {
        load_rows(&x->v, sq->tb, t0, rows, sq->h, cx->V, ch->v, cx->ldV);
        ch->va = ch->v;
        ch->ldva = cx->ldV;
    }
    ch->ldvs = cx->ldV;
}

/* Summary operands: Mamba-2 vs = exp(gc_last - gc) v; GDN the UT/WY form (SPEC 4.4):
 * Aw = (I + A)^-1, W = Aw (beta K), D^T = K^T Aw diag(beta exp(gc_last - gc)). */
static void prepare_chunk(const fwd_ctx *cx, thread_tiles *tl, chunk_tiles *ch) {
    const lla_omp_kernels *kn = cx->kern;
    const int64_t rows = ch->rows, K = cx->K, ldC = cx->ldC, ldK = cx->ldK, ldV = cx->ldV;
    const double glast = ch->gc[rows - 1];
    int64_t i, l, s;
    if (!cx->gdn) {
        for (i = 0; i < rows; ++i) {
            const float dec = (float)decay(glast - ch->gc[i]);
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
    for (s = 0; s < rows; ++s) tl->rs[s] = ch->beta[s] * (float)decay(glast - ch->gc[s]);
    for (i = 0; i < K; ++i) {
        float *r = ch->dt + i * ldC;
        for (s = 0; s < rows; ++s) r[s] *= tl->rs[s];
    }
}

/* ------------------------------------------------------------------ chunk products */

/* row[s - src_a] *= lambda[level(t, s)] for the sources s in [src_a, src_e), all <= t. */
static void lambda_ranges(const fwd_ctx *cx, float *row, const float *lam, int64_t t,
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

/* Intra block: o = (mask .* scores) v over the pairs inside the chunk (lower triangle).
 * GDN also turns ch->q into q-hat. */
static void intra(const fwd_ctx *cx, thread_tiles *tl, chunk_tiles *ch) {
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
            lambda_ranges(cx, row, ch->lam + i * cx->NL, ch->pos_a + i, ch->pos_a,
                          ch->pos_a + i + 1);
    }
    kn->gemm(rows, cx->V, rows, S, ldC, ch->va, ch->ldva, tl->od, tl->ldo, NULL, 0,
             LLA_OMP_LOWER_A);
}

/* Strong: the pairs (t in ch, s in the raw previous chunk pv), which sit on mixed levels. */
static void subdiag(const fwd_ctx *cx, thread_tiles *tl, const chunk_tiles *ch,
                    const chunk_tiles *pv) {
    const lla_omp_kernels *kn = cx->kern;
    const int64_t rows = ch->rows, ldC = cx->ldC;
    int64_t i;
    kn->gemm(rows, pv->rows, cx->K, ch->qa, ch->ldq, pv->dt, ldC, tl->s2, ldC, NULL, 0,
             LLA_OMP_FULL);
    for (i = 0; i < rows; ++i) {
        lambda_ranges(cx, tl->s2 + i * ldC, ch->lam + i * cx->NL, ch->pos_a + i, pv->pos_a,
                      pv->pos_a + pv->rows);
        tl->rs[i] = cx->scale * ch->e[i];
    }
    kn->gemm(rows, cx->V, pv->rows, tl->s2, ldC, pv->vs, pv->ldvs, tl->od, tl->ldo, tl->rs, 1,
             LLA_OMP_FULL);
}

/* o += sum over the sets: lambda[t, level(t, set.lo)] scale exp(gc_t) exp(G0 - ref) q~_t^T S,
 * G0 = G at the position before the chunk. */
static void reads(const fwd_ctx *cx, thread_tiles *tl, const chunk_tiles *ch,
                  const omp_set *slots, double G0, int64_t chunk) {
    const lla_omp_kernels *kn = cx->kern;
    int64_t i;
    int l;
    for (l = 0; l <= cx->NL; ++l) {
        const omp_set *st = slots + l;
        double f;
        if (!st->live || st->from_chunk > chunk) continue;
        f = decay(G0 - st->ref) * cx->scale;
        if (f == 0.0) continue;
        for (i = 0; i < ch->rows; ++i) {
            double w = f * ch->e[i];
            if (!cx->unit_lambda)
                w *= ch->lam[i * cx->NL + lla__omp_level(cx->hier, ch->pos_a + i, st->lo)];
            tl->rs[i] = (float)w;
        }
        kn->gemm(ch->rows, cx->V, cx->K, ch->qa, ch->ldq, st->data, cx->ldV, tl->od, tl->ldo,
                 tl->rs, 1, LLA_OMP_FULL);
    }
}

/* Where this chunk's products write its outputs. */
static void output_rows(const fwd_ctx *cx, const seq_info *sq, thread_tiles *tl,
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

static void store_outputs(const fwd_ctx *cx, const seq_info *sq, const chunk_tiles *ch,
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

static void set_scale(const fwd_ctx *cx, omp_set *st, double ref) {
    const float f = (float)decay(ref - st->ref);
    if (f != 1.0f) cx->kern->axpby(cx->set_floats, f, st->data, 0.0f, st->data);
    st->ref = ref;
}

/* dst += src (both live), referenced to the later of the two positions (smaller G). */
static void set_merge(const fwd_ctx *cx, omp_set *dst, const omp_set *src) {
    const double r = dst->ref < src->ref ? dst->ref : src->ref;
    cx->kern->axpby(cx->set_floats, (float)decay(r - dst->ref), dst->data,
                    (float)decay(r - src->ref), src->data);
    dst->ref = r;
    if (src->lo < dst->lo) dst->lo = src->lo;
    if (src->from_chunk > dst->from_chunk) dst->from_chunk = src->from_chunk;
}

static void set_copy(const fwd_ctx *cx, omp_set *dst, const omp_set *src, double ref_shift) {
    float *data = dst->data;
    memcpy(data, src->data, (size_t)cx->set_floats * sizeof(float));
    *dst = *src;
    dst->data = data;
    dst->ref += ref_shift;
}

static void clear_sets(const fwd_ctx *cx, omp_set *slots) {
    int l;
    for (l = 0; l <= cx->NL; ++l) slots[l].live = 0;
}

/* Every set relative to target `from` moves whole to its level for target `to` (sets
 * nest, so they only move up: top-down never overwrites a set that has yet to move).
 * The pseudo set (slot NL, a whole raw chunk) goes last, to wherever it now belongs. */
static void regroup(const fwd_ctx *cx, omp_set *slots, int64_t from, int64_t to) {
    int l;
    if (from == to) return;
    for (l = (int)cx->NL - 1; l >= -1; --l) {
        omp_set *st = slots + (l < 0 ? cx->NL : l);
        int dst;
        if (!st->live) continue;
        dst = lla__omp_level(cx->hier, to, st->lo);
        if (dst == l) continue;
        if (slots[dst].live) {
            set_merge(cx, slots + dst, st);
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
static void add_summary(const fwd_ctx *cx, thread_tiles *tl, omp_set *slots, int dst,
                        const float *dt, const float *vs, int64_t ldvs, int64_t kd, double ref,
                        int64_t lo) {
    const lla_omp_kernels *kn = cx->kern;
    omp_set *d = slots + dst;
    if (!d->live) {
        kn->gemm(cx->K, cx->V, kd, dt, cx->ldC, vs, ldvs, d->data, cx->ldV, NULL, 0,
                 LLA_OMP_FULL);
        d->ref = ref;
        d->lo = lo;
        d->from_chunk = 0;
        d->live = 1;
        return;
    }
    if (d->ref >= ref) { /* d holds older sources: bring it forward, then accumulate */
        set_scale(cx, d, ref);
        kn->gemm(cx->K, cx->V, kd, dt, cx->ldC, vs, ldvs, d->data, cx->ldV, NULL, 1,
                 LLA_OMP_FULL);
    } else {
        kn->gemm(cx->K, cx->V, kd, dt, cx->ldC, vs, ldvs, tl->tmp, cx->ldV, NULL, 0,
                 LLA_OMP_FULL);
        kn->axpby(cx->set_floats, 1.0f, d->data, (float)decay(d->ref - ref), tl->tmp);
    }
    if (lo < d->lo) d->lo = lo;
}

/* Rows [i0, i1) of chunk ch, grouped into runs that share a level for `target`. */
static void add_runs(const fwd_ctx *cx, thread_tiles *tl, omp_set *slots, const chunk_tiles *ch,
                     int64_t i0, int64_t i1, int64_t target, double ref) {
    int64_t i = i0;
    while (i < i1) {
        const int dst = lla__omp_level(cx->hier, target, ch->pos_a + i);
        int64_t j = i + 1;
        while (j < i1 && lla__omp_level(cx->hier, target, ch->pos_a + j) == dst) ++j;
        add_summary(cx, tl, slots, dst, ch->dt + i, ch->vs + i * ch->ldvs, ch->ldvs, j - i, ref,
                    ch->pos_a + i);
        i = j;
    }
}

/* GDN: the ungated part of the chunk's transition, S = (I - K^T W) S, on every set. */
static void transition(const fwd_ctx *cx, thread_tiles *tl, omp_set *slots,
                       const chunk_tiles *ch) {
    const lla_omp_kernels *kn = cx->kern;
    int l;
    for (l = 0; l <= cx->NL; ++l) {
        omp_set *st = slots + l;
        if (!st->live) continue;
        kn->gemm(ch->rows, cx->V, cx->K, ch->w, cx->ldK, st->data, cx->ldV, tl->x, cx->ldV,
                 NULL, 0, LLA_OMP_FULL);
        kn->gemm(cx->K, cx->V, ch->rows, ch->kt, cx->ldC, tl->x, cx->ldV, st->data, cx->ldV,
                 tl->neg1, 1, LLA_OMP_FULL);
    }
}

/* Sets relative to ch's first position -> relative to `target`, after ch's tokens.
 * use_prev: the raw previous chunk joins the sets now; keep_raw: ch stays raw. */
static void advance(const fwd_ctx *cx, thread_tiles *tl, omp_set *slots, const chunk_tiles *ch,
                    const chunk_tiles *pv, int use_prev, int keep_raw, double G0,
                    int64_t target) {
    regroup(cx, slots, ch->pos_a, target);
    if (use_prev) add_runs(cx, tl, slots, pv, 0, pv->rows, target, G0);
    if (cx->gdn) transition(cx, tl, slots, ch);
    if (!keep_raw) add_runs(cx, tl, slots, ch, 0, ch->rows, target, G0 + ch->gc[ch->rows - 1]);
}

/* ------------------------------------------------------------------ states */

static int64_t state_head(const fwd_ctx *cx, int64_t b, int64_t h) {
    return (b * cx->p->heads + h) * cx->NL * cx->K * cx->V;
}

/* The initial state (relative to target p0 - 1, decayed to p0 - 1 = G origin 0). */
static void import_initial(const fwd_ctx *cx, const seq_info *sq, omp_set *slots) {
    const float *src = (const float *)lla__state_values(cx->initial) + state_head(cx, sq->b, sq->h);
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
static void write_final(const fwd_ctx *cx, const seq_info *sq, const omp_set *slots, double G_end,
                        int add) {
    float *dst = (float *)lla__state_values(cx->final) + state_head(cx, sq->b, sq->h);
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
            const float f = (float)decay(G_end - st->ref);
            for (i = 0; i < cx->K; ++i)
                for (j = 0; j < cx->V; ++j) {
                    const float v = f * st->data[i * cx->ldV + j];
                    d[i * cx->V + j] = add ? d[i * cx->V + j] + v : v;
                }
        }
    }
}

static void pass_through(const fwd_ctx *cx, const seq_info *sq) {
    float *d = (float *)lla__state_values(cx->final) + state_head(cx, sq->b, sq->h);
    const size_t n = (size_t)(cx->NL * cx->K * cx->V) * sizeof(float);
    if (cx->initial && sq->p0 > 0) {
        const float *s = (const float *)lla__state_values(cx->initial) + state_head(cx, sq->b, sq->h);
        if (s != d) memcpy(d, s, n);
    } else {
        memset(d, 0, n);
    }
}

/* ------------------------------------------------------------------ phases */

static void phase1(const fwd_ctx *cx, thread_tiles *tl, int64_t task) {
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
        if (cx->final) pass_through(cx, &sq);
        return;
    }
    if (segmented) {
        seg_store ss;
        segment_store(cx, task, &ss);
        init_sets(cx, ss.exports, ss.export_pool);
        slots = ss.exports;
        cs = seg * cx->seg_chunks;
        ce = cs + cx->seg_chunks;
        if (ce > (end_pos - 1) / cx->C + 1) ce = (end_pos - 1) / cx->C + 1;
    } else {
        slots = tl->slots;
        cs = sq.p0 / cx->C;
        ce = (end_pos - 1) / cx->C + 1;
    }
    clear_sets(cx, slots);
    if (!segmented && sq.p0 > 0 && cx->initial) {
        import_initial(cx, &sq, slots);
        regroup(cx, slots, sq.p0 - 1, sq.p0);
    }
    if (cx->strong && segmented && seg > 0) { /* the chunk before the segment, raw */
        load_chunk(cx, &sq, pv, (cs - 1) * cx->C, cx->C, 0);
        prepare_chunk(cx, tl, pv);
        prev_valid = prev_foreign = 1;
    }
    for (c = cs; c < ce; ++c) {
        const int64_t pos_a = c * cx->C > sq.p0 ? c * cx->C : sq.p0;
        const int64_t pos_e = (c + 1) * cx->C < end_pos ? (c + 1) * cx->C : end_pos;
        chunk_tiles *t;
        load_chunk(cx, &sq, cur, pos_a, pos_e - pos_a, 0);
        prepare_chunk(cx, tl, cur);
        output_rows(cx, &sq, tl, cur);
        intra(cx, tl, cur);
        if (cx->strong && prev_valid) subdiag(cx, tl, cur, pv);
        reads(cx, tl, cur, slots, G, c);
        if (!cx->o_direct) store_outputs(cx, &sq, cur, tl->o, 0);
        if (c + 1 < ce) {
            advance(cx, tl, slots, cur, pv, cx->strong && prev_valid && !prev_foreign,
                    cx->strong, G, pos_e);
        } else if (!last_seg) { /* export, relative to the next segment's first position */
            advance(cx, tl, slots, cur, pv, cx->strong && prev_valid && !prev_foreign,
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
            advance(cx, tl, slots, cur, pv,
                    cx->strong && prev_valid && (!prev_foreign || c == cs), 0, G,
                    end_pos - 1);
            write_final(cx, &sq, slots, G + cur->gc[cur->rows - 1], 0);
        }
        G += cur->gc[cur->rows - 1];
        t = cur;
        cur = pv;
        pv = t;
        prev_valid = 1;
        prev_foreign = 0;
    }
    if (segmented) ((fwd_ctx *)cx)->gseg[task] = G;
}

/* Per (sequence, head): the sets each segment reads from the sources before it. */
static void phase2(const fwd_ctx *cx, int64_t b, int64_t h) {
    int64_t j;
    int l;
    for (j = 0; j < cx->nseg[b]; ++j) {
        const int64_t task = task_of(cx, b, h, j);
        omp_set *snap, *exp_prev, *snap_prev;
        seg_store ss, sp;
        int64_t prev;
        segment_store(cx, task, &ss);
        snap = ss.snapshot;
        init_sets(cx, snap, ss.snapshot_pool);
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
                if (snap_prev[l].live) set_copy(cx, snap + l, snap_prev + l, 0.0);
            regroup(cx, snap, (j - 1) * cx->seg_chunks * cx->C, j * cx->seg_chunks * cx->C);
        }
        for (l = 0; l <= cx->NL; ++l) {
            omp_set shifted;
            if (!exp_prev[l].live) continue;
            shifted = exp_prev[l];
            shifted.ref += cx->gstart[prev];
            if (snap[l].live)
                set_merge(cx, snap + l, &shifted);
            else
                set_copy(cx, snap + l, &shifted, 0.0);
        }
    }
}

/* Segment j >= 1: outputs += the reads of the sources before the segment. */
static void phase3(const fwd_ctx *cx, thread_tiles *tl, int64_t task) {
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
        load_chunk(cx, &sq, ch, pos_a, pos_e - pos_a, 1);
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
        regroup(cx, snap, cs * cx->C, end_pos - 1);
        write_final(cx, &sq, snap, G, 1);
    }
}

/* ------------------------------------------------------------------ entry points */

static lla_status run_forward(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                              lla_tensor o, const lla_state *initial, lla_state *final,
                              void *workspace, size_t workspace_bytes, int flat) {
    fwd_ctx cx;
    lla_omp_impl *impl = (lla_omp_impl *)self->impl;
    size_t need = 0;
    int64_t b;
    memset(&cx, 0, sizeof cx);
    if (!fwd_layout(&cx, p, lla__omp_threads(self), (char *)workspace, &need) ||
        need > workspace_bytes)
        return lla__set_error(LLA_ERR_WORKSPACE, "openmp forward: workspace has %zu bytes, needs %zu",
                              workspace_bytes, need);
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
    fwd_ctx cx;
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

lla_status lla__openmp_linear_workspace(lla_backend *backend, const lla_problem *p,
                                        size_t *bytes) {
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
    return run_forward(backend, p, x, o, NULL, NULL, (char *)workspace + pad,
                       workspace_bytes - pad, 1);
}
