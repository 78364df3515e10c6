/*
 * test_opencl_forward.c - the opencl backend's forward against the golden files and the
 * float64 oracle (float32 within 1e-5), including final states, continuation from an
 * initial state, varlen batches, strided views, grouped q/k and several chunk lengths.
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

/* ------------------------------------------------------------------ golden files */

static float *to_f32(const golden_tensor *t) {
    float *f = (float *)malloc((size_t)t->count * sizeof *f);
    int64_t i;
    if (!f) abort();
    for (i = 0; i < t->count; ++i) f[i] = (float)t->data[i];
    return f;
}

static const golden_tensor *need(const golden_case *c, const char *name) {
    const golden_tensor *t = golden_get(c, name);
    if (!t) fail_msg("%s: tensor %s missing", c->name, name);
    return t;
}

/* Forward of one golden case with chunk `chunk`, on the device, with a final state. */
static void golden_case_forward(const char *file, int64_t chunk) {
    char path[1024];
    golden_case *c;
    const golden_tensor *gq, *gk, *gv, *gg, *gl, *gb, *go, *gs;
    float *hq, *hk, *hv, *hg, *hl, *hb = NULL, *ho, *hstate;
    int64_t *hpos;
    lla_problem p;
    lla_inputs x;
    lla_tensor o;
    lla_state fin;
    dev_arena a;
    size_t state_bytes, ws_bytes, out_bytes;
    void *state_mem, *ws;
    double err_o, err_s;
    int64_t b;

    snprintf(path, sizeof path, "%s/%s", golden_dir(), file);
    c = golden_load(path);
    assert_non_null(c);
    gq = need(c, "q"); gk = need(c, "k"); gv = need(c, "v"); gg = need(c, "g");
    gl = need(c, "lambda"); go = need(c, "o"); gs = need(c, "state");
    gb = golden_get(c, "beta");
    lla_problem_init(&p, c->variant, c->hierarchy, c->B, c->T, c->H, c->H, c->K, c->V);
    p.levels = c->NL;
    p.chunk = chunk;
    hq = to_f32(gq); hk = to_f32(gk); hv = to_f32(gv); hg = to_f32(gg); hl = to_f32(gl);
    if (gb) hb = to_f32(gb);

    arena_init(&a, be, 1u << 22);
    x.q = lla_tensor_contiguous(arena_put(&a, hq, (size_t)gq->count * 4), LLA_DTYPE_F32, c->T, c->H, c->K);
    x.k = lla_tensor_contiguous(arena_put(&a, hk, (size_t)gk->count * 4), LLA_DTYPE_F32, c->T, c->H, c->K);
    x.v = lla_tensor_contiguous(arena_put(&a, hv, (size_t)gv->count * 4), LLA_DTYPE_F32, c->T, c->H, c->V);
    x.g = lla_tensor_contiguous(arena_put(&a, hg, (size_t)gg->count * 4), LLA_DTYPE_F32, c->T, c->H, 1);
    x.lambda = lla_tensor_contiguous(arena_put(&a, hl, (size_t)gl->count * 4), LLA_DTYPE_F32, c->T, c->H, c->NL);
    x.beta = hb ? lla_tensor_contiguous(arena_put(&a, hb, (size_t)gb->count * 4), LLA_DTYPE_F32, c->T, c->H, 1)
                : x.g;
    out_bytes = (size_t)go->count * 4;
    ho = (float *)malloc(out_bytes);
    assert_non_null(ho);
    memset(ho, 0xff, out_bytes);
    o = lla_tensor_contiguous(arena_put(&a, ho, out_bytes), LLA_DTYPE_F32, c->T, c->H, c->V);

    assert_int_equal(lla_state_bytes(&p, LLA_DTYPE_F32, &state_bytes), LLA_OK);
    assert_int_equal(lla_malloc(be, state_bytes, &state_mem), LLA_OK);
    assert_int_equal(lla_state_init(be, &p, LLA_DTYPE_F32, state_mem, state_bytes, &fin), LLA_OK);
    assert_int_equal(lla_forward_workspace(be, &p, LLA_DTYPE_F32, &ws_bytes), LLA_OK);
    assert_int_equal(lla_malloc(be, ws_bytes, &ws), LLA_OK);

    if (lla_forward(be, &p, &x, o, NULL, &fin, ws, ws_bytes) != LLA_OK)
        fail_msg("%s: lla_forward: %s", file, lla_last_error());
    assert_int_equal(lla_download(be, ho, o.data, out_bytes), LLA_OK);
    hstate = (float *)malloc(state_bytes);
    assert_non_null(hstate);
    assert_int_equal(lla_download(be, hstate, state_mem, state_bytes), LLA_OK);
    hpos = (int64_t *)(void *)hstate;
    err_o = rel_err_f32(ho, go->data, (size_t)go->count);
    err_s = rel_err_f32((const float *)(void *)((char *)hstate + lla_state_values_offset(c->B)),
                        gs->data, (size_t)gs->count);
    print_message("%-24s chunk %-3lld o rel err %.3g, final state rel err %.3g\n", file,
                  (long long)chunk, err_o, err_s);
    if (!(err_o <= TOL)) fail_msg("%s chunk %lld: o rel err %g > %g", file, (long long)chunk, err_o, TOL);
    if (!(err_s <= TOL)) fail_msg("%s chunk %lld: state rel err %g > %g", file, (long long)chunk, err_s, TOL);
    for (b = 0; b < c->B; ++b) assert_int_equal(hpos[b], c->T);

    lla_free(be, ws);
    lla_free(be, state_mem);
    arena_free(&a);
    free(hq); free(hk); free(hv); free(hg); free(hl); free(hb); free(ho); free(hstate);
    golden_free(c);
}

