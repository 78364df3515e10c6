/*
 * test_opencl_backward.c - the opencl backend's backward: every golden file's gradients
 * (float32 within 1e-4), random shapes against the float64 oracle gradients, and with
 * initial state, d_final and d_initial against the scalar backend's backward.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bwutil.h"
#include "golden.h"
#include "internal.h"
#include "ocl_testutil.h"
#include "testutil.h"

#define TOL_GRAD 1e-4

static lla_backend *be, *scalar;

/* Device copies of a full set of gradient tensors (same layout as the host ones). */
static lla_grads dev_grads(dev_arena *a, const lla_grads *h, int64_t bt) {
    lla_grads d;
    d.dq = dev_copy(a, &h->dq, bt);
    d.dk = dev_copy(a, &h->dk, bt);
    d.dv = dev_copy(a, &h->dv, bt);
    d.dg = dev_copy(a, &h->dg, bt);
    d.dlambda = dev_copy(a, &h->dlambda, bt);
    d.dbeta = dev_copy(a, &h->dbeta, bt);
    return d;
}

static void fetch_grads(dev_arena *a, const lla_grads *d, const lla_grads *h, int64_t bt) {
    dev_fetch(a, &d->dq, &h->dq, bt);
    dev_fetch(a, &d->dk, &h->dk, bt);
    dev_fetch(a, &d->dv, &h->dv, bt);
    dev_fetch(a, &d->dg, &h->dg, bt);
    dev_fetch(a, &d->dlambda, &h->dlambda, bt);
    dev_fetch(a, &d->dbeta, &h->dbeta, bt);
}

/* The padding of every gradient view still holds its fill. */
static void check_guards(const lla_problem *p, const lla_grads *g, const char *name) {
    int64_t bt = td_tensor_batch(p), T = p->seqlen;
    if (!guards_intact(&g->dq, bt, T, p->qk_heads, p->dk) ||
        !guards_intact(&g->dk, bt, T, p->qk_heads, p->dk) ||
        !guards_intact(&g->dv, bt, T, p->heads, p->dv) ||
        !guards_intact(&g->dg, bt, T, p->heads, 1) ||
        !guards_intact(&g->dlambda, bt, T, p->heads, p->levels) ||
        !guards_intact(&g->dbeta, bt, T, p->heads, 1))
        fail_msg("%s: a gradient was written outside its view", name);
}

/* Runs the opencl backward of td (inputs copied to the device) into host gradients g. */
static lla_status run_device(test_data *td, const lla_tensor *d_o, lla_grads *g,
                             const lla_state *initial_host, const lla_state *d_final_host,
                             lla_state *d_initial_host, int in_place) {
    const lla_problem *p = &td->p;
    int64_t bt = td_tensor_batch(p);
    dev_arena a;
    lla_inputs x;
    lla_tensor ddo;
    lla_grads dg;
    lla_state si, sf, sd;
    size_t ws_bytes = 0, sb = 0;
    void *ws = NULL;
    lla_status st;
    arena_init(&a, be, 1u << 24);
    x = dev_inputs(&a, td);
    ddo = dev_copy(&a, d_o, bt);
    dg = dev_grads(&a, g, bt);
    if (initial_host || d_final_host || d_initial_host)
        assert_int_equal(lla_state_bytes(p, LLA_DTYPE_F32, &sb), LLA_OK);
    if (initial_host) {
        si = *initial_host;
        si.memory = arena_put8(&a, initial_host->memory, sb);
    }
    if (d_final_host) {
        sf = *d_final_host;
        sf.memory = arena_put8(&a, d_final_host->memory, sb);
    }
    if (d_initial_host) {
        sd = *d_initial_host;
        sd.memory = in_place ? si.memory : arena_put8(&a, d_initial_host->memory, sb);
    }
    assert_int_equal(lla_backward_workspace(be, p, LLA_DTYPE_F32, &ws_bytes), LLA_OK);
    if (ws_bytes) assert_int_equal(lla_malloc(be, ws_bytes, &ws), LLA_OK);
    st = lla_backward(be, p, &x, ddo, initial_host ? &si : NULL, d_final_host ? &sf : NULL, &dg,
                      d_initial_host ? &sd : NULL, ws, ws_bytes);
    if (st == LLA_OK) {
        fetch_grads(&a, &dg, g, bt);
        if (d_initial_host)
            assert_int_equal(lla_download(be, d_initial_host->memory, sd.memory, sb), LLA_OK);
    }
    lla_free(be, ws);
    arena_free(&a);
    return st;
}

