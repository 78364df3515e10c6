/*
 * fenwick.c - level functions of the weak (Fenwick) and strong hierarchies.
 *
 * All integer arithmetic (SPEC 1.2): the reference's floating-point floor_log is wrong
 * at some exact powers of bases 3 and 10, this is not.
 */
#include "internal.h"

int64_t lla_num_levels(int64_t T) { return lla_num_levels_base(T, 2); }

int64_t lla_num_levels_base(int64_t T, int64_t base) {
    int64_t levels = 1, reach = 1; /* reach = base^(levels-1) */
    if (T < 1 || base < 2) return 0;
    while (reach < T) {
        ++levels;
        if (reach > INT64_MAX / base) break; /* base^(levels-1) >= T for any int64 T */
        reach *= base;
    }
    return levels;
}

int64_t lla_level(lla_hierarchy h, int64_t t, int64_t s) {
    if (s < 0 || s > t) return -1;
    if (h != LLA_HIERARCHY_WEAK && h != LLA_HIERARCHY_STRONG) return -1;
    return lla__level(h, t, s);
}

int64_t lla_level_weak_base(int64_t t, int64_t s, int64_t base) {
    int64_t level = 0, digit = 0;
    if (s < 0 || s > t || base < 2) return -1;
    /* 1 + index of the most significant base-b digit where t and s differ. */
    while (t > 0 || s > 0) {
        ++digit;
        if (t % base != s % base) level = digit;
        t /= base;
        s /= base;
    }
    return level;
}

int64_t lla_level_start(lla_hierarchy h, int64_t level, int64_t t) {
    if (t < 0 || level < 0) return -1;
    if (h != LLA_HIERARCHY_WEAK && h != LLA_HIERARCHY_STRONG) return -1;
    if (level > 64) level = 64;
    return lla__level_start(h, (int)level, t);
}