static void golden_forward(void **state) {
    char *names[64];
    int n = golden_list(golden_dir(), names, 64), i;
    (void)state;
    if (n < 11) fail_msg("found %d golden files in %s, expected at least 11", n, golden_dir());
    for (i = 0; i < n; ++i) {
        golden_case_forward(names[i], 0);
        golden_case_forward(names[i], 4);
        free(names[i]);
    }
}

/* ------------------------------------------------------------------ random problems */

typedef struct shape {
    lla_variant variant;
    lla_hierarchy hierarchy;
    int64_t B, T, H, G, K, V, chunk, extra_levels;
    int strided;
    int varlen; /* B sequences packed, lengths drawn at random (some 0 or 1) */
} shape;

static const shape shapes[] = {
    /* variant             hierarchy              B  T    H  G  K   V   chunk xl st vl */
    {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK,   1, 1,   1, 1, 4,  3,  0,  0, 0, 0},
    {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK,   2, 77,  4, 2, 8,  5,  8,  1, 1, 0},
    {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK,   1, 129, 2, 1, 16, 24, 16, 0, 0, 0},
    {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK,   3, 0,   2, 2, 6,  7,  4,  0, 1, 1},
    {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG, 1, 1,   1, 1, 3,  2,  0,  0, 0, 0},
    {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG, 2, 65,  3, 3, 8,  4,  4,  0, 1, 0},
    {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG, 1, 200, 1, 1, 12, 9,  1,  2, 0, 0},
    {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG, 4, 0,   2, 1, 5,  6,  8,  0, 0, 1},
    {LLA_VARIANT_GDN,    LLA_HIERARCHY_WEAK,   1, 1,   1, 1, 4,  4,  0,  0, 0, 0},
    {LLA_VARIANT_GDN,    LLA_HIERARCHY_WEAK,   2, 70,  2, 1, 8,  6,  8,  0, 1, 0},
    {LLA_VARIANT_GDN,    LLA_HIERARCHY_WEAK,   1, 131, 2, 2, 16, 8,  32, 1, 0, 0},
    {LLA_VARIANT_GDN,    LLA_HIERARCHY_WEAK,   3, 0,   2, 2, 8,  3,  4,  0, 1, 1},
    {LLA_VARIANT_GDN,    LLA_HIERARCHY_STRONG, 1, 63,  2, 1, 8,  5,  4,  0, 0, 0},
    {LLA_VARIANT_GDN,    LLA_HIERARCHY_STRONG, 2, 0,   1, 1, 6,  6,  2,  0, 1, 1},
    /* a chunk the device's local memory may not hold: the backend picks a smaller one */
    {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK,   1, 300, 1, 1, 32, 16, 1024, 0, 0, 0},
};

