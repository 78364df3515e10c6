/*
 * oracle_grad.c - dense float64 gradients of sum(o * d_o) for every variant (SPEC 4.5).
 *
 * O(T^2) per (sequence, head), no T x T matrix: pairs (t, s) are visited on the fly.
 *
 * Mamba-2 uses the closed forms of SPEC 4.5.  With P[t,s] = scale exp(G_t - G_s) q_t.k_s,
 * M = lambda[t, level] P and dS[t,s] = d_o_t . v_s:
 *     dv_s += M d_o_t,  dq_t += lambda exp(..) dS scale k_s,  dk_s += lambda exp(..) dS scale q_t,
 *     dlambda[t, level] += P dS,  dG_t += M dS,  dG_s -= M dS,  dg_r = sum_{t >= r} dG_t.
 *
 * GDN is differentiated in reverse mode through the oracle's own walk: for a target t,
 * u_t = scale q_t and u_{s-1} = P_s u_s with P_s = a_s (I - beta_s k_s k_s^T), and the pair
 * coefficient is lambda[t, level] beta_s (u_s . k_s).  The walk is stored (one K vector per
 * source), then run backwards: for y = P_s x and an incoming gradient dy,
 *     dx = P_s dy,  dg_s += y . dy,  dbeta_s -= a_s (k_s.x)(k_s.dy),
 *     dk_s -= a_s beta_s ((k_s.x) dy + (k_s.dy) x).
 *
 * Grouped q/k heads: dq and dk are summed over the value heads of each group in float64
 * buffers and stored once.
 */
#include "check.h"

#include <math.h>

/* Per-sequence float64 buffers, all of length T_max (the longest sequence). */
typedef struct oracle_buffers {
    double *dq, *dk;  /* [T][K], summed over the heads of a group */
    double *dv;       /* [T][V] */
    double *dlam;     /* [T][NL] */
    double *dgate;    /* [T]: dG (Mamba-2) or dg (GDN) */
    double *dbeta;    /* [T] */
    double *walk;     /* [T][K]: u_s of the GDN walk of one target */
    double *dwalk;    /* [K] */
    double *coef_grad;/* [T]: d(u_s . k_s) of one target */
} oracle_buffers;

static lla_status buffer_doubles(const lla_problem *p, int64_t longest, size_t *count) {
    int64_t per_token = 0, n = 0;
    if (!lla__add_ok(3 * p->dk, p->dv, &per_token) ||
        !lla__add_ok(per_token, p->levels + 3, &per_token) ||
        !lla__mul_ok(per_token, longest, &n) || !lla__add_ok(n, p->dk, &n) ||
        n > (int64_t)(SIZE_MAX / 8))
        return lla__set_error(LLA_ERR_SHAPE, "oracle backward workspace size overflows");
    *count = (size_t)n;
    return LLA_OK;
}

lla_status lla_oracle_backward_workspace(const lla_problem *p, size_t *bytes) {
    lla_status st;
    int64_t longest;
    size_t n = 0;
    if (!bytes) return lla__set_error(LLA_ERR_ARG, "bytes is NULL");
    if ((st = lla__check_problem(p, &longest)) != LLA_OK) return st;
    if ((st = buffer_doubles(p, longest, &n)) != LLA_OK) return st;
    *bytes = n * sizeof(double);
    return LLA_OK;
}

static void carve(const lla_problem *p, int64_t longest, double *ws, oracle_buffers *b) {
    int64_t T = longest, K = p->dk;
    b->dq = ws;
    b->dk = b->dq + T * K;
    b->walk = b->dk + T * K;
    b->dv = b->walk + T * K;
    b->dlam = b->dv + T * p->dv;
    b->dgate = b->dlam + T * p->levels;
    b->dbeta = b->dgate + T;
    b->coef_grad = b->dbeta + T;
    b->dwalk = b->coef_grad + T; /* the last K doubles */
}

static double dot_k(const lla_tensor *x, int64_t tb, int64_t t, int64_t hq, const double *u,
                    int64_t K) {
    double s = 0.0;
    int64_t d;
    for (d = 0; d < K; ++d) s += u[d] * lla__load(x, tb, t, hq, d);
    return s;
}

