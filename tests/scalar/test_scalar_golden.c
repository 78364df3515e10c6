/*
 * test_scalar_golden.c - the scalar backend against every golden file (../shared/golden,
 * or $LLA_GOLDEN_DIR; new files in the same format run without code changes):
 *   - chunkwise forward o: float64 within 1e-10, float32 within 1e-5 (chunk 64 and 4);
 *   - forward with a final state: the state against the golden decoder `state` (1e-5);
 *   - decode token by token (float64 and float32 states): outputs against `o` and against
 *     the authors' float32 decoder `o_rec`, the final state against `state`, and the level
 *     populations against `counts`.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "golden.h"
#include "scalar_util.h"
#include "testutil.h"

typedef struct gcase {
    golden_case *c;
    char name[128];
    lla_problem p;
    lla_inputs x64, x32;
    double *o_ref, *o_rec, *state_ref, *counts;
    size_t n_out, n_state;
    void *mem[16];
    int nmem;
} gcase;

static void *keep(gcase *g, void *m) {
    assert_non_null(m);
    g->mem[g->nmem++] = m;
    return m;
}

/* Tensor of golden data in dtype ([B,T,D1,D2] contiguous). */
static lla_tensor golden_tensor_as(gcase *g, const golden_tensor *t, lla_dtype dtype,
                                   int64_t heads, int64_t dim) {
    int64_t i;
    if (dtype == LLA_DTYPE_F64)
        return lla_tensor_contiguous(t->data, LLA_DTYPE_F64, g->c->T, heads, dim);
    {
        float *f = (float *)keep(g, malloc((size_t)t->count * sizeof *f));
        for (i = 0; i < t->count; ++i) f[i] = (float)t->data[i];
        return lla_tensor_contiguous(f, LLA_DTYPE_F32, g->c->T, heads, dim);
    }
}

static const golden_tensor *need(const golden_case *c, const char *name) {
    const golden_tensor *t = golden_get(c, name);
    if (!t) fail_msg("%s: golden tensor %s missing", c->name, name);
    return t;
}

static void gcase_load(gcase *g, const char *file) {
    char path[1024];
    golden_case *c;
    const golden_tensor *beta;
    lla_dtype dt[2] = {LLA_DTYPE_F64, LLA_DTYPE_F32};
    int i;
    memset(g, 0, sizeof *g);
    snprintf(path, sizeof path, "%s/%s", golden_dir(), file);
    snprintf(g->name, sizeof g->name, "%s", file);
    c = g->c = golden_load(path);
    assert_non_null(c);
    lla_problem_init(&g->p, c->variant, c->hierarchy, c->B, c->T, c->H, c->H, c->K, c->V);
    g->p.levels = c->NL;
    beta = golden_get(c, "beta");
    for (i = 0; i < 2; ++i) {
        lla_inputs *x = i == 0 ? &g->x64 : &g->x32;
        x->q = golden_tensor_as(g, need(c, "q"), dt[i], c->H, c->K);
        x->k = golden_tensor_as(g, need(c, "k"), dt[i], c->H, c->K);
        x->v = golden_tensor_as(g, need(c, "v"), dt[i], c->H, c->V);
        x->g = golden_tensor_as(g, need(c, "g"), dt[i], c->H, 1);
        x->lambda = golden_tensor_as(g, need(c, "lambda"), dt[i], c->H, c->NL);
        x->beta = beta ? golden_tensor_as(g, beta, dt[i], c->H, 1) : x->g;
    }
    if (c->variant == LLA_VARIANT_GDN) assert_non_null(beta);
    g->o_ref = need(c, "o")->data;
    g->o_rec = need(c, "o_rec")->data;
    g->state_ref = need(c, "state")->data;
    g->counts = need(c, "counts")->data;
    g->n_out = (size_t)need(c, "o")->count;
    g->n_state = (size_t)need(c, "state")->count;
    assert_int_equal(need(c, "counts")->count, c->NL);
    assert_int_equal((int64_t)g->n_state, c->B * c->H * c->NL * c->K * c->V);
}

