/* test_gen_ref_state.c - the generator's float64 reference state (tools/gen-decode-ref)
 * against the `state` of every golden file (the authors' float32 recurrent decoder), so
 * the references embedded in the MCU test are themselves checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "golden.h"
#include "ref_state.h"
#include "testutil.h"

static void ref_state_matches_golden(void **unused) {
    char *names[64];
    char path[1024];
    int n = golden_list(golden_dir(), names, 64), i;
    (void)unused;
    if (n < 11) fail_msg("found %d golden files in %s, expected at least 11", n, golden_dir());
    for (i = 0; i < n; ++i) {
        golden_case *c;
        lla_problem p;
        const golden_tensor *gq, *gk, *gv, *gg, *gl, *gb, *gs;
        double *state, scratch[64], err;
        lla_inputs x;
        snprintf(path, sizeof path, "%s/%s", golden_dir(), names[i]);
        c = golden_load(path);
        assert_non_null(c);
        lla_problem_init(&p, c->variant, c->hierarchy, c->B, c->T, c->H, c->H, c->K, c->V);
        p.levels = c->NL;
        gq = golden_get(c, "q"); gk = golden_get(c, "k"); gv = golden_get(c, "v");
        gg = golden_get(c, "g"); gl = golden_get(c, "lambda"); gb = golden_get(c, "beta");
        gs = golden_get(c, "state");
        assert_non_null(gq); assert_non_null(gk); assert_non_null(gv);
        assert_non_null(gg); assert_non_null(gl); assert_non_null(gs);
        assert_true(c->K <= 64);
        assert_int_equal(gs->count, c->B * c->H * c->NL * c->K * c->V);
        x.q = lla_tensor_contiguous(gq->data, LLA_DTYPE_F64, c->T, c->H, c->K);
        x.k = lla_tensor_contiguous(gk->data, LLA_DTYPE_F64, c->T, c->H, c->K);
        x.v = lla_tensor_contiguous(gv->data, LLA_DTYPE_F64, c->T, c->H, c->V);
        x.g = lla_tensor_contiguous(gg->data, LLA_DTYPE_F64, c->T, c->H, 1);
        x.lambda = lla_tensor_contiguous(gl->data, LLA_DTYPE_F64, c->T, c->H, c->NL);
        x.beta = gb ? lla_tensor_contiguous(gb->data, LLA_DTYPE_F64, c->T, c->H, 1) : x.g;
        state = (double *)malloc((size_t)gs->count * sizeof *state);
        assert_non_null(state);
        assert_int_equal(ref_final_state(&p, &x, state, scratch), 0);
        err = rel_err_plain(state, gs->data, (size_t)gs->count);
        print_message("%-24s reference state vs golden state: rel err %.3g\n", names[i], err);
        if (!(err <= 1e-5)) fail_msg("%s: reference state rel err %g > 1e-5", names[i], err);
        free(state);
        golden_free(c);
        free(names[i]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ref_state_matches_golden),
    };
    return cmocka_run_group_tests_name("gen_ref_state_golden", tests, NULL, NULL);
}
