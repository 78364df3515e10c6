/*
 * test_api_errors.c - every public entry point of lla.h with bad arguments.
 *
 * Each rejected call must return the documented status, leave a specific message in
 * lla_last_error(), and change nothing the caller can see: outputs, state bytes and
 * workspace are filled with poison patterns before the call and compared after.
 * (Level functions: test_levels.c; mask functions: test_mask.c.)
 */
#define _POSIX_C_SOURCE 200112L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <pthread.h>

#include <cmocka.h>

#include "internal.h"
#include "testutil.h"

/* ------------------------------------------------------------------ fixture */

enum { B = 2, T = 5, H = 2, G = 1, K = 3, V = 2, NL = 4 };
#define WS_BYTES 8192

typedef struct fixture {
    lla_backend *backend;
    lla_problem p;
    double q[B * T * G * K], k[B * T * G * K], v[B * T * H * V], g[B * T * H];
    double lam[B * T * H * NL], beta[B * T * H];
    double out[B * T * H * V];
    lla_inputs x;
    lla_tensor o;
    lla_state state;
    void *state_mem;
    size_t state_bytes;
    unsigned char *ws;
    /* snapshots taken before each rejected call */
    unsigned char out_copy[sizeof(double) * B * T * H * V];
    unsigned char *state_copy, *ws_copy;
    lla_state state_desc_copy;
} fixture;

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static fixture *fixture_new(lla_variant variant) {
    fixture *f = (fixture *)calloc(1, sizeof *f);
    size_t i;
    assert_non_null(f);
    assert_int_equal(lla_backend_open("scalar", &f->backend), LLA_OK);
    lla_problem_init(&f->p, variant, LLA_HIERARCHY_WEAK, B, T, H, G, K, V);
    assert_int_equal(f->p.levels, NL);
    for (i = 0; i < B * T * G * K; ++i) { f->q[i] = 0.1 * (double)(i % 7); f->k[i] = 0.2; }
    for (i = 0; i < B * T * H * V; ++i) f->v[i] = 1.0;
    for (i = 0; i < B * T * H; ++i) { f->g[i] = -0.1; f->beta[i] = 0.5; }
    for (i = 0; i < B * T * H * NL; ++i) f->lam[i] = 1.0;
    f->x.q = lla_tensor_contiguous(f->q, LLA_DTYPE_F64, T, G, K);
    f->x.k = lla_tensor_contiguous(f->k, LLA_DTYPE_F64, T, G, K);
    f->x.v = lla_tensor_contiguous(f->v, LLA_DTYPE_F64, T, H, V);
    f->x.g = lla_tensor_contiguous(f->g, LLA_DTYPE_F64, T, H, 1);
    f->x.lambda = lla_tensor_contiguous(f->lam, LLA_DTYPE_F64, T, H, NL);
    f->x.beta = lla_tensor_contiguous(f->beta, LLA_DTYPE_F64, T, H, 1);
    memset(f->out, 0xa5, sizeof f->out);
    f->o = lla_tensor_contiguous(f->out, LLA_DTYPE_F64, T, H, V);
    assert_int_equal(lla_state_bytes(&f->p, LLA_DTYPE_F64, &f->state_bytes), LLA_OK);
    f->state_mem = xmalloc(f->state_bytes);
    f->state_copy = (unsigned char *)xmalloc(f->state_bytes);
    assert_int_equal(lla_state_init(f->backend, &f->p, LLA_DTYPE_F64, f->state_mem,
                                    f->state_bytes, &f->state),
                     LLA_OK);
    /* non-zero values so an accidental write is visible; positions stay 0 */
    memset((char *)f->state_mem + lla_state_values_offset(B), 0x3c,
           f->state_bytes - lla_state_values_offset(B));
    f->ws = (unsigned char *)xmalloc(WS_BYTES);
    f->ws_copy = (unsigned char *)xmalloc(WS_BYTES);
    memset(f->ws, 0x5a, WS_BYTES);
    return f;
}

static void fixture_free(fixture *f) {
    lla_backend_close(f->backend);
    free(f->state_mem);
    free(f->state_copy);
    free(f->ws);
    free(f->ws_copy);
    free(f);
}

static void snapshot(fixture *f) {
    memcpy(f->out_copy, f->out, sizeof f->out);
    memcpy(f->state_copy, f->state_mem, f->state_bytes);
    memcpy(f->ws_copy, f->ws, WS_BYTES);
    f->state_desc_copy = f->state;
    lla__set_error(LLA_OK, "(stale message)");
}

static void expect_rejected(fixture *f, lla_status got, lla_status want, const char *text,
                            const char *call, int line) {
    if (got != want)
        fail_msg("line %d: %s returned %s, expected %s (message: %s)", line, call,
                 lla_status_str(got), lla_status_str(want), lla_last_error());
    if (!strstr(lla_last_error(), text))
        fail_msg("line %d: %s: message \"%s\" lacks \"%s\"", line, call, lla_last_error(), text);
    if (f) {
        if (memcmp(f->out_copy, f->out, sizeof f->out) != 0)
            fail_msg("line %d: %s changed the output", line, call);
        if (memcmp(f->state_copy, f->state_mem, f->state_bytes) != 0)
            fail_msg("line %d: %s changed the state bytes", line, call);
        if (memcmp(f->ws_copy, f->ws, WS_BYTES) != 0)
            fail_msg("line %d: %s changed the workspace", line, call);
        if (memcmp(&f->state_desc_copy, &f->state, sizeof f->state) != 0)
            fail_msg("line %d: %s changed the state descriptor", line, call);
    }
}

