/*
 * fuzz_problem.c - arbitrary problem descriptors and tensor views.
 *
 * Bytes -> an lla_problem (sizes from tiny to INT64 extremes, out-of-range enums, chunk,
 * NaN/inf scales, seq_offsets arrays), tensor dtypes, NULL data, strided layouts (padded,
 * permuted, reversed, broadcast, garbage strides on unused dimensions, an occasional
 * arbitrary stride).  The harness decides from its own model of lla.h whether each call
 * must succeed, must fail (and with which statuses), or may do either, then checks:
 *   - lla_problem_check, lla_state_bytes, lla_forward_workspace, lla_backward_workspace,
 *     lla_backend_supports: status as modelled, outputs untouched on failure, sizes exact;
 *   - lla_forward (optionally with an initial / final state) and lla_decode_step:
 *     a rejected call wrote nothing (poisoned outputs, states and workspace compared byte
 *     for byte); an accepted one wrote only logical output elements, left the inputs
 *     alone, and, with sane inputs, matches the float64 oracle; T decode steps agree with
 *     the oracle and their state with the forward's final state.
 */
#include "fuzz.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TQ, TK, TV, TG, TLAM, TBETA, TO, NT };
static const char *const tensor_names[NT] = {"q", "k", "v", "g", "lambda", "beta", "o"};

/* Bounds of what the harness actually runs (everything else is only validated). */
#define MAX_TENSOR_BYTES ((size_t)1 << 20)
#define MAX_ORACLE_WORK 400000.0 /* B * H * T^2 * (K + V + NL) */
#define MAX_OFFSETS 4096

enum {
    F_DERIVE_HEADS = 1,
    F_DERIVE_LEVELS = 2,
    F_VARLEN = 4,
    F_GARBAGE = 8,
    F_FINAL = 16,
    F_INITIAL = 32,
    F_DECODE = 64,
    F_CHAOS = 128
};

typedef struct fcase {
    lla_problem p;
    int64_t *offsets; /* batch + 1 entries, or NULL */
    uint8_t flags, misc;
    lla_dtype dtype;          /* o's dtype: the call's dtype */
    lla_dtype tdtype[NT];
    int null_tensor;          /* index, or -1 */
    uint8_t lay[NT][3];
    int chaos_tensor, chaos_dim;
    int64_t chaos_stride;
    int64_t garbage_stride;   /* for unused dimensions */
    uint64_t seed;
    uint8_t init_mode;        /* lla_state_init faults (appended last: old inputs read 0) */
} fcase;

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t longest_sequence(const lla_problem *p);

/* ------------------------------------------------------------------ parsing */

static void parse(fz *f, fcase *c) {
    lla_problem *p = &c->p;
    int64_t group, i;
    uint8_t fault;
    memset(c, 0, sizeof *c);
    c->flags = fz_u8(f);
    memset(p, 0, sizeof *p);
    p->variant = (lla_variant)fz_enum(f);
    p->hierarchy = (lla_hierarchy)fz_enum(f);
    p->batch = fz_int(f, 1, 4);
    p->seqlen = fz_int(f, 1, 48);
    p->qk_heads = fz_int(f, 1, 3);
    if (c->flags & F_DERIVE_HEADS) {
        group = fz_int(f, 1, 3);
        p->heads = p->qk_heads >= 1 && p->qk_heads <= 1024 && group >= 1 && group <= 1024
                       ? p->qk_heads * group
                       : group;
    } else {
        p->heads = fz_int(f, 1, 6);
    }
    p->dk = fz_int(f, 1, 6);
    p->dv = fz_int(f, 1, 6);
    p->levels = fz_int(f, 1, 64);
    p->chunk = fz_chunk(f);
    p->scale = fz_scale(f);
    p->seq_offsets = NULL;
    c->offsets = NULL;
    if ((c->flags & F_VARLEN) && p->batch >= 1 && p->batch <= MAX_OFFSETS) {
        uint8_t mode = fz_u8(f);
        c->offsets = (int64_t *)calloc((size_t)p->batch + 1, sizeof *c->offsets);
        if (!c->offsets) abort();
        if (mode < 0xC0) { /* well formed: lengths 0..12, seqlen = total unless bit 6 */
            for (i = 0; i < p->batch; ++i) c->offsets[i + 1] = c->offsets[i] + fz_u8(f) % 13;
            if (!(mode & 0x40) && c->offsets[p->batch] >= 1) p->seqlen = c->offsets[p->batch];
        } else {
            for (i = 0; i <= p->batch; ++i) c->offsets[i] = fz_int(f, 0, 16);
        }
        p->seq_offsets = c->offsets;
    }
    if (c->flags & F_DERIVE_LEVELS)
        p->levels = ref_num_levels(longest_sequence(p)) + (int64_t)(((uint64_t)p->levels & 3u) % 3u);
    c->dtype = fz_dtype(f);
    for (i = 0; i < NT; ++i) c->tdtype[i] = c->dtype;
    c->null_tensor = -1;
    fault = fz_u8(f);
    if (fault >= 0xE0 && (fault & 7) < NT) {
        if (fault & 8)
            c->null_tensor = fault & 7;
        else
            c->tdtype[fault & 7] = fz_dtype(f);
    }
    for (i = 0; i < NT; ++i) {
        c->lay[i][0] = fz_u8(f);
        c->lay[i][1] = fz_u8(f);
        c->lay[i][2] = fz_u8(f);
    }
    c->chaos_tensor = -1;
    if (c->flags & F_CHAOS) {
        c->chaos_tensor = fz_u8(f) % NT;
        c->chaos_dim = fz_u8(f) % 4;
        c->chaos_stride = fz_int(f, -3, 3);
    }
    c->garbage_stride = (fz_u8(f) & 1) ? fz_int(f, 0, 0) : 0;
    c->seed = fz_u64(f);
    c->misc = fz_u8(f);
    c->init_mode = fz_u8(f);
}

/* ------------------------------------------------------------------ the model */

static int enum_ok(int v) { return v == 0 || v == 1; }

/* Offsets of a varlen problem: first 0, non-decreasing, last == seqlen. */
static int offsets_ok(const lla_problem *p) {
    int64_t i;
    if (p->seq_offsets[0] != 0) return 0;
    for (i = 0; i < p->batch; ++i)
        if (p->seq_offsets[i + 1] < p->seq_offsets[i]) return 0;
    return p->seq_offsets[p->batch] == p->seqlen;
}

/* Longest sequence; seqlen when the offsets are not well formed (raw differences could
 * overflow). */
static int64_t longest_sequence(const lla_problem *p) {
    int64_t i, longest = 0;
    if (!p->seq_offsets || !offsets_ok(p)) return p->seqlen;
    for (i = 0; i < p->batch; ++i)
        longest = max64(longest, p->seq_offsets[i + 1] - p->seq_offsets[i]);
    return longest;
}

static int sizes_positive(const lla_problem *p) {
    return p->batch >= 1 && p->seqlen >= 1 && p->heads >= 1 && p->qk_heads >= 1 && p->dk >= 1 &&
           p->dv >= 1 && p->levels >= 1;
}

