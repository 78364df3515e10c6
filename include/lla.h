/*
 * lla.h - log-linear attention: the whole public API.
 *
 * Log-linear attention (Guo, Yang, Goel, Xing, Dao, Kim, 2025) computes, for every
 * batch b and value head h,
 *
 *     o_t = sum_{s <= t} lambda[t, level(t,s)] * scale * (q_t^T Phi(t,s) k_s) * c_s * v_s
 *
 * with one K x V state per level of a Fenwick-tree (weak) or strong hierarchy over the
 * past.  Variants: log-linear Mamba-2 (scalar gates) and log-linear Gated DeltaNet.
 * The exact mathematics is in docs/design.md and the project's SPEC.
 *
 * Conventions
 *   - Tensors are strided views in the time-first layout [B, T, H, D] (element
 *     (b,t,h,d) lives at data + b*strides[0] + t*strides[1] + h*strides[2] + d*strides[3],
 *     strides counted in elements).  q and k have qk_heads heads, everything else heads.
 *   - The caller owns every byte: outputs, decoder states and workspaces are sized by
 *     query functions and passed in.  The library never allocates on its compute paths.
 *   - Every entry point validates its arguments first.  A call that returns an error
 *     changes no output, no state and no workspace content that the caller can observe.
 *   - lla_last_error() holds a human-readable detail of the last failure of this thread.
 */
#ifndef LLA_H
#define LLA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LLA_VERSION_MAJOR 0
#define LLA_VERSION_MINOR 1
#define LLA_VERSION_PATCH 0
/* Version of the backend table layout (src/backend.h); a backend built for another
 * value is refused by the registry. */
#define LLA_API_VERSION 1

/* "0.1.0" */
const char *lla_version_string(void);

/* ------------------------------------------------------------------ status */

typedef enum lla_status {
    LLA_OK = 0,
    LLA_ERR_ARG,         /* NULL pointer or invalid enum / option value           */
    LLA_ERR_SHAPE,       /* invalid, inconsistent or overflowing sizes            */
    LLA_ERR_DTYPE,       /* a tensor dtype the call or backend does not accept    */
    LLA_ERR_UNSUPPORTED, /* valid problem, but this backend cannot run it         */
    LLA_ERR_BACKEND,     /* unknown or unusable backend name                      */
    LLA_ERR_DEVICE,      /* device or driver failure (CUDA, OpenCL)               */
    LLA_ERR_NOMEM,       /* an allocation helper could not allocate               */
    LLA_ERR_WORKSPACE,   /* workspace or state buffer too small / misaligned      */
    LLA_ERR_STATE        /* decoder state does not match the problem, or is full  */
} lla_status;

/* Short constant name of a status ("LLA_ERR_SHAPE"); never NULL. */
const char *lla_status_str(lla_status status);

/* Detail of the most recent failure on the calling thread ("" if none).  The pointer
 * stays valid until the next lla call on this thread. */
const char *lla_last_error(void);

/* Optional log sink (backend selection, fallbacks).  Without one, messages go to stderr
 * when the environment variable LLA_LOG is set to a non-zero value (hosted builds). */
typedef void (*lla_log_fn)(const char *message, void *user);
void lla_set_log(lla_log_fn fn, void *user);

/* ------------------------------------------------------------------ problem */

typedef enum lla_variant {
    LLA_VARIANT_MAMBA2 = 0, /* Phi(t,s) = exp(G_t - G_s) I, c_s = 1                   */
    LLA_VARIANT_GDN = 1     /* Phi(t,s) = P_t ... P_{s+1}, P_r = a_r (I - b_r k_r k_r^T),
                               c_s = beta_s                                          */
} lla_variant;

typedef enum lla_hierarchy {
    LLA_HIERARCHY_WEAK = 0,  /* Fenwick partition: level = bit_length(t XOR s)        */
    LLA_HIERARCHY_STRONG = 1 /* strong admissibility, base 2                           */
} lla_hierarchy;

typedef enum lla_dtype {
    LLA_DTYPE_F32 = 1,
    LLA_DTYPE_F64 = 2,
    LLA_DTYPE_BF16 = 3, /* storage only, float32 accumulation (GPU backends) */
    LLA_DTYPE_F16 = 4
} lla_dtype;