/* ------------------------------------------------------------------ golden files */

static void fill_from(const lla_problem *p, lla_tensor *x, const golden_tensor *g, int64_t heads,
                      int64_t dim) {
    int64_t b, t, h, d, i = 0;
    for (b = 0; b < p->batch; ++b)
        for (t = 0; t < p->seqlen; ++t)
            for (h = 0; h < heads; ++h)
                for (d = 0; d < dim; ++d) lla__store(x, b, t, h, d, g->data[i++]);
}

static void golden_backward(void **state) {
    static const char *names[6] = {"dq", "dk", "dv", "dg", "dlambda", "dbeta"};
    char *files[64], path[1024];
    int n = golden_list(golden_dir(), files, 64), i, ci;
    (void)state;
    if (n < 11) fail_msg("found %d golden files in %s, expected at least 11", n, golden_dir());
    for (i = 0; i < n; ++i) {
        golden_case *c;
        snprintf(path, sizeof path, "%s/%s", golden_dir(), files[i]);
        c = golden_load(path);
        assert_non_null(c);
        for (ci = 0; ci < 2; ++ci) {
            const int64_t chunk = ci ? 4 : 0;
            lla_problem p;
            test_data *td;
            lla_tensor d_o;
            lla_grads g;
            const lla_tensor *ts[6];
            int64_t dims[6];
            double worst = 0.0;
            int k;
            lla_problem_init(&p, c->variant, c->hierarchy, c->B, c->T, c->H, c->H, c->K, c->V);
            p.levels = c->NL;
            p.chunk = chunk;
            td = td_create(&p, NULL, LLA_DTYPE_F32, ci, 1); /* chunk 4: strided views */
            fill_from(&td->p, &td->x.q, golden_get(c, "q"), c->H, c->K);
            fill_from(&td->p, &td->x.k, golden_get(c, "k"), c->H, c->K);
            fill_from(&td->p, &td->x.v, golden_get(c, "v"), c->H, c->V);
            fill_from(&td->p, &td->x.g, golden_get(c, "g"), c->H, 1);
            fill_from(&td->p, &td->x.lambda, golden_get(c, "lambda"), c->H, c->NL);
            if (c->variant == LLA_VARIANT_GDN)
                fill_from(&td->p, &td->x.beta, golden_get(c, "beta"), c->H, 1);
            d_o = td_tensor(td, c->H, c->V, LLA_DTYPE_F32);
            fill_from(&td->p, &d_o, golden_get(c, "do"), c->H, c->V);
            g = bw_grads(td, LLA_DTYPE_F32);
            if (run_device(td, &d_o, &g, NULL, NULL, NULL, 0) != LLA_OK)
                fail_msg("%s: lla_backward: %s", files[i], lla_last_error());
            ts[0] = &g.dq; ts[1] = &g.dk; ts[2] = &g.dv; ts[3] = &g.dg; ts[4] = &g.dlambda;
            ts[5] = &g.dbeta;
            dims[0] = dims[1] = c->K; dims[2] = c->V; dims[3] = 1; dims[4] = c->NL; dims[5] = 1;
            for (k = 0; k < (c->variant == LLA_VARIANT_GDN ? 6 : 5); ++k) {
                const golden_tensor *ref = golden_get(c, names[k]);
                double e;
                if (!ref) fail_msg("%s: golden %s missing", files[i], names[k]);
                e = rel_err_array(&td->p, ts[k], ref->data, c->H, dims[k]);
                if (!(e <= worst)) worst = e;
                if (!(e <= TOL_GRAD))
                    fail_msg("%s chunk %lld: %s rel err %g > %g", files[i], (long long)chunk,
                             names[k], e, TOL_GRAD);
            }
            check_guards(&td->p, &g, files[i]);
            print_message("%-24s chunk %-2lld worst gradient rel err %.3g\n", files[i],
                          (long long)chunk, worst);
            td_free(td);
        }
        golden_free(c);
        free(files[i]);
    }
}

/* ------------------------------------------------------------------ random shapes */

typedef struct shape {
    lla_variant variant;
    lla_hierarchy hierarchy;
    int64_t B, T, H, G, K, V, chunk;
    int strided, varlen;
} shape;