/* REJECT(fixture or NULL, call, status, text the message must contain) */
#define REJECT(f, call, status, text)                                                     \
    do {                                                                                   \
        lla_status got_;                                                                   \
        if (f) snapshot(f);                                                                \
        else lla__set_error(LLA_OK, "(stale message)");                                    \
        got_ = (call);                                                                     \
        expect_rejected((f), got_, (status), (text), #call, __LINE__);                      \
    } while (0)

static void set_positions(fixture *f, lla_state *s, int64_t p0, int64_t p1) {
    int64_t *pos = lla__state_positions(s);
    (void)f;
    pos[0] = p0;
    pos[1] = p1;
}

/* ------------------------------------------------------------------ problem */

static void problem_check_errors(void **state) {
    lla_problem p, bad;
    int64_t offsets[3];
    (void)state;
    lla_problem_init(&p, LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, B, T, H, G, K, V);
    assert_int_equal(lla_problem_check(&p), LLA_OK);
    lla_problem_init(NULL, LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 1, 1, 1, 1, 1, 1); /* no crash */
    REJECT(NULL, lla_problem_check(NULL), LLA_ERR_ARG, "problem is NULL");
    bad = p; bad.variant = (lla_variant)5;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_ARG, "unknown variant 5");
    bad = p; bad.hierarchy = (lla_hierarchy)3;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_ARG, "unknown hierarchy 3");
    bad = p; bad.batch = 0;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "sizes must be >= 1: batch 0");
    bad = p; bad.seqlen = -1;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "seqlen -1");
    bad = p; bad.heads = 0;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "heads 0");
    bad = p; bad.qk_heads = -2;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "qk_heads -2");
    bad = p; bad.dk = 0;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "dk 0");
    bad = p; bad.dv = -3;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "dv -3");
    bad = p; bad.levels = 0;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "levels 0");
    bad = p; bad.heads = 6; bad.qk_heads = 4;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "heads (6) is not a multiple of qk_heads (4)");
    bad = p; bad.levels = 63;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "levels 63 > 62");
    bad = p; bad.levels = 3; /* T = 5 needs 4 */
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE,
           "levels = 3 is too few for 5 positions (needs 4");
    bad = p; bad.chunk = 3;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "chunk 3 is not 0 or a power of two <= 1024");
    bad = p; bad.chunk = -64;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "chunk -64");
    bad = p; bad.chunk = 2048;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "chunk 2048");
    bad = p; bad.scale = NAN;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_ARG, "scale is not finite");
    bad = p; bad.scale = INFINITY;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_ARG, "scale is not finite");
    bad = p; bad.scale = -1e301; /* finite but would overflow the products */
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_ARG, "beyond +-1e300");
    /* seqlen * heads * dk beyond INT64_MAX */
    bad = p; bad.batch = 1; bad.seqlen = (int64_t)1 << 40; bad.heads = bad.qk_heads = (int64_t)1 << 20;
    bad.dk = 1 << 10; bad.levels = 62;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "tensor sizes overflow");
    /* 2^62 elements fit int64 but their bytes do not fit size_t */
    bad.dk = 4; bad.seqlen = (int64_t)1 << 38; bad.dv = 4;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "tensor sizes overflow");
    /* batch * seqlen overflows */
    bad = p; bad.batch = INT64_MAX / 2; bad.seqlen = 4;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "tensor sizes overflow");
    /* the state (dk * dv * levels * heads * batch) overflows */
    bad = p; bad.batch = 1; bad.seqlen = 1; bad.heads = bad.qk_heads = (int64_t)1 << 20;
    bad.dk = bad.dv = (int64_t)1 << 20; bad.levels = 62;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "state size overflows");
    /* packed varlen offsets */
    bad = p; bad.seq_offsets = offsets;
    offsets[0] = 1; offsets[1] = 3; offsets[2] = 5;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "seq_offsets[0] is 1, not 0");
    offsets[0] = 0; offsets[1] = 6; offsets[2] = 5;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "seq_offsets decrease at 2");
    offsets[1] = 2; offsets[2] = 4;
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "seq_offsets[batch] = 4 but seqlen = 5");
    offsets[2] = 5;
    assert_int_equal(lla_problem_check(&bad), LLA_OK);
    /* levels are judged by the longest packed sequence, not by the packed total */
    bad.seqlen = 9; offsets[1] = 2; offsets[2] = 9; bad.levels = 4; /* longest 7: 4 levels */
    assert_int_equal(lla_problem_check(&bad), LLA_OK);
    offsets[1] = 0; /* longest 9: 5 levels */
    REJECT(NULL, lla_problem_check(&bad), LLA_ERR_SHAPE, "levels = 4 is too few for 9 positions");
}

static void tensor_and_state_sizes(void **state) {
    lla_problem p;
    lla_tensor t;
    double d;
    size_t bytes = 12345;
    (void)state;
    t = lla_tensor_contiguous(&d, LLA_DTYPE_F64, 7, 3, 5);
    assert_ptr_equal(t.data, &d);
    assert_int_equal(t.strides[0], 105);
    assert_int_equal(t.strides[1], 15);
    assert_int_equal(t.strides[2], 5);
    assert_int_equal(t.strides[3], 1);
    lla__set_error(LLA_OK, "(stale message)");
    t = lla_tensor_contiguous(&d, LLA_DTYPE_F64, INT64_MAX / 2, 3, 5);
    assert_null(t.data);
    assert_non_null(strstr(lla_last_error(), "overflow"));
    t = lla_tensor_contiguous(&d, LLA_DTYPE_F64, -1, 3, 5);
    assert_null(t.data);
    t = lla_tensor_contiguous(&d, LLA_DTYPE_F64, 1, -3, 5);
    assert_null(t.data);

    assert_int_equal(lla_state_values_offset(0), 0);
    assert_int_equal(lla_state_values_offset(1), 64);
    assert_int_equal(lla_state_values_offset(8), 64);
    assert_int_equal(lla_state_values_offset(9), 128);
    assert_int_equal(lla_state_values_offset(-1), 0);
    assert_true(lla_state_values_offset(INT64_MAX) == SIZE_MAX);

    lla_problem_init(&p, LLA_VARIANT_GDN, LLA_HIERARCHY_STRONG, B, T, H, G, K, V);
    /* layout from lla.h: int64 positions[B], padding to 64, values[B][H][NL][K][V] */
    assert_int_equal(lla_state_bytes(&p, LLA_DTYPE_F32, &bytes), LLA_OK);
    assert_int_equal(bytes, 64 + B * H * NL * K * V * 4);
    assert_int_equal(lla_state_bytes(&p, LLA_DTYPE_F64, &bytes), LLA_OK);
    assert_int_equal(bytes, 64 + B * H * NL * K * V * 8);
    bytes = 777;
    REJECT(NULL, lla_state_bytes(&p, LLA_DTYPE_F64, NULL), LLA_ERR_ARG, "bytes is NULL");
    REJECT(NULL, lla_state_bytes(NULL, LLA_DTYPE_F64, &bytes), LLA_ERR_ARG, "problem is NULL");
    REJECT(NULL, lla_state_bytes(&p, LLA_DTYPE_BF16, &bytes), LLA_ERR_DTYPE,
           "state dtype must be f32 or f64, not bf16");
    REJECT(NULL, lla_state_bytes(&p, (lla_dtype)42, &bytes), LLA_ERR_DTYPE, "not unknown");
    p.dk = 0;
    REJECT(NULL, lla_state_bytes(&p, LLA_DTYPE_F32, &bytes), LLA_ERR_SHAPE, "dk 0");
    assert_int_equal(bytes, 777);
}

