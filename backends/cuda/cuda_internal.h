/*
 * cuda_internal.h - shared by the CUDA backend's translation units (private).
 *
 * Host code (cuda_backend.cu) validates nothing the core already validated; it picks a
 * kernel path, lays out the device workspace and launches.  Kernels live in
 * kernels_generic.cu (every variant, hierarchy and dtype, fp32/fp64 arithmetic on the
 * CUDA cores) and kernels_mma.cu (Mamba-2 weak with 16-bit storage on the tensor cores).
 */
#ifndef LLA_CUDA_INTERNAL_H
#define LLA_CUDA_INTERNAL_H

extern "C" {
#include "backend.h"
#include "internal.h"
}

#include <cuda_runtime.h>
#include <stdint.h>

/* Per-backend-handle state. */
struct lla_cuda_impl {
    int device;
    int cc_major, cc_minor;
    int sm_count;
    size_t smem_optin;   /* max dynamic shared memory per block (opt-in)     */
    cudaStream_t stream; /* every launch and copy of this handle goes here   */
    long long *pinned;   /* LLA_CUDA_PINNED_POSITIONS page-locked int64 for position checks */
};
#define LLA_CUDA_PINNED_POSITIONS 256

static inline lla_cuda_impl *lla_cuda_of(lla_backend *b) { return (lla_cuda_impl *)b->impl; }