static void shape_name(const shape *s, char *buf, size_t len) {
    snprintf(buf, len, "%s/%s B%lld T%lld H%lld G%lld K%lld V%lld chunk%lld%s%s",
             s->variant == LLA_VARIANT_GDN ? "gdn" : "mamba2",
             s->hierarchy == LLA_HIERARCHY_WEAK ? "weak" : "strong", (long long)s->B,
             (long long)s->T, (long long)s->H, (long long)s->G, (long long)s->K, (long long)s->V,
             (long long)s->chunk, s->strided ? " strided" : "", s->varlen ? " varlen" : "");
}

/* Builds the problem and test data of a shape (varlen lengths from seed). */
static test_data *make_data(const shape *s, uint64_t seed) {
    lla_problem p;
    int64_t offsets[TD_MAX_BATCH + 1];
    test_data *td;
    lla_problem_init(&p, s->variant, s->hierarchy, s->B, s->T, s->H, s->G, s->K, s->V);
    p.chunk = s->chunk;
    p.scale = 0.75;
    if (s->varlen) {
        test_rng r;
        int64_t b, longest = 0;
        r.s = seed ^ 0x5eedull;
        offsets[0] = 0;
        for (b = 0; b < s->B; ++b) {
            int64_t len = b == 0 ? 0 : (b == 1 ? 1 : rng_int(&r, 2, 90));
            offsets[b + 1] = offsets[b] + len;
            if (len > longest) longest = len;
        }
        p.seqlen = offsets[s->B];
        p.levels = lla_num_levels(longest) + s->extra_levels;
        td = td_create(&p, offsets, LLA_DTYPE_F32, s->strided, seed);
    } else {
        p.levels = lla_num_levels(s->T) + s->extra_levels;
        td = td_create(&p, NULL, LLA_DTYPE_F32, s->strided, seed);
    }
    return td;
}

static void random_forward_vs_oracle(void **state) {
    size_t i;
    (void)state;
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; ++i) {
        const shape *s = &shapes[i];
        test_data *td = make_data(s, 1000 + i);
        const lla_problem *p = &td->p;
        int64_t bt = td_tensor_batch(p);
        lla_tensor ref = td_oracle(td), o = td_tensor(td, p->heads, p->dv, LLA_DTYPE_F32), od;
        lla_inputs xd;
        dev_arena a;
        size_t ws_bytes;
        void *ws = NULL;
        double err;
        char name[160];
        shape_name(s, name, sizeof name);
        arena_init(&a, be, 1u << 23);
        xd = dev_inputs(&a, td);
        od = dev_copy(&a, &o, bt);
        assert_int_equal(lla_forward_workspace(be, p, LLA_DTYPE_F32, &ws_bytes), LLA_OK);
        if (ws_bytes) assert_int_equal(lla_malloc(be, ws_bytes, &ws), LLA_OK);
        if (lla_forward(be, p, &xd, od, NULL, NULL, ws, ws_bytes) != LLA_OK)
            fail_msg("%s: lla_forward: %s", name, lla_last_error());
        dev_fetch(&a, &od, &o, bt);
        err = rel_err(p, &o, &ref, p->heads, p->dv);
        print_message("%-62s rel err %.3g\n", name, err);
        if (!(err <= TOL)) fail_msg("%s: rel err %g > %g", name, err, TOL);
        if (!guards_intact(&o, bt, p->seqlen, p->heads, p->dv))
            fail_msg("%s: the kernel wrote outside the output view", name);
        lla_free(be, ws);
        arena_free(&a);
        td_free(td);
    }
}

