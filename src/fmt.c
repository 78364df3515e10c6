/*
 * fmt.c - a small snprintf for error and log messages.
 *
 * The freestanding build has no stdio, so every build formats with this one function
 * (and every build therefore tests it).  Supports %% %c %s %d %i %u %x with the length
 * modifiers l, ll, z and j, and %g / %f / %e for doubles (printed as %.6g-like text).
 */
#include "internal.h"

#include <stdarg.h>

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

/* Six significant digits, scientific notation outside [1e-4, 1e6). */
static void put_double(out_t *o, double v) {
    int e = 0, i;
    uint64_t digits;
    if (v != v) { put_str(o, "nan"); return; }
    if (v < 0) { put(o, '-'); v = -v; }
    if (v > 1.7e308) { put_str(o, "inf"); return; }
    if (v == 0) { put(o, '0'); return; }
    while (v >= 10.0) { v /= 10.0; ++e; }
    while (v < 1.0) { v *= 10.0; --e; }
    digits = (uint64_t)(v * 100000.0 + 0.5); /* 6 digits: d.ddddd */
    if (digits >= 1000000u) { digits /= 10u; ++e; }
    if (e >= -4 && e < 6) {
        char d[6];
        int intpart = e >= 0 ? e + 1 : 0, last = 5;
        for (i = 5; i >= 0; --i) { d[i] = (char)('0' + digits % 10u); digits /= 10u; }
        while (last > intpart - 1 && last > 0 && d[last] == '0') --last; /* trim zeros */
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
        char d[6];
        int last = 5;
        for (i = 5; i >= 0; --i) { d[i] = (char)('0' + digits % 10u); digits /= 10u; }
        while (last > 0 && d[last] == '0') --last;
        put(o, d[0]);
        if (last > 0) {
            put(o, '.');
            for (i = 1; i <= last; ++i) put(o, d[i]);
        }
        put(o, 'e');
        put_int(o, e);
    }
}

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
        case 'e': put_double(&o, va_arg(ap, double)); break;
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
