/*
 * decode_min.c - the smallest firmware that decodes with lla: open the scalar backend by
 * name, initialise a static state, run one decode step.  Not a test: it is linked with
 * --gc-sections and a map file so tools/cross/decode-size.py can measure what the
 * decode path costs in a real image (text, data, bss contributed by liblla.a).
 * Inputs are volatile-initialised zeros so the compiler cannot fold anything away.
 */
#include <stdint.h>

#include "lla.h"

#define H 2
#define K 16
#define V 16
#define NL 17 /* lla_num_levels(65536): T = 2^16 */

static uint64_t state_memory[(64 + H * NL * K * V * 4) / 8];
static float q[H * K], k[H * K], v[H * V], g[H], lambda[H * NL], out[H * V];

int main(void) {
    lla_backend *be;
    lla_problem p;
    lla_state state;
    lla_inputs x;
    lla_status st;
    volatile float one = 1.0f;
    q[0] = k[0] = v[0] = lambda[0] = one;

    if (lla_backend_open("scalar", &be) != LLA_OK) return 1;
    lla_problem_init(&p, LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 1, 65536, H, H, K, V);
    st = lla_state_init(be, &p, LLA_DTYPE_F32, state_memory, sizeof state_memory, &state);
    if (st != LLA_OK) return 2;
    x.q = lla_tensor_contiguous(q, LLA_DTYPE_F32, 1, H, K);
    x.k = lla_tensor_contiguous(k, LLA_DTYPE_F32, 1, H, K);
    x.v = lla_tensor_contiguous(v, LLA_DTYPE_F32, 1, H, V);
    x.g = lla_tensor_contiguous(g, LLA_DTYPE_F32, 1, H, 1);
    x.lambda = lla_tensor_contiguous(lambda, LLA_DTYPE_F32, 1, H, NL);
    x.beta = x.g;
    st = lla_decode_step(be, &p, &state, &x, lla_tensor_contiguous(out, LLA_DTYPE_F32, 1, H, V));
    lla_backend_close(be);
    return st == LLA_OK && out[0] == 1.0f ? 0 : 3;
}
