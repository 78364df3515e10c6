/*
 * check.c - validation of descriptors, tensors and states, with overflow-checked sizes.
 *
 * Every public entry point calls these before touching memory, so a rejected call
 * changes nothing.  Each failure records a precise detail for lla_last_error().
 */
#include "check.h"

static int valid_dtype(lla_dtype d) { return lla_dtype_size(d) != 0; }

lla_status lla__check_problem(const lla_problem *p, int64_t *max_len) {
    int64_t n, longest = 0, b;
    if (!p) return lla__set_error(LLA_ERR_ARG, "problem is NULL");
    if (p->variant != LLA_VARIANT_MAMBA2 && p->variant != LLA_VARIANT_GDN)
        return lla__set_error(LLA_ERR_ARG, "unknown variant %d", (int)p->variant);
    if (p->hierarchy != LLA_HIERARCHY_WEAK && p->hierarchy != LLA_HIERARCHY_STRONG)
        return lla__set_error(LLA_ERR_ARG, "unknown hierarchy %d", (int)p->hierarchy);
    if (p->batch < 1 || p->seqlen < 1 || p->heads < 1 || p->qk_heads < 1 || p->dk < 1 ||
        p->dv < 1 || p->levels < 1)
        return lla__set_error(LLA_ERR_SHAPE,
                              "sizes must be >= 1: batch %lld seqlen %lld heads %lld "
                              "qk_heads %lld dk %lld dv %lld levels %lld",
                              (long long)p->batch, (long long)p->seqlen, (long long)p->heads,
                              (long long)p->qk_heads, (long long)p->dk, (long long)p->dv,
                              (long long)p->levels);
    if (p->heads % p->qk_heads != 0)
        return lla__set_error(LLA_ERR_SHAPE, "heads (%lld) is not a multiple of qk_heads (%lld)",
                              (long long)p->heads, (long long)p->qk_heads);
    if (p->levels > 62)
        return lla__set_error(LLA_ERR_SHAPE, "levels %lld > 62", (long long)p->levels);
    if (p->chunk < 0 || p->chunk > 1024 || (p->chunk & (p->chunk - 1)) != 0)
        return lla__set_error(LLA_ERR_SHAPE, "chunk %lld is not 0 or a power of two <= 1024",
                              (long long)p->chunk);
    if (!(p->scale == p->scale) || p->scale > 1e300 || p->scale < -1e300)
        return lla__set_error(LLA_ERR_ARG, "scale is not finite or beyond +-1e300");
    /* Every element count of every tensor, and its byte count, must fit. */
    {
        int64_t widest = p->dk > p->dv ? p->dk : p->dv, bt, count;
        size_t bytes;
        if (p->levels > widest) widest = p->levels;
        if (!lla__mul_ok(p->seq_offsets ? 1 : p->batch, p->seqlen, &bt) ||
            !lla__mul_ok(bt, p->heads, &n) || !lla__mul_ok(n, widest, &count) ||
            !lla__size_mul_ok((size_t)count, 8, &bytes) || count > (int64_t)(SIZE_MAX / 8))
            return lla__set_error(LLA_ERR_SHAPE, "tensor sizes overflow (batch %lld seqlen %lld "
                                  "heads %lld dim %lld)", (long long)p->batch,
                                  (long long)p->seqlen, (long long)p->heads, (long long)widest);
        if (!lla__mul_ok(p->dk, p->dk, &count) || !lla__mul_ok(p->dk, p->dv, &count) ||
            !lla__mul_ok(count, p->levels, &count) || !lla__mul_ok(count, p->heads, &count) ||
            !lla__mul_ok(count, p->batch, &count) || count > (int64_t)(SIZE_MAX / 16))
            return lla__set_error(LLA_ERR_SHAPE, "state size overflows");
    }
    if (p->seq_offsets) {
        const int64_t *o = p->seq_offsets;
        if (o[0] != 0)
            return lla__set_error(LLA_ERR_SHAPE, "seq_offsets[0] is %lld, not 0", (long long)o[0]);
        for (b = 0; b < p->batch; ++b) {
            if (o[b + 1] < o[b])
                return lla__set_error(LLA_ERR_SHAPE, "seq_offsets decrease at %lld",
                                      (long long)(b + 1));
            if (o[b + 1] - o[b] > longest) longest = o[b + 1] - o[b];
        }
        if (o[p->batch] != p->seqlen)
            return lla__set_error(LLA_ERR_SHAPE, "seq_offsets[batch] = %lld but seqlen = %lld",
                                  (long long)o[p->batch], (long long)p->seqlen);
    } else {
        longest = p->seqlen;
    }
    if (max_len) *max_len = longest;
    return LLA_OK;
}

