/* fuzz_util.c - see fuzz.h. */
#include "fuzz.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ input bytes */

uint8_t fz_u8(fz *f) { return f->at < f->size ? f->data[f->at++] : 0; }

uint64_t fz_u64(fz *f) {
    uint64_t v = 0;
    int i;
    for (i = 0; i < 8; ++i) v |= (uint64_t)fz_u8(f) << (8 * i);
    return v;
}

static const int64_t edge_ints[48] = {
    0, 1, -1, 2, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1,
    (int64_t)1 << 31, ((int64_t)1 << 31) - 1, (int64_t)1 << 32, ((int64_t)1 << 32) + 1,
    (int64_t)1 << 62, ((int64_t)1 << 62) + 1, (int64_t)1 << 61, ((int64_t)1 << 61) + 1,
    (int64_t)1 << 60, 3037000499, 3037000500, (int64_t)1 << 20,
    (int64_t)1 << 30, (int64_t)1 << 40, (int64_t)1 << 50, 61,
    62, 63, 64, 65, 1023, 1024, 1025, 2048,
    -2, -64, -((int64_t)1 << 62), 4096, 65536, 100000,
    65537, 12345678901, 255, 256, 127, 128, 3, 5,
    7, (int64_t)1 << 33,
};

int64_t fz_int(fz *f, int64_t lo, int64_t hi) {
    uint8_t sel = fz_u8(f);
    if (sel < 0xC0) return lo + (int64_t)(sel % (uint64_t)(hi - lo + 1));
    if (sel < 0xF0) return edge_ints[sel - 0xC0];
    return (int64_t)fz_u64(f);
}

int fz_enum(fz *f) {
    static const int bad[16] = {2, 3, -1, 255, 256, INT_MAX, INT_MIN, 7,
                                -2, 65535, 1 << 20, 4, 100, -100, 0x7ffffffe, 16};
    uint8_t sel = fz_u8(f);
    return sel < 0xF0 ? sel & 1 : bad[sel - 0xF0];
}

lla_dtype fz_dtype(fz *f) {
    static const int bad[8] = {0, 5, -1, 99, 255, INT_MAX, INT_MIN, 6};
    uint8_t sel = fz_u8(f);
    if (sel < 0x80) return LLA_DTYPE_F64;
    if (sel < 0xE0) return LLA_DTYPE_F32;
    if (sel < 0xE8) return LLA_DTYPE_BF16;
    if (sel < 0xF0) return LLA_DTYPE_F16;
    return (lla_dtype)bad[sel & 7];
}

int64_t fz_chunk(fz *f) {
    static const int64_t bad[8] = {3, 2048, -1, 1536, 0x40000000, 6, -1024, 4095};
    uint8_t sel = fz_u8(f);
    if (sel < 0x20) return 0;
    if (sel < 0xA0) return (int64_t)1 << (sel % 11);
    if (sel < 0xC0) return bad[sel & 7];
    return fz_int(f, 0, 0);
}

double fz_scale(fz *f) {
    uint8_t sel = fz_u8(f);
    if (sel < 0xC0) return ((double)sel - 96.0) / 32.0;
    switch (sel & 15) {
    case 0: return NAN;
    case 1: return INFINITY;
    case 2: return -INFINITY;
    case 3: return 1e300;
    case 4: return -1e300;
    case 5: return 1e301;
    case 6: return DBL_MAX;
    case 7: return DBL_MIN;
    case 8: return 4.9406564584124654e-324;
    case 9: return -0.0;
    case 10: return 1e-300;
    case 11: return -DBL_MAX;
    default: {
        uint64_t bits = fz_u64(f);
        double d;
        memcpy(&d, &bits, sizeof d);
        return d;
    }
    }
}

/* ------------------------------------------------------------------ arithmetic */

uint64_t sat_mul(uint64_t a, uint64_t b) {
    if (a != 0 && b > UINT64_MAX / a) return UINT64_MAX;
    return a * b;
}

uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

int64_t ref_num_levels(int64_t T) {
    uint64_t x;
    int64_t bits = 0;
    if (T < 1) return 0;
    for (x = (uint64_t)(T - 1); x; x >>= 1) ++bits; /* ceil(log2 T) = bit length of T-1 */
    return 1 + bits;
}

int64_t ref_levels_for_position(int64_t p) {
    return p == INT64_MAX ? 64 : ref_num_levels(p + 1);
}

/* ------------------------------------------------------------------ statuses */

