/* test_backward_state.c - gradients with an initial state (d_initial) and a final-state
 * gradient (d_final).
 *
 * 1. Central finite differences of L = sum(o * d_o) + <d_final, final state> through the
 *    scalar forward, for every input element and every value of the initial state.
 * 2. Splitting a sequence into pieces must not change the gradients: the pieces are run
 *    forward one after the other (each piece's final state is the next one's initial
 *    state), then backward in reverse order (each piece's d_initial is the previous one's
 *    d_final); the assembled token gradients must equal the float64 oracle gradients of
 *    the unsplit problem.  This checks d_initial and d_final against the oracle, with
 *    unaligned cut points, zero-length pieces, varlen, strided views, both hierarchies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bwutil.h"
#include "internal.h"

static lla_backend *scalar_backend(void) {
    lla_backend *be;
    assert_int_equal(lla_backend_open("scalar", &be), LLA_OK);
    return be;
}

/* Scalar forward of td into o, from initial (may be NULL) to final (may be NULL). */
static void run_forward(lla_backend *be, test_data *td, lla_tensor o, const lla_state *initial,
                        lla_state *final, void *ws, size_t ws_bytes) {
    lla_status st = lla_forward(be, &td->p, &td->x, o, initial, final, ws, ws_bytes);
    if (st != LLA_OK) fail_msg("lla_forward: %s: %s", lla_status_str(st), lla_last_error());
}

static size_t forward_ws(lla_backend *be, const lla_problem *p, lla_dtype dt) {
    size_t n;
    assert_int_equal(lla_forward_workspace(be, p, dt, &n), LLA_OK);
    return n;
}

/* ---------------------------------------------------------------- finite differences */

typedef struct fd_ctx {
    lla_backend *be;
    test_data *td;
    lla_tensor o, d_o;
    lla_state initial, final;
    const double *d_final; /* contiguous values */
    size_t nstate;
    void *ws;
    size_t ws_bytes;
} fd_ctx;

static double fd_loss(fd_ctx *c) {
    const lla_problem *p = &c->td->p;
    int64_t b, t, h, d;
    size_t i;
    double L = 0.0;
    const double *fin = (const double *)lla__state_values(&c->final);
    run_forward(c->be, c->td, c->o, &c->initial, &c->final, c->ws, c->ws_bytes);
    for (b = 0; b < td_tensor_batch(p); ++b)
        for (t = 0; t < p->seqlen; ++t)
            for (h = 0; h < p->heads; ++h)
                for (d = 0; d < p->dv; ++d)
                    L += lla__load(&c->o, b, t, h, d) * lla__load(&c->d_o, b, t, h, d);
    for (i = 0; i < c->nstate; ++i) L += fin[i] * c->d_final[i];
    return L;
}

static double fd_of(fd_ctx *c, double *x, double step) {
    double x0 = *x, lp, lm;
    *x = x0 + step;
    lp = fd_loss(c);
    *x = x0 - step;
    lm = fd_loss(c);
    *x = x0;
    return (lp - lm) / (2 * step);
}

static double fd_tensor_err(fd_ctx *c, lla_tensor *x, const lla_tensor *dx, int64_t heads,
                            int64_t dim, double step, const char *name) {
    const lla_problem *p = &c->td->p;
    int64_t b, t, h, d;
    double num = 0.0, den = 0.0, e;
    for (b = 0; b < td_tensor_batch(p); ++b)
        for (t = 0; t < p->seqlen; ++t)
            for (h = 0; h < heads; ++h)
                for (d = 0; d < dim; ++d) {
                    double *xp = (double *)x->data + lla__offset(x, b, t, h, d);
                    double fd = fd_of(c, xp, step), an = lla__load(dx, b, t, h, d);
                    if (an != an) return INFINITY;
                    num += (fd - an) * (fd - an);
                    den += fd * fd;
                }
    if (den == 0.0) fail_msg("gradient of %s is zero: the check would be vacuous", name);
    e = sqrt(num / den);
    print_message("      d%-8s fd rel err %.3g\n", name, e);
    return e;
}

typedef struct state_case {
    lla_variant variant;
    lla_hierarchy hierarchy;
    int64_t batch, T, heads, qk_heads, K, V, chunk;
    int64_t pos[3];
    int varlen, strided;
} state_case;

