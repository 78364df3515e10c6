/*
 * scalar.c - the scalar backend's table: plain C99, no allocation, no threads, no stdio.
 * The reference every other backend is checked against, and the fallback for every
 * entry another backend leaves NULL.  Algorithms: docs/algorithms.md.
 *
 *   decode.c + decode_impl.h   decode step (float and double instances)
 *   forward.c                  chunkwise forward, initial / final states
 *   backward.c + backward.h    chunkwise backward (reverse sweep, checkpointed states)
 */
#include "backward.h"
#include "scalar.h"

static lla_status scalar_probe(char *why, size_t len, int *device_count) {
    if (why && len) lla__snprintf(why, len, "always available (portable C99 reference)");
    if (device_count) *device_count = 1;
    return LLA_OK;
}

static lla_status scalar_open(lla_backend *self, int device, const char *spec) {
    (void)device;
    (void)spec;
    lla__snprintf(self->description, sizeof self->description,
                  "portable C99 reference, 1 thread, f32/f64");
    return LLA_OK;
}

/* Every variant and hierarchy (GDN strong included) in float32 and float64; the 16-bit
 * storage types belong to the GPU backends. */
static lla_status scalar_supports(lla_backend *self, const lla_problem *p, lla_dtype dtype,
                                  lla_op op) {
    (void)self;
    (void)p;
    (void)op;
    if (dtype != LLA_DTYPE_F32 && dtype != LLA_DTYPE_F64)
        return lla__set_error(LLA_ERR_UNSUPPORTED,
                              "scalar backend: %s tensors are not supported (f32 and f64 only)",
                              lla_dtype_name(dtype));
    return LLA_OK;
}

#ifdef LLA_FREESTANDING
/* Firmware decodes only: the chunkwise forward computes in double (double exp, soft-float
 * on single-precision MCUs), and this table would link it into every image.  Without it
 * lla_forward / lla_backward report LLA_ERR_UNSUPPORTED; prefill by decoding
 * (docs/embedded.md). */
#define SCALAR_FORWARD_WORKSPACE NULL
#define SCALAR_FORWARD NULL
#define SCALAR_BACKWARD_WORKSPACE NULL
#define SCALAR_BACKWARD NULL
#else
#define SCALAR_FORWARD_WORKSPACE lla__scalar_forward_workspace
#define SCALAR_FORWARD lla__scalar_forward
#define SCALAR_BACKWARD_WORKSPACE lla__scalar_backward_workspace
#define SCALAR_BACKWARD lla__scalar_backward
#endif

const lla_backend_ops lla_scalar_ops = {
    /* name               */ "scalar",
    /* api_version        */ LLA_API_VERSION,
    /* probe              */ scalar_probe,
    /* device_name        */ NULL,
    /* open               */ scalar_open,
    /* close              */ NULL,
    /* supports           */ scalar_supports,
    /* forward_workspace  */ SCALAR_FORWARD_WORKSPACE,
    /* forward            */ SCALAR_FORWARD,
    /* backward_workspace */ SCALAR_BACKWARD_WORKSPACE,
    /* backward           */ SCALAR_BACKWARD,
    /* decode_step        */ lla__scalar_decode_step,
    /* memory_kind        */ LLA_MEMORY_HOST,
    /* mem_alloc .. set_threads: host defaults */
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    /* auto_pick          */ NULL,
};
