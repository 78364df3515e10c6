/* check.h - validation helpers (private); see check.c. */
#ifndef LLA_CHECK_H
#define LLA_CHECK_H

#include "internal.h"

/* Problem on its own; *max_len (optional) receives the longest sequence length. */
lla_status lla__check_problem(const lla_problem *p, int64_t *max_len);
/* p->levels suffices for positions 0..positions-1. */
lla_status lla__check_levels(const lla_problem *p, int64_t positions);
lla_status lla__check_tensor(const char *name, const lla_tensor *t, lla_dtype dtype);
/* An output view [B or 1, T, H, V] (o, d_o): data, dtype and strides (see check.c). */
lla_status lla__check_output(const char *name, const lla_problem *p, const lla_tensor *t,
                             lla_dtype dtype);
/* Inputs of p: data, one dtype (g may be F32 with 16-bit data), strides. */
lla_status lla__check_inputs(const lla_problem *p, const lla_inputs *x, lla_dtype dtype);
lla_status lla__check_grads(const lla_problem *p, const lla_grads *g, lla_dtype dtype);
lla_status lla__state_bytes(const lla_problem *p, lla_dtype dtype, size_t *bytes);
/* State descriptor agrees with p and with tensors of dtype (F64 -> F64 state, else F32). */
lla_status lla__check_state(const char *name, const lla_problem *p, const lla_state *s,
                            lla_dtype dtype);

#endif
