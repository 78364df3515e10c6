/*
 * mask.c - the structured mask M[t,s] = lambda[t, level(t,s)] * exp(G_t - G_s), s <= t,
 * as dense float64 matrices (for tests and users checking their own kernels) and as an
 * O(T log T) product with a matrix (lla_mask_apply).
 *
 * Decays are formed from sums of g over (s, t] accumulated row by row, never as a
 * difference of global cumulative sums, so long sequences do not cancel.
 */
#include "internal.h"

#include <math.h>
#include <string.h>

static lla_status check_square(lla_hierarchy h, int64_t T, const void *out) {
    int64_t n;
    if (h != LLA_HIERARCHY_WEAK && h != LLA_HIERARCHY_STRONG)
        return lla__set_error(LLA_ERR_ARG, "unknown hierarchy %d", (int)h);
    if (!out) return lla__set_error(LLA_ERR_ARG, "out is NULL");
    if (T < 1 || !lla__mul_ok(T, T, &n) || n > (int64_t)(SIZE_MAX / 8))
        return lla__set_error(LLA_ERR_SHAPE, "T = %lld is not a valid matrix size", (long long)T);
    return LLA_OK;
}

lla_status lla_mask_levels_dense(lla_hierarchy h, int64_t T, int64_t *out) {
    int64_t t, s;
    lla_status st = check_square(h, T, out);
    if (st != LLA_OK) return st;
    for (t = 0; t < T; ++t)
        for (s = 0; s < T; ++s) out[t * T + s] = s <= t ? lla__level(h, t, s) : 0;
    return LLA_OK;
}

static lla_status check_lambda(int64_t T, const double *lambda, int64_t NL) {
    if (!lambda) return lla__set_error(LLA_ERR_ARG, "lambda is NULL");
    if (NL < 1 || NL > 62 || lla_num_levels(T) > NL)
        return lla__set_error(LLA_ERR_SHAPE, "NL = %lld is too few for T = %lld (needs %lld)",
                              (long long)NL, (long long)T, (long long)lla_num_levels(T));
    return LLA_OK;
}

lla_status lla_mask_lambda_dense(lla_hierarchy h, int64_t T, const double *lambda, int64_t NL,
                                 double *out) {
    int64_t t, s;
    lla_status st = check_square(h, T, out);
    if (st != LLA_OK || (st = check_lambda(T, lambda, NL)) != LLA_OK) return st;
    for (t = 0; t < T; ++t)
        for (s = 0; s < T; ++s)
            out[t * T + s] = s <= t ? lambda[t * NL + lla__level(h, t, s)] : 0.0;
    return LLA_OK;
}

lla_status lla_mask_decay_dense(int64_t T, const double *g, double *out) {
    int64_t t, s;
    lla_status st = check_square(LLA_HIERARCHY_WEAK, T, out);
    if (st != LLA_OK) return st;
    if (!g) return lla__set_error(LLA_ERR_ARG, "g is NULL");
    for (t = 0; t < T; ++t) {
        double sum = 0.0; /* sum of g over (s, t] */
        for (s = T - 1; s > t; --s) out[t * T + s] = 0.0;
        for (s = t; s >= 0; --s) {
            out[t * T + s] = exp(sum);
            sum += g[s];
        }
    }
    return LLA_OK;
}

lla_status lla_mask_dense(lla_hierarchy h, int64_t T, const double *g, const double *lambda,
                          int64_t NL, double *out) {
    int64_t t, s;
    lla_status st = check_square(h, T, out);
    if (st != LLA_OK || (st = check_lambda(T, lambda, NL)) != LLA_OK) return st;
    if ((st = lla_mask_decay_dense(T, g, out)) != LLA_OK) return st;
    for (t = 0; t < T; ++t)
        for (s = 0; s <= t; ++s) out[t * T + s] *= lambda[t * NL + lla__level(h, t, s)];
    return LLA_OK;
}
