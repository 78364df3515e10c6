/*
 * test_mask.c - the structured mask M[t,s] = lambda[t, level(t,s)] exp(G_t - G_s):
 * dense materializations against their definitions, the O(T log T) product
 * lla_mask_apply against a dense M x, its validation, and the SPEC 2.6 worked examples
 * through the float64 oracle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "lla.h"
#include "levels_ref.h"
#include "testutil.h"

static const lla_hierarchy hierarchies[2] = {LLA_HIERARCHY_WEAK, LLA_HIERARCHY_STRONG};
static const char *hname(lla_hierarchy h) { return h == LLA_HIERARCHY_WEAK ? "weak" : "strong"; }

static double *alloc_doubles(size_t n) {
    double *p = (double *)malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    return p;
}

/* Random log gates in [-0.3, -0.01] and lambda in [0.5, 1.5]. */
static void random_inputs(test_rng *r, int64_t T, int64_t NL, double *g, double *lambda) {
    int64_t i;
    for (i = 0; i < T; ++i) g[i] = rng_uniform(r, -0.3, -0.01);
    for (i = 0; i < T * NL; ++i) lambda[i] = rng_uniform(r, 0.5, 1.5);
}

/* M[t][s] from the definitions: brute-force level, and the decay as a product of the
 * linear gates a_r = exp(g_r) for r in (s, t]. */
static void reference_mask(lla_hierarchy h, int64_t T, const double *g, const double *lambda,
                           int64_t NL, double *M) {
    int64_t t, s;
    for (t = 0; t < T; ++t) {
        double decay = 1.0;
        for (s = T - 1; s > t; --s) M[t * T + s] = 0.0;
        for (s = t; s >= 0; --s) {
            M[t * T + s] = lambda[t * NL + ref_level(h, t, s)] * decay;
            decay *= exp(g[s]);
        }
    }
}

static void dense_matrices_match_definitions(void **state) {
    static const int64_t sizes[] = {1, 2, 7, 16, 33, 100};
    size_t i;
    int hi;
    test_rng r = {11};
    (void)state;
    for (hi = 0; hi < 2; ++hi) {
        lla_hierarchy h = hierarchies[hi];
        for (i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
            int64_t T = sizes[i], NL = lla_num_levels(T) + 1, t, s;
            double *g = alloc_doubles((size_t)T), *lambda = alloc_doubles((size_t)(T * NL));
            double *out = alloc_doubles((size_t)(T * T)), *ref = alloc_doubles((size_t)(T * T));
            int64_t *levels = (int64_t *)malloc((size_t)(T * T) * sizeof *levels);
            assert_non_null(levels);
            random_inputs(&r, T, NL, g, lambda);

            assert_int_equal(lla_mask_levels_dense(h, T, levels), LLA_OK);
            for (t = 0; t < T; ++t)
                for (s = 0; s < T; ++s)
                    assert_int_equal(levels[t * T + s], s <= t ? ref_level(h, t, s) : 0);

            assert_int_equal(lla_mask_lambda_dense(h, T, lambda, NL, out), LLA_OK);
            for (t = 0; t < T; ++t)
                for (s = 0; s < T; ++s)
                    assert_true(out[t * T + s] ==
                                (s <= t ? lambda[t * NL + ref_level(h, t, s)] : 0.0));

            assert_int_equal(lla_mask_decay_dense(T, g, out), LLA_OK);
            for (t = 0; t < T; ++t)
                for (s = 0; s < T; ++s) {
                    double want = 0.0;
                    int64_t k;
                    if (s <= t) {
                        want = 1.0;
                        for (k = s + 1; k <= t; ++k) want *= exp(g[k]);
                    }
                    if (want == 0.0) assert_true(out[t * T + s] == 0.0);
                    else assert_true(fabs(out[t * T + s] - want) <= 1e-13 * want);
                }

            reference_mask(h, T, g, lambda, NL, ref);
            assert_int_equal(lla_mask_dense(h, T, g, lambda, NL, out), LLA_OK);
            {
                double err = rel_err_plain(out, ref, (size_t)(T * T));
                if (!(err <= 1e-13)) fail_msg("%s T=%lld: mask rel err %g", hname(h), (long long)T, err);
            }
            free(g); free(lambda); free(out); free(ref); free(levels);
        }
    }
}

