/*
 * cuda_backend.cu - the CUDA backend's table: probe, device memory, path selection.
 *
 * Every tensor, state and workspace handed to this backend is device memory (from
 * lla_malloc on a cuda backend).  seq_offsets stays host memory, as for every backend;
 * it is copied into the workspace.  Work is queued on one stream per handle: calls
 * return once their kernels are queued, lla_synchronize / lla_download wait for them.
 * The positions of a decoder state are copied back before any launch, so a state that
 * would overflow its levels is refused (LLA_ERR_STATE) with nothing changed.
 * Every CUDA error becomes LLA_ERR_DEVICE (LLA_ERR_NOMEM for failed allocations) with
 * cudaGetErrorString's text; nothing here aborts.
 */
#include "cuda_internal.h"

#include <string.h>
#include <stdlib.h>

lla_status lla_cuda_fail(cudaError_t err, const char *what) {
    lla_status st = err == cudaErrorMemoryAllocation ? LLA_ERR_NOMEM : LLA_ERR_DEVICE;
    (void)cudaGetLastError(); /* clear a non-sticky error so the next call starts clean */
    return lla__set_error(st, "CUDA error in %s: %s (%s, %d)", what, cudaGetErrorString(err),
                          cudaGetErrorName(err), (int)err);
}

/* ---------------------------------------------------------------- probe / open */

static const int kMinMajor = 8; /* the kernels use sm_80 instructions (mma, cp.async) */

static lla_status cuda_probe(char *why, size_t len, int *device_count) {
    int count = 0, usable = 0, i;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (device_count) *device_count = 0;
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        if (why && len)
            lla__snprintf(why, len, "no CUDA device: %s (%s)", cudaGetErrorString(err),
                          cudaGetErrorName(err));
        return LLA_ERR_BACKEND;
    }
    if (count <= 0) {
        if (why && len) lla__snprintf(why, len, "no CUDA device: the driver reports 0 devices");
        return LLA_ERR_BACKEND;
    }
    for (i = 0; i < count; ++i) {
        int major = 0;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, i) == cudaSuccess &&
            major >= kMinMajor)
            ++usable;
    }
    (void)cudaGetLastError();
    if (device_count) *device_count = count;
    if (!usable) {
        if (why && len)
            lla__snprintf(why, len,
                          "no usable CUDA device: %d found, none of compute capability 8.0 or "
                          "newer", count);
        return LLA_ERR_BACKEND;
    }
    if (why && len)
        lla__snprintf(why, len, "%d CUDA device(s), %d of compute capability >= 8.0", count,
                      usable);
    return LLA_OK;
}

static lla_status cuda_device_name(int device, char *buf, size_t len) {
    cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceProperties(&prop, device);
    if (err != cudaSuccess) return lla_cuda_fail(err, "cudaGetDeviceProperties");
    lla__snprintf(buf, len, "%s (compute %d.%d, %d SMs, %zu MiB)", prop.name, prop.major,
                  prop.minor, prop.multiProcessorCount, (size_t)(prop.totalGlobalMem >> 20));
    return LLA_OK;
}

