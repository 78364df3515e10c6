/* bwutil.c - see bwutil.h. */
#include "bwutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

lla_grads bw_grads(test_data *td, lla_dtype dtype) {
    lla_grads g;
    const lla_problem *p = &td->p;
    g.dq = td_tensor(td, p->qk_heads, p->dk, dtype);
    g.dk = td_tensor(td, p->qk_heads, p->dk, dtype);
    g.dv = td_tensor(td, p->heads, p->dv, dtype);
    g.dg = td_tensor(td, p->heads, 1, dtype);
    g.dlambda = td_tensor(td, p->heads, p->levels, dtype);
    g.dbeta = td_tensor(td, p->heads, 1, dtype);
    return g;
}

lla_tensor bw_random_do(test_data *td, lla_dtype dtype, uint64_t seed) {
    const lla_problem *p = &td->p;
    lla_tensor d = td_tensor(td, p->heads, p->dv, dtype);
    test_rng r;
    int64_t b, t, h, e;
    r.s = seed;
    for (b = 0; b < td_tensor_batch(p); ++b)
        for (t = 0; t < p->seqlen; ++t)
            for (h = 0; h < p->heads; ++h)
                for (e = 0; e < p->dv; ++e) lla__store(&d, b, t, h, e, rng_uniform(&r, -1, 1));
    return d;
}

lla_grads bw_oracle(test_data *td, lla_tensor d_o) {
    size_t bytes;
    void *ws;
    lla_grads g = bw_grads(td, LLA_DTYPE_F64);
    if (d_o.dtype != LLA_DTYPE_F64) { /* the oracle's d_o shares the gradients' dtype */
        const lla_problem *p = &td->p;
        lla_tensor d64 = td_tensor(td, p->heads, p->dv, LLA_DTYPE_F64);
        int64_t b, t, h, e;
        for (b = 0; b < td_tensor_batch(p); ++b)
            for (t = 0; t < p->seqlen; ++t)
                for (h = 0; h < p->heads; ++h)
                    for (e = 0; e < p->dv; ++e) lla__store(&d64, b, t, h, e, lla__load(&d_o, b, t, h, e));
        d_o = d64;
    }
    if (lla_oracle_backward_workspace(&td->p, &bytes) != LLA_OK) abort();
    ws = td_alloc(td, bytes, 0);
    if (lla_oracle_backward(&td->p, &td->x, d_o, &g, ws, bytes) != LLA_OK) abort();
    return g;
}

lla_status bw_scalar(lla_backend *be, test_data *td, lla_tensor d_o, const lla_state *initial,
                     const lla_state *d_final, const lla_grads *grads, lla_state *d_initial) {
    size_t bytes = 0;
    lla_status st = lla_backward_workspace(be, &td->p, d_o.dtype, &bytes);
    void *ws;
    if (st != LLA_OK) return st;
    ws = bytes ? td_alloc(td, bytes, 0x7f) : NULL; /* poisoned: must not be read unwritten */
    return lla_backward(be, &td->p, &td->x, d_o, initial, d_final, grads, d_initial, ws, bytes);
}

double bw_grads_err(const lla_problem *p, const lla_grads *a, const lla_grads *ref,
                    const char **worst) {
    struct { const char *name; const lla_tensor *x, *r; int64_t heads, dim; } list[6];
    int n = 0, i;
    double e = 0.0;
#define ADD(nm, field, hh, dd)                                                   \
    do {                                                                         \
        list[n].name = nm; list[n].x = &a->field; list[n].r = &ref->field;      \
        list[n].heads = hh; list[n].dim = dd; ++n;                               \
    } while (0)
    ADD("dq", dq, p->qk_heads, p->dk);
    ADD("dk", dk, p->qk_heads, p->dk);
    ADD("dv", dv, p->heads, p->dv);
    ADD("dg", dg, p->heads, 1);
    ADD("dlambda", dlambda, p->heads, p->levels);
    if (p->variant == LLA_VARIANT_GDN) ADD("dbeta", dbeta, p->heads, 1);
#undef ADD
    if (worst) *worst = "none";
    for (i = 0; i < n; ++i) {
        double ei = rel_err(p, list[i].x, list[i].r, list[i].heads, list[i].dim);
        if (!(ei <= e)) {
            e = ei;
            if (worst) *worst = list[i].name;
        }
    }
    return e;
}

lla_state bw_state(test_data *td, lla_backend *be, lla_dtype tensor_dtype, const int64_t *pos,
                   uint64_t seed) {
    lla_state s;
    lla_dtype sd = tensor_dtype == LLA_DTYPE_F64 ? LLA_DTYPE_F64 : LLA_DTYPE_F32;
    size_t bytes, i, n;
    void *mem;
    test_rng r;
    int64_t b;
    if (lla_state_bytes(&td->p, sd, &bytes) != LLA_OK) abort();
    mem = td_alloc(td, bytes, 0);
    if (lla_state_init(be, &td->p, sd, mem, bytes, &s) != LLA_OK) abort();
    for (b = 0; b < td->p.batch; ++b) ((int64_t *)mem)[b] = pos ? pos[b] : 0;
    n = (size_t)(td->p.batch * td->p.heads * td->p.levels * td->p.dk * td->p.dv);
    r.s = seed;
    if (seed)
        for (i = 0; i < n; ++i) {
            double v = rng_uniform(&r, -1, 1);
            if (sd == LLA_DTYPE_F64)
                ((double *)lla__state_values(&s))[i] = v;
            else
                ((float *)lla__state_values(&s))[i] = (float)v;
        }
    return s;
}

double *bw_state_values(test_data *td, const lla_state *s, size_t *n) {
    size_t count = (size_t)(s->batch * s->heads * s->levels * s->dk * s->dv), i;
    double *out = (double *)td_alloc(td, count * sizeof(double), 0);
    for (i = 0; i < count; ++i)
        out[i] = s->dtype == LLA_DTYPE_F64 ? ((const double *)lla__state_values(s))[i]
                                           : (double)((const float *)lla__state_values(s))[i];
    *n = count;
    return out;
}
