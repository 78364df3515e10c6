/* test_backward_errors.c - every error path of lla_backward, lla_backward_workspace and
 * the oracle backward: the right status, a message, and no byte of any output, state or
 * workspace changed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bwutil.h"
#include "internal.h"

typedef struct fixture {
    lla_backend *be;
    test_data *td;
    lla_tensor d_o;
    lla_grads grads;
    lla_state initial, d_final, d_initial;
    void *ws;
    size_t ws_bytes;
    /* snapshots of everything a call could write */
    void *mem[12];
    size_t bytes[12];
    void *copy[12];
    int n;
} fixture;

static size_t tensor_bytes(const test_data *td, const lla_tensor *t) {
    return (size_t)(td_tensor_batch(&td->p) * t->strides[0]) * lla_dtype_size(t->dtype);
}

static void watch(fixture *f, void *mem, size_t bytes) {
    assert_true(f->n < 12);
    f->mem[f->n] = mem;
    f->bytes[f->n] = bytes;
    f->copy[f->n] = malloc(bytes);
    assert_non_null(f->copy[f->n]);
    memcpy(f->copy[f->n], mem, bytes);
    ++f->n;
}

static void assert_untouched(const fixture *f, const char *what) {
    int i;
    for (i = 0; i < f->n; ++i)
        if (memcmp(f->mem[i], f->copy[i], f->bytes[i]) != 0)
            fail_msg("%s: buffer %d was modified by a failing call", what, i);
}

static void setup_fixture(fixture *f, lla_variant variant) {
    lla_problem p;
    int64_t pos[2] = {3, 9};
    memset(f, 0, sizeof *f);
    assert_int_equal(lla_backend_open("scalar", &f->be), LLA_OK);
    lla_problem_init(&p, variant, LLA_HIERARCHY_WEAK, 2, 10, 2, 1, 3, 2);
    p.levels = 6;
    p.chunk = 4;
    f->td = td_create(&p, NULL, LLA_DTYPE_F64, 0, 42);
    f->d_o = bw_random_do(f->td, LLA_DTYPE_F64, 43);
    f->grads = bw_grads(f->td, LLA_DTYPE_F64);
    f->initial = bw_state(f->td, f->be, LLA_DTYPE_F64, pos, 44);
    f->d_final = bw_state(f->td, f->be, LLA_DTYPE_F64, NULL, 45);
    f->d_initial = bw_state(f->td, f->be, LLA_DTYPE_F64, NULL, 0);
    assert_int_equal(lla_backward_workspace(f->be, &f->td->p, LLA_DTYPE_F64, &f->ws_bytes), LLA_OK);
    assert_true(f->ws_bytes > 0);
    f->ws = td_alloc(f->td, f->ws_bytes + 128, 0x5a); /* room to misalign on purpose */
    watch(f, f->grads.dq.data, tensor_bytes(f->td, &f->grads.dq));
    watch(f, f->grads.dk.data, tensor_bytes(f->td, &f->grads.dk));
    watch(f, f->grads.dv.data, tensor_bytes(f->td, &f->grads.dv));
    watch(f, f->grads.dg.data, tensor_bytes(f->td, &f->grads.dg));
    watch(f, f->grads.dlambda.data, tensor_bytes(f->td, &f->grads.dlambda));
    watch(f, f->grads.dbeta.data, tensor_bytes(f->td, &f->grads.dbeta));
    watch(f, f->d_initial.memory, f->d_initial.bytes);
    watch(f, f->ws, f->ws_bytes + 128);
}

static void teardown_fixture(fixture *f) {
    int i;
    for (i = 0; i < f->n; ++i) free(f->copy[i]);
    td_free(f->td);
    lla_backend_close(f->be);
}

/* One call with everything as in the fixture except what the caller changed. */
typedef struct call {
    lla_backend *be;
    const lla_problem *p;
    const lla_inputs *x;
    lla_tensor d_o;
    const lla_state *initial, *d_final;
    const lla_grads *grads;
    lla_state *d_initial;
    void *ws;
    size_t ws_bytes;
} call;

static call base_call(fixture *f, lla_problem *p, lla_inputs *x, lla_grads *g, lla_state *init,
                      lla_state *dfin, lla_state *dinit) {
    call c;
    *p = f->td->p;
    *x = f->td->x;
    *g = f->grads;
    *init = f->initial;
    *dfin = f->d_final;
    *dinit = f->d_initial;
    c.be = f->be;
    c.p = p;
    c.x = x;
    c.d_o = f->d_o;
    c.initial = init;
    c.d_final = dfin;
    c.grads = g;
    c.d_initial = dinit;
    c.ws = f->ws;
    c.ws_bytes = f->ws_bytes;
    return c;
}

