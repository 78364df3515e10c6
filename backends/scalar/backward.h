/* backward.h - the scalar backend's backward entries (backward.c), for the table in scalar.c. */
#ifndef LLA_SCALAR_BACKWARD_H
#define LLA_SCALAR_BACKWARD_H

#include "backend.h"

lla_status lla__scalar_backward_workspace(lla_backend *self, const lla_problem *p,
                                          lla_dtype dtype, size_t *bytes);
lla_status lla__scalar_backward(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                                lla_tensor d_o, const lla_state *initial,
                                const lla_state *d_final, const lla_grads *grads,
                                lla_state *d_initial, void *workspace, size_t workspace_bytes);

#endif
