/*
 * openmp.c - the openmp backend's table: multi-core CPU path with vectorized kernels.
 *
 * float32 forward, decode step and Mamba-2 backward run here (omp_forward.c,
 * omp_decode.c, omp_backward.c); other dtypes (float64) and the GDN backward run on the
 * scalar reference, announced once by a log line.
 * The micro-kernels are chosen at open from what the CPU supports (AVX-512, AVX2+FMA,
 * baseline); LLA_OPENMP_ISA=generic|avx2|avx512 forces a lower one (tests, benchmarks).
 */
#include "omp_internal.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define LLA_OMP_X86 1
#endif

int lla__omp_threads(const lla_backend *self) {
    const lla_omp_impl *impl = (const lla_omp_impl *)self->impl;
    if (self->threads > 0) return self->threads;
    return impl && impl->default_threads > 0 ? impl->default_threads : 1;
}

static lla_status omp_probe(char *why, size_t len, int *device_count) {
#ifdef _OPENMP
    if (why && len)
        lla__snprintf(why, len, "OpenMP %d, %d threads available", (int)_OPENMP,
                      omp_get_max_threads());
#else
    if (why && len) lla__snprintf(why, len, "built without an OpenMP runtime (1 thread)");
#endif
    if (device_count) *device_count = 1;
    return LLA_OK;
}

static int isa_allowed(const char *want, const char *isa) {
    /* order: generic < avx2 < avx512 */
    static const char *const order[] = {"generic", "avx2", "avx512"};
    int w = 2, i = 0, k;
    if (!want || !want[0]) return 1;
    for (k = 0; k < 3; ++k) {
        if (strcmp(want, order[k]) == 0) w = k;
        if (strcmp(isa, order[k]) == 0) i = k;
    }
    return i <= w;
}

/* The best kernels this CPU runs (and LLA_OPENMP_ISA allows). */
static const lla_omp_kernels *choose_kernels(void) {
    const char *want = getenv("LLA_OPENMP_ISA");
#ifdef LLA_OMP_X86
    __builtin_cpu_init();
#ifdef LLA_OMP_HAVE_AVX512
    if (__builtin_cpu_supports("avx512f") && isa_allowed(want, "avx512"))
        return &lla__omp_kernels_avx512;
#endif
#ifdef LLA_OMP_HAVE_AVX2
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        isa_allowed(want, "avx2"))
        return &lla__omp_kernels_avx2;
#endif
#endif
    (void)want;
    (void)isa_allowed;
    return &lla__omp_kernels_generic;
}

static lla_status omp_open(lla_backend *self, int device, const char *spec) {
    lla_omp_impl *impl;
    (void)device;
    (void)spec;
    impl = (lla_omp_impl *)calloc(1, sizeof *impl);
    if (!impl) return lla__set_error(LLA_ERR_NOMEM, "openmp: cannot allocate the backend state");
    impl->kern = choose_kernels();
#ifdef _OPENMP
    impl->default_threads = omp_get_max_threads();
#else
    impl->default_threads = 1;
#endif
    self->impl = impl;
    lla__snprintf(self->description, sizeof self->description,
                  "%d threads (OMP_NUM_THREADS or set_threads), %s kernels (%dx%d f32 tiles), "
                  "f32; f64 via scalar",
                  impl->default_threads, impl->kern->isa, impl->kern->mr, impl->kern->nr);
    return LLA_OK;
}

static void omp_close(lla_backend *self) {
    free(self->impl);
    self->impl = NULL;
}

static lla_status omp_set_threads(lla_backend *self, int threads) {
    lla_omp_impl *impl = (lla_omp_impl *)self->impl;
    const int n = threads > 0 ? threads : impl->default_threads;
    lla__snprintf(self->description, sizeof self->description,
                  "%d threads (%s), %s kernels (%dx%d f32 tiles), f32; f64 via scalar", n,
                  threads > 0 ? "set_threads" : "OMP_NUM_THREADS", impl->kern->isa, impl->kern->mr,
                  impl->kern->nr);
    return LLA_OK;
}

/* float32 here (GDN backward: scalar); anything else is the scalar backend's business. */
static lla_status omp_supports(lla_backend *self, const lla_problem *p, lla_dtype dtype,
                               lla_op op) {
    lla_status st;
    if (dtype == LLA_DTYPE_F32 && (op != LLA_OP_BACKWARD || p->variant == LLA_VARIANT_MAMBA2))
        return LLA_OK;
    st = lla_scalar_ops.supports ? lla_scalar_ops.supports(self, p, dtype, op) : LLA_OK;
    if (st != LLA_OK)
        return lla__set_error(st,
                              "openmp: %s tensors are not supported (f32 here, f64 through "
                              "the scalar reference)",
                              lla_dtype_name(dtype));
    return LLA_OK;
}