lla_status check_status(const char *call, lla_status st, expect e) {
    const char *msg = lla_last_error();
    if (e.must) {
        FUZZ_CHECK(st != LLA_OK, "%s: returned LLA_OK, expected one of mask 0x%x", call,
                   e.must | e.maybe);
    }
    if (st != LLA_OK) {
        FUZZ_CHECK((unsigned)st < 32 && ((e.must | e.maybe) & ST(st)),
                   "%s: returned %s (%s), allowed mask 0x%x (must 0x%x)", call,
                   lla_status_str(st), msg, e.must | e.maybe, e.must);
        FUZZ_CHECK(msg && msg[0], "%s: failed with %s but left no message", call,
                   lla_status_str(st));
    }
    return st;
}

/* ------------------------------------------------------------------ buffers */

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "fuzz: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

void buf_alloc(fz_buf *b, size_t bytes, unsigned char fill) {
    b->mem = (unsigned char *)xmalloc(bytes);
    b->bytes = bytes;
    memset(b->mem, fill, bytes);
    b->copy = NULL;
}

void buf_snapshot(fz_buf *b) {
    if (!b->copy) b->copy = (unsigned char *)xmalloc(b->bytes);
    memcpy(b->copy, b->mem, b->bytes);
}

int buf_unchanged(const fz_buf *b) { return memcmp(b->mem, b->copy, b->bytes) == 0; }

void buf_free(fz_buf *b) {
    free(b->mem);
    free(b->copy);
    b->mem = b->copy = NULL;
    b->bytes = 0;
}

/* ------------------------------------------------------------------ tensors */

static size_t elem_size(lla_dtype d) {
    switch ((int)d) {
    case LLA_DTYPE_F32: return 4;
    case LLA_DTYPE_F64: return 8;
    case LLA_DTYPE_BF16:
    case LLA_DTYPE_F16: return 2;
    default: return 8;
    }
}

static uint64_t magnitude(int64_t v) { return v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v; }

uint64_t tensor_span_bytes(const lla_tensor *t, const int64_t ext[4]) {
    uint64_t span = 0;
    int d;
    for (d = 0; d < 4; ++d)
        if (ext[d] > 1) span = sat_add(span, sat_mul(magnitude(t->strides[d]), (uint64_t)(ext[d] - 1)));
    return sat_mul(span, elem_size(t->dtype));
}

int64_t tensor_offset(const fz_tensor *x, int64_t b, int64_t t, int64_t h, int64_t d) {
    const int64_t idx[4] = {b, t, h, d};
    int64_t off = 0;
    int i;
    for (i = 0; i < 4; ++i)
        if (idx[i]) off += idx[i] * x->t.strides[i]; /* index 0: stride may be garbage */
    return off * (int64_t)x->elem;
}

