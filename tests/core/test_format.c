/*
 * test_format.c - the library's own formatter (lla__snprintf, used for every error and
 * log message, also in the freestanding build) against the C library's snprintf, and
 * lla_status_str / lla_dtype_name / lla_last_error basics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "internal.h"
#include "testutil.h"

#define SAME_AS_LIBC(fmt, value)                                                         \
    do {                                                                                  \
        char ours[128], theirs[128];                                                      \
        int n_ours = lla__snprintf(ours, sizeof ours, fmt, value);                        \
        int n_theirs = snprintf(theirs, sizeof theirs, fmt, value);                       \
        if (strcmp(ours, theirs) != 0 || n_ours != n_theirs)                              \
            fail_msg("format \"%s\": ours [%s] (%d), libc [%s] (%d)", fmt, ours, n_ours,  \
                     theirs, n_theirs);                                                   \
    } while (0)

static void integers_match_libc(void **state) {
    static const long long ll[] = {0, 1, -1, 42, -42, 1000000007LL, INT64_MAX, INT64_MIN,
                                   INT64_MIN + 1, 4294967296LL};
    static const size_t zu[] = {0, 1, 63, 4096, SIZE_MAX, SIZE_MAX / 2};
    static const int d[] = {0, 7, -7, 2147483647, -2147483647 - 1};
    static const unsigned u[] = {0, 10, 4000000000u, 0xdeadbeefu};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof ll / sizeof ll[0]; ++i) SAME_AS_LIBC("%lld", ll[i]);
    for (i = 0; i < sizeof ll / sizeof ll[0]; ++i) SAME_AS_LIBC("x=%lld;", ll[i]);
    for (i = 0; i < sizeof zu / sizeof zu[0]; ++i) SAME_AS_LIBC("%zu bytes", zu[i]);
    for (i = 0; i < sizeof d / sizeof d[0]; ++i) SAME_AS_LIBC("%d", d[i]);
    for (i = 0; i < sizeof d / sizeof d[0]; ++i) SAME_AS_LIBC("%i", d[i]);
    for (i = 0; i < sizeof u / sizeof u[0]; ++i) SAME_AS_LIBC("%u", u[i]);
    for (i = 0; i < sizeof u / sizeof u[0]; ++i) SAME_AS_LIBC("%x", u[i]);
    SAME_AS_LIBC("%ld", -123456789L);
    SAME_AS_LIBC("%lu", 123456789UL);
    SAME_AS_LIBC("%llx", 0xfedcba9876543210ULL);
    SAME_AS_LIBC("%c", 'q');
}

/* Held in volatile objects so the compiler's format checks do not see through them. */
static const char *volatile null_text = NULL;
static const char *volatile trailing_percent = "ab%";

static void strings_match_libc(void **state) {
    char buf[64];
    (void)state;
    SAME_AS_LIBC("%s", "");
    SAME_AS_LIBC("<%s>", "backend scalar");
    SAME_AS_LIBC("100%% %s", "done");
    /* NULL strings print as (null) (glibc does the same, but C leaves it undefined) */
    assert_int_equal(lla__snprintf(buf, sizeof buf, "[%s]", null_text), 8);
    assert_string_equal(buf, "[(null)]");
    /* mixed */
    assert_int_equal(lla__snprintf(buf, sizeof buf, "%s=%lld (%zu B, %g)", "T", (long long)-5,
                                   (size_t)64, 0.25),
                     17);
    assert_string_equal(buf, "T=-5 (64 B, 0.25)");
}

static void doubles_match_libc(void **state) {
    static const double fixed[] = {0.0, -0.0, 1.0, -1.0, 0.5, 1.5, 2.5, 0.1, 1e-4, 9.99999e-5,
                                   1e-5, 123456.0, 1234567.0, 999999.0, 999999.5, 999998.5,
                                   9.9999996, 99999.95, 0.000123456789, 3.14159265358979,
                                   1e300, -1e-300, 1.7976931348623157e308, 2.2250738585072014e-308,
                                   4.9406564584124654e-324, 1e22, 1e23, 1e-22, 65536.0,
                                   1.0 / 3.0, 2.0 / 3.0, 1e-10, 1e-9, 12345.65, 0.125};
    size_t i;
    int k, mismatches = 0;
    test_rng r = {12345};
    (void)state;
    for (i = 0; i < sizeof fixed / sizeof fixed[0]; ++i) SAME_AS_LIBC("%g", fixed[i]);
    SAME_AS_LIBC("%g", (double)NAN);
    SAME_AS_LIBC("%g", (double)INFINITY);
    SAME_AS_LIBC("%g", -(double)INFINITY);
    /* Random values over the whole exponent range: random bit patterns (finite ones) and
     * random decimal magnitudes. */
    for (k = 0; k < 200000; ++k) {
        double v;
        char ours[64], theirs[64];
        if (k & 1) {
            uint64_t bits = rng_next(&r);
            memcpy(&v, &bits, sizeof v);
            if (!(v == v) || v > 1.7976931348623157e308 || v < -1.7976931348623157e308) continue;
        } else {
            v = rng_uniform(&r, 1.0, 10.0) * pow(10.0, (double)rng_int(&r, -30, 30));
        }
        lla__snprintf(ours, sizeof ours, "%g", v);
        snprintf(theirs, sizeof theirs, "%g", v);
        if (strcmp(ours, theirs) != 0 && mismatches++ < 5)
            print_message("%%g of %.17g: ours [%s], libc [%s]\n", v, ours, theirs);
    }
    if (mismatches) fail_msg("%d of 200000 random %%g values differ from libc", mismatches);
}

