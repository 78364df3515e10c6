/*
 * test_opencl_decode.c - the opencl backend's decode step: token by token against the
 * golden outputs and final states, and prefill (forward with a final state) -> decode
 * hand-off with ragged positions against the float64 oracle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <math.h>

#include "golden.h"
#include "internal.h"
#include "ocl_testutil.h"
#include "testutil.h"

#define TOL 1e-5

static lla_backend *be;

/* One token of a [B, T, heads, dim] float64 golden tensor, as a float32 [B, 1, heads, dim]
 * block in buf. */
static void token_f32(const golden_tensor *g, int64_t B, int64_t T, int64_t heads, int64_t dim,
                      int64_t t, float *buf) {
    int64_t b, i;
    for (b = 0; b < B; ++b)
        for (i = 0; i < heads * dim; ++i)
            buf[b * heads * dim + i] = (float)g->data[(b * T + t) * heads * dim + i];
}

static void golden_decode(void **state) {
    char *names[64], path[1024];
    int n = golden_list(golden_dir(), names, 64), i;
    (void)state;
    if (n < 11) fail_msg("found %d golden files in %s, expected at least 11", n, golden_dir());
    for (i = 0; i < n; ++i) {
        golden_case *c;
        const golden_tensor *gq, *gk, *gv, *gg, *gl, *gb, *go, *gs;
        lla_problem p;
        lla_state st;
        size_t sb, per_o;
        void *smem;
        float *hbuf, *hq, *hk, *hv, *hg, *hl, *hbeta, *out, *hstate;
        void *dq, *dk, *dv, *dg, *dl, *dbeta, *dout;
        lla_inputs x;
        lla_tensor o;
        int64_t t, b, B, H, K, V, NL;
        double err_o, err_s;
        snprintf(path, sizeof path, "%s/%s", golden_dir(), names[i]);
        c = golden_load(path);
        assert_non_null(c);
        B = c->B; H = c->H; K = c->K; V = c->V; NL = c->NL;
        gq = golden_get(c, "q"); gk = golden_get(c, "k"); gv = golden_get(c, "v");
        gg = golden_get(c, "g"); gl = golden_get(c, "lambda"); gb = golden_get(c, "beta");
        go = golden_get(c, "o"); gs = golden_get(c, "state");
        assert_non_null(gq); assert_non_null(go); assert_non_null(gs);
        lla_problem_init(&p, c->variant, c->hierarchy, B, 1, H, H, K, V);
        p.levels = NL;
        assert_int_equal(lla_state_bytes(&p, LLA_DTYPE_F32, &sb), LLA_OK);
        assert_int_equal(lla_malloc(be, sb, &smem), LLA_OK);
        assert_int_equal(lla_state_init(be, &p, LLA_DTYPE_F32, smem, sb, &st), LLA_OK);
        hbuf = (float *)malloc((size_t)(B * H * (2 * K + 3 * V + NL + 2)) * sizeof(float));
        assert_non_null(hbuf);
        hq = hbuf; hk = hq + B * H * K; hv = hk + B * H * K; hg = hv + B * H * V;
        hl = hg + B * H; hbeta = hl + B * H * NL; out = hbeta + B * H;
        assert_int_equal(lla_malloc(be, (size_t)(B * H * K) * 4, &dq), LLA_OK);
        assert_int_equal(lla_malloc(be, (size_t)(B * H * K) * 4, &dk), LLA_OK);
        assert_int_equal(lla_malloc(be, (size_t)(B * H * V) * 4, &dv), LLA_OK);
        assert_int_equal(lla_malloc(be, (size_t)(B * H) * 4, &dg), LLA_OK);
        assert_int_equal(lla_malloc(be, (size_t)(B * H * NL) * 4, &dl), LLA_OK);
        assert_int_equal(lla_malloc(be, (size_t)(B * H) * 4, &dbeta), LLA_OK);
        assert_int_equal(lla_malloc(be, (size_t)(B * H * V) * 4, &dout), LLA_OK);
        x.q = lla_tensor_contiguous(dq, LLA_DTYPE_F32, 1, H, K);
        x.k = lla_tensor_contiguous(dk, LLA_DTYPE_F32, 1, H, K);
        x.v = lla_tensor_contiguous(dv, LLA_DTYPE_F32, 1, H, V);
        x.g = lla_tensor_contiguous(dg, LLA_DTYPE_F32, 1, H, 1);
        x.lambda = lla_tensor_contiguous(dl, LLA_DTYPE_F32, 1, H, NL);
        x.beta = lla_tensor_contiguous(dbeta, LLA_DTYPE_F32, 1, H, 1);
        o = lla_tensor_contiguous(dout, LLA_DTYPE_F32, 1, H, V);
        per_o = (size_t)(B * H * V);
        {
            float *all = (float *)malloc((size_t)go->count * sizeof(float));
            assert_non_null(all);
            for (t = 0; t < c->T; ++t) {
                token_f32(gq, B, c->T, H, K, t, hq);
                token_f32(gk, B, c->T, H, K, t, hk);
                token_f32(gv, B, c->T, H, V, t, hv);
                token_f32(gg, B, c->T, H, 1, t, hg);
                token_f32(gl, B, c->T, H, NL, t, hl);
                if (gb) token_f32(gb, B, c->T, H, 1, t, hbeta);
                assert_int_equal(lla_upload(be, dq, hq, (size_t)(B * H * K) * 4), LLA_OK);
                assert_int_equal(lla_upload(be, dk, hk, (size_t)(B * H * K) * 4), LLA_OK);
                assert_int_equal(lla_upload(be, dv, hv, (size_t)(B * H * V) * 4), LLA_OK);
                assert_int_equal(lla_upload(be, dg, hg, (size_t)(B * H) * 4), LLA_OK);
                assert_int_equal(lla_upload(be, dl, hl, (size_t)(B * H * NL) * 4), LLA_OK);
                if (gb) assert_int_equal(lla_upload(be, dbeta, hbeta, (size_t)(B * H) * 4), LLA_OK);
                if (lla_decode_step(be, &p, &st, &x, o) != LLA_OK)
                    fail_msg("%s: decode step %lld: %s", names[i], (long long)t, lla_last_error());
                assert_int_equal(lla_download(be, out, dout, per_o * 4), LLA_OK);
                for (b = 0; b < B; ++b)
                    memcpy(all + (b * c->T + t) * H * V, out + b * H * V, (size_t)(H * V) * 4);
            }
            err_o = rel_err_f32(all, go->data, (size_t)go->count);
            free(all);
        }
        hstate = (float *)malloc(sb);
        assert_non_null(hstate);
        assert_int_equal(lla_download(be, hstate, smem, sb), LLA_OK);
        err_s = rel_err_f32((const float *)(void *)((char *)hstate + lla_state_values_offset(B)),
                            gs->data, (size_t)gs->count);
        print_message("%-24s decode o rel err %.3g, state rel err %.3g\n", names[i], err_o, err_s);
        if (!(err_o <= TOL)) fail_msg("%s: decode o rel err %g", names[i], err_o);
        if (!(err_s <= TOL)) fail_msg("%s: decode state rel err %g", names[i], err_s);
        for (b = 0; b < B; ++b) assert_int_equal(((int64_t *)(void *)hstate)[b], c->T);
        lla_free(be, dq); lla_free(be, dk); lla_free(be, dv); lla_free(be, dg);
        lla_free(be, dl); lla_free(be, dbeta); lla_free(be, dout); lla_free(be, smem);
        free(hbuf);
        free(hstate);
        golden_free(c);
        free(names[i]);
    }
}