lla_status lla__check_levels(const lla_problem *p, int64_t positions) {
    int64_t need = lla_num_levels(positions);
    if (positions >= 1 && p->levels < need)
        return lla__set_error(LLA_ERR_SHAPE,
                              "levels = %lld is too few for %lld positions (needs %lld = "
                              "ceil(log2 T) + 1)",
                              (long long)p->levels, (long long)positions, (long long)need);
    return LLA_OK;
}

lla_status lla__check_tensor(const char *name, const lla_tensor *t, lla_dtype dtype) {
    if (!t->data) return lla__set_error(LLA_ERR_ARG, "tensor %s: data is NULL", name);
    if (!valid_dtype(t->dtype))
        return lla__set_error(LLA_ERR_DTYPE, "tensor %s: unknown dtype %d", name, (int)t->dtype);
    if (t->dtype != dtype)
        return lla__set_error(LLA_ERR_DTYPE, "tensor %s is %s, expected %s", name,
                              lla_dtype_name(t->dtype), lla_dtype_name(dtype));
    return LLA_OK;
}

/* The element offsets of a [bt, T, heads, dim] view can be formed without overflow: the
 * sum over dimensions of |stride| * (extent - 1) elements fits in ptrdiff_t bytes.  Larger
 * strides address nothing, and computing an element's offset would overflow int64 (and
 * the pointer).  A dimension of extent 1 never multiplies its stride, so unused strides
 * (varlen strides[0], strides[3] of g and beta) may hold anything. */
static lla_status check_strides(const char *name, const lla_tensor *t, const lla_problem *p,
                                int64_t heads, int64_t dim) {
    const int64_t ext[4] = {p->seq_offsets ? 1 : p->batch, p->seqlen, heads, dim};
    const uint64_t limit = (uint64_t)PTRDIFF_MAX / lla_dtype_size(t->dtype);
    uint64_t span = 0;
    int d;
    for (d = 0; d < 4; ++d) {
        int64_t s = t->strides[d];
        uint64_t magnitude = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s, steps;
        if (ext[d] <= 1 || magnitude == 0) continue;
        steps = (uint64_t)(ext[d] - 1);
        if (magnitude > (limit - span) / steps)
            return lla__set_error(LLA_ERR_SHAPE,
                                  "tensor %s: strides (%lld, %lld, %lld, %lld) over extents "
                                  "%lld x %lld x %lld x %lld reach past the address range",
                                  name, (long long)t->strides[0], (long long)t->strides[1],
                                  (long long)t->strides[2], (long long)t->strides[3],
                                  (long long)ext[0], (long long)ext[1], (long long)ext[2],
                                  (long long)ext[3]);
        span += magnitude * steps;
    }
    return LLA_OK;
}

lla_status lla__check_output(const char *name, const lla_problem *p, const lla_tensor *t,
                             lla_dtype dtype) {
    lla_status st = lla__check_tensor(name, t, dtype);
    return st != LLA_OK ? st : check_strides(name, t, p, p->heads, p->dv);
}

lla_status lla__check_inputs(const lla_problem *p, const lla_inputs *x, lla_dtype dtype) {
    lla_status st;
    if (!x) return lla__set_error(LLA_ERR_ARG, "inputs is NULL");
    if (!valid_dtype(dtype))
        return lla__set_error(LLA_ERR_DTYPE, "unknown dtype %d", (int)dtype);
    if ((st = lla__check_tensor("q", &x->q, dtype)) != LLA_OK) return st;
    if ((st = lla__check_tensor("k", &x->k, dtype)) != LLA_OK) return st;
    if ((st = lla__check_tensor("v", &x->v, dtype)) != LLA_OK) return st;
    if ((st = lla__check_tensor("lambda", &x->lambda, dtype)) != LLA_OK) return st;
    if (x->g.dtype == LLA_DTYPE_F32 && lla_dtype_size(dtype) == 2) {
        if ((st = lla__check_tensor("g", &x->g, LLA_DTYPE_F32)) != LLA_OK) return st;
    } else if ((st = lla__check_tensor("g", &x->g, dtype)) != LLA_OK) {
        return st;
    }
    if (p->variant == LLA_VARIANT_GDN &&
        (st = lla__check_tensor("beta", &x->beta, dtype)) != LLA_OK)
        return st;
    if ((st = check_strides("q", &x->q, p, p->qk_heads, p->dk)) != LLA_OK ||
        (st = check_strides("k", &x->k, p, p->qk_heads, p->dk)) != LLA_OK ||
        (st = check_strides("v", &x->v, p, p->heads, p->dv)) != LLA_OK ||
        (st = check_strides("lambda", &x->lambda, p, p->heads, p->levels)) != LLA_OK ||
        (st = check_strides("g", &x->g, p, p->heads, 1)) != LLA_OK)
        return st;
    if (p->variant == LLA_VARIANT_GDN && (st = check_strides("beta", &x->beta, p, p->heads, 1)) != LLA_OK)
        return st;
    return LLA_OK;
}