static void fd_case_run(const state_case *sc, uint64_t seed) {
    lla_backend *be = scalar_backend();
    lla_problem p;
    int64_t offsets[4] = {0, 0, 0, 0};
    fd_ctx c;
    lla_grads g;
    lla_state d_final, d_initial;
    double *init_vals, *d_init, worst = 0.0, num = 0.0, den = 0.0, e;
    size_t i;
    int64_t maxpos = 0, b;
    memset(&c, 0, sizeof c);
    lla_problem_init(&p, sc->variant, sc->hierarchy, sc->batch, sc->T, sc->heads, sc->qk_heads,
                     sc->K, sc->V);
    for (b = 0; b < sc->batch; ++b)
        if (sc->pos[b] > maxpos) maxpos = sc->pos[b];
    p.levels = lla_num_levels(maxpos + sc->T) + 1;
    p.chunk = sc->chunk;
    p.scale = 0.8;
    if (sc->varlen) { /* sequence 1 is empty, sequence 0 and 2 share the tokens */
        offsets[1] = sc->T / 2;
        offsets[2] = sc->T / 2;
        offsets[3] = sc->T;
    }
    c.be = be;
    c.td = td_create(&p, sc->varlen ? offsets : NULL, LLA_DTYPE_F64, sc->strided, seed);
    c.o = td_tensor(c.td, p.heads, p.dv, LLA_DTYPE_F64);
    c.d_o = bw_random_do(c.td, LLA_DTYPE_F64, seed + 1);
    /* Every stored value random, empty levels included: the forward ignores those, so
     * their gradient must come out zero (except where a zero-length sequence copies the
     * state through). */
    c.initial = bw_state(c.td, be, LLA_DTYPE_F64, sc->pos, seed + 2);
    c.final = bw_state(c.td, be, LLA_DTYPE_F64, NULL, 0);
    d_final = bw_state(c.td, be, LLA_DTYPE_F64, NULL, seed + 3);
    d_initial = bw_state(c.td, be, LLA_DTYPE_F64, NULL, 0);
    memset(lla__state_values(&d_initial), 0xff, c.initial.bytes - lla_state_values_offset(p.batch));
    c.d_final = bw_state_values(c.td, &d_final, &c.nstate);
    c.ws_bytes = forward_ws(be, &c.td->p, LLA_DTYPE_F64);
    c.ws = c.ws_bytes ? td_alloc(c.td, c.ws_bytes, 0) : NULL;
    g = bw_grads(c.td, LLA_DTYPE_F64);
    assert_int_equal(bw_scalar(be, c.td, c.d_o, &c.initial, &d_final, &g, &d_initial), LLA_OK);
    for (b = 0; b < sc->batch; ++b)
        assert_int_equal(lla__state_positions(&d_initial)[b], sc->pos[b]);
    print_message("case %s %s B %lld T %lld H %lld G %lld K %lld V %lld chunk %lld pos %lld %lld%s%s\n",
                  sc->variant == LLA_VARIANT_GDN ? "gdn" : "mamba2",
                  sc->hierarchy == LLA_HIERARCHY_STRONG ? "strong" : "weak", (long long)sc->batch,
                  (long long)sc->T, (long long)sc->heads, (long long)sc->qk_heads, (long long)sc->K,
                  (long long)sc->V, (long long)sc->chunk, (long long)sc->pos[0],
                  (long long)sc->pos[1], sc->varlen ? " varlen" : "", sc->strided ? " strided" : "");
#define CHECK(in, gr, hh, dd, nm)                                                        \
    do {                                                                                 \
        e = fd_tensor_err(&c, &c.td->x.in, &g.gr, hh, dd, 1e-5, nm);                     \
        if (!(e <= worst)) worst = e;                                                    \
    } while (0)
    CHECK(q, dq, p.qk_heads, p.dk, "q");
    CHECK(k, dk, p.qk_heads, p.dk, "k");
    CHECK(v, dv, p.heads, p.dv, "v");
    CHECK(g, dg, p.heads, 1, "g");
    CHECK(lambda, dlambda, p.heads, p.levels, "lambda");
    if (p.variant == LLA_VARIANT_GDN) CHECK(beta, dbeta, p.heads, 1, "beta");
#undef CHECK
    init_vals = (double *)lla__state_values(&c.initial);
    d_init = (double *)lla__state_values(&d_initial);
    for (i = 0; i < c.nstate; ++i) {
        double fd = fd_of(&c, &init_vals[i], 1e-5);
        if (d_init[i] != d_init[i]) fail_msg("d_initial[%zu] is NaN (not written)", i);
        num += (fd - d_init[i]) * (fd - d_init[i]);
        den += fd * fd;
        /* exact zeros must stay exact: empty levels are not part of the state */
        if (fd == 0.0 && d_init[i] != 0.0) fail_msg("d_initial[%zu] = %g, expected 0", i, d_init[i]);
    }
    if (den == 0.0) fail_msg("d_initial is zero: the check would be vacuous");
    e = sqrt(num / den);
    print_message("      d%-8s fd rel err %.3g\n", "initial", e);
    if (!(e <= worst)) worst = e;
    if (!(worst <= 1e-7)) fail_msg("gradients vs finite differences through the forward: %g", worst);
    td_free(c.td);
    lla_backend_close(be);
}

