/* scalar_util.c - see scalar_util.h. */
#include "scalar_util.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

lla_backend *su_open_scalar(void) {
    lla_backend *be = NULL;
    assert_int_equal(lla_backend_open("scalar", &be), LLA_OK);
    assert_non_null(be);
    return be;
}

lla_tensor su_tensor_at(lla_tensor x, int64_t t) {
    x.data = (char *)x.data + (size_t)(t * x.strides[1]) * lla_dtype_size(x.dtype);
    return x;
}

lla_inputs su_inputs_at(const lla_inputs *x, int64_t t) {
    lla_inputs y;
    y.q = su_tensor_at(x->q, t);
    y.k = su_tensor_at(x->k, t);
    y.v = su_tensor_at(x->v, t);
    y.g = su_tensor_at(x->g, t);
    y.lambda = su_tensor_at(x->lambda, t);
    y.beta = su_tensor_at(x->beta, t);
    return y;
}

lla_state su_state_new(lla_backend *be, const lla_problem *p, lla_dtype dtype) {
    lla_state s;
    size_t bytes = 0;
    void *mem;
    assert_int_equal(lla_state_bytes(p, dtype, &bytes), LLA_OK);
    mem = malloc(bytes);
    assert_non_null(mem);
    memset(mem, 0x5a, bytes); /* lla_state_init must clear it */
    assert_int_equal(lla_state_init(be, p, dtype, mem, bytes, &s), LLA_OK);
    return s;
}

void su_state_free(lla_state *s) {
    free(s->memory);
    s->memory = NULL;
}

size_t su_state_count(const lla_state *s) {
    return (size_t)(s->batch * s->heads * s->levels * s->dk * s->dv);
}

const int64_t *su_state_positions(const lla_state *s) { return (const int64_t *)s->memory; }

double *su_state_values(const lla_state *s) {
    size_t n = su_state_count(s), i;
    const char *base = (const char *)s->memory + lla_state_values_offset(s->batch);
    double *out = (double *)malloc((n ? n : 1) * sizeof *out);
    assert_non_null(out);
    for (i = 0; i < n; ++i)
        out[i] = s->dtype == LLA_DTYPE_F64 ? ((const double *)(const void *)base)[i]
                                           : (double)((const float *)(const void *)base)[i];
    return out;
}

lla_status su_forward(lla_backend *be, const lla_problem *p, const lla_inputs *x, lla_tensor o,
                      const lla_state *initial, lla_state *final) {
    size_t bytes = 0;
    void *ws;
    lla_status st;
    assert_int_equal(lla_forward_workspace(be, p, o.dtype, &bytes), LLA_OK);
    ws = malloc(bytes ? bytes : 1);
    assert_non_null(ws);
    memset(ws, 0xff, bytes);
    st = lla_forward(be, p, x, o, initial, final, bytes ? ws : NULL, bytes);
    free(ws);
    return st;
}

static int64_t off(const lla_tensor *x, int64_t b, int64_t t, int64_t h, int64_t d) {
    return b * x->strides[0] + t * x->strides[1] + h * x->strides[2] + d * x->strides[3];
}

double su_load(const lla_tensor *x, int64_t b, int64_t t, int64_t h, int64_t d) {
    if (x->dtype == LLA_DTYPE_F64) return ((const double *)x->data)[off(x, b, t, h, d)];
    return (double)((const float *)x->data)[off(x, b, t, h, d)];
}

void su_store(const lla_tensor *x, int64_t b, int64_t t, int64_t h, int64_t d, double v) {
    if (x->dtype == LLA_DTYPE_F64)
        ((double *)x->data)[off(x, b, t, h, d)] = v;
    else
        ((float *)x->data)[off(x, b, t, h, d)] = (float)v;
}

static lla_tensor packed_tensor(su_packed *pk, int slot, int64_t N, int64_t heads, int64_t dim,
                                lla_dtype dtype) {
    size_t n = (size_t)((N ? N : 1) * heads * dim);
    void *m = malloc(n * lla_dtype_size(dtype));
    assert_non_null(m);
    memset(m, 0xff, n * lla_dtype_size(dtype)); /* NaN */
    pk->mem[slot] = m;
    return lla_tensor_contiguous(m, dtype, N ? N : 1, heads, dim);
}

