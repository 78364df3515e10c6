/*
 * test_fuzz_regressions.c - readable versions of what the fuzz targets found, one test
 * per fixed bug (the raw inputs are replayed from regressions/<target>/ as well).
 *
 * 1. Tensor strides whose element offsets overflow int64 were accepted and used: the
 *    scalar forward computed b*strides[0] + t*strides[1] + ... with signed overflow (UBSan:
 *    "addition of unsigned offset overflowed" in forward.c load()) and read or wrote wild
 *    memory.  Every call now refuses such views with LLA_ERR_SHAPE, writing nothing, while
 *    strides of unused extent-1 dimensions may still hold anything.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lla.h"

enum { B = 2, T = 3, H = 2, K = 2, V = 2 };

typedef struct fixture {
    lla_backend *be;
    lla_problem p;
    double q[B * T * K], k[B * T * K], v[B * T * H * V], g[B * T * H], lam[B * T * H * 3],
        beta[B * T * H], o[B * T * H * V], o_copy[B * T * H * V];
    lla_inputs x;
    lla_tensor out;
    unsigned char ws[1 << 14];
} fixture;

static void setup(fixture *f, lla_variant variant) {
    size_t i;
    if (f->be) lla_backend_close(f->be); /* the previous case's */
    memset(f, 0, sizeof *f);
    assert_int_equal(lla_backend_open("scalar", &f->be), LLA_OK);
    lla_problem_init(&f->p, variant, LLA_HIERARCHY_WEAK, B, T, H, 1, K, V);
    assert_int_equal(f->p.levels, 3);
    for (i = 0; i < B * T * K; ++i) f->q[i] = f->k[i] = 0.25;
    for (i = 0; i < B * T * H * V; ++i) f->v[i] = 1.0;
    for (i = 0; i < B * T * H; ++i) { f->g[i] = -0.1; f->beta[i] = 0.5; }
    for (i = 0; i < B * T * H * 3; ++i) f->lam[i] = 1.0;
    f->x.q = lla_tensor_contiguous(f->q, LLA_DTYPE_F64, T, 1, K);
    f->x.k = lla_tensor_contiguous(f->k, LLA_DTYPE_F64, T, 1, K);
    f->x.v = lla_tensor_contiguous(f->v, LLA_DTYPE_F64, T, H, V);
    f->x.g = lla_tensor_contiguous(f->g, LLA_DTYPE_F64, T, H, 1);
    f->x.lambda = lla_tensor_contiguous(f->lam, LLA_DTYPE_F64, T, H, 3);
    f->x.beta = lla_tensor_contiguous(f->beta, LLA_DTYPE_F64, T, H, 1);
    f->out = lla_tensor_contiguous(f->o, LLA_DTYPE_F64, T, H, V);
    memset(f->o, 0xa5, sizeof f->o);
    memcpy(f->o_copy, f->o, sizeof f->o);
}

static void teardown(fixture *f) {
    lla_backend_close(f->be);
    f->be = NULL;
}

static lla_status forward(fixture *f) {
    return lla_forward(f->be, &f->p, &f->x, f->out, NULL, NULL, f->ws, sizeof f->ws);
}

static void expect_refused(fixture *f, lla_status st, const char *tensor) {
    assert_int_equal(st, LLA_ERR_SHAPE);
    assert_non_null(strstr(lla_last_error(), tensor));
    assert_memory_equal(f->o, f->o_copy, sizeof f->o);
}

static void overflowing_strides_are_refused(void **state) {
    static fixture f;
    (void)state;
    /* the fuzzer's input: q's T stride INT64_MAX */
    setup(&f, LLA_VARIANT_MAMBA2);
    f.x.q.strides[1] = INT64_MAX;
    expect_refused(&f, forward(&f), "tensor q");
    /* negative extremes, on the output and on lambda */
    setup(&f, LLA_VARIANT_GDN);
    f.out.strides[0] = INT64_MIN;
    expect_refused(&f, forward(&f), "tensor o");
    setup(&f, LLA_VARIANT_GDN);
    f.x.lambda.strides[3] = -((int64_t)1 << 62);
    expect_refused(&f, forward(&f), "tensor lambda");
    /* each stride fine alone (2^62 bytes of span), the sum too large:
     * (2^59 * (B-1) + 2^58 * (T-1)) elements of 8 bytes = 2^63 bytes */
    setup(&f, LLA_VARIANT_MAMBA2);
    f.x.v.strides[0] = (int64_t)1 << 59;
    f.x.v.strides[1] = (int64_t)1 << 58;
    expect_refused(&f, forward(&f), "tensor v");
    /* the oracle validates the same way */
    setup(&f, LLA_VARIANT_GDN);
    f.x.beta.strides[2] = INT64_MAX / 2;
    {
        size_t need = 0;
        assert_int_equal(lla_oracle_workspace(&f.p, &need), LLA_OK);
        assert_true(need <= sizeof f.ws);
        expect_refused(&f, lla_oracle_forward(&f.p, &f.x, f.out, f.ws, sizeof f.ws), "tensor beta");
    }
    teardown(&f);
}

static void decode_strides_are_checked_for_one_token(void **state) {
    static fixture f;
    size_t bytes = 0;
    static unsigned char mem[4096];
    lla_state st;
    (void)state;
    setup(&f, LLA_VARIANT_MAMBA2);
    assert_int_equal(lla_state_bytes(&f.p, LLA_DTYPE_F64, &bytes), LLA_OK);
    assert_true(bytes <= sizeof mem);
    assert_int_equal(lla_state_init(f.be, &f.p, LLA_DTYPE_F64, mem, bytes, &st), LLA_OK);
    /* a decode step has T = 1: the T stride is unused and may be anything */
    f.x.q.strides[1] = INT64_MIN;
    f.out.strides[1] = INT64_MAX;
    assert_int_equal(lla_decode_step(f.be, &f.p, &st, &f.x, f.out), LLA_OK);
    /* but the batch stride is used */
    f.out.strides[0] = INT64_MAX;
    memcpy(f.o_copy, f.o, sizeof f.o);
    expect_refused(&f, lla_decode_step(f.be, &f.p, &st, &f.x, f.out), "tensor o");
    assert_int_equal(((const int64_t *)(const void *)mem)[0], 1); /* only the first step ran */
    teardown(&f);
}

static void unused_strides_may_hold_anything(void **state) {
    static fixture f;
    int64_t offsets[B + 1] = {0, 1, T};
    (void)state;
    setup(&f, LLA_VARIANT_GDN);
    /* g and beta have no D extent; packed varlen tensors have a batch extent of 1 */
    f.x.g.strides[3] = INT64_MAX;
    f.x.beta.strides[3] = INT64_MIN;
    assert_int_equal(forward(&f), LLA_OK);
    f.p.seq_offsets = offsets;
    f.x.q.strides[0] = f.x.k.strides[0] = f.x.v.strides[0] = INT64_MIN;
    f.x.g.strides[0] = f.x.lambda.strides[0] = f.x.beta.strides[0] = f.out.strides[0] = INT64_MAX;
    assert_int_equal(forward(&f), LLA_OK);
    teardown(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(overflowing_strides_are_refused),
        cmocka_unit_test(decode_strides_are_checked_for_one_token),
        cmocka_unit_test(unused_strides_may_hold_anything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
