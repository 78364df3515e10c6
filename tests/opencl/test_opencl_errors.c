/*
 * test_opencl_errors.c - error paths specific to the opencl backend: device selection,
 * device memory handles, state capacity (checked on device data, nothing changed), tensor
 * bounds, unsupported dtypes, backward argument checks, and a kernel build failure carrying
 * its build log.
 */
#define _POSIX_C_SOURCE 200112L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ocl_testutil.h"
#include "testutil.h"

static lla_backend *be;

static void expect(lla_status got, lla_status want, const char *needle) {
    if (got != want)
        fail_msg("got %s (%s), expected %s", lla_status_str(got), lla_last_error(),
                 lla_status_str(want));
    if (needle && !strstr(lla_last_error(), needle))
        fail_msg("message '%s' does not mention '%s'", lla_last_error(), needle);
    print_message("  %-22s %s\n", lla_status_str(got), lla_last_error());
}

static void device_selection(void **state) {
    lla_backend *b = NULL;
    lla_backend_info info;
    int index = ocl_backend_index(), d;
    char name[256];
    (void)state;
    assert_true(index >= 0);
    assert_int_equal(lla_backend_info_get(index, &info), LLA_OK);
    assert_true(info.usable);
    assert_true(info.device_count >= 1);
    for (d = 0; d < info.device_count; ++d) {
        assert_int_equal(lla_backend_device_name(index, d, name, sizeof name), LLA_OK);
        print_message("  device %d: %s\n", d, name);
        assert_true(strncmp(name, "opencl:", 7) == 0);
    }
    expect(lla_backend_device_name(index, info.device_count, name, sizeof name), LLA_ERR_ARG,
           NULL);
    expect(lla_backend_open("opencl:0.999", &b), LLA_ERR_BACKEND, "platform 0 has");
    expect(lla_backend_open("opencl:999.0", &b), LLA_ERR_BACKEND, "no platform 999");
    expect(lla_backend_open("opencl:999", &b), LLA_ERR_BACKEND, "999");
    expect(lla_backend_open("opencl:x", &b), LLA_ERR_BACKEND, NULL);
    expect(lla_backend_open("opencl:0.", &b), LLA_ERR_BACKEND, NULL);
    assert_null(b);
    /* both spellings of the first device work */
    assert_int_equal(lla_backend_open("opencl:0.0", &b), LLA_OK);
    assert_true(strstr(lla_backend_description(b), "opencl:0.0") != NULL);
    lla_backend_close(b);
    assert_int_equal(lla_backend_open("OpenCL:0", &b), LLA_OK);
    assert_int_equal(lla_backend_memory_kind(b), LLA_MEMORY_DEVICE);
    lla_backend_close(b);
}

static void memory_handles(void **state) {
    void *p = NULL, *q = NULL;
    unsigned char host[256], back[256];
    int i;
    (void)state;
    for (i = 0; i < 256; ++i) host[i] = (unsigned char)(i * 7 + 1);
    assert_int_equal(lla_malloc(be, 200, &p), LLA_OK);
    assert_int_equal(lla_malloc(be, 64, &q), LLA_OK);
    assert_true(((uintptr_t)p & 63u) == 0);
    /* round trip through an interior pointer */
    assert_int_equal(lla_upload(be, (char *)p + 13, host, 150), LLA_OK);
    memset(back, 0, sizeof back);
    assert_int_equal(lla_download(be, back, (char *)p + 13, 150), LLA_OK);
    assert_memory_equal(back, host, 150);
    assert_int_equal(lla_memset_zero(be, (char *)p + 20, 10), LLA_OK);
    assert_int_equal(lla_download(be, back, (char *)p + 13, 150), LLA_OK);
    for (i = 0; i < 150; ++i) assert_int_equal(back[i], i >= 7 && i < 17 ? 0 : host[i]);
    /* ranges past the end, foreign pointers */
    expect(lla_download(be, back, (char *)p + 100, 101), LLA_ERR_ARG, "past the end");
    expect(lla_upload(be, (char *)p + 199, host, 2), LLA_ERR_ARG, "past the end");
    expect(lla_upload(be, host, host, 4), LLA_ERR_ARG, "not device memory");
    expect(lla_memset_zero(be, (char *)q + 64, 1), LLA_ERR_ARG, NULL);
    expect(lla_free(be, (char *)p + 8), LLA_ERR_ARG, "inside an allocation");
    assert_int_equal(lla_free(be, NULL), LLA_OK);
    assert_int_equal(lla_free(be, p), LLA_OK);
    expect(lla_download(be, back, p, 4), LLA_ERR_ARG, "not device memory"); /* freed */
    expect(lla_free(be, p), LLA_ERR_ARG, NULL);
    assert_int_equal(lla_free(be, q), LLA_OK);
    expect(lla_malloc(be, (size_t)-1 / 2, &p), LLA_ERR_NOMEM, NULL);
}