/* Bytes per element, 0 for an unknown dtype. */
size_t lla_dtype_size(lla_dtype dtype);
const char *lla_dtype_name(lla_dtype dtype);

/* What is computed.  Fill with lla_problem_init() and adjust. */
typedef struct lla_problem {
    lla_variant variant;
    lla_hierarchy hierarchy;
    int64_t batch;    /* number of sequences (B)                                      */
    int64_t seqlen;   /* tokens per sequence (T); with seq_offsets: total packed tokens */
    int64_t heads;    /* value heads (H)                                              */
    int64_t qk_heads; /* q/k heads (G); heads % qk_heads == 0, head h uses h/(H/G)    */
    int64_t dk;       /* key / state dimension (K)                                    */
    int64_t dv;       /* value dimension (V)                                          */
    int64_t levels;   /* lambda levels per token (NL) >= lla_num_levels(positions)     */
    int64_t chunk;    /* chunk length, power of two in [1, 1024]; 0 = backend default (64) */
    double scale;     /* multiplies q.k; 1 = none                                      */
    /* Optional packed variable-length batch: batch+1 non-decreasing offsets, first 0,
     * last == seqlen; tensors then have a leading dimension of 1 (strides[0] unused)
     * and sequence i owns tokens [seq_offsets[i], seq_offsets[i+1]).  Host memory,
     * for every backend.  NULL: dense [B, T] batch. */
    const int64_t *seq_offsets;
} lla_problem;

/* Sets every field: weak Mamba-2 if variant/hierarchy are 0, levels = lla_num_levels(T),
 * chunk 0, scale 1, no offsets. */
void lla_problem_init(lla_problem *p, lla_variant variant, lla_hierarchy hierarchy,
                      int64_t batch, int64_t seqlen, int64_t heads, int64_t qk_heads,
                      int64_t dk, int64_t dv);

/* Validates a problem on its own (no backend); LLA_OK or an error with detail. */
lla_status lla_problem_check(const lla_problem *p);

/* ------------------------------------------------------------------ tensors */

typedef struct lla_tensor {
    void *data;         /* host or device pointer, per the backend's memory kind       */
    lla_dtype dtype;
    int64_t strides[4]; /* element strides of [B, T, H, D]                             */
} lla_tensor;

/* A contiguous [B, T, H, D] view.  Negative or overflowing extents give a view with
 * data NULL (rejected by every call) and an lla_last_error() detail. */
lla_tensor lla_tensor_contiguous(void *data, lla_dtype dtype, int64_t seqlen,
                                 int64_t heads, int64_t dim);

/* Forward inputs.  q, k: [B,T,G,K]; v: [B,T,H,V]; g: [B,T,H] log gates (<= 0,
 * strides[3] unused); lambda: [B,T,H,NL] (linear domain); beta: [B,T,H] (GDN only,
 * ignored for Mamba-2).  q, k, v, lambda, beta and the outputs share one dtype D;
 * g is D or, when D is a 16-bit type, F32. */
typedef struct lla_inputs {
    lla_tensor q, k, v, g, lambda, beta;
} lla_inputs;

/* Gradients of sum(o * do), shaped like the inputs they belong to.  dq and dk are
 * summed over the value heads of each q/k group. */
typedef struct lla_grads {
    lla_tensor dq, dk, dv, dg, dlambda, dbeta;
} lla_grads;

/* ------------------------------------------------------------------ decoder state */

/* The hierarchical state of every (sequence, head): NL level matrices K x V plus the
 * number of tokens each sequence has consumed.  Memory layout of the caller's block
 * (in the backend's memory space):
 *     int64_t positions[batch]                 tokens consumed per sequence
 *     padding to lla_state_values_offset(batch)   (a multiple of 64 bytes)
 *     values[batch][heads][levels][dk][dv]     in the state dtype (F32 or F64)
 * After consuming tokens 0..p-1, level l holds sum over the sources s with
 * level(p-1, s) == l of Phi(p-1, s) c_s k_s v_s^T (level 0 = the last token itself),
 * exactly the layout of the reference decoder.  The struct itself is a POD descriptor. */
typedef struct lla_state {
    void *memory;
    size_t bytes;
    lla_dtype dtype;
    lla_variant variant;
    lla_hierarchy hierarchy;
    int64_t batch, heads, levels, dk, dv;
} lla_state;