static const shape shapes[] = {
    {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 1, 1, 1, 1, 4, 3, 0, 0, 0},
    {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 2, 45, 4, 2, 8, 5, 8, 1, 0},
    {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG, 1, 70, 2, 1, 6, 9, 4, 0, 0},
    {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 3, 0, 2, 2, 5, 4, 4, 1, 1},
    {LLA_VARIANT_GDN, LLA_HIERARCHY_WEAK, 1, 1, 1, 1, 4, 4, 0, 0, 0},
    {LLA_VARIANT_GDN, LLA_HIERARCHY_WEAK, 2, 37, 4, 2, 8, 6, 8, 1, 0},
    {LLA_VARIANT_GDN, LLA_HIERARCHY_STRONG, 1, 33, 2, 1, 6, 5, 2, 0, 0},
    {LLA_VARIANT_GDN, LLA_HIERARCHY_WEAK, 3, 0, 2, 1, 5, 3, 4, 1, 1},
};

static test_data *make_data(const shape *s, uint64_t seed) {
    lla_problem p;
    int64_t offsets[TD_MAX_BATCH + 1];
    lla_problem_init(&p, s->variant, s->hierarchy, s->B, s->T, s->H, s->G, s->K, s->V);
    p.chunk = s->chunk;
    p.scale = 0.75;
    if (s->varlen) {
        int64_t b, longest = 0;
        test_rng r;
        r.s = seed;
        offsets[0] = 0;
        for (b = 0; b < s->B; ++b) {
            int64_t len = b == 0 ? 0 : (b == 1 ? 1 : rng_int(&r, 2, 40));
            offsets[b + 1] = offsets[b] + len;
            if (len > longest) longest = len;
        }
        p.seqlen = offsets[s->B];
        p.levels = lla_num_levels(longest + 30); /* room for an initial position */
        return td_create(&p, offsets, LLA_DTYPE_F32, s->strided, seed);
    }
    p.levels = lla_num_levels(s->T + 30);
    return td_create(&p, NULL, LLA_DTYPE_F32, s->strided, seed);
}

static void shape_name(const shape *s, char *buf, size_t len) {
    snprintf(buf, len, "%s/%s B%lld T%lld H%lld G%lld K%lld V%lld chunk%lld%s%s",
             s->variant == LLA_VARIANT_GDN ? "gdn" : "mamba2",
             s->hierarchy == LLA_HIERARCHY_WEAK ? "weak" : "strong", (long long)s->B,
             (long long)s->T, (long long)s->H, (long long)s->G, (long long)s->K, (long long)s->V,
             (long long)s->chunk, s->strided ? " strided" : "", s->varlen ? " varlen" : "");
}

static void random_backward_vs_oracle(void **state) {
    size_t i;
    (void)state;
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; ++i) {
        test_data *td = make_data(&shapes[i], 300 + i);
        lla_tensor d_o = bw_random_do(td, LLA_DTYPE_F32, 900 + i);
        lla_grads ref = bw_oracle(td, d_o), g = bw_grads(td, LLA_DTYPE_F32);
        const char *worst;
        char name[160];
        double e;
        shape_name(&shapes[i], name, sizeof name);
        if (run_device(td, &d_o, &g, NULL, NULL, NULL, 0) != LLA_OK)
            fail_msg("%s: lla_backward: %s", name, lla_last_error());
        e = bw_grads_err(&td->p, &g, &ref, &worst);
        print_message("%-52s vs oracle: worst %-7s rel err %.3g\n", name, worst, e);
        if (!(e <= TOL_GRAD)) fail_msg("%s: %s rel err %g > %g", name, worst, e, TOL_GRAD);
        check_guards(&td->p, &g, name);
        td_free(td);
    }
}

/* With an initial state at ragged positions, d_final and d_initial: every gradient and
 * d_initial against the scalar backend (same float32 inputs); then d_initial in place of
 * initial must give the same bytes. */