/* ------------------------------------------------------------------ backends */

static char log_seen[1024];
static void log_sink(const char *msg, void *user) {
    size_t used = strlen(log_seen);
    (void)user;
    lla__snprintf(log_seen + used, sizeof log_seen - used, "%s\n", msg);
}

static void backend_selection_errors(void **state) {
    lla_backend *const poison = (lla_backend *)(uintptr_t)0x1234;
    lla_backend *b = poison;
    lla_backend_info info;
    char buf[512];
    int n = lla_backend_count(), i;
    (void)state;
    unsetenv("LLA_BACKEND");
    assert_true(n >= 1);
    assert_int_equal(lla_backend_info_get(n - 1, &info), LLA_OK);
    assert_string_equal(info.name, "scalar"); /* always compiled, always last */
    assert_int_equal(info.usable, 1);
    assert_int_equal(info.compiled, 1);
    assert_int_equal(info.device_count, 1);
    assert_true(strlen(info.reason) > 0);
    for (i = 0; i < n; ++i) assert_int_equal(lla_backend_info_get(i, &info), LLA_OK);
    memset(&info, 0x77, sizeof info);
    {
        lla_backend_info copy = info;
        REJECT(NULL, lla_backend_info_get(-1, &info), LLA_ERR_ARG, "backend index -1 out of range");
        REJECT(NULL, lla_backend_info_get(n, &info), LLA_ERR_ARG, "out of range");
        assert_memory_equal(&info, &copy, sizeof info);
    }
    REJECT(NULL, lla_backend_info_get(0, NULL), LLA_ERR_ARG, "info is NULL");
    REJECT(NULL, lla_backend_device_name(0, 0, NULL, 10), LLA_ERR_ARG, "buf is NULL or empty");
    REJECT(NULL, lla_backend_device_name(0, 0, buf, 0), LLA_ERR_ARG, "buf is NULL or empty");
    REJECT(NULL, lla_backend_device_name(-1, 0, buf, sizeof buf), LLA_ERR_ARG, "out of range");
    REJECT(NULL, lla_backend_device_name(n, 0, buf, sizeof buf), LLA_ERR_ARG, "out of range");
    REJECT(NULL, lla_backend_device_name(n - 1, 1, buf, sizeof buf), LLA_ERR_ARG,
           "backend 'scalar': device 1 out of range [0, 1)");
    REJECT(NULL, lla_backend_device_name(n - 1, -1, buf, sizeof buf), LLA_ERR_ARG, "device -1 out of range");
    assert_int_equal(lla_backend_device_name(n - 1, 0, buf, sizeof buf), LLA_OK);
    assert_true(strlen(buf) > 0);

    /* names given to the API */
    REJECT(NULL, lla_backend_open("scalar", NULL), LLA_ERR_ARG, "out is NULL");
    REJECT(NULL, lla_backend_open("nosuch", &b), LLA_ERR_BACKEND,
           "unknown backend 'nosuch' (from argument); available: ");
    assert_non_null(strstr(lla_last_error(), "scalar"));
    REJECT(NULL, lla_backend_open("scalar:", &b), LLA_ERR_BACKEND, "empty device after ':'");
    REJECT(NULL, lla_backend_open("scalar:x", &b), LLA_ERR_BACKEND, "bad device 'x'");
    REJECT(NULL, lla_backend_open("scalar:1x", &b), LLA_ERR_BACKEND, "bad device '1x'");
    REJECT(NULL, lla_backend_open("scalar:-1", &b), LLA_ERR_BACKEND, "bad device '-1'");
    REJECT(NULL, lla_backend_open("scalar:1", &b), LLA_ERR_BACKEND, "device 1 does not exist (1 found");
    REJECT(NULL, lla_backend_open("scalar:99999999999", &b), LLA_ERR_BACKEND, "bad device");
    REJECT(NULL, lla_backend_open("scalar:0.1", &b), LLA_ERR_BACKEND, "OpenCL P.D form");
    REJECT(NULL, lla_backend_open("scalar:0.", &b), LLA_ERR_BACKEND, "bad device '0.'");
    REJECT(NULL, lla_backend_open("auto:0", &b), LLA_ERR_BACKEND, "'auto' takes no device");
    REJECT(NULL, lla_backend_open("scalarx", &b), LLA_ERR_BACKEND, "unknown backend 'scalarx'");
    REJECT(NULL, lla_backend_open("scala", &b), LLA_ERR_BACKEND, "unknown backend 'scala'");
    assert_ptr_equal(b, poison);
    assert_int_equal(lla_backend_open("SCALAR:0", &b), LLA_OK); /* case-insensitive */
    assert_string_equal(lla_backend_name(b), "scalar");
    assert_true(strlen(lla_backend_description(b)) > 0);
    assert_int_equal(lla_backend_memory_kind(b), LLA_MEMORY_HOST);
    REJECT(NULL, lla_backend_set_threads(b, -1), LLA_ERR_ARG, "threads -1 < 0");
    assert_int_equal(lla_backend_set_threads(b, 1), LLA_OK);
    lla_backend_close(b);

    /* names from the environment */
    setenv("LLA_BACKEND", "nosuch", 1);
    b = poison;
    REJECT(NULL, lla_backend_open(NULL, &b), LLA_ERR_BACKEND,
           "unknown backend 'nosuch' (from LLA_BACKEND); available: ");
    assert_non_null(strstr(lla_last_error(), "scalar"));
    REJECT(NULL, lla_backend_open("", &b), LLA_ERR_BACKEND, "(from LLA_BACKEND)");
    assert_ptr_equal(b, poison);
    REJECT(NULL, lla_backend_auto_choice(buf, sizeof buf), LLA_ERR_BACKEND, "unknown backend 'nosuch'");
    assert_non_null(strstr(buf, "LLA_BACKEND=nosuch cannot be used"));
    assert_int_equal(lla_backend_open("scalar", &b), LLA_OK); /* an explicit name wins */
    lla_backend_close(b);
    setenv("LLA_BACKEND", "scalar:3", 1);
    REJECT(NULL, lla_backend_open(NULL, &b), LLA_ERR_BACKEND, "device 3 does not exist");
    setenv("LLA_BACKEND", "Scalar", 1);
    assert_int_equal(lla_backend_open(NULL, &b), LLA_OK);
    assert_string_equal(lla_backend_name(b), "scalar");
    lla_backend_close(b);
    assert_int_equal(lla_backend_auto_choice(buf, sizeof buf), LLA_OK);
    assert_non_null(strstr(buf, "LLA_BACKEND=Scalar: LLA_BACKEND selects scalar explicitly"));
    setenv("LLA_BACKEND", "auto", 1);
    assert_int_equal(lla_backend_auto_choice(buf, sizeof buf), LLA_OK);
    assert_non_null(strstr(buf, "LLA_BACKEND=auto: "));
    assert_non_null(strstr(buf, "chose "));
    unsetenv("LLA_BACKEND");
    assert_int_equal(lla_backend_auto_choice(buf, sizeof buf), LLA_OK);
    assert_non_null(strstr(buf, "no LLA_BACKEND: "));
    REJECT(NULL, lla_backend_auto_choice(NULL, 10), LLA_ERR_ARG, "buf is NULL or empty");
    REJECT(NULL, lla_backend_auto_choice(buf, 0), LLA_ERR_ARG, "buf is NULL or empty");
    assert_int_equal(lla_backend_open(NULL, &b), LLA_OK);
    lla_backend_close(b);

    /* NULL handles */
    lla_backend_close(NULL);
    assert_string_equal(lla_backend_name(NULL), "(null)");
    assert_string_equal(lla_backend_description(NULL), "(null)");
    assert_int_equal(lla_backend_memory_kind(NULL), LLA_MEMORY_HOST);
    REJECT(NULL, lla_backend_set_threads(NULL, 1), LLA_ERR_ARG, "backend is NULL");

    /* the log sink hears which backend was opened */
    log_seen[0] = '\0';
    lla_set_log(log_sink, NULL);
    assert_int_equal(lla_backend_open("scalar", &b), LLA_OK);
    lla_set_log(NULL, NULL);
    assert_non_null(strstr(log_seen, "opened backend scalar"));
    assert_non_null(strstr(log_seen, "argument selects scalar explicitly"));
    lla_backend_close(b);
}