static lla_status cuda_open(lla_backend *self, int device, const char *spec) {
    cudaDeviceProp prop;
    lla_cuda_impl *impl;
    cudaError_t err;
    (void)spec;
    err = cudaSetDevice(device);
    if (err != cudaSuccess) return lla_cuda_fail(err, "cudaSetDevice");
    err = cudaGetDeviceProperties(&prop, device);
    if (err != cudaSuccess) return lla_cuda_fail(err, "cudaGetDeviceProperties");
    if (prop.major < kMinMajor)
        return lla__set_error(LLA_ERR_BACKEND,
                              "CUDA device %d (%s) has compute capability %d.%d; the lla "
                              "kernels need 8.0 or newer", device, prop.name, prop.major,
                              prop.minor);
    impl = (lla_cuda_impl *)calloc(1, sizeof *impl);
    if (!impl) return lla__set_error(LLA_ERR_NOMEM, "cannot allocate the CUDA backend state");
    impl->device = device;
    impl->cc_major = prop.major;
    impl->cc_minor = prop.minor;
    impl->sm_count = prop.multiProcessorCount;
    impl->smem_optin = prop.sharedMemPerBlockOptin;
    err = cudaStreamCreateWithFlags(&impl->stream, cudaStreamDefault);
    if (err != cudaSuccess) {
        free(impl);
        return lla_cuda_fail(err, "cudaStreamCreate");
    }
    /* page-locked landing zone for the positions copied back before decode steps */
    err = cudaMallocHost((void **)&impl->pinned, LLA_CUDA_PINNED_POSITIONS * sizeof(long long));
    if (err != cudaSuccess) {
        (void)cudaStreamDestroy(impl->stream);
        free(impl);
        return lla_cuda_fail(err, "cudaMallocHost");
    }
    self->impl = impl;
    lla__snprintf(self->description, sizeof self->description,
                  "%s, device %d, compute %d.%d, %d SMs, %zu MiB; %s", prop.name, device,
                  prop.major, prop.minor, prop.multiProcessorCount,
                  (size_t)(prop.totalGlobalMem >> 20),
                  prop.major == 9 ? "sm_90a build, tensor-core path for 16-bit Mamba-2 weak"
                                  : "sm_80 build, tensor-core path for 16-bit Mamba-2 weak");
    return LLA_OK;
}

static void cuda_close(lla_backend *self) {
    lla_cuda_impl *impl = lla_cuda_of(self);
    if (!impl) return;
    if (cudaSetDevice(impl->device) == cudaSuccess) {
        (void)cudaStreamSynchronize(impl->stream);
        (void)cudaStreamDestroy(impl->stream);
        (void)cudaFreeHost(impl->pinned);
    }
    (void)cudaGetLastError();
    free(impl);
    self->impl = NULL;
}

/* ---------------------------------------------------------------- memory */

static lla_status use_device(lla_backend *self) {
    LLA_CU(cudaSetDevice(lla_cuda_of(self)->device));
    return LLA_OK;
}

static lla_status cuda_mem_alloc(lla_backend *self, size_t bytes, void **ptr) {
    lla_status st = use_device(self);
    cudaError_t err;
    if (st != LLA_OK) return st;
    err = cudaMalloc(ptr, bytes); /* 256-byte aligned */
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return lla__set_error(err == cudaErrorMemoryAllocation ? LLA_ERR_NOMEM : LLA_ERR_DEVICE,
                              "cudaMalloc of %zu bytes failed: %s", bytes,
                              cudaGetErrorString(err));
    }
    return LLA_OK;
}

static lla_status cuda_mem_free(lla_backend *self, void *ptr) {
    lla_status st = use_device(self);
    if (st != LLA_OK) return st;
    LLA_CU(cudaFree(ptr));
    return LLA_OK;
}

static lla_status cuda_mem_upload(lla_backend *self, void *dst, const void *src, size_t bytes) {
    lla_cuda_impl *impl = lla_cuda_of(self);
    lla_status st = use_device(self);
    if (st != LLA_OK) return st;
    if (!bytes) return LLA_OK;
    LLA_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, impl->stream));
    LLA_CU(cudaStreamSynchronize(impl->stream));
    return LLA_OK;
}

static lla_status cuda_mem_download(lla_backend *self, void *dst, const void *src, size_t bytes) {
    lla_cuda_impl *impl = lla_cuda_of(self);
    lla_status st = use_device(self);
    if (st != LLA_OK) return st;
    if (!bytes) return LLA_OK;
    LLA_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, impl->stream));
    LLA_CU(cudaStreamSynchronize(impl->stream));
    return LLA_OK;
}

static lla_status cuda_mem_zero(lla_backend *self, void *dst, size_t bytes) {
    lla_cuda_impl *impl = lla_cuda_of(self);
    lla_status st = use_device(self);
    if (st != LLA_OK) return st;
    if (!bytes) return LLA_OK;
    LLA_CU(cudaMemsetAsync(dst, 0, bytes, impl->stream));
    return LLA_OK;
}

