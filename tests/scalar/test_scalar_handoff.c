/*
 * test_scalar_handoff.c - prefill/decode hand-off and continuation through states:
 *   - forward over T1 tokens with a final state, then decode steps for the rest ==
 *     the oracle over all tokens == one forward over all tokens (outputs and states);
 *   - a forward given an initial state continues exactly: sequences split at aligned and
 *     unaligned points, several splits, final aliasing initial and separate states;
 *   - varlen: ragged splits per sequence (zero-length pieces pass the state through),
 *     then decode steps at a different position per sequence.
 * All variants and hierarchies, float64 (1e-10) and float32 (1e-5).
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

static const char *vname(lla_variant v) { return v == LLA_VARIANT_GDN ? "gdn" : "mamba2"; }
static const char *hname(lla_hierarchy h) { return h == LLA_HIERARCHY_STRONG ? "strong" : "weak"; }

static void check_out(const char *label, double err, double tol) {
    print_message("  %-62s o rel err %.3g\n", label, err);
    if (!(err <= tol)) fail_msg("%s: rel err %g > %g", label, err, tol);
}

static double tol_of(lla_dtype dt) { return dt == LLA_DTYPE_F64 ? 1e-10 : 1e-5; }

/* Dense problem: B=2, T=150, 2 value heads on 1 q/k head, K=6, V=4, strided views. */
static test_data *dense_data(lla_variant v, lla_hierarchy h, int64_t T, lla_dtype dt,
                             uint64_t seed) {
    lla_problem p;
    lla_problem_init(&p, v, h, 2, T, 2, 1, 6, 4);
    return td_create(&p, NULL, dt, 1, seed);
}

/* One forward over all tokens, with its final state (the reference for continuations). */
static lla_state full_forward(lla_backend *be, test_data *td, int64_t chunk, lla_tensor *o) {
    lla_problem p = td->p;
    lla_state fin = su_state_new(be, &p, td->dtype);
    p.chunk = chunk;
    *o = td_tensor(td, p.heads, p.dv, td->dtype);
    assert_int_equal(su_forward(be, &p, &td->x, *o, NULL, &fin), LLA_OK);
    return fin;
}

static void prefill_then_decode(lla_variant v, lla_hierarchy h, lla_dtype dt) {
    static const int64_t T1s[] = {1, 37, 64, 65, 128, 149};
    static const int64_t chunks[] = {64, 16};
    const int64_t T = 150;
    lla_backend *be = su_open_scalar();
    size_t i, ci;
    for (ci = 0; ci < 2; ++ci)
        for (i = 0; i < sizeof T1s / sizeof T1s[0]; ++i) {
            test_data *td = dense_data(v, h, T, dt, 11 + i + 7 * ci + 100 * (uint64_t)h);
            lla_tensor ref = td_oracle(td), full, o = td_tensor(td, 2, 4, dt);
            lla_state want = full_forward(be, td, chunks[ci], &full);
            lla_problem p = td->p;
            lla_state st = su_state_new(be, &p, dt);
            int64_t t;
            char label[128];
            p.seqlen = T1s[i];
            p.chunk = chunks[ci];
            assert_int_equal(su_forward(be, &p, &td->x, o, NULL, &st), LLA_OK);
            for (t = T1s[i]; t < T; ++t) {
                lla_inputs xt = su_inputs_at(&td->x, t);
                assert_int_equal(lla_decode_step(be, &td->p, &st, &xt, su_tensor_at(o, t)), LLA_OK);
            }
            snprintf(label, sizeof label, "%s %s %s prefill %lld (C=%lld) + decode %lld vs oracle",
                     vname(v), hname(h), lla_dtype_name(dt), (long long)T1s[i],
                     (long long)chunks[ci], (long long)(T - T1s[i]));
            check_out(label, rel_err(&td->p, &o, &ref, 2, 4), tol_of(dt));
            snprintf(label, sizeof label, "%s %s %s prefill %lld (C=%lld) + decode vs forward",
                     vname(v), hname(h), lla_dtype_name(dt), (long long)T1s[i],
                     (long long)chunks[ci]);
            check_out(label, rel_err(&td->p, &o, &full, 2, 4), tol_of(dt));
            su_check_states(&st, &want, tol_of(dt), label);
            su_state_free(&st);
            su_state_free(&want);
            td_free(td);
        }
    lla_backend_close(be);
}

