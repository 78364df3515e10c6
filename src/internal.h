/*
 * internal.h - helpers shared by the core and the CPU backends (private).
 */
#ifndef LLA_INTERNAL_H
#define LLA_INTERNAL_H

#include "lla.h"

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- errors */

/* Records a printf-style detail for lla_last_error() and returns status. */
#ifndef LLA_TERSE_ERRORS
lla_status lla__set_error(lla_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
#else
/* Firmware option (-DLLA_TERSE_ERRORS): the detail is the status name only, so the
 * message strings and the formatting calls disappear from the image. */
lla_status lla__set_status_only(lla_status status);
static inline lla_status lla__set_error(lla_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static inline lla_status lla__set_error(lla_status status, const char *fmt, ...) {
    (void)fmt;
    return lla__set_status_only(status);
}
#endif
void lla__clear_error(void);
/* Sends a message to the log sink (lla_set_log / LLA_LOG). */
void lla__log(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Minimal vsnprintf-free formatting is not needed: hosted and freestanding builds both
 * have a compiler-provided snprintf substitute in fmt.c. */
int lla__snprintf(char *buf, size_t len, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---------------------------------------------------------------- sizes */

/* a * b and a + b on non-negative values; return 0 on overflow. */
static inline int lla__mul_ok(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0) return 0;
    if (a != 0 && b > INT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}
static inline int lla__add_ok(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0 || a > INT64_MAX - b) return 0;
    *out = a + b;
    return 1;
}
static inline int lla__size_mul_ok(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}
static inline int lla__size_add_ok(size_t a, size_t b, size_t *out) {
    if (a > SIZE_MAX - b) return 0;
    *out = a + b;
    return 1;
}
static inline size_t lla__round_up64(size_t n) { return (n + 63u) & ~(size_t)63u; }

/* ---------------------------------------------------------------- levels */

/* Number of bits needed for x (0 for 0): floor(log2 x) + 1.  The portable version is
 * used where the compiler has no count-leading-zeros builtin (and tested everywhere). */
static inline int lla__bit_length_portable(uint64_t x) {
    int n = 0;
    if (x >> 32) { n += 32; x >>= 32; }
    if (x >> 16) { n += 16; x >>= 16; }
    if (x >> 8) { n += 8; x >>= 8; }
    if (x >> 4) { n += 4; x >>= 4; }
    if (x >> 2) { n += 2; x >>= 2; }
    if (x >> 1) { n += 1; x >>= 1; }
    return n + (int)x;
}
static inline int lla__bit_length(uint64_t x) {
#if defined(__GNUC__) || defined(__clang__)
    return x ? 64 - __builtin_clzll(x) : 0;
#else
    return lla__bit_length_portable(x);
#endif
}

/* Level of (t, s), 0 <= s <= t (SPEC 1.2 closed forms).  Strong: the smallest j with
 * (t >> j) - (s >> j) <= 1, plus 1.  With d = t - s, that difference is floor or ceil of
 * d / 2^j, so j is bit_length(d) - 1 or bit_length(d): one test decides. */
static inline int lla__level(lla_hierarchy h, int64_t t, int64_t s) {
    if (s == t) return 0;
    if (h == LLA_HIERARCHY_WEAK) return lla__bit_length((uint64_t)(t ^ s));
    {
        int j = lla__bit_length((uint64_t)(t - s)) - 1;
        if ((t >> j) - (s >> j) > 1) ++j;
        return j + 1;
    }
}

/* lo_l(t): first source of level l >= 1 (level l = [lo_l(t), lo_{l-1}(t))). */
static inline int64_t lla__level_start(lla_hierarchy h, int l, int64_t t) {
    if (l <= 0) return t;
    if (h == LLA_HIERARCHY_WEAK) return l >= 63 ? 0 : (t >> l) << l;
    if (l - 1 >= 62) return 0;
    {
        int64_t a = (t >> (l - 1)) - 1;
        return a <= 0 ? 0 : a << (l - 1);
    }
}

/* ---------------------------------------------------------------- tensors */

static inline int64_t lla__offset(const lla_tensor *x, int64_t b, int64_t t, int64_t h,
                                  int64_t d) {
    return b * x->strides[0] + t * x->strides[1] + h * x->strides[2] + d * x->strides[3];
}

static inline float lla__bf16_to_f32(uint16_t v) {
    union { uint32_t u; float f; } c;
    c.u = (uint32_t)v << 16;
    return c.f;
}
static inline uint16_t lla__f32_to_bf16(float f) {
    union { uint32_t u; float f; } c;
    c.f = f;
    if ((c.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((c.u >> 16) | 0x40u); /* NaN */
    c.u += 0x7fffu + ((c.u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(c.u >> 16);
}
float lla__f16_to_f32(uint16_t h);
uint16_t lla__f32_to_f16(float f);

/* Element load / store of any dtype as double (slow path for references). */
static inline double lla__load(const lla_tensor *x, int64_t b, int64_t t, int64_t h,
                               int64_t d) {
    int64_t o = lla__offset(x, b, t, h, d);
    switch (x->dtype) {
    case LLA_DTYPE_F32: return (double)((const float *)x->data)[o];
    case LLA_DTYPE_F64: return ((const double *)x->data)[o];
    case LLA_DTYPE_BF16: return (double)lla__bf16_to_f32(((const uint16_t *)x->data)[o]);
    case LLA_DTYPE_F16: return (double)lla__f16_to_f32(((const uint16_t *)x->data)[o]);
    }
    return 0.0;
}
static inline void lla__store(const lla_tensor *x, int64_t b, int64_t t, int64_t h,
                              int64_t d, double v) {
    int64_t o = lla__offset(x, b, t, h, d);
    switch (x->dtype) {
    case LLA_DTYPE_F32: ((float *)x->data)[o] = (float)v; break;
    case LLA_DTYPE_F64: ((double *)x->data)[o] = v; break;
    case LLA_DTYPE_BF16: ((uint16_t *)x->data)[o] = lla__f32_to_bf16((float)v); break;
    case LLA_DTYPE_F16: ((uint16_t *)x->data)[o] = lla__f32_to_f16((float)v); break;
    }
}

/* Token range [*start, *end) of sequence b, in the T index of the tensors, and the
 * batch index to use in tensor offsets. */
static inline void lla__sequence(const lla_problem *p, int64_t b, int64_t *tensor_b,
                                 int64_t *start, int64_t *end) {
    if (p->seq_offsets) {
        *tensor_b = 0;
        *start = p->seq_offsets[b];
        *end = p->seq_offsets[b + 1];
    } else {
        *tensor_b = b;
        *start = 0;
        *end = p->seqlen;
    }
}

/* q/k head of value head h. */
static inline int64_t lla__qk_head(const lla_problem *p, int64_t h) {
    return h / (p->heads / p->qk_heads);
}

/* Default chunk when p->chunk == 0. */
#define LLA_DEFAULT_CHUNK 64
static inline int64_t lla__chunk(const lla_problem *p) {
    return p->chunk ? p->chunk : LLA_DEFAULT_CHUNK;
}

/* State block accessors (host memory). */
static inline int64_t *lla__state_positions(const lla_state *s) {
    return (int64_t *)s->memory;
}
static inline void *lla__state_values(const lla_state *s) {
    return (char *)s->memory + lla_state_values_offset(s->batch);
}

#endif /* LLA_INTERNAL_H */