/* A small Mamba-2 problem with everything on the device. */
typedef struct setup {
    test_data *td;
    dev_arena a;
    lla_inputs x;
    lla_tensor o_host, o;
    lla_state st;
    void *smem, *ws;
    size_t sb, ws_bytes;
} setup;

static void make_setup(setup *s, int64_t T, int64_t levels) {
    lla_problem p;
    lla_problem_init(&p, LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 2, T, 2, 1, 4, 3);
    p.levels = levels;
    s->td = td_create(&p, NULL, LLA_DTYPE_F32, 0, 5);
    arena_init(&s->a, be, 1u << 20);
    s->x = dev_inputs(&s->a, s->td);
    s->o_host = td_tensor(s->td, p.heads, p.dv, LLA_DTYPE_F32);
    s->o = dev_copy(&s->a, &s->o_host, p.batch);
    assert_int_equal(lla_state_bytes(&p, LLA_DTYPE_F32, &s->sb), LLA_OK);
    assert_int_equal(lla_malloc(be, s->sb, &s->smem), LLA_OK);
    assert_int_equal(lla_state_init(be, &s->td->p, LLA_DTYPE_F32, s->smem, s->sb, &s->st), LLA_OK);
    assert_int_equal(lla_forward_workspace(be, &s->td->p, LLA_DTYPE_F32, &s->ws_bytes), LLA_OK);
    assert_int_equal(lla_malloc(be, s->ws_bytes, &s->ws), LLA_OK);
}

static void free_setup(setup *s) {
    lla_free(be, s->ws);
    lla_free(be, s->smem);
    arena_free(&s->a);
    td_free(s->td);
}

/* Device bytes of [ptr, ptr + n) as a fresh host copy. */
static unsigned char *snapshot(void *ptr, size_t n) {
    unsigned char *h = (unsigned char *)malloc(n);
    assert_non_null(h);
    assert_int_equal(lla_download(be, h, ptr, n), LLA_OK);
    return h;
}

static void state_capacity(void **state) {
    setup s;
    lla_problem one;
    unsigned char *before_state, *before_o, *after;
    size_t ob;
    int64_t pos[2] = {3, 4};
    (void)state;
    /* levels 3 hold positions 0..3: 4 tokens */
    make_setup(&s, 1, 3);
    one = s.td->p;
    ob = tensor_bytes(&s.o, one.batch);
    /* sequence 1 has consumed 4 tokens: a fifth needs 4 levels */
    assert_int_equal(lla_upload(be, s.smem, pos, sizeof pos), LLA_OK);
    before_state = snapshot(s.smem, s.sb);
    before_o = snapshot(s.o.data, ob);
    expect(lla_decode_step(be, &one, &s.st, &s.x, s.o), LLA_ERR_STATE, "sequence 1");
    after = snapshot(s.smem, s.sb);
    assert_memory_equal(after, before_state, s.sb);
    free(after);
    after = snapshot(s.o.data, ob);
    assert_memory_equal(after, before_o, ob);
    free(after);
    /* the same through a forward with an initial state */
    expect(lla_forward(be, &one, &s.x, s.o, &s.st, &s.st, s.ws, s.ws_bytes), LLA_ERR_STATE,
           "needs 4 levels");
    after = snapshot(s.smem, s.sb);
    assert_memory_equal(after, before_state, s.sb);
    free(after);
    after = snapshot(s.o.data, ob);
    assert_memory_equal(after, before_o, ob);
    free(after);
    /* a negative position */
    pos[1] = -1;
    assert_int_equal(lla_upload(be, s.smem, pos, sizeof pos), LLA_OK);
    expect(lla_decode_step(be, &one, &s.st, &s.x, s.o), LLA_ERR_STATE, "negative");
    /* with room left, the step works and advances the positions */
    pos[0] = 2;
    pos[1] = 3;
    assert_int_equal(lla_upload(be, s.smem, pos, sizeof pos), LLA_OK);
    assert_int_equal(lla_decode_step(be, &one, &s.st, &s.x, s.o), LLA_OK);
    assert_int_equal(lla_download(be, pos, s.smem, sizeof pos), LLA_OK);
    assert_int_equal(pos[0], 3);
    assert_int_equal(pos[1], 4);
    free(before_state);
    free(before_o);
    free_setup(&s);
}

