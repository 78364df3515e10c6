/* decode_case.h - one reference problem of the MCU decode test (data in the generated
 * decode_ref.h, written by tools/gen-decode-ref at build time). */
#ifndef LLA_DECODE_CASE_H
#define LLA_DECODE_CASE_H

#include <stddef.h>
#include <stdint.h>

#include "lla.h"

typedef struct decode_case {
    const char *name;
    lla_variant variant;
    lla_hierarchy hierarchy;
    int64_t batch, seqlen, heads, qk_heads, dk, dv, levels;
    double scale;
    size_t state_bytes; /* expected lla_state_bytes (the documented formula) */
    /* Contiguous [B, T, heads, dim] float32 inputs; beta is NULL for Mamba-2. */
    const float *q, *k, *v, *g, *lambda, *beta;
    const float *o_ref;     /* [B, T, H, V]: float64 oracle, rounded to float32     */
    const float *state_ref; /* [B, H, NL, K, V]: float64 definition, rounded         */
} decode_case;

#endif
