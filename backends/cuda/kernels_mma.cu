#include "cuda_internal.h"
int lla_cuda_mma_eligible(const lla_cuda_impl *impl, const lla_problem *p, lla_dtype dtype,
                          const lla_inputs *x, int has_initial, int has_final, char *why,
                          size_t why_len) {
    (void)impl; (void)p; (void)dtype; (void)x; (void)has_initial; (void)has_final;
    lla__snprintf(why, why_len, "tensor-core path not built");
    return 0;
}
size_t lla_cuda_mma_workspace(const lla_problem *p) { (void)p; return 0; }
lla_status lla_cuda_mma_forward(lla_cuda_impl *impl, lla_mma_params *mp, void *workspace) {
    (void)impl; (void)mp; (void)workspace;
    return LLA_ERR_UNSUPPORTED;
}
