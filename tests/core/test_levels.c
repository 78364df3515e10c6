/*
 * test_levels.c - level functions against brute-force versions of the reference's
 * recursive definitions (levels_ref.h), the SPEC 1.3 tables and level populations, level
 * ranges, and the number of levels.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "internal.h"
#include "levels_ref.h"
#include "testutil.h"

#define N_BRUTE 600

static void weak_base2_matches_recursive(void **state) {
    int64_t t, s;
    (void)state;
    for (t = 0; t < N_BRUTE; ++t)
        for (s = 0; s <= t; ++s) {
            int64_t want = ref_level_weak(t, s, 2);
            if (lla_level(LLA_HIERARCHY_WEAK, t, s) != want ||
                lla__level(LLA_HIERARCHY_WEAK, t, s) != want ||
                lla_level_weak_base(t, s, 2) != want)
                fail_msg("weak (%lld,%lld): got %lld / %d / %lld, want %lld", (long long)t,
                         (long long)s, (long long)lla_level(LLA_HIERARCHY_WEAK, t, s),
                         lla__level(LLA_HIERARCHY_WEAK, t, s),
                         (long long)lla_level_weak_base(t, s, 2), (long long)want);
        }
}

static void weak_bases_3_to_5_match_recursive(void **state) {
    int64_t base, t, s;
    (void)state;
    for (base = 3; base <= 5; ++base)
        for (t = 0; t < N_BRUTE; ++t)
            for (s = 0; s <= t; ++s) {
                int64_t want = ref_level_weak(t, s, base);
                if (lla_level_weak_base(t, s, base) != want)
                    fail_msg("weak base %lld (%lld,%lld): got %lld want %lld", (long long)base,
                             (long long)t, (long long)s,
                             (long long)lla_level_weak_base(t, s, base), (long long)want);
            }
}

/* Where the reference's float floor_log is wrong (SPEC 1.2): 243 = 3^5 and 1000 = 10^3. */
static void weak_base_exact_powers(void **state) {
    int64_t s;
    (void)state;
    for (s = 0; s < 243; ++s) assert_int_equal(lla_level_weak_base(243, s, 3), 6);
    assert_int_equal(lla_level_weak_base(243, 243, 3), 0);
    for (s = 0; s < 1000; ++s) assert_int_equal(lla_level_weak_base(1000, s, 10), 4);
    assert_int_equal(lla_num_levels_base(243, 3), 6);
    assert_int_equal(lla_num_levels_base(244, 3), 7);
    assert_int_equal(lla_num_levels_base(1000, 10), 4);
    assert_int_equal(lla_num_levels_base(1001, 10), 5);
}

/* Base-b level l >= 1 holds at most (b-1) b^(l-1) sources, and all levels used by
 * targets t < T fit in lla_num_levels_base(T, b). */
static void weak_base_populations(void **state) {
    int64_t base, t, s;
    (void)state;
    for (base = 2; base <= 5; ++base)
        for (t = 0; t < 400; ++t) {
            int64_t count[16] = {0}, l, cap = base - 1;
            for (s = 0; s <= t; ++s) {
                l = lla_level_weak_base(t, s, base);
                assert_true(l >= 0 && l < lla_num_levels_base(t + 1, base));
                count[l]++;
            }
            assert_int_equal(count[0], 1);
            for (l = 1; l < 16; ++l, cap *= base) assert_true(count[l] <= cap);
        }
}

static void strong_matches_recursive(void **state) {
    int64_t t, s;
    (void)state;
    for (t = 0; t < N_BRUTE; ++t)
        for (s = 0; s <= t; ++s) {
            int64_t want = ref_level_strong(t, s);
            if (lla_level(LLA_HIERARCHY_STRONG, t, s) != want ||
                lla__level(LLA_HIERARCHY_STRONG, t, s) != want)
                fail_msg("strong (%lld,%lld): got %lld want %lld", (long long)t, (long long)s,
                         (long long)lla_level(LLA_HIERARCHY_STRONG, t, s), (long long)want);
        }
}

