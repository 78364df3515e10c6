/*
 * fuzz_levels.c - the level functions on arbitrary int64 inputs.
 *
 * Each input is a run of records (hierarchy, t, s, level, base, T), many per input for
 * speed.  Under UBSan every call must be free of undefined behaviour (shifts, signed
 * overflow), and the results must agree with the definitions of SPEC 1.2 evaluated here
 * by plain loops:
 *   lla_level            -1 for bad input; weak = bit_length(t ^ s); strong = 1 + the
 *                        smallest j with (t >> j) - (s >> j) <= 1; 0 <= level < 64, 0 only
 *                        on the diagonal, below lla_num_levels(t + 1); s lies in the level's
 *                        range [lla_level_start(l), lla_level_start(l - 1));
 *   lla_level_start      -1 for bad input; 0 <= start <= t, start(0) = t, non-increasing
 *                        in the level; a non-empty range holds exactly the sources of that
 *                        level (checked at both ends); weak level l >= 1 non-empty iff bit
 *                        l-1 of t is set;
 *   lla_num_levels(_base) smallest L with base^(L-1) >= T (0 for bad input);
 *   lla_level_weak_base  smallest L with t / base^L == s / base^L; equals lla_level for
 *                        base 2; below lla_num_levels_base(t + 1, base);
 *   lla_mask_apply_workspace  no overflow: 0 for bad input, else a multiple of 8 bytes.
 */
#include "fuzz.h"

#include <string.h>

static int bit_length(uint64_t x) {
    int n = 0;
    while (x) {
        ++n;
        x >>= 1;
    }
    return n;
}

/* base^e, saturating at UINT64_MAX. */
static uint64_t sat_pow(uint64_t base, int64_t e) {
    uint64_t r = 1;
    while (e-- > 0 && r != UINT64_MAX) r = sat_mul(r, base);
    return r;
}

static int64_t ref_level(int h, int64_t t, int64_t s) {
    int64_t j;
    if (s == t) return 0;
    if (h == LLA_HIERARCHY_WEAK) return bit_length((uint64_t)t ^ (uint64_t)s);
    for (j = 0; j < 63; ++j)
        if ((t >> j) - (s >> j) <= 1) return j + 1;
    return 64; /* not reached for 0 <= s < t */
}

static void check_level(int h, int64_t t, int64_t s) {
    int valid_h = h == LLA_HIERARCHY_WEAK || h == LLA_HIERARCHY_STRONG;
    int64_t l = lla_level((lla_hierarchy)h, t, s), lo, hi;
    if (!valid_h || s < 0 || s > t) {
        FUZZ_CHECK(l == -1, "lla_level(%d, %lld, %lld) = %lld, expected -1", h, (long long)t,
                   (long long)s, (long long)l);
        return;
    }
    FUZZ_CHECK(l == ref_level(h, t, s), "lla_level(%d, %lld, %lld) = %lld, definition gives %lld", h,
               (long long)t, (long long)s, (long long)l, (long long)ref_level(h, t, s));
    FUZZ_CHECK(l >= 0 && l < 64 && (l == 0) == (s == t), "lla_level(%d, %lld, %lld) = %lld", h,
               (long long)t, (long long)s, (long long)l);
    if (t < INT64_MAX)
        FUZZ_CHECK(l < ref_num_levels(t + 1), "level %lld of (%lld, %lld) needs more than %lld levels",
                   (long long)l, (long long)t, (long long)s, (long long)ref_num_levels(t + 1));
    if (h == LLA_HIERARCHY_WEAK)
        FUZZ_CHECK(lla_level_weak_base(t, s, 2) == l, "weak base 2 (%lld) != lla_level (%lld)",
                   (long long)lla_level_weak_base(t, s, 2), (long long)l);
    if (l == 0) return;
    lo = lla_level_start((lla_hierarchy)h, l, t);
    hi = lla_level_start((lla_hierarchy)h, l - 1, t);
    FUZZ_CHECK(lo <= s && s < hi, "source %lld of target %lld at level %lld outside [%lld, %lld)",
               (long long)s, (long long)t, (long long)l, (long long)lo, (long long)hi);
}

static void check_level_start(int h, int64_t level, int64_t t) {
    int valid_h = h == LLA_HIERARCHY_WEAK || h == LLA_HIERARCHY_STRONG;
    int64_t lo = lla_level_start((lla_hierarchy)h, level, t), hi;
    if (!valid_h || t < 0 || level < 0) {
        FUZZ_CHECK(lo == -1, "lla_level_start(%d, %lld, %lld) = %lld, expected -1", h,
                   (long long)level, (long long)t, (long long)lo);
        return;
    }
    FUZZ_CHECK(lo >= 0 && lo <= t, "lla_level_start(%d, %lld, %lld) = %lld", h, (long long)level,
               (long long)t, (long long)lo);
    if (level == 0) {
        FUZZ_CHECK(lo == t, "lla_level_start(%d, 0, %lld) = %lld", h, (long long)t, (long long)lo);
        return;
    }
    hi = lla_level_start((lla_hierarchy)h, level - 1, t);
    FUZZ_CHECK(lo <= hi, "level starts increase: level %lld starts at %lld, level %lld at %lld",
               (long long)level, (long long)lo, (long long)(level - 1), (long long)hi);
    if (h == LLA_HIERARCHY_WEAK) {
        int set = level <= 63 && (((uint64_t)t >> (level - 1)) & 1u) != 0;
        FUZZ_CHECK((lo < hi) == set, "weak level %lld of %lld: range [%lld, %lld), bit %d", (long long)level,
                   (long long)t, (long long)lo, (long long)hi, set);
    }
    if (lo < hi) { /* the whole range, checked at its ends, sits at this level */
        FUZZ_CHECK(lla_level((lla_hierarchy)h, t, lo) == level &&
                       lla_level((lla_hierarchy)h, t, hi - 1) == level,
                   "range [%lld, %lld) of level %lld of target %lld holds levels %lld .. %lld",
                   (long long)lo, (long long)hi, (long long)level, (long long)t,
                   (long long)lla_level((lla_hierarchy)h, t, lo),
                   (long long)lla_level((lla_hierarchy)h, t, hi - 1));
    }
}

