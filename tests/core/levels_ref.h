/*
 * levels_ref.h - brute-force level functions written straight from the reference's
 * recursive definitions (SPEC 1.1), with an exact integer floor_log in place of the
 * reference's floating-point one (SPEC 1.2, "float pitfall").  Slow on purpose: tests
 * compare the library's closed forms against these.
 */
#ifndef LLA_TEST_LEVELS_REF_H
#define LLA_TEST_LEVELS_REF_H

#include <stdint.h>

/* Largest l with base^l <= x (x >= 1). */
static inline int64_t ref_floor_log(int64_t x, int64_t base) {
    int64_t l = 0, p = 1;
    while (p <= x / base) { p *= base; ++l; }
    return l;
}

static inline int64_t ref_pow(int64_t base, int64_t e) {
    int64_t p = 1;
    while (e-- > 0) p *= base;
    return p;
}

/* Weak, recursive, any base >= 2: get_level_index_weak. */
static inline int64_t ref_level_weak(int64_t t, int64_t s, int64_t base) {
    int64_t l, v;
    if (s == t) return 0;
    l = ref_floor_log(t, base);
    v = ref_pow(base, l);
    if (s < v) return l + 1;
    return ref_level_weak(t - v, s - v, base);
}

/* Strong, recursive, base 2: get_level_index_strong. */
static inline int64_t ref_level_strong(int64_t t, int64_t s) {
    int64_t l, v, r;
    if (s == t) return 0;
    l = ref_floor_log(t, 2);
    v = ref_pow(2, l - 1 > 0 ? l - 1 : 0);
    r = t - ref_pow(2, l);
    if (s < v) return l + 1;
    if (s < 2 * v && r >= v) return l + 1;
    if (s < 2 * v) return ref_level_strong(t - v, s - v);
    return ref_level_strong(t - 2 * v, s - 2 * v);
}

static inline int64_t ref_level(lla_hierarchy h, int64_t t, int64_t s) {
    return h == LLA_HIERARCHY_WEAK ? ref_level_weak(t, s, 2) : ref_level_strong(t, s);
}

/* ceil(log_b T) + 1 by exact integer search: smallest c with b^c >= T, plus 1. */
static inline int64_t ref_num_levels(int64_t T, int64_t base) {
    int64_t c = 0, p = 1;
    while (p < T) { p *= base; ++c; }
    return c + 1;
}

#endif
