/*
 * test_diff.c - the differential driver: every usable backend other than scalar against
 * the scalar backend, on every case (modelled on ggml's test-backend-ops).
 *
 * Backends are found at run time (lla_backend_count / lla_backend_info_get), so a new
 * backend compiled into the library is tested without changes here; one that is not
 * usable on this machine is skipped with its reason printed.  The openmp backend runs at
 * 1, 2 and 3 threads (at 2 and 3 threads the small-batch cases take its segmented
 * schedule); others at their default.
 *
 * Per case (random shapes: T = 1, T not a multiple of the chunk, K != V, grouped q/k,
 * varlen packed batches with empty and one-token sequences, strided views, weak and
 * strong, mamba2 and gdn), all float32:
 *   forward                 o against scalar (relative norm error <= 1e-5, NaN fails)
 *   forward + final state   o and the state (positions exact, values <= 1e-5)
 *   forward from a state    initial state = scalar prefill of an independent history of
 *                           ragged lengths; o and final state, then again with
 *                           final == initial (in place)
 *   decode                  steps from that state: every output and the final state
 *   backward                gradients (<= 1e-4) when the backend has its own backward,
 *                           without states, and from the prefilled state with a random
 *                           d_final: d_initial too, also with d_initial == d_final
 * Every call: outputs in buffers with guard bytes and padding between elements (all must
 * stay untouched; a backend with device memory gets byte-exact device copies of every
 * buffer, downloaded back before the checks), the workspace poisoned twice (NaN bytes, then a large
 * finite pattern) with bit-identical outputs required, guard bytes after the workspace, initial
 * states unchanged.  An operation is skipped only when lla_backend_supports says unsupported, and
 * the skip is printed. Golden files (../shared/golden): forward, final state and decode on every
 * backend.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend.h" /* to tell a backend's own backward from the registry's fallback */
#include "golden.h"
#include "testutil.h"

#define GUARD 256
#define FILL 0x5a
#define TOL_F32 1e-5
#define TOL_GRAD_F32 1e-4
#define DECODE_STEPS 9

/* ------------------------------------------------------------------ cases */

typedef struct dcase {
    char name[112];
    lla_variant variant;
    lla_hierarchy hierarchy;
    int64_t B, T, H, G, K, V, chunk;
    int strided, varlen, history;
    uint64_t seed;
} dcase;

typedef struct target {
    char backend[32];
    int threads; /* 0: backend default */
} target;

typedef struct job {
    const target *tg;
    const dcase *dc; /* NULL: golden file */
    char golden[128];
    char label[200];
} job;

#define MAX_CASES 64
#define MAX_TARGETS 16
static dcase g_cases[MAX_CASES];
static int g_ncases;
static target g_targets[MAX_TARGETS];
static int g_ntargets;

static void add_case(lla_variant v, lla_hierarchy h, int64_t B, int64_t T, int64_t H, int64_t G,
                     int64_t K, int64_t V, int64_t C, int strided, int varlen, int history,
                     uint64_t seed) {
    dcase *c = &g_cases[g_ncases++];
    c->variant = v;
    c->hierarchy = h;
    c->B = B;
    c->T = T;
    c->H = H;
    c->G = G;
    c->K = K;
    c->V = V;
    c->chunk = C;
    c->strided = strided;
    c->varlen = varlen;
    c->history = history;
    c->seed = seed;
    snprintf(c->name, sizeof c->name, "%s-%s B%lld T%lld H%lld G%lld K%lld V%lld C%lld%s%s%s",
             v == LLA_VARIANT_GDN ? "gdn" : "mamba2", h == LLA_HIERARCHY_STRONG ? "strong" : "weak",
             (long long)B, (long long)T, (long long)H, (long long)G, (long long)K, (long long)V,
             (long long)C, strided ? " strided" : "", varlen ? " varlen" : "",
             history ? " +state" : "");
}

static void build_cases(void) {
    test_rng r = {20250611u};
    int v, h, i;
    g_ncases = 0;
    /* fixed edge cases, every variant x hierarchy */
    for (v = 0; v < 2; ++v)
        for (h = 0; h < 2; ++h) {
            lla_variant var = (lla_variant)v;
            lla_hierarchy hie = (lla_hierarchy)h;
            add_case(var, hie, 1, 1, 1, 1, 4, 3, 64, 0, 0, 1, 11u + (uint64_t)(v * 2 + h));
            add_case(var, hie, 2, 65, 2, 1, 8, 6, 64, 1, 0, 1, 21u + (uint64_t)(v * 2 + h));
            add_case(var, hie, 1, 150, 1, 1, 16, 8, 8, 0, 0, 0, 31u + (uint64_t)(v * 2 + h));
            add_case(var, hie, 3, 180, 4, 2, 6, 9, 4, 1, 1, 1, 41u + (uint64_t)(v * 2 + h));
            add_case(var, hie, 1, 129, 2, 2, 5, 7, 16, 0, 0, 1, 51u + (uint64_t)(v * 2 + h));
            add_case(var, hie, 1, 200, 2, 1, 32, 16, 64, 0, 0, 0, 61u + (uint64_t)(v * 2 + h));
        }
    /* random shapes */
    for (i = 0; i < 16; ++i) {
        int64_t H = rng_int(&r, 1, 4), G = 1, B = rng_int(&r, 1, 3);
        int64_t Cexp = rng_int(&r, 0, 6);
        if (H % 2 == 0 && rng_int(&r, 0, 1)) G = H / 2;
        add_case((lla_variant)rng_int(&r, 0, 1), (lla_hierarchy)rng_int(&r, 0, 1), B,
                 rng_int(&r, 1, 260), H, G, rng_int(&r, 1, 24), rng_int(&r, 1, 24),
                 (int64_t)1 << Cexp, (int)rng_int(&r, 0, 1), (int)rng_int(&r, 0, 1),
                 (int)rng_int(&r, 0, 1), 1000u + (uint64_t)i);
    }
}

