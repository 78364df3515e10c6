/*
 * api.c - public entry points: validate everything, then dispatch to the backend table.
 *
 * Nothing here computes; it guarantees that a backend only ever sees a consistent
 * problem, tensors of the right dtype, matching states and a large enough, 64-byte
 * aligned workspace.  A call rejected here has touched no caller memory.
 */
#include "backend.h"
#include "check.h"

#include <string.h>
#ifndef LLA_FREESTANDING
#include <stdlib.h>
#endif

void lla_problem_init(lla_problem *p, lla_variant variant, lla_hierarchy hierarchy,
                      int64_t batch, int64_t seqlen, int64_t heads, int64_t qk_heads,
                      int64_t dk, int64_t dv) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->variant = variant;
    p->hierarchy = hierarchy;
    p->batch = batch;
    p->seqlen = seqlen;
    p->heads = heads;
    p->qk_heads = qk_heads;
    p->dk = dk;
    p->dv = dv;
    p->levels = lla_num_levels(seqlen);
    p->chunk = 0;
    p->scale = 1.0;
    p->seq_offsets = NULL;
}

lla_status lla_problem_check(const lla_problem *p) {
    int64_t longest;
    lla_status st = lla__check_problem(p, &longest);
    if (st != LLA_OK) return st;
    return lla__check_levels(p, longest);
}

lla_tensor lla_tensor_contiguous(void *data, lla_dtype dtype, int64_t seqlen, int64_t heads,
                                 int64_t dim) {
    lla_tensor t;
    int64_t row, sample;
    t.data = data;
    t.dtype = dtype;
    t.strides[3] = 1;
    t.strides[2] = dim;
    /* Negative or overflowing extents give a view with NULL data, which every call
     * rejects ("data is NULL"), instead of wrapped strides. */
    if (seqlen < 0 || !lla__mul_ok(heads, dim, &row) || !lla__mul_ok(seqlen, row, &sample)) {
        lla__set_error(LLA_ERR_SHAPE,
                       "lla_tensor_contiguous: extents %lld x %lld x %lld are negative or overflow",
                       (long long)seqlen, (long long)heads, (long long)dim);
        t.data = NULL;
        t.strides[0] = t.strides[1] = t.strides[2] = 0;
        return t;
    }
    t.strides[1] = row;
    t.strides[0] = sample;
    return t;
}

size_t lla_state_values_offset(int64_t batch) {
    if (batch < 0) batch = 0;
    if ((uint64_t)batch > (SIZE_MAX - 64) / 8) return SIZE_MAX; /* caught by size checks */
    return lla__round_up64((size_t)batch * 8u);
}

lla_status lla_state_bytes(const lla_problem *p, lla_dtype dtype, size_t *bytes) {
    lla_status st;
    if (!bytes) return lla__set_error(LLA_ERR_ARG, "bytes is NULL");
    if ((st = lla__check_problem(p, NULL)) != LLA_OK) return st;
    return lla__state_bytes(p, dtype, bytes);
}

/* ------------------------------------------------------------ memory helpers */

static lla_status need_backend(const lla_backend *b) {
    return b ? LLA_OK : lla__set_error(LLA_ERR_ARG, "backend is NULL");
}

lla_status lla_malloc(lla_backend *b, size_t bytes, void **ptr) {
    if (need_backend(b) || !ptr) return lla__set_error(LLA_ERR_ARG, "backend or ptr is NULL");
    if (bytes == 0) return lla__set_error(LLA_ERR_SHAPE, "lla_malloc of 0 bytes");
    if (b->ops.mem_alloc) return b->ops.mem_alloc(b, bytes, ptr);
#ifdef LLA_FREESTANDING
    return lla__set_error(LLA_ERR_UNSUPPORTED, "no heap in the freestanding build");
#else
    {
        /* 64-byte alignment without C11 aligned_alloc: over-allocate, store the base. */
        char *raw, *aligned;
        if (bytes > SIZE_MAX - 64 - sizeof(void *))
            return lla__set_error(LLA_ERR_NOMEM, "lla_malloc: %zu bytes overflows", bytes);
        raw = (char *)malloc(bytes + 64 + sizeof(void *));
        if (!raw) return lla__set_error(LLA_ERR_NOMEM, "cannot allocate %zu bytes", bytes);
        aligned = (char *)(((uintptr_t)(raw + sizeof(void *)) + 63u) & ~(uintptr_t)63u);
        memcpy(aligned - sizeof(void *), &raw, sizeof raw);
        *ptr = aligned;
        return LLA_OK;
    }
#endif
}