/* Mamba-2 closed forms for one (sequence, head); dq/dk accumulate, the rest is set. */
static void mamba2_head(const lla_problem *p, const lla_inputs *x, const lla_tensor *d_o,
                        int64_t tb, int64_t start, int64_t n, int64_t h,
                        const oracle_buffers *w) {
    int64_t K = p->dk, V = p->dv, hq = lla__qk_head(p, h), t, s, d;
    for (t = 0; t < n; ++t) {
        double log_decay = 0.0; /* G_t - G_s, summed along the walk (no cancellation) */
        for (s = t; s >= 0; --s) {
            int level = lla__level(p->hierarchy, t, s);
            double lam = lla__load(&x->lambda, tb, start + t, h, level);
            double decay = exp(log_decay), qk = 0.0, ds = 0.0, prob, m;
            for (d = 0; d < K; ++d)
                qk += lla__load(&x->q, tb, start + t, hq, d) * lla__load(&x->k, tb, start + s, hq, d);
            for (d = 0; d < V; ++d)
                ds += lla__load(d_o, tb, start + t, h, d) * lla__load(&x->v, tb, start + s, h, d);
            prob = p->scale * decay * qk;
            m = lam * prob;
            for (d = 0; d < V; ++d) w->dv[s * V + d] += m * lla__load(d_o, tb, start + t, h, d);
            for (d = 0; d < K; ++d) {
                double c = lam * decay * ds * p->scale;
                w->dq[t * K + d] += c * lla__load(&x->k, tb, start + s, hq, d);
                w->dk[s * K + d] += c * lla__load(&x->q, tb, start + t, hq, d);
            }
            w->dlam[t * p->levels + level] += prob * ds;
            w->dgate[t] += m * ds;
            w->dgate[s] -= m * ds;
            log_decay += lla__load(&x->g, tb, start + s, h, 0);
        }
    }
    /* dg_r = sum_{t >= r} dG_t */
    for (t = n - 2; t >= 0; --t) w->dgate[t] += w->dgate[t + 1];
}

/* GDN by reverse mode through the walk u_{s-1} = P_s u_s, one target at a time. */
static void gdn_head(const lla_problem *p, const lla_inputs *x, const lla_tensor *d_o,
                     int64_t tb, int64_t start, int64_t n, int64_t h, const oracle_buffers *w) {
    int64_t K = p->dk, V = p->dv, hq = lla__qk_head(p, h), t, s, d;
    double *u, *du = w->dwalk;
    for (t = 0; t < n; ++t) {
        /* Forward walk: walk[s] = Phi(t, s)^T scale q_t for s = t .. 0. */
        u = w->walk + t * K;
        for (d = 0; d < K; ++d) u[d] = p->scale * lla__load(&x->q, tb, start + t, hq, d);
        for (s = t; s >= 0; --s) {
            double *us = w->walk + s * K;
            int level = lla__level(p->hierarchy, t, s);
            double lam = lla__load(&x->lambda, tb, start + t, h, level);
            double beta = lla__load(&x->beta, tb, start + s, h, 0);
            double uk = dot_k(&x->k, tb, start + s, hq, us, K), ds = 0.0;
            for (d = 0; d < V; ++d)
                ds += lla__load(d_o, tb, start + t, h, d) * lla__load(&x->v, tb, start + s, h, d);
            for (d = 0; d < V; ++d)
                w->dv[s * V + d] += lam * beta * uk * lla__load(d_o, tb, start + t, h, d);
            w->dlam[t * p->levels + level] += ds * beta * uk;
            w->dbeta[s] += ds * lam * uk;
            w->coef_grad[s] = ds * lam * beta;
            if (s > 0) {
                double a = exp(lla__load(&x->g, tb, start + s, h, 0));
                double *next = w->walk + (s - 1) * K;
                for (d = 0; d < K; ++d)
                    next[d] = a * (us[d] - beta * uk * lla__load(&x->k, tb, start + s, hq, d));
            }
        }
        /* Backward walk: du = gradient w.r.t. walk[s], from s = 0 up to t. */
        for (d = 0; d < K; ++d) du[d] = 0.0;
        for (s = 0; s <= t; ++s) {
            double *us = w->walk + s * K;
            double cg = w->coef_grad[s];
            if (s > 0) { /* walk[s-1] = P_s walk[s]; du holds d walk[s-1] */
                double a = exp(lla__load(&x->g, tb, start + s, h, 0));
                double beta = lla__load(&x->beta, tb, start + s, h, 0);
                double *prev = w->walk + (s - 1) * K; /* y = P_s x */
                double kx = dot_k(&x->k, tb, start + s, hq, us, K);
                double kdy = dot_k(&x->k, tb, start + s, hq, du, K), ydy = 0.0;
                for (d = 0; d < K; ++d) ydy += prev[d] * du[d];
                w->dgate[s] += ydy;
                w->dbeta[s] -= a * kx * kdy;
                for (d = 0; d < K; ++d) {
                    double kd = lla__load(&x->k, tb, start + s, hq, d);
                    w->dk[s * K + d] -= a * beta * (kx * du[d] + kdy * us[d]);
                    du[d] = a * (du[d] - beta * kd * kdy);
                }
            }
            for (d = 0; d < K; ++d) {
                w->dk[s * K + d] += cg * us[d];
                du[d] += cg * lla__load(&x->k, tb, start + s, hq, d);
            }
        }
        for (d = 0; d < K; ++d) w->dq[t * K + d] += p->scale * du[d];
    }
}