static void gcase_free(gcase *g) {
    int i;
    for (i = 0; i < g->nmem; ++i) free(g->mem[i]);
    golden_free(g->c);
}

static double *out_as_double(const lla_tensor *o, size_t n) {
    double *d = (double *)malloc(n * sizeof *d);
    size_t i;
    assert_non_null(d);
    for (i = 0; i < n; ++i)
        d[i] = o->dtype == LLA_DTYPE_F64 ? ((double *)o->data)[i] : (double)((float *)o->data)[i];
    return d;
}

static void check(const char *what, const char *name, double err, double tol) {
    print_message("  %-22s %-28s rel err %.3g\n", name, what, err);
    if (!(err <= tol)) fail_msg("%s: %s rel err %g > %g", name, what, err, tol);
}

/* Level populations of a decoder state after consuming `pos` tokens (target pos-1). */
static void counts_of(lla_hierarchy h, int64_t pos, int64_t NL, double *counts) {
    int64_t l;
    for (l = 0; l < NL; ++l) {
        int64_t lo = lla_level_start(h, l, pos - 1);
        int64_t hi = l == 0 ? pos : lla_level_start(h, l - 1, pos - 1);
        counts[l] = pos == 0 ? 0.0 : (double)(hi - lo);
    }
}

/* The final state's positions, level populations and emptiness against the golden file. */
static void check_state(const gcase *g, const lla_state *s, const char *what) {
    const golden_case *c = g->c;
    double *vals = su_state_values(s), counts[64];
    int64_t b, h, l, i, KV = c->K * c->V;
    char label[96];
    for (b = 0; b < c->B; ++b) assert_int_equal(su_state_positions(s)[b], c->T);
    snprintf(label, sizeof label, "%s state", what);
    check(label, g->name, rel_err_plain(vals, g->state_ref, g->n_state), 1e-5);
    counts_of(c->hierarchy, c->T, c->NL, counts);
    for (l = 0; l < c->NL; ++l) {
        if (counts[l] != g->counts[l])
            fail_msg("%s: level %lld holds %g tokens, golden counts say %g", g->name,
                     (long long)l, counts[l], g->counts[l]);
        for (b = 0; b < c->B; ++b)
            for (h = 0; h < c->H; ++h) {
                const double *S = vals + ((b * c->H + h) * c->NL + l) * KV;
                int nonzero = 0;
                for (i = 0; i < KV; ++i) nonzero |= S[i] != 0.0;
                if (nonzero != (counts[l] > 0))
                    fail_msg("%s: %s level %lld is %s but holds %g tokens", g->name, what,
                             (long long)l, nonzero ? "non-zero" : "zero", counts[l]);
            }
    }
    free(vals);
}

static void run_forward(lla_backend *be, gcase *g, lla_dtype dtype, int64_t chunk,
                        int with_final) {
    const golden_case *c = g->c;
    lla_problem p = g->p;
    lla_inputs *x = dtype == LLA_DTYPE_F64 ? &g->x64 : &g->x32;
    size_t esz = lla_dtype_size(dtype);
    void *obuf = malloc(g->n_out * esz);
    lla_tensor o = lla_tensor_contiguous(obuf, dtype, c->T, c->H, c->V);
    lla_state fin;
    double *od;
    char what[96];
    assert_non_null(obuf);
    memset(obuf, 0xff, g->n_out * esz);
    p.chunk = chunk;
    if (with_final) fin = su_state_new(be, &p, dtype);
    assert_int_equal(su_forward(be, &p, x, o, NULL, with_final ? &fin : NULL), LLA_OK);
    od = out_as_double(&o, g->n_out);
    snprintf(what, sizeof what, "forward %s C=%lld o", lla_dtype_name(dtype), (long long)chunk);
    check(what, g->name, rel_err_plain(od, g->o_ref, g->n_out),
          dtype == LLA_DTYPE_F64 ? 1e-10 : 1e-5);
    if (with_final) {
        snprintf(what, sizeof what, "forward %s C=%lld", lla_dtype_name(dtype), (long long)chunk);
        check_state(g, &fin, what);
        su_state_free(&fin);
    }
    free(od);
    free(obuf);
}