static void mamba2_state_gradients_match_finite_differences(void **state) {
    static const state_case cases[] = {
        {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 2, 9, 2, 1, 2, 2, 4, {5, 8, 0}, 0, 0},
        {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG, 2, 9, 2, 2, 2, 3, 4, {0, 13, 0}, 0, 1},
        {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 3, 10, 2, 1, 2, 2, 2, {3, 6, 11}, 1, 1},
        {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG, 1, 7, 1, 1, 3, 2, 0, {21, 0, 0}, 0, 0},
    };
    int i;
    (void)state;
    for (i = 0; i < (int)(sizeof cases / sizeof cases[0]); ++i) fd_case_run(&cases[i], 500 + (uint64_t)i);
}

static void gdn_state_gradients_match_finite_differences(void **state) {
    static const state_case cases[] = {
        {LLA_VARIANT_GDN, LLA_HIERARCHY_WEAK, 2, 9, 2, 1, 2, 2, 4, {5, 8, 0}, 0, 0},
        {LLA_VARIANT_GDN, LLA_HIERARCHY_STRONG, 2, 9, 2, 2, 3, 2, 4, {0, 13, 0}, 0, 1},
        {LLA_VARIANT_GDN, LLA_HIERARCHY_WEAK, 3, 10, 2, 1, 2, 2, 2, {3, 6, 11}, 1, 1},
        {LLA_VARIANT_GDN, LLA_HIERARCHY_STRONG, 1, 7, 1, 1, 3, 2, 0, {21, 0, 0}, 0, 0},
    };
    int i;
    (void)state;
    for (i = 0; i < (int)(sizeof cases / sizeof cases[0]); ++i) fd_case_run(&cases[i], 600 + (uint64_t)i);
}

/* ---------------------------------------------------------------- split == unsplit */

/* Piece [a_b, e_b) of every sequence of full, as a packed varlen problem. */
static test_data *extract(const test_data *full, const int64_t *a, const int64_t *e, lla_dtype dt,
                          int strided, uint64_t seed, const lla_tensor *d_o_full,
                          lla_tensor *d_o_piece) {
    const lla_problem *fp = &full->p;
    lla_problem p = *fp;
    int64_t off[TD_MAX_BATCH + 1], b, i, h, d;
    test_data *td;
    off[0] = 0;
    for (b = 0; b < fp->batch; ++b) off[b + 1] = off[b] + (e[b] - a[b]);
    p.seq_offsets = NULL;
    td = td_create(&p, off, dt, strided, seed);
    *d_o_piece = td_tensor(td, p.heads, p.dv, dt);
    for (b = 0; b < fp->batch; ++b) {
        int64_t ftb, fs, fe;
        lla__sequence(fp, b, &ftb, &fs, &fe);
        for (i = 0; i < e[b] - a[b]; ++i) {
            int64_t ft = fs + a[b] + i, pt = off[b] + i;
#define COPY(x, hh, dd)                                                                    \
    for (h = 0; h < (hh); ++h)                                                             \
        for (d = 0; d < (dd); ++d) lla__store(&td->x, 0, pt, h, d, lla__load(&full->x, ftb, ft, h, d))
            COPY(x.q, fp->qk_heads, fp->dk);
            COPY(x.k, fp->qk_heads, fp->dk);
            COPY(x.v, fp->heads, fp->dv);
            COPY(x.g, fp->heads, 1);
            COPY(x.lambda, fp->heads, fp->levels);
            COPY(x.beta, fp->heads, 1);
#undef COPY
            for (h = 0; h < fp->heads; ++h)
                for (d = 0; d < fp->dv; ++d)
                    lla__store(d_o_piece, 0, pt, h, d, lla__load(d_o_full, ftb, ft, h, d));
        }
    }
    return td;
}