static void expect(fixture *f, const call *c, lla_status want, const char *what) {
    lla_status st = lla_backward(c->be, c->p, c->x, c->d_o, c->initial, c->d_final, c->grads,
                                 c->d_initial, c->ws, c->ws_bytes);
    if (st != want)
        fail_msg("%s: got %s (%s), expected %s", what, lla_status_str(st), lla_last_error(),
                 lla_status_str(want));
    if (want != LLA_OK && lla_last_error()[0] == '\0')
        fail_msg("%s: no error message", what);
    if (want != LLA_OK) {
        assert_untouched(f, what);
    } else { /* a successful call writes: take new snapshots */
        int i;
        for (i = 0; i < f->n; ++i) memcpy(f->copy[i], f->mem[i], f->bytes[i]);
    }
    print_message("  %-44s %s: %s\n", what, lla_status_str(st), st ? lla_last_error() : "");
}

static void backward_rejects_bad_arguments(lla_variant variant) {
    fixture f;
    lla_problem p;
    lla_inputs x;
    lla_grads g;
    lla_state init, dfin, dinit;
    call c;
    int64_t bad_offsets[3] = {0, 7, 5};
    setup_fixture(&f, variant);

#define CASE(what, want, mutate)                                   \
    do {                                                           \
        c = base_call(&f, &p, &x, &g, &init, &dfin, &dinit);       \
        mutate;                                                    \
        expect(&f, &c, want, what);                                \
    } while (0)

    CASE("NULL backend", LLA_ERR_ARG, c.be = NULL);
    CASE("NULL problem", LLA_ERR_ARG, c.p = NULL);
    CASE("NULL inputs", LLA_ERR_ARG, c.x = NULL);
    CASE("NULL grads", LLA_ERR_ARG, c.grads = NULL);
    CASE("d_o data NULL", LLA_ERR_ARG, c.d_o.data = NULL);
    CASE("q data NULL", LLA_ERR_ARG, x.q.data = NULL);
    CASE("dq data NULL", LLA_ERR_ARG, g.dq.data = NULL);
    CASE("dg data NULL", LLA_ERR_ARG, g.dg.data = NULL);
    CASE("dlambda data NULL", LLA_ERR_ARG, g.dlambda.data = NULL);
    CASE("k dtype differs from d_o", LLA_ERR_DTYPE, x.k.dtype = LLA_DTYPE_F32);
    CASE("dv dtype differs from d_o", LLA_ERR_DTYPE, g.dv.dtype = LLA_DTYPE_F32);
    CASE("unknown dtype of d_o", LLA_ERR_DTYPE, c.d_o.dtype = (lla_dtype)99);
    CASE("bf16 everywhere (scalar: f32/f64 only)", LLA_ERR_UNSUPPORTED,
         (x.q.dtype = x.k.dtype = x.v.dtype = x.g.dtype = x.lambda.dtype = x.beta.dtype =
              LLA_DTYPE_BF16,
          g.dq.dtype = g.dk.dtype = g.dv.dtype = g.dg.dtype = g.dlambda.dtype = g.dbeta.dtype =
              LLA_DTYPE_BF16,
          c.d_o.dtype = LLA_DTYPE_BF16, c.initial = NULL, c.d_final = NULL, c.d_initial = NULL));
    CASE("heads not a multiple of qk_heads", LLA_ERR_SHAPE, p.qk_heads = 3);
    CASE("chunk not a power of two", LLA_ERR_SHAPE, p.chunk = 6);
    CASE("seqlen 0", LLA_ERR_SHAPE, p.seqlen = 0);
    CASE("unknown variant", LLA_ERR_ARG, p.variant = (lla_variant)7);
    CASE("seq_offsets decreasing", LLA_ERR_SHAPE, (p.seq_offsets = bad_offsets, p.seqlen = 5));
    CASE("too few levels (no initial state)", LLA_ERR_SHAPE,
         (p.levels = 2, c.initial = NULL, c.d_initial = NULL, c.d_final = NULL));
    CASE("initial position needs more levels", LLA_ERR_STATE,
         (init.levels = dfin.levels = dinit.levels = p.levels = 5,
          ((int64_t *)init.memory)[1] = 40));
    ((int64_t *)f.initial.memory)[1] = 9; /* restore after the aliasing mutation above */
    CASE("negative initial position", LLA_ERR_STATE, ((int64_t *)init.memory)[0] = -1);
    ((int64_t *)f.initial.memory)[0] = 3;
    CASE("initial state heads mismatch", LLA_ERR_STATE, init.heads = 4);
    CASE("initial state f32 for f64 tensors", LLA_ERR_DTYPE, init.dtype = LLA_DTYPE_F32);
    CASE("initial state memory NULL", LLA_ERR_ARG, init.memory = NULL);
    CASE("initial state too small", LLA_ERR_WORKSPACE, init.bytes = 64);
    CASE("d_final levels mismatch", LLA_ERR_STATE, dfin.levels = 7);
    CASE("d_final variant mismatch", LLA_ERR_STATE,
         dfin.variant = variant == LLA_VARIANT_GDN ? LLA_VARIANT_MAMBA2 : LLA_VARIANT_GDN);
    CASE("d_initial without initial", LLA_ERR_ARG, c.initial = NULL);
    CASE("d_initial dk mismatch", LLA_ERR_STATE, dinit.dk = 2);
    CASE("d_initial too small", LLA_ERR_WORKSPACE, dinit.bytes = 100);
    CASE("d_initial misaligned", LLA_ERR_WORKSPACE, dinit.memory = (char *)dinit.memory + 4);
    CASE("workspace NULL", LLA_ERR_WORKSPACE, c.ws = NULL);
    CASE("workspace too small", LLA_ERR_WORKSPACE, c.ws_bytes = f.ws_bytes - 64);
    /* 1 byte past a 64-byte boundary: 63 bytes go to alignment, one byte is missing */
    CASE("workspace too small after alignment", LLA_ERR_WORKSPACE,
         (c.ws = (char *)(((uintptr_t)f.ws + 63) & ~(uintptr_t)63) + 1, c.ws_bytes = f.ws_bytes - 1));
    CASE("workspace just large enough after alignment", LLA_OK,
         (c.ws = (char *)(((uintptr_t)f.ws + 63) & ~(uintptr_t)63) + 1, c.ws_bytes = f.ws_bytes));
    if (variant == LLA_VARIANT_GDN) {
        CASE("GDN: beta data NULL", LLA_ERR_ARG, x.beta.data = NULL);
        CASE("GDN: dbeta data NULL", LLA_ERR_ARG, g.dbeta.data = NULL);
        CASE("GDN: dbeta dtype differs", LLA_ERR_DTYPE, g.dbeta.dtype = LLA_DTYPE_F32);
    } else {
        /* Mamba-2 has no beta: a NULL beta / dbeta is fine and dbeta is not written. */
        CASE("Mamba-2: beta and dbeta NULL are fine", LLA_OK, (x.beta.data = NULL, g.dbeta.data = NULL));
    }
    /* The unmodified call works (and would have changed the outputs). */
    CASE("valid call", LLA_OK, (void)0);
#undef CASE
    teardown_fixture(&f);
}