/* SPEC 2.6: H matrix of the Mamba-2 example (weak), a = (0.9, 0.8, 0.7, 0.6), lambda = l+1. */
static void dense_mask_spec_example(void **state) {
    static const double want[16] = {1, 0, 0, 0, 1.6, 1, 0, 0, 1.68, 2.1, 1, 0, 1.008, 1.26, 1.2, 1};
    double g[4], lambda[12], out[16];
    int i;
    (void)state;
    g[0] = log(0.9); g[1] = log(0.8); g[2] = log(0.7); g[3] = log(0.6);
    for (i = 0; i < 12; ++i) lambda[i] = (double)(i % 3 + 1);
    assert_int_equal(lla_mask_dense(LLA_HIERARCHY_WEAK, 4, g, lambda, 3, out), LLA_OK);
    for (i = 0; i < 16; ++i) assert_true(fabs(out[i] - want[i]) <= 1e-14);
}

/* lla_mask_apply against the dense product M x for both hierarchies. */
static void apply_matches_dense(void **state) {
    static const int64_t sizes[] = {1, 2, 7, 64, 65, 1000};
    static const int64_t widths[] = {1, 3};
    size_t i, j;
    int hi;
    test_rng r = {2025};
    (void)state;
    for (hi = 0; hi < 2; ++hi) {
        lla_hierarchy h = hierarchies[hi];
        for (i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
            for (j = 0; j < 2; ++j) {
                int64_t T = sizes[i], n = widths[j], NL = lla_num_levels(T) + (int64_t)j, t, s, d;
                double *g = alloc_doubles((size_t)T), *lambda = alloc_doubles((size_t)(T * NL));
                double *M = alloc_doubles((size_t)(T * T)), *x = alloc_doubles((size_t)(T * n));
                double *y = alloc_doubles((size_t)(T * n)), *ref = alloc_doubles((size_t)(T * n));
                size_t ws_bytes = lla_mask_apply_workspace(T, NL, n);
                void *ws;
                double err;
                assert_true(ws_bytes > 0);
                ws = malloc(ws_bytes);
                assert_non_null(ws);
                memset(ws, 0xa5, ws_bytes); /* the sweep must not rely on zeroed scratch */
                random_inputs(&r, T, NL, g, lambda);
                for (d = 0; d < T * n; ++d) x[d] = rng_uniform(&r, -1.0, 1.0);
                reference_mask(h, T, g, lambda, NL, M);
                for (t = 0; t < T; ++t)
                    for (d = 0; d < n; ++d) {
                        double acc = 0.0;
                        for (s = 0; s <= t; ++s) acc += M[t * T + s] * x[s * n + d];
                        ref[t * n + d] = acc;
                    }
                assert_int_equal(lla_mask_apply(h, T, g, lambda, NL, x, n, y, ws, ws_bytes), LLA_OK);
                err = rel_err_plain(y, ref, (size_t)(T * n));
                print_message("mask_apply %-6s T=%-5lld n=%lld NL=%-2lld rel err %.3g\n", hname(h),
                              (long long)T, (long long)n, (long long)NL, err);
                if (!(err <= 1e-13)) fail_msg("%s T=%lld n=%lld: rel err %g", hname(h), (long long)T,
                                              (long long)n, err);
                /* In place: y may be the same array as x. */
                assert_int_equal(lla_mask_apply(h, T, g, lambda, NL, x, n, x, ws, ws_bytes), LLA_OK);
                assert_memory_equal(x, y, (size_t)(T * n) * sizeof *x);
                free(g); free(lambda); free(M); free(x); free(y); free(ref); free(ws);
            }
        }
    }
}

