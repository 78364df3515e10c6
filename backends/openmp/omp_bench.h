/*
 * omp_bench.h - hooks of the openmp backend for tools/lla-bench (private, not installed).
 *
 * The lambda == 1 baseline ("plain gated linear attention") of the benchmark targets must
 * run the same kernels, schedule and threads as the log-linear forward, with a single
 * level for every earlier source instead of the hierarchy.  These entries run exactly
 * that: the openmp forward with the internal flat hierarchy, lambda ignored (taken as 1).
 * No initial or final state.  backend must be an open "openmp" backend, p and x a problem
 * lla_forward accepts in float32; the workspace comes from lla__openmp_linear_workspace.
 */
#ifndef LLA_OMP_BENCH_H
#define LLA_OMP_BENCH_H

#include "lla.h"

lla_status lla__openmp_linear_workspace(lla_backend *backend, const lla_problem *p, size_t *bytes);
lla_status lla__openmp_linear_forward(lla_backend *backend, const lla_problem *p,
                                      const lla_inputs *x, lla_tensor o, void *workspace,
                                      size_t workspace_bytes);

#endif /* LLA_OMP_BENCH_H */