/* SPEC 1.3 tables, typed in from the specification. */
static void spec_tables(void **state) {
    static const int weak[8][8] = {
        {0}, {1, 0}, {2, 2, 0}, {2, 2, 1, 0}, {3, 3, 3, 3, 0}, {3, 3, 3, 3, 1, 0},
        {3, 3, 3, 3, 2, 2, 0}, {3, 3, 3, 3, 2, 2, 1, 0}};
    static const int strong[9][9] = {
        {0}, {1, 0}, {2, 1, 0}, {2, 2, 1, 0}, {3, 3, 2, 1, 0}, {3, 3, 2, 2, 1, 0},
        {3, 3, 3, 3, 2, 1, 0}, {3, 3, 3, 3, 2, 2, 1, 0}, {4, 4, 4, 4, 3, 3, 2, 1, 0}};
    int t, s;
    (void)state;
    for (t = 0; t < 8; ++t)
        for (s = 0; s <= t; ++s) assert_int_equal(lla_level(LLA_HIERARCHY_WEAK, t, s), weak[t][s]);
    for (t = 0; t < 9; ++t)
        for (s = 0; s <= t; ++s)
            assert_int_equal(lla_level(LLA_HIERARCHY_STRONG, t, s), strong[t][s]);
}

/* SPEC 1.3 per-target populations: level -> [first, last] source, -1 = empty. */
static void spec_populations(void **state) {
    struct pop { int t; lla_hierarchy h; int lo[6], hi[6]; };
    static const struct pop pops[] = {
        {5, LLA_HIERARCHY_WEAK, {5, 4, -1, 0}, {5, 4, -1, 3}},
        {6, LLA_HIERARCHY_WEAK, {6, -1, 4, 0}, {6, -1, 5, 3}},
        {12, LLA_HIERARCHY_WEAK, {12, -1, -1, 8, 0}, {12, -1, -1, 11, 7}},
        {16, LLA_HIERARCHY_WEAK, {16, -1, -1, -1, -1, 0}, {16, -1, -1, -1, -1, 15}},
        {5, LLA_HIERARCHY_STRONG, {5, 4, 2, 0}, {5, 4, 3, 1}},
        {6, LLA_HIERARCHY_STRONG, {6, 5, 4, 0}, {6, 5, 4, 3}},
        {12, LLA_HIERARCHY_STRONG, {12, 11, 10, 8, 0}, {12, 11, 10, 9, 7}},
        {16, LLA_HIERARCHY_STRONG, {16, 15, 14, 12, 8, 0}, {16, 15, 14, 13, 11, 7}},
    };
    size_t i;
    int l;
    (void)state;
    for (i = 0; i < sizeof pops / sizeof pops[0]; ++i) {
        const struct pop *p = &pops[i];
        int levels = (int)lla_num_levels(p->t + 1);
        for (l = 0; l < 6; ++l) {
            int64_t lo = l < levels ? lla_level_start(p->h, l, p->t) : 0;
            int64_t past = l == 0 ? p->t + 1 : lla_level_start(p->h, l - 1, p->t);
            if (l == 0) lo = p->t; /* level 0 is the diagonal */
            if (l >= levels) {
                assert_int_equal(p->lo[l], 0); /* beyond the table: unused */
                continue;
            }
            if (p->lo[l] < 0) {
                assert_int_equal(lo, past); /* empty */
            } else {
                assert_int_equal(lo, p->lo[l]);
                assert_int_equal(past - 1, p->hi[l]);
            }
        }
    }
}

/* lo_l(t) = number of sources s <= t whose level exceeds l, because levels do not
 * increase with s (level sets are contiguous ranges). */
