/*
 * fmt.c - a small snprintf for error and log messages.
 *
 * The freestanding build has no stdio, so every build formats with this one function
 * (and every build therefore tests it).  Supports %% %c %s %d %i %u %x with the length
 * modifiers l, ll, z and j, and %g / %f / %e for doubles (all printed as printf's %g).
 */
#include "internal.h"

#include <stdarg.h>
#include <string.h>

typedef struct {
    char *buf;
    size_t len, pos;
} out_t;

static void put(out_t *o, char c) {
    if (o->pos + 1 < o->len) o->buf[o->pos] = c;
    o->pos++;
}

static void put_str(out_t *o, const char *s) {
    if (!s) s = "(null)";
    while (*s) put(o, *s++);
}

static void put_uint(out_t *o, uint64_t v, unsigned base) {
    char tmp[24];
    int n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    while (n) put(o, tmp[--n]);
}

static void put_int(out_t *o, int64_t v) {
    if (v < 0) {
        put(o, '-');
        put_uint(o, (uint64_t)(-(v + 1)) + 1u, 10);
    } else {
        put_uint(o, (uint64_t)v, 10);
    }
}

/* Doubles (%g/%e/%f) need double arithmetic, which is soft-float code on single-precision
 * MCUs, and no message of the library prints one: the freestanding build leaves them out
 * and prints "?" instead (docs/embedded.md). */
#ifndef LLA_FREESTANDING
/* 10^k for 0 <= k <= 22: every such power is exact in a double. */
static double exact_pow10(int k) {
    double p = 1.0;
    while (k-- > 0) p *= 10.0;
    return p;
}

/* Dekker's exact product: a * b == *hi + *lo exactly (IEEE double, round to nearest, no
 * overflow).  No libm fma, which the freestanding build must not need.  The volatile
 * temporaries force every step to round to double, so a compiler that contracts a*b+c
 * into an fma, or evaluates in extended precision, cannot break the identity. */
static double split_high(double a) {
    volatile double c = 134217729.0 * a; /* 2^27 + 1 */
    volatile double d = c - a;
    return c - d;
}

static void exact_product(double a, double b, double *hi, double *lo) {
    double ah = split_high(a), bh = split_high(b);
    double al = a - ah, bl = b - bh;
    volatile double p = a * b, t1, t2, t3, t4;
    t1 = ah * bh;
    t1 = t1 - p;
    t2 = al * bh;
    t1 = t1 + t2;
    t3 = ah * bl;
    t1 = t1 + t3;
    t4 = al * bl;
    *hi = p;
    *lo = t1 + t4;
}

/* v * 10^k.  When |k| <= 22 the power is exact, the result has one rounding, and *err
 * gets the sign of (exact product - result); otherwise the scaling rounds several times
 * and *err is 0 (an unknown direction). */
static double scale10(double v, int k, int *err) {
    double p, x, hi, lo, r;
    *err = 0;
    if (k > 22 || k < -22) {
        while (k > 22) { v *= 1e22; k -= 22; }
        while (k < -22) { v /= 1e22; k += 22; }
        return k >= 0 ? v * exact_pow10(k) : v / exact_pow10(-k);
    }
    if (k >= 0) {
        p = exact_pow10(k);
        exact_product(v, p, &hi, &lo); /* v*p = hi + lo, and hi is the rounded product */
        x = hi;
        r = lo;
    } else {
        p = exact_pow10(-k);
        x = v / p;
        exact_product(x, p, &hi, &lo); /* x*p = hi + lo; v - hi is exact (Sterbenz) */
        r = (v - hi) - lo;             /* same sign as v/p - x */
    }
    *err = r > 0 ? 1 : r < 0 ? -1 : 0;
    return x;
}

/* Six significant digits of v > 0 as an integer in [100000, 999999] and the decimal
 * exponent of the first one, rounded half to even like printf (which rounds the exact
 * binary value: a product that only rounded to a tie is resolved by its residual). */
static uint64_t six_digits(double v, int *exp10) {
    double w = v, x, frac;
    int e = 0, tries, err;
    uint64_t digits = 0;
    while (w >= 10.0) { w /= 10.0; ++e; } /* an estimate, corrected below */
    while (w < 1.0) { w *= 10.0; --e; }
    for (tries = 0; tries < 3; ++tries) {
        x = scale10(v, 5 - e, &err);
        digits = (uint64_t)x;
        frac = x - (double)digits;
        if (frac > 0.5 || (frac == 0.5 && (err > 0 || (err == 0 && (digits & 1u))))) ++digits;
        if (digits < 100000u) { --e; continue; }  /* estimate one too high */
        if (digits >= 1000000u) {
            if (x >= 1000000.0) { ++e; continue; } /* estimate one too low */
            digits = 100000u; /* rounded up to the next power of ten */
            ++e;
        }
        break;
    }
    *exp10 = e;
    return digits;
}