#define HUGE_BYTES ((uint64_t)1 << 56) /* below this every size must be accepted */

static uint64_t state_bytes_model(const lla_problem *p, size_t elem) {
    uint64_t n = sat_mul((uint64_t)p->batch, (uint64_t)p->heads);
    n = sat_mul(n, (uint64_t)p->levels);
    n = sat_mul(n, (uint64_t)p->dk);
    n = sat_mul(n, (uint64_t)p->dv);
    n = sat_mul(n, elem);
    return sat_add(n, sat_add(sat_mul((uint64_t)p->batch, 8), 63) & ~(uint64_t)63);
}

/* The problem on its own (what every entry point checks first), without the
 * levels-versus-longest-sequence rule. */
static expect model_problem(const lla_problem *p) {
    expect e = {0, 0};
    if (!enum_ok((int)p->variant) || !enum_ok((int)p->hierarchy)) e.must |= ST(LLA_ERR_ARG);
    if (!(p->scale == p->scale) || p->scale == INFINITY || p->scale == -INFINITY)
        e.must |= ST(LLA_ERR_ARG);
    else if (fabs(p->scale) > 1e300)
        e.maybe |= ST(LLA_ERR_ARG); /* finite, but the library may refuse huge scales */
    if (p->chunk < 0 || p->chunk > 1024 || (p->chunk & (p->chunk - 1)) != 0)
        e.must |= ST(LLA_ERR_SHAPE);
    if (!sizes_positive(p)) {
        e.must |= ST(LLA_ERR_SHAPE);
        return e;
    }
    if (p->heads % p->qk_heads != 0 || p->levels > 62) e.must |= ST(LLA_ERR_SHAPE);
    {
        uint64_t bt = p->seq_offsets ? 1 : (uint64_t)p->batch;
        uint64_t widest = (uint64_t)max64(max64(p->dk, p->dv), p->levels);
        uint64_t tensor = sat_mul(sat_mul(sat_mul(sat_mul(bt, (uint64_t)p->seqlen),
                                                  (uint64_t)p->heads), widest), 8);
        uint64_t state = state_bytes_model(p, 8);
        uint64_t square = sat_mul(sat_mul((uint64_t)p->dk, (uint64_t)p->dk), 8);
        if (tensor == UINT64_MAX || state == UINT64_MAX)
            e.must |= ST(LLA_ERR_SHAPE);
        else if (tensor > HUGE_BYTES || state > HUGE_BYTES || square > HUGE_BYTES)
            e.maybe |= ST(LLA_ERR_SHAPE);
    }
    if (p->seq_offsets && !offsets_ok(p)) e.must |= ST(LLA_ERR_SHAPE);
    return e;
}

static void merge(expect *e, expect add) {
    e->must |= add.must;
    e->maybe |= add.maybe;
}

/* ------------------------------------------------------------------ tensors */

typedef struct tensors {
    fz_tensor t[NT];
    int runnable;
} tensors;

static void extents(const lla_problem *p, int64_t T, int which, int64_t ext[4]) {
    ext[0] = p->seq_offsets ? 1 : p->batch;
    ext[1] = T;
    ext[2] = (which == TQ || which == TK) ? p->qk_heads : p->heads;
    ext[3] = which == TQ || which == TK ? p->dk
             : which == TV || which == TO ? p->dv
             : which == TLAM ? p->levels
             : 1;
}

static int small_problem(const lla_problem *p) {
    double work;
    if (!sizes_positive(p) || p->batch > 16 || p->seqlen > 256 || p->heads > 16 ||
        p->qk_heads > 16 || p->dk > 32 || p->dv > 32 || p->levels > 62)
        return 0;
    work = (double)p->batch * (double)p->heads * (double)p->seqlen * (double)p->seqlen *
           (double)(p->dk + p->dv + p->levels);
    return work <= MAX_ORACLE_WORK;
}

static void build_tensors(const fcase *c, tensors *ts) {
    const lla_problem *p = &c->p;
    int i, small = small_problem(p) && enum_ok((int)p->variant);
    ts->runnable = small;
    for (i = 0; i < NT; ++i) {
        fz_tensor *x = &ts->t[i];
        int64_t ext[4];
        extents(p, p->seqlen, i, ext);
        if (i == TBETA && p->variant != LLA_VARIANT_GDN) {
            /* ignored for Mamba-2: garbage that the library must not look at */
            tensor_dummy(x, (lla_dtype)0x55, ext);
            x->t.data = NULL;
            x->t.strides[0] = x->t.strides[3] = INT64_MIN;
            continue;
        }
        if (!small) {
            tensor_dummy(x, c->tdtype[i], ext);
            ts->runnable = 0;
        } else if (!tensor_make(x, c->tdtype[i], ext, c->lay[i][0], c->lay[i][1], c->lay[i][2],
                                i != TO, c->garbage_stride, MAX_TENSOR_BYTES)) {
            ts->runnable = 0;
        }
    }
}

/* After the values are in: a NULL tensor, or an arbitrary stride. */
static void apply_faults(const fcase *c, tensors *ts) {
    if (c->null_tensor >= 0) {
        ts->t[c->null_tensor].t.data = NULL;
        ts->runnable = 0;
    }
    if (c->chaos_tensor >= 0) {
        fz_tensor *x = &ts->t[c->chaos_tensor];
        x->t.strides[c->chaos_dim] = c->chaos_stride;
        if (x->ext[c->chaos_dim] > 1) ts->runnable = 0; /* may address anything */
    }
}

/* The inputs (o aside) address only their allocations. */
static int inputs_runnable(const fcase *c, const tensors *ts) {
    int i;
    for (i = 0; i < NT; ++i) {
        if (i == TO || (i == TBETA && c->p.variant != LLA_VARIANT_GDN)) continue;
        if (!ts->t[i].runnable || !ts->t[i].t.data) return 0;
        if (i == c->chaos_tensor && ts->t[i].ext[c->chaos_dim] > 1) return 0;
    }
    return 1;
}

static void free_tensors(tensors *ts) {
    int i;
    for (i = 0; i < NT; ++i) tensor_free(&ts->t[i]);
}

static void snapshot_tensors(tensors *ts) {
    int i;
    for (i = 0; i < NT; ++i) buf_snapshot(&ts->t[i].buf);
}

/* Tensor rules of lla.h for a call with T tokens per tensor: data, dtypes, strides.  The
 * call's dtype is that of `out` (o, or d_o for the backward, which takes no o). */