/* ------------------------------------------------------------------ guarded buffers */

typedef struct gbuf {
    unsigned char *raw; /* GUARD | body | GUARD */
    size_t body;
    lla_tensor t;
    /* logical extent, to check padding */
    int64_t bt, T, heads, dim;
} gbuf;

/* A [bt, T, heads, dim] float32 tensor inside guard bytes; strided: padding between every
 * row, head and batch (as td_tensor), everything filled with FILL. */
static gbuf gtensor(int64_t bt, int64_t T, int64_t heads, int64_t dim, int strided) {
    gbuf g;
    const int64_t pad_d = strided ? 3 : 0, pad_h = strided ? 1 : 0;
    g.t.dtype = LLA_DTYPE_F32;
    g.t.strides[3] = 1;
    g.t.strides[2] = dim + pad_d;
    g.t.strides[1] = (heads + pad_h) * g.t.strides[2];
    g.t.strides[0] = T * g.t.strides[1] + (strided ? 5 : 0);
    g.body = (size_t)(bt * g.t.strides[0]) * sizeof(float);
    g.raw = (unsigned char *)malloc(g.body + 2 * GUARD);
    assert_non_null(g.raw);
    memset(g.raw, FILL, g.body + 2 * GUARD);
    g.t.data = g.raw + GUARD;
    g.bt = bt;
    g.T = T;
    g.heads = heads;
    g.dim = dim;
    return g;
}

/* Every byte outside the logical elements still FILL. */
static void gtensor_check(const gbuf *g, const char *what) {
    const size_t n = g->body + 2 * GUARD;
    unsigned char *mark = (unsigned char *)calloc(n, 1);
    int64_t b, t, h, d;
    size_t i;
    assert_non_null(mark);
    for (b = 0; b < g->bt; ++b)
        for (t = 0; t < g->T; ++t)
            for (h = 0; h < g->heads; ++h)
                for (d = 0; d < g->dim; ++d) {
                    size_t off = GUARD + (size_t)(b * g->t.strides[0] + t * g->t.strides[1] +
                                                  h * g->t.strides[2] + d) *
                                             sizeof(float);
                    memset(mark + off, 1, sizeof(float));
                }
    for (i = 0; i < n; ++i)
        if (!mark[i] && g->raw[i] != FILL) {
            free(mark);
            fail_msg("%s: byte %ld outside the logical elements was written", what,
                     (long)i - GUARD);
        }
    free(mark);
}

static void gfree(gbuf *g) {
    free(g->raw);
    g->raw = NULL;
}

/* ------------------------------------------------------------------ states */

typedef struct gstate {
    lla_state s;
    unsigned char *raw;
    size_t bytes;
} gstate;

/* States live in host memory here (a device backend works on a mirror of them, below). */
static lla_backend *g_host; /* the scalar backend: initializes host states */

static gstate state_new(const lla_problem *p) {
    gstate g;
    assert_int_equal(lla_state_bytes(p, LLA_DTYPE_F32, &g.bytes), LLA_OK);
    g.raw = (unsigned char *)malloc(g.bytes + GUARD);
    assert_non_null(g.raw);
    memset(g.raw, FILL, g.bytes + GUARD);
    assert_int_equal(lla_state_init(g_host, p, LLA_DTYPE_F32, g.raw, g.bytes, &g.s), LLA_OK);
    return g;
}

static gstate state_clone(const lla_problem *p, const gstate *src) {
    gstate g = state_new(p);
    memcpy(g.raw, src->raw, g.bytes);
    return g;
}

/* ------------------------------------------------------------------ device mirrors */

/* A backend with device memory (LLA_MEMORY_DEVICE: opencl, cuda) works on device copies of
 * the host buffers: each is allocated with lla_malloc and uploaded byte for byte (guards,
 * padding and poison included), and downloaded back after the call, so every check below
 * runs on what the device wrote.  For host backends the mirror is the buffer itself. */
typedef struct mirror {
    lla_backend *be;
    int device;
    int n;
    struct {
        unsigned char *host;
        void *dev;
        size_t bytes;
    } e[64];
} mirror;

static void mirror_init(mirror *m, lla_backend *be) {
    m->be = be;
    m->device = lla_backend_memory_kind(be) == LLA_MEMORY_DEVICE;
    m->n = 0;
}

/* The device copy of host[0, bytes), uploaded now (again, if it exists). */
static void *mirror_put(mirror *m, void *host, size_t bytes) {
    int i;
    if (!m->device || !host) return host;
    for (i = 0; i < m->n; ++i)
        if (m->e[i].host == (unsigned char *)host) break;
    if (i == m->n) {
        if (m->n == 64) fail_msg("mirror: too many buffers");
        m->e[i].host = (unsigned char *)host;
        m->e[i].bytes = bytes;
        if (lla_malloc(m->be, bytes ? bytes : 1, &m->e[i].dev) != LLA_OK)
            fail_msg("lla_malloc(%lu) on %s: %s", (unsigned long)bytes, lla_backend_name(m->be),
                     lla_last_error());
        m->n++;
    }
    if (bytes && lla_upload(m->be, m->e[i].dev, host, bytes) != LLA_OK)
        fail_msg("lla_upload: %s", lla_last_error());
    return m->e[i].dev;
}