static lla_status cuda_synchronize(lla_backend *self) {
    lla_status st = use_device(self);
    if (st != LLA_OK) return st;
    LLA_CU(cudaStreamSynchronize(lla_cuda_of(self)->stream));
    LLA_CU(cudaGetLastError());
    return LLA_OK;
}

/* ---------------------------------------------------------------- helpers */

static lla_dtype state_dtype_of(lla_dtype dtype) {
    return dtype == LLA_DTYPE_F64 ? LLA_DTYPE_F64 : LLA_DTYPE_F32;
}

static lla_dview view_of(const lla_tensor *t) {
    lla_dview v;
    v.data = t->data;
    v.s0 = (long long)t->strides[0];
    v.s1 = (long long)t->strides[1];
    v.s2 = (long long)t->strides[2];
    v.s3 = (long long)t->strides[3];
    return v;
}

/* Bytes of the generic path's carried level states. */
static int carry_bytes(const lla_problem *p, lla_dtype dtype, size_t *out) {
    int64_t n;
    size_t bytes;
    if (!lla__mul_ok(p->batch, p->heads, &n) || !lla__mul_ok(n, p->levels, &n) ||
        !lla__mul_ok(n, p->dk, &n) || !lla__mul_ok(n, p->dv, &n) ||
        !lla__size_mul_ok((size_t)n, lla_dtype_size(state_dtype_of(dtype)), &bytes))
        return 0;
    *out = lla__round_up64(bytes);
    return 1;
}

/* Workspace layout: [offsets: (batch+1) int64, rounded to 64][path area]. */
static int offsets_bytes(const lla_problem *p, size_t *out) {
    size_t n;
    if (!lla__size_mul_ok((size_t)p->batch + 1, 8, &n)) return 0;
    *out = lla__round_up64(n);
    return 1;
}

static lla_status cuda_forward_workspace(lla_backend *self, const lla_problem *p,
                                         lla_dtype dtype, size_t *bytes) {
    size_t off, carry, mma, total;
    (void)self;
    if (!offsets_bytes(p, &off) || !carry_bytes(p, dtype, &carry))
        return lla__set_error(LLA_ERR_SHAPE, "cuda: workspace size overflows");
    mma = lla_cuda_mma_workspace(p);
    if (mma == (size_t)-1) mma = 0;
    if (!lla__size_add_ok(off, carry > mma ? carry : mma, &total))
        return lla__set_error(LLA_ERR_SHAPE, "cuda: workspace size overflows");
    *bytes = total;
    return LLA_OK;
}

/* Backward workspace: [offsets][G][dG rows][dG columns], float64 per token and head. */
static int backward_scratch(const lla_problem *p, size_t *each) {
    int64_t n;
    size_t bytes;
    if (!lla__mul_ok(p->seq_offsets ? 1 : p->batch, p->seqlen, &n) ||
        !lla__mul_ok(n, p->heads, &n) || !lla__size_mul_ok((size_t)n, 8, &bytes))
        return 0;
    *each = lla__round_up64(bytes);
    return 1;
}

/* Mamba-2 from this many tokens (longest sequence) on takes the sweep backward even
 * without states; below it the closed-form pair kernels (O(T^2), see kernels_backward.cu).
 * Measured on an H100 (B=2 H=48 K=128 V=64 bf16 weak, forward + backward): pairs 0.19 s /
 * 1.14 s, serial-per-pair sweep 4.2 s / 19.7 s at T = 2K / 8K; pairs grow as T^2, the sweep
 * as T, so they cross near T = 128K (extrapolated, not measured there).
 * LLA_CUDA_BACKWARD=sweep|pairs forces one (pairs only where it applies), for tests and
 * benchmarks. */
#define LLA_CUDA_SWEEP_MIN_T 131072

static long long longest_sequence(const lla_problem *p) {
    long long longest = p->seqlen;
    int64_t b;
    if (p->seq_offsets) {
        longest = 0;
        for (b = 0; b < p->batch; ++b)
            if (p->seq_offsets[b + 1] - p->seq_offsets[b] > longest)
                longest = p->seq_offsets[b + 1] - p->seq_offsets[b];
    }
    return longest;
}

