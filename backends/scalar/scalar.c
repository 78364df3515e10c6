/*
 * scalar.c - the scalar backend's table: plain C99, no allocation, no threads.
 * The reference every other backend is checked against, and the fallback for every
 * entry another backend leaves NULL.
 */
#include "backend.h"
#include "backward.h"
#include "internal.h"

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

const lla_backend_ops lla_scalar_ops = {
    "scalar",
    LLA_API_VERSION,
    scalar_probe,
    NULL, /* device_name */
    scalar_open,
    NULL, /* close */
    NULL, /* supports */
    NULL, /* forward_workspace */
    NULL, /* forward */
    lla__scalar_backward_workspace,
    lla__scalar_backward,
    NULL, /* decode_step */
    LLA_MEMORY_HOST,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
};