static lla_status check_host(const lla_tensor *t, const char *name) {
    if (t->dtype != LLA_DTYPE_F32 && t->dtype != LLA_DTYPE_F64)
        return lla__set_error(LLA_ERR_DTYPE, "oracle: tensor %s must be f32 or f64", name);
    return LLA_OK;
}

lla_status lla_oracle_backward(const lla_problem *p, const lla_inputs *x, lla_tensor d_o,
                               const lla_grads *grads, void *workspace,
                               size_t workspace_bytes) {
    lla_status st;
    int64_t longest, b, h, t, d, group_size;
    size_t need;
    oracle_buffers w;
    if ((st = lla__check_problem(p, &longest)) != LLA_OK) return st;
    if ((st = lla__check_levels(p, longest)) != LLA_OK) return st;
    if (!x) return lla__set_error(LLA_ERR_ARG, "inputs is NULL");
    if (!grads) return lla__set_error(LLA_ERR_ARG, "grads is NULL");
    /* Inputs share one host dtype; d_o and the gradients share another (either may be
     * f32 or f64). */
    if ((st = check_host(&x->q, "q")) != LLA_OK) return st;
    if ((st = check_host(&d_o, "d_o")) != LLA_OK) return st;
    if ((st = lla__check_inputs(p, x, x->q.dtype)) != LLA_OK) return st;
    if ((st = lla__check_output("d_o", p, &d_o, d_o.dtype)) != LLA_OK) return st;
    if ((st = lla__check_grads(p, grads, d_o.dtype)) != LLA_OK) return st;
    if ((st = lla_oracle_backward_workspace(p, &need)) != LLA_OK) return st;
    if (!workspace || workspace_bytes < need)
        return lla__set_error(LLA_ERR_WORKSPACE,
                              "oracle backward workspace has %zu bytes, needs %zu",
                              workspace ? workspace_bytes : 0, need);
    if (((uintptr_t)workspace & 7u) != 0)
        return lla__set_error(LLA_ERR_WORKSPACE, "oracle workspace is not 8-byte aligned");
    carve(p, longest, (double *)workspace, &w);
    group_size = p->heads / p->qk_heads;

    for (b = 0; b < p->batch; ++b) {
        int64_t tb, start, end, n, K = p->dk, V = p->dv, NL = p->levels;
        lla__sequence(p, b, &tb, &start, &end);
        n = end - start;
        for (h = 0; h < p->heads; ++h) {
            int64_t hq = lla__qk_head(p, h);
            int first_of_group = h % group_size == 0, last_of_group = h % group_size == group_size - 1;
            if (first_of_group)
                for (t = 0; t < n * K; ++t) w.dq[t] = w.dk[t] = 0.0;
            for (t = 0; t < n * V; ++t) w.dv[t] = 0.0;
            for (t = 0; t < n * NL; ++t) w.dlam[t] = 0.0;
            for (t = 0; t < n; ++t) w.dgate[t] = w.dbeta[t] = 0.0;
            if (p->variant == LLA_VARIANT_MAMBA2)
                mamba2_head(p, x, &d_o, tb, start, n, h, &w);
            else
                gdn_head(p, x, &d_o, tb, start, n, h, &w);
            for (t = 0; t < n; ++t) {
                for (d = 0; d < V; ++d) lla__store(&grads->dv, tb, start + t, h, d, w.dv[t * V + d]);
                for (d = 0; d < NL; ++d)
                    lla__store(&grads->dlambda, tb, start + t, h, d, w.dlam[t * NL + d]);
                lla__store(&grads->dg, tb, start + t, h, 0, w.dgate[t]);
                if (p->variant == LLA_VARIANT_GDN)
                    lla__store(&grads->dbeta, tb, start + t, h, 0, w.dbeta[t]);
            }
            if (last_of_group)
                for (t = 0; t < n; ++t)
                    for (d = 0; d < K; ++d) {
                        lla__store(&grads->dq, tb, start + t, hq, d, w.dq[t * K + d]);
                        lla__store(&grads->dk, tb, start + t, hq, d, w.dk[t * K + d]);
                    }
        }
    }
    return LLA_OK;
}
