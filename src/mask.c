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

/* ------------------------------------------------------------------ y = M x */

/*
 * The sweep keeps, for the current target t, one n-vector per level:
 *     S_l = sum over sources s with level(t, s) == l of exp(G_t - G_s) x_s,
 * so y_t = sum_l lambda[t, l] S_l.  Moving from target t-1 to t, every level set of t-1
 * (the source range [lo_l(t-1), lo_{l-1}(t-1))) moves whole into the level of its first
 * source as seen from t (level sets nest: SPEC 1.2 range form), then every level decays
 * by exp(g_t) and x_t becomes level 0.  Each step costs O(levels * n) and the decay is a
 * running product of factors <= 1 for g <= 0: no difference of long cumulative sums.
 */

static int64_t used_levels(int64_t T) { return lla_num_levels(T); }

size_t lla_mask_apply_workspace(int64_t T, int64_t NL, int64_t n) {
    int64_t count;
    size_t bytes;
    if (T < 1 || n < 1 || NL < 1) return 0;
    if (!lla__mul_ok(used_levels(T), n, &count) || (uint64_t)count > SIZE_MAX / 8u) return 0;
    if (!lla__size_mul_ok((size_t)count, sizeof(double), &bytes)) return 0;
    return bytes;
}

lla_status lla_mask_apply(lla_hierarchy h, int64_t T, const double *g, const double *lambda,
                          int64_t NL, const double *x, int64_t n, double *y, void *workspace,
                          size_t workspace_bytes) {
    int64_t levels, t, l, d, count;
    size_t need;
    double *S;
    lla_status st;
    if (h != LLA_HIERARCHY_WEAK && h != LLA_HIERARCHY_STRONG)
        return lla__set_error(LLA_ERR_ARG, "lla_mask_apply: unknown hierarchy %d", (int)h);
    if (!g || !lambda || !x || !y)
        return lla__set_error(LLA_ERR_ARG, "lla_mask_apply: %s is NULL",
                              !g ? "g" : !lambda ? "lambda" : !x ? "x" : "y");
    if (T < 1 || n < 1)
        return lla__set_error(LLA_ERR_SHAPE, "lla_mask_apply: T = %lld and n = %lld must be >= 1",
                              (long long)T, (long long)n);
    if ((st = check_lambda(T, lambda, NL)) != LLA_OK) return st;
    if (!lla__mul_ok(T, n, &count) || (uint64_t)count > SIZE_MAX / 8u ||
        !lla__mul_ok(T, NL, &count) || (uint64_t)count > SIZE_MAX / 8u)
        return lla__set_error(LLA_ERR_SHAPE,
                              "lla_mask_apply: T = %lld with n = %lld or NL = %lld overflows",
                              (long long)T, (long long)n, (long long)NL);
    need = lla_mask_apply_workspace(T, NL, n);
    if (need == 0)
        return lla__set_error(LLA_ERR_SHAPE, "lla_mask_apply: workspace size overflows");
    if (!workspace || workspace_bytes < need)
        return lla__set_error(LLA_ERR_WORKSPACE, "lla_mask_apply: workspace has %zu bytes, needs %zu",
                              workspace ? workspace_bytes : (size_t)0, need);
    if (((uintptr_t)workspace % sizeof(double)) != 0)
        return lla__set_error(LLA_ERR_WORKSPACE, "lla_mask_apply: workspace is not 8-byte aligned");

    levels = used_levels(T);
    S = (double *)workspace;
    memset(S, 0, need);
    for (t = 0; t < T; ++t) {
        const double *xt = x + t * n;
        double *yt = y + t * n, decay = 1.0;
        if (t > 0) {
            /* Cascade from the level sets of t-1 to those of t, top level first, so a
             * destination level has already handed its own old set on. */
            for (l = levels - 1; l >= 1; --l) {
                int64_t first = lla__level_start(h, (int)l, t - 1);
                int64_t past = lla__level_start(h, (int)l - 1, t - 1);
                int dest;
                if (first >= past) continue; /* empty at t-1 */
                dest = lla__level(h, t, first);
                if (dest != l) {
                    double *from = S + l * n, *to = S + (int64_t)dest * n;
                    for (d = 0; d < n; ++d) { to[d] += from[d]; from[d] = 0.0; }
                }
            }
            {
                int dest = lla__level(h, t, t - 1); /* old level 0 = {t-1} */
                double *to = S + (int64_t)dest * n;
                for (d = 0; d < n; ++d) { to[d] += S[d]; S[d] = 0.0; }
            }
            decay = exp(g[t]);
        }
        /* Read x_t before writing y_t so y may be the same array as x. */
        for (d = 0; d < n; ++d) S[d] = xt[d];
        {
            const double *lam = lambda + t * NL;
            for (d = 0; d < n; ++d) yt[d] = lam[0] * S[d];
            /* Levels >= 1 that hold sources at t: decay, then accumulate.  Empty levels
             * are all zero (moved-out levels are cleared), so skipping them is exact. */
            for (l = 1; l < levels && t > 0; ++l) {
                double *Sl = S + l * n, w = lam[l];
                if (lla__level_start(h, (int)l, t) >= lla__level_start(h, (int)l - 1, t))
                    continue;
                for (d = 0; d < n; ++d) {
                    Sl[d] *= decay;
                    yt[d] += w * Sl[d];
                }
            }
        }
    }
    return LLA_OK;
}