static void level_start_matches_brute_force(void **state) {
    int64_t t, s, l;
    int hi;
    (void)state;
    for (hi = 0; hi < 2; ++hi) {
        lla_hierarchy h = hi ? LLA_HIERARCHY_STRONG : LLA_HIERARCHY_WEAK;
        for (t = 0; t < N_BRUTE; ++t) {
            for (s = 1; s <= t; ++s) assert_true(ref_level(h, t, s) <= ref_level(h, t, s - 1));
            for (l = 0; l < 14; ++l) {
                int64_t above = 0;
                for (s = 0; s <= t; ++s) above += ref_level(h, t, s) > l;
                if (lla_level_start(h, l, t) != above || lla__level_start(h, (int)l, t) != above)
                    fail_msg("%s lo_%lld(%lld) = %lld, brute force %lld", hi ? "strong" : "weak",
                             (long long)l, (long long)t, (long long)lla_level_start(h, l, t),
                             (long long)above);
            }
        }
    }
    /* far levels and far positions */
    assert_int_equal(lla_level_start(LLA_HIERARCHY_WEAK, 63, INT64_MAX), 0);
    assert_int_equal(lla_level_start(LLA_HIERARCHY_STRONG, 64, INT64_MAX), 0);
    assert_int_equal(lla_level_start(LLA_HIERARCHY_WEAK, 1000, 5), 0);
    assert_int_equal(lla_level_start(LLA_HIERARCHY_WEAK, 1, INT64_MAX), INT64_MAX - 1);
    assert_int_equal(lla_level_start(LLA_HIERARCHY_STRONG, 1, INT64_MAX), INT64_MAX - 1);
}

/* Weak: level l >= 1 is non-empty iff bit l-1 of t is set, then it has 2^(l-1) sources. */
static void weak_level_sizes(void **state) {
    int64_t t, l;
    (void)state;
    for (t = 0; t < 2048; ++t)
        for (l = 1; l < 13; ++l) {
            int64_t size = lla_level_start(LLA_HIERARCHY_WEAK, l - 1, t) -
                           lla_level_start(LLA_HIERARCHY_WEAK, l, t);
            assert_int_equal(size, ((t >> (l - 1)) & 1) ? (int64_t)1 << (l - 1) : 0);
        }
}

static void num_levels(void **state) {
    static const int64_t T[] = {1, 2, 3, 4, 5, 64, 2048, 16384};
    static const int64_t want[] = {1, 2, 3, 3, 4, 7, 12, 15};
    int64_t i, base;
    (void)state;
    for (i = 0; i < 8; ++i) {
        assert_int_equal(lla_num_levels(T[i]), want[i]);
        assert_int_equal(lla_num_levels_base(T[i], 2), want[i]);
    }
    for (base = 2; base <= 10; ++base)
        for (i = 1; i < 5000; ++i)
            if (lla_num_levels_base(i, base) != ref_num_levels(i, base))
                fail_msg("num_levels_base(%lld, %lld) = %lld, want %lld", (long long)i,
                         (long long)base, (long long)lla_num_levels_base(i, base),
                         (long long)ref_num_levels(i, base));
    /* The maximum level reached by any pair below T is num_levels(T) - 1, both hierarchies. */
    for (i = 1; i < 300; ++i) {
        int64_t t, s, top_w = 0, top_s = 0;
        for (t = 0; t < i; ++t)
            for (s = 0; s <= t; ++s) {
                if (lla_level(LLA_HIERARCHY_WEAK, t, s) > top_w) top_w = lla_level(LLA_HIERARCHY_WEAK, t, s);
                if (lla_level(LLA_HIERARCHY_STRONG, t, s) > top_s) top_s = lla_level(LLA_HIERARCHY_STRONG, t, s);
            }
        assert_int_equal(top_w, lla_num_levels(i) - 1);
        assert_int_equal(top_s, lla_num_levels(i) - 1);
    }
    /* extremes and bad input */
    assert_int_equal(lla_num_levels(INT64_MAX), 64);
    assert_int_equal(lla_num_levels((int64_t)1 << 62), 63);
    assert_int_equal(lla_num_levels(((int64_t)1 << 62) + 1), 64);
    assert_int_equal(lla_num_levels_base(INT64_MAX, 3), 41); /* 3^39 < 2^63-1 <= 3^40 */
    assert_int_equal(lla_num_levels(0), 0);
    assert_int_equal(lla_num_levels(-5), 0);
    assert_int_equal(lla_num_levels_base(10, 1), 0);
    assert_int_equal(lla_num_levels_base(10, 0), 0);
    assert_int_equal(lla_num_levels_base(0, 2), 0);
}