/* A tensor whose data lies in host[0, bytes), moved to the device copy. */
static lla_tensor mirror_tensor(mirror *m, lla_tensor t, void *host, size_t bytes) {
    unsigned char *dev = (unsigned char *)mirror_put(m, host, bytes);
    t.data = dev + ((unsigned char *)t.data - (unsigned char *)host);
    return t;
}

/* Inputs made by td_create: every tensor starts its own buffer of Bt * strides[0] elements. */
static lla_inputs mirror_inputs(mirror *m, const lla_problem *p, const lla_inputs *x) {
    lla_inputs y = *x;
    lla_tensor *ts[6];
    int i;
    const size_t bt = (size_t)td_tensor_batch(p);
    ts[0] = &y.q, ts[1] = &y.k, ts[2] = &y.v, ts[3] = &y.g, ts[4] = &y.lambda, ts[5] = &y.beta;
    for (i = 0; i < 6; ++i)
        *ts[i] = mirror_tensor(m, *ts[i], ts[i]->data,
                               bt * (size_t)ts[i]->strides[0] * lla_dtype_size(ts[i]->dtype));
    return y;
}

static lla_tensor mirror_gbuf(mirror *m, gbuf *g) {
    return mirror_tensor(m, g->t, g->raw, g->body + 2 * GUARD);
}

/* The state descriptor of a host state, on the device copy of its block (+ guard). */
static lla_state mirror_state(mirror *m, gstate *g) {
    lla_state s = g->s;
    s.memory = mirror_put(m, g->raw, g->bytes + GUARD);
    return s;
}

/* Downloads everything back into the host buffers. */
static void mirror_get_all(mirror *m) {
    int i;
    if (!m->device) return;
    if (lla_synchronize(m->be) != LLA_OK) fail_msg("lla_synchronize: %s", lla_last_error());
    for (i = 0; i < m->n; ++i)
        if (m->e[i].bytes &&
            lla_download(m->be, m->e[i].host, m->e[i].dev, m->e[i].bytes) != LLA_OK)
            fail_msg("lla_download: %s", lla_last_error());
}

static void mirror_free(mirror *m) {
    int i;
    for (i = 0; i < m->n; ++i) lla_free(m->be, m->e[i].dev);
    m->n = 0;
}

static void state_check_guard(const gstate *g, const char *what) {
    size_t i;
    for (i = 0; i < GUARD; ++i)
        if (g->raw[g->bytes + i] != FILL)
            fail_msg("%s: state guard byte %lu written", what, (unsigned long)i);
}

static size_t state_count(const lla_state *s) {
    return (size_t)(s->batch * s->heads * s->levels * s->dk * s->dv);
}

static double state_err(const gstate *a, const gstate *ref, const char *what) {
    const float *va =
        (const float *)((const char *)a->s.memory + lla_state_values_offset(a->s.batch));
    const float *vr =
        (const float *)((const char *)ref->s.memory + lla_state_values_offset(ref->s.batch));
    const size_t n = state_count(&a->s);
    double num = 0.0, den = 0.0;
    size_t i;
    int64_t b;
    for (b = 0; b < a->s.batch; ++b)
        if (((const int64_t *)a->s.memory)[b] != ((const int64_t *)ref->s.memory)[b])
            fail_msg("%s: position of sequence %lld is %lld, scalar says %lld", what, (long long)b,
                     (long long)((const int64_t *)a->s.memory)[b],
                     (long long)((const int64_t *)ref->s.memory)[b]);
    for (i = 0; i < n; ++i) {
        double x = va[i], y = vr[i];
        if (x != x || y != y) return INFINITY;
        num += (x - y) * (x - y);
        den += y * y;
    }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}

static void state_free(gstate *g) {
    free(g->raw);
    g->raw = NULL;
}

/* ------------------------------------------------------------------ calls */

static void check_err(const char *label, const char *what, double err, double tol) {
    print_message("    %-58s %-30s rel err %.3g\n", label, what, err);
    if (!(err <= tol)) fail_msg("%s: %s rel err %g > %g", label, what, err, tol);
}

/* lla_forward with a poisoned, guarded workspace of exactly the queried size; every buffer
 * through the backend's mirror (host buffers are updated on return). */
static lla_status forward_poisoned(lla_backend *be, const lla_problem *p, const lla_inputs *x,
                                   gbuf *o, gstate *init, gstate *fin, int poison,
                                   const char *label) {
    size_t ws = 0, i;
    unsigned char *w;
    lla_status st;
    mirror m;
    lla_inputs xd;
    lla_state si, sf;
    void *wd;
    assert_int_equal(lla_forward_workspace(be, p, LLA_DTYPE_F32, &ws), LLA_OK);
    w = (unsigned char *)malloc(ws + GUARD);
    assert_non_null(w);
    memset(w, poison, ws);
    memset(w + ws, FILL, GUARD);
    mirror_init(&m, be);
    xd = mirror_inputs(&m, p, x);
    if (init) si = mirror_state(&m, init);
    if (fin) sf = mirror_state(&m, fin); /* the same device block when fin == init */
    wd = mirror_put(&m, w, ws + GUARD);
    st = lla_forward(be, p, &xd, mirror_gbuf(&m, o), init ? &si : NULL, fin ? &sf : NULL,
                     ws ? wd : NULL, ws);
    mirror_get_all(&m);
    mirror_free(&m);
    for (i = 0; i < GUARD; ++i)
        if (w[ws + i] != FILL) {
            free(w);
            fail_msg("%s: wrote past the workspace (%lu bytes)", label, (unsigned long)ws);
        }
    free(w);
    return st;
}

