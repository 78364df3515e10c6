/*
 * test_scalar_forms.c - three forms agree on random problems: the float64 oracle (dense
 * O(T^2)), the scalar chunkwise forward (chunk 64 and the small chunks 1, 4, 16 that put
 * every boundary case to work), and the decode loop token by token.  Shapes: T = 1, 2,
 * 63, 64, 65, 1000; K != V; grouped q/k; strided views; varlen packed batches with a
 * zero-length and a length-1 sequence; mamba2 and gdn, weak and strong; f64 and f32.
 * Final states of every chunking and of the decoder agree too.
 *
 * Also checks, by brute force, the property the regroup/cascade rests on: the level sets
 * of a target are contiguous ranges that move whole, and only upward, to a later target.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scalar_util.h"
#include "testutil.h"

/* ------------------------------------------------------------------ level sets */

/* Set l of target t: [lla_level_start(l, t), lla_level_start(l-1, t)), level 0 = {t}. */
static void set_range(lla_hierarchy h, int64_t l, int64_t t, int64_t *lo, int64_t *hi) {
    *lo = lla_level_start(h, l, t);
    *hi = l == 0 ? t + 1 : lla_level_start(h, l - 1, t);
}

static void check_move(lla_hierarchy h, int64_t from, int64_t to, int exhaustive) {
    int64_t l;
    for (l = 0; l < 63; ++l) {
        int64_t lo, hi, s, dst;
        set_range(h, l, from, &lo, &hi);
        if (lo >= hi) continue;
        dst = lla_level(h, to, lo);
        if (dst < l)
            fail_msg("%s: set %lld of target %lld moves down to level %lld of target %lld",
                     h ? "strong" : "weak", (long long)l, (long long)from, (long long)dst,
                     (long long)to);
        if (exhaustive) {
            for (s = lo; s < hi; ++s)
                if (lla_level(h, from, s) != l || lla_level(h, to, s) != dst)
                    fail_msg("%s: source %lld of set %lld (target %lld) splits at target %lld",
                             h ? "strong" : "weak", (long long)s, (long long)l,
                             (long long)from, (long long)to);
        } else if (lla_level(h, to, hi - 1) != dst || lla_level(h, to, lo + (hi - lo) / 2) != dst ||
                   lla_level(h, from, hi - 1) != l || lla_level(h, from, lo) != l) {
            fail_msg("%s: set %lld of target %lld splits at target %lld", h ? "strong" : "weak",
                     (long long)l, (long long)from, (long long)to);
        }
    }
}

static void level_sets_move_whole(void **state) {
    int hi;
    test_rng r = {12345};
    (void)state;
    for (hi = 0; hi < 2; ++hi) {
        lla_hierarchy h = (lla_hierarchy)hi;
        int64_t from, to, i;
        /* every pair below 200, any jump */
        for (from = 0; from < 200; ++from)
            for (to = from; to < 330; ++to) check_move(h, from, to, 1);
        /* large positions, random jumps (1 .. 2^20), endpoints and midpoints of each set */
        for (i = 0; i < 20000; ++i) {
            int64_t f = rng_int(&r, 0, (int64_t)1 << 40);
            check_move(h, f, f + rng_int(&r, 0, (int64_t)1 << rng_int(&r, 0, 20)), 0);
        }
    }
}

/* ------------------------------------------------------------------ three forms */

typedef struct cfg {
    lla_variant variant;
    lla_hierarchy hierarchy;
    int64_t B, T, H, G, K, V;
    int strided;
    lla_dtype dtype;
} cfg;

static const char *vname(lla_variant v) { return v == LLA_VARIANT_GDN ? "gdn" : "mamba2"; }
static const char *hname(lla_hierarchy h) { return h == LLA_HIERARCHY_STRONG ? "strong" : "weak"; }

static void check_out(const char *label, double err, double tol) {
    print_message("  %-58s o rel err %.3g\n", label, err);
    if (!(err <= tol)) fail_msg("%s: rel err %g > %g", label, err, tol);
}

