/*
 * omp_sweep.h - data and building blocks shared by the openmp forward and backward
 * (private).  omp_forward.c describes the schedule; omp_sweep.c holds the functions.
 */
#ifndef LLA_OMP_SWEEP_H
#define LLA_OMP_SWEEP_H

#include <math.h>

#include "omp_internal.h"

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
    float *rs, *neg1; /* max(Cr, K): row scales, and -1 everywhere                    */
    int *lev;         /* Cr: per-row levels of the set being read                     */
    float *tmp;       /* K x ldV                                                      */
    float *bk;        /* Cr x ldK (GDN: beta k)                                       */
    float *x;         /* Cr x ldV (GDN: W H)                                          */
    omp_set *slots;   /* NL + 1 sets (one-task sequences)                             */
    float *pool;      /* their buffers                                                */
} thread_tiles;

typedef struct omp_ctx {
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
    int64_t *task_off; /* batch + 1 */
    int64_t *nseg;     /* batch */
    int64_t *p0;       /* batch: absolute position of the sequence's first token */
    double *gseg;      /* max_tasks: total log gate of the segment (phase 1) */
    double *gstart;    /* max_tasks: G before the segment (phase 2)          */
    char *seg_base;    /* max_tasks x seg_stride: exports + snapshot sets    */
    size_t seg_stride;
    char *thread_base;
    size_t thread_stride;
} omp_ctx;

typedef struct seq_info {
    int64_t b, h, hq, tb;
    int64_t start, n; /* tensor time index of the first token, token count */
    int64_t p0;       /* absolute position of the first token               */
} seq_info;

typedef struct bump {
    char *base;
    size_t used;
    int ok;
} bump;

/* exp(d) of a decay d <= 0, flushed to 0 below 1e-30: such a term is far below float
 * resolution next to the token's own (undecayed) term, and keeping it would breed
 * subnormal floats that slow every later product on them by orders of magnitude. */
static inline double lla__omp_decay(double d) { return d < -69.0 ? 0.0 : exp(d); }

void *lla__omp_take(bump *bp, int64_t count, size_t elem);

int64_t lla__omp_round_pad(int64_t n);

/* n * m with overflow flag */
int64_t lla__omp_mul_or(int64_t a, int64_t b, int *ok);

void lla__omp_layout_chunk(const omp_ctx *cx, bump *bp, chunk_tiles *ch);

void lla__omp_layout_thread(const omp_ctx *cx, bump *bp, thread_tiles *tl);

/* Empty sets, one buffer of the pool each. */
void lla__omp_init_sets(const omp_ctx *cx, omp_set *slots, float *pool);

void lla__omp_load_rows(const lla_tensor *x, int64_t tb, int64_t t0, int64_t rows, int64_t head,
                        int64_t D, float *dst, int64_t ld);

void lla__omp_prefetch_rows(const lla_tensor *x, const seq_info *sq, int64_t pos_a, int64_t rows,
                            int64_t D);

void lla__omp_row_levels(int hierarchy, int64_t pos_a, int64_t rows, int64_t lo, int *lev);

float lla__omp_load_scalar(const lla_tensor *x, int64_t tb, int64_t t, int64_t h);

/* Tokens [pos_a, pos_a + rows) of the sequence; queries only (phase 3) or everything. */
void lla__omp_load_chunk(const omp_ctx *cx, const seq_info *sq, chunk_tiles *ch, int64_t pos_a,
                         int64_t rows, int queries_only);

/* Summary operands: Mamba-2 vs = exp(gc_last - gc) v; GDN the UT/WY form (SPEC 4.4):
 * Aw = (I + A)^-1, W = Aw (beta K), D^T = K^T Aw diag(beta exp(gc_last - gc)). */
void lla__omp_prepare_chunk(const omp_ctx *cx, thread_tiles *tl, chunk_tiles *ch);

/* row[s - src_a] *= lambda[level(t, s)] for the sources s in [src_a, src_e), all <= t. */
void lla__omp_lambda_ranges(const omp_ctx *cx, float *row, const float *lam, int64_t t,
                            int64_t src_a, int64_t src_e);

void lla__omp_set_scale(const omp_ctx *cx, omp_set *st, double ref);

/* dst += src (both live), referenced to the later of the two positions (smaller G). */
void lla__omp_set_merge(const omp_ctx *cx, omp_set *dst, const omp_set *src);

void lla__omp_set_copy(const omp_ctx *cx, omp_set *dst, const omp_set *src, double ref_shift);

void lla__omp_clear_sets(const omp_ctx *cx, omp_set *slots);

/* Every set relative to target `from` moves whole to its level for target `to` (sets
 * nest, so they only move up: top-down never overwrites a set that has yet to move).
 * The pseudo set (slot NL, a whole raw chunk) goes last, to wherever it now belongs. */
void lla__omp_regroup(const omp_ctx *cx, omp_set *slots, int64_t from, int64_t to);

/* slots[dst] += Dt[:, 0:kd] Vs[0:kd, :], a summary decayed to position ref (G). */
void lla__omp_add_summary(const omp_ctx *cx, thread_tiles *tl, omp_set *slots, int dst,
                          const float *dt, const float *vs, int64_t ldvs, int64_t kd, double ref,
                          int64_t lo);

/* Rows [i0, i1) of chunk ch, grouped into runs that share a level for `target`. */
void lla__omp_add_runs(const omp_ctx *cx, thread_tiles *tl, omp_set *slots, const chunk_tiles *ch,
                       int64_t i0, int64_t i1, int64_t target, double ref);

/* GDN: the ungated part of the chunk's transition, S = (I - K^T W) S, on every set. */
void lla__omp_transition(const omp_ctx *cx, thread_tiles *tl, omp_set *slots,
                         const chunk_tiles *ch);

/* Sets relative to ch's first position -> relative to `target`, after ch's tokens.
 * use_prev: the raw previous chunk joins the sets now; keep_raw: ch stays raw. */
void lla__omp_advance(const omp_ctx *cx, thread_tiles *tl, omp_set *slots, const chunk_tiles *ch,
                      const chunk_tiles *pv, int use_prev, int keep_raw, double G0, int64_t target);

int64_t lla__omp_state_head(const omp_ctx *cx, int64_t b, int64_t h);

/* The initial state (relative to target p0 - 1, decayed to p0 - 1 = G origin 0). */
void lla__omp_import_initial(const omp_ctx *cx, const seq_info *sq, omp_set *slots);

/* Decoder layout relative to the last token (sets already regrouped to it), at G_end. */
void lla__omp_write_final(const omp_ctx *cx, const seq_info *sq, const omp_set *slots, double G_end,
                          int add);

void lla__omp_pass_through(const omp_ctx *cx, const seq_info *sq);

#endif /* LLA_OMP_SWEEP_H */