/* Byte offset of values inside the state block. */
size_t lla_state_values_offset(int64_t batch);
/* Bytes needed for the state of problem p in dtype (F32 or F64). */
lla_status lla_state_bytes(const lla_problem *p, lla_dtype dtype, size_t *bytes);

/* ------------------------------------------------------------------ backends */

typedef struct lla_backend lla_backend;

typedef enum lla_op { LLA_OP_FORWARD = 0, LLA_OP_BACKWARD = 1, LLA_OP_DECODE = 2 } lla_op;

typedef enum lla_memory_kind {
    LLA_MEMORY_HOST = 0,  /* tensors and states are ordinary host pointers */
    LLA_MEMORY_DEVICE = 1 /* pointers come from lla_malloc on this backend  */
} lla_memory_kind;

typedef struct lla_backend_info {
    const char *name;    /* "scalar", "openmp", "opencl", "cuda"                     */
    int compiled;        /* built into this library                                  */
    int usable;          /* probe succeeded on this machine                          */
    int device_count;    /* devices (1 for CPU backends)                             */
    char reason[160];    /* why it is (not) usable                                   */
} lla_backend_info;

/* Backends compiled in, in priority order (the best first); scalar is always last. */
int lla_backend_count(void);
lla_status lla_backend_info_get(int index, lla_backend_info *info);
/* Human-readable name of one device of backend `index` (e.g. the GPU model). */
lla_status lla_backend_device_name(int index, int device, char *buf, size_t len);

/* Opens a backend.  spec: "scalar", "openmp", "opencl[:P.D]", "cuda[:N]", "auto",
 * case-insensitive.  NULL or "": the LLA_BACKEND environment variable if set, else
 * "auto" (the best usable backend).  An unknown or unusable name fails with
 * LLA_ERR_BACKEND and a message that lists the available backends. */
lla_status lla_backend_open(const char *spec, lla_backend **out);
void lla_backend_close(lla_backend *backend);

/* Explains which backend "auto" / LLA_BACKEND would choose, and why. */
lla_status lla_backend_auto_choice(char *buf, size_t len);

const char *lla_backend_name(const lla_backend *backend);
/* Device and implementation details ("2 threads, AVX2 kernels", "NVIDIA H100 ..."). */
const char *lla_backend_description(const lla_backend *backend);
lla_memory_kind lla_backend_memory_kind(const lla_backend *backend);
/* Threads for CPU backends (0 = default: OMP_NUM_THREADS or all cores). */
lla_status lla_backend_set_threads(lla_backend *backend, int threads);
/* LLA_OK if the backend runs op on problem p with tensors of dtype, else a status
 * (usually LLA_ERR_UNSUPPORTED) and detail. */
lla_status lla_backend_supports(lla_backend *backend, const lla_problem *p,
                                lla_dtype dtype, lla_op op);

/* Memory helpers.  Host backends use the C heap (not in the freestanding build). */
lla_status lla_malloc(lla_backend *backend, size_t bytes, void **ptr);
lla_status lla_free(lla_backend *backend, void *ptr);
lla_status lla_upload(lla_backend *backend, void *dst, const void *host_src, size_t bytes);
lla_status lla_download(lla_backend *backend, void *host_dst, const void *src, size_t bytes);
lla_status lla_memset_zero(lla_backend *backend, void *dst, size_t bytes);
lla_status lla_synchronize(lla_backend *backend);

/* ------------------------------------------------------------------ compute */

/* Zeroes a state block (positions 0) and fills the descriptor. */
lla_status lla_state_init(lla_backend *backend, const lla_problem *p, lla_dtype dtype,
                          void *memory, size_t bytes, lla_state *state);

lla_status lla_forward_workspace(lla_backend *backend, const lla_problem *p,
                                 lla_dtype dtype, size_t *bytes);

/* Chunkwise forward: o [B,T,H,V] from x.  initial (may be NULL): continue from this
 * decoder state (sequence b starts at its stored position).  final (may be NULL, may be
 * the same object as initial): receives the state after the last token, ready for
 * lla_decode_step.  workspace: at least lla_forward_workspace bytes, 64-byte aligned
 * (may be NULL when that size is 0). */
lla_status lla_forward(lla_backend *backend, const lla_problem *p, const lla_inputs *x,
                       lla_tensor o, const lla_state *initial, lla_state *final,
                       void *workspace, size_t workspace_bytes);