/* Packed prefill of prefix[b] tokens per sequence (forward with a final state), then
 * `steps` decode steps for the whole batch, in strided views; every output is compared
 * with the oracle of the full sequences (prefix[b] + steps tokens each). */
static void prefill_then_decode(void **state) {
    enum { NB = 3, STEPS = 11 };
    static const struct {
        lla_variant variant;
        lla_hierarchy hierarchy;
        int64_t chunk;
    } cases[] = {
        {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 8},
        {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG, 4},
        {LLA_VARIANT_GDN, LLA_HIERARCHY_WEAK, 8},
        {LLA_VARIANT_GDN, LLA_HIERARCHY_STRONG, 0},
    };
    const int64_t prefix[NB] = {0, 13, 40};
    size_t ci;
    (void)state;
    for (ci = 0; ci < sizeof cases / sizeof cases[0]; ++ci) {
        lla_problem full, pre, dec;
        int64_t off_full[NB + 1], off_pre[NB + 1], b, s, h, d;
        test_data *td;
        lla_tensor ref;
        size_t sb, ws_bytes;
        void *smem, *ws;
        lla_state st;
        dev_arena a;
        double num = 0.0, den = 0.0, err;
        lla_problem_init(&full, cases[ci].variant, cases[ci].hierarchy, NB, 0, 4, 2, 8, 6);
        full.scale = 0.5;
        off_full[0] = off_pre[0] = 0;
        for (b = 0; b < NB; ++b) {
            off_full[b + 1] = off_full[b] + prefix[b] + STEPS;
            off_pre[b + 1] = off_pre[b] + prefix[b];
        }
        full.seqlen = off_full[NB];
        full.levels = lla_num_levels(prefix[NB - 1] + STEPS);
        full.chunk = cases[ci].chunk;
        td = td_create(&full, off_full, LLA_DTYPE_F32, 1, 99 + ci);
        ref = td_oracle(td);
        arena_init(&a, be, 1u << 22);
        assert_int_equal(lla_state_bytes(&td->p, LLA_DTYPE_F32, &sb), LLA_OK);
        assert_int_equal(lla_malloc(be, sb, &smem), LLA_OK);
        assert_int_equal(lla_state_init(be, &td->p, LLA_DTYPE_F32, smem, sb, &st), LLA_OK);
        assert_int_equal(lla_forward_workspace(be, &td->p, LLA_DTYPE_F32, &ws_bytes), LLA_OK);
        assert_int_equal(lla_malloc(be, ws_bytes, &ws), LLA_OK);

        /* prefill: the packed prefixes, copied token by token into contiguous tensors */
        pre = td->p;
        pre.seq_offsets = off_pre;
        pre.seqlen = off_pre[NB];
        {
            lla_tensor *src[6] = {&td->x.q, &td->x.k, &td->x.v, &td->x.g, &td->x.lambda,
                                  &td->x.beta};
            const int64_t dims[6] = {full.dk, full.dk, full.dv, 1, full.levels, 1};
            const int64_t heads[6] = {full.qk_heads, full.qk_heads, full.heads, full.heads,
                                      full.heads, full.heads};
            lla_tensor hx[6], dx[6], oh, od;
            lla_inputs xd;
            int k;
            int64_t n = pre.seqlen;
            for (k = 0; k < 6; ++k) {
                float *buf = (float *)malloc((size_t)(n * heads[k] * dims[k] + 1) * 4);
                int64_t row = 0;
                assert_non_null(buf);
                for (b = 0; b < NB; ++b)
                    for (s = 0; s < prefix[b]; ++s, ++row)
                        for (h = 0; h < heads[k]; ++h)
                            for (d = 0; d < dims[k]; ++d)
                                buf[(row * heads[k] + h) * dims[k] + d] =
                                    (float)lla__load(src[k], 0, off_full[b] + s, h, d);
                hx[k] = lla_tensor_contiguous(buf, LLA_DTYPE_F32, n, heads[k], dims[k]);
                dx[k] = n ? dev_copy(&a, &hx[k], 1) : hx[k];
            }
            if (n > 0) {
                oh = lla_tensor_contiguous(malloc((size_t)(n * full.heads * full.dv) * 4),
                                           LLA_DTYPE_F32, n, full.heads, full.dv);
                assert_non_null(oh.data);
                memset(oh.data, 0xff, (size_t)(n * full.heads * full.dv) * 4);
                od = dev_copy(&a, &oh, 1);
                xd.q = dx[0]; xd.k = dx[1]; xd.v = dx[2]; xd.g = dx[3]; xd.lambda = dx[4];
                xd.beta = dx[5];
                if (lla_forward(be, &pre, &xd, od, NULL, &st, ws, ws_bytes) != LLA_OK)
                    fail_msg("prefill: %s", lla_last_error());
                dev_fetch(&a, &od, &oh, 1);
                for (b = 0; b < NB; ++b)
                    for (s = 0; s < prefix[b]; ++s)
                        for (h = 0; h < full.heads; ++h)
                            for (d = 0; d < full.dv; ++d) {
                                double x = ((float *)oh.data)[((off_pre[b] + s) * full.heads + h) * full.dv + d];
                                double y = lla__load(&ref, 0, off_full[b] + s, h, d);
                                num += (x - y) * (x - y);
                                den += y * y;
                                if (x != x) num = INFINITY;
                            }
                free(oh.data);
            }
            for (k = 0; k < 6; ++k) free(hx[k].data);
        }

        /* decode: step j feeds token prefix[b] + j of every sequence, as a strided view */
        dec = td->p;
        dec.seq_offsets = NULL;
        dec.seqlen = 1;
        {
            int64_t j;
            lla_tensor *src[6] = {&td->x.q, &td->x.k, &td->x.v, &td->x.g, &td->x.lambda,
                                  &td->x.beta};
            const int64_t dims[6] = {full.dk, full.dk, full.dv, 1, full.levels, 1};
            const int64_t heads[6] = {full.qk_heads, full.qk_heads, full.heads, full.heads,
                                      full.heads, full.heads};
            for (j = 0; j < STEPS; ++j) {
                lla_tensor dx[6], oh, od;
                lla_inputs xd;
                float *out;
                int k;
                for (k = 0; k < 6; ++k) {
                    /* padded layout: batch stride > heads*dim, head stride > dim */
                    int64_t hs = dims[k] + 2, bs = heads[k] * hs + 3;
                    float *buf = (float *)malloc((size_t)(NB * bs) * 4);
                    lla_tensor t;
                    assert_non_null(buf);
                    memset(buf, 0xff, (size_t)(NB * bs) * 4);
                    for (b = 0; b < NB; ++b)
                        for (h = 0; h < heads[k]; ++h)
                            for (d = 0; d < dims[k]; ++d)
                                buf[b * bs + h * hs + d] =
                                    (float)lla__load(src[k], 0, off_full[b] + prefix[b] + j, h, d);
                    t.data = buf;
                    t.dtype = LLA_DTYPE_F32;
                    t.strides[0] = bs;
                    t.strides[1] = bs;
                    t.strides[2] = hs;
                    t.strides[3] = 1;
                    dx[k] = dev_copy(&a, &t, NB);
                    free(buf);
                }
                out = (float *)malloc((size_t)(NB * full.heads * full.dv) * 4);
                assert_non_null(out);
                memset(out, 0xff, (size_t)(NB * full.heads * full.dv) * 4);
                oh = lla_tensor_contiguous(out, LLA_DTYPE_F32, 1, full.heads, full.dv);
                od = dev_copy(&a, &oh, NB);
                xd.q = dx[0]; xd.k = dx[1]; xd.v = dx[2]; xd.g = dx[3]; xd.lambda = dx[4];
                xd.beta = dx[5];
                if (lla_decode_step(be, &dec, &st, &xd, od) != LLA_OK)
                    fail_msg("decode step %lld: %s", (long long)j, lla_last_error());
                dev_fetch(&a, &od, &oh, NB);
                for (b = 0; b < NB; ++b)
                    for (h = 0; h < full.heads; ++h)
                        for (d = 0; d < full.dv; ++d) {
                            double x = out[(b * full.heads + h) * full.dv + d];
                            double y = lla__load(&ref, 0, off_full[b] + prefix[b] + j, h, d);
                            num += (x - y) * (x - y);
                            den += y * y;
                            if (x != x) num = INFINITY;
                        }
                free(out);
            }
        }
        {
            int64_t pos[NB];
            assert_int_equal(lla_download(be, pos, smem, sizeof pos), LLA_OK);
            for (b = 0; b < NB; ++b) assert_int_equal(pos[b], prefix[b] + STEPS);
        }
        err = sqrt(num / den);
        print_message("prefill -> decode case %zu: rel err %.3g\n", ci, err);
        if (!(err <= TOL)) fail_msg("prefill -> decode case %zu: rel err %g", ci, err);
        lla_free(be, ws);
        lla_free(be, smem);
        arena_free(&a);
        td_free(td);
    }
}

static int teardown(void **state) {
    (void)state;
    lla_backend_close(be);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(golden_decode),
        cmocka_unit_test(prefill_then_decode),
    };
    be = ocl_open_or_skip("opencl_decode");
    return cmocka_run_group_tests_name("opencl_decode", tests, NULL, teardown);
}
