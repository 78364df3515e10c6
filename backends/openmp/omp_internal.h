/*
 * omp_internal.h - shared declarations of the openmp backend (private).
 *
 *   openmp.c       the backend table: probe, open (run-time ISA choice), supports, threads
 *   omp_forward.c  chunkwise forward: parallel over (sequence, head, segment of chunks)
 *   omp_backward.c Mamba-2 backward: parallel over (sequence, head)
 *   omp_decode.c   decode step: parallel over (sequence, head)
 *   omp_sweep.c    building blocks of the sweeps (tiles, loading, level sets)
 *   omp_kernels.c  vectorized micro-kernels, compiled once per ISA
 * The schedule is described at the top of omp_forward.c; the algorithm it parallelizes is
 * the scalar backend's (docs/algorithms.md); measurements in docs/benchmarks.md.
 */
#ifndef LLA_OMP_INTERNAL_H
#define LLA_OMP_INTERNAL_H

#include "backend.h"
#include "internal.h"
#include "omp_kernels.h"

typedef struct lla_omp_impl {
    const lla_omp_kernels *kern;
    int default_threads; /* omp_get_max_threads() at open (OMP_NUM_THREADS) */
    int fallback_logged; /* the scalar fallback for f64 was announced          */
} lla_omp_impl;

/* Threads a call on this backend uses: lla_backend_set_threads, else the default. */
int lla__omp_threads(const lla_backend *self);

/* A third hierarchy, internal: every earlier source on one level (plain gated linear
 * attention when lambda is ignored).  Used by lla-bench's lambda == 1 baseline. */
#define LLA_OMP_FLAT 2

/* Level of (t, s) and first source of level l for target t, for weak, strong and flat. */
static inline int lla__omp_level(int hierarchy, int64_t t, int64_t s) {
    if (s == t) return 0;
    if (hierarchy == LLA_OMP_FLAT) return 1;
    return lla__level((lla_hierarchy)hierarchy, t, s);
}
static inline int64_t lla__omp_level_start(int hierarchy, int l, int64_t t) {
    if (l <= 0) return t;
    if (hierarchy == LLA_OMP_FLAT) return 0;
    return lla__level_start((lla_hierarchy)hierarchy, l, t);
}

lla_status lla__omp_forward_workspace(lla_backend *self, const lla_problem *p, lla_dtype dtype,
                                      size_t *bytes);
lla_status lla__omp_forward(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                            lla_tensor o, const lla_state *initial, lla_state *final,
                            void *workspace, size_t workspace_bytes);
lla_status lla__omp_backward_workspace(lla_backend *self, const lla_problem *p, lla_dtype dtype,
                                       size_t *bytes);
lla_status lla__omp_backward(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                             lla_tensor d_o, const lla_state *initial, const lla_state *d_final,
                             const lla_grads *grads, lla_state *d_initial, void *workspace,
                             size_t workspace_bytes);
lla_status lla__omp_decode_step(lla_backend *self, const lla_problem *p, lla_state *state,
                                const lla_inputs *x, lla_tensor o);

#endif /* LLA_OMP_INTERNAL_H */
