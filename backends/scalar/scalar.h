/*
 * scalar.h - entry points of the scalar backend shared between its files (private).
 *
 * The algorithms (what the carried states hold, how level sets regroup, the GDN chunk
 * transition) are described in docs/algorithms.md.
 */
#ifndef LLA_SCALAR_H
#define LLA_SCALAR_H

#include "backend.h"
#include "internal.h"

/* decode.c: one token per sequence, state in caller memory (SPEC 3). */
lla_status lla__scalar_decode_step(lla_backend *self, const lla_problem *p, lla_state *state,
                                   const lla_inputs *x, lla_tensor o);

/* forward.c: chunkwise O(T log T) forward with optional initial / final states. */
lla_status lla__scalar_forward_workspace(lla_backend *self, const lla_problem *p,
                                         lla_dtype dtype, size_t *bytes);
lla_status lla__scalar_forward(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                               lla_tensor o, const lla_state *initial, lla_state *final,
                               void *workspace, size_t workspace_bytes);

#endif /* LLA_SCALAR_H */
