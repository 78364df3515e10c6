/* testutil.c - see testutil.h. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

uint64_t rng_next(test_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double rng_uniform(test_rng *r, double lo, double hi) {
    return lo + (hi - lo) * ((double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0));
}

int64_t rng_int(test_rng *r, int64_t lo, int64_t hi) {
    return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

int64_t td_tensor_batch(const lla_problem *p) { return p->seq_offsets ? 1 : p->batch; }

void *td_alloc(test_data *td, size_t bytes, int fill) {
    void *m;
    if (td->nbufs >= TD_MAX_TENSORS) {
        fprintf(stderr, "testutil: more than %d buffers in one test_data (raise TD_MAX_TENSORS)\n",
                TD_MAX_TENSORS);
        abort();
    }
    m = malloc(bytes ? bytes : 1);
    if (!m) {
        fprintf(stderr, "testutil: cannot allocate %zu bytes\n", bytes);
        abort();
    }
    memset(m, fill, bytes);
    td->bufs[td->nbufs++] = m;
    return m;
}

lla_tensor td_tensor(test_data *td, int64_t heads, int64_t dim, lla_dtype dtype) {
    const lla_problem *p = &td->p;
    int64_t bt = td_tensor_batch(p), pad_d = td->strided ? 3 : 0, pad_h = td->strided ? 1 : 0;
    int64_t b, t, h, d;
    lla_tensor x;
    size_t n;
    x.dtype = dtype;
    x.strides[3] = 1;
    x.strides[2] = dim + pad_d;
    x.strides[1] = (heads + pad_h) * x.strides[2];
    x.strides[0] = p->seqlen * x.strides[1] + (td->strided ? 5 : 0);
    n = (size_t)(bt * x.strides[0]) * lla_dtype_size(dtype);
    x.data = td_alloc(td, n, 0xff); /* 0xff.. is NaN in every float format */
    /* Strided views: the logical elements start as NaN too. */
    for (b = 0; b < bt; ++b)
        for (t = 0; t < p->seqlen; ++t)
            for (h = 0; h < heads; ++h)
                for (d = 0; d < dim; ++d) lla__store(&x, b, t, h, d, NAN);
    return x;
}

static void fill_uniform(const lla_problem *p, lla_tensor *x, int64_t heads, int64_t dim,
                         test_rng *r, double lo, double hi, int unit_rows) {
    int64_t bt = td_tensor_batch(p), b, t, h, d;
    for (b = 0; b < bt; ++b)
        for (t = 0; t < p->seqlen; ++t)
            for (h = 0; h < heads; ++h) {
                double norm = 0.0, vals[4096];
                for (d = 0; d < dim; ++d) {
                    double v = rng_uniform(r, lo, hi);
                    if (d < 4096) vals[d] = v;
                    norm += v * v;
                    if (!unit_rows) lla__store(x, b, t, h, d, v);
                }
                if (unit_rows) {
                    norm = sqrt(norm);
                    for (d = 0; d < dim && d < 4096; ++d) lla__store(x, b, t, h, d, vals[d] / norm);
                }
            }
}

test_data *td_create(const lla_problem *p, const int64_t *offsets, lla_dtype dtype,
                     int strided, uint64_t seed) {
    test_data *td = (test_data *)calloc(1, sizeof *td);
    test_rng r;
    int gdn = p->variant == LLA_VARIANT_GDN;
    if (!td) abort();
    td->p = *p;
    td->dtype = dtype;
    td->strided = strided;
    if (offsets) {
        int64_t i;
        if (p->batch > TD_MAX_BATCH) abort();
        for (i = 0; i <= p->batch; ++i) td->offsets[i] = offsets[i];
        td->p.seq_offsets = td->offsets;
        td->p.seqlen = offsets[p->batch];
    }
    r.s = seed;
    td->x.q = td_tensor(td, p->qk_heads, p->dk, dtype);
    td->x.k = td_tensor(td, p->qk_heads, p->dk, dtype);
    td->x.v = td_tensor(td, p->heads, p->dv, dtype);
    td->x.g = td_tensor(td, p->heads, 1, dtype);
    td->x.lambda = td_tensor(td, p->heads, p->levels, dtype);
    td->x.beta = td_tensor(td, p->heads, 1, dtype);
    fill_uniform(&td->p, &td->x.q, p->qk_heads, p->dk, &r, -1.0, 1.0, gdn);
    fill_uniform(&td->p, &td->x.k, p->qk_heads, p->dk, &r, -1.0, 1.0, gdn);
    fill_uniform(&td->p, &td->x.v, p->heads, p->dv, &r, -1.0, 1.0, 0);
    fill_uniform(&td->p, &td->x.g, p->heads, 1, &r, -0.3, -0.01, 0);
    fill_uniform(&td->p, &td->x.lambda, p->heads, p->levels, &r, 0.5, 1.5, 0);
    fill_uniform(&td->p, &td->x.beta, p->heads, 1, &r, 0.1, 0.9, 0);
    return td;
}

void td_free(test_data *td) {
    int i;
    if (!td) return;
    for (i = 0; i < td->nbufs; ++i) free(td->bufs[i]);
    free(td);
}

double rel_err(const lla_problem *p, const lla_tensor *a, const lla_tensor *ref, int64_t heads,
               int64_t dim) {
    int64_t bt = td_tensor_batch(p), b, t, h, d;
    double num = 0.0, den = 0.0;
    for (b = 0; b < bt; ++b)
        for (t = 0; t < p->seqlen; ++t)
            for (h = 0; h < heads; ++h)
                for (d = 0; d < dim; ++d) {
                    double x = lla__load(a, b, t, h, d), y = lla__load(ref, b, t, h, d);
                    if (x != x || y != y) return INFINITY;
                    num += (x - y) * (x - y);
                    den += y * y;
                }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}

double rel_err_array(const lla_problem *p, const lla_tensor *a, const double *ref,
                     int64_t heads, int64_t dim) {
    lla_tensor r = lla_tensor_contiguous((void *)ref, LLA_DTYPE_F64, p->seqlen, heads, dim);
    return rel_err(p, a, &r, heads, dim);
}

double rel_err_plain(const double *a, const double *ref, size_t n) {
    double num = 0.0, den = 0.0;
    size_t i;
    for (i = 0; i < n; ++i) {
        if (a[i] != a[i] || ref[i] != ref[i]) return INFINITY;
        num += (a[i] - ref[i]) * (a[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}

lla_tensor td_oracle(test_data *td) {
    size_t ws_bytes = 0;
    void *ws;
    int64_t bt = td_tensor_batch(&td->p);
    lla_tensor o;
    o.dtype = LLA_DTYPE_F64;
    o.data = td_alloc(td, (size_t)(bt * td->p.seqlen * td->p.heads * td->p.dv) * 8, 0xff);
    o = lla_tensor_contiguous(o.data, LLA_DTYPE_F64, td->p.seqlen, td->p.heads, td->p.dv);
    if (lla_oracle_workspace(&td->p, &ws_bytes) != LLA_OK) abort();
    ws = td_alloc(td, ws_bytes, 0);
    if (lla_oracle_forward(&td->p, &td->x, o, ws, ws_bytes) != LLA_OK) abort();
    return o;
}