static void copy_rows(const lla_tensor *src, int64_t sb, int64_t st, const lla_tensor *dst,
                      int64_t dt, int64_t heads, int64_t dim) {
    int64_t h, d;
    for (h = 0; h < heads; ++h)
        for (d = 0; d < dim; ++d) su_store(dst, 0, dt, h, d, su_load(src, sb, st, h, d));
}

su_packed *su_pack(const lla_problem *base, const lla_inputs *src, const int64_t *src_b,
                   const int64_t *first, const int64_t *len, lla_dtype dtype) {
    su_packed *pk = (su_packed *)calloc(1, sizeof *pk);
    int64_t i, j, N = 0, H = base->heads, G = base->qk_heads;
    assert_non_null(pk);
    assert_true(base->batch <= 64);
    pk->p = *base;
    pk->offsets[0] = 0;
    for (i = 0; i < base->batch; ++i) pk->offsets[i + 1] = (N += len[i]);
    pk->p.seq_offsets = pk->offsets;
    pk->p.seqlen = N;
    pk->x.q = packed_tensor(pk, 0, N, G, base->dk, dtype);
    pk->x.k = packed_tensor(pk, 1, N, G, base->dk, dtype);
    pk->x.v = packed_tensor(pk, 2, N, H, base->dv, dtype);
    pk->x.g = packed_tensor(pk, 3, N, H, 1, dtype);
    pk->x.lambda = packed_tensor(pk, 4, N, H, base->levels, dtype);
    pk->x.beta = packed_tensor(pk, 5, N, H, 1, dtype);
    pk->o = packed_tensor(pk, 6, N, H, base->dv, dtype);
    for (i = 0; i < base->batch; ++i)
        for (j = 0; j < len[i]; ++j) {
            int64_t s = first[i] + j, d = pk->offsets[i] + j;
            copy_rows(&src->q, src_b[i], s, &pk->x.q, d, G, base->dk);
            copy_rows(&src->k, src_b[i], s, &pk->x.k, d, G, base->dk);
            copy_rows(&src->v, src_b[i], s, &pk->x.v, d, H, base->dv);
            copy_rows(&src->g, src_b[i], s, &pk->x.g, d, H, 1);
            copy_rows(&src->lambda, src_b[i], s, &pk->x.lambda, d, H, base->levels);
            if (base->variant == LLA_VARIANT_GDN)
                copy_rows(&src->beta, src_b[i], s, &pk->x.beta, d, H, 1);
        }
    return pk;
}

void su_packed_free(su_packed *pk) {
    int i;
    if (!pk) return;
    for (i = 0; i < 8; ++i) free(pk->mem[i]);
    free(pk);
}

static lla_tensor as_step(lla_tensor t) {
    t.strides[0] = t.strides[1];
    return t;
}

lla_inputs su_packed_as_step(const su_packed *pk) {
    lla_inputs x = pk->x;
    x.q = as_step(x.q);
    x.k = as_step(x.k);
    x.v = as_step(x.v);
    x.g = as_step(x.g);
    x.lambda = as_step(x.lambda);
    x.beta = as_step(x.beta);
    return x;
}

lla_tensor su_packed_out_as_step(const su_packed *pk) { return as_step(pk->o); }

void su_check_states(const lla_state *a, const lla_state *ref, double tol, const char *label) {
    double *va, *vr, err;
    int64_t b;
    assert_int_equal(a->batch, ref->batch);
    assert_int_equal(su_state_count(a), su_state_count(ref));
    for (b = 0; b < a->batch; ++b)
        if (su_state_positions(a)[b] != su_state_positions(ref)[b])
            fail_msg("%s: sequence %lld at position %lld, expected %lld", label, (long long)b,
                     (long long)su_state_positions(a)[b], (long long)su_state_positions(ref)[b]);
    va = su_state_values(a);
    vr = su_state_values(ref);
    err = rel_err_plain(va, vr, su_state_count(a));
    print_message("  %-58s state rel err %.3g\n", label, err);
    if (!(err <= tol)) fail_msg("%s: state rel err %g > %g", label, err, tol);
    free(va);
    free(vr);
}

void su_copy_sequence(lla_state *dst, const lla_state *src, int64_t b) {
    size_t esz = lla_dtype_size(src->dtype);
    size_t slice = (size_t)(src->heads * src->levels * src->dk * src->dv) * esz;
    size_t at = lla_state_values_offset(src->batch) + (size_t)b * slice;
    ((int64_t *)dst->memory)[b] = su_state_positions(src)[b];
    memcpy((char *)dst->memory + at, (const char *)src->memory + at, slice);
}