/* Long sequences, where a dense M is out of reach.  With lambda == 1 the hierarchy drops
 * out and y is the linear recurrence y_t = a_t y_{t-1} + x_t; with g == 0 as well and
 * integer x, y is the exact prefix sum.  Long cumulative gate sums (here about -1e4)
 * would wipe out the result if the product differenced them. */
static void apply_long_sequences(void **state) {
    const int64_t T = (1 << 17) + 3, NL = lla_num_levels(T);
    double *g = alloc_doubles((size_t)T), *lambda = alloc_doubles((size_t)(T * NL));
    double *x = alloc_doubles((size_t)T), *y = alloc_doubles((size_t)T), *ref = alloc_doubles((size_t)T);
    size_t ws_bytes = lla_mask_apply_workspace(T, NL, 1);
    void *ws = malloc(ws_bytes);
    int64_t t;
    int hi;
    test_rng r = {7};
    (void)state;
    assert_non_null(ws);
    for (t = 0; t < T * NL; ++t) lambda[t] = 1.0;
    for (hi = 0; hi < 2; ++hi) {
        lla_hierarchy h = hierarchies[hi];
        double err;
        /* exact prefix sums */
        for (t = 0; t < T; ++t) { g[t] = 0.0; x[t] = (double)(t % 7) - 3.0; }
        for (t = 0; t < T; ++t) ref[t] = (t ? ref[t - 1] : 0.0) + x[t];
        assert_int_equal(lla_mask_apply(h, T, g, lambda, NL, x, 1, y, ws, ws_bytes), LLA_OK);
        assert_memory_equal(y, ref, (size_t)T * sizeof *y);
        /* gated recurrence */
        for (t = 0; t < T; ++t) { g[t] = rng_uniform(&r, -0.15, -0.01); x[t] = rng_uniform(&r, -1, 1); }
        for (t = 0; t < T; ++t) ref[t] = (t ? exp(g[t]) * ref[t - 1] : 0.0) + x[t];
        assert_int_equal(lla_mask_apply(h, T, g, lambda, NL, x, 1, y, ws, ws_bytes), LLA_OK);
        err = rel_err_plain(y, ref, (size_t)T);
        print_message("mask_apply %-6s T=%lld lambda=1: rel err vs recurrence %.3g\n", hname(h),
                      (long long)T, err);
        if (!(err <= 1e-12)) fail_msg("%s: rel err %g", hname(h), err);
    }
    free(g); free(lambda); free(x); free(y); free(ref); free(ws);
}

/* One level at a time: lambda = indicator of level L picks out exactly M's level-L part. */
static void apply_single_levels(void **state) {
    const int64_t T = 300, NL = lla_num_levels(T);
    double g[300], lambda[300 * 10], x[300], y[300], ref[300];
    size_t ws_bytes = lla_mask_apply_workspace(T, NL, 1);
    void *ws = malloc(ws_bytes);
    int64_t L, t, s;
    int hi;
    test_rng r = {99};
    (void)state;
    assert_true(NL <= 10);
    assert_non_null(ws);
    for (t = 0; t < T; ++t) { g[t] = rng_uniform(&r, -0.2, 0.0); x[t] = rng_uniform(&r, -1, 1); }
    for (hi = 0; hi < 2; ++hi) {
        lla_hierarchy h = hierarchies[hi];
        for (L = 0; L < NL; ++L) {
            for (t = 0; t < T * NL; ++t) lambda[t] = (t % NL) == L ? 1.0 : 0.0;
            for (t = 0; t < T; ++t) {
                double acc = 0.0, decay = 1.0;
                for (s = t; s >= 0; --s) {
                    if (ref_level(h, t, s) == L) acc += decay * x[s];
                    decay *= exp(g[s]);
                }
                ref[t] = acc;
            }
            assert_int_equal(lla_mask_apply(h, T, g, lambda, NL, x, 1, y, ws, ws_bytes), LLA_OK);
            for (t = 0; t < T; ++t)
                if (!(fabs(y[t] - ref[t]) <= 1e-13 * (1.0 + fabs(ref[t]))))
                    fail_msg("%s level %lld t=%lld: %g vs %g", hname(h), (long long)L,
                             (long long)t, y[t], ref[t]);
        }
    }
    free(ws);
}

