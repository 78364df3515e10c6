/* test_backward_random.c - scalar chunkwise backward against the float64 oracle gradients
 * on random shapes: T = 1, T not a multiple of the chunk, chunks 1..64, K != V, grouped
 * q/k heads, packed varlen batches (with an empty sequence), strided views, weak and
 * strong, Mamba-2 and GDN, f64 (1e-9) and f32 (1e-4, against the oracle run on the same
 * f32 inputs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bwutil.h"
#include "internal.h"

typedef struct rand_case {
    lla_problem p;
    int64_t offsets[6];
    int varlen, strided;
    lla_dtype dtype;
} rand_case;

static void describe(const rand_case *c, char *buf, size_t len) {
    snprintf(buf, len, "%s %s %s B %lld T %lld H %lld G %lld K %lld V %lld NL %lld chunk %lld%s%s",
             lla_dtype_name(c->dtype), c->p.variant == LLA_VARIANT_GDN ? "gdn" : "mamba2",
             c->p.hierarchy == LLA_HIERARCHY_STRONG ? "strong" : "weak", (long long)c->p.batch,
             (long long)c->p.seqlen, (long long)c->p.heads, (long long)c->p.qk_heads,
             (long long)c->p.dk, (long long)c->p.dv, (long long)c->p.levels,
             (long long)lla__chunk(&c->p), c->varlen ? " varlen" : "", c->strided ? " strided" : "");
}

static void check_case(lla_backend *be, const rand_case *c, uint64_t seed) {
    test_data *td = td_create(&c->p, c->varlen ? c->offsets : NULL, c->dtype, c->strided, seed);
    lla_tensor d_o = bw_random_do(td, c->dtype, seed + 1);
    lla_grads ref = bw_oracle(td, d_o), got = bw_grads(td, c->dtype);
    const char *worst;
    double e, tol = c->dtype == LLA_DTYPE_F64 ? 1e-9 : 1e-4;
    char what[256];
    describe(c, what, sizeof what);
    assert_int_equal(bw_scalar(be, td, d_o, NULL, NULL, &got, NULL), LLA_OK);
    e = bw_grads_err(&td->p, &got, &ref, &worst);
    print_message("  %-86s %.2g (%s)\n", what, e, worst);
    if (!(e <= tol)) fail_msg("%s: scalar vs oracle %s rel err %g > %g", what, worst, e, tol);
    td_free(td);
}

/* Hand-picked edge shapes for one variant. */
static void edge_shapes(lla_variant variant) {
    static const struct { int64_t B, T, H, G, K, V, chunk; int strong, strided; } shapes[] = {
        {1, 1, 1, 1, 3, 2, 0, 0, 0},   /* T = 1 */
        {2, 1, 2, 1, 2, 3, 4, 1, 1},   /* T = 1, batch */
        {1, 17, 2, 2, 3, 5, 4, 0, 0},  /* T % chunk != 0, K != V */
        {1, 17, 2, 2, 3, 5, 4, 1, 1},
        {2, 33, 4, 2, 4, 3, 16, 0, 1}, /* groups of 2 heads */
        {2, 33, 4, 1, 4, 3, 16, 1, 0}, /* one q/k head for all value heads */
        {1, 40, 2, 1, 2, 2, 1, 0, 0},  /* chunk 1: every pair is inter-chunk */
        {1, 40, 2, 1, 2, 2, 1, 1, 1},
        {1, 50, 1, 1, 3, 2, 2, 1, 0},
        {1, 65, 1, 1, 5, 4, 8, 0, 1},  /* power of two + 1 */
        {1, 64, 1, 1, 5, 4, 8, 1, 0},
        {1, 130, 2, 1, 6, 3, 0, 0, 0}, /* default chunk 64, 3 chunks */
        {1, 130, 2, 1, 6, 3, 0, 1, 1},
    };
    lla_backend *be;
    int i, d;
    assert_int_equal(lla_backend_open("scalar", &be), LLA_OK);
    for (d = 0; d < 2; ++d)
        for (i = 0; i < (int)(sizeof shapes / sizeof shapes[0]); ++i) {
            rand_case c;
            memset(&c, 0, sizeof c);
            lla_problem_init(&c.p, variant, shapes[i].strong ? LLA_HIERARCHY_STRONG : LLA_HIERARCHY_WEAK,
                             shapes[i].B, shapes[i].T, shapes[i].H, shapes[i].G, shapes[i].K,
                             shapes[i].V);
            c.p.chunk = shapes[i].chunk;
            c.p.scale = 0.5;
            c.p.levels += i % 2; /* sometimes an extra, unused level */
            c.strided = shapes[i].strided;
            c.dtype = d ? LLA_DTYPE_F32 : LLA_DTYPE_F64;
            check_case(be, &c, 1000 + (uint64_t)(i * 7 + d));
        }
    lla_backend_close(be);
}