/* Forward over [0, T) in pieces split at `cuts` (ascending, 0 < cut < T).
 * mode: STATES_ALIASED (final is initial), STATES_PING_PONG (two states), or
 * STATES_NO_LAST_FINAL (ping-pong, and the last piece asks for no final state). */
enum { STATES_ALIASED, STATES_PING_PONG, STATES_NO_LAST_FINAL };
static void continue_in_pieces(lla_backend *be, lla_variant v, lla_hierarchy h, lla_dtype dt,
                               int64_t chunk, const int64_t *cuts, int ncuts, int mode) {
    const int64_t T = 300;
    test_data *td = dense_data(v, h, T, dt, 500 + (uint64_t)ncuts + 3 * (uint64_t)chunk);
    lla_tensor ref = td_oracle(td), full, o = td_tensor(td, 2, 4, dt);
    lla_state want = full_forward(be, td, chunk, &full);
    lla_state st[2];
    int k, cur = 0;
    char label[160];
    const int aliased = mode == STATES_ALIASED;
    int n = snprintf(label, sizeof label, "%s %s %s C=%lld %s cuts", vname(v), hname(h),
                     lla_dtype_name(dt), (long long)chunk,
                     aliased ? "aliased" : mode == STATES_PING_PONG ? "ping-pong" : "no-last-final");
    st[0] = su_state_new(be, &td->p, dt);
    st[1] = su_state_new(be, &td->p, dt);
    for (k = 0; k <= ncuts; ++k) {
        int64_t a = k ? cuts[k - 1] : 0, b = k < ncuts ? cuts[k] : T;
        lla_problem p = td->p;
        lla_inputs x = su_inputs_at(&td->x, a);
        const lla_state *init = k ? &st[cur] : NULL;
        lla_state *fin = aliased ? &st[cur] : &st[1 - cur];
        if (mode == STATES_NO_LAST_FINAL && k == ncuts) fin = NULL;
        p.seqlen = b - a;
        p.chunk = chunk;
        assert_int_equal(su_forward(be, &p, &x, su_tensor_at(o, a), init, fin), LLA_OK);
        if (!aliased) cur = 1 - cur;
        if (k < ncuts && n < (int)sizeof label)
            n += snprintf(label + n, sizeof label - (size_t)n, " %lld", (long long)cuts[k]);
    }
    check_out(label, rel_err(&td->p, &o, &ref, 2, 4), tol_of(dt));
    if (mode != STATES_NO_LAST_FINAL) su_check_states(&st[cur], &want, tol_of(dt), label);
    su_state_free(&st[0]);
    su_state_free(&st[1]);
    su_state_free(&want);
    td_free(td);
}

static void forward_continues(lla_variant v, lla_hierarchy h, lla_dtype dt) {
    static const int64_t aligned[] = {64, 128, 256};
    static const int64_t unaligned[] = {37, 100, 250};
    static const int64_t edges[] = {1, 2, 63, 65, 299};
    static const int64_t one[] = {150};
    lla_backend *be = su_open_scalar();
    continue_in_pieces(be, v, h, dt, 64, aligned, 3, STATES_ALIASED);
    continue_in_pieces(be, v, h, dt, 64, unaligned, 3, STATES_ALIASED);
    continue_in_pieces(be, v, h, dt, 64, edges, 5, STATES_PING_PONG);
    continue_in_pieces(be, v, h, dt, 16, unaligned, 3, STATES_PING_PONG);
    continue_in_pieces(be, v, h, dt, 4, edges, 5, STATES_ALIASED);
    continue_in_pieces(be, v, h, dt, 64, one, 1, STATES_PING_PONG);
    continue_in_pieces(be, v, h, dt, 16, one, 1, STATES_NO_LAST_FINAL);
    lla_backend_close(be);
}