/* Rejected calls: status, a specific message, and y / workspace untouched. */
static void apply_rejects_bad_arguments(void **state) {
    enum { T = 10, N = 2 };
    double g[T], lambda[T * 5], x[T * N], y[T * N], y_copy[T * N];
    unsigned char ws[1024], ws_copy[1024];
    size_t need = lla_mask_apply_workspace(T, 5, N);
    int i;
    (void)state;
    for (i = 0; i < T; ++i) g[i] = -0.1;
    for (i = 0; i < T * 5; ++i) lambda[i] = 1.0;
    for (i = 0; i < T * N; ++i) x[i] = 1.0;
    memset(y, 0x5a, sizeof y);
    memset(ws, 0xa5, sizeof ws);
    memcpy(y_copy, y, sizeof y);
    memcpy(ws_copy, ws, sizeof ws);
    assert_true(need > 0 && need <= 512);
#define REJECT(call, status, text)                                                       \
    do {                                                                                  \
        assert_int_equal((call), (status));                                               \
        if (!strstr(lla_last_error(), (text)))                                            \
            fail_msg("message '%s' lacks '%s'", lla_last_error(), (text));                \
        assert_memory_equal(y, y_copy, sizeof y);                                         \
        assert_memory_equal(ws, ws_copy, sizeof ws);                                      \
    } while (0)
    REJECT(lla_mask_apply((lla_hierarchy)5, T, g, lambda, 5, x, N, y, ws, need), LLA_ERR_ARG, "hierarchy");
    REJECT(lla_mask_apply(LLA_HIERARCHY_WEAK, T, NULL, lambda, 5, x, N, y, ws, need), LLA_ERR_ARG, "g is NULL");
    REJECT(lla_mask_apply(LLA_HIERARCHY_WEAK, T, g, NULL, 5, x, N, y, ws, need), LLA_ERR_ARG, "lambda is NULL");
    REJECT(lla_mask_apply(LLA_HIERARCHY_WEAK, T, g, lambda, 5, NULL, N, y, ws, need), LLA_ERR_ARG, "x is NULL");
    REJECT(lla_mask_apply(LLA_HIERARCHY_WEAK, T, g, lambda, 5, x, N, NULL, ws, need), LLA_ERR_ARG, "y is NULL");
    REJECT(lla_mask_apply(LLA_HIERARCHY_WEAK, 0, g, lambda, 5, x, N, y, ws, need), LLA_ERR_SHAPE, "T = 0");
    REJECT(lla_mask_apply(LLA_HIERARCHY_WEAK, -4, g, lambda, 5, x, N, y, ws, need), LLA_ERR_SHAPE, "T = -4");
    REJECT(lla_mask_apply(LLA_HIERARCHY_WEAK, T, g, lambda, 5, x, 0, y, ws, need), LLA_ERR_SHAPE, "n = 0");
    REJECT(lla_mask_apply(LLA_HIERARCHY_STRONG, T, g, lambda, 4, x, N, y, ws, need), LLA_ERR_SHAPE,
           "NL = 4 is too few for T = 10 (needs 5)");
    REJECT(lla_mask_apply(LLA_HIERARCHY_WEAK, T, g, lambda, 5, x, INT64_MAX / 2, y, ws, need),
           LLA_ERR_SHAPE, "overflows");
    REJECT(lla_mask_apply(LLA_HIERARCHY_WEAK, T, g, lambda, 5, x, N, y, NULL, need), LLA_ERR_WORKSPACE,
           "workspace has 0 bytes");
    REJECT(lla_mask_apply(LLA_HIERARCHY_WEAK, T, g, lambda, 5, x, N, y, ws, need - 1), LLA_ERR_WORKSPACE,
           "needs");
    REJECT(lla_mask_apply(LLA_HIERARCHY_WEAK, T, g, lambda, 5, x, N, y, ws + 1, need), LLA_ERR_WORKSPACE,
           "aligned");
#undef REJECT
    assert_int_equal(lla_mask_apply_workspace(0, 5, 1), 0);
    assert_int_equal(lla_mask_apply_workspace(10, 0, 1), 0);
    assert_int_equal(lla_mask_apply_workspace(10, 5, 0), 0);
    assert_int_equal(lla_mask_apply_workspace(10, 5, INT64_MAX), 0);
    /* the call succeeds with exactly the queried size */
    assert_int_equal(lla_mask_apply(LLA_HIERARCHY_WEAK, T, g, lambda, 5, x, N, y, ws, need), LLA_OK);
}