lla_status lla_free(lla_backend *b, void *ptr) {
    if (need_backend(b)) return LLA_ERR_ARG;
    if (!ptr) return LLA_OK;
    if (b->ops.mem_free) return b->ops.mem_free(b, ptr);
#ifndef LLA_FREESTANDING
    {
        char *raw;
        memcpy(&raw, (char *)ptr - sizeof(void *), sizeof raw);
        free(raw);
    }
#endif
    return LLA_OK;
}

lla_status lla_upload(lla_backend *b, void *dst, const void *src, size_t bytes) {
    if (need_backend(b) || ((!dst || !src) && bytes))
        return lla__set_error(LLA_ERR_ARG, "backend, dst or src is NULL");
    if (b->ops.mem_upload) return b->ops.mem_upload(b, dst, src, bytes);
    if (bytes) memmove(dst, src, bytes);
    return LLA_OK;
}

lla_status lla_download(lla_backend *b, void *dst, const void *src, size_t bytes) {
    if (need_backend(b) || ((!dst || !src) && bytes))
        return lla__set_error(LLA_ERR_ARG, "backend, dst or src is NULL");
    if (b->ops.mem_download) return b->ops.mem_download(b, dst, src, bytes);
    if (bytes) memmove(dst, src, bytes);
    return LLA_OK;
}

lla_status lla_memset_zero(lla_backend *b, void *dst, size_t bytes) {
    if (need_backend(b) || (!dst && bytes))
        return lla__set_error(LLA_ERR_ARG, "backend or dst is NULL");
    if (b->ops.mem_zero) return b->ops.mem_zero(b, dst, bytes);
    if (bytes) memset(dst, 0, bytes);
    return LLA_OK;
}

lla_status lla_synchronize(lla_backend *b) {
    if (need_backend(b)) return LLA_ERR_ARG;
    return b->ops.synchronize ? b->ops.synchronize(b) : LLA_OK;
}

lla_status lla_backend_set_threads(lla_backend *b, int threads) {
    if (need_backend(b)) return LLA_ERR_ARG;
    if (threads < 0) return lla__set_error(LLA_ERR_ARG, "threads %d < 0", threads);
    b->threads = threads;
    return b->ops.set_threads ? b->ops.set_threads(b, threads) : LLA_OK;
}

lla_status lla_backend_supports(lla_backend *b, const lla_problem *p, lla_dtype dtype,
                                lla_op op) {
    lla_status st;
    if (need_backend(b)) return LLA_ERR_ARG;
    if ((st = lla__check_problem(p, NULL)) != LLA_OK) return st;
    if (lla_dtype_size(dtype) == 0)
        return lla__set_error(LLA_ERR_DTYPE, "unknown dtype %d", (int)dtype);
    if (op != LLA_OP_FORWARD && op != LLA_OP_BACKWARD && op != LLA_OP_DECODE)
        return lla__set_error(LLA_ERR_ARG, "unknown op %d", (int)op);
    if ((op == LLA_OP_BACKWARD && !b->ops.backward) || (op == LLA_OP_FORWARD && !b->ops.forward) ||
        (op == LLA_OP_DECODE && !b->ops.decode_step))
        return lla__set_error(LLA_ERR_UNSUPPORTED, "backend %s does not implement this operation",
                              b->own->name);
    return b->ops.supports ? b->ops.supports(b, p, dtype, op) : LLA_OK;
}

/* ------------------------------------------------------------ states */

lla_status lla_state_init(lla_backend *b, const lla_problem *p, lla_dtype dtype, void *memory,
                          size_t bytes, lla_state *state) {
    size_t need;
    lla_status st;
    if (need_backend(b) || !state || !memory)
        return lla__set_error(LLA_ERR_ARG, "backend, memory or state is NULL");
    if ((st = lla__check_problem(p, NULL)) != LLA_OK) return st;
    if ((st = lla__state_bytes(p, dtype, &need)) != LLA_OK) return st;
    if (bytes < need)
        return lla__set_error(LLA_ERR_WORKSPACE, "state memory has %zu bytes, needs %zu", bytes,
                              need);
    if (((uintptr_t)memory & 7u) != 0)
        return lla__set_error(LLA_ERR_WORKSPACE, "state memory is not 8-byte aligned");
    if ((st = lla_memset_zero(b, memory, need)) != LLA_OK) return st;
    state->memory = memory;
    state->bytes = bytes;
    state->dtype = dtype;
    state->variant = p->variant;
    state->hierarchy = p->hierarchy;
    state->batch = p->batch;
    state->heads = p->heads;
    state->levels = p->levels;
    state->dk = p->dk;
    state->dv = p->dv;
    return LLA_OK;
}

