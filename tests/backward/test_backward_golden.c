/* test_backward_golden.c - oracle and scalar gradients against the authors' autograd
 * gradients (dq dk dv dg dlambda dbeta of every golden file, upstream gradient `do`). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "bwutil.h"
#include "golden.h"
#include "internal.h"

/* Copies a golden [B,T,H,D] tensor into x (any layout / dtype). */
static void fill_from(const lla_problem *p, lla_tensor *x, const golden_tensor *g, int64_t heads,
                      int64_t dim) {
    int64_t b, t, h, d, i = 0;
    for (b = 0; b < p->batch; ++b)
        for (t = 0; t < p->seqlen; ++t)
            for (h = 0; h < heads; ++h)
                for (d = 0; d < dim; ++d) lla__store(x, b, t, h, d, g->data[i++]);
}

static test_data *load_case(const golden_case *c, lla_dtype dtype, int strided, int64_t chunk) {
    lla_problem p;
    test_data *td;
    lla_problem_init(&p, c->variant, c->hierarchy, c->B, c->T, c->H, c->H, c->K, c->V);
    p.levels = c->NL;
    p.chunk = chunk;
    td = td_create(&p, NULL, dtype, strided, 1);
    fill_from(&td->p, &td->x.q, golden_get(c, "q"), c->H, c->K);
    fill_from(&td->p, &td->x.k, golden_get(c, "k"), c->H, c->K);
    fill_from(&td->p, &td->x.v, golden_get(c, "v"), c->H, c->V);
    fill_from(&td->p, &td->x.g, golden_get(c, "g"), c->H, 1);
    fill_from(&td->p, &td->x.lambda, golden_get(c, "lambda"), c->H, c->NL);
    if (c->variant == LLA_VARIANT_GDN) fill_from(&td->p, &td->x.beta, golden_get(c, "beta"), c->H, 1);
    return td;
}

/* Every golden gradient of this case against grads; returns the worst relative error. */
static double golden_err(const golden_case *c, const test_data *td, const lla_grads *g,
                         const char **worst) {
    static const char *names[6] = {"dq", "dk", "dv", "dg", "dlambda", "dbeta"};
    const lla_tensor *ts[6];
    int64_t dims[6];
    double e = 0.0;
    int i;
    ts[0] = &g->dq; ts[1] = &g->dk; ts[2] = &g->dv; ts[3] = &g->dg; ts[4] = &g->dlambda;
    ts[5] = &g->dbeta;
    dims[0] = dims[1] = c->K; dims[2] = c->V; dims[3] = 1; dims[4] = c->NL; dims[5] = 1;
    *worst = "none";
    for (i = 0; i < (c->variant == LLA_VARIANT_GDN ? 6 : 5); ++i) {
        const golden_tensor *ref = golden_get(c, names[i]);
        double ei;
        if (!ref) fail_msg("%s: golden tensor %s missing", c->name, names[i]);
        ei = rel_err_array(&td->p, ts[i], ref->data, c->H, dims[i]);
        if (!(ei <= e)) {
            e = ei;
            *worst = names[i];
        }
    }
    return e;
}

static golden_case *open_case(int i, char **names, int n) {
    char path[1024];
    golden_case *c;
    if (i >= n) return NULL;
    snprintf(path, sizeof path, "%s/%s", golden_dir(), names[i]);
    c = golden_load(path);
    if (!c) fail_msg("cannot load %s", path);
    return c;
}

static int list_cases(char **names) {
    int n = golden_list(golden_dir(), names, 64);
    if (n < 11) fail_msg("found %d golden files in %s, expected at least 11", n, golden_dir());
    return n;
}

static void oracle_gradients_match_golden(void **state) {
    char *names[64];
    int n = list_cases(names), i;
    (void)state;
    for (i = 0; i < n; ++i) {
        golden_case *c = open_case(i, names, n);
        test_data *td = load_case(c, LLA_DTYPE_F64, 0, 0);
        lla_tensor d_o = td_tensor(td, c->H, c->V, LLA_DTYPE_F64);
        lla_grads g;
        const char *worst;
        double e;
        fill_from(&td->p, &d_o, golden_get(c, "do"), c->H, c->V);
        g = bw_oracle(td, d_o);
        e = golden_err(c, td, &g, &worst);
        print_message("%-24s oracle gradients vs golden: max rel err %.3g (%s)\n", names[i], e, worst);
        if (!(e <= 1e-9)) fail_msg("%s: oracle %s rel err %g > 1e-9", names[i], worst, e);
        td_free(td);
        golden_free(c);
        free(names[i]);
    }
}

/* Scalar backward on every golden case: f64 (contiguous and strided, default and small
 * chunks) within 1e-9, f32 within 1e-4. */
static void scalar_gradients_match_golden(void **state) {
    static const int64_t chunks[3] = {0, 4, 16};
    char *names[64];
    int n = list_cases(names), i, k;
    lla_backend *be;
    (void)state;
    assert_int_equal(lla_backend_open("scalar", &be), LLA_OK);
    for (i = 0; i < n; ++i) {
        golden_case *c = open_case(i, names, n);
        for (k = 0; k < 4; ++k) {
            lla_dtype dt = k == 3 ? LLA_DTYPE_F32 : LLA_DTYPE_F64;
            test_data *td = load_case(c, dt, k == 1, chunks[k % 3]);
            lla_tensor d_o = td_tensor(td, c->H, c->V, dt);
            lla_grads g = bw_grads(td, dt);
            const char *worst;
            double e, tol = dt == LLA_DTYPE_F64 ? 1e-9 : 1e-4;
            fill_from(&td->p, &d_o, golden_get(c, "do"), c->H, c->V);
            assert_int_equal(bw_scalar(be, td, d_o, NULL, NULL, &g, NULL), LLA_OK);
            e = golden_err(c, td, &g, &worst);
            print_message("%-24s scalar %s chunk %-3lld%s: max rel err %.3g (%s)\n", names[i],
                          lla_dtype_name(dt), (long long)lla__chunk(&td->p),
                          k == 1 ? " strided" : "        ", e, worst);
            if (!(e <= tol))
                fail_msg("%s: scalar %s chunk %lld: %s rel err %g > %g", names[i],
                         lla_dtype_name(dt), (long long)lla__chunk(&td->p), worst, e, tol);
            td_free(td);
        }
        golden_free(c);
        free(names[i]);
    }
    lla_backend_close(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(oracle_gradients_match_golden),
        cmocka_unit_test(scalar_gradients_match_golden),
    };
    return cmocka_run_group_tests_name("backward_golden", tests, NULL, NULL);
}