static int supported(lla_backend *be, const lla_problem *p, lla_op op, const char *label,
                     const char *what) {
    lla_status st = lla_backend_supports(be, p, LLA_DTYPE_F32, op);
    if (st == LLA_OK) return 1;
    print_message("    %-58s %-30s SKIPPED: %s says %s (%s)\n", label, what, lla_backend_name(be),
                  lla_status_str(st), lla_last_error());
    if (st != LLA_ERR_UNSUPPORTED && st != LLA_ERR_DTYPE)
        fail_msg("%s: supports() failed with %s", label, lla_status_str(st));
    return 0;
}

static lla_backend *open_target(const target *tg) {
    lla_backend *be = NULL;
    if (lla_backend_open(tg->backend, &be) != LLA_OK)
        fail_msg("cannot open %s: %s", tg->backend, lla_last_error());
    if (tg->threads) assert_int_equal(lla_backend_set_threads(be, tg->threads), LLA_OK);
    return be;
}

/* ------------------------------------------------------------------ one case */

typedef struct casedata {
    lla_problem p; /* the case (p.seq_offsets -> td->offsets when varlen) */
    test_data *td;
    int64_t bt;
    test_data *hist; /* independent history, prefilled by scalar into s0 */
    int has_state;
} casedata;

static void ragged(test_rng *r, int64_t B, int64_t total, int64_t *offsets) {
    int64_t i, left = total;
    offsets[0] = 0;
    for (i = 0; i < B; ++i) {
        int64_t len = i == B - 1 ? left : rng_int(r, 0, left);
        if (i == 0 && B > 1 && left > 2) len = 1; /* a one-token sequence */
        offsets[i + 1] = offsets[i] + len;
        left -= len;
    }
}

static void case_setup(const dcase *dc, casedata *cd) {
    lla_problem p;
    test_rng r;
    int64_t offs[TD_MAX_BATCH + 1], hoffs[TD_MAX_BATCH + 1], b, longest = 0;
    memset(cd, 0, sizeof *cd);
    r.s = dc->seed * 7919u + 1u;
    lla_problem_init(&p, dc->variant, dc->hierarchy, dc->B, dc->T, dc->H, dc->G, dc->K, dc->V);
    p.chunk = dc->chunk;
    p.scale = 0.75;
    if (dc->varlen) ragged(&r, dc->B, dc->T, offs);
    /* history lengths: ragged, some zero; levels for history + sequence */
    if (dc->history) {
        hoffs[0] = 0;
        for (b = 0; b < dc->B; ++b) hoffs[b + 1] = hoffs[b] + (b == 1 ? 0 : rng_int(&r, 1, 140));
    }
    for (b = 0; b < dc->B; ++b) { /* + room for the decode steps after it */
        int64_t len = dc->varlen ? offs[b + 1] - offs[b] : dc->T;
        int64_t h = dc->history ? hoffs[b + 1] - hoffs[b] : 0;
        if (len < DECODE_STEPS) len = DECODE_STEPS;
        if (len + h > longest) longest = len + h;
    }
    p.levels = lla_num_levels(longest > 0 ? longest : 1);
    if (p.levels < lla_num_levels(dc->T)) p.levels = lla_num_levels(dc->T);
    cd->td = td_create(&p, dc->varlen ? offs : NULL, LLA_DTYPE_F32, dc->strided, dc->seed);
    cd->p = cd->td->p;
    cd->bt = td_tensor_batch(&cd->p);
    if (dc->history) {
        lla_problem hp = p;
        hp.seqlen = hoffs[dc->B];
        cd->hist = td_create(&hp, hoffs, LLA_DTYPE_F32, 0, dc->seed + 99u);
        cd->has_state = 1;
    }
}

static void case_free(casedata *cd) {
    td_free(cd->td);
    td_free(cd->hist);
}

/* The history prefilled by scalar: the initial state both backends start from. */
static gstate prefill(lla_backend *sc, const casedata *cd) {
    gstate s = state_new(&cd->p);
    int64_t bt = td_tensor_batch(&cd->hist->p);
    gbuf o = gtensor(bt, cd->hist->p.seqlen, cd->p.heads, cd->p.dv, 0);
    assert_int_equal(
        forward_poisoned(sc, &cd->hist->p, &cd->hist->x, &o, NULL, &s, 0xff, "history"), LLA_OK);
    gfree(&o);
    return s;
}

static void run_forward_pair(lla_backend *be, lla_backend *sc, const casedata *cd, gstate *init,
                             int with_final, int in_place, const char *label, const char *what) {
    const lla_problem *p = &cd->p;
    gbuf o_ref = gtensor(cd->bt, p->seqlen, p->heads, p->dv, cd->td->strided);
    gbuf o1 = gtensor(cd->bt, p->seqlen, p->heads, p->dv, cd->td->strided);
    gbuf o2 = gtensor(cd->bt, p->seqlen, p->heads, p->dv, cd->td->strided);
    gstate f_ref, f1, f2, init_copy;
    char w[96];
    int have_f = with_final || in_place;
    memset(&init_copy, 0, sizeof init_copy);
    memset(&f_ref, 0, sizeof f_ref);
    memset(&f1, 0, sizeof f1);
    memset(&f2, 0, sizeof f2);
    if (have_f) {
        f_ref = state_new(p);
        if (in_place) { /* final == initial: both start from copies of the initial state */
            f1 = state_clone(p, init);
            f2 = state_clone(p, init);
        } else {
            f1 = state_new(p);
            f2 = state_new(p);
        }
    }
    if (init) init_copy = state_clone(p, init);
    assert_int_equal(
        forward_poisoned(sc, p, &cd->td->x, &o_ref, init, have_f ? &f_ref : NULL, 0xff, label),
        LLA_OK);
    assert_int_equal(forward_poisoned(be, p, &cd->td->x, &o1, in_place ? &f1 : init,
                                      have_f ? &f1 : NULL, 0xff, label),
                     LLA_OK);
    assert_int_equal(forward_poisoned(be, p, &cd->td->x, &o2, in_place ? &f2 : init,
                                      have_f ? &f2 : NULL, FILL, label),
                     LLA_OK);
    snprintf(w, sizeof w, "%s o", what);
    check_err(label, w, rel_err(p, &o1.t, &o_ref.t, p->heads, p->dv), TOL_F32);
    gtensor_check(&o1, label);
    gtensor_check(&o2, label);
    if (memcmp(o1.raw, o2.raw, o1.body + 2 * GUARD) != 0)
        fail_msg("%s: %s output depends on the workspace contents", label, what);
    if (have_f) {
        snprintf(w, sizeof w, "%s final state", what);
        check_err(label, w, state_err(&f1, &f_ref, label), TOL_F32);
        if (memcmp(f1.raw, f2.raw, f1.bytes) != 0)
            fail_msg("%s: %s final state depends on the workspace contents", label, what);
        state_check_guard(&f1, label);
        state_free(&f_ref);
        state_free(&f1);
        state_free(&f2);
    }
    if (init) {
        if (memcmp(init_copy.raw, init->raw, init->bytes + GUARD) != 0)
            fail_msg("%s: %s modified the initial state (or its guard)", label, what);
        state_free(&init_copy);
    }
    gfree(&o_ref);
    gfree(&o1);
    gfree(&o2);
}