/* Positions of a host state: each sequence's continuation must fit in the levels. */
static lla_status check_positions(lla_backend *b, const lla_problem *p, const lla_state *s,
                                  int64_t extra_per_seq, int use_offsets) {
    int64_t i;
    const int64_t *pos;
    if (b->ops.memory_kind != LLA_MEMORY_HOST) return LLA_OK; /* device backends check */
    pos = lla__state_positions(s);
    for (i = 0; i < p->batch; ++i) {
        int64_t len = use_offsets && p->seq_offsets ? p->seq_offsets[i + 1] - p->seq_offsets[i]
                                                    : extra_per_seq, end;
        if (pos[i] < 0)
            return lla__set_error(LLA_ERR_STATE, "state position of sequence %lld is negative (%lld)",
                                  (long long)i, (long long)pos[i]);
        if (!lla__add_ok(pos[i], len, &end))
            return lla__set_error(LLA_ERR_STATE, "state position overflows");
        if (lla_num_levels(end) > p->levels)
            return lla__set_error(LLA_ERR_STATE,
                                  "sequence %lld would reach position %lld, which needs %lld "
                                  "levels; the state has %lld",
                                  (long long)i, (long long)end, (long long)lla_num_levels(end),
                                  (long long)p->levels);
    }
    return LLA_OK;
}

/* Checks and aligns the workspace: *ws becomes 64-byte aligned with >= need bytes. */
static lla_status take_workspace(size_t need, void **ws, size_t ws_bytes) {
    uintptr_t a;
    size_t pad;
    if (need == 0) return LLA_OK;
    if (!*ws)
        return lla__set_error(LLA_ERR_WORKSPACE, "workspace is NULL but %zu bytes are needed",
                              need);
    a = (uintptr_t)*ws;
    pad = (size_t)((64u - (a & 63u)) & 63u);
    if (ws_bytes < pad || ws_bytes - pad < need)
        return lla__set_error(LLA_ERR_WORKSPACE,
                              "workspace has %zu bytes, needs %zu (+ up to 63 for alignment)",
                              ws_bytes, need);
    *ws = (char *)*ws + pad;
    return LLA_OK;
}

static lla_status workspace_query(lla_backend *b, const lla_problem *p, lla_dtype dtype,
                                  size_t *bytes, lla_op op) {
    lla_status st;
    size_t n = 0;
    if (need_backend(b) || !bytes) return lla__set_error(LLA_ERR_ARG, "backend or bytes is NULL");
    if ((st = lla__check_problem(p, NULL)) != LLA_OK) return st;
    if (lla_dtype_size(dtype) == 0)
        return lla__set_error(LLA_ERR_DTYPE, "unknown dtype %d", (int)dtype);
    if (op == LLA_OP_FORWARD) {
        if (b->ops.forward_workspace && (st = b->ops.forward_workspace(b, p, dtype, &n)) != LLA_OK)
            return st;
    } else if (b->ops.backward_workspace &&
               (st = b->ops.backward_workspace(b, p, dtype, &n)) != LLA_OK) {
        return st;
    }
    /* Report the alignment slack so any pointer from malloc works. */
    if (n && !lla__size_add_ok(n, 63, &n))
        return lla__set_error(LLA_ERR_SHAPE, "workspace size overflows");
    *bytes = n;
    return LLA_OK;
}

lla_status lla_forward_workspace(lla_backend *b, const lla_problem *p, lla_dtype dtype,
                                 size_t *bytes) {
    return workspace_query(b, p, dtype, bytes, LLA_OP_FORWARD);
}

lla_status lla_backward_workspace(lla_backend *b, const lla_problem *p, lla_dtype dtype,
                                  size_t *bytes) {
    return workspace_query(b, p, dtype, bytes, LLA_OP_BACKWARD);
}