static void states_vs_scalar(void **state) {
    size_t i;
    (void)state;
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; ++i) {
        test_data *td = make_data(&shapes[i], 500 + i);
        const lla_problem *p = &td->p;
        int64_t pos[TD_MAX_BATCH], b;
        lla_tensor d_o = bw_random_do(td, LLA_DTYPE_F32, 700 + i);
        lla_grads gs = bw_grads(td, LLA_DTYPE_F32), gd = bw_grads(td, LLA_DTYPE_F32);
        lla_state init, dfin, dini_s, dini_d, inplace;
        double *vs, *vd, e, ed;
        size_t n, sb;
        const char *worst;
        char name[160];
        shape_name(&shapes[i], name, sizeof name);
        for (b = 0; b < p->batch; ++b) pos[b] = (int64_t)((b * 7 + i * 3) % 29); /* ragged */
        init = bw_state(td, scalar, LLA_DTYPE_F32, pos, 11 + i);
        dfin = bw_state(td, scalar, LLA_DTYPE_F32, pos, 13 + i);
        dini_s = bw_state(td, scalar, LLA_DTYPE_F32, NULL, 0);
        dini_d = bw_state(td, scalar, LLA_DTYPE_F32, NULL, 0);
        inplace = bw_state(td, scalar, LLA_DTYPE_F32, NULL, 0);
        assert_int_equal(lla_state_bytes(p, LLA_DTYPE_F32, &sb), LLA_OK);
        memcpy(inplace.memory, init.memory, sb);
        if (bw_scalar(scalar, td, d_o, &init, &dfin, &gs, &dini_s) != LLA_OK)
            fail_msg("%s: scalar backward: %s", name, lla_last_error());
        if (run_device(td, &d_o, &gd, &init, &dfin, &dini_d, 0) != LLA_OK)
            fail_msg("%s: opencl backward: %s", name, lla_last_error());
        e = bw_grads_err(p, &gd, &gs, &worst);
        vs = bw_state_values(td, &dini_s, &n);
        vd = bw_state_values(td, &dini_d, &n);
        ed = rel_err_plain(vd, vs, n);
        print_message("%-52s vs scalar: worst %-7s %.3g, d_initial %.3g\n", name, worst, e, ed);
        if (!(e <= TOL_GRAD)) fail_msg("%s: %s rel err vs scalar %g", name, worst, e);
        if (!(ed <= TOL_GRAD)) fail_msg("%s: d_initial rel err vs scalar %g", name, ed);
        for (b = 0; b < p->batch; ++b) assert_int_equal(lla__state_positions(&dini_d)[b], pos[b]);
        /* d_initial in place of the initial state */
        if (run_device(td, &d_o, &gd, &inplace, &dfin, &inplace, 1) != LLA_OK)
            fail_msg("%s: opencl backward in place: %s", name, lla_last_error());
        if (memcmp(inplace.memory, dini_d.memory, sb) != 0)
            fail_msg("%s: d_initial in place differs from d_initial apart", name);
        td_free(td);
    }
}

/* A sequence that would pass its levels: LLA_ERR_STATE, gradients untouched. */
static void capacity(void **state) {
    shape s = shapes[1];
    test_data *td;
    lla_tensor d_o;
    lla_grads g;
    lla_state init;
    int64_t pos[2] = {0, 0};
    unsigned char *before;
    size_t n;
    (void)state;
    td = make_data(&s, 42);
    d_o = bw_random_do(td, LLA_DTYPE_F32, 43);
    g = bw_grads(td, LLA_DTYPE_F32);
    pos[1] = ((int64_t)1 << (td->p.levels - 1)) - td->p.seqlen + 1; /* one token too many */
    init = bw_state(td, scalar, LLA_DTYPE_F32, pos, 0); /* host copy; run_device uploads it */
    n = tensor_bytes(&g.dv, td->p.batch);
    before = (unsigned char *)malloc(n);
    assert_non_null(before);
    memcpy(before, g.dv.data, n);
    assert_int_equal(run_device(td, &d_o, &g, &init, NULL, NULL, 0), LLA_ERR_STATE);
    print_message("  %s\n", lla_last_error());
    assert_non_null(strstr(lla_last_error(), "sequence 1"));
    assert_memory_equal(g.dv.data, before, n);
    free(before);
    td_free(td);
}

static int teardown(void **state) {
    (void)state;
    lla_backend_close(be);
    lla_backend_close(scalar);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(golden_backward),
        cmocka_unit_test(random_backward_vs_oracle),
        cmocka_unit_test(states_vs_scalar),
        cmocka_unit_test(capacity),
    };
    be = ocl_open_or_skip("opencl_backward");
    if (lla_backend_open("scalar", &scalar) != LLA_OK) return 1;
    return cmocka_run_group_tests_name("opencl_backward", tests, NULL, teardown);
}