/* ------------------------------------------------------------------ continuation */

/* A [len]-token slice starting at token `from` of a dense td tensor (same strides). */
static lla_tensor slice(const lla_tensor *t, int64_t from) {
    lla_tensor s = *t;
    s.data = (char *)t->data + (size_t)(from * t->strides[1]) * lla_dtype_size(t->dtype);
    return s;
}

/* The whole sequence in pieces: forward(piece 0) -> state -> forward(piece 1, initial =
 * final = the same state) -> ...; outputs must match the oracle of the whole sequence, and
 * the last state the state of a one-shot forward. */
static void continuation(void **state) {
    static const struct {
        lla_variant variant;
        lla_hierarchy hierarchy;
        int64_t T, chunk, cuts[4];
    } cases[] = {
        {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 90, 8, {5, 16, 47, 0}},
        {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG, 90, 8, {1, 9, 40, 64}},
        {LLA_VARIANT_GDN, LLA_HIERARCHY_WEAK, 70, 4, {3, 4, 33, 0}},
        {LLA_VARIANT_GDN, LLA_HIERARCHY_STRONG, 50, 4, {7, 8, 25, 0}},
        {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 64, 0, {32, 0, 0, 0}},
    };
    size_t ci;
    (void)state;
    for (ci = 0; ci < sizeof cases / sizeof cases[0]; ++ci) {
        lla_problem p, piece;
        test_data *td;
        lla_tensor ref, o, od;
        lla_inputs xd;
        lla_state st, one_shot;
        dev_arena a;
        size_t sb, ws_bytes;
        void *smem, *smem2, *ws;
        float *s1, *s2;
        int64_t from = 0, k, i;
        double err, serr;
        lla_problem_init(&p, cases[ci].variant, cases[ci].hierarchy, 2, cases[ci].T, 2, 1, 8, 5);
        p.chunk = cases[ci].chunk;
        p.levels = lla_num_levels(cases[ci].T) + 1;
        td = td_create(&p, NULL, LLA_DTYPE_F32, 1, 77 + ci);
        ref = td_oracle(td);
        o = td_tensor(td, p.heads, p.dv, LLA_DTYPE_F32);
        arena_init(&a, be, 1u << 22);
        xd = dev_inputs(&a, td);
        od = dev_copy(&a, &o, p.batch);
        assert_int_equal(lla_state_bytes(&p, LLA_DTYPE_F32, &sb), LLA_OK);
        assert_int_equal(lla_malloc(be, sb, &smem), LLA_OK);
        assert_int_equal(lla_malloc(be, sb, &smem2), LLA_OK);
        assert_int_equal(lla_state_init(be, &p, LLA_DTYPE_F32, smem, sb, &st), LLA_OK);
        assert_int_equal(lla_state_init(be, &p, LLA_DTYPE_F32, smem2, sb, &one_shot), LLA_OK);
        assert_int_equal(lla_forward_workspace(be, &p, LLA_DTYPE_F32, &ws_bytes), LLA_OK);
        assert_int_equal(lla_malloc(be, ws_bytes, &ws), LLA_OK);
        for (k = 0; k <= 4; ++k) {
            int64_t to = k < 4 && cases[ci].cuts[k] ? cases[ci].cuts[k] : p.seqlen;
            lla_inputs xs;
            if (to <= from) continue;
            piece = p;
            piece.seqlen = to - from;
            xs.q = slice(&xd.q, from); xs.k = slice(&xd.k, from); xs.v = slice(&xd.v, from);
            xs.g = slice(&xd.g, from); xs.lambda = slice(&xd.lambda, from);
            xs.beta = slice(&xd.beta, from);
            if (lla_forward(be, &piece, &xs, slice(&od, from), from ? &st : NULL, &st, ws,
                            ws_bytes) != LLA_OK)
                fail_msg("case %zu piece [%lld, %lld): %s", ci, (long long)from, (long long)to,
                         lla_last_error());
            from = to;
            if (to == p.seqlen) break;
        }
        dev_fetch(&a, &od, &o, p.batch); /* the pieces' outputs */
        assert_int_equal(lla_forward(be, &p, &xd, od, NULL, &one_shot, ws, ws_bytes), LLA_OK);
        err = rel_err(&p, &o, &ref, p.heads, p.dv);
        s1 = (float *)malloc(sb);
        s2 = (float *)malloc(sb);
        assert_non_null(s1);
        assert_non_null(s2);
        assert_int_equal(lla_download(be, s1, smem, sb), LLA_OK);
        assert_int_equal(lla_download(be, s2, smem2, sb), LLA_OK);
        for (i = 0; i < p.batch; ++i) {
            assert_int_equal(((int64_t *)(void *)s1)[i], p.seqlen);
            assert_int_equal(((int64_t *)(void *)s2)[i], p.seqlen);
        }
        {
            size_t off = lla_state_values_offset(p.batch) / sizeof(float), n = (sb / sizeof(float)) - off;
            double *d2 = (double *)malloc(n * sizeof *d2);
            assert_non_null(d2);
            for (i = 0; i < (int64_t)n; ++i) d2[i] = (double)s2[off + (size_t)i];
            serr = rel_err_f32(s1 + off, d2, n);
            free(d2);
        }
        print_message("continuation case %zu: o rel err %.3g, state vs one-shot %.3g\n", ci, err, serr);
        if (!(err <= TOL)) fail_msg("continuation case %zu: o rel err %g", ci, err);
        if (!(serr <= TOL)) fail_msg("continuation case %zu: state rel err %g", ci, serr);
        free(s1);
        free(s2);
        lla_free(be, ws);
        lla_free(be, smem);
        lla_free(be, smem2);
        arena_free(&a);
        td_free(td);
    }
}