/* Can the pair kernels take this problem (ignoring states)? */
static int pairs_possible(lla_backend *self, const lla_problem *p, lla_dtype dtype) {
    return p->variant == LLA_VARIANT_MAMBA2 &&
           lla_cuda_backward_smem(p, dtype) <= lla_cuda_of(self)->smem_optin &&
           (longest_sequence(p) + 31) / 32 <= 65535 /* kT = 32 targets per tile */;
}

/* The backward route: 1 = sweep, 0 = pairs. */
static int use_sweep(lla_backend *self, const lla_problem *p, lla_dtype dtype, int has_states) {
    const char *force = getenv("LLA_CUDA_BACKWARD");
    if (has_states || !pairs_possible(self, p, dtype)) return 1;
    if (force && strcmp(force, "sweep") == 0) return 1;
    if (force && strcmp(force, "pairs") == 0) return 0;
    return longest_sequence(p) >= LLA_CUDA_SWEEP_MIN_T;
}

/* Backward workspace: [offsets] then the larger of the two routes' parts (the route can
 * still depend on whether states are passed): the pair kernels' [G][dG rows][dG columns]
 * (float64 per token and head), or the sweep's layout (lla_cuda_sweep_layout). */
static lla_status cuda_backward_workspace(lla_backend *self, const lla_problem *p,
                                          lla_dtype dtype, size_t *bytes) {
    size_t off, each, pairs = 0, total;
    lla_sweep_layout sw;
    if (!offsets_bytes(p, &off) || !lla_cuda_sweep_layout(p, dtype, &sw))
        return lla__set_error(LLA_ERR_SHAPE, "cuda: backward workspace size overflows");
    if (pairs_possible(self, p, dtype) &&
        (!backward_scratch(p, &each) || !lla__size_mul_ok(each, 3, &pairs)))
        return lla__set_error(LLA_ERR_SHAPE, "cuda: backward workspace size overflows");
    if (!lla__size_add_ok(off, pairs > sw.total ? pairs : sw.total, &total))
        return lla__set_error(LLA_ERR_SHAPE, "cuda: backward workspace size overflows");
    *bytes = total;
    return LLA_OK;
}

static lla_status cuda_supports(lla_backend *self, const lla_problem *p, lla_dtype dtype,
                                lla_op op) {
    int chunk, vslice;
    size_t smem;
    if (dtype != LLA_DTYPE_F32 && dtype != LLA_DTYPE_F64 && dtype != LLA_DTYPE_BF16 &&
        dtype != LLA_DTYPE_F16)
        return lla__set_error(LLA_ERR_DTYPE, "cuda: dtype %s is not supported",
                              lla_dtype_name(dtype));
    if (op == LLA_OP_BACKWARD) return LLA_OK; /* the sweep takes every problem */
    return lla_cuda_generic_plan(lla_cuda_of(self), p, dtype, &chunk, &vslice, &smem);
}

/* Positions of a device state must leave room for `extra` more tokens per sequence
 * (per-sequence lengths from seq_offsets when use_offsets).  Copies them back in pieces
 * through the handle's page-locked buffer: no allocation. */