/* Varlen: pieces of different lengths per sequence, then ragged decode. */
static void varlen_continues(lla_variant v, lla_hierarchy h, lla_dtype dt) {
    enum { B = 5, PIECES = 3 };
    static const int64_t lens[B] = {40, 0, 1, 77, 64};
    static const int64_t piece[PIECES][B] = {
        {13, 0, 1, 64, 63}, /* forward, no initial state           */
        {20, 0, 0, 5, 1},   /* forward, separate final             */
        {3, 0, 0, 0, 0},    /* forward, final aliasing initial     */
    };                      /* the rest {4, 0, 0, 8, 0}: decode   */
    lla_backend *be = su_open_scalar();
    lla_problem p;
    int64_t offsets[B + 1], done[B] = {0}, src_b[B] = {0}, first[B], one[B], b, i, hh, d, steps = 0;
    lla_state s1, s2, want;
    test_data *td;
    lla_tensor ref, o;
    su_packed *pk;
    char label[128];
    int k;

    lla_problem_init(&p, v, h, B, 1, 2, 2, 5, 3);
    offsets[0] = 0;
    for (b = 0; b < B; ++b) offsets[b + 1] = offsets[b] + lens[b], one[b] = 1;
    p.levels = lla_num_levels(77);
    p.chunk = 16;
    td = td_create(&p, offsets, dt, 1, 4242 + (uint64_t)v + 2 * (uint64_t)h);
    ref = td_oracle(td);
    o = td_tensor(td, 2, 3, dt);
    s1 = su_state_new(be, &td->p, dt);
    s2 = su_state_new(be, &td->p, dt);

    for (k = 0; k < PIECES; ++k) {
        const lla_state *init = k == 0 ? NULL : k == 1 ? &s1 : &s2;
        lla_state *fin = k == 0 ? &s1 : &s2;
        for (b = 0; b < B; ++b) first[b] = offsets[b] + done[b];
        pk = su_pack(&td->p, &td->x, src_b, first, piece[k], dt);
        assert_int_equal(su_forward(be, &pk->p, &pk->x, pk->o, init, fin), LLA_OK);
        for (b = 0; b < B; ++b) {
            for (i = 0; i < piece[k][b]; ++i)
                for (hh = 0; hh < 2; ++hh)
                    for (d = 0; d < 3; ++d)
                        su_store(&o, 0, first[b] + i, hh, d, su_load(&pk->o, 0, pk->offsets[b] + i, hh, d));
            done[b] += piece[k][b];
        }
        su_packed_free(pk);
    }

    /* the state after the pieces == one forward over the same prefixes */
    for (b = 0; b < B; ++b) first[b] = offsets[b];
    pk = su_pack(&td->p, &td->x, src_b, first, done, dt);
    want = su_state_new(be, &td->p, dt);
    assert_int_equal(su_forward(be, &pk->p, &pk->x, pk->o, NULL, &want), LLA_OK);
    su_packed_free(pk);
    snprintf(label, sizeof label, "%s %s %s varlen pieces", vname(v), hname(h), lla_dtype_name(dt));
    su_check_states(&s2, &want, tol_of(dt), label);
    su_state_free(&want);

    /* ragged decode: each sequence at its own position; dummies once a sequence is done */
    for (b = 0; b < B; ++b)
        if (lens[b] - done[b] > steps) steps = lens[b] - done[b];
    for (i = 0; i < steps; ++i) {
        lla_problem ps = td->p;
        lla_inputs xs;
        for (b = 0; b < B; ++b) first[b] = done[b] + i < lens[b] ? offsets[b] + done[b] + i : 0;
        pk = su_pack(&td->p, &td->x, src_b, first, one, dt);
        xs = su_packed_as_step(pk);
        ps.seq_offsets = NULL;
        assert_int_equal(lla_decode_step(be, &ps, &s2, &xs, su_packed_out_as_step(pk)), LLA_OK);
        for (b = 0; b < B; ++b) {
            if (done[b] + i >= lens[b]) continue;
            for (hh = 0; hh < 2; ++hh)
                for (d = 0; d < 3; ++d) su_store(&o, 0, first[b], hh, d, su_load(&pk->o, 0, b, hh, d));
        }
        su_packed_free(pk);
    }
    snprintf(label, sizeof label, "%s %s %s varlen pieces + ragged decode vs oracle", vname(v),
             hname(h), lla_dtype_name(dt));
    check_out(label, rel_err(&td->p, &o, &ref, 2, 3), tol_of(dt));
    su_state_free(&s1);
    su_state_free(&s2);
    td_free(td);
    lla_backend_close(be);
}