/* Copies token rows rows[0..n) of a packed [1, T, heads, dim] tensor into a new
 * contiguous float32 host tensor (malloc'ed data). */
static lla_tensor gather_rows(const lla_tensor *src, int64_t heads, int64_t dim,
                              const int64_t *rows, int64_t n) {
    float *buf = (float *)malloc((size_t)(n * heads * dim + 1) * sizeof(float));
    int64_t i, h, d;
    if (!buf) abort();
    for (i = 0; i < n; ++i)
        for (h = 0; h < heads; ++h)
            for (d = 0; d < dim; ++d)
                buf[(i * heads + h) * dim + d] = (float)lla__load(src, 0, rows[i], h, d);
    return lla_tensor_contiguous(buf, LLA_DTYPE_F32, n, heads, dim);
}

/* Varlen continuation: every sequence of a packed batch resumes from its own position
 * (0, 3, 9 and 17 tokens consumed), then the rest follows in a second packed call. */
static void varlen_continuation(void **state) {
    enum { NB = 4 };
    const int64_t first[NB] = {0, 3, 9, 17}, second[NB] = {5, 0, 20, 31};
    int v;
    (void)state;
    for (v = 0; v < 2; ++v) {
        lla_problem full, ph[2];
        int64_t off_full[NB + 1], off[2][NB + 1], rows[2][128], nrows[2] = {0, 0}, b, t, i;
        test_data *td;
        lla_tensor ref;
        size_t sb, ws_bytes;
        void *smem, *ws;
        lla_state st;
        dev_arena a;
        double num = 0.0, den = 0.0, err;
        int k;
        lla_problem_init(&full, v ? LLA_VARIANT_GDN : LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, NB,
                         0, 2, 2, 6, 4);
        off_full[0] = off[0][0] = off[1][0] = 0;
        for (b = 0; b < NB; ++b) {
            off_full[b + 1] = off_full[b] + first[b] + second[b];
            off[0][b + 1] = off[0][b] + first[b];
            off[1][b + 1] = off[1][b] + second[b];
            for (t = 0; t < first[b] + second[b]; ++t) {
                k = t < first[b] ? 0 : 1;
                rows[k][nrows[k]++] = off_full[b] + t;
            }
        }
        full.seqlen = off_full[NB];
        full.chunk = 8;
        full.levels = lla_num_levels(first[NB - 1] + second[NB - 1]);
        td = td_create(&full, off_full, LLA_DTYPE_F32, 0, 4242 + (uint64_t)v);
        ref = td_oracle(td);
        arena_init(&a, be, 1u << 22);
        assert_int_equal(lla_state_bytes(&td->p, LLA_DTYPE_F32, &sb), LLA_OK);
        assert_int_equal(lla_malloc(be, sb, &smem), LLA_OK);
        assert_int_equal(lla_state_init(be, &td->p, LLA_DTYPE_F32, smem, sb, &st), LLA_OK);
        assert_int_equal(lla_forward_workspace(be, &td->p, LLA_DTYPE_F32, &ws_bytes), LLA_OK);
        assert_int_equal(lla_malloc(be, ws_bytes, &ws), LLA_OK);
        for (k = 0; k < 2; ++k) {
            lla_inputs xh, xd;
            lla_tensor oh, od;
            ph[k] = td->p;
            ph[k].seq_offsets = off[k];
            ph[k].seqlen = off[k][NB];
            xh.q = gather_rows(&td->x.q, full.qk_heads, full.dk, rows[k], nrows[k]);
            xh.k = gather_rows(&td->x.k, full.qk_heads, full.dk, rows[k], nrows[k]);
            xh.v = gather_rows(&td->x.v, full.heads, full.dv, rows[k], nrows[k]);
            xh.g = gather_rows(&td->x.g, full.heads, 1, rows[k], nrows[k]);
            xh.lambda = gather_rows(&td->x.lambda, full.heads, full.levels, rows[k], nrows[k]);
            xh.beta = gather_rows(&td->x.beta, full.heads, 1, rows[k], nrows[k]);
            oh = gather_rows(&td->x.v, full.heads, full.dv, rows[k], nrows[k]); /* overwritten */
            xd.q = dev_copy(&a, &xh.q, 1); xd.k = dev_copy(&a, &xh.k, 1);
            xd.v = dev_copy(&a, &xh.v, 1); xd.g = dev_copy(&a, &xh.g, 1);
            xd.lambda = dev_copy(&a, &xh.lambda, 1); xd.beta = dev_copy(&a, &xh.beta, 1);
            od = dev_copy(&a, &oh, 1);
            if (lla_forward(be, &ph[k], &xd, od, k ? &st : NULL, &st, ws, ws_bytes) != LLA_OK)
                fail_msg("varlen phase %d: %s", k, lla_last_error());
            dev_fetch(&a, &od, &oh, 1);
            for (i = 0; i < nrows[k]; ++i) {
                int64_t h, d;
                for (h = 0; h < full.heads; ++h)
                    for (d = 0; d < full.dv; ++d) {
                        double x = (double)((float *)oh.data)[(i * full.heads + h) * full.dv + d];
                        double y = lla__load(&ref, 0, rows[k][i], h, d);
                        num += (x - y) * (x - y);
                        den += y * y;
                        if (x != x) num = INFINITY;
                    }
            }
            free(xh.q.data); free(xh.k.data); free(xh.v.data); free(xh.g.data);
            free(xh.lambda.data); free(xh.beta.data); free(oh.data);
        }
        {
            int64_t pos[NB];
            assert_int_equal(lla_download(be, pos, smem, sizeof pos), LLA_OK);
            for (b = 0; b < NB; ++b) assert_int_equal(pos[b], first[b] + second[b]);
        }
        err = sqrt(num / den);
        print_message("varlen continuation (%s): rel err %.3g\n", v ? "gdn" : "mamba2", err);
        if (!(err <= TOL)) fail_msg("varlen continuation: rel err %g", err);
        lla_free(be, ws);
        lla_free(be, smem);
        arena_free(&a);
        td_free(td);
    }
}

