/*
 * status.c - status strings, the per-thread error detail, logging, small utilities.
 */
#include "internal.h"

#include <stdarg.h>
#include <string.h>
#ifndef LLA_FREESTANDING
#include <stdio.h>
#include <stdlib.h>
#endif

int lla__vsnprintf(char *buf, size_t len, const char *fmt, va_list ap);

/* One detail buffer per thread where the compiler offers thread-local storage; the
 * freestanding build is single-threaded by contract. */
#if defined(LLA_FREESTANDING)
#define LLA_TLS
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && !defined(__STDC_NO_THREADS__)
#define LLA_TLS _Thread_local
#elif defined(__GNUC__) || defined(__clang__)
#define LLA_TLS __thread
#elif defined(_MSC_VER)
#define LLA_TLS __declspec(thread)
#else
#define LLA_TLS
#endif

static LLA_TLS char last_error[512];

const char *lla_version_string(void) { return "0.1.0"; }

const char *lla_status_str(lla_status status) {
    switch (status) {
    case LLA_OK: return "LLA_OK";
    case LLA_ERR_ARG: return "LLA_ERR_ARG";
    case LLA_ERR_SHAPE: return "LLA_ERR_SHAPE";
    case LLA_ERR_DTYPE: return "LLA_ERR_DTYPE";
    case LLA_ERR_UNSUPPORTED: return "LLA_ERR_UNSUPPORTED";
    case LLA_ERR_BACKEND: return "LLA_ERR_BACKEND";
    case LLA_ERR_DEVICE: return "LLA_ERR_DEVICE";
    case LLA_ERR_NOMEM: return "LLA_ERR_NOMEM";
    case LLA_ERR_WORKSPACE: return "LLA_ERR_WORKSPACE";
    case LLA_ERR_STATE: return "LLA_ERR_STATE";
    }
    return "LLA_ERR_UNKNOWN_STATUS";
}

const char *lla_last_error(void) { return last_error; }

void lla__clear_error(void) { last_error[0] = '\0'; }

#ifndef LLA_TERSE_ERRORS
lla_status lla__set_error(lla_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lla__vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}
#else
lla_status lla__set_status_only(lla_status status) {
    lla__snprintf(last_error, sizeof last_error, "%s", lla_status_str(status));
    return status;
}
#endif

static lla_log_fn log_fn;
static void *log_user;

void lla_set_log(lla_log_fn fn, void *user) {
    log_fn = fn;
    log_user = user;
}

void lla__log(const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    lla__vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_fn) {
        log_fn(msg, log_user);
        return;
    }
#ifndef LLA_FREESTANDING
    {
        const char *env = getenv("LLA_LOG");
        if (env && env[0] && strcmp(env, "0") != 0) fprintf(stderr, "lla: %s\n", msg);
    }
#endif
}

size_t lla_dtype_size(lla_dtype dtype) {
    switch (dtype) {
    case LLA_DTYPE_F32: return 4;
    case LLA_DTYPE_F64: return 8;
    case LLA_DTYPE_BF16:
    case LLA_DTYPE_F16: return 2;
    }
    return 0;
}

const char *lla_dtype_name(lla_dtype dtype) {
    switch (dtype) {
    case LLA_DTYPE_F32: return "f32";
    case LLA_DTYPE_F64: return "f64";
    case LLA_DTYPE_BF16: return "bf16";
    case LLA_DTYPE_F16: return "f16";
    }
    return "unknown";
}

float lla__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    union { uint32_t u; float f; } c;
    if (exp == 0) {
        if (man == 0) {
            c.u = sign;
        } else { /* subnormal: renormalize */
            int e = -1;
            do { ++e; man <<= 1; } while (!(man & 0x400u));
            c.u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        c.u = sign | 0x7f800000u | (man << 13);
    } else {
        c.u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    return c.f;
}

uint16_t lla__f32_to_f16(float f) {
    union { uint32_t u; float f; } c;
    uint32_t sign, exp, man;
    c.f = f;
    sign = (c.u >> 16) & 0x8000u;
    exp = (c.u >> 23) & 0xffu;
    man = c.u & 0x7fffffu;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0u));
    {
        int e = (int)exp - 127 + 15;
        if (e >= 31) return (uint16_t)(sign | 0x7c00u);
        if (e <= 0) { /* subnormal or zero, round to nearest even */
            uint32_t m, shift, r;
            if (e < -10) return (uint16_t)sign;
            m = man | 0x800000u;
            shift = (uint32_t)(14 - e);
            r = m >> shift;
            if ((m >> (shift - 1)) & 1u) {
                if ((m & ((1u << (shift - 1)) - 1u)) || (r & 1u)) ++r;
            }
            return (uint16_t)(sign | r);
        }
        {
            uint32_t r = ((uint32_t)e << 10) | (man >> 13);
            uint32_t rest = man & 0x1fffu;
            if (rest > 0x1000u || (rest == 0x1000u && (r & 1u))) ++r; /* may carry to inf */
            return (uint16_t)(sign | r);
        }
    }
}
