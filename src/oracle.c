/*
 * oracle.c - dense float64 reference of every variant and hierarchy (SPEC section 2).
 *
 * O(T^2) per (sequence, head), straight from the definition
 *     o_t = sum_{s<=t} lambda[t, level(t,s)] * scale * (q_t^T Phi(t,s) k_s) * c_s * v_s,
 * walking s from t down to the sequence start and carrying Phi incrementally:
 * Mamba-2 carries the log decay G_t - G_s, GDN carries u = Phi(t,s)^T q_t (each P_r is
 * symmetric, so u_{s-1} = P_s u_s).  Positions start at 0 for every sequence.
 */
#include "check.h"

#include <math.h>

lla_status lla_oracle_workspace(const lla_problem *p, size_t *bytes) {
    lla_status st;
    size_t n;
    if (!bytes) return lla__set_error(LLA_ERR_ARG, "bytes is NULL");
    if ((st = lla__check_problem(p, NULL)) != LLA_OK) return st;
    if (!lla__size_add_ok((size_t)p->dk, (size_t)p->dv, &n) || !lla__size_mul_ok(n, 8, &n))
        return lla__set_error(LLA_ERR_SHAPE, "workspace size overflows");
    *bytes = n;
    return LLA_OK;
}

static lla_status check_host_dtype(const lla_tensor *t, const char *name) {
    if (t->dtype != LLA_DTYPE_F32 && t->dtype != LLA_DTYPE_F64)
        return lla__set_error(LLA_ERR_DTYPE, "oracle: tensor %s must be f32 or f64", name);
    return LLA_OK;
}

lla_status lla_oracle_forward(const lla_problem *p, const lla_inputs *x, lla_tensor o,
                              void *workspace, size_t workspace_bytes) {
    lla_status st;
    int64_t longest, b, h, t, s, d;
    size_t need = 0; /* set by lla_oracle_workspace; initialised for -Wmaybe-uninitialized at -O3 without -fPIC */
    double *u, *acc;
    if ((st = lla__check_problem(p, &longest)) != LLA_OK) return st;
    if ((st = lla__check_levels(p, longest)) != LLA_OK) return st;
    if ((st = check_host_dtype(&o, "o")) != LLA_OK) return st;
    if (!x) return lla__set_error(LLA_ERR_ARG, "inputs is NULL");
    if ((st = check_host_dtype(&x->q, "q")) != LLA_OK) return st;
    /* Inputs share one dtype (F32 or F64); o may be either. */
    if ((st = lla__check_inputs(p, x, x->q.dtype)) != LLA_OK) return st;
    if ((st = lla__check_output("o", p, &o, o.dtype)) != LLA_OK) return st;
    if ((st = lla_oracle_workspace(p, &need)) != LLA_OK) return st;
    if (!workspace || workspace_bytes < need)
        return lla__set_error(LLA_ERR_WORKSPACE, "oracle workspace has %zu bytes, needs %zu",
                              workspace ? workspace_bytes : 0, need);
    if (((uintptr_t)workspace & 7u) != 0)
        return lla__set_error(LLA_ERR_WORKSPACE, "oracle workspace is not 8-byte aligned");
    u = (double *)workspace;
    acc = u + p->dk;

    for (b = 0; b < p->batch; ++b) {
        int64_t tb, start, end;
        lla__sequence(p, b, &tb, &start, &end);
        for (h = 0; h < p->heads; ++h) {
            int64_t hq = lla__qk_head(p, h);
            for (t = start; t < end; ++t) {
                double log_decay = 0.0; /* Mamba-2: G_t - G_s */
                for (d = 0; d < p->dv; ++d) acc[d] = 0.0;
                for (d = 0; d < p->dk; ++d) u[d] = p->scale * lla__load(&x->q, tb, t, hq, d);
                for (s = t; s >= start; --s) {
                    int level = lla__level(p->hierarchy, t - start, s - start);
                    double lam = lla__load(&x->lambda, tb, t, h, level), dot = 0.0, coef;
                    double gs = lla__load(&x->g, tb, s, h, 0);
                    for (d = 0; d < p->dk; ++d) dot += u[d] * lla__load(&x->k, tb, s, hq, d);
                    if (p->variant == LLA_VARIANT_MAMBA2) {
                        coef = lam * exp(log_decay) * dot;
                        log_decay += gs;
                    } else {
                        double beta = lla__load(&x->beta, tb, s, h, 0), a = exp(gs);
                        coef = lam * beta * dot;
                        /* u <- P_s u = a_s (u - beta_s k_s (k_s . u)) */
                        for (d = 0; d < p->dk; ++d)
                            u[d] = a * (u[d] - beta * lla__load(&x->k, tb, s, hq, d) * dot);
                    }
                    for (d = 0; d < p->dv; ++d) acc[d] += coef * lla__load(&x->v, tb, s, h, d);
                }
                for (d = 0; d < p->dv; ++d) lla__store(&o, tb, t, h, d, acc[d]);
            }
        }
    }
    return LLA_OK;
}