/* Copies piece gradients back into full-layout F64 gradients. */
static void scatter(const test_data *full, const test_data *piece, const int64_t *a,
                    const int64_t *e, const lla_grads *pg, lla_grads *fg) {
    const lla_problem *fp = &full->p;
    int64_t b, i, h, d;
    for (b = 0; b < fp->batch; ++b) {
        int64_t ftb, fs, fe, off = piece->p.seq_offsets[b];
        lla__sequence(fp, b, &ftb, &fs, &fe);
        for (i = 0; i < e[b] - a[b]; ++i) {
            int64_t ft = fs + a[b] + i, pt = off + i;
#define PUT(f, hh, dd)                                                                     \
    for (h = 0; h < (hh); ++h)                                                             \
        for (d = 0; d < (dd); ++d) lla__store(&fg->f, ftb, ft, h, d, lla__load(&pg->f, 0, pt, h, d))
            PUT(dq, fp->qk_heads, fp->dk);
            PUT(dk, fp->qk_heads, fp->dk);
            PUT(dv, fp->heads, fp->dv);
            PUT(dg, fp->heads, 1);
            PUT(dlambda, fp->heads, fp->levels);
            if (fp->variant == LLA_VARIANT_GDN) PUT(dbeta, fp->heads, 1);
#undef PUT
        }
    }
}

typedef struct split_case {
    lla_variant variant;
    lla_hierarchy hierarchy;
    int64_t batch, T, heads, qk_heads, K, V, chunk;
    int varlen, strided;
    lla_dtype dtype;
} split_case;

#define NPIECES 3