lla_status lla__check_grads(const lla_problem *p, const lla_grads *g, lla_dtype dtype) {
    lla_status st;
    if (!g) return lla__set_error(LLA_ERR_ARG, "grads is NULL");
    if ((st = lla__check_tensor("dq", &g->dq, dtype)) != LLA_OK) return st;
    if ((st = lla__check_tensor("dk", &g->dk, dtype)) != LLA_OK) return st;
    if ((st = lla__check_tensor("dv", &g->dv, dtype)) != LLA_OK) return st;
    if ((st = lla__check_tensor("dlambda", &g->dlambda, dtype)) != LLA_OK) return st;
    if (g->dg.dtype == LLA_DTYPE_F32 && lla_dtype_size(dtype) == 2) {
        if ((st = lla__check_tensor("dg", &g->dg, LLA_DTYPE_F32)) != LLA_OK) return st;
    } else if ((st = lla__check_tensor("dg", &g->dg, dtype)) != LLA_OK) {
        return st;
    }
    if (p->variant == LLA_VARIANT_GDN &&
        (st = lla__check_tensor("dbeta", &g->dbeta, dtype)) != LLA_OK)
        return st;
    if ((st = check_strides("dq", &g->dq, p, p->qk_heads, p->dk)) != LLA_OK ||
        (st = check_strides("dk", &g->dk, p, p->qk_heads, p->dk)) != LLA_OK ||
        (st = check_strides("dv", &g->dv, p, p->heads, p->dv)) != LLA_OK ||
        (st = check_strides("dlambda", &g->dlambda, p, p->heads, p->levels)) != LLA_OK ||
        (st = check_strides("dg", &g->dg, p, p->heads, 1)) != LLA_OK)
        return st;
    if (p->variant == LLA_VARIANT_GDN &&
        (st = check_strides("dbeta", &g->dbeta, p, p->heads, 1)) != LLA_OK)
        return st;
    return LLA_OK;
}

lla_status lla__state_bytes(const lla_problem *p, lla_dtype dtype, size_t *bytes) {
    int64_t n;
    size_t total;
    if (dtype != LLA_DTYPE_F32 && dtype != LLA_DTYPE_F64)
        return lla__set_error(LLA_ERR_DTYPE, "state dtype must be f32 or f64, not %s",
                              lla_dtype_name(dtype));
    if (!lla__mul_ok(p->batch, p->heads, &n) || !lla__mul_ok(n, p->levels, &n) ||
        !lla__mul_ok(n, p->dk, &n) || !lla__mul_ok(n, p->dv, &n) ||
        !lla__size_mul_ok((size_t)n, lla_dtype_size(dtype), &total) ||
        !lla__size_add_ok(total, lla_state_values_offset(p->batch), &total))
        return lla__set_error(LLA_ERR_SHAPE, "state size overflows");
    *bytes = total;
    return LLA_OK;
}

lla_status lla__check_state(const char *name, const lla_problem *p, const lla_state *s,
                            lla_dtype dtype) {
    size_t need;
    lla_status st;
    lla_dtype want = dtype == LLA_DTYPE_F64 ? LLA_DTYPE_F64 : LLA_DTYPE_F32;
    if (!s->memory) return lla__set_error(LLA_ERR_ARG, "%s state: memory is NULL", name);
    if (((uintptr_t)s->memory & 7u) != 0)
        return lla__set_error(LLA_ERR_WORKSPACE, "%s state: memory is not 8-byte aligned", name);
    if (s->dtype != want)
        return lla__set_error(LLA_ERR_DTYPE, "%s state is %s, expected %s for %s tensors", name,
                              lla_dtype_name(s->dtype), lla_dtype_name(want),
                              lla_dtype_name(dtype));
    if (s->variant != p->variant || s->hierarchy != p->hierarchy || s->batch != p->batch ||
        s->heads != p->heads || s->levels != p->levels || s->dk != p->dk || s->dv != p->dv)
        return lla__set_error(LLA_ERR_STATE,
                              "%s state (variant %d hierarchy %d batch %lld heads %lld levels "
                              "%lld dk %lld dv %lld) does not match the problem",
                              name, (int)s->variant, (int)s->hierarchy, (long long)s->batch,
                              (long long)s->heads, (long long)s->levels, (long long)s->dk,
                              (long long)s->dv);
    if ((st = lla__state_bytes(p, want, &need)) != LLA_OK) return st;
    if (s->bytes < need)
        return lla__set_error(LLA_ERR_WORKSPACE, "%s state has %zu bytes, needs %zu", name,
                              s->bytes, need);
    return LLA_OK;
}
