/* test_backward_fd.c - the float64 oracle gradients against central finite differences of
 * the float64 oracle forward, L = sum(o * d_o), for every input element (q, k, v, g,
 * lambda, beta) on small random shapes of every variant and hierarchy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>

#include <cmocka.h>

#include "bwutil.h"
#include "internal.h"

static double loss(test_data *td, lla_tensor o, lla_tensor d_o, void *ws, size_t ws_bytes) {
    const lla_problem *p = &td->p;
    int64_t b, t, h, d;
    double L = 0.0;
    if (lla_oracle_forward(p, &td->x, o, ws, ws_bytes) != LLA_OK) abort();
    for (b = 0; b < td_tensor_batch(p); ++b)
        for (t = 0; t < p->seqlen; ++t)
            for (h = 0; h < p->heads; ++h)
                for (d = 0; d < p->dv; ++d) L += lla__load(&o, b, t, h, d) * lla__load(&d_o, b, t, h, d);
    return L;
}

/* Max over the tensors of ||fd - analytic|| / ||fd||. */
static double fd_check(test_data *td, lla_tensor d_o, const lla_grads *g, double step) {
    const lla_problem *p = &td->p;
    lla_tensor o = td_tensor(td, p->heads, p->dv, LLA_DTYPE_F64);
    size_t ws_bytes;
    void *ws;
    struct { const char *name; lla_tensor *x; const lla_tensor *dx; int64_t heads, dim; } list[6];
    int n = 0, i;
    double worst = 0.0;
    assert_int_equal(lla_oracle_workspace(p, &ws_bytes), LLA_OK);
    ws = td_alloc(td, ws_bytes, 0);
#define ADD(nm, in, gr, hh, dd)                                               \
    do {                                                                      \
        list[n].name = nm; list[n].x = &td->x.in; list[n].dx = &g->gr;       \
        list[n].heads = hh; list[n].dim = dd; ++n;                            \
    } while (0)
    ADD("q", q, dq, p->qk_heads, p->dk);
    ADD("k", k, dk, p->qk_heads, p->dk);
    ADD("v", v, dv, p->heads, p->dv);
    ADD("g", g, dg, p->heads, 1);
    ADD("lambda", lambda, dlambda, p->heads, p->levels);
    if (p->variant == LLA_VARIANT_GDN) ADD("beta", beta, dbeta, p->heads, 1);
#undef ADD
    for (i = 0; i < n; ++i) {
        int64_t b, t, h, d;
        double num = 0.0, den = 0.0, e;
        for (b = 0; b < td_tensor_batch(p); ++b)
            for (t = 0; t < p->seqlen; ++t)
                for (h = 0; h < list[i].heads; ++h)
                    for (d = 0; d < list[i].dim; ++d) {
                        double x0 = lla__load(list[i].x, b, t, h, d), lp, lm, fd, an;
                        lla__store(list[i].x, b, t, h, d, x0 + step);
                        lp = loss(td, o, d_o, ws, ws_bytes);
                        lla__store(list[i].x, b, t, h, d, x0 - step);
                        lm = loss(td, o, d_o, ws, ws_bytes);
                        lla__store(list[i].x, b, t, h, d, x0);
                        fd = (lp - lm) / (2 * step);
                        an = lla__load(list[i].dx, b, t, h, d);
                        if (an != an) return INFINITY;
                        num += (fd - an) * (fd - an);
                        den += fd * fd;
                    }
        /* A vanishing gradient would make the comparison vacuous: every shape used here
         * has T >= 2, where each input matters. */
        if (den == 0.0) fail_msg("gradient of %s is zero: the check would be vacuous", list[i].name);
        e = sqrt(num / den);
        print_message("      d%-7s fd rel err %.3g (|fd| %.3g)\n", list[i].name, e, sqrt(den));
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

typedef struct fd_case {
    lla_variant variant;
    lla_hierarchy hierarchy;
    int64_t batch, T, heads, qk_heads, K, V;
    int varlen, strided;
} fd_case;

static void run_cases(const fd_case *cases, int n) {
    int i;
    for (i = 0; i < n; ++i) {
        const fd_case *c = &cases[i];
        lla_problem p;
        int64_t offsets[3] = {0, 4, 0};
        test_data *td;
        lla_tensor d_o;
        lla_grads g;
        double e;
        lla_problem_init(&p, c->variant, c->hierarchy, c->batch, c->T, c->heads, c->qk_heads, c->K,
                         c->V);
        p.levels += 1; /* one unused level: its gradient must be exactly zero too */
        p.scale = 0.7;
        if (c->varlen) offsets[2] = c->T;
        td = td_create(&p, c->varlen ? offsets : NULL, LLA_DTYPE_F64, c->strided, 100 + (uint64_t)i);
        d_o = bw_random_do(td, LLA_DTYPE_F64, 200 + (uint64_t)i);
        g = bw_oracle(td, d_o);
        print_message("case %d: %s %s B %lld T %lld H %lld G %lld K %lld V %lld%s%s\n", i,
                      c->variant == LLA_VARIANT_GDN ? "gdn" : "mamba2",
                      c->hierarchy == LLA_HIERARCHY_STRONG ? "strong" : "weak",
                      (long long)c->batch, (long long)c->T, (long long)c->heads,
                      (long long)c->qk_heads, (long long)c->K, (long long)c->V,
                      c->varlen ? " varlen" : "", c->strided ? " strided" : "");
        /* step 1e-5: truncation ~1e-10 relative, rounding ~1e-11: a correct gradient
         * lands near 1e-9, a wrong one at O(1). */
        e = fd_check(td, d_o, &g, 1e-5);
        if (!(e <= 1e-7)) fail_msg("case %d: oracle gradient vs finite differences: %g", i, e);
        td_free(td);
    }
}

static void mamba2_oracle_matches_finite_differences(void **state) {
    static const fd_case cases[] = {
        {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 1, 9, 2, 1, 3, 2, 0, 0},
        {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG, 2, 7, 2, 2, 2, 3, 0, 1},
        {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 2, 11, 2, 1, 2, 2, 1, 1},
    };
    (void)state;
    run_cases(cases, (int)(sizeof cases / sizeof cases[0]));
}

static void gdn_oracle_matches_finite_differences(void **state) {
    static const fd_case cases[] = {
        {LLA_VARIANT_GDN, LLA_HIERARCHY_WEAK, 1, 9, 2, 1, 3, 2, 0, 0},
        {LLA_VARIANT_GDN, LLA_HIERARCHY_STRONG, 2, 7, 2, 2, 3, 2, 0, 1},
        {LLA_VARIANT_GDN, LLA_HIERARCHY_WEAK, 2, 11, 2, 1, 2, 3, 1, 1},
    };
    (void)state;
    run_cases(cases, (int)(sizeof cases / sizeof cases[0]));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mamba2_oracle_matches_finite_differences),
        cmocka_unit_test(gdn_oracle_matches_finite_differences),
    };
    return cmocka_run_group_tests_name("backward_fd", tests, NULL, NULL);
}