static expect model_tensors(const lla_problem *p, const tensors *ts, int64_t T, const lla_tensor *out) {
    expect e = {0, 0};
    lla_dtype d = out->dtype;
    int i, sixteen = d == LLA_DTYPE_BF16 || d == LLA_DTYPE_F16;
    int known = d == LLA_DTYPE_F32 || d == LLA_DTYPE_F64 || sixteen;
    if (!known) e.must |= ST(LLA_ERR_DTYPE);
    for (i = 0; i < NT; ++i) {
        const lla_tensor *x = i == TO ? out : &ts->t[i].t;
        int64_t ext[4];
        if (i == TBETA && p->variant != LLA_VARIANT_GDN) continue;
        if (!x->data) e.must |= ST(LLA_ERR_ARG);
        if (x->dtype != d && !(i == TG && sixteen && x->dtype == LLA_DTYPE_F32))
            e.must |= ST(LLA_ERR_DTYPE);
        extents(p, T, i, ext);
        /* strides whose element offsets cannot be formed in ptrdiff_t address nothing */
        if (tensor_span_bytes(x, ext) > (uint64_t)PTRDIFF_MAX) e.must |= ST(LLA_ERR_SHAPE);
    }
    if (known && sixteen) e.must |= ST(LLA_ERR_UNSUPPORTED); /* the scalar backend */
    return e;
}

static lla_inputs inputs_of(const tensors *ts, int64_t t, int64_t step_stride_elems[NT]) {
    lla_inputs x;
    const fz_tensor *src[6];
    lla_tensor *dst[6];
    int i;
    src[0] = &ts->t[TQ]; src[1] = &ts->t[TK]; src[2] = &ts->t[TV];
    src[3] = &ts->t[TG]; src[4] = &ts->t[TLAM]; src[5] = &ts->t[TBETA];
    dst[0] = &x.q; dst[1] = &x.k; dst[2] = &x.v; dst[3] = &x.g; dst[4] = &x.lambda; dst[5] = &x.beta;
    for (i = 0; i < 6; ++i) {
        *dst[i] = src[i]->t;
        if (t && dst[i]->data)
            dst[i]->data = (char *)dst[i]->data + t * step_stride_elems[i] * (int64_t)src[i]->elem;
    }
    return x;
}

/* ------------------------------------------------------------------ values */

static void fill_values(const fcase *c, tensors *ts) {
    const lla_problem *p = &c->p;
    fz_rng r;
    int i;
    int64_t b, t, h, d;
    r.s = c->seed;
    for (i = 0; i < NT; ++i) {
        fz_tensor *x = &ts->t[i];
        double lo = -1.0, hi = 1.0;
        if (i == TO || !x->runnable) continue;
        if (i == TK && p->variant == LLA_VARIANT_GDN) { /* ||k|| <= 1 even when aliased */
            hi = 1.0 / sqrt((double)p->dk);
            lo = -hi;
        }
        if (i == TG) { lo = -0.5; hi = 0.0; }
        if (i == TLAM) { lo = 0.5; hi = 1.5; }
        if (i == TBETA) { lo = 0.1; hi = 0.9; }
        for (b = 0; b < x->ext[0]; ++b)
            for (t = 0; t < x->ext[1]; ++t)
                for (h = 0; h < x->ext[2]; ++h)
                    for (d = 0; d < x->ext[3]; ++d)
                        tensor_set(x, b, t, h, d,
                                   (c->flags & F_GARBAGE) ? rng_garbage(&r, x->t.dtype)
                                                          : rng_real(&r, lo, hi));
    }
}

/* ------------------------------------------------------------------ states */

typedef struct fstate {
    lla_state s;
    fz_buf buf;
    int real;
} fstate;

static lla_dtype state_dtype(lla_dtype d) { return d == LLA_DTYPE_F64 ? LLA_DTYPE_F64 : LLA_DTYPE_F32; }

/* A zeroed real state (when runnable), else a 64-byte dummy whose descriptor matches p
 * and honestly says 64 bytes (too small for any problem). */
static void make_state(fstate *st, const lla_problem *p, lla_dtype dtype, int runnable) {
    size_t bytes = 0;
    memset(st, 0, sizeof *st);
    if (runnable && lla_state_bytes(p, state_dtype(dtype), &bytes) == LLA_OK &&
        bytes <= ((size_t)1 << 22)) {
        lla_status rc;
        buf_alloc(&st->buf, bytes, 0x5a);
        rc = lla_state_init(fuzz_scalar(), p, state_dtype(dtype), st->buf.mem, bytes, &st->s);
        FUZZ_CHECK(rc == LLA_OK, "lla_state_init failed on a valid problem: %s", lla_last_error());
        st->real = 1;
        return;
    }
    buf_alloc(&st->buf, 64, 0x5a);
    st->s.memory = st->buf.mem;
    st->s.bytes = 64;
    st->s.dtype = state_dtype(dtype);
    st->s.variant = p->variant;
    st->s.hierarchy = p->hierarchy;
    st->s.batch = p->batch;
    st->s.heads = p->heads;
    st->s.levels = p->levels;
    st->s.dk = p->dk;
    st->s.dv = p->dv;
}

static double state_value(const lla_state *s, size_t i) {
    const char *v = (const char *)s->memory + lla_state_values_offset(s->batch);
    if (s->dtype == LLA_DTYPE_F64) {
        double d;
        memcpy(&d, v + i * 8, 8);
        return d;
    } else {
        float f;
        memcpy(&f, v + i * 4, 4);
        return (double)f;
    }
}

static size_t state_count(const lla_state *s) {
    return (size_t)(s->batch * s->heads * s->levels * s->dk * s->dv);
}

/* ------------------------------------------------------------------ oracle */

/* Oracle output of p (seqlen may be a prefix of the tensors), as [bt][T][H][V] doubles. */
static double *oracle(const lla_problem *p, const tensors *ts) {
    lla_inputs x = inputs_of(ts, 0, NULL);
    size_t ws_bytes = 0, n = (size_t)((p->seq_offsets ? 1 : p->batch) * p->seqlen * p->heads * p->dv);
    double *ref = (double *)malloc(n * sizeof *ref);
    void *ws;
    lla_tensor o;
    lla_status st;
    if (!ref) abort();
    FUZZ_CHECK(lla_oracle_workspace(p, &ws_bytes) == LLA_OK, "oracle workspace: %s", lla_last_error());
    ws = malloc(ws_bytes ? ws_bytes : 1);
    if (!ws) abort();
    o = lla_tensor_contiguous(ref, LLA_DTYPE_F64, p->seqlen, p->heads, p->dv);
    st = lla_oracle_forward(p, &x, o, ws, ws_bytes);
    FUZZ_CHECK(st == LLA_OK, "oracle failed on an accepted problem: %s", lla_last_error());
    free(ws);
    return ref;
}

/* The logical elements of o ([bt][T][H][V], t < T) as doubles. */
static double *gather(const fz_tensor *o, int64_t T) {
    size_t n = (size_t)(o->ext[0] * T * o->ext[2] * o->ext[3]), i = 0;
    double *a = (double *)malloc(n * sizeof *a);
    int64_t b, t, h, d;
    if (!a) abort();
    for (b = 0; b < o->ext[0]; ++b)
        for (t = 0; t < T; ++t)
            for (h = 0; h < o->ext[2]; ++h)
                for (d = 0; d < o->ext[3]; ++d) a[i++] = tensor_get(o, b, t, h, d);
    return a;
}

