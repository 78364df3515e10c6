/* test_oracle_golden.c - the float64 oracle against every golden file's `o`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "golden.h"
#include "testutil.h"

static void oracle_matches_golden(void **state) {
    char *names[64];
    char path[1024];
    int n = golden_list(golden_dir(), names, 64), i;
    (void)state;
    if (n < 11) fail_msg("found %d golden files in %s, expected at least 11", n, golden_dir());
    for (i = 0; i < n; ++i) {
        golden_case *c;
        lla_problem p;
        const golden_tensor *gq, *gk, *gv, *gg, *gl, *gb, *go;
        double *o, *ws;
        size_t ws_bytes;
        lla_inputs x;
        lla_tensor to;
        double err;
        snprintf(path, sizeof path, "%s/%s", golden_dir(), names[i]);
        c = golden_load(path);
        assert_non_null(c);
        lla_problem_init(&p, c->variant, c->hierarchy, c->B, c->T, c->H, c->H, c->K, c->V);
        p.levels = c->NL;
        gq = golden_get(c, "q"); gk = golden_get(c, "k"); gv = golden_get(c, "v");
        gg = golden_get(c, "g"); gl = golden_get(c, "lambda"); gb = golden_get(c, "beta");
        go = golden_get(c, "o");
        assert_non_null(gq); assert_non_null(gk); assert_non_null(gv);
        assert_non_null(gg); assert_non_null(gl); assert_non_null(go);
        x.q = lla_tensor_contiguous(gq->data, LLA_DTYPE_F64, c->T, c->H, c->K);
        x.k = lla_tensor_contiguous(gk->data, LLA_DTYPE_F64, c->T, c->H, c->K);
        x.v = lla_tensor_contiguous(gv->data, LLA_DTYPE_F64, c->T, c->H, c->V);
        x.g = lla_tensor_contiguous(gg->data, LLA_DTYPE_F64, c->T, c->H, 1);
        x.lambda = lla_tensor_contiguous(gl->data, LLA_DTYPE_F64, c->T, c->H, c->NL);
        x.beta = gb ? lla_tensor_contiguous(gb->data, LLA_DTYPE_F64, c->T, c->H, 1) : x.g;
        o = (double *)malloc((size_t)go->count * sizeof *o);
        to = lla_tensor_contiguous(o, LLA_DTYPE_F64, c->T, c->H, c->V);
        assert_int_equal(lla_oracle_workspace(&p, &ws_bytes), LLA_OK);
        ws = (double *)malloc(ws_bytes);
        assert_int_equal(lla_oracle_forward(&p, &x, to, ws, ws_bytes), LLA_OK);
        err = rel_err_plain(o, go->data, (size_t)go->count);
        print_message("%-24s oracle vs golden o: rel err %.3g\n", names[i], err);
        if (!(err <= 1e-10)) fail_msg("%s: oracle rel err %g > 1e-10", names[i], err);
        free(o);
        free(ws);
        golden_free(c);
        free(names[i]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(oracle_matches_golden),
    };
    return cmocka_run_group_tests_name("oracle_golden", tests, NULL, NULL);
}