static void check_num_levels(int64_t T, int64_t base) {
    int64_t L = lla_num_levels_base(T, base);
    if (T < 1 || base < 2) {
        FUZZ_CHECK(L == 0, "lla_num_levels_base(%lld, %lld) = %lld", (long long)T, (long long)base,
                   (long long)L);
    } else {
        FUZZ_CHECK(L >= 1 && L <= 64, "lla_num_levels_base(%lld, %lld) = %lld", (long long)T,
                   (long long)base, (long long)L);
        FUZZ_CHECK(sat_pow((uint64_t)base, L - 1) >= (uint64_t)T &&
                       (L == 1 || sat_pow((uint64_t)base, L - 2) < (uint64_t)T),
                   "lla_num_levels_base(%lld, %lld) = %lld is not the smallest L with base^(L-1) >= T",
                   (long long)T, (long long)base, (long long)L);
    }
    FUZZ_CHECK(lla_num_levels(T) == ref_num_levels(T), "lla_num_levels(%lld) = %lld, expected %lld",
               (long long)T, (long long)lla_num_levels(T), (long long)ref_num_levels(T));
    FUZZ_CHECK(lla_num_levels_base(T, 2) == lla_num_levels(T), "num_levels base 2 disagrees at %lld",
               (long long)T);
}

static void check_weak_base(int64_t t, int64_t s, int64_t base) {
    int64_t l = lla_level_weak_base(t, s, base), L;
    if (s < 0 || s > t || base < 2) {
        FUZZ_CHECK(l == -1, "lla_level_weak_base(%lld, %lld, %lld) = %lld", (long long)t, (long long)s,
                   (long long)base, (long long)l);
        return;
    }
    for (L = 0;; ++L) { /* the definition: digits above L - 1 agree */
        uint64_t p = sat_pow((uint64_t)base, L);
        if (p > (uint64_t)t || (uint64_t)t / p == (uint64_t)s / p) break;
    }
    FUZZ_CHECK(l == L, "lla_level_weak_base(%lld, %lld, %lld) = %lld, definition gives %lld",
               (long long)t, (long long)s, (long long)base, (long long)l, (long long)L);
    if (t < INT64_MAX)
        FUZZ_CHECK(l < lla_num_levels_base(t + 1, base),
                   "weak base-%lld level %lld of (%lld, %lld) beyond lla_num_levels_base(%lld) = %lld",
                   (long long)base, (long long)l, (long long)t, (long long)s, (long long)(t + 1),
                   (long long)lla_num_levels_base(t + 1, base));
}

static void check_mask_workspace(int64_t T, int64_t NL, int64_t n) {
    size_t w = lla_mask_apply_workspace(T, NL, n);
    if (T < 1 || NL < 1 || n < 1) {
        FUZZ_CHECK(w == 0, "lla_mask_apply_workspace(%lld, %lld, %lld) = %zu", (long long)T,
                   (long long)NL, (long long)n, w);
        return;
    }
    FUZZ_CHECK(w % 8 == 0 && (w == 0 || (uint64_t)w >= sat_mul((uint64_t)n, 8)),
               "lla_mask_apply_workspace(%lld, %lld, %lld) = %zu", (long long)T, (long long)NL,
               (long long)n, w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz f;
    int records;
    f.data = data;
    f.size = size;
    f.at = 0;
    for (records = 0; records < 256 && (records == 0 || f.at < f.size); ++records) {
        int h = fz_enum(&f);
        int64_t t = fz_int(&f, 0, 191), s = fz_int(&f, 0, 191), level = fz_int(&f, 0, 70);
        int64_t base = fz_int(&f, 0, 12), T = fz_int(&f, 0, 191);
        uint8_t near = fz_u8(&f);
        /* s just below t reaches the low levels of far-away targets */
        if ((near & 0x80) && t >= INT64_MIN + 127) s = t - (near & 0x7f);
        check_level(h, t, s);
        check_level(h, s, t);
        check_level_start(h, level, t);
        check_level_start(h, level, s);
        check_num_levels(T, base);
        check_num_levels(t, 2);
        check_weak_base(t, s, base);
        check_mask_workspace(T, level, base);
    }
    return 0;
}