static int sane(const fcase *c) {
    /* |scale| in [1e-3, 1e3] (or 0): outputs stay in the normal range of float32 */
    double m = fabs(c->p.scale);
    return !(c->flags & F_GARBAGE) && (m == 0.0 || (m >= 1e-3 && m <= 1e3)) &&
           (c->dtype == LLA_DTYPE_F32 || c->dtype == LLA_DTYPE_F64);
}

static double tolerance(lla_dtype d) { return d == LLA_DTYPE_F64 ? 1e-10 : 1e-4; }

/* ------------------------------------------------------------------ queries */

static void check_queries(const fcase *c, expect pe, int64_t longest) {
    lla_backend *be = fuzz_scalar();
    const lla_problem *p = &c->p;
    expect e = pe;
    size_t bytes;
    lla_dtype dts[3];
    int i;
    dts[0] = LLA_DTYPE_F32;
    dts[1] = LLA_DTYPE_F64;
    dts[2] = c->dtype;

    if (sizes_positive(p) && p->levels < ref_num_levels(longest) && !(pe.must & ST(LLA_ERR_SHAPE)))
        e.must |= ST(LLA_ERR_SHAPE);
    check_status("lla_problem_check", lla_problem_check(p), e);

    for (i = 0; i < 3; ++i) {
        expect es = pe;
        lla_status st;
        int valid_state_dtype = dts[i] == LLA_DTYPE_F32 || dts[i] == LLA_DTYPE_F64;
        if (!valid_state_dtype) es.must |= ST(LLA_ERR_DTYPE);
        bytes = (size_t)0xdeadbeef;
        st = check_status("lla_state_bytes", lla_state_bytes(p, dts[i], &bytes), es);
        if (st != LLA_OK) {
            FUZZ_CHECK(bytes == (size_t)0xdeadbeef, "lla_state_bytes wrote its output on failure");
        } else {
            size_t off = lla_state_values_offset(p->batch);
            uint64_t values = state_bytes_model(p, dts[i] == LLA_DTYPE_F64 ? 8 : 4) -
                              (sat_add(sat_mul((uint64_t)p->batch, 8), 63) & ~(uint64_t)63);
            FUZZ_CHECK(off % 64 == 0 && off >= (size_t)p->batch * 8,
                       "lla_state_values_offset(%lld) = %zu", (long long)p->batch, off);
            FUZZ_CHECK((uint64_t)bytes == (uint64_t)off + values,
                       "lla_state_bytes = %zu, expected %zu + %llu", bytes, off,
                       (unsigned long long)values);
        }
    }

    for (i = 0; i < 2; ++i) {
        expect ew = pe;
        lla_status st;
        int known = c->dtype == LLA_DTYPE_F32 || c->dtype == LLA_DTYPE_F64 ||
                    c->dtype == LLA_DTYPE_BF16 || c->dtype == LLA_DTYPE_F16;
        if (!known) ew.must |= ST(LLA_ERR_DTYPE);
        /* a backend may refuse to size work it cannot do (scalar backward: 16-bit) */
        if (c->dtype == LLA_DTYPE_BF16 || c->dtype == LLA_DTYPE_F16)
            ew.maybe |= ST(LLA_ERR_DTYPE) | ST(LLA_ERR_UNSUPPORTED);
        bytes = (size_t)0xdeadbeef;
        st = i == 0 ? lla_forward_workspace(be, p, c->dtype, &bytes)
                    : lla_backward_workspace(be, p, c->dtype, &bytes);
        st = check_status(i == 0 ? "lla_forward_workspace" : "lla_backward_workspace", st, ew);
        if (st != LLA_OK)
            FUZZ_CHECK(bytes == (size_t)0xdeadbeef, "workspace query wrote its output on failure");
    }

    {
        /* supports: every op, and an out-of-range one */
        static const int ops[4] = {LLA_OP_FORWARD, LLA_OP_BACKWARD, LLA_OP_DECODE, 7};
        for (i = 0; i < 4; ++i) {
            expect es = pe;
            int known = c->dtype == LLA_DTYPE_F32 || c->dtype == LLA_DTYPE_F64 ||
                        c->dtype == LLA_DTYPE_BF16 || c->dtype == LLA_DTYPE_F16;
            if (!known) es.must |= ST(LLA_ERR_DTYPE);
            if (ops[i] == 7) es.must |= ST(LLA_ERR_ARG);
            if (c->dtype == LLA_DTYPE_BF16 || c->dtype == LLA_DTYPE_F16)
                es.must |= ST(LLA_ERR_UNSUPPORTED);
            if (ops[i] == LLA_OP_BACKWARD) es.maybe |= ST(LLA_ERR_UNSUPPORTED); /* work item */
            check_status("lla_backend_supports",
                         lla_backend_supports(be, p, c->dtype, (lla_op)ops[i]), es);
        }
    }
}

/* lla_tensor_contiguous on the problem's extents: negative or overflowing extents give a
 * NULL view with a message, anything else the row-major strides. */
static void check_contiguous(const fcase *c) {
    const lla_problem *p = &c->p;
    static double anchor;
    lla_tensor t;
    uint64_t row = sat_mul((uint64_t)p->heads, (uint64_t)p->dv);
    uint64_t sample = sat_mul((uint64_t)p->seqlen, row);
    int bad = p->seqlen < 0 || p->heads < 0 || p->dv < 0 || row > (uint64_t)INT64_MAX ||
              sample > (uint64_t)INT64_MAX;
    memset(&t, 0x5a, sizeof t);
    t = lla_tensor_contiguous(&anchor, c->dtype, p->seqlen, p->heads, p->dv);
    if (bad) {
        FUZZ_CHECK(t.data == NULL && lla_last_error()[0],
                   "lla_tensor_contiguous(%lld, %lld, %lld) kept its data or left no message",
                   (long long)p->seqlen, (long long)p->heads, (long long)p->dv);
    } else {
        FUZZ_CHECK(t.data == &anchor && t.dtype == c->dtype && t.strides[3] == 1 &&
                       t.strides[2] == p->dv && (uint64_t)t.strides[1] == row &&
                       (uint64_t)t.strides[0] == sample,
                   "lla_tensor_contiguous(%lld, %lld, %lld) = strides (%lld, %lld, %lld, %lld)",
                   (long long)p->seqlen, (long long)p->heads, (long long)p->dv,
                   (long long)t.strides[0], (long long)t.strides[1], (long long)t.strides[2],
                   (long long)t.strides[3]);
    }
}

/* lla_state_init with a faulty size, alignment, memory or dtype (init_mode bits):
 * refused without touching memory or descriptor; accepted: the needed bytes zeroed, the
 * rest of the block and nothing else touched, the descriptor describing p. */