static void tensor_checks(void **state) {
    setup s;
    lla_problem p;
    lla_tensor bad;
    lla_inputs x;
    lla_grads gr;
    double host[64];
    (void)state;
    make_setup(&s, 9, 5);
    p = s.td->p;
    /* host memory handed to a device backend */
    x = s.x;
    x.q.data = host;
    expect(lla_forward(be, &p, &x, s.o, NULL, NULL, s.ws, s.ws_bytes), LLA_ERR_ARG, "tensor q");
    /* a view reaching past its allocation */
    x = s.x;
    x.v.strides[1] *= 100000; /* far past the 1 MiB arena */
    expect(lla_forward(be, &p, &x, s.o, NULL, NULL, s.ws, s.ws_bytes), LLA_ERR_ARG, "tensor v");
    /* negative strides reaching before the allocation (an output of its own) */
    {
        void *own = NULL;
        size_t n = tensor_bytes(&s.o, p.batch);
        assert_int_equal(lla_malloc(be, n, &own), LLA_OK);
        bad = s.o;
        bad.data = own;
        bad.strides[1] = -bad.strides[1];
        expect(lla_forward(be, &p, &s.x, bad, NULL, NULL, s.ws, s.ws_bytes), LLA_ERR_ARG,
               "tensor o");
        /* the same view shifted to its last token is inside, and runs */
        bad.data = (char *)own + (size_t)((p.seqlen - 1) * s.o.strides[1]) * sizeof(float);
        assert_int_equal(lla_forward(be, &p, &s.x, bad, NULL, NULL, s.ws, s.ws_bytes), LLA_OK);
        lla_free(be, own);
    }
    /* misaligned element */
    x = s.x;
    x.g.data = (char *)x.g.data + 2;
    expect(lla_forward(be, &p, &x, s.o, NULL, NULL, s.ws, s.ws_bytes), LLA_ERR_ARG, "aligned");
    /* workspace from the host */
    expect(lla_forward(be, &p, &s.x, s.o, NULL, NULL, host, s.ws_bytes), LLA_ERR_ARG,
           "workspace");
    /* float64 is not offered */
    expect(lla_backend_supports(be, &p, LLA_DTYPE_F64, LLA_OP_FORWARD), LLA_ERR_DTYPE, "float32");
    expect(lla_backend_supports(be, &p, LLA_DTYPE_F64, LLA_OP_BACKWARD), LLA_ERR_DTYPE, "float32");
    /* backward: a host gradient tensor and a too small workspace are refused */
    {
        size_t bw_bytes = 0;
        void *bw_ws = NULL;
        assert_int_equal(lla_backward_workspace(be, &p, LLA_DTYPE_F32, &bw_bytes), LLA_OK);
        assert_int_equal(lla_malloc(be, bw_bytes, &bw_ws), LLA_OK);
        gr.dq = gr.dk = gr.dv = gr.dg = gr.dlambda = gr.dbeta = s.o;
        gr.dk.data = host;
        expect(lla_backward(be, &p, &s.x, s.o, NULL, NULL, &gr, NULL, bw_ws, bw_bytes),
               LLA_ERR_ARG, "tensor dk");
        gr.dk = s.o;
        expect(lla_backward(be, &p, &s.x, s.o, NULL, NULL, &gr, NULL, bw_ws, bw_bytes / 2),
               LLA_ERR_WORKSPACE, NULL);
        lla_free(be, bw_ws);
    }
    assert_int_equal(lla_backend_supports(be, &p, LLA_DTYPE_F32, LLA_OP_BACKWARD), LLA_OK);
    assert_int_equal(lla_backend_supports(be, &p, LLA_DTYPE_F32, LLA_OP_FORWARD), LLA_OK);
    assert_int_equal(lla_backend_supports(be, &p, LLA_DTYPE_F32, LLA_OP_DECODE), LLA_OK);
    /* nothing above ran: the output still holds the NaN fill it was uploaded with */
    {
        unsigned char *o = snapshot(s.o.data, tensor_bytes(&s.o, p.batch));
        assert_memory_equal(o, s.o_host.data, tensor_bytes(&s.o, p.batch));
        free(o);
    }
    free_setup(&s);
}

static void build_failure_reports_log(void **state) {
    lla_backend *b = NULL;
    lla_status st;
    (void)state;
    /* a test hook in kernels.cl: #error when this macro is defined */
    setenv("LLA_OPENCL_BUILD_OPTIONS", "-DLLA_OPENCL_TEST_BUILD_ERROR", 1);
    st = lla_backend_open("opencl", &b);
    unsetenv("LLA_OPENCL_BUILD_OPTIONS");
    expect(st, LLA_ERR_DEVICE, "build log");
    assert_null(b);
    if (!strstr(lla_last_error(), "LLA_OPENCL_TEST_BUILD_ERROR"))
        fail_msg("the build log in '%s' lacks the compiler's message", lla_last_error());
}

static int teardown(void **state) {
    (void)state;
    lla_backend_close(be);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(device_selection),
        cmocka_unit_test(memory_handles),
        cmocka_unit_test(state_capacity),
        cmocka_unit_test(tensor_checks),
        cmocka_unit_test(build_failure_reports_log),
    };
    be = ocl_open_or_skip("opencl_errors");
    return cmocka_run_group_tests_name("opencl_errors", tests, NULL, teardown);
}