/* bf16 is a GPU storage type: the scalar backend says so and writes nothing. */
static void unsupported_dtype(void **s) {
    lla_backend *be = su_open_scalar();
    lla_problem p;
    uint16_t buf[6][64], out[64];
    lla_inputs x;
    size_t i, bytes = 0;
    (void)s;
    lla_problem_init(&p, LLA_VARIANT_GDN, LLA_HIERARCHY_STRONG, 1, 4, 1, 1, 2, 2);
    assert_int_equal(lla_backend_supports(be, &p, LLA_DTYPE_F64, LLA_OP_FORWARD), LLA_OK);
    assert_int_equal(lla_backend_supports(be, &p, LLA_DTYPE_F32, LLA_OP_DECODE), LLA_OK);
    assert_int_equal(lla_backend_supports(be, &p, LLA_DTYPE_BF16, LLA_OP_FORWARD),
                     LLA_ERR_UNSUPPORTED);
    assert_non_null(strstr(lla_last_error(), "bf16"));
    memset(buf, 0, sizeof buf);
    memset(out, 0x7b, sizeof out);
    x.q = lla_tensor_contiguous(buf[0], LLA_DTYPE_BF16, 4, 1, 2);
    x.k = lla_tensor_contiguous(buf[1], LLA_DTYPE_BF16, 4, 1, 2);
    x.v = lla_tensor_contiguous(buf[2], LLA_DTYPE_BF16, 4, 1, 2);
    x.g = lla_tensor_contiguous(buf[3], LLA_DTYPE_BF16, 4, 1, 1);
    x.lambda = lla_tensor_contiguous(buf[4], LLA_DTYPE_BF16, 4, 1, p.levels);
    x.beta = lla_tensor_contiguous(buf[5], LLA_DTYPE_BF16, 4, 1, 1);
    assert_int_equal(lla_forward(be, &p, &x, lla_tensor_contiguous(out, LLA_DTYPE_BF16, 4, 1, 2),
                                 NULL, NULL, NULL, 0),
                     LLA_ERR_UNSUPPORTED);
    for (i = 0; i < 64; ++i) assert_int_equal(out[i], 0x7b7b);
    assert_int_equal(lla_forward_workspace(be, &p, LLA_DTYPE_F64, &bytes), LLA_OK);
    assert_true(bytes > 0);
    lla_backend_close(be);
}

static void all_variants(void (*fn)(lla_variant, lla_hierarchy, lla_dtype)) {
    int v, h;
    for (v = 0; v < 2; ++v)
        for (h = 0; h < 2; ++h) {
            fn((lla_variant)v, (lla_hierarchy)h, LLA_DTYPE_F64);
            fn((lla_variant)v, (lla_hierarchy)h, LLA_DTYPE_F32);
        }
}

static void prefill_decode(void **s) { (void)s; all_variants(prefill_then_decode); }
static void forward_initial_state(void **s) { (void)s; all_variants(forward_continues); }
static void varlen_handoff(void **s) { (void)s; all_variants(varlen_continues); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(prefill_decode),
        cmocka_unit_test(forward_initial_state),
        cmocka_unit_test(varlen_handoff),
        cmocka_unit_test(unsupported_dtype),
    };
    return cmocka_run_group_tests_name("scalar_handoff", tests, NULL, NULL);
}