static void check_state_init(const fcase *c, expect pe) {
    const lla_problem *p = &c->p;
    lla_dtype want = c->dtype == LLA_DTYPE_F64 ? LLA_DTYPE_F64 : LLA_DTYPE_F32, dtype = want;
    uint8_t m = c->init_mode;
    size_t need = 0, bytes, offset = (m & 4) ? 4 : 0, i;
    expect e = pe;
    fz_buf mem;
    lla_state s, s_copy;
    lla_status st;
    if (pe.must || !small_problem(p)) return; /* sized blocks only */
    if (lla_state_bytes(p, want, &need) != LLA_OK || need > ((size_t)1 << 22)) return;
    switch ((m >> 4) & 3) {
    case 1: dtype = LLA_DTYPE_F16; e.must |= ST(LLA_ERR_DTYPE); break;
    case 2: dtype = (lla_dtype)9; e.must |= ST(LLA_ERR_DTYPE); break;
    case 3: dtype = want == LLA_DTYPE_F64 ? LLA_DTYPE_F32 : LLA_DTYPE_F64; break;
    default: break;
    }
    if (dtype != want && ((m >> 4) & 3) == 3 && lla_state_bytes(p, dtype, &need) != LLA_OK) return;
    bytes = (m & 3) == 0 ? need : (m & 3) == 1 ? need - 1 : (m & 3) == 2 ? need + 7 : 0;
    if (bytes < need) e.must |= ST(LLA_ERR_WORKSPACE);
    if (offset) e.must |= ST(LLA_ERR_WORKSPACE);
    if (m & 8) e.must |= ST(LLA_ERR_ARG);
    buf_alloc(&mem, need + 16, 0x5a);
    buf_snapshot(&mem);
    memset(&s, 0xee, sizeof s);
    s_copy = s;
    st = check_status("lla_state_init", lla_state_init(fuzz_scalar(), p, dtype,
                                                        (m & 8) ? NULL : mem.mem + offset, bytes, &s),
                      e);
    if (st != LLA_OK) {
        FUZZ_CHECK(buf_unchanged(&mem), "rejected lla_state_init wrote memory");
        FUZZ_CHECK(memcmp(&s, &s_copy, sizeof s) == 0, "rejected lla_state_init wrote the descriptor");
    } else {
        for (i = 0; i < need; ++i)
            FUZZ_CHECK(mem.mem[i] == 0, "lla_state_init left byte %zu of %zu non-zero", i, need);
        for (i = need; i < mem.bytes; ++i)
            FUZZ_CHECK(mem.mem[i] == 0x5a, "lla_state_init wrote byte %zu past the %zu it needs", i, need);
        FUZZ_CHECK(s.memory == mem.mem && s.bytes == bytes && s.dtype == dtype &&
                       s.variant == p->variant && s.hierarchy == p->hierarchy && s.batch == p->batch &&
                       s.heads == p->heads && s.levels == p->levels && s.dk == p->dk && s.dv == p->dv,
                   "lla_state_init filled the descriptor wrongly");
    }
    check_status("lla_state_init(NULL state)",
                 lla_state_init(fuzz_scalar(), p, want, mem.mem, need, NULL),
                 (expect){ST(LLA_ERR_ARG), 0});
    buf_free(&mem);
}

/* ------------------------------------------------------------------ forward */

typedef struct forward_result {
    int ran;           /* lla_forward returned LLA_OK                */
    fstate final;      /* its final state, when one was requested    */
} forward_result;

static void check_forward(const fcase *c, tensors *ts, expect pe, int64_t longest,
                          forward_result *res) {
    lla_backend *be = fuzz_scalar();
    const lla_problem *p = &c->p;
    int use_initial = (c->flags & F_INITIAL) != 0, use_final = (c->flags & F_FINAL) != 0;
    int same = use_initial && use_final && (c->misc & 0x40);
    fstate init;
    const lla_state *initial;
    fz_buf ws;
    size_t ws_bytes = 0;
    lla_inputs x;
    lla_status st;
    expect e = pe;
    int i, runnable;
    /* real states whenever the problem itself is valid and small, so that tensor faults
     * are seen on their own */
    int states_real = pe.must == 0 && small_problem(p);

    memset(res, 0, sizeof *res);
    merge(&e, model_tensors(p, ts, p->seqlen, &ts->t[TO].t));
    if (sizes_positive(p) && p->levels <= 62 && p->levels < ref_num_levels(longest))
        e.must |= ST(use_initial ? LLA_ERR_STATE : LLA_ERR_SHAPE);
    runnable = ts->runnable && e.must == 0;
    memset(&init, 0, sizeof init);
    if (use_final) {
        make_state(&res->final, p, c->dtype, states_real);
        if (!res->final.real) e.must |= ST(LLA_ERR_WORKSPACE);
    }
    if (use_initial && !same) {
        make_state(&init, p, c->dtype, states_real);
        if (!init.real) e.must |= ST(LLA_ERR_WORKSPACE);
    }
    initial = !use_initial ? NULL : same ? &res->final.s : &init.s;
    runnable = runnable && e.must == 0;

    if (e.must == 0 && !runnable) { /* valid but too large to run here */
        buf_free(&init.buf);
        return;
    }
    /* a real workspace whenever the size is known and modest, so that a rejection is
     * about the fault under test */
    if (lla_forward_workspace(be, p, c->dtype, &ws_bytes) != LLA_OK || ws_bytes > ((size_t)1 << 26)) {
        if (runnable) {
            FUZZ_CHECK(e.maybe != 0, "forward workspace query failed on a runnable problem: %s",
                       lla_last_error());
            buf_free(&init.buf);
            return;
        }
        ws_bytes = 0;
        e.must |= ST(LLA_ERR_WORKSPACE);
    }
    buf_alloc(&ws, ws_bytes + (c->misc & 63) + 1, 0xc3);
    x = inputs_of(ts, 0, NULL);

    /* too small a workspace is refused without writing */
    if (runnable && ws_bytes > 64) {
        expect small = e;
        snapshot_tensors(ts);
        buf_snapshot(&ws);
        if (use_final) buf_snapshot(&res->final.buf);
        small.must |= ST(LLA_ERR_WORKSPACE);
        check_status("lla_forward (small workspace)",
                     lla_forward(be, p, &x, ts->t[TO].t, initial,
                                 use_final ? &res->final.s : NULL, ws.mem + (c->misc & 63),
                                 ws_bytes - 64),
                     small);
        for (i = 0; i < NT; ++i)
            FUZZ_CHECK(buf_unchanged(&ts->t[i].buf), "rejected forward changed tensor %s",
                       tensor_names[i]);
        FUZZ_CHECK(buf_unchanged(&ws), "rejected forward changed the workspace");
        if (use_final) FUZZ_CHECK(buf_unchanged(&res->final.buf), "rejected forward changed the state");
    }

    snapshot_tensors(ts);
    buf_snapshot(&ws);
    if (use_initial && !same) buf_snapshot(&init.buf);
    if (use_final) buf_snapshot(&res->final.buf);
    st = lla_forward(be, p, &x, ts->t[TO].t, initial,
                     use_final ? &res->final.s : NULL, ws.mem + (c->misc & 63), ws_bytes);
    st = check_status("lla_forward", st, e);
    if (st != LLA_OK) {
        for (i = 0; i < NT; ++i)
            FUZZ_CHECK(buf_unchanged(&ts->t[i].buf), "rejected forward (%s) changed tensor %s",
                       lla_status_str(st), tensor_names[i]);
        FUZZ_CHECK(buf_unchanged(&ws), "rejected forward changed the workspace");
        if (use_initial && !same) FUZZ_CHECK(buf_unchanged(&init.buf), "rejected forward changed the initial state");
        if (use_final) FUZZ_CHECK(buf_unchanged(&res->final.buf), "rejected forward changed the final state");
    } else {
        FUZZ_CHECK(runnable, "lla_forward accepted a call it had to refuse");
        for (i = 0; i < NT; ++i) {
            if (i == TO)
                FUZZ_CHECK(tensor_padding_unchanged(&ts->t[i]),
                           "forward wrote o outside its logical elements");
            else
                FUZZ_CHECK(buf_unchanged(&ts->t[i].buf), "forward changed input %s", tensor_names[i]);
        }
        if (use_initial && !same) FUZZ_CHECK(buf_unchanged(&init.buf), "forward changed the initial state");
        if (use_final) {
            const int64_t *pos = (const int64_t *)res->final.s.memory;
            int64_t b;
            for (b = 0; b < p->batch; ++b) {
                int64_t len = p->seq_offsets ? p->seq_offsets[b + 1] - p->seq_offsets[b] : p->seqlen;
                FUZZ_CHECK(pos[b] == len, "final position of sequence %lld is %lld, expected %lld",
                           (long long)b, (long long)pos[b], (long long)len);
            }
        }
        if (sane(c)) {
            double *ref = oracle(p, ts), *got = gather(&ts->t[TO], p->seqlen), err;
            size_t n = (size_t)(ts->t[TO].ext[0] * p->seqlen * p->heads * p->dv);
            err = rel_norm_err(got, ref, n, 1e-6 * fabs(p->scale) * sqrt((double)n));
            FUZZ_CHECK(err <= tolerance(c->dtype), "forward vs oracle: relative error %g (%s)",
                       err, c->dtype == LLA_DTYPE_F64 ? "f64" : "f32");
            free(ref);
            free(got);
        }
        res->ran = 1;
    }
    buf_free(&ws);
    buf_free(&init.buf);
}

