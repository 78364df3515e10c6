/*
 * decode.c - the scalar backend's decode step (SPEC 3): one token per sequence, the
 * hierarchical state in caller memory, O(levels * dk * dv) per head and token, no scratch.
 *
 * The arithmetic lives in decode_impl.h, instantiated for float (F32 state and tensors,
 * float arithmetic, only expf: the path a Cortex-M4 runs) and for double (F64).
 */
#include "scalar.h"

#include <math.h>

typedef struct decode_shape {
    lla_hierarchy hierarchy;
    int gdn;
    int levels;
    int64_t dk, dv;
    double scale;
} decode_shape;

/* One token of one (sequence, head): element pointers and element steps along D. */
typedef struct decode_token {
    const void *q, *k, *v, *lambda, *g, *beta;
    int64_t q_step, k_step, v_step, lambda_step;
} decode_token;

#define REAL float
#define EXP expf
#define NAME(n) n##_f32
#include "decode_impl.h"
#undef REAL
#undef EXP
#undef NAME

/* The freestanding (firmware) build keeps only the float instance: libm then needs
 * nothing but expf, and no soft-float double code lands in the image (docs/embedded.md). */
#ifndef LLA_FREESTANDING
#define REAL double
#define EXP exp
#define NAME(n) n##_f64
#include "decode_impl.h"
#undef REAL
#undef EXP
#undef NAME
#define DECODE_TYPES "f32 with f32, f64 with f64"
#else
#define DECODE_TYPES "the freestanding build decodes f32 with an f32 state only"
#endif

lla_status lla__scalar_decode_step(lla_backend *self, const lla_problem *p, lla_state *state,
                                   const lla_inputs *x, lla_tensor o) {
    const int64_t *positions = lla__state_positions(state);
    int64_t b;
    (void)self;
    /* api.c checks this too; repeat it before anything changes, since the cascade would
     * index past the state's levels otherwise. */
    for (b = 0; b < p->batch; ++b)
        if (positions[b] < 0 || positions[b] == INT64_MAX ||
            lla_num_levels(positions[b] + 1) > p->levels)
            return lla__set_error(LLA_ERR_STATE,
                                  "decode: sequence %lld at position %lld does not fit in %lld "
                                  "levels",
                                  (long long)b, (long long)positions[b], (long long)p->levels);
    if (state->dtype == LLA_DTYPE_F32 && o.dtype == LLA_DTYPE_F32)
        decode_all_f32(p, state, x, o);
#ifndef LLA_FREESTANDING
    else if (state->dtype == LLA_DTYPE_F64 && o.dtype == LLA_DTYPE_F64)
        decode_all_f64(p, state, x, o);
#endif
    else
        return lla__set_error(LLA_ERR_UNSUPPORTED,
                              "scalar decode: %s tensors with a %s state are not supported "
                              "(" DECODE_TYPES ")",
                              lla_dtype_name(o.dtype), lla_dtype_name(state->dtype));
    return LLA_OK;
}