lla_status lla_forward(lla_backend *b, const lla_problem *p, const lla_inputs *x, lla_tensor o,
                       const lla_state *initial, lla_state *final, void *workspace,
                       size_t workspace_bytes) {
    lla_status st;
    int64_t longest;
    size_t need = 0;
    if (need_backend(b)) return LLA_ERR_ARG;
    if ((st = lla__check_problem(p, &longest)) != LLA_OK) return st;
    if ((st = lla__check_inputs(p, x, o.dtype)) != LLA_OK) return st;
    if ((st = lla__check_output("o", p, &o, o.dtype)) != LLA_OK) return st;
    if (initial) {
        if ((st = lla__check_state("initial", p, initial, o.dtype)) != LLA_OK) return st;
        if ((st = check_positions(b, p, initial, p->seqlen, 1)) != LLA_OK) return st;
    } else if ((st = lla__check_levels(p, longest)) != LLA_OK) {
        return st;
    }
    if (final && (st = lla__check_state("final", p, final, o.dtype)) != LLA_OK) return st;
    if ((st = lla_backend_supports(b, p, o.dtype, LLA_OP_FORWARD)) != LLA_OK) return st;
    if (b->ops.forward_workspace && (st = b->ops.forward_workspace(b, p, o.dtype, &need)) != LLA_OK)
        return st;
    if ((st = take_workspace(need, &workspace, workspace_bytes)) != LLA_OK) return st;
    lla__clear_error();
    return b->ops.forward(b, p, x, o, initial, final, workspace, need);
}

lla_status lla_backward(lla_backend *b, const lla_problem *p, const lla_inputs *x,
                        lla_tensor d_o, const lla_state *initial, const lla_state *d_final,
                        const lla_grads *grads, lla_state *d_initial, void *workspace,
                        size_t workspace_bytes) {
    lla_status st;
    int64_t longest;
    size_t need = 0;
    if (need_backend(b)) return LLA_ERR_ARG;
    if ((st = lla__check_problem(p, &longest)) != LLA_OK) return st;
    if ((st = lla__check_inputs(p, x, d_o.dtype)) != LLA_OK) return st;
    if ((st = lla__check_output("d_o", p, &d_o, d_o.dtype)) != LLA_OK) return st;
    if ((st = lla__check_grads(p, grads, d_o.dtype)) != LLA_OK) return st;
    if (initial) {
        if ((st = lla__check_state("initial", p, initial, d_o.dtype)) != LLA_OK) return st;
        if ((st = check_positions(b, p, initial, p->seqlen, 1)) != LLA_OK) return st;
    } else if ((st = lla__check_levels(p, longest)) != LLA_OK) {
        return st;
    }
    if (d_final && (st = lla__check_state("d_final", p, d_final, d_o.dtype)) != LLA_OK) return st;
    if (d_initial) {
        if (!initial)
            return lla__set_error(LLA_ERR_ARG, "d_initial requires an initial state");
        if ((st = lla__check_state("d_initial", p, d_initial, d_o.dtype)) != LLA_OK) return st;
    }
    if ((st = lla_backend_supports(b, p, d_o.dtype, LLA_OP_BACKWARD)) != LLA_OK) return st;
    if (b->ops.backward_workspace &&
        (st = b->ops.backward_workspace(b, p, d_o.dtype, &need)) != LLA_OK)
        return st;
    if ((st = take_workspace(need, &workspace, workspace_bytes)) != LLA_OK) return st;
    lla__clear_error();
    return b->ops.backward(b, p, x, d_o, initial, d_final, grads, d_initial, workspace, need);
}

lla_status lla_decode_step(lla_backend *b, const lla_problem *p, lla_state *state,
                           const lla_inputs *x, lla_tensor o) {
    lla_status st;
    lla_problem one;
    if (need_backend(b)) return LLA_ERR_ARG;
    if (!p || !state) return lla__set_error(LLA_ERR_ARG, "problem or state is NULL");
    one = *p; /* a decode step is a batch of one-token sequences */
    one.seqlen = 1;
    one.seq_offsets = NULL;
    if ((st = lla__check_problem(&one, NULL)) != LLA_OK) return st;
    if ((st = lla__check_inputs(&one, x, o.dtype)) != LLA_OK) return st;
    if ((st = lla__check_output("o", &one, &o, o.dtype)) != LLA_OK) return st;
    if ((st = lla__check_state("decode", &one, state, o.dtype)) != LLA_OK) return st;
    if ((st = check_positions(b, &one, state, 1, 0)) != LLA_OK) return st;
    if ((st = lla_backend_supports(b, &one, o.dtype, LLA_OP_DECODE)) != LLA_OK) return st;
    lla__clear_error();
    return b->ops.decode_step(b, &one, state, x, o);
}