/* ------------------------------------------------------------------ decode */

static void check_decode(const fcase *c, tensors *ts, const forward_result *fwd) {
    lla_backend *be = fuzz_scalar();
    lla_problem one = c->p;
    int64_t steps[NT], t, done = 0;
    expect e;
    fstate state;
    int i, runnable;

    one.seqlen = 1;
    one.seq_offsets = NULL;
    e = model_problem(&one);
    merge(&e, model_tensors(&one, ts, 1, &ts->t[TO].t));
    runnable = ts->runnable && e.must == 0;
    make_state(&state, &one, c->dtype, e.must == 0 || (model_problem(&one).must == 0 && small_problem(&one)));
    if (!state.real) e.must |= ST(LLA_ERR_WORKSPACE);
    if (e.must == 0 && !runnable) {
        buf_free(&state.buf);
        return;
    }
    for (i = 0; i < NT; ++i) steps[i] = ts->t[i].t.strides[1];

    for (t = 0; t < (runnable ? c->p.seqlen : 1); ++t) {
        expect et = e;
        lla_inputs x = inputs_of(ts, t, steps);
        lla_tensor o = ts->t[TO].t;
        lla_status st;
        int64_t b;
        if (runnable && t) o.data = (char *)o.data + t * steps[TO] * (int64_t)ts->t[TO].elem;
        if (runnable && ref_levels_for_position(t) > one.levels) et.must |= ST(LLA_ERR_STATE);
        snapshot_tensors(ts);
        buf_snapshot(&state.buf);
        st = check_status("lla_decode_step", lla_decode_step(be, &one, &state.s, &x, o), et);
        if (st != LLA_OK) {
            for (i = 0; i < NT; ++i)
                FUZZ_CHECK(buf_unchanged(&ts->t[i].buf), "rejected decode (%s) changed tensor %s",
                           lla_status_str(st), tensor_names[i]);
            FUZZ_CHECK(buf_unchanged(&state.buf), "rejected decode changed the state");
            break;
        }
        FUZZ_CHECK(runnable, "lla_decode_step accepted a call it had to refuse");
        for (i = 0; i < NT; ++i)
            if (i != TO)
                FUZZ_CHECK(buf_unchanged(&ts->t[i].buf), "decode changed input %s", tensor_names[i]);
        FUZZ_CHECK(tensor_padding_unchanged(&ts->t[TO]), "decode wrote o outside its logical elements");
        for (b = 0; b < one.batch; ++b)
            FUZZ_CHECK(((const int64_t *)state.s.memory)[b] == t + 1,
                       "decode position %lld after step %lld", (long long)((const int64_t *)state.s.memory)[b],
                       (long long)t);
        done = t + 1;
    }

    if (done > 0 && sane(c)) {
        lla_problem prefix = c->p;
        double *ref, *got, err;
        size_t n = (size_t)(prefix.batch * done * prefix.heads * prefix.dv);
        prefix.seqlen = done;
        ref = oracle(&prefix, ts);
        got = gather(&ts->t[TO], done);
        err = rel_norm_err(got, ref, n, 1e-6 * fabs(prefix.scale) * sqrt((double)n));
        FUZZ_CHECK(err <= tolerance(c->dtype), "decode vs oracle over %lld steps: relative error %g",
                   (long long)done, err);
        free(ref);
        free(got);
        if (done == c->p.seqlen && fwd->ran && fwd->final.real) {
            size_t k, count = state_count(&state.s);
            double *a = (double *)malloc(count * sizeof *a), *r = (double *)malloc(count * sizeof *r);
            if (!a || !r) abort();
            for (k = 0; k < count; ++k) {
                a[k] = state_value(&state.s, k);
                r[k] = state_value(&fwd->final.s, k);
            }
            err = rel_norm_err(a, r, count, 1e-6 * sqrt((double)count));
            FUZZ_CHECK(err <= tolerance(c->dtype), "decode state vs forward final state: %g", err);
            free(a);
            free(r);
        }
    }
    buf_free(&state.buf);
}

/* ------------------------------------------------------------------ backward */

enum { GQ, GK, GV, GG, GLAM, GBETA, NG };
static const char *const grad_names[NG] = {"dq", "dk", "dv", "dg", "dlambda", "dbeta"};

typedef struct grads {
    fz_tensor t[NG];
    fz_tensor d_o;
    int runnable;
} grads;

/* Gradient tensors in the layouts of their inputs (no broadcast: they are outputs) and d_o
 * in o's layout with sane values; dummies when the problem is not small. */