static void run_decode_pair(lla_backend *be, lla_backend *sc, const casedata *cd,
                            const gstate *init, const char *label) {
    lla_problem p = cd->p;
    gstate s_ref, s_be;
    lla_state sd;
    mirror m;
    int64_t step;
    const int steps = DECODE_STEPS;
    double worst = 0.0;
    p.seq_offsets = NULL;
    p.seqlen = 1;
    s_ref = init ? state_clone(&p, init) : state_new(&p);
    s_be = init ? state_clone(&p, init) : state_new(&p);
    mirror_init(&m, be);
    sd = mirror_state(&m, &s_be); /* stays on the device across the steps */
    for (step = 0; step < steps; ++step) {
        test_data *x = td_create(&p, NULL, LLA_DTYPE_F32, cd->td->strided,
                                 cd->td->p.seqlen * 31u + (uint64_t)step);
        gbuf o_ref = gtensor(p.batch, 1, p.heads, p.dv, cd->td->strided);
        gbuf o_be = gtensor(p.batch, 1, p.heads, p.dv, cd->td->strided);
        mirror ms;
        lla_inputs xd;
        double e;
        assert_int_equal(lla_decode_step(sc, &p, &s_ref.s, &x->x, o_ref.t), LLA_OK);
        mirror_init(&ms, be);
        xd = mirror_inputs(&ms, &p, &x->x);
        assert_int_equal(lla_decode_step(be, &p, &sd, &xd, mirror_gbuf(&ms, &o_be)), LLA_OK);
        mirror_get_all(&ms);
        mirror_free(&ms);
        e = rel_err(&p, &o_be.t, &o_ref.t, p.heads, p.dv);
        if (!(e <= worst)) worst = e;
        if (!(e <= TOL_F32)) fail_msg("%s: decode step %lld rel err %g", label, (long long)step, e);
        gtensor_check(&o_be, label);
        gfree(&o_ref);
        gfree(&o_be);
        td_free(x);
    }
    mirror_get_all(&m);
    mirror_free(&m);
    state_check_guard(&s_be, label);
    check_err(label, "decode 9 steps, worst o", worst, TOL_F32);
    check_err(label, "decode final state", state_err(&s_be, &s_ref, label), TOL_F32);
    state_free(&s_ref);
    state_free(&s_be);
}

/* A state of random values in every level (empty levels too: they must not matter). */
static gstate random_state(const lla_problem *p, uint64_t seed) {
    gstate s = state_new(p);
    float *v = (float *)((char *)s.s.memory + lla_state_values_offset(p->batch));
    test_rng r;
    size_t i, n = state_count(&s.s);
    r.s = seed;
    for (i = 0; i < n; ++i) v[i] = (float)rng_uniform(&r, -1.0, 1.0);
    return s;
}

typedef struct gradset {
    gbuf b[6];
    lla_grads g;
} gradset;

static const char *const grad_names[6] = {"dq", "dk", "dv", "dg", "dlambda", "dbeta"};

static void grads_new(gradset *gs, const casedata *cd) {
    const lla_problem *p = &cd->p;
    const int64_t dims[6][2] = {{p->qk_heads, p->dk}, {p->qk_heads, p->dk},  {p->heads, p->dv},
                                {p->heads, 1},        {p->heads, p->levels}, {p->heads, 1}};
    int i;
    for (i = 0; i < 6; ++i)
        gs->b[i] = gtensor(cd->bt, p->seqlen, dims[i][0], dims[i][1], cd->td->strided);
    gs->g.dq = gs->b[0].t, gs->g.dk = gs->b[1].t, gs->g.dv = gs->b[2].t;
    gs->g.dg = gs->b[3].t, gs->g.dlambda = gs->b[4].t, gs->g.dbeta = gs->b[5].t;
}

static void grads_free(gradset *gs) {
    int i;
    for (i = 0; i < 6; ++i) gfree(&gs->b[i]);
}