lla_status lla_backward_workspace(lla_backend *backend, const lla_problem *p,
                                  lla_dtype dtype, size_t *bytes);

/* Gradients of sum(o * d_o) (+ <d_final, final state> when d_final is given) with
 * respect to every input; d_initial (requires initial) receives the gradient with
 * respect to the initial state's values.  Outputs are overwritten, not accumulated. */
lla_status lla_backward(lla_backend *backend, const lla_problem *p, const lla_inputs *x,
                        lla_tensor d_o, const lla_state *initial, const lla_state *d_final,
                        const lla_grads *grads, lla_state *d_initial,
                        void *workspace, size_t workspace_bytes);

/* One decode step for every sequence of the batch: x holds one token per sequence
 * ([B,1,...] views), o receives [B,1,H,V].  Uses p's variant, hierarchy, batch, heads,
 * qk_heads, dk, dv, levels and scale (seqlen and seq_offsets are ignored), which must
 * match the state.  Fails with LLA_ERR_STATE, changing nothing, if a sequence's next
 * position needs more levels than the state has. */
lla_status lla_decode_step(lla_backend *backend, const lla_problem *p, lla_state *state,
                           const lla_inputs *x, lla_tensor o);

/* ------------------------------------------------------------------ mask algebra */
/* Pure integer / float64 functions of the structured mask, no backend needed. */

/* Levels needed for positions 0..T-1: ceil(log2 T) + 1 (T >= 1), base 2; 0 if T < 1. */
int64_t lla_num_levels(int64_t T);
/* ceil(log_b T) + 1 in exact integer arithmetic (base >= 2); 0 on bad input. */
int64_t lla_num_levels_base(int64_t T, int64_t base);
/* Level of the pair (t, s), s <= t (0 on the diagonal); -1 if s > t or s < 0. */
int64_t lla_level(lla_hierarchy h, int64_t t, int64_t s);
/* Weak level in base b >= 2: 1 + index of the most significant differing base-b digit. */
int64_t lla_level_weak_base(int64_t t, int64_t s, int64_t base);
/* First source lo_l(t) of level l >= 1 relative to target t; level l holds the sources
 * [lo_l(t), lo_{l-1}(t)) with lo_0(t) = t (empty when equal). */
int64_t lla_level_start(lla_hierarchy h, int64_t level, int64_t t);

/* Dense T x T materializations, row-major [t][s], zero above the diagonal.
 * g: T log gates; lambda: T x NL (row-major). */
lla_status lla_mask_levels_dense(lla_hierarchy h, int64_t T, int64_t *out);
lla_status lla_mask_lambda_dense(lla_hierarchy h, int64_t T, const double *lambda,
                                 int64_t NL, double *out);
lla_status lla_mask_decay_dense(int64_t T, const double *g, double *out);
lla_status lla_mask_dense(lla_hierarchy h, int64_t T, const double *g,
                          const double *lambda, int64_t NL, double *out);
/* y = M x for x: T x n (row-major), in O(T log T n) without forming M.
 * workspace: lla_mask_apply_workspace(T, NL, n) doubles' worth of bytes. */
size_t lla_mask_apply_workspace(int64_t T, int64_t NL, int64_t n);
lla_status lla_mask_apply(lla_hierarchy h, int64_t T, const double *g,
                          const double *lambda, int64_t NL, const double *x, int64_t n,
                          double *y, void *workspace, size_t workspace_bytes);

/* ------------------------------------------------------------------ float64 oracle */
/* Dense O(T^2) reference of every variant and hierarchy, computed in float64 from F32 or
 * F64 host tensors (o in either).  For checking kernels, not for speed. */
lla_status lla_oracle_workspace(const lla_problem *p, size_t *bytes);
lla_status lla_oracle_forward(const lla_problem *p, const lla_inputs *x, lla_tensor o,
                              void *workspace, size_t workspace_bytes);
/* Gradients of sum(o * d_o) by the dense closed forms (SPEC section 4.5). */
lla_status lla_oracle_backward_workspace(const lla_problem *p, size_t *bytes);
lla_status lla_oracle_backward(const lla_problem *p, const lla_inputs *x, lla_tensor d_o,
                               const lla_grads *grads, void *workspace,
                               size_t workspace_bytes);

#ifdef __cplusplus
}
#endif
#endif /* LLA_H */