/* Dense materializations reject bad arguments without writing. */
static void dense_rejects_bad_arguments(void **state) {
    double g[4] = {0, 0, 0, 0}, lambda[12], out[16], copy[16];
    int64_t lv[16];
    int i;
    (void)state;
    for (i = 0; i < 12; ++i) lambda[i] = 1.0;
    for (i = 0; i < 16; ++i) { out[i] = -7.0; lv[i] = -7; }
    memcpy(copy, out, sizeof out);
    assert_int_equal(lla_mask_levels_dense((lla_hierarchy)9, 4, lv), LLA_ERR_ARG);
    assert_non_null(strstr(lla_last_error(), "hierarchy"));
    assert_int_equal(lla_mask_levels_dense(LLA_HIERARCHY_WEAK, 4, NULL), LLA_ERR_ARG);
    assert_non_null(strstr(lla_last_error(), "out is NULL"));
    assert_int_equal(lla_mask_levels_dense(LLA_HIERARCHY_WEAK, 0, lv), LLA_ERR_SHAPE);
    assert_int_equal(lla_mask_levels_dense(LLA_HIERARCHY_WEAK, INT64_MAX, lv), LLA_ERR_SHAPE);
    assert_non_null(strstr(lla_last_error(), "not a valid matrix size"));
    assert_int_equal(lla_mask_lambda_dense(LLA_HIERARCHY_WEAK, 4, NULL, 3, out), LLA_ERR_ARG);
    assert_non_null(strstr(lla_last_error(), "lambda is NULL"));
    assert_int_equal(lla_mask_lambda_dense(LLA_HIERARCHY_WEAK, 4, lambda, 2, out), LLA_ERR_SHAPE);
    assert_non_null(strstr(lla_last_error(), "NL = 2 is too few for T = 4 (needs 3)"));
    assert_int_equal(lla_mask_decay_dense(4, NULL, out), LLA_ERR_ARG);
    assert_non_null(strstr(lla_last_error(), "g is NULL"));
    assert_int_equal(lla_mask_decay_dense(-1, g, out), LLA_ERR_SHAPE);
    assert_int_equal(lla_mask_dense(LLA_HIERARCHY_STRONG, 4, NULL, lambda, 3, out), LLA_ERR_ARG);
    assert_int_equal(lla_mask_dense(LLA_HIERARCHY_STRONG, 4, g, lambda, 0, out), LLA_ERR_SHAPE);
    assert_int_equal(lla_mask_dense((lla_hierarchy)-1, 4, g, lambda, 3, out), LLA_ERR_ARG);
    assert_memory_equal(out, copy, sizeof out);
    for (i = 0; i < 16; ++i) assert_int_equal(lv[i], -7);
}

/* ------------------------------------------------------------ SPEC 2.6 via the oracle */