/* Turns a CUDA error into a status with detail; cudaErrorMemoryAllocation -> NOMEM. */
lla_status lla_cuda_fail(cudaError_t err, const char *what);
#define LLA_CU(call)                                                        \
    do {                                                                    \
        cudaError_t lla_cu_err_ = (call);                                   \
        if (lla_cu_err_ != cudaSuccess) return lla_cuda_fail(lla_cu_err_, #call); \
    } while (0)

/* Strided view handed to kernels (element strides of [B, T, H, D]). */
struct lla_dview {
    const void *data;
    long long s0, s1, s2, s3;
};

/* ---------------------------------------------------------------- generic path */

/* Everything the generic sweep forward and the decode step read. */
struct lla_generic_params {
    lla_dview q, k, v, g, lam, beta;
    void *o;
    long long o_s0, o_s1, o_s2, o_s3;
    int g_f32; /* g stored as f32 while the other tensors are 16-bit */
    int variant, hierarchy;
    long long batch, heads, qk_heads, dk, dv, levels, seqlen;
    double scale;
    const long long *offsets;   /* device [batch+1] or NULL (dense)              */
    const long long *positions; /* device [batch]: initial positions or NULL     */
    const void *init_values;    /* device decoder-layout values (state dtype)    */
    void *final_values;         /* device decoder-layout values or NULL          */
    void *carry;                /* workspace: [B*H][NL][K][V] in the state dtype  */
    int chunk;                  /* tokens per sweep step                         */
    int vslice;                 /* value columns per block                       */
};

/* Sizes of the generic forward for problem p with tensors of dtype on this device:
 * chunk length, value slice, dynamic shared memory.  LLA_ERR_UNSUPPORTED if even a chunk
 * of one token does not fit. */
lla_status lla_cuda_generic_plan(const lla_cuda_impl *impl, const lla_problem *p,
                                 lla_dtype dtype, int *chunk, int *vslice, size_t *smem);
lla_status lla_cuda_generic_forward(lla_cuda_impl *impl, lla_dtype dtype,
                                    const lla_generic_params *gp, size_t smem);
/* Decode step; positions are read from the state and incremented afterwards. */
lla_status lla_cuda_generic_decode(lla_cuda_impl *impl, lla_dtype dtype,
                                   const lla_generic_params *gp, long long *positions_dev);
/* final positions = (initial positions or 0) + sequence lengths. */
lla_status lla_cuda_write_positions(lla_cuda_impl *impl, const lla_generic_params *gp,
                                    long long *final_positions);

/* ---------------------------------------------------------------- backward (Mamba-2) */

struct lla_bwd_params {
    lla_dview q, k, v, g, lam, dout;  /* inputs and d_o                         */
    lla_dview gq, gk, gv, gg, glam;   /* outputs dq dk dv dg dlambda (written through a cast) */
    int g_f32, dg_f32;
    int hierarchy;
    long long batch, heads, qk_heads, dk, dv, levels, seqlen;
    double scale;
    const long long *offsets; /* device [batch+1] or NULL                        */
    double *G, *dGrow, *dGcol; /* workspace, [Bt*T][H] each                    */
};
/* Dynamic shared memory of the pair kernels. */
size_t lla_cuda_backward_smem(const lla_problem *p, lla_dtype dtype);
lla_status lla_cuda_backward_run(lla_cuda_impl *impl, lla_dtype dtype, const lla_bwd_params *P,
                                 long long longest);

/* ---------------------------------------------------------------- backward (sweep) */

/* The O(T log T) checkpointed backward of every variant and hierarchy, with states
 * (kernels_backward_sweep.cu).  Workspace after the packed offsets: one slice per
 * (sequence, head) (checkpoints, re-run states, dE, chunk buffers), then the dq and dk
 * partials per value head [bt][T][H][K]; elements are float (double for F64). */
struct lla_sweep_layout {
    int64_t chunk, spacing, n_ckpt;
    int64_t slice;                /* elements per (sequence, head) */
    size_t slices_at, pq_at, pk_at, total; /* bytes, relative to the sweep's part */
};
/* 0 when a size overflows. */
int lla_cuda_sweep_layout(const lla_problem *p, lla_dtype dtype, lla_sweep_layout *out);

struct lla_sweep_params {
    lla_dview q, k, v, g, lam, beta, dout;
    lla_dview gq, gk, gv, gg, glam, gbeta;
    int g_f32, dg_f32;
    int variant, hierarchy;
    long long batch, heads, qk_heads, dk, dv, levels, seqlen;
    double scale;
    const long long *offsets;        /* device [batch+1] or NULL                    */
    const long long *init_positions; /* device [batch] or NULL (no initial state)  */
    const void *init_values;         /* decoder layout, state dtype, or NULL        */
    const void *dfinal_values;       /* or NULL                                     */
    void *dinit_values;              /* or NULL                                     */
    void *slices, *pq, *pk;          /* workspace parts                             */
    long long slice, n_ckpt, spacing;
    int chunk;
};
lla_status lla_cuda_sweep_run(lla_cuda_impl *impl, lla_dtype dtype, const lla_sweep_params *P);

/* ---------------------------------------------------------------- tensor-core path */

/* Mamba-2, weak, bf16/fp16 q/k/v/lambda/o, f32 or 16-bit g, dense batch, no states. */
struct lla_mma_params {
    lla_dview q, k, v, g, lam;
    void *o;
    long long o_s0, o_s1, o_s2, o_s3;
    int g_f32;
    int is_bf16;
    long long batch, seqlen, heads, qk_heads, dk, dv, levels;
    float scale;
    int nblk;          /* big chunks (blocks of LLA_MMA_BLOCK tokens) per sequence */
    void *nodes;       /* [B*H][nblk][K][V] bf16: block summaries, then Fenwick nodes */
    float *blk_decay;  /* [B*H][nblk] total log decay of each block                */
    double *blk_cum;   /* [B*H][nblk] inclusive prefix of blk_decay                */
    float *gates;      /* [B*H][nblk*256] block-local inclusive cumulative log gates */
};
#define LLA_MMA_BLOCK 256

/* Does the tensor-core path take this problem? (reason filled when not) */
int lla_cuda_mma_eligible(const lla_cuda_impl *impl, const lla_problem *p, lla_dtype dtype,
                          const lla_inputs *x, const lla_tensor *o, int has_initial, int has_final, char *why,
                          size_t why_len);
size_t lla_cuda_mma_workspace(const lla_problem *p);
lla_status lla_cuda_mma_forward(lla_cuda_impl *impl, lla_mma_params *mp, void *workspace);

#endif /* LLA_CUDA_INTERNAL_H */