double tensor_get(const fz_tensor *x, int64_t b, int64_t t, int64_t h, int64_t d) {
    const unsigned char *p = (const unsigned char *)x->t.data + tensor_offset(x, b, t, h, d);
    if (x->t.dtype == LLA_DTYPE_F64) {
        double v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    if (x->t.dtype == LLA_DTYPE_F32) {
        float v;
        memcpy(&v, p, sizeof v);
        return (double)v;
    }
    return NAN;
}

void tensor_set(const fz_tensor *x, int64_t b, int64_t t, int64_t h, int64_t d, double v) {
    unsigned char *p = (unsigned char *)x->t.data + tensor_offset(x, b, t, h, d);
    if (x->t.dtype == LLA_DTYPE_F64) {
        memcpy(p, &v, sizeof v);
    } else if (x->t.dtype == LLA_DTYPE_F32) {
        float f = (float)v;
        memcpy(p, &f, sizeof f);
    } else {
        memset(p, 0xff, x->elem); /* NaN in the 16-bit formats */
    }
}

void tensor_dummy(fz_tensor *x, lla_dtype dtype, const int64_t ext[4]) {
    memset(x, 0, sizeof *x);
    memcpy(x->ext, ext, sizeof x->ext);
    x->elem = elem_size(dtype);
    buf_alloc(&x->buf, 64, 0xa5);
    buf_snapshot(&x->buf);
    x->t.data = x->buf.mem;
    x->t.dtype = dtype;
    /* zero strides: no stride-related rejection; the call has to fail for another reason */
    x->t.strides[0] = x->t.strides[1] = x->t.strides[2] = x->t.strides[3] = 0;
    x->runnable = 0;
}

int tensor_make(fz_tensor *x, lla_dtype dtype, const int64_t ext[4], uint8_t layout,
                uint8_t pad, uint8_t flip, int allow_broadcast, int64_t garbage,
                size_t max_bytes) {
    int perm[4] = {3, 2, 1, 0}, avail[4] = {3, 2, 1, 0}, navail = 4, i, d;
    unsigned code = layout % 24u;
    uint64_t running = 1;
    int64_t lo = 0, hi = 0, b, t, h, e;
    for (d = 0; d < 4; ++d)
        if (ext[d] < 1) {
            tensor_dummy(x, dtype, ext);
            return 0;
        }
    /* dimension order (innermost first) from a Lehmer code; 0 = row-major [B,T,H,D] */
    for (i = 0; i < 4; ++i) {
        unsigned k = code % (unsigned)navail;
        int j;
        code /= (unsigned)navail;
        perm[i] = avail[k];
        for (j = (int)k; j < navail - 1; ++j) avail[j] = avail[j + 1];
        --navail;
    }
    memset(x, 0, sizeof *x);
    memcpy(x->ext, ext, sizeof x->ext);
    x->elem = elem_size(dtype);
    x->t.dtype = dtype;
    for (i = 0; i < 4; ++i) {
        int dim = perm[i];
        uint64_t padding = (pad >> (2 * i)) & 3u;
        x->t.strides[dim] = (int64_t)running;
        running = sat_mul(running, sat_add((uint64_t)ext[dim], padding));
        if (running > max_bytes) {
            tensor_dummy(x, dtype, ext);
            return 0;
        }
    }
    for (d = 0; d < 4; ++d) {
        if (ext[d] == 1) {
            if (garbage) x->t.strides[d] = garbage; /* unused dimension: any value */
            continue;
        }
        if ((flip >> d) & 1u) x->t.strides[d] = -x->t.strides[d];
        if (allow_broadcast && ((flip >> (4 + d)) & 1u)) x->t.strides[d] = 0;
    }
    for (d = 0; d < 4; ++d) {
        int64_t c;
        if (ext[d] == 1) continue;
        c = x->t.strides[d] * (ext[d] - 1);
        if (c < 0) lo += c; else hi += c;
    }
    e = hi - lo + 1;
    if ((uint64_t)e > max_bytes / x->elem) {
        tensor_dummy(x, dtype, ext);
        return 0;
    }
    buf_alloc(&x->buf, (size_t)e * x->elem, 0xa5);
    x->t.data = x->buf.mem + (size_t)(-lo) * x->elem;
    x->logical = (unsigned char *)calloc(x->buf.bytes, 1);
    if (!x->logical) abort();
    for (b = 0; b < ext[0]; ++b)
        for (t = 0; t < ext[1]; ++t)
            for (h = 0; h < ext[2]; ++h)
                for (d = 0; d < ext[3]; ++d) {
                    int64_t off = tensor_offset(x, b, t, h, d) + (-lo) * (int64_t)x->elem;
                    memset(x->logical + off, 1, x->elem);
                    tensor_set(x, b, t, h, d, NAN);
                }
    x->runnable = 1;
    return 1;
}

void tensor_free(fz_tensor *x) {
    buf_free(&x->buf);
    free(x->logical);
    x->logical = NULL;
}

int tensor_padding_unchanged(const fz_tensor *x) {
    size_t i;
    if (!x->logical) return buf_unchanged(&x->buf);
    for (i = 0; i < x->buf.bytes; ++i)
        if (!x->logical[i] && x->buf.mem[i] != x->buf.copy[i]) return 0;
    return 1;
}

/* ------------------------------------------------------------------ values */

uint64_t rng_u64(fz_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double rng_real(fz_rng *r, double lo, double hi) {
    return lo + (hi - lo) * ((double)(rng_u64(r) >> 11) * (1.0 / 9007199254740992.0));
}

double rng_garbage(fz_rng *r, lla_dtype dtype) {
    uint64_t bits = rng_u64(r);
    if (dtype == LLA_DTYPE_F32) {
        uint32_t b32 = (uint32_t)bits;
        float f;
        memcpy(&f, &b32, sizeof f);
        return (double)f;
    } else {
        double d;
        memcpy(&d, &bits, sizeof d);
        return d;
    }
}

/* ------------------------------------------------------------------ comparison */

double rel_norm_err(const double *a, const double *ref, size_t n, double floor) {
    double num = 0.0, den = 0.0;
    size_t i;
    for (i = 0; i < n; ++i) {
        if (a[i] != a[i] || ref[i] != ref[i]) return INFINITY;
        num += (a[i] - ref[i]) * (a[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    num = sqrt(num);
    den = sqrt(den);
    if (den < floor) den = floor;
    return den > 0.0 ? num / den : (num > 0.0 ? INFINITY : 0.0);
}

lla_backend *fuzz_scalar(void) {
    static lla_backend *scalar;
    if (!scalar) {
        lla_status st = lla_backend_open("scalar", &scalar);
        FUZZ_CHECK(st == LLA_OK && scalar, "cannot open the scalar backend: %s",
                   lla_last_error());
    }
    return scalar;
}

#ifdef LLA_FUZZ_LIBFUZZER
/* libFuzzer build: say what broke and abort, so the input is saved as a crash. */
void fuzz_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "\nfuzz property violated at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  last error: %s\n", lla_last_error());
    abort();
}
#endif