static void backend_supports_errors(void **state) {
    fixture *f = fixture_new(LLA_VARIANT_MAMBA2);
    lla_problem bad = f->p;
    (void)state;
    REJECT(f, lla_backend_supports(NULL, &f->p, LLA_DTYPE_F64, LLA_OP_FORWARD), LLA_ERR_ARG,
           "backend is NULL");
    REJECT(f, lla_backend_supports(f->backend, NULL, LLA_DTYPE_F64, LLA_OP_FORWARD), LLA_ERR_ARG,
           "problem is NULL");
    REJECT(f, lla_backend_supports(f->backend, &f->p, (lla_dtype)0, LLA_OP_FORWARD),
           LLA_ERR_DTYPE, "unknown dtype 0");
    REJECT(f, lla_backend_supports(f->backend, &f->p, LLA_DTYPE_F64, (lla_op)9), LLA_ERR_ARG,
           "unknown op 9");
    bad.heads = 3; bad.qk_heads = 2;
    REJECT(f, lla_backend_supports(f->backend, &bad, LLA_DTYPE_F64, LLA_OP_FORWARD),
           LLA_ERR_SHAPE, "not a multiple");
    fixture_free(f);
}

static void memory_helper_errors(void **state) {
    lla_backend *b;
    void *const poison = (void *)(uintptr_t)0x4321;
    void *ptr = poison;
    char src[16] = "0123456789abcde", dst[16];
    (void)state;
    assert_int_equal(lla_backend_open("scalar", &b), LLA_OK);
    REJECT(NULL, lla_malloc(NULL, 16, &ptr), LLA_ERR_ARG, "NULL");
    REJECT(NULL, lla_malloc(b, 16, NULL), LLA_ERR_ARG, "ptr is NULL");
    REJECT(NULL, lla_malloc(b, 0, &ptr), LLA_ERR_SHAPE, "lla_malloc of 0 bytes");
    REJECT(NULL, lla_malloc(b, SIZE_MAX, &ptr), LLA_ERR_NOMEM, "overflows");
    assert_ptr_equal(ptr, poison);
    assert_int_equal(lla_malloc(b, 100, &ptr), LLA_OK);
    assert_int_equal((uintptr_t)ptr % 64, 0);
    memset(ptr, 1, 100); /* usable (ASan checks the extent) */
    REJECT(NULL, lla_free(NULL, ptr), LLA_ERR_ARG, "backend is NULL");
    assert_int_equal(lla_free(b, ptr), LLA_OK);
    assert_int_equal(lla_free(b, NULL), LLA_OK);

    memset(dst, 'z', sizeof dst);
    REJECT(NULL, lla_upload(NULL, dst, src, 4), LLA_ERR_ARG, "NULL");
    REJECT(NULL, lla_upload(b, NULL, src, 4), LLA_ERR_ARG, "dst or src is NULL");
    REJECT(NULL, lla_upload(b, dst, NULL, 4), LLA_ERR_ARG, "dst or src is NULL");
    REJECT(NULL, lla_download(NULL, dst, src, 4), LLA_ERR_ARG, "NULL");
    REJECT(NULL, lla_download(b, NULL, src, 4), LLA_ERR_ARG, "dst or src is NULL");
    REJECT(NULL, lla_download(b, dst, NULL, 4), LLA_ERR_ARG, "dst or src is NULL");
    REJECT(NULL, lla_memset_zero(NULL, dst, 4), LLA_ERR_ARG, "NULL");
    REJECT(NULL, lla_memset_zero(b, NULL, 4), LLA_ERR_ARG, "dst is NULL");
    REJECT(NULL, lla_synchronize(NULL), LLA_ERR_ARG, "backend is NULL");
    assert_memory_equal(dst, "zzzzzzzzzzzzzzzz", 16);
    /* zero bytes with NULL pointers is a no-op, not an error */
    assert_int_equal(lla_upload(b, NULL, NULL, 0), LLA_OK);
    assert_int_equal(lla_download(b, NULL, NULL, 0), LLA_OK);
    assert_int_equal(lla_memset_zero(b, NULL, 0), LLA_OK);
    assert_int_equal(lla_upload(b, dst, src, 4), LLA_OK);
    assert_memory_equal(dst, "0123zzzz", 8);
    assert_int_equal(lla_download(b, dst + 4, src + 10, 2), LLA_OK);
    assert_memory_equal(dst, "0123abzz", 8);
    assert_int_equal(lla_memset_zero(b, dst, 3), LLA_OK);
    assert_memory_equal(dst, "\0\0\0" "3abzz", 8);
    assert_int_equal(lla_synchronize(b), LLA_OK);
    lla_backend_close(b);
}