/* lens: NULL for a dense batch, else c->B sequence lengths (packed). */
static void three_forms(const cfg *c, const int64_t *lens, uint64_t seed) {
    static const int64_t chunks[] = {64, 1, 4, 16};
    lla_backend *be = su_open_scalar();
    lla_problem p;
    int64_t offsets[65], maxlen = 0, i, b, t;
    double tol = c->dtype == LLA_DTYPE_F64 ? 1e-10 : 1e-5;
    test_data *td;
    lla_tensor ref;
    lla_state fin_ref, dec;
    char label[160], base[128];
    size_t ci;

    lla_problem_init(&p, c->variant, c->hierarchy, c->B, c->T, c->H, c->G, c->K, c->V);
    if (lens) {
        offsets[0] = 0;
        for (b = 0; b < c->B; ++b) {
            offsets[b + 1] = offsets[b] + lens[b];
            if (lens[b] > maxlen) maxlen = lens[b];
        }
        p.seqlen = offsets[c->B];
        p.levels = lla_num_levels(maxlen);
    }
    td = td_create(&p, lens ? offsets : NULL, c->dtype, c->strided, seed);
    ref = td_oracle(td);
    snprintf(base, sizeof base, "%s %s B%lld T%lld H%lld/%lld K%lld V%lld %s%s%s", vname(c->variant),
             hname(c->hierarchy), (long long)c->B, (long long)td->p.seqlen, (long long)c->H,
             (long long)c->G, (long long)c->K, (long long)c->V, lla_dtype_name(c->dtype),
             c->strided ? " strided" : "", lens ? " varlen" : "");

    /* chunkwise forward, several chunk lengths, each with a final state */
    for (ci = 0; ci < sizeof chunks / sizeof chunks[0]; ++ci) {
        lla_problem pc = td->p;
        lla_tensor o = td_tensor(td, c->H, c->V, c->dtype);
        lla_state fin;
        pc.chunk = chunks[ci];
        fin = su_state_new(be, &pc, c->dtype);
        assert_int_equal(su_forward(be, &pc, &td->x, o, NULL, &fin), LLA_OK);
        snprintf(label, sizeof label, "%s forward C=%lld", base, (long long)chunks[ci]);
        check_out(label, rel_err(&td->p, &o, &ref, c->H, c->V), tol);
        if (ci == 0) {
            fin_ref = fin;
        } else {
            su_check_states(&fin, &fin_ref, tol, label);
            su_state_free(&fin);
        }
    }

    /* decode loop */
    dec = su_state_new(be, &td->p, c->dtype);
    if (!lens) {
        lla_tensor o = td_tensor(td, c->H, c->V, c->dtype);
        for (t = 0; t < c->T; ++t) {
            lla_inputs xt = su_inputs_at(&td->x, t);
            assert_int_equal(lla_decode_step(be, &td->p, &dec, &xt, su_tensor_at(o, t)), LLA_OK);
        }
        snprintf(label, sizeof label, "%s decode", base);
        check_out(label, rel_err(&td->p, &o, &ref, c->H, c->V), tol);
        su_check_states(&dec, &fin_ref, tol, label);
    } else {
        /* ragged: every step feeds each sequence its next token, or a dummy once it has
         * none (output ignored); a sequence's state is kept right after its last token */
        lla_tensor o = td_tensor(td, c->H, c->V, c->dtype);
        lla_state snap = su_state_new(be, &td->p, c->dtype);
        int64_t src_b[64], first[64], one[64], h, d;
        for (b = 0; b < c->B; ++b) src_b[b] = 0, one[b] = 1;
        for (i = 0; i < maxlen; ++i) {
            su_packed *pk;
            lla_inputs xs;
            for (b = 0; b < c->B; ++b) first[b] = i < lens[b] ? offsets[b] + i : 0;
            pk = su_pack(&td->p, &td->x, src_b, first, one, c->dtype);
            xs = su_packed_as_step(pk);
            p = td->p;
            p.seq_offsets = NULL;
            assert_int_equal(lla_decode_step(be, &p, &dec, &xs, su_packed_out_as_step(pk)), LLA_OK);
            for (b = 0; b < c->B; ++b) {
                if (i >= lens[b]) continue;
                for (h = 0; h < c->H; ++h)
                    for (d = 0; d < c->V; ++d)
                        su_store(&o, 0, offsets[b] + i, h, d, su_load(&pk->o, 0, b, h, d));
                if (i == lens[b] - 1) su_copy_sequence(&snap, &dec, b);
            }
            su_packed_free(pk);
        }
        snprintf(label, sizeof label, "%s decode", base);
        check_out(label, rel_err(&td->p, &o, &ref, c->H, c->V), tol);
        su_check_states(&snap, &fin_ref, tol, label);
        su_state_free(&snap);
    }
    su_state_free(&dec);
    su_state_free(&fin_ref);
    td_free(td);
    lla_backend_close(be);
}