/* printf's %g: six significant digits, trailing zeros dropped, scientific notation
 * (e+XX, at least two exponent digits) when the exponent is < -4 or >= 6. */
static void put_double(out_t *o, double v) {
    int e, i, last;
    uint64_t digits;
    char d[6];
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    if (v != v) { put_str(o, (bits >> 63) ? "-nan" : "nan"); return; }
    if (bits >> 63) { put(o, '-'); v = -v; } /* also -0, as printf does */
    if (v > 1.7976931348623157e308) { put_str(o, "inf"); return; }
    if (v == 0) { put(o, '0'); return; }
    digits = six_digits(v, &e);
    for (i = 5; i >= 0; --i) { d[i] = (char)('0' + digits % 10u); digits /= 10u; }
    last = 5;
    while (last > 0 && d[last] == '0') --last; /* trailing zeros of the significand */
    if (e >= -4 && e < 6) {
        if (e < 0) {
            put_str(o, "0.");
            for (i = 0; i < -e - 1; ++i) put(o, '0');
            for (i = 0; i <= last; ++i) put(o, d[i]);
        } else {
            for (i = 0; i <= e; ++i) put(o, d[i]);
            if (last > e) {
                put(o, '.');
                for (i = e + 1; i <= last; ++i) put(o, d[i]);
            }
        }
    } else {
        put(o, d[0]);
        if (last > 0) {
            put(o, '.');
            for (i = 1; i <= last; ++i) put(o, d[i]);
        }
        put(o, 'e');
        put(o, e < 0 ? '-' : '+');
        if (e < 0) e = -e;
        if (e < 10) put(o, '0');
        put_uint(o, (uint64_t)e, 10);
    }
}
#endif /* !LLA_FREESTANDING */

int lla__vsnprintf(char *buf, size_t len, const char *fmt, va_list ap);

int lla__vsnprintf(char *buf, size_t len, const char *fmt, va_list ap) {
    out_t o;
    o.buf = buf;
    o.len = len;
    o.pos = 0;
    for (; *fmt; ++fmt) {
        int lng = 0, sz = 0;
        if (*fmt != '%') { put(&o, *fmt); continue; }
        ++fmt;
        while (*fmt == 'l' || *fmt == 'z' || *fmt == 'j') {
            if (*fmt == 'l') ++lng;
            else sz = 1;
            ++fmt;
        }
        switch (*fmt) {
        case '%': put(&o, '%'); break;
        case 'c': put(&o, (char)va_arg(ap, int)); break;
        case 's': put_str(&o, va_arg(ap, const char *)); break;
        case 'd':
        case 'i':
            if (sz) put_int(&o, (int64_t)va_arg(ap, ptrdiff_t));
            else if (lng >= 2) put_int(&o, (int64_t)va_arg(ap, long long));
            else if (lng == 1) put_int(&o, (int64_t)va_arg(ap, long));
            else put_int(&o, (int64_t)va_arg(ap, int));
            break;
        case 'u':
        case 'x': {
            unsigned base = *fmt == 'x' ? 16u : 10u;
            if (sz) put_uint(&o, (uint64_t)va_arg(ap, size_t), base);
            else if (lng >= 2) put_uint(&o, (uint64_t)va_arg(ap, unsigned long long), base);
            else if (lng == 1) put_uint(&o, (uint64_t)va_arg(ap, unsigned long), base);
            else put_uint(&o, (uint64_t)va_arg(ap, unsigned int), base);
            break;
        }
        case 'g':
        case 'f':
        case 'e':
#ifndef LLA_FREESTANDING
            put_double(&o, va_arg(ap, double));
#else
            (void)va_arg(ap, double);
            put(&o, '?');
#endif
            break;
        case '\0': --fmt; break;
        default: put(&o, '%'); put(&o, *fmt); break;
        }
    }
    if (len) buf[o.pos < len ? o.pos : len - 1] = '\0';
    return (int)o.pos;
}

int lla__snprintf(char *buf, size_t len, const char *fmt, ...) {
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = lla__vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return n;
}