static void split_case_run(const split_case *sc, uint64_t seed) {
    lla_backend *be = scalar_backend();
    lla_problem p;
    int64_t offsets[TD_MAX_BATCH + 1], cut[NPIECES + 1][TD_MAX_BATCH], b, k;
    test_data *full, *pieces[NPIECES];
    lla_tensor d_o, d_o_piece[NPIECES], o_piece;
    lla_grads ref, got;
    lla_state states[NPIECES], dstates[NPIECES]; /* states[k]: final of piece k */
    test_rng r;
    const char *worst;
    double err, tol = sc->dtype == LLA_DTYPE_F64 ? 1e-9 : 1e-4;
    r.s = seed;
    lla_problem_init(&p, sc->variant, sc->hierarchy, sc->batch, sc->T, sc->heads, sc->qk_heads, sc->K,
                     sc->V);
    p.chunk = sc->chunk;
    p.levels += 1;
    p.scale = 0.6;
    if (sc->varlen) {
        offsets[0] = 0;
        for (b = 0; b < sc->batch; ++b) offsets[b + 1] = offsets[b] + rng_int(&r, b ? 0 : 3, sc->T);
        p.seqlen = offsets[sc->batch];
        p.levels = lla_num_levels(sc->T) + 1;
    }
    full = td_create(&p, sc->varlen ? offsets : NULL, LLA_DTYPE_F64, sc->strided, seed);
    d_o = bw_random_do(full, LLA_DTYPE_F64, seed + 1);
    ref = bw_oracle(full, d_o);
    got = bw_grads(full, LLA_DTYPE_F64);
    /* cut points per sequence: 0 <= c1 <= c2 <= len, random (zero-length pieces happen),
     * redrawn until every piece holds a token somewhere (a problem needs seqlen >= 1) */
    for (b = 0; b < sc->batch; ++b) {
        int64_t tb, s0, s1, len, x1, x2;
        lla__sequence(&full->p, b, &tb, &s0, &s1);
        len = s1 - s0;
        x1 = rng_int(&r, 0, len);
        x2 = rng_int(&r, 0, len);
        cut[0][b] = 0;
        cut[1][b] = x1 < x2 ? x1 : x2;
        cut[2][b] = x1 < x2 ? x2 : x1;
        cut[3][b] = len;
        if (b == sc->batch - 1)
            for (k = 0; k < NPIECES; ++k) {
                int64_t total = 0, bb;
                for (bb = 0; bb < sc->batch; ++bb) total += cut[k + 1][bb] - cut[k][bb];
                if (total == 0) b = -1; /* redraw all */
            }
    }
    /* forward, piece after piece */
    for (k = 0; k < NPIECES; ++k) {
        size_t wsb;
        void *ws;
        pieces[k] = extract(full, cut[k], cut[k + 1], sc->dtype, sc->strided, seed + 10 + (uint64_t)k,
                            &d_o, &d_o_piece[k]);
        states[k] = bw_state(pieces[k], be, sc->dtype, NULL, 0);
        dstates[k] = bw_state(pieces[k], be, sc->dtype, NULL, 0);
        o_piece = td_tensor(pieces[k], p.heads, p.dv, sc->dtype);
        wsb = forward_ws(be, &pieces[k]->p, sc->dtype);
        ws = wsb ? td_alloc(pieces[k], wsb, 0) : NULL;
        run_forward(be, pieces[k], o_piece, k ? &states[k - 1] : NULL, &states[k], ws, wsb);
    }
    /* backward, last piece first; d_initial of piece k is d_final of piece k-1 */
    for (k = NPIECES - 1; k >= 0; --k) {
        lla_grads pg = bw_grads(pieces[k], sc->dtype);
        lla_status st = bw_scalar(be, pieces[k], d_o_piece[k], k ? &states[k - 1] : NULL,
                                  k + 1 < NPIECES ? &dstates[k + 1] : NULL, &pg,
                                  k ? &dstates[k] : NULL);
        if (st != LLA_OK) fail_msg("lla_backward piece %lld: %s: %s", (long long)k, lla_status_str(st),
                                   lla_last_error());
        scatter(full, pieces[k], cut[k], cut[k + 1], &pg, &got);
    }
    err = bw_grads_err(&full->p, &got, &ref, &worst);
    print_message("  %s %s %s B %lld T %lld H %lld G %lld K %lld V %lld chunk %lld%s%s: %.3g (%s)\n",
                  lla_dtype_name(sc->dtype), sc->variant == LLA_VARIANT_GDN ? "gdn" : "mamba2",
                  sc->hierarchy == LLA_HIERARCHY_STRONG ? "strong" : "weak", (long long)sc->batch,
                  (long long)full->p.seqlen, (long long)sc->heads, (long long)sc->qk_heads,
                  (long long)sc->K, (long long)sc->V, (long long)sc->chunk, sc->varlen ? " varlen" : "",
                  sc->strided ? " strided" : "", err, worst);
    if (!(err <= tol)) fail_msg("split backward vs oracle: %s rel err %g > %g", worst, err, tol);
    for (k = 0; k < NPIECES; ++k) td_free(pieces[k]);
    td_free(full);
    lla_backend_close(be);
}

static void split(lla_variant variant) {
    static const split_case shapes[] = {
        {0, LLA_HIERARCHY_WEAK, 2, 40, 2, 1, 3, 2, 8, 0, 0, LLA_DTYPE_F64},
        {0, LLA_HIERARCHY_STRONG, 2, 40, 2, 2, 2, 3, 8, 0, 1, LLA_DTYPE_F64},
        {0, LLA_HIERARCHY_WEAK, 4, 30, 2, 1, 3, 3, 4, 1, 1, LLA_DTYPE_F64},
        {0, LLA_HIERARCHY_STRONG, 4, 30, 4, 2, 2, 2, 4, 1, 0, LLA_DTYPE_F64},
        {0, LLA_HIERARCHY_WEAK, 2, 70, 2, 1, 4, 3, 16, 0, 1, LLA_DTYPE_F32},
        {0, LLA_HIERARCHY_STRONG, 3, 50, 2, 1, 3, 4, 0, 1, 0, LLA_DTYPE_F32},
        {0, LLA_HIERARCHY_WEAK, 1, 90, 1, 1, 2, 2, 1, 0, 0, LLA_DTYPE_F64},
    };
    int i, rep;
    for (rep = 0; rep < 2; ++rep)
        for (i = 0; i < (int)(sizeof shapes / sizeof shapes[0]); ++i) {
            split_case sc = shapes[i];
            sc.variant = variant;
            split_case_run(&sc, 7000 + (uint64_t)(100 * rep + 10 * i + (int)variant));
        }
}