static void backward_poisoned(lla_backend *be, const casedata *cd, const test_data *dod,
                              gstate *init, gstate *d_final, gradset *gs, gstate *d_initial,
                              int poison, const char *label) {
    size_t ws = 0, i;
    unsigned char *w;
    mirror m;
    lla_inputs xd, dd;
    lla_grads gd;
    lla_state si, sf, sdi;
    void *wd;
    assert_int_equal(lla_backward_workspace(be, &cd->p, LLA_DTYPE_F32, &ws), LLA_OK);
    w = (unsigned char *)malloc(ws + GUARD);
    assert_non_null(w);
    memset(w, poison, ws);
    memset(w + ws, FILL, GUARD);
    mirror_init(&m, be);
    xd = mirror_inputs(&m, &cd->p, &cd->td->x);
    dd = mirror_inputs(&m, &cd->p, &dod->x); /* d_o is its v */
    gd.dq = mirror_gbuf(&m, &gs->b[0]), gd.dk = mirror_gbuf(&m, &gs->b[1]);
    gd.dv = mirror_gbuf(&m, &gs->b[2]), gd.dg = mirror_gbuf(&m, &gs->b[3]);
    gd.dlambda = mirror_gbuf(&m, &gs->b[4]), gd.dbeta = mirror_gbuf(&m, &gs->b[5]);
    if (init) si = mirror_state(&m, init);
    if (d_final) sf = mirror_state(&m, d_final);
    if (d_initial) sdi = mirror_state(&m, d_initial);
    wd = mirror_put(&m, w, ws + GUARD);
    assert_int_equal(lla_backward(be, &cd->p, &xd, dd.v, init ? &si : NULL, d_final ? &sf : NULL,
                                  &gd, d_initial ? &sdi : NULL, ws ? wd : NULL, ws),
                     LLA_OK);
    mirror_get_all(&m);
    mirror_free(&m);
    for (i = 0; i < GUARD; ++i)
        if (w[ws + i] != FILL) fail_msg("%s: backward wrote past the workspace", label);
    free(w);
}

/* Gradients against scalar, without states and (when the case has one) from an initial
 * state with a random d_final, d_initial compared too, then again with d_initial ==
 * d_final.  Two poisons of the workspace must give bit-identical gradients. */
static void run_backward_pair(lla_backend *be, lla_backend *sc, const casedata *cd, gstate *init,
                              const char *label) {
    const lla_problem *p = &cd->p;
    const int64_t dims[6][2] = {{p->qk_heads, p->dk}, {p->qk_heads, p->dk},  {p->heads, p->dv},
                                {p->heads, 1},        {p->heads, p->levels}, {p->heads, 1}};
    gradset ref, got, again;
    gstate dfin, di_ref, di_be, alias;
    test_data *dod;
    int i, same = 1;
    char what[64];
    if (be->own->backward == NULL) {
        print_message("    %-58s %-30s SKIPPED: %s has no backward of its own (the registry's "
                      "scalar fallback would be compared with itself)\n",
                      label, "backward", lla_backend_name(be));
        return;
    }
    if (!supported(sc, p, LLA_OP_BACKWARD, label, "backward (scalar reference)") ||
        !supported(be, p, LLA_OP_BACKWARD, label, "backward"))
        return;
    dod = td_create(p, NULL, LLA_DTYPE_F32, cd->td->strided, cd->td->p.seqlen + 555u);
    memset(&dfin, 0, sizeof dfin);
    memset(&di_ref, 0, sizeof di_ref);
    memset(&di_be, 0, sizeof di_be);
    if (init) {
        dfin = random_state(p, cd->td->p.seqlen + 777u);
        di_ref = state_new(p);
        di_be = state_new(p);
    }
    grads_new(&ref, cd);
    grads_new(&got, cd);
    grads_new(&again, cd);
    backward_poisoned(sc, cd, dod, init, init ? &dfin : NULL, &ref, init ? &di_ref : NULL, 0xff,
                      label);
    backward_poisoned(be, cd, dod, init, init ? &dfin : NULL, &got, init ? &di_be : NULL, 0xff,
                      label);
    backward_poisoned(be, cd, dod, init, init ? &dfin : NULL, &again, NULL, FILL, label);
    for (i = 0; i < 6; ++i) {
        double e;
        if (i == 5 && p->variant != LLA_VARIANT_GDN) continue;
        snprintf(what, sizeof what, "backward%s %s", init ? " (states)" : "", grad_names[i]);
        e = rel_err(p, &got.b[i].t, &ref.b[i].t, dims[i][0], dims[i][1]);
        same &= e == 0.0;
        check_err(label, what, e, TOL_GRAD_F32);
        gtensor_check(&got.b[i], label);
        /* bit for bit, except dq / dk of grouped heads: a backend may sum the heads of a
         * group in any order (openmp: per-thread accumulators, dynamic schedule) */
        if (i < 2 && p->qk_heads < p->heads) {
            double e2 = rel_err(p, &again.b[i].t, &ref.b[i].t, dims[i][0], dims[i][1]);
            if (!(e2 <= TOL_GRAD_F32))
                fail_msg("%s: backward %s with another workspace poison: rel err %g", label,
                         grad_names[i], e2);
        } else if (memcmp(got.b[i].raw, again.b[i].raw, got.b[i].body + 2 * GUARD) != 0) {
            fail_msg("%s: backward %s depends on the workspace contents or is not deterministic",
                     label, grad_names[i]);
        }
    }
    if (same)
        print_message("    %-58s %-30s (bit-identical to scalar: %s ran the scalar path)\n", label,
                      "backward", lla_backend_name(be));
    if (init) {
        check_err(label, "backward d_initial", state_err(&di_be, &di_ref, label), TOL_GRAD_F32);
        state_check_guard(&di_be, label);
        /* d_initial in the same block as d_final */
        alias = state_clone(p, &dfin);
        grads_free(&again);
        grads_new(&again, cd);
        backward_poisoned(be, cd, dod, init, &alias, &again, &alias, 0xff, label);
        check_err(label, "backward d_initial == d_final", state_err(&alias, &di_ref, label),
                  TOL_GRAD_F32);
        state_free(&alias);
        state_free(&dfin);
        state_free(&di_ref);
        state_free(&di_be);
    }
    grads_free(&ref);
    grads_free(&got);
    grads_free(&again);
    td_free(dod);
}