static lla_status check_device_positions(lla_cuda_impl *impl, const lla_problem *p,
                                         const lla_state *s, int64_t extra, int use_offsets) {
    const long long *piece = impl->pinned;
    int64_t i0, i;
    for (i0 = 0; i0 < p->batch; i0 += LLA_CUDA_PINNED_POSITIONS) {
        int64_t n = p->batch - i0 < LLA_CUDA_PINNED_POSITIONS ? p->batch - i0
                                                              : LLA_CUDA_PINNED_POSITIONS;
        LLA_CU(cudaMemcpyAsync(impl->pinned, (const int64_t *)s->memory + i0, (size_t)n * 8,
                               cudaMemcpyDeviceToHost, impl->stream));
        LLA_CU(cudaStreamSynchronize(impl->stream));
        for (i = 0; i < n; ++i) {
            int64_t b = i0 + i, pos = (int64_t)piece[i], end;
            int64_t len = use_offsets && p->seq_offsets ? p->seq_offsets[b + 1] - p->seq_offsets[b]
                                                        : extra;
            if (pos < 0)
                return lla__set_error(LLA_ERR_STATE,
                                      "state position of sequence %lld is negative (%lld)",
                                      (long long)b, (long long)pos);
            if (!lla__add_ok(pos, len, &end))
                return lla__set_error(LLA_ERR_STATE, "state position overflows");
            if (lla_num_levels(end) > p->levels)
                return lla__set_error(LLA_ERR_STATE,
                                      "sequence %lld would reach position %lld, which needs "
                                      "%lld levels; the state has %lld",
                                      (long long)b, (long long)end,
                                      (long long)lla_num_levels(end), (long long)p->levels);
        }
    }
    return LLA_OK;
}

static void fill_generic(lla_generic_params *gp, const lla_problem *p, const lla_inputs *x,
                         const lla_tensor *o) {
    memset(gp, 0, sizeof *gp);
    gp->q = view_of(&x->q);
    gp->k = view_of(&x->k);
    gp->v = view_of(&x->v);
    gp->g = view_of(&x->g);
    gp->lam = view_of(&x->lambda);
    if (p->variant == LLA_VARIANT_GDN) gp->beta = view_of(&x->beta);
    gp->o = o->data;
    gp->o_s0 = (long long)o->strides[0];
    gp->o_s1 = (long long)o->strides[1];
    gp->o_s2 = (long long)o->strides[2];
    gp->o_s3 = (long long)o->strides[3];
    gp->g_f32 = x->g.dtype == LLA_DTYPE_F32 && lla_dtype_size(o->dtype) == 2;
    gp->variant = (int)p->variant;
    gp->hierarchy = (int)p->hierarchy;
    gp->batch = p->batch;
    gp->heads = p->heads;
    gp->qk_heads = p->qk_heads;
    gp->dk = p->dk;
    gp->dv = p->dv;
    gp->levels = p->levels;
    gp->seqlen = p->seqlen;
    gp->scale = p->scale;
}

/* ---------------------------------------------------------------- compute */

static lla_status cuda_forward(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                               lla_tensor o, const lla_state *initial, lla_state *final,
                               void *workspace, size_t workspace_bytes) {
    lla_cuda_impl *impl = lla_cuda_of(self);
    lla_generic_params gp;
    size_t off_bytes = 0, smem = 0;
    char *path_area;
    lla_status st;
    int chunk = 0, vslice = 0;
    char why[160];
    (void)workspace_bytes;
    if ((st = use_device(self)) != LLA_OK) return st;
    if (initial && (st = check_device_positions(impl, p, initial, p->seqlen, 1)) != LLA_OK)
        return st;
    offsets_bytes(p, &off_bytes);
    path_area = (char *)workspace + off_bytes;
    fill_generic(&gp, p, x, &o);
    if (p->seq_offsets) {
        LLA_CU(cudaMemcpyAsync(workspace, p->seq_offsets, (size_t)(p->batch + 1) * 8,
                               cudaMemcpyHostToDevice, impl->stream));
        gp.offsets = (const long long *)workspace;
    }

    /* LLA_CUDA_PATH=generic forces the portable kernels (for differential checks). */
    const char *force = getenv("LLA_CUDA_PATH");
    if (force && strcmp(force, "generic") == 0) {
        lla__snprintf(why, sizeof why, "LLA_CUDA_PATH=generic");
    } else if (lla_cuda_mma_eligible(impl, p, o.dtype, x, &o, initial != NULL, final != NULL, why,
                                     sizeof why)) {
        lla_mma_params mp;
        memset(&mp, 0, sizeof mp);
        mp.q = gp.q;
        mp.k = gp.k;
        mp.v = gp.v;
        mp.g = gp.g;
        mp.lam = gp.lam;
        mp.o = gp.o;
        mp.o_s0 = gp.o_s0;
        mp.o_s1 = gp.o_s1;
        mp.o_s2 = gp.o_s2;
        mp.o_s3 = gp.o_s3;
        mp.g_f32 = x->g.dtype == LLA_DTYPE_F32;
        mp.is_bf16 = o.dtype == LLA_DTYPE_BF16;
        mp.batch = p->batch;
        mp.seqlen = p->seqlen;
        mp.heads = p->heads;
        mp.qk_heads = p->qk_heads;
        mp.dk = p->dk;
        mp.dv = p->dv;
        mp.levels = p->levels;
        mp.scale = (float)p->scale;
        return lla_cuda_mma_forward(impl, &mp, path_area);
    }
    lla__log("cuda: generic forward (%s)", why);

    if ((st = lla_cuda_generic_plan(impl, p, o.dtype, &chunk, &vslice, &smem)) != LLA_OK)
        return st;
    gp.chunk = chunk;
    gp.vslice = vslice;
    gp.carry = path_area;
    if (initial) {
        gp.positions = (const long long *)initial->memory;
        gp.init_values = lla__state_values(initial);
    }
    if (final) gp.final_values = lla__state_values(final);
    if ((st = lla_cuda_generic_forward(impl, o.dtype, &gp, smem)) != LLA_OK) return st;
    if (final) {
        st = lla_cuda_write_positions(impl, &gp, (long long *)final->memory);
        if (st != LLA_OK) return st;
    }
    return LLA_OK;
}