static void forms_dense(lla_variant v, lla_hierarchy h) {
    static const int64_t Ts[] = {1, 2, 63, 64, 65, 1000};
    size_t i;
    for (i = 0; i < sizeof Ts / sizeof Ts[0]; ++i) {
        cfg c;
        int64_t T = Ts[i];
        c.variant = v;
        c.hierarchy = h;
        c.T = T;
        c.B = T >= 1000 ? 1 : 2;
        c.H = i % 2 ? 4 : 2;      /* grouped q/k: 4 heads on 2 q/k heads, 2 on 1 */
        c.G = i % 2 ? 2 : 1;
        c.K = i % 2 ? 5 : 8;      /* K != V both ways */
        c.V = i % 2 ? 7 : 4;
        c.strided = (int)(i % 2 == 0);
        c.dtype = LLA_DTYPE_F64;
        three_forms(&c, NULL, 1000 + 17 * i + 100 * (uint64_t)v + 300 * (uint64_t)h);
        if (T == 65 || T == 1000) { /* float32: same problems, 1e-5 */
            c.dtype = LLA_DTYPE_F32;
            c.strided = !c.strided;
            three_forms(&c, NULL, 5000 + 17 * i + 100 * (uint64_t)v + 300 * (uint64_t)h);
        }
    }
}

static void forms_varlen(lla_variant v, lla_hierarchy h) {
    static const int64_t lens[] = {5, 0, 1, 70, 33, 64};
    cfg c;
    c.variant = v;
    c.hierarchy = h;
    c.B = 6;
    c.T = 0;
    c.H = 3;
    c.G = 1;
    c.K = 6;
    c.V = 5;
    c.strided = 1;
    c.dtype = LLA_DTYPE_F64;
    three_forms(&c, lens, 77 + (uint64_t)v + 2 * (uint64_t)h);
    c.dtype = LLA_DTYPE_F32;
    c.strided = 0;
    three_forms(&c, lens, 99 + (uint64_t)v + 2 * (uint64_t)h);
}

static void mamba2_weak(void **s) { (void)s; forms_dense(LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK); }
static void mamba2_strong(void **s) { (void)s; forms_dense(LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG); }
static void gdn_weak(void **s) { (void)s; forms_dense(LLA_VARIANT_GDN, LLA_HIERARCHY_WEAK); }
static void gdn_strong(void **s) { (void)s; forms_dense(LLA_VARIANT_GDN, LLA_HIERARCHY_STRONG); }
static void varlen_mamba2_weak(void **s) { (void)s; forms_varlen(LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK); }
static void varlen_mamba2_strong(void **s) { (void)s; forms_varlen(LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG); }
static void varlen_gdn_weak(void **s) { (void)s; forms_varlen(LLA_VARIANT_GDN, LLA_HIERARCHY_WEAK); }
static void varlen_gdn_strong(void **s) { (void)s; forms_varlen(LLA_VARIANT_GDN, LLA_HIERARCHY_STRONG); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(level_sets_move_whole),
        cmocka_unit_test(mamba2_weak),
        cmocka_unit_test(mamba2_strong),
        cmocka_unit_test(gdn_weak),
        cmocka_unit_test(gdn_strong),
        cmocka_unit_test(varlen_mamba2_weak),
        cmocka_unit_test(varlen_mamba2_strong),
        cmocka_unit_test(varlen_gdn_weak),
        cmocka_unit_test(varlen_gdn_strong),
    };
    return cmocka_run_group_tests_name("scalar_forms", tests, NULL, NULL);
}