static void build_grads(const fcase *c, const tensors *ts, grads *gs) {
    const lla_problem *p = &c->p;
    int i, small = ts->runnable || (small_problem(p) && enum_ok((int)p->variant));
    fz_rng r;
    int64_t ext[4], b, t, h, d;
    gs->runnable = small;
    for (i = 0; i < NG; ++i) {
        fz_tensor *x = &gs->t[i];
        extents(p, p->seqlen, i, ext);
        if (i == GBETA && p->variant != LLA_VARIANT_GDN) {
            tensor_dummy(x, (lla_dtype)0x66, ext);
            x->t.data = NULL; /* ignored for Mamba-2 */
            continue;
        }
        if (!small) {
            tensor_dummy(x, c->dtype, ext);
        } else if (!tensor_make(x, c->dtype, ext, c->lay[i][0], c->lay[i][1], c->lay[i][2] & 15u, 0,
                                c->garbage_stride, MAX_TENSOR_BYTES)) {
            gs->runnable = 0;
        }
    }
    extents(p, p->seqlen, TO, ext);
    if (!small) {
        tensor_dummy(&gs->d_o, c->dtype, ext);
        return;
    }
    if (!tensor_make(&gs->d_o, c->dtype, ext, c->lay[TO][0], c->lay[TO][1], c->lay[TO][2] & 15u, 0,
                     c->garbage_stride, MAX_TENSOR_BYTES)) {
        gs->runnable = 0;
        return;
    }
    r.s = c->seed ^ 0x5bd1e995u;
    for (b = 0; b < ext[0]; ++b)
        for (t = 0; t < ext[1]; ++t)
            for (h = 0; h < ext[2]; ++h)
                for (d = 0; d < ext[3]; ++d) tensor_set(&gs->d_o, b, t, h, d, rng_real(&r, -1.0, 1.0));
}

static void free_grads(grads *gs) {
    int i;
    for (i = 0; i < NG; ++i) tensor_free(&gs->t[i]);
    tensor_free(&gs->d_o);
}

static lla_grads grads_of(const grads *gs) {
    lla_grads g;
    g.dq = gs->t[GQ].t;
    g.dk = gs->t[GK].t;
    g.dv = gs->t[GV].t;
    g.dg = gs->t[GG].t;
    g.dlambda = gs->t[GLAM].t;
    g.dbeta = gs->t[GBETA].t;
    return g;
}

/* Gradient tensors follow the rules of outputs: data, d_o's dtype, strides. */
static expect model_grads(const lla_problem *p, const grads *gs) {
    expect e = {0, 0};
    int i;
    for (i = 0; i < NG; ++i) {
        const lla_tensor *x = &gs->t[i].t;
        int64_t ext[4];
        if (i == GBETA && p->variant != LLA_VARIANT_GDN) continue;
        if (!x->data) e.must |= ST(LLA_ERR_ARG);
        if (x->dtype != gs->d_o.t.dtype) e.must |= ST(LLA_ERR_DTYPE);
        extents(p, p->seqlen, i, ext);
        if (tensor_span_bytes(x, ext) > (uint64_t)PTRDIFF_MAX) e.must |= ST(LLA_ERR_SHAPE);
    }
    return e;
}

static double grad_err(const fz_tensor *a, const fz_tensor *ref, double floor_scale) {
    size_t n = (size_t)(a->ext[0] * a->ext[1] * a->ext[2] * a->ext[3]);
    double *x = gather(a, a->ext[1]), *y = gather(ref, ref->ext[1]), err;
    err = rel_norm_err(x, y, n, 1e-6 * floor_scale * sqrt((double)n));
    free(x);
    free(y);
    return err;
}

/* lla_backward: rejected calls write nothing; accepted ones write only logical gradient
 * elements and, with sane inputs and no states, match the dense oracle's gradients. */