static void test_case(void **state) {
    const job *j = (const job *)*state;
    lla_backend *be = open_target(j->tg), *sc = NULL;
    casedata cd;
    gstate s0;
    assert_int_equal(lla_backend_open("scalar", &sc), LLA_OK);
    case_setup(j->dc, &cd);
    if (supported(be, &cd.p, LLA_OP_FORWARD, j->label, "forward")) {
        run_forward_pair(be, sc, &cd, NULL, 0, 0, j->label, "forward");
        run_forward_pair(be, sc, &cd, NULL, 1, 0, j->label, "forward+final");
        if (cd.has_state) {
            s0 = prefill(sc, &cd);
            run_forward_pair(be, sc, &cd, &s0, 1, 0, j->label, "from state+final");
            run_forward_pair(be, sc, &cd, &s0, 0, 0, j->label, "from state");
            run_forward_pair(be, sc, &cd, &s0, 1, 1, j->label, "from state, in place");
            {
                lla_problem one = cd.p;
                one.seq_offsets = NULL;
                one.seqlen = 1;
                if (supported(be, &one, LLA_OP_DECODE, j->label, "decode"))
                    run_decode_pair(be, sc, &cd, &s0, j->label);
            }
            run_backward_pair(be, sc, &cd, &s0, j->label);
            state_free(&s0);
        }
    }
    if (!cd.has_state) {
        lla_problem one = cd.p;
        one.seq_offsets = NULL;
        one.seqlen = 1;
        if (supported(be, &one, LLA_OP_DECODE, j->label, "decode"))
            run_decode_pair(be, sc, &cd, NULL, j->label);
    }
    run_backward_pair(be, sc, &cd, NULL, j->label);
    case_free(&cd);
    lla_backend_close(be);
    lla_backend_close(sc);
}

/* ------------------------------------------------------------------ golden files */

static lla_tensor golden_f32(const golden_tensor *t, int64_t T, int64_t heads, int64_t dim,
                             void **keep) {
    float *f = (float *)malloc((size_t)t->count * sizeof *f);
    int64_t i;
    assert_non_null(f);
    for (i = 0; i < t->count; ++i) f[i] = (float)t->data[i];
    *keep = f;
    return lla_tensor_contiguous(f, LLA_DTYPE_F32, T, heads, dim);
}

static const golden_tensor *need(const golden_case *c, const char *name) {
    const golden_tensor *t = golden_get(c, name);
    if (!t) fail_msg("%s: golden tensor %s missing", c->name, name);
    return t;
}

static double err_vs(const float *a, const double *ref, size_t n) {
    double *d = (double *)malloc(n * sizeof *d), e;
    size_t i;
    assert_non_null(d);
    for (i = 0; i < n; ++i) d[i] = a[i];
    e = rel_err_plain(d, ref, n);
    free(d);
    return e;
}

static void test_golden(void **state) {
    const job *j = (const job *)*state;
    lla_backend *be = open_target(j->tg);
    char path[1024];
    golden_case *c;
    lla_problem p;
    lla_inputs x;
    void *keep[6];
    const golden_tensor *o_ref, *st_ref, *beta;
    gbuf o;
    gstate fin;
    int64_t t;
    int i;
    snprintf(path, sizeof path, "%s/%s", golden_dir(), j->golden);
    c = golden_load(path);
    assert_non_null(c);
    lla_problem_init(&p, c->variant, c->hierarchy, c->B, c->T, c->H, c->H, c->K, c->V);
    p.levels = c->NL;
    x.q = golden_f32(need(c, "q"), c->T, c->H, c->K, &keep[0]);
    x.k = golden_f32(need(c, "k"), c->T, c->H, c->K, &keep[1]);
    x.v = golden_f32(need(c, "v"), c->T, c->H, c->V, &keep[2]);
    x.g = golden_f32(need(c, "g"), c->T, c->H, 1, &keep[3]);
    x.lambda = golden_f32(need(c, "lambda"), c->T, c->H, c->NL, &keep[4]);
    beta = golden_get(c, "beta");
    keep[5] = NULL;
    x.beta = beta ? golden_f32(beta, c->T, c->H, 1, &keep[5]) : x.g;
    o_ref = need(c, "o");
    st_ref = need(c, "state");
    if (supported(be, &p, LLA_OP_FORWARD, j->label, "forward")) {
        o = gtensor(c->B, c->T, c->H, c->V, 0);
        fin = state_new(&p);
        assert_int_equal(forward_poisoned(be, &p, &x, &o, NULL, &fin, 0xff, j->label), LLA_OK);
        check_err(j->label, "forward o vs golden o",
                  err_vs((const float *)o.t.data, o_ref->data, (size_t)o_ref->count), TOL_F32);
        check_err(j->label, "final state vs golden state",
                  err_vs((const float *)((char *)fin.s.memory + lla_state_values_offset(c->B)),
                         st_ref->data, (size_t)st_ref->count),
                  TOL_F32);
        gtensor_check(&o, j->label);
        gfree(&o);
        state_free(&fin);
    }
    {
        lla_problem one = p;
        one.seqlen = 1;
        if (supported(be, &one, LLA_OP_DECODE, j->label, "decode")) {
            mirror m;
            lla_inputs xd;
            lla_tensor od;
            lla_state sd;
            o = gtensor(c->B, c->T, c->H, c->V, 0);
            fin = state_new(&one);
            mirror_init(&m, be);
            xd = mirror_inputs(&m, &p, &x);
            od = mirror_gbuf(&m, &o);
            sd = mirror_state(&m, &fin);
            for (t = 0; t < c->T; ++t) {
                lla_inputs xt = xd;
                lla_tensor ot = od;
                lla_tensor *ts[6];
                ts[0] = &xt.q, ts[1] = &xt.k, ts[2] = &xt.v, ts[3] = &xt.g, ts[4] = &xt.lambda;
                ts[5] = &xt.beta;
                for (i = 0; i < 6; ++i)
                    ts[i]->data =
                        (char *)ts[i]->data + (size_t)(t * ts[i]->strides[1]) * sizeof(float);
                ot.data = (char *)ot.data + (size_t)(t * ot.strides[1]) * sizeof(float);
                assert_int_equal(lla_decode_step(be, &one, &sd, &xt, ot), LLA_OK);
            }
            mirror_get_all(&m);
            mirror_free(&m);
            check_err(j->label, "decode o vs golden o",
                      err_vs((const float *)o.t.data, o_ref->data, (size_t)o_ref->count), TOL_F32);
            check_err(j->label, "decode state vs golden state",
                      err_vs((const float *)((char *)fin.s.memory + lla_state_values_offset(c->B)),
                             st_ref->data, (size_t)st_ref->count),
                      TOL_F32);
            gfree(&o);
            state_free(&fin);
        }
    }
    for (i = 0; i < 6; ++i) free(keep[i]);
    golden_free(c);
    lla_backend_close(be);
}