static lla_status cuda_decode_step(lla_backend *self, const lla_problem *p, lla_state *state,
                                   const lla_inputs *x, lla_tensor o) {
    lla_cuda_impl *impl = lla_cuda_of(self);
    lla_generic_params gp;
    lla_status st;
    if ((st = use_device(self)) != LLA_OK) return st;
    if ((st = check_device_positions(impl, p, state, 1, 0)) != LLA_OK) return st;
    fill_generic(&gp, p, x, &o);
    gp.positions = (const long long *)state->memory;
    gp.final_values = lla__state_values(state);
    return lla_cuda_generic_decode(impl, o.dtype, &gp, (long long *)state->memory);
}

static lla_status cuda_backward(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                                lla_tensor d_o, const lla_state *initial,
                                const lla_state *d_final, const lla_grads *grads,
                                lla_state *d_initial, void *workspace, size_t workspace_bytes) {
    lla_cuda_impl *impl = lla_cuda_of(self);
    lla_bwd_params bp;
    size_t off = 0, each = 0;
    long long longest = longest_sequence(p);
    lla_status st;
    (void)workspace_bytes;
    if ((st = use_device(self)) != LLA_OK) return st;
    if (initial && (st = check_device_positions(impl, p, initial, p->seqlen, 1)) != LLA_OK)
        return st;
    offsets_bytes(p, &off);
    if (p->seq_offsets)
        LLA_CU(cudaMemcpyAsync(workspace, p->seq_offsets, (size_t)(p->batch + 1) * 8,
                               cudaMemcpyHostToDevice, impl->stream));
    if (use_sweep(self, p, d_o.dtype, initial || d_final || d_initial)) {
        lla_sweep_params sp;
        lla_sweep_layout sw;
        char *base = (char *)workspace + off;
        lla_cuda_sweep_layout(p, d_o.dtype, &sw);
        memset(&sp, 0, sizeof sp);
        sp.q = view_of(&x->q);
        sp.k = view_of(&x->k);
        sp.v = view_of(&x->v);
        sp.g = view_of(&x->g);
        sp.lam = view_of(&x->lambda);
        sp.dout = view_of(&d_o);
        sp.gq = view_of(&grads->dq);
        sp.gk = view_of(&grads->dk);
        sp.gv = view_of(&grads->dv);
        sp.gg = view_of(&grads->dg);
        sp.glam = view_of(&grads->dlambda);
        if (p->variant == LLA_VARIANT_GDN) {
            sp.beta = view_of(&x->beta);
            sp.gbeta = view_of(&grads->dbeta);
        }
        sp.g_f32 = x->g.dtype == LLA_DTYPE_F32 && lla_dtype_size(d_o.dtype) == 2;
        sp.dg_f32 = grads->dg.dtype == LLA_DTYPE_F32 && lla_dtype_size(d_o.dtype) == 2;
        sp.variant = (int)p->variant;
        sp.hierarchy = (int)p->hierarchy;
        sp.batch = p->batch;
        sp.heads = p->heads;
        sp.qk_heads = p->qk_heads;
        sp.dk = p->dk;
        sp.dv = p->dv;
        sp.levels = p->levels;
        sp.seqlen = p->seqlen;
        sp.scale = p->scale;
        sp.offsets = p->seq_offsets ? (const long long *)workspace : NULL;
        if (initial) {
            sp.init_positions = (const long long *)initial->memory;
            sp.init_values = lla__state_values(initial);
        }
        if (d_final) sp.dfinal_values = lla__state_values(d_final);
        if (d_initial) sp.dinit_values = lla__state_values(d_initial);
        sp.slices = base + sw.slices_at;
        sp.pq = base + sw.pq_at;
        sp.pk = base + sw.pk_at;
        sp.slice = sw.slice;
        sp.n_ckpt = sw.n_ckpt;
        sp.spacing = sw.spacing;
        sp.chunk = (int)sw.chunk;
        if ((st = lla_cuda_sweep_run(impl, d_o.dtype, &sp)) != LLA_OK) return st;
        if (d_initial) { /* d_initial's positions = the initial state's (0 without one) */
            if (initial)
                LLA_CU(cudaMemcpyAsync(d_initial->memory, initial->memory, (size_t)p->batch * 8,
                                       cudaMemcpyDeviceToDevice, impl->stream));
            else
                LLA_CU(cudaMemsetAsync(d_initial->memory, 0, (size_t)p->batch * 8, impl->stream));
        }
        return LLA_OK;
    }
    backward_scratch(p, &each);
    memset(&bp, 0, sizeof bp);
    bp.q = view_of(&x->q);
    bp.k = view_of(&x->k);
    bp.v = view_of(&x->v);
    bp.g = view_of(&x->g);
    bp.lam = view_of(&x->lambda);
    bp.dout = view_of(&d_o);
    bp.gq = view_of(&grads->dq);
    bp.gk = view_of(&grads->dk);
    bp.gv = view_of(&grads->dv);
    bp.gg = view_of(&grads->dg);
    bp.glam = view_of(&grads->dlambda);
    bp.g_f32 = x->g.dtype == LLA_DTYPE_F32 && lla_dtype_size(d_o.dtype) == 2;
    bp.dg_f32 = grads->dg.dtype == LLA_DTYPE_F32 && lla_dtype_size(d_o.dtype) == 2;
    bp.hierarchy = (int)p->hierarchy;
    bp.batch = p->batch;
    bp.heads = p->heads;
    bp.qk_heads = p->qk_heads;
    bp.dk = p->dk;
    bp.dv = p->dv;
    bp.levels = p->levels;
    bp.seqlen = p->seqlen;
    bp.scale = p->scale;
    bp.G = (double *)((char *)workspace + off);
    bp.dGrow = (double *)((char *)workspace + off + each);
    bp.dGcol = (double *)((char *)workspace + off + 2 * each);
    if (p->seq_offsets) bp.offsets = (const long long *)workspace;
    return lla_cuda_backward_run(impl, d_o.dtype, &bp, longest);
}

extern "C" const lla_backend_ops lla_cuda_ops = {
    "cuda",
    LLA_API_VERSION,
    cuda_probe,
    cuda_device_name,
    cuda_open,
    cuda_close,
    cuda_supports,
    cuda_forward_workspace,
    cuda_forward,
    cuda_backward_workspace,
    cuda_backward,
    cuda_decode_step,
    LLA_MEMORY_DEVICE,
    cuda_mem_alloc,
    cuda_mem_free,
    cuda_mem_upload,
    cuda_mem_download,
    cuda_mem_zero,
    cuda_synchronize,
    NULL, /* set_threads */
    NULL, /* auto_pick: a usable GPU is always the first choice */
};