static void run_decode(lla_backend *be, gcase *g, lla_dtype dtype) {
    const golden_case *c = g->c;
    lla_inputs *x = dtype == LLA_DTYPE_F64 ? &g->x64 : &g->x32;
    size_t esz = lla_dtype_size(dtype);
    void *obuf = malloc(g->n_out * esz);
    lla_tensor o = lla_tensor_contiguous(obuf, dtype, c->T, c->H, c->V);
    lla_state st = su_state_new(be, &g->p, dtype);
    double *od;
    int64_t t;
    char what[96];
    assert_non_null(obuf);
    memset(obuf, 0xff, g->n_out * esz);
    for (t = 0; t < c->T; ++t) {
        lla_inputs xt = su_inputs_at(x, t);
        assert_int_equal(lla_decode_step(be, &g->p, &st, &xt, su_tensor_at(o, t)), LLA_OK);
    }
    od = out_as_double(&o, g->n_out);
    snprintf(what, sizeof what, "decode %s vs o", lla_dtype_name(dtype));
    check(what, g->name, rel_err_plain(od, g->o_ref, g->n_out),
          dtype == LLA_DTYPE_F64 ? 1e-10 : 1e-5);
    snprintf(what, sizeof what, "decode %s vs o_rec", lla_dtype_name(dtype));
    check(what, g->name, rel_err_plain(od, g->o_rec, g->n_out), 1e-5);
    snprintf(what, sizeof what, "decode %s", lla_dtype_name(dtype));
    check_state(g, &st, what);
    su_state_free(&st);
    free(od);
    free(obuf);
}

typedef void (*case_fn)(lla_backend *be, gcase *g);

static void for_each_golden(case_fn fn) {
    char *names[256];
    int n = golden_list(golden_dir(), names, 256), i;
    lla_backend *be = su_open_scalar();
    if (n < 11) fail_msg("found %d golden files in %s, expected at least 11", n, golden_dir());
    for (i = 0; i < n; ++i) {
        gcase g;
        gcase_load(&g, names[i]);
        fn(be, &g);
        gcase_free(&g);
        free(names[i]);
    }
    lla_backend_close(be);
}

static void fwd_cases(lla_backend *be, gcase *g) {
    run_forward(be, g, LLA_DTYPE_F64, 64, 0);
    run_forward(be, g, LLA_DTYPE_F64, 4, 0);
    run_forward(be, g, LLA_DTYPE_F32, 64, 0);
    run_forward(be, g, LLA_DTYPE_F32, 4, 0);
}
static void fwd_final_cases(lla_backend *be, gcase *g) {
    run_forward(be, g, LLA_DTYPE_F64, 64, 1);
    run_forward(be, g, LLA_DTYPE_F64, 8, 1);
    run_forward(be, g, LLA_DTYPE_F32, 16, 1);
}
static void decode_cases(lla_backend *be, gcase *g) {
    run_decode(be, g, LLA_DTYPE_F64);
    run_decode(be, g, LLA_DTYPE_F32);
}

static void golden_forward(void **state) {
    (void)state;
    for_each_golden(fwd_cases);
}
static void golden_forward_final_state(void **state) {
    (void)state;
    for_each_golden(fwd_final_cases);
}
static void golden_decode(void **state) {
    (void)state;
    for_each_golden(decode_cases);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(golden_forward),
        cmocka_unit_test(golden_forward_final_state),
        cmocka_unit_test(golden_decode),
    };
    return cmocka_run_group_tests_name("scalar_golden", tests, NULL, NULL);
}
