/* bwutil.h - helpers shared by the backward suites: gradient tensors, running the oracle
 * and the scalar backward, comparing every gradient. */
#ifndef LLA_TEST_BWUTIL_H
#define LLA_TEST_BWUTIL_H

#include "lla.h"
#include "testutil.h"

/* Gradient tensors in td's layout (strided when td is), NaN-filled, of dtype. */
lla_grads bw_grads(test_data *td, lla_dtype dtype);
/* Random d_o in [-1, 1] in td's layout and dtype. */
lla_tensor bw_random_do(test_data *td, lla_dtype dtype, uint64_t seed);
/* Oracle backward into fresh F64 gradients; aborts on failure. */
lla_grads bw_oracle(test_data *td, lla_tensor d_o);
/* Scalar backward (backend opened by the caller); returns its status. */
lla_status bw_scalar(lla_backend *be, test_data *td, lla_tensor d_o, const lla_state *initial,
                     const lla_state *d_final, const lla_grads *grads, lla_state *d_initial);

/* Largest relative error over the gradients of p's variant (name of the worst in *worst). */
double bw_grads_err(const lla_problem *p, const lla_grads *a, const lla_grads *ref,
                    const char **worst);

/* A state block (values filled uniformly in [-1, 1] when seed != 0, zero otherwise);
 * positions set to pos[b]. Memory owned by td. */
lla_state bw_state(test_data *td, lla_backend *be, lla_dtype tensor_dtype, const int64_t *pos,
                   uint64_t seed);
/* Contiguous copy of a state's values as doubles (count in *n); memory owned by td. */
double *bw_state_values(test_data *td, const lla_state *s, size_t *n);

#endif