/* ---------------------------------------------------------------- aliasing */

/* d_initial may be the very block of initial or of d_final: same results, bit for bit. */
static void aliased_state_blocks(lla_variant variant) {
    lla_backend *be = scalar_backend();
    lla_problem p;
    int64_t offsets[4] = {0, 9, 9, 20}, pos[3] = {5, 12, 2};
    test_data *td;
    lla_tensor d_o;
    lla_grads ref, g1;
    lla_state initial, d_final, d_initial, alias;
    size_t n, i;
    double *want, *got;
    const char *worst;
    lla_problem_init(&p, variant, LLA_HIERARCHY_STRONG, 3, 20, 2, 1, 3, 2);
    p.levels = 7;
    p.chunk = 4;
    td = td_create(&p, offsets, LLA_DTYPE_F64, 0, 900);
    d_o = bw_random_do(td, LLA_DTYPE_F64, 901);
    initial = bw_state(td, be, LLA_DTYPE_F64, pos, 902);
    d_final = bw_state(td, be, LLA_DTYPE_F64, NULL, 903);
    d_initial = bw_state(td, be, LLA_DTYPE_F64, NULL, 0);
    ref = bw_grads(td, LLA_DTYPE_F64);
    assert_int_equal(bw_scalar(be, td, d_o, &initial, &d_final, &ref, &d_initial), LLA_OK);
    want = bw_state_values(td, &d_initial, &n);
    /* d_initial written into d_final's block */
    alias = bw_state(td, be, LLA_DTYPE_F64, NULL, 903); /* same values as d_final */
    g1 = bw_grads(td, LLA_DTYPE_F64);
    assert_int_equal(bw_scalar(be, td, d_o, &initial, &alias, &g1, &alias), LLA_OK);
    got = bw_state_values(td, &alias, &n);
    for (i = 0; i < n; ++i)
        if (got[i] != want[i]) fail_msg("d_initial aliasing d_final differs at %zu", i);
    assert_true(bw_grads_err(&td->p, &g1, &ref, &worst) == 0.0);
    /* d_initial written into initial's block */
    alias = bw_state(td, be, LLA_DTYPE_F64, pos, 902); /* same values as initial */
    memset(g1.dq.data, 0xff, 8); /* reuse g1 (td holds at most TD_MAX_TENSORS buffers) */
    assert_int_equal(bw_scalar(be, td, d_o, &alias, &d_final, &g1, &alias), LLA_OK);
    got = bw_state_values(td, &alias, &n);
    for (i = 0; i < n; ++i)
        if (got[i] != want[i]) fail_msg("d_initial aliasing initial differs at %zu", i);
    for (i = 0; i < 3; ++i) assert_int_equal(lla__state_positions(&alias)[i], pos[i]);
    assert_true(bw_grads_err(&td->p, &g1, &ref, &worst) == 0.0);
    td_free(td);
    lla_backend_close(be);
}

static void mamba2_aliased_state_blocks(void **state) { (void)state; aliased_state_blocks(LLA_VARIANT_MAMBA2); }
static void gdn_aliased_state_blocks(void **state) { (void)state; aliased_state_blocks(LLA_VARIANT_GDN); }

static void mamba2_split_sequences_match_oracle(void **state) { (void)state; split(LLA_VARIANT_MAMBA2); }
static void gdn_split_sequences_match_oracle(void **state) { (void)state; split(LLA_VARIANT_GDN); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mamba2_state_gradients_match_finite_differences),
        cmocka_unit_test(gdn_state_gradients_match_finite_differences),
        cmocka_unit_test(mamba2_split_sequences_match_oracle),
        cmocka_unit_test(gdn_split_sequences_match_oracle),
        cmocka_unit_test(mamba2_aliased_state_blocks),
        cmocka_unit_test(gdn_aliased_state_blocks),
    };
    return cmocka_run_group_tests_name("backward_state", tests, NULL, NULL);
}