/* ------------------------------------------------------------------ main */

/* LLA_DIFF_ONLY=name restricts the run to one backend (the baseline-ISA run of openmp). */
static void find_targets(void) {
    int i, n = lla_backend_count();
    const char *only = getenv("LLA_DIFF_ONLY");
    g_ntargets = 0;
    for (i = 0; i < n; ++i) {
        lla_backend_info info;
        assert_int_equal(lla_backend_info_get(i, &info), LLA_OK);
        if (strcmp(info.name, "scalar") == 0) continue;
        if (only && only[0] && strcmp(info.name, only) != 0) {
            printf("[ SKIPPED  ] backend %s: LLA_DIFF_ONLY=%s\n", info.name, only);
            continue;
        }
        if (!info.usable) {
            printf("[ SKIPPED  ] backend %s: not usable here (%s)\n", info.name, info.reason);
            continue;
        }
        {
            lla_backend *be = NULL;
            if (lla_backend_open(info.name, &be) == LLA_OK) {
                printf("[ BACKEND  ] %s: %s\n", info.name, lla_backend_description(be));
                lla_backend_close(be);
            }
        }
        if (strcmp(info.name, "openmp") == 0) {
            int t;
            for (t = 1; t <= 3 && g_ntargets < MAX_TARGETS; ++t) {
                snprintf(g_targets[g_ntargets].backend, sizeof g_targets[0].backend, "%.31s",
                         info.name);
                g_targets[g_ntargets++].threads = t;
            }
        } else if (g_ntargets < MAX_TARGETS) {
            snprintf(g_targets[g_ntargets].backend, sizeof g_targets[0].backend, "%.31s",
                     info.name);
            g_targets[g_ntargets++].threads = 0;
        }
    }
}

int main(void) {
    char *golden[64];
    int ngolden, i, k, nt = 0, rc;
    job *jobs;
    struct CMUnitTest *tests;
    build_cases();
    if (lla_backend_open("scalar", &g_host) != LLA_OK) return 1;
    find_targets();
    ngolden = golden_list(golden_dir(), golden, 64);
    if (g_ntargets == 0) {
        printf("[ SKIPPED  ] no backend other than scalar is usable: nothing to compare\n");
        return 77;
    }
    jobs = (job *)calloc((size_t)g_ntargets * (size_t)(g_ncases + ngolden), sizeof *jobs);
    tests = (struct CMUnitTest *)calloc((size_t)g_ntargets * (size_t)(g_ncases + ngolden),
                                        sizeof *tests);
    if (!jobs || !tests) return 1;
    for (k = 0; k < g_ntargets; ++k) {
        char who[48];
        if (g_targets[k].threads)
            snprintf(who, sizeof who, "%.31s/%dt", g_targets[k].backend,
                     g_targets[k].threads % 100);
        else
            snprintf(who, sizeof who, "%.31s", g_targets[k].backend);
        for (i = 0; i < g_ncases; ++i, ++nt) {
            jobs[nt].tg = &g_targets[k];
            jobs[nt].dc = &g_cases[i];
            snprintf(jobs[nt].label, sizeof jobs[nt].label, "%.40s %.111s", who, g_cases[i].name);
            tests[nt].name = jobs[nt].label;
            tests[nt].test_func = test_case;
            tests[nt].initial_state = &jobs[nt];
        }
        for (i = 0; i < ngolden; ++i, ++nt) {
            jobs[nt].tg = &g_targets[k];
            snprintf(jobs[nt].golden, sizeof jobs[nt].golden, "%.120s", golden[i]);
            snprintf(jobs[nt].label, sizeof jobs[nt].label, "%.40s golden %.120s", who, golden[i]);
            tests[nt].name = jobs[nt].label;
            tests[nt].test_func = test_golden;
            tests[nt].initial_state = &jobs[nt];
        }
    }
    rc = _cmocka_run_group_tests("diff", tests, (size_t)nt, NULL, NULL);
    for (i = 0; i < ngolden; ++i) free(golden[i]);
    free(jobs);
    free(tests);
    lla_backend_close(g_host);
    return rc;
}