/* Far positions: random pairs up to 2^62 (sources near and far from the target). */
static void large_positions_match_recursive(void **state) {
    int i;
    test_rng r = {77};
    (void)state;
    for (i = 0; i < 200000; ++i) {
        int64_t t = (int64_t)(rng_next(&r) >> (2 + rng_next(&r) % 60));
        int64_t s = (i & 1) ? t - (int64_t)(rng_next(&r) % 1000) : (int64_t)(rng_next(&r) % ((uint64_t)t + 1));
        if (s < 0) s = 0;
        if (lla_level(LLA_HIERARCHY_WEAK, t, s) != ref_level_weak(t, s, 2) ||
            lla_level(LLA_HIERARCHY_STRONG, t, s) != ref_level_strong(t, s) ||
            lla_level_weak_base(t, s, 3) != ref_level_weak(t, s, 3))
            fail_msg("(%lld, %lld): weak %lld/%lld strong %lld/%lld", (long long)t, (long long)s,
                     (long long)lla_level(LLA_HIERARCHY_WEAK, t, s), (long long)ref_level_weak(t, s, 2),
                     (long long)lla_level(LLA_HIERARCHY_STRONG, t, s), (long long)ref_level_strong(t, s));
    }
}

/* Both bit_length versions against a plain loop. */
static void bit_length(void **state) {
    uint64_t x;
    int i, j;
    test_rng r = {5};
    (void)state;
    for (i = 0; i < 64; ++i)
        for (j = -1; j <= 1; ++j) {
            uint64_t v = ((uint64_t)1 << i) + (uint64_t)(int64_t)j;
            int want = 0;
            for (x = v; x; x >>= 1) ++want;
            assert_int_equal(lla__bit_length(v), want);
            assert_int_equal(lla__bit_length_portable(v), want);
        }
    for (i = 0; i < 100000; ++i) {
        uint64_t v = rng_next(&r) >> (rng_next(&r) % 64);
        int want = 0;
        for (x = v; x; x >>= 1) ++want;
        assert_int_equal(lla__bit_length(v), want);
        assert_int_equal(lla__bit_length_portable(v), want);
    }
    assert_int_equal(lla__bit_length(0), 0);
    assert_int_equal(lla__bit_length_portable(0), 0);
    assert_int_equal(lla__bit_length_portable(UINT64_MAX), 64);
}

static void bad_arguments(void **state) {
    (void)state;
    assert_int_equal(lla_level(LLA_HIERARCHY_WEAK, 3, 4), -1);
    assert_int_equal(lla_level(LLA_HIERARCHY_WEAK, 3, -1), -1);
    assert_int_equal(lla_level(LLA_HIERARCHY_STRONG, -2, -3), -1);
    assert_int_equal(lla_level((lla_hierarchy)7, 3, 1), -1);
    assert_int_equal(lla_level_weak_base(3, 4, 2), -1);
    assert_int_equal(lla_level_weak_base(3, 1, 1), -1);
    assert_int_equal(lla_level_weak_base(3, -1, 3), -1);
    assert_int_equal(lla_level_start(LLA_HIERARCHY_WEAK, -1, 3), -1);
    assert_int_equal(lla_level_start(LLA_HIERARCHY_WEAK, 1, -3), -1);
    assert_int_equal(lla_level_start((lla_hierarchy)3, 1, 3), -1);
    /* large positions stay exact */
    assert_int_equal(lla_level(LLA_HIERARCHY_WEAK, INT64_MAX, 0), 63);
    assert_int_equal(lla_level(LLA_HIERARCHY_STRONG, INT64_MAX, 0), 63);
    assert_int_equal(lla_level(LLA_HIERARCHY_STRONG, INT64_MAX, INT64_MAX - 1), 1);
    assert_int_equal(lla_level_weak_base(INT64_MAX, 0, 2), 63);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(weak_base2_matches_recursive),
        cmocka_unit_test(weak_bases_3_to_5_match_recursive),
        cmocka_unit_test(weak_base_exact_powers),
        cmocka_unit_test(weak_base_populations),
        cmocka_unit_test(strong_matches_recursive),
        cmocka_unit_test(spec_tables),
        cmocka_unit_test(spec_populations),
        cmocka_unit_test(level_start_matches_brute_force),
        cmocka_unit_test(weak_level_sizes),
        cmocka_unit_test(num_levels),
        cmocka_unit_test(large_positions_match_recursive),
        cmocka_unit_test(bit_length),
        cmocka_unit_test(bad_arguments),
    };
    return cmocka_run_group_tests_name("levels", tests, NULL, NULL);
}
