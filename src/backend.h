/*
 * backend.h - the backend table (private).
 *
 * A backend is a table of function pointers.  The registry (registry.c) copies the
 * scalar table, then overrides every entry the backend provides, so an entry a
 * backend leaves NULL falls back to the scalar reference; lla_backend_open logs each
 * such fallback once.  Compute entries receive arguments already validated by api.c:
 * shapes, dtypes, state/problem agreement and workspace size are guaranteed.  They
 * return LLA_OK or an error status with lla__set_error() detail.
 */
#ifndef LLA_BACKEND_H
#define LLA_BACKEND_H

#include "lla.h"

typedef struct lla_backend_ops {
    const char *name;
    int api_version; /* LLA_API_VERSION */

    /* Is the backend usable on this machine?  why: a sentence either way.
     * device_count: devices found (1 for CPU backends).  Required. */
    lla_status (*probe)(char *why, size_t why_len, int *device_count);
    /* Device name for lla-info. */
    lla_status (*device_name)(int device, char *buf, size_t len);
    /* Set up self->impl for device `device` (from "name:device", 0 by default;
     * device_spec is the raw text after ':' or NULL, for "opencl:P.D"). */
    lla_status (*open)(lla_backend *self, int device, const char *device_spec);
    void (*close)(lla_backend *self);

    /* LLA_OK if op on p with dtype is implemented here, else LLA_ERR_UNSUPPORTED
     * (or LLA_ERR_DTYPE) with detail. */
    lla_status (*supports)(lla_backend *self, const lla_problem *p, lla_dtype dtype,
                           lla_op op);

    lla_status (*forward_workspace)(lla_backend *self, const lla_problem *p,
                                    lla_dtype dtype, size_t *bytes);
    lla_status (*forward)(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                          lla_tensor o, const lla_state *initial, lla_state *final,
                          void *workspace, size_t workspace_bytes);
    lla_status (*backward_workspace)(lla_backend *self, const lla_problem *p,
                                     lla_dtype dtype, size_t *bytes);
    lla_status (*backward)(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                           lla_tensor d_o, const lla_state *initial,
                           const lla_state *d_final, const lla_grads *grads,
                           lla_state *d_initial, void *workspace, size_t workspace_bytes);
    lla_status (*decode_step)(lla_backend *self, const lla_problem *p, lla_state *state,
                              const lla_inputs *x, lla_tensor o);

    /* Memory.  Host backends leave these NULL and get the host versions. */
    lla_memory_kind memory_kind;
    lla_status (*mem_alloc)(lla_backend *self, size_t bytes, void **ptr);
    lla_status (*mem_free)(lla_backend *self, void *ptr);
    lla_status (*mem_upload)(lla_backend *self, void *dst, const void *src, size_t bytes);
    lla_status (*mem_download)(lla_backend *self, void *dst, const void *src, size_t bytes);
    lla_status (*mem_zero)(lla_backend *self, void *dst, size_t bytes);
    lla_status (*synchronize)(lla_backend *self);
    lla_status (*set_threads)(lla_backend *self, int threads);

    /* Optional: should "auto" pick this usable backend?  LLA_OK, or a status with the
     * reason in why (e.g. OpenCL with only CPU devices, where openmp is the better CPU
     * path).  NULL: yes.  Explicit selection by name is not affected. */
    lla_status (*auto_pick)(char *why, size_t why_len);
} lla_backend_ops;

struct lla_backend {
    const lla_backend_ops *own; /* the backend's own table                       */
    lla_backend_ops ops;        /* merged: own entries, scalar where own is NULL */
    int device;
    int threads;                /* 0 = default                                   */
    void *impl;                 /* backend private data                          */
    char description[192];
};

/* Tables of the backends compiled in (defined in backends/<name>/). */
extern const lla_backend_ops lla_scalar_ops;
#ifdef LLA_HAVE_OPENMP
extern const lla_backend_ops lla_openmp_ops;
#endif
#ifdef LLA_HAVE_OPENCL
extern const lla_backend_ops lla_opencl_ops;
#endif
#ifdef LLA_HAVE_CUDA
extern const lla_backend_ops lla_cuda_ops;
#endif

#endif /* LLA_BACKEND_H */