static void truncation(void **state) {
    char buf[8];
    (void)state;
    memset(buf, 'x', sizeof buf);
    /* returns the full length, writes at most len-1 characters and a terminator */
    assert_int_equal(lla__snprintf(buf, sizeof buf, "%s-%lld", "abcdef", (long long)12345), 12);
    assert_string_equal(buf, "abcdef-");
    memset(buf, 'x', sizeof buf);
    assert_int_equal(lla__snprintf(buf, 1, "%d", 123), 3);
    assert_int_equal(buf[0], '\0');
    assert_int_equal(buf[1], 'x');
    /* len 0 writes nothing at all, and a NULL buffer is allowed then */
    memset(buf, 'x', sizeof buf);
    assert_int_equal(lla__snprintf(buf, 0, "%d", 123), 3);
    assert_int_equal(buf[0], 'x');
    assert_int_equal(lla__snprintf(NULL, 0, "%g", 0.5), 3);
    /* a lone % at the end is not read past */
    assert_int_equal(lla__snprintf(buf, sizeof buf, trailing_percent, 0), 2);
    assert_string_equal(buf, "ab");
}

static void status_and_dtype_names(void **state) {
    static const struct { lla_status s; const char *name; } all[] = {
        {LLA_OK, "LLA_OK"},
        {LLA_ERR_ARG, "LLA_ERR_ARG"},
        {LLA_ERR_SHAPE, "LLA_ERR_SHAPE"},
        {LLA_ERR_DTYPE, "LLA_ERR_DTYPE"},
        {LLA_ERR_UNSUPPORTED, "LLA_ERR_UNSUPPORTED"},
        {LLA_ERR_BACKEND, "LLA_ERR_BACKEND"},
        {LLA_ERR_DEVICE, "LLA_ERR_DEVICE"},
        {LLA_ERR_NOMEM, "LLA_ERR_NOMEM"},
        {LLA_ERR_WORKSPACE, "LLA_ERR_WORKSPACE"},
        {LLA_ERR_STATE, "LLA_ERR_STATE"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof all / sizeof all[0]; ++i)
        assert_string_equal(lla_status_str(all[i].s), all[i].name);
    assert_string_equal(lla_status_str((lla_status)99), "LLA_ERR_UNKNOWN_STATUS");
    assert_string_equal(lla_status_str((lla_status)-1), "LLA_ERR_UNKNOWN_STATUS");
    assert_int_equal(lla_dtype_size(LLA_DTYPE_F32), 4);
    assert_int_equal(lla_dtype_size(LLA_DTYPE_F64), 8);
    assert_int_equal(lla_dtype_size(LLA_DTYPE_BF16), 2);
    assert_int_equal(lla_dtype_size(LLA_DTYPE_F16), 2);
    assert_int_equal(lla_dtype_size((lla_dtype)0), 0);
    assert_int_equal(lla_dtype_size((lla_dtype)77), 0);
    assert_string_equal(lla_dtype_name(LLA_DTYPE_F32), "f32");
    assert_string_equal(lla_dtype_name(LLA_DTYPE_F64), "f64");
    assert_string_equal(lla_dtype_name(LLA_DTYPE_BF16), "bf16");
    assert_string_equal(lla_dtype_name(LLA_DTYPE_F16), "f16");
    assert_string_equal(lla_dtype_name((lla_dtype)77), "unknown");
    assert_string_equal(lla_version_string(), "0.1.0");
    {
        char v[32];
        snprintf(v, sizeof v, "%d.%d.%d", LLA_VERSION_MAJOR, LLA_VERSION_MINOR, LLA_VERSION_PATCH);
        assert_string_equal(lla_version_string(), v);
    }
}

/* lla__set_error formats into the per-thread buffer and returns its status; messages
 * longer than the buffer are cut, never overflow. */
static void set_error(void **state) {
    char long_text[2000];
    (void)state;
    assert_int_equal(lla__set_error(LLA_ERR_SHAPE, "T = %lld, %zu bytes, scale %g, name %s",
                                    (long long)-3, (size_t)128, 0.5, "x"),
                     LLA_ERR_SHAPE);
    assert_string_equal(lla_last_error(), "T = -3, 128 bytes, scale 0.5, name x");
    memset(long_text, 'a', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    assert_int_equal(lla__set_error(LLA_ERR_ARG, "%s", long_text), LLA_ERR_ARG);
    assert_true(strlen(lla_last_error()) > 100);
    assert_true(strlen(lla_last_error()) < sizeof long_text - 1);
    lla__clear_error();
    assert_string_equal(lla_last_error(), "");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(integers_match_libc),
        cmocka_unit_test(strings_match_libc),
        cmocka_unit_test(doubles_match_libc),
        cmocka_unit_test(truncation),
        cmocka_unit_test(status_and_dtype_names),
        cmocka_unit_test(set_error),
    };
    return cmocka_run_group_tests_name("format", tests, NULL, NULL);
}