/* ------------------------------------------------------------------ vs scalar */

static void forward_vs_scalar(void **state) {
    lla_backend *scalar = NULL;
    lla_problem p;
    size_t i;
    (void)state;
    assert_int_equal(lla_backend_open("scalar", &scalar), LLA_OK);
    lla_problem_init(&p, LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 1, 8, 1, 1, 4, 4);
    if (lla_backend_supports(scalar, &p, LLA_DTYPE_F32, LLA_OP_FORWARD) != LLA_OK) {
        print_message("scalar backend has no forward in this build (%s); "
                      "the oracle comparisons above stand in for it\n", lla_last_error());
        lla_backend_close(scalar);
        skip();
    }
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; ++i) {
        const shape *s = &shapes[i];
        test_data *td = make_data(s, 2000 + i);
        const lla_problem *pp = &td->p;
        int64_t bt = td_tensor_batch(pp);
        lla_tensor os = td_tensor(td, pp->heads, pp->dv, LLA_DTYPE_F32);
        lla_tensor o = td_tensor(td, pp->heads, pp->dv, LLA_DTYPE_F32), od;
        lla_inputs xd;
        dev_arena a;
        size_t ws_bytes;
        void *ws = NULL, *wss = NULL;
        double err;
        char name[160];
        shape_name(s, name, sizeof name);
        assert_int_equal(lla_forward_workspace(scalar, pp, LLA_DTYPE_F32, &ws_bytes), LLA_OK);
        if (ws_bytes) wss = td_alloc(td, ws_bytes, 0);
        if (lla_forward(scalar, pp, &td->x, os, NULL, NULL, wss, ws_bytes) != LLA_OK)
            fail_msg("%s: scalar lla_forward: %s", name, lla_last_error());
        arena_init(&a, be, 1u << 23);
        xd = dev_inputs(&a, td);
        od = dev_copy(&a, &o, bt);
        assert_int_equal(lla_forward_workspace(be, pp, LLA_DTYPE_F32, &ws_bytes), LLA_OK);
        if (ws_bytes) assert_int_equal(lla_malloc(be, ws_bytes, &ws), LLA_OK);
        if (lla_forward(be, pp, &xd, od, NULL, NULL, ws, ws_bytes) != LLA_OK)
            fail_msg("%s: opencl lla_forward: %s", name, lla_last_error());
        dev_fetch(&a, &od, &o, bt);
        err = rel_err(pp, &o, &os, pp->heads, pp->dv);
        print_message("%-62s vs scalar rel err %.3g\n", name, err);
        if (!(err <= TOL)) fail_msg("%s: rel err vs scalar %g > %g", name, err, TOL);
        lla_free(be, ws);
        arena_free(&a);
        td_free(td);
    }
    lla_backend_close(scalar);
}

static int teardown(void **state) {
    (void)state;
    lla_backend_close(be);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(golden_forward),
        cmocka_unit_test(random_forward_vs_oracle),
        cmocka_unit_test(continuation),
        cmocka_unit_test(varlen_continuation),
        cmocka_unit_test(forward_vs_scalar),
    };
    be = ocl_open_or_skip("opencl_forward");
    return cmocka_run_group_tests_name("opencl_forward", tests, NULL, teardown);
}