static void mamba2_backward_rejects_bad_arguments(void **state) {
    (void)state;
    backward_rejects_bad_arguments(LLA_VARIANT_MAMBA2);
}
static void gdn_backward_rejects_bad_arguments(void **state) {
    (void)state;
    backward_rejects_bad_arguments(LLA_VARIANT_GDN);
}

static void workspace_query_rejects_bad_arguments(void **state) {
    lla_backend *be;
    lla_problem p;
    size_t bytes = 12345;
    (void)state;
    assert_int_equal(lla_backend_open("scalar", &be), LLA_OK);
    lla_problem_init(&p, LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 1, 100, 2, 1, 8, 4);
    assert_int_equal(lla_backward_workspace(NULL, &p, LLA_DTYPE_F64, &bytes), LLA_ERR_ARG);
    assert_int_equal(lla_backward_workspace(be, NULL, LLA_DTYPE_F64, &bytes), LLA_ERR_ARG);
    assert_int_equal(lla_backward_workspace(be, &p, LLA_DTYPE_F64, NULL), LLA_ERR_ARG);
    assert_int_equal(lla_backward_workspace(be, &p, (lla_dtype)0, &bytes), LLA_ERR_DTYPE);
    assert_int_equal(lla_backward_workspace(be, &p, LLA_DTYPE_BF16, &bytes), LLA_ERR_DTYPE);
    assert_non_null(strstr(lla_last_error(), "bf16"));
    p.dk = 0;
    assert_int_equal(lla_backward_workspace(be, &p, LLA_DTYPE_F64, &bytes), LLA_ERR_SHAPE);
    p.dk = 8;
    p.seqlen = INT64_MAX / 2; /* every size computation must refuse, never wrap */
    assert_int_equal(lla_backward_workspace(be, &p, LLA_DTYPE_F64, &bytes), LLA_ERR_SHAPE);
    /* sizes the problem check accepts (NL*K*V ~ 1.0e18) but whose checkpoints overflow */
    p.seqlen = 64;
    p.dk = (int64_t)1 << 29;
    p.dv = (int64_t)1 << 28;
    p.levels = 7;
    p.heads = 1;
    assert_int_equal(lla_problem_check(&p), LLA_OK);
    assert_int_equal(lla_backward_workspace(be, &p, LLA_DTYPE_F64, &bytes), LLA_ERR_SHAPE);
    assert_int_equal(bytes, 12345); /* untouched by every failure */
    /* and a valid query answers the documented formula (+63 alignment slack) */
    lla_problem_init(&p, LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 1, 1000, 2, 1, 8, 4);
    p.chunk = 16;
    assert_int_equal(lla_backward_workspace(be, &p, LLA_DTYPE_F32, &bytes), LLA_OK);
    {
        /* NC = ceil(1000/16) + 1 = 64, S = 8, n_ckpt = 8; NL = 11 */
        size_t K = 8, V = 4, NL = 11, C = 16;
        size_t doubles = (8 + 8) * NL * K * V + C * (11 * K + 3 * V + 2 * NL + 5) + (C + 2) * K + 2 * V;
        assert_int_equal(bytes, doubles * 8 + 63);
    }
    lla_backend_close(be);
}