/* ------------------------------------------------------------------ states */

static void state_init_errors(void **state) {
    fixture *f = fixture_new(LLA_VARIANT_MAMBA2);
    lla_problem bad = f->p;
    lla_state *s = &f->state;
    char *mem = (char *)f->state_mem;
    size_t need = f->state_bytes, i;
    (void)state;
    /* state_init writes only on success: every rejection below leaves the poisoned
     * state bytes (values 0x3c) and the descriptor as they are */
    REJECT(f, lla_state_init(NULL, &f->p, LLA_DTYPE_F64, mem, need, s), LLA_ERR_ARG, "NULL");
    REJECT(f, lla_state_init(f->backend, &f->p, LLA_DTYPE_F64, NULL, need, s), LLA_ERR_ARG, "memory");
    REJECT(f, lla_state_init(f->backend, &f->p, LLA_DTYPE_F64, mem, need, NULL), LLA_ERR_ARG, "state is NULL");
    REJECT(f, lla_state_init(f->backend, NULL, LLA_DTYPE_F64, mem, need, s), LLA_ERR_ARG, "problem is NULL");
    REJECT(f, lla_state_init(f->backend, &f->p, LLA_DTYPE_F16, mem, need, s), LLA_ERR_DTYPE,
           "state dtype must be f32 or f64, not f16");
    REJECT(f, lla_state_init(f->backend, &f->p, LLA_DTYPE_F64, mem, need - 1, s), LLA_ERR_WORKSPACE,
           "needs");
    REJECT(f, lla_state_init(f->backend, &f->p, LLA_DTYPE_F64, mem + 4, need - 8, s),
           LLA_ERR_WORKSPACE, "needs");
    bad.levels = 0;
    REJECT(f, lla_state_init(f->backend, &bad, LLA_DTYPE_F64, mem, need, s), LLA_ERR_SHAPE, "levels 0");
    /* misaligned memory (with enough bytes) */
    {
        char *big = (char *)xmalloc(need + 16);
        lla_state s2;
        memset(&s2, 0x11, sizeof s2);
        REJECT(NULL, lla_state_init(f->backend, &f->p, LLA_DTYPE_F64, big + 4, need + 8, &s2),
               LLA_ERR_WORKSPACE, "not 8-byte aligned");
        free(big);
    }
    /* success zeroes positions and values and fills the descriptor */
    assert_int_equal(lla_state_init(f->backend, &f->p, LLA_DTYPE_F64, mem, need, s), LLA_OK);
    for (i = 0; i < need; ++i) assert_int_equal(mem[i], 0);
    assert_int_equal(s->batch, B);
    assert_int_equal(s->heads, H);
    assert_int_equal(s->levels, NL);
    assert_int_equal(s->dk, K);
    assert_int_equal(s->dv, V);
    assert_int_equal(s->dtype, LLA_DTYPE_F64);
    fixture_free(f);
}

static void workspace_query_errors(void **state) {
    fixture *f = fixture_new(LLA_VARIANT_MAMBA2);
    lla_problem bad = f->p;
    size_t bytes = 999;
    (void)state;
    REJECT(f, lla_forward_workspace(NULL, &f->p, LLA_DTYPE_F64, &bytes), LLA_ERR_ARG, "NULL");
    REJECT(f, lla_forward_workspace(f->backend, &f->p, LLA_DTYPE_F64, NULL), LLA_ERR_ARG, "bytes is NULL");
    REJECT(f, lla_forward_workspace(f->backend, NULL, LLA_DTYPE_F64, &bytes), LLA_ERR_ARG, "problem is NULL");
    REJECT(f, lla_forward_workspace(f->backend, &f->p, (lla_dtype)9, &bytes), LLA_ERR_DTYPE, "unknown dtype 9");
    REJECT(f, lla_backward_workspace(NULL, &f->p, LLA_DTYPE_F64, &bytes), LLA_ERR_ARG, "NULL");
    REJECT(f, lla_backward_workspace(f->backend, &f->p, LLA_DTYPE_F64, NULL), LLA_ERR_ARG, "bytes is NULL");
    REJECT(f, lla_backward_workspace(f->backend, NULL, LLA_DTYPE_F64, &bytes), LLA_ERR_ARG, "problem is NULL");
    REJECT(f, lla_backward_workspace(f->backend, &f->p, (lla_dtype)-1, &bytes), LLA_ERR_DTYPE, "unknown dtype -1");
    bad.dv = 0;
    REJECT(f, lla_forward_workspace(f->backend, &bad, LLA_DTYPE_F64, &bytes), LLA_ERR_SHAPE, "dv 0");
    REJECT(f, lla_backward_workspace(f->backend, &bad, LLA_DTYPE_F64, &bytes), LLA_ERR_SHAPE, "dv 0");
    assert_int_equal(bytes, 999);
    fixture_free(f);
}

/* ------------------------------------------------------------------ forward */