/* Once per handle (benign race: at worst a second line). */
static void log_fallback(lla_backend *self, lla_dtype dtype, const char *what) {
    lla_omp_impl *impl = (lla_omp_impl *)self->impl;
    if (impl->fallback_logged) return;
    impl->fallback_logged = 1;
    lla__log("openmp: %s with %s tensors runs on the scalar reference (openmp kernels are f32)",
             what, lla_dtype_name(dtype));
}

static lla_status omp_forward_workspace(lla_backend *self, const lla_problem *p, lla_dtype dtype,
                                        size_t *bytes) {
    if (dtype != LLA_DTYPE_F32) {
        *bytes = 0;
        return lla_scalar_ops.forward_workspace
                   ? lla_scalar_ops.forward_workspace(self, p, dtype, bytes)
                   : LLA_OK;
    }
    return lla__omp_forward_workspace(self, p, dtype, bytes);
}

static lla_status omp_forward(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                              lla_tensor o, const lla_state *initial, lla_state *final,
                              void *workspace, size_t workspace_bytes) {
    if (o.dtype != LLA_DTYPE_F32) {
        if (!lla_scalar_ops.forward)
            return lla__set_error(LLA_ERR_UNSUPPORTED, "openmp: %s forward is not available",
                                  lla_dtype_name(o.dtype));
        log_fallback(self, o.dtype, "forward");
        return lla_scalar_ops.forward(self, p, x, o, initial, final, workspace, workspace_bytes);
    }
    return lla__omp_forward(self, p, x, o, initial, final, workspace, workspace_bytes);
}

static lla_status omp_backward_workspace(lla_backend *self, const lla_problem *p, lla_dtype dtype,
                                         size_t *bytes) {
    if (dtype != LLA_DTYPE_F32 || p->variant != LLA_VARIANT_MAMBA2) {
        *bytes = 0;
        return lla_scalar_ops.backward_workspace
                   ? lla_scalar_ops.backward_workspace(self, p, dtype, bytes)
                   : LLA_OK;
    }
    return lla__omp_backward_workspace(self, p, dtype, bytes);
}

static lla_status omp_backward(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                               lla_tensor d_o, const lla_state *initial, const lla_state *d_final,
                               const lla_grads *grads, lla_state *d_initial, void *workspace,
                               size_t workspace_bytes) {
    if (d_o.dtype != LLA_DTYPE_F32 || p->variant != LLA_VARIANT_MAMBA2) {
        if (!lla_scalar_ops.backward)
            return lla__set_error(LLA_ERR_UNSUPPORTED, "openmp: this backward is not available");
        log_fallback(self, d_o.dtype, p->variant == LLA_VARIANT_GDN ? "GDN backward" : "backward");
        return lla_scalar_ops.backward(self, p, x, d_o, initial, d_final, grads, d_initial,
                                       workspace, workspace_bytes);
    }
    return lla__omp_backward(self, p, x, d_o, initial, d_final, grads, d_initial, workspace,
                             workspace_bytes);
}

static lla_status omp_decode(lla_backend *self, const lla_problem *p, lla_state *state,
                             const lla_inputs *x, lla_tensor o) {
    if (o.dtype != LLA_DTYPE_F32) {
        if (!lla_scalar_ops.decode_step)
            return lla__set_error(LLA_ERR_UNSUPPORTED, "openmp: %s decode is not available",
                                  lla_dtype_name(o.dtype));
        log_fallback(self, o.dtype, "decode step");
        return lla_scalar_ops.decode_step(self, p, state, x, o);
    }
    return lla__omp_decode_step(self, p, state, x, o);
}

const lla_backend_ops lla_openmp_ops = {
    /* name               */ "openmp",
    /* api_version        */ LLA_API_VERSION,
    /* probe              */ omp_probe,
    /* device_name        */ NULL,
    /* open               */ omp_open,
    /* close              */ omp_close,
    /* supports           */ omp_supports,
    /* forward_workspace  */ omp_forward_workspace,
    /* forward            */ omp_forward,
    /* backward_workspace */ omp_backward_workspace,
    /* backward           */ omp_backward,
    /* decode_step        */ omp_decode,
    /* memory_kind        */ LLA_MEMORY_HOST,
    /* mem_alloc .. synchronize: host defaults */
    NULL, NULL, NULL, NULL, NULL, NULL,
    /* set_threads        */ omp_set_threads,
    /* auto_pick          */ NULL, /* always a good CPU choice */
};