static void run_oracle_1head(lla_variant variant, lla_hierarchy h, int64_t T, int64_t K, int64_t V,
                             int64_t NL, double *q, double *k, double *v, double *g, double *lambda,
                             double *beta, double *o) {
    lla_problem p;
    lla_inputs x;
    size_t ws_bytes;
    double ws[64];
    lla_problem_init(&p, variant, h, 1, T, 1, 1, K, V);
    p.levels = NL;
    x.q = lla_tensor_contiguous(q, LLA_DTYPE_F64, T, 1, K);
    x.k = lla_tensor_contiguous(k, LLA_DTYPE_F64, T, 1, K);
    x.v = lla_tensor_contiguous(v, LLA_DTYPE_F64, T, 1, V);
    x.g = lla_tensor_contiguous(g, LLA_DTYPE_F64, T, 1, 1);
    x.lambda = lla_tensor_contiguous(lambda, LLA_DTYPE_F64, T, 1, NL);
    x.beta = lla_tensor_contiguous(beta, LLA_DTYPE_F64, T, 1, 1);
    assert_int_equal(lla_oracle_workspace(&p, &ws_bytes), LLA_OK);
    assert_true(ws_bytes <= sizeof ws);
    assert_int_equal(lla_oracle_forward(&p, &x, lla_tensor_contiguous(o, LLA_DTYPE_F64, T, 1, V), ws,
                                        sizeof ws),
                     LLA_OK);
}

static void spec_worked_example_mamba2(void **state) {
    static const double want_weak[4] = {1, 3.6, 8.88, 11.128};
    static const double want_strong[4] = {1, 3.6, 7.48, 11.128};
    double q[4] = {1, 1, 1, 1}, k[4] = {1, 1, 1, 1}, v[4] = {1, 2, 3, 4}, beta[4] = {0, 0, 0, 0};
    double g[4], lambda[12], o[4];
    int i;
    (void)state;
    g[0] = log(0.9); g[1] = log(0.8); g[2] = log(0.7); g[3] = log(0.6);
    for (i = 0; i < 12; ++i) lambda[i] = (double)(i % 3 + 1);
    run_oracle_1head(LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 4, 1, 1, 3, q, k, v, g, lambda, beta, o);
    for (i = 0; i < 4; ++i) assert_true(fabs(o[i] - want_weak[i]) <= 1e-13);
    run_oracle_1head(LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG, 4, 1, 1, 3, q, k, v, g, lambda, beta, o);
    for (i = 0; i < 4; ++i) assert_true(fabs(o[i] - want_strong[i]) <= 1e-13);
}

static void spec_worked_example_gdn(void **state) {
    double q[4] = {1, 0, 1, 0}, k[4] = {1, 0, 0.6, 0.8}, v[2] = {1, 2}, beta[2] = {0.5, 0.5};
    double g[2], lambda[4] = {1, 2, 1, 2}, o[2];
    (void)state;
    g[0] = log(1.0);
    g[1] = log(0.9);
    run_oracle_1head(LLA_VARIANT_GDN, LLA_HIERARCHY_WEAK, 2, 2, 1, 2, q, k, v, g, lambda, beta, o);
    assert_true(fabs(o[0] - 0.5) <= 1e-14);
    assert_true(fabs(o[1] - 1.338) <= 1e-14);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dense_matrices_match_definitions),
        cmocka_unit_test(dense_mask_spec_example),
        cmocka_unit_test(dense_rejects_bad_arguments),
        cmocka_unit_test(apply_matches_dense),
        cmocka_unit_test(apply_single_levels),
        cmocka_unit_test(apply_long_sequences),
        cmocka_unit_test(apply_rejects_bad_arguments),
        cmocka_unit_test(spec_worked_example_mamba2),
        cmocka_unit_test(spec_worked_example_gdn),
    };
    return cmocka_run_group_tests_name("mask", tests, NULL, NULL);
}