/* Packed variable-length batches, including an empty sequence. */
static void varlen_shapes(lla_variant variant) {
    static const int64_t lens[][4] = {{5, 0, 12, 1}, {33, 7, 16, 2}, {1, 1, 1, 1}, {70, 0, 0, 9}};
    lla_backend *be;
    int i, strong;
    assert_int_equal(lla_backend_open("scalar", &be), LLA_OK);
    for (strong = 0; strong < 2; ++strong)
        for (i = 0; i < 4; ++i) {
            rand_case c;
            int b;
            memset(&c, 0, sizeof c);
            c.offsets[0] = 0;
            for (b = 0; b < 4; ++b) c.offsets[b + 1] = c.offsets[b] + lens[i][b];
            lla_problem_init(&c.p, variant, strong ? LLA_HIERARCHY_STRONG : LLA_HIERARCHY_WEAK, 4,
                             c.offsets[4], 2, i % 2 ? 1 : 2, 3, 4);
            c.p.levels = 8;
            c.p.chunk = i % 2 ? 4 : 8;
            c.varlen = 1;
            c.strided = i % 2;
            c.dtype = i == 3 ? LLA_DTYPE_F32 : LLA_DTYPE_F64;
            check_case(be, &c, 2000 + (uint64_t)(i + 10 * strong));
        }
    lla_backend_close(be);
}

/* Random shapes drawn from a fixed seed. */
static void random_shapes(lla_variant variant, int count) {
    lla_backend *be;
    test_rng r;
    int i;
    r.s = 77 + (uint64_t)variant;
    assert_int_equal(lla_backend_open("scalar", &be), LLA_OK);
    for (i = 0; i < count; ++i) {
        rand_case c;
        int64_t G = rng_int(&r, 1, 2), H = G * rng_int(&r, 1, 2);
        memset(&c, 0, sizeof c);
        lla_problem_init(&c.p, variant, rng_int(&r, 0, 1) ? LLA_HIERARCHY_STRONG : LLA_HIERARCHY_WEAK,
                         rng_int(&r, 1, 2), rng_int(&r, 1, 90), H, G, rng_int(&r, 1, 6),
                         rng_int(&r, 1, 6));
        c.p.chunk = (int64_t)1 << rng_int(&r, 0, 5);
        c.p.scale = rng_uniform(&r, 0.3, 1.2);
        c.strided = (int)rng_int(&r, 0, 1);
        c.dtype = rng_int(&r, 0, 3) == 0 ? LLA_DTYPE_F32 : LLA_DTYPE_F64;
        check_case(be, &c, 3000 + (uint64_t)i);
    }
    lla_backend_close(be);
}

static void mamba2_edge_shapes(void **state) { (void)state; edge_shapes(LLA_VARIANT_MAMBA2); }
static void gdn_edge_shapes(void **state) { (void)state; edge_shapes(LLA_VARIANT_GDN); }
static void mamba2_varlen(void **state) { (void)state; varlen_shapes(LLA_VARIANT_MAMBA2); }
static void gdn_varlen(void **state) { (void)state; varlen_shapes(LLA_VARIANT_GDN); }
static void mamba2_random(void **state) { (void)state; random_shapes(LLA_VARIANT_MAMBA2, 12); }
static void gdn_random(void **state) { (void)state; random_shapes(LLA_VARIANT_GDN, 12); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mamba2_edge_shapes), cmocka_unit_test(gdn_edge_shapes),
        cmocka_unit_test(mamba2_varlen),      cmocka_unit_test(gdn_varlen),
        cmocka_unit_test(mamba2_random),      cmocka_unit_test(gdn_random),
    };
    return cmocka_run_group_tests_name("backward_random", tests, NULL, NULL);
}