static void check_backward(const fcase *c, tensors *ts, expect pe, int64_t longest) {
    lla_backend *be = fuzz_scalar();
    const lla_problem *p = &c->p;
    int use_initial = (c->flags & F_INITIAL) != 0, use_final = (c->flags & F_FINAL) != 0;
    int states_real = pe.must == 0 && small_problem(p);
    grads gs;
    fstate init, d_final, d_init;
    fz_buf ws;
    size_t ws_bytes = 0;
    lla_inputs x;
    lla_grads g;
    lla_status st;
    expect e = pe;
    int i, runnable, sixteen = c->dtype == LLA_DTYPE_BF16 || c->dtype == LLA_DTYPE_F16;
    int alias = (c->misc & 0x40) != 0; /* d_initial may share memory with initial */
    lla_state *d_initial;

    build_grads(c, ts, &gs);
    merge(&e, model_tensors(p, ts, p->seqlen, &gs.d_o.t));
    merge(&e, model_grads(p, &gs));
    if (sixteen) e.maybe |= ST(LLA_ERR_DTYPE); /* scalar backward: DTYPE, not UNSUPPORTED */
    if (sizes_positive(p) && p->levels <= 62 && p->levels < ref_num_levels(longest))
        e.must |= ST(use_initial ? LLA_ERR_STATE : LLA_ERR_SHAPE);
    memset(&init, 0, sizeof init);
    memset(&d_final, 0, sizeof d_final);
    memset(&d_init, 0, sizeof d_init);
    if (use_initial) {
        make_state(&init, p, c->dtype, states_real);
        if (!init.real) e.must |= ST(LLA_ERR_WORKSPACE);
        if (!alias) {
            make_state(&d_init, p, c->dtype, states_real);
            if (!d_init.real) e.must |= ST(LLA_ERR_WORKSPACE);
        }
    }
    d_initial = !use_initial ? NULL : alias ? &init.s : &d_init.s;
    if (use_final) {
        make_state(&d_final, p, c->dtype, states_real);
        if (!d_final.real) e.must |= ST(LLA_ERR_WORKSPACE);
        if (d_final.real) { /* some adjoint of the final state */
            size_t k, n = state_count(&d_final.s);
            fz_rng r;
            r.s = c->seed + 17;
            for (k = 0; k < n; ++k) {
                double v = rng_real(&r, -1.0, 1.0);
                char *vals = (char *)d_final.s.memory + lla_state_values_offset(p->batch);
                if (d_final.s.dtype == LLA_DTYPE_F64) memcpy(vals + k * 8, &v, 8);
                else { float f = (float)v; memcpy(vals + k * 4, &f, 4); }
            }
        }
    }
    /* o plays no part here: runnable unless an input is faulty */
    runnable = gs.runnable && e.must == 0 && inputs_runnable(c, ts);
    if (e.must == 0 && !runnable) goto done;
    if (lla_backward_workspace(be, p, c->dtype, &ws_bytes) != LLA_OK || ws_bytes > ((size_t)1 << 26)) {
        if (runnable) {
            FUZZ_CHECK(e.maybe != 0, "backward workspace query failed on a runnable problem: %s",
                       lla_last_error());
            goto done;
        }
        ws_bytes = 0;
        e.must |= ST(LLA_ERR_WORKSPACE);
    }
    buf_alloc(&ws, ws_bytes + (c->misc & 63) + 1, 0xc3);
    x = inputs_of(ts, 0, NULL);
    g = grads_of(&gs);
    snapshot_tensors(ts);
    for (i = 0; i < NG; ++i) buf_snapshot(&gs.t[i].buf);
    buf_snapshot(&gs.d_o.buf);
    buf_snapshot(&ws);
    if (use_initial) buf_snapshot(&init.buf);
    if (use_initial && !alias) buf_snapshot(&d_init.buf);
    if (use_final) buf_snapshot(&d_final.buf);
    st = lla_backward(be, p, &x, gs.d_o.t, use_initial ? &init.s : NULL, use_final ? &d_final.s : NULL,
                      &g, d_initial, ws.mem + (c->misc & 63), ws_bytes);
    st = check_status("lla_backward", st, e);
    for (i = 0; i < NT; ++i)
        FUZZ_CHECK(buf_unchanged(&ts->t[i].buf), "backward (%s) changed tensor %s", lla_status_str(st),
                   tensor_names[i]);
    FUZZ_CHECK(buf_unchanged(&gs.d_o.buf), "backward changed d_o");
    if (use_initial && (!alias || st != LLA_OK))
        FUZZ_CHECK(buf_unchanged(&init.buf), "backward (%s) changed the initial state", lla_status_str(st));
    if (use_final) FUZZ_CHECK(buf_unchanged(&d_final.buf), "backward changed d_final");
    if (st != LLA_OK) {
        for (i = 0; i < NG; ++i)
            FUZZ_CHECK(buf_unchanged(&gs.t[i].buf), "rejected backward (%s) changed %s",
                       lla_status_str(st), grad_names[i]);
        FUZZ_CHECK(buf_unchanged(&ws), "rejected backward changed the workspace");
        if (use_initial && !alias)
            FUZZ_CHECK(buf_unchanged(&d_init.buf), "rejected backward changed d_initial");
    } else {
        FUZZ_CHECK(runnable, "lla_backward accepted a call it had to refuse");
        if (d_initial) { /* d_initial receives the initial positions */
            const int64_t *pos = (const int64_t *)d_initial->memory;
            int64_t b;
            for (b = 0; b < p->batch; ++b)
                FUZZ_CHECK(pos[b] == 0, "d_initial position %lld is %lld, the initial state's is 0",
                           (long long)b, (long long)pos[b]);
        }
        for (i = 0; i < NG; ++i)
            FUZZ_CHECK(tensor_padding_unchanged(&gs.t[i]), "backward wrote %s outside its logical elements",
                       grad_names[i]);
        if (sane(c) && !use_initial && !use_final) {
            grads ref;
            size_t need = 0;
            void *ows;
            lla_grads rg;
            int64_t ext[4];
            memset(&ref, 0, sizeof ref);
            for (i = 0; i < NG; ++i) {
                extents(p, p->seqlen, i, ext);
                if (i == GBETA && p->variant != LLA_VARIANT_GDN) tensor_dummy(&ref.t[i], c->dtype, ext);
                else if (!tensor_make(&ref.t[i], c->dtype, ext, 0, 0, 0, 0, 0, MAX_TENSOR_BYTES)) abort();
            }
            rg = grads_of(&ref);
            FUZZ_CHECK(lla_oracle_backward_workspace(p, &need) == LLA_OK, "oracle backward workspace: %s",
                       lla_last_error());
            ows = malloc(need ? need : 1);
            if (!ows) abort();
            FUZZ_CHECK(lla_oracle_backward(p, &x, gs.d_o.t, &rg, ows, need) == LLA_OK,
                       "oracle backward refused an accepted problem: %s", lla_last_error());
            for (i = 0; i < NG; ++i) {
                double err;
                if (i == GBETA && p->variant != LLA_VARIANT_GDN) continue;
                err = grad_err(&gs.t[i], &ref.t[i], fabs(p->scale));
                FUZZ_CHECK(err <= (c->dtype == LLA_DTYPE_F64 ? 1e-9 : 1e-4),
                           "backward %s vs oracle: relative error %g (%s)", grad_names[i], err,
                           c->dtype == LLA_DTYPE_F64 ? "f64" : "f32");
            }
            free(ows);
            free_grads(&ref);
        }
    }
    buf_free(&ws);
done:
    buf_free(&init.buf);
    buf_free(&d_init.buf);
    buf_free(&d_final.buf);
    free_grads(&gs);
}

/* ------------------------------------------------------------------ entry */

/* FUZZ_VERBOSE=1: what an input decodes to (for reading crash artifacts). */
static void describe(const fcase *c, const tensors *ts) {
    const lla_problem *p = &c->p;
    int i;
    if (!getenv("FUZZ_VERBOSE")) return;
    fprintf(stderr,
            "problem: variant %d hierarchy %d batch %lld seqlen %lld heads %lld qk_heads %lld "
            "dk %lld dv %lld levels %lld chunk %lld scale %g offsets %s flags 0x%02x dtype %d\n",
            (int)p->variant, (int)p->hierarchy, (long long)p->batch, (long long)p->seqlen,
            (long long)p->heads, (long long)p->qk_heads, (long long)p->dk, (long long)p->dv,
            (long long)p->levels, (long long)p->chunk, p->scale, p->seq_offsets ? "yes" : "no",
            c->flags, (int)c->dtype);
    if (p->seq_offsets) {
        int64_t b;
        fprintf(stderr, "  offsets:");
        for (b = 0; b <= p->batch && b < 16; ++b) fprintf(stderr, " %lld", (long long)p->seq_offsets[b]);
        fprintf(stderr, "\n");
    }
    for (i = 0; i < NT; ++i)
        fprintf(stderr, "  %-6s dtype %d data %s strides (%lld, %lld, %lld, %lld) extents %lld x %lld x %lld x %lld%s\n",
                tensor_names[i], (int)ts->t[i].t.dtype, ts->t[i].t.data ? "set" : "NULL",
                (long long)ts->t[i].t.strides[0], (long long)ts->t[i].t.strides[1],
                (long long)ts->t[i].t.strides[2], (long long)ts->t[i].t.strides[3],
                (long long)ts->t[i].ext[0], (long long)ts->t[i].ext[1], (long long)ts->t[i].ext[2],
                (long long)ts->t[i].ext[3], ts->t[i].runnable ? "" : " (not runnable)");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz f;
    fcase c;
    tensors ts;
    expect pe;
    forward_result fwd;
    int64_t longest;

    f.data = data;
    f.size = size;
    f.at = 0;
    parse(&f, &c);
    pe = model_problem(&c.p);
    longest = sizes_positive(&c.p) ? longest_sequence(&c.p) : 0;
    check_status("lla_problem_check(NULL)", lla_problem_check(NULL), (expect){ST(LLA_ERR_ARG), 0});
    check_queries(&c, pe, longest);
    check_contiguous(&c);
    check_state_init(&c, pe);

    build_tensors(&c, &ts);
    fill_values(&c, &ts);
    apply_faults(&c, &ts);
    describe(&c, &ts);
    check_forward(&c, &ts, pe, longest, &fwd);
    if ((c.flags & F_DECODE) && !c.p.seq_offsets) check_decode(&c, &ts, &fwd);
    if (c.misc & 0x80) check_backward(&c, &ts, pe, longest);

    buf_free(&fwd.final.buf);
    free_tensors(&ts);
    free(c.offsets);
    return 0;
}