static void forward_errors(void **state) {
    fixture *f = fixture_new(LLA_VARIANT_MAMBA2);
    lla_backend *b = f->backend;
    lla_problem bad = f->p;
    lla_inputs xb = f->x;
    lla_tensor ob = f->o;
    lla_state sb, *s = &f->state;
    int64_t offsets[3] = {0, 2, 5};
    float small[64];
    (void)state;
    REJECT(f, lla_forward(NULL, &f->p, &f->x, f->o, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_ARG, "backend is NULL");
    REJECT(f, lla_forward(b, NULL, &f->x, f->o, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_ARG, "problem is NULL");
    REJECT(f, lla_forward(b, &f->p, NULL, f->o, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_ARG, "inputs is NULL");
    /* tensors */
    xb = f->x; xb.q.data = NULL;
    REJECT(f, lla_forward(b, &f->p, &xb, f->o, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_ARG, "tensor q: data is NULL");
    xb = f->x; xb.lambda.data = NULL;
    REJECT(f, lla_forward(b, &f->p, &xb, f->o, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_ARG, "tensor lambda: data is NULL");
    ob = f->o; ob.data = NULL;
    REJECT(f, lla_forward(b, &f->p, &f->x, ob, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_ARG, "tensor o: data is NULL");
    xb = f->x; xb.k.dtype = LLA_DTYPE_F32; xb.k.data = small;
    REJECT(f, lla_forward(b, &f->p, &xb, f->o, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_DTYPE, "tensor k is f32, expected f64");
    xb = f->x; xb.g.dtype = LLA_DTYPE_F32; xb.g.data = small; /* F32 gates only with 16-bit data */
    REJECT(f, lla_forward(b, &f->p, &xb, f->o, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_DTYPE, "tensor g is f32, expected f64");
    xb = f->x; xb.v.dtype = (lla_dtype)17;
    REJECT(f, lla_forward(b, &f->p, &xb, f->o, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_DTYPE, "tensor v: unknown dtype 17");
    ob = f->o; ob.dtype = (lla_dtype)17;
    REJECT(f, lla_forward(b, &f->p, &f->x, ob, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_DTYPE, "unknown dtype 17");
    /* problem */
    bad = f->p; bad.levels = 3;
    REJECT(f, lla_forward(b, &bad, &f->x, f->o, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_SHAPE, "levels = 3 is too few for 5 positions");
    bad = f->p; bad.qk_heads = 3;
    REJECT(f, lla_forward(b, &bad, &f->x, f->o, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_SHAPE, "heads (2) is not a multiple of qk_heads (3)");
    bad = f->p; bad.chunk = 48;
    REJECT(f, lla_forward(b, &bad, &f->x, f->o, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_SHAPE, "chunk 48");
    bad = f->p; bad.seq_offsets = offsets; offsets[2] = 6;
    REJECT(f, lla_forward(b, &bad, &f->x, f->o, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_SHAPE, "seq_offsets[batch] = 6 but seqlen = 5");
    offsets[2] = 5;
    bad = f->p; bad.seqlen = INT64_MAX / 4;
    REJECT(f, lla_forward(b, &bad, &f->x, f->o, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_SHAPE, "overflow");
    bad = f->p; bad.variant = LLA_VARIANT_GDN; /* GDN needs beta */
    xb = f->x; xb.beta.data = NULL;
    REJECT(f, lla_forward(b, &bad, &xb, f->o, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_ARG, "tensor beta: data is NULL");
    /* states */
    sb = *s; sb.heads = 4;
    REJECT(f, lla_forward(b, &f->p, &f->x, f->o, &sb, NULL, f->ws, WS_BYTES), LLA_ERR_STATE, "initial state (");
    assert_non_null(strstr(lla_last_error(), "does not match the problem"));
    REJECT(f, lla_forward(b, &f->p, &f->x, f->o, NULL, &sb, f->ws, WS_BYTES), LLA_ERR_STATE, "final state (");
    sb = *s; sb.variant = LLA_VARIANT_GDN;
    REJECT(f, lla_forward(b, &f->p, &f->x, f->o, NULL, &sb, f->ws, WS_BYTES), LLA_ERR_STATE, "does not match");
    sb = *s; sb.hierarchy = LLA_HIERARCHY_STRONG;
    REJECT(f, lla_forward(b, &f->p, &f->x, f->o, &sb, NULL, f->ws, WS_BYTES), LLA_ERR_STATE, "does not match");
    sb = *s; sb.levels = NL + 1;
    REJECT(f, lla_forward(b, &f->p, &f->x, f->o, &sb, NULL, f->ws, WS_BYTES), LLA_ERR_STATE, "does not match");
    sb = *s; sb.dtype = LLA_DTYPE_F32;
    REJECT(f, lla_forward(b, &f->p, &f->x, f->o, NULL, &sb, f->ws, WS_BYTES), LLA_ERR_DTYPE,
           "final state is f32, expected f64 for f64 tensors");
    sb = *s; sb.bytes = f->state_bytes - 1;
    REJECT(f, lla_forward(b, &f->p, &f->x, f->o, NULL, &sb, f->ws, WS_BYTES), LLA_ERR_WORKSPACE,
           "final state has");
    sb = *s; sb.memory = NULL;
    REJECT(f, lla_forward(b, &f->p, &f->x, f->o, &sb, NULL, f->ws, WS_BYTES), LLA_ERR_ARG,
           "initial state: memory is NULL");
    sb = *s; sb.memory = (char *)s->memory + 4;
    REJECT(f, lla_forward(b, &f->p, &f->x, f->o, &sb, NULL, f->ws, WS_BYTES), LLA_ERR_WORKSPACE,
           "initial state: memory is not 8-byte aligned");
    /* an initial state whose continuation overflows its levels: 4 + 5 tokens need 5 */
    set_positions(f, s, 4, 0);
    REJECT(f, lla_forward(b, &f->p, &f->x, f->o, s, NULL, f->ws, WS_BYTES), LLA_ERR_STATE,
           "sequence 0 would reach position 9, which needs 5 levels; the state has 4");
    set_positions(f, s, 0, -2);
    REJECT(f, lla_forward(b, &f->p, &f->x, f->o, s, s, f->ws, WS_BYTES), LLA_ERR_STATE,
           "state position of sequence 1 is negative (-2)");
    set_positions(f, s, INT64_MAX - 2, 0);
    REJECT(f, lla_forward(b, &f->p, &f->x, f->o, s, s, f->ws, WS_BYTES), LLA_ERR_STATE,
           "state position overflows");
    set_positions(f, s, 0, 0);
    /* varlen: each packed sequence continues from its own position */
    bad = f->p; bad.seq_offsets = offsets; /* lengths 2 and 3 */
    set_positions(f, s, 6, 0); /* 6 + 2 = 8 positions fit in 4 levels */
    {
        lla_status st;
        snapshot(f);
        st = lla_forward(b, &bad, &f->x, f->o, s, NULL, f->ws, WS_BYTES);
        assert_true(st != LLA_ERR_STATE);
    }
    set_positions(f, s, 7, 0); /* 7 + 2 = 9 do not */
    REJECT(f, lla_forward(b, &bad, &f->x, f->o, s, NULL, f->ws, WS_BYTES), LLA_ERR_STATE,
           "sequence 0 would reach position 9");
    set_positions(f, s, 0, 0);
    fixture_free(f);
}

/* Workspace checks come after the backend agreed to run the problem, so they are
 * exercised on a problem the scalar backend supports, with the size it asks for. */
static void forward_workspace_errors(void **state) {
    fixture *f = fixture_new(LLA_VARIANT_MAMBA2);
    size_t need = 0;
    lla_status sup = lla_backend_supports(f->backend, &f->p, LLA_DTYPE_F64, LLA_OP_FORWARD);
    (void)state;
    if (sup != LLA_OK) {
        /* not implemented yet: the call must say so, without touching anything */
        REJECT(f, lla_forward(f->backend, &f->p, &f->x, f->o, NULL, NULL, f->ws, WS_BYTES), sup, "");
        print_message("scalar forward reports %s (%s): workspace checks not reachable\n",
                      lla_status_str(sup), lla_last_error());
        fixture_free(f);
        return;
    }
    assert_int_equal(lla_forward_workspace(f->backend, &f->p, LLA_DTYPE_F64, &need), LLA_OK);
    assert_true(need < WS_BYTES);
    if (need > 0) {
        REJECT(f, lla_forward(f->backend, &f->p, &f->x, f->o, NULL, NULL, NULL, need),
               LLA_ERR_WORKSPACE, "workspace is NULL but");
        REJECT(f, lla_forward(f->backend, &f->p, &f->x, f->o, NULL, NULL, f->ws, need - 64),
               LLA_ERR_WORKSPACE, "workspace has");
        print_message("forward workspace of %zu bytes: NULL and short workspaces rejected\n", need);
    } else {
        print_message("scalar forward needs no workspace for this problem\n");
    }
    /* with enough workspace the same call succeeds */
    assert_int_equal(lla_forward(f->backend, &f->p, &f->x, f->o, NULL, NULL, f->ws, need), LLA_OK);
    fixture_free(f);
}

/* ------------------------------------------------------------------ backward */

static void backward_errors(void **state) {
    fixture *f = fixture_new(LLA_VARIANT_GDN);
    lla_backend *b = f->backend;
    double grad_bufs[6][B * T * H * NL];
    lla_grads gr, gb;
    lla_state sb, *s = &f->state;
    (void)state;
    memset(grad_bufs, 0x6b, sizeof grad_bufs);
    gr.dq = lla_tensor_contiguous(grad_bufs[0], LLA_DTYPE_F64, T, G, K);
    gr.dk = lla_tensor_contiguous(grad_bufs[1], LLA_DTYPE_F64, T, G, K);
    gr.dv = lla_tensor_contiguous(grad_bufs[2], LLA_DTYPE_F64, T, H, V);
    gr.dg = lla_tensor_contiguous(grad_bufs[3], LLA_DTYPE_F64, T, H, 1);
    gr.dlambda = lla_tensor_contiguous(grad_bufs[4], LLA_DTYPE_F64, T, H, NL);
    gr.dbeta = lla_tensor_contiguous(grad_bufs[5], LLA_DTYPE_F64, T, H, 1);
    /* f->o plays d_o here: it must not change either */
    REJECT(f, lla_backward(NULL, &f->p, &f->x, f->o, NULL, NULL, &gr, NULL, f->ws, WS_BYTES), LLA_ERR_ARG, "backend is NULL");
    REJECT(f, lla_backward(b, NULL, &f->x, f->o, NULL, NULL, &gr, NULL, f->ws, WS_BYTES), LLA_ERR_ARG, "problem is NULL");
    REJECT(f, lla_backward(b, &f->p, NULL, f->o, NULL, NULL, &gr, NULL, f->ws, WS_BYTES), LLA_ERR_ARG, "inputs is NULL");
    REJECT(f, lla_backward(b, &f->p, &f->x, f->o, NULL, NULL, NULL, NULL, f->ws, WS_BYTES), LLA_ERR_ARG, "grads is NULL");
    gb = gr; gb.dq.dtype = LLA_DTYPE_F32;
    REJECT(f, lla_backward(b, &f->p, &f->x, f->o, NULL, NULL, &gb, NULL, f->ws, WS_BYTES), LLA_ERR_DTYPE, "tensor dq is f32, expected f64");
    gb = gr; gb.dbeta.data = NULL; /* GDN needs dbeta */
    REJECT(f, lla_backward(b, &f->p, &f->x, f->o, NULL, NULL, &gb, NULL, f->ws, WS_BYTES), LLA_ERR_ARG, "tensor dbeta: data is NULL");
    gb = gr; gb.dg.dtype = LLA_DTYPE_F32;
    REJECT(f, lla_backward(b, &f->p, &f->x, f->o, NULL, NULL, &gb, NULL, f->ws, WS_BYTES), LLA_ERR_DTYPE, "tensor dg is f32, expected f64");
    REJECT(f, lla_backward(b, &f->p, &f->x, f->o, NULL, NULL, &gr, s, f->ws, WS_BYTES), LLA_ERR_ARG,
           "d_initial requires an initial state");
    sb = *s; sb.dv = V + 1;
    REJECT(f, lla_backward(b, &f->p, &f->x, f->o, NULL, &sb, &gr, NULL, f->ws, WS_BYTES), LLA_ERR_STATE,
           "d_final state (");
    /* a d_initial that does not match (the initial state itself is fine) */
    REJECT(f, lla_backward(b, &f->p, &f->x, f->o, s, NULL, &gr, &sb, f->ws, WS_BYTES), LLA_ERR_STATE,
           "d_initial state (");
    set_positions(f, s, 5, 0);
    REJECT(f, lla_backward(b, &f->p, &f->x, f->o, s, NULL, &gr, NULL, f->ws, WS_BYTES), LLA_ERR_STATE,
           "would reach position 10");
    set_positions(f, s, 0, 0);
    {
        double copy[6][B * T * H * NL];
        memset(copy, 0x6b, sizeof copy);
        assert_memory_equal(grad_bufs, copy, sizeof copy);
    }
    fixture_free(f);
}

/* ------------------------------------------------------------------ decode */

static void decode_errors(void **state) {
    fixture *f = fixture_new(LLA_VARIANT_MAMBA2);
    lla_backend *b = f->backend;
    lla_problem bad = f->p, small;
    lla_inputs xb = f->x;
    lla_state sb, *s = &f->state;
    (void)state;
    /* one token per sequence: the fixture's [B, T, ...] views are valid [B, 1, ...] ones */
    REJECT(f, lla_decode_step(NULL, &f->p, s, &f->x, f->o), LLA_ERR_ARG, "backend is NULL");
    REJECT(f, lla_decode_step(b, NULL, s, &f->x, f->o), LLA_ERR_ARG, "problem or state is NULL");
    REJECT(f, lla_decode_step(b, &f->p, NULL, &f->x, f->o), LLA_ERR_ARG, "problem or state is NULL");
    REJECT(f, lla_decode_step(b, &f->p, s, NULL, f->o), LLA_ERR_ARG, "inputs is NULL");
    xb.q.dtype = LLA_DTYPE_F32;
    REJECT(f, lla_decode_step(b, &f->p, s, &xb, f->o), LLA_ERR_DTYPE, "tensor q is f32, expected f64");
    bad.heads = 3;
    REJECT(f, lla_decode_step(b, &bad, s, &f->x, f->o), LLA_ERR_STATE, "decode state (");
    bad = f->p; bad.dk = -1;
    REJECT(f, lla_decode_step(b, &bad, s, &f->x, f->o), LLA_ERR_SHAPE, "dk -1");
    sb = *s; sb.bytes = 8;
    REJECT(f, lla_decode_step(b, &f->p, &sb, &f->x, f->o), LLA_ERR_WORKSPACE, "decode state has 8 bytes");
    sb = *s; sb.dtype = LLA_DTYPE_BF16;
    REJECT(f, lla_decode_step(b, &f->p, &sb, &f->x, f->o), LLA_ERR_DTYPE, "decode state is bf16");
    /* capacity: 4 levels hold positions 0..7; a state at position 8 is full */
    set_positions(f, s, 7, 8);
    REJECT(f, lla_decode_step(b, &f->p, s, &f->x, f->o), LLA_ERR_STATE,
           "sequence 1 would reach position 9, which needs 5 levels; the state has 4");
    set_positions(f, s, -1, 0);
    REJECT(f, lla_decode_step(b, &f->p, s, &f->x, f->o), LLA_ERR_STATE, "negative");
    set_positions(f, s, 0, 0);
    /* seqlen and seq_offsets of the problem are ignored by a decode step: a problem
     * whose seqlen needs more levels than the state has is still fine */
    small = f->p;
    small.seqlen = 1000;
    assert_true(lla_decode_step(b, &small, s, &f->x, f->o) != LLA_ERR_SHAPE);
    fixture_free(f);
}

/* ------------------------------------------------------------------ oracle */

static void oracle_errors(void **state) {
    fixture *f = fixture_new(LLA_VARIANT_MAMBA2);
    lla_inputs xb = f->x;
    lla_tensor ob = f->o;
    lla_problem bad = f->p;
    size_t need = 0, bytes = 55;
    (void)state;
    assert_int_equal(lla_oracle_workspace(&f->p, &need), LLA_OK);
    assert_true(need > 8 && need < WS_BYTES);
    REJECT(f, lla_oracle_workspace(&f->p, NULL), LLA_ERR_ARG, "bytes is NULL");
    REJECT(f, lla_oracle_workspace(NULL, &bytes), LLA_ERR_ARG, "problem is NULL");
    bad.batch = -4;
    REJECT(f, lla_oracle_workspace(&bad, &bytes), LLA_ERR_SHAPE, "batch -4");
    assert_int_equal(bytes, 55);
    REJECT(f, lla_oracle_forward(NULL, &f->x, f->o, f->ws, need), LLA_ERR_ARG, "problem is NULL");
    REJECT(f, lla_oracle_forward(&f->p, NULL, f->o, f->ws, need), LLA_ERR_ARG, "inputs is NULL");
    REJECT(f, lla_oracle_forward(&bad, &f->x, f->o, f->ws, need), LLA_ERR_SHAPE, "batch -4");
    bad = f->p; bad.levels = 2;
    REJECT(f, lla_oracle_forward(&bad, &f->x, f->o, f->ws, need), LLA_ERR_SHAPE, "too few");
    xb = f->x; xb.q.dtype = LLA_DTYPE_BF16; xb.k.dtype = LLA_DTYPE_BF16;
    REJECT(f, lla_oracle_forward(&f->p, &xb, f->o, f->ws, need), LLA_ERR_DTYPE, "oracle: tensor q must be f32 or f64");
    xb = f->x; xb.v.dtype = LLA_DTYPE_F32;
    REJECT(f, lla_oracle_forward(&f->p, &xb, f->o, f->ws, need), LLA_ERR_DTYPE, "tensor v is f32, expected f64");
    ob.dtype = LLA_DTYPE_F16;
    REJECT(f, lla_oracle_forward(&f->p, &f->x, ob, f->ws, need), LLA_ERR_DTYPE, "oracle: tensor o must be f32 or f64");
    ob = f->o; ob.data = NULL;
    REJECT(f, lla_oracle_forward(&f->p, &f->x, ob, f->ws, need), LLA_ERR_ARG, "tensor o: data is NULL");
    REJECT(f, lla_oracle_forward(&f->p, &f->x, f->o, NULL, need), LLA_ERR_WORKSPACE, "oracle workspace has 0 bytes");
    REJECT(f, lla_oracle_forward(&f->p, &f->x, f->o, f->ws, need - 1), LLA_ERR_WORKSPACE, "needs");
    REJECT(f, lla_oracle_forward(&f->p, &f->x, f->o, f->ws + 4, need), LLA_ERR_WORKSPACE, "not 8-byte aligned");
    /* and it runs with exactly the queried size */
    assert_int_equal(lla_oracle_forward(&f->p, &f->x, f->o, f->ws, need), LLA_OK);
    fixture_free(f);
}

/* ------------------------------------------------------------------ per-thread detail */

static void *other_thread(void *arg) {
    char *seen = (char *)arg;
    lla_problem_check(NULL); /* sets this thread's message only */
    lla__snprintf(seen, 128, "%s", lla_last_error());
    return NULL;
}

static void last_error_is_per_thread(void **state) {
    pthread_t th;
    char seen[128];
    lla_problem p;
    (void)state;
    lla_problem_init(&p, LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 1, 1, 1, 1, 1, 1);
    p.dk = 0;
    assert_int_equal(lla_problem_check(&p), LLA_ERR_SHAPE);
    assert_int_equal(pthread_create(&th, NULL, other_thread, seen), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_string_equal(seen, "problem is NULL");
    assert_non_null(strstr(lla_last_error(), "dk 0"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(problem_check_errors),
        cmocka_unit_test(tensor_and_state_sizes),
        cmocka_unit_test(backend_selection_errors),
        cmocka_unit_test(backend_supports_errors),
        cmocka_unit_test(memory_helper_errors),
        cmocka_unit_test(state_init_errors),
        cmocka_unit_test(workspace_query_errors),
        cmocka_unit_test(forward_errors),
        cmocka_unit_test(forward_workspace_errors),
        cmocka_unit_test(backward_errors),
        cmocka_unit_test(decode_errors),
        cmocka_unit_test(oracle_errors),
        cmocka_unit_test(last_error_is_per_thread),
    };
    return cmocka_run_group_tests_name("api_errors", tests, NULL, NULL);
}
