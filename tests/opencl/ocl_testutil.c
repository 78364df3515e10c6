/* ocl_testutil.c - see ocl_testutil.h. */
#include "ocl_testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ocl_backend_index(void) {
    int i, n = lla_backend_count();
    for (i = 0; i < n; ++i) {
        lla_backend_info info;
        if (lla_backend_info_get(i, &info) == LLA_OK && strcmp(info.name, "opencl") == 0) return i;
    }
    return -1;
}

lla_backend *ocl_open_or_skip(const char *suite) {
    const char *spec = getenv("LLA_TEST_OPENCL_SPEC");
    const char *require = getenv("LLA_REQUIRE_OPENCL");
    int must = require && require[0] && strcmp(require, "0") != 0;
    int index = ocl_backend_index();
    lla_backend_info info;
    lla_backend *be = NULL;
    lla_status st;
    if (index < 0) {
        printf("%s: SKIP: the opencl backend is not compiled into this build\n", suite);
        exit(must ? 1 : 77);
    }
    lla_backend_info_get(index, &info);
    if (!info.usable) {
        printf("%s: %s: no usable OpenCL device here: %s\n", suite,
               must ? "FAIL (LLA_REQUIRE_OPENCL is set)" : "SKIP", info.reason);
        exit(must ? 1 : 77);
    }
    st = lla_backend_open(spec && spec[0] ? spec : "opencl", &be);
    if (st != LLA_OK) {
        printf("%s: FAIL: cannot open %s: %s: %s\n", suite, spec && spec[0] ? spec : "opencl",
               lla_status_str(st), lla_last_error());
        exit(1);
    }
    printf("%s: running on %s\n", suite, lla_backend_description(be));
    return be;
}

void arena_init(dev_arena *a, lla_backend *be, size_t cap) {
    void *p = NULL;
    a->be = be;
    a->used = 0;
    a->cap = cap;
    if (lla_malloc(be, cap, &p) != LLA_OK) {
        fprintf(stderr, "arena_init: lla_malloc(%zu): %s\n", cap, lla_last_error());
        abort();
    }
    a->base = (char *)p;
}

void arena_free(dev_arena *a) {
    if (a->base) lla_free(a->be, a->base);
    a->base = NULL;
}

static void *put_at(dev_arena *a, const void *host, size_t bytes, size_t misalign) {
    size_t at = ((a->used + 63) & ~(size_t)63) + misalign;
    char *dst;
    if (at > a->cap || bytes > a->cap - at) {
        fprintf(stderr, "arena_put: arena of %zu bytes is full\n", a->cap);
        abort();
    }
    dst = a->base + at;
    if (bytes && lla_upload(a->be, dst, host, bytes) != LLA_OK) {
        fprintf(stderr, "arena_put: lla_upload: %s\n", lla_last_error());
        abort();
    }
    a->used = at + bytes;
    return dst;
}

/* 4-byte aligned but never 64-byte aligned: offsets 4 mod 64 */
void *arena_put(dev_arena *a, const void *host, size_t bytes) { return put_at(a, host, bytes, 4); }

void *arena_put8(dev_arena *a, const void *host, size_t bytes) { return put_at(a, host, bytes, 8); }

size_t tensor_bytes(const lla_tensor *t, int64_t bt) {
    return (size_t)(bt * t->strides[0]) * lla_dtype_size(t->dtype);
}

lla_tensor dev_copy(dev_arena *a, const lla_tensor *host, int64_t bt) {
    lla_tensor d = *host;
    d.data = arena_put(a, host->data, tensor_bytes(host, bt));
    return d;
}

void dev_fetch(dev_arena *a, const lla_tensor *dev, const lla_tensor *host, int64_t bt) {
    if (lla_download(a->be, host->data, dev->data, tensor_bytes(host, bt)) != LLA_OK) {
        fprintf(stderr, "dev_fetch: lla_download: %s\n", lla_last_error());
        abort();
    }
}

lla_inputs dev_inputs(dev_arena *a, const test_data *td) {
    int64_t bt = td_tensor_batch(&td->p);
    lla_inputs x;
    x.q = dev_copy(a, &td->x.q, bt);
    x.k = dev_copy(a, &td->x.k, bt);
    x.v = dev_copy(a, &td->x.v, bt);
    x.g = dev_copy(a, &td->x.g, bt);
    x.lambda = dev_copy(a, &td->x.lambda, bt);
    x.beta = td->p.variant == LLA_VARIANT_GDN ? dev_copy(a, &td->x.beta, bt) : x.g;
    return x;
}

int guards_intact(const lla_tensor *t, int64_t bt, int64_t T, int64_t heads, int64_t dim) {
    const unsigned char *bytes = (const unsigned char *)t->data;
    size_t elem = lla_dtype_size(t->dtype), n = tensor_bytes(t, bt) / elem, i;
    char *logical = (char *)calloc(n ? n : 1, 1);
    int64_t b, s, h, d;
    int ok = 1;
    if (!logical) abort();
    for (b = 0; b < bt; ++b)
        for (s = 0; s < T; ++s)
            for (h = 0; h < heads; ++h)
                for (d = 0; d < dim; ++d)
                    logical[b * t->strides[0] + s * t->strides[1] + h * t->strides[2] +
                            d * t->strides[3]] = 1;
    for (i = 0; i < n && ok; ++i) {
        size_t j;
        if (logical[i]) continue;
        for (j = 0; j < elem; ++j)
            if (bytes[i * elem + j] != 0xff) ok = 0;
    }
    free(logical);
    return ok;
}

double rel_err_f32(const float *a, const double *ref, size_t n) {
    double num = 0.0, den = 0.0;
    size_t i;
    for (i = 0; i < n; ++i) {
        double x = (double)a[i];
        if (x != x || ref[i] != ref[i]) return INFINITY;
        num += (x - ref[i]) * (x - ref[i]);
        den += ref[i] * ref[i];
    }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}