static void oracle_backward_rejects_bad_arguments(void **state) {
    fixture f;
    lla_problem p;
    lla_grads g;
    lla_inputs x;
    size_t need;
    void *ws;
    (void)state;
    setup_fixture(&f, LLA_VARIANT_GDN);
    assert_int_equal(lla_oracle_backward_workspace(&f.td->p, &need), LLA_OK);
    ws = td_alloc(f.td, need + 8, 0x11);
    watch(&f, ws, need + 8);
#define OCASE(what, want, mutate)                                                            \
    do {                                                                                     \
        lla_tensor d_o = f.d_o;                                                              \
        void *w = ws;                                                                        \
        size_t wb = need;                                                                    \
        const lla_problem *pp = &p;                                                          \
        const lla_inputs *xx = &x;                                                           \
        const lla_grads *gg = &g;                                                            \
        lla_status st;                                                                       \
        p = f.td->p; g = f.grads; x = f.td->x;                                               \
        mutate;                                                                              \
        st = lla_oracle_backward(pp, xx, d_o, gg, w, wb);                                    \
        if (st != want) fail_msg("oracle %s: got %s, expected %s", what, lla_status_str(st), \
                                 lla_status_str(want));                                      \
        if (want != LLA_OK) assert_untouched(&f, what);                                      \
        print_message("  oracle %-37s %s: %s\n", what, lla_status_str(st), st ? lla_last_error() : ""); \
    } while (0)
    OCASE("NULL problem", LLA_ERR_ARG, pp = NULL);
    OCASE("NULL inputs", LLA_ERR_ARG, xx = NULL);
    OCASE("NULL grads", LLA_ERR_ARG, gg = NULL);
    OCASE("bf16 d_o", LLA_ERR_DTYPE, d_o.dtype = LLA_DTYPE_BF16);
    OCASE("bf16 inputs", LLA_ERR_DTYPE, x.q.dtype = LLA_DTYPE_BF16);
    OCASE("inputs of mixed dtype", LLA_ERR_DTYPE, x.v.dtype = LLA_DTYPE_F32);
    OCASE("grad dtype differs from d_o", LLA_ERR_DTYPE, g.dk.dtype = LLA_DTYPE_F32);
    OCASE("dbeta NULL (GDN)", LLA_ERR_ARG, g.dbeta.data = NULL);
    OCASE("too few levels", LLA_ERR_SHAPE, p.levels = 3);
    OCASE("workspace NULL", LLA_ERR_WORKSPACE, w = NULL);
    OCASE("workspace too small", LLA_ERR_WORKSPACE, wb = need - 8);
    OCASE("workspace misaligned", LLA_ERR_WORKSPACE, w = (char *)ws + 4);
    OCASE("valid call", LLA_OK, (void)0);
#undef OCASE
    assert_int_equal(lla_oracle_backward_workspace(NULL, &need), LLA_ERR_ARG);
    assert_int_equal(lla_oracle_backward_workspace(&f.td->p, NULL), LLA_ERR_ARG);
    teardown_fixture(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mamba2_backward_rejects_bad_arguments),
        cmocka_unit_test(gdn_backward_rejects_bad_arguments),
        cmocka_unit_test(workspace_query_rejects_bad_arguments),
        cmocka_unit_test(oracle_backward_rejects_bad_arguments),
    };
    return cmocka_run_group_tests_name("backward_errors", tests, NULL, NULL);
}
