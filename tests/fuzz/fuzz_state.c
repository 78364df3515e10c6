/*
 * fuzz_state.c - arbitrary decoder state blocks.
 *
 * A small valid problem, then a state block whose positions come from the bytes
 * (negative, zero, at and around the level capacity 2^(levels-1) - 1, INT64 extremes)
 * and whose values are raw bit patterns (NaN, inf, denormals), or finite, or well formed
 * (zero in the levels that are empty for the stored position).  Then:
 *   - lla_decode_step for a few tokens, and lla_forward (dense or packed varlen) with the
 *     block as initial state and final = NULL, a separate block or the same block;
 *     a position that does not fit the levels (or any negative one) gives LLA_ERR_STATE
 *     with every byte of state, output and workspace unchanged; otherwise the call
 *     succeeds and every position advances by the tokens consumed;
 *   - with finite values: the decode steps and the chunkwise forward from the same state
 *     give the same outputs, and (well-formed states) the same final state;
 *   - a corrupted descriptor (dtype, variant, hierarchy, sizes, bytes, NULL, misaligned
 *     memory) is refused with the documented status and nothing changed;
 *   - lla_backward from the block, with a d_final of the same garbage kind and d_initial
 *     NULL, separate, or sharing memory with initial or d_final: the same position rule,
 *     nothing written on refusal, d_initial receives the initial positions.
 */
#include "fuzz.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    OP_DECODE,
    OP_FORWARD,
    OP_VARLEN,
    OP_BOTH,
    OP_CORRUPT_DECODE,
    OP_CORRUPT_FORWARD,
    OP_BACKWARD,
    OP_COUNT
};
enum { V_GARBAGE, V_WELL_FORMED, V_FINITE };

typedef struct scase {
    lla_problem p;
    int64_t offsets[4];
    lla_dtype dtype;
    int64_t ntok;     /* tokens per sequence (dense) */
    int op, values, final_mode, corrupt;
    int64_t pos[3];
    uint64_t seed;
    uint8_t misc;
} scase;

/* Largest position whose decode fits `levels` levels. */
static int64_t capacity(int64_t levels) { return ((int64_t)1 << (levels - 1)) - 1; }

static int64_t parse_position(fz *f, int64_t cap) {
    uint8_t sel = fz_u8(f);
    if (sel < 0x60) return sel;                       /* small, valid for levels >= 8 */
    if (sel < 0xA0) return cap - (sel - 0x60);        /* at and below the capacity   */
    if (sel < 0xC0) return cap + 1 + (sel - 0xA0);    /* just past it                */
    if (sel < 0xD0) return -(int64_t)(sel - 0xBF);    /* negative                    */
    return fz_int(f, 0, 0);                           /* edges and raw values        */
}

static void parse(fz *f, scase *c) {
    lla_problem *p = &c->p;
    uint8_t shape = fz_u8(f), b;
    int64_t group;
    memset(c, 0, sizeof *c);
    lla_problem_init(p, (lla_variant)(shape & 1), (lla_hierarchy)((shape >> 1) & 1), 1 + fz_u8(f) % 3,
                     1, 1, 1, 1, 1);
    p->qk_heads = 1 + (shape >> 2) % 2;
    group = 1 + (shape >> 3) % 2;
    p->heads = p->qk_heads * group;
    p->dk = 1 + fz_u8(f) % 4;
    p->dv = 1 + fz_u8(f) % 4;
    p->levels = 1 + fz_u8(f) % 62;
    {
        uint8_t ch = fz_u8(f);
        p->chunk = ch < 0x40 ? 0 : (int64_t)1 << (ch % 5);
    }
    p->scale = 0.25 + (double)(fz_u8(f) % 8) * 0.25;
    c->dtype = (shape >> 4) & 1 ? LLA_DTYPE_F32 : LLA_DTYPE_F64;
    c->ntok = 1 + fz_u8(f) % 8;
    p->seqlen = c->ntok;
    c->op = fz_u8(f) % OP_COUNT;
    c->values = fz_u8(f) % 3;
    c->final_mode = fz_u8(f) % 3; /* 0: no final, 1: separate block, 2: the same block */
    c->corrupt = fz_u8(f);
    for (b = 0; b < 3; ++b) c->pos[b] = b < p->batch ? parse_position(f, capacity(p->levels)) : 0;
    if (c->op == OP_VARLEN) {
        c->offsets[0] = 0;
        for (b = 0; b < p->batch; ++b) c->offsets[b + 1] = c->offsets[b] + fz_u8(f) % 6;
        p->seqlen = c->offsets[p->batch] > 0 ? c->offsets[p->batch] : 1;
        if (c->offsets[p->batch] == 0) c->offsets[p->batch] = 1; /* last == seqlen */
        p->seq_offsets = c->offsets;
    }
    c->seed = fz_u64(f);
    c->misc = fz_u8(f);
}

/* ------------------------------------------------------------------ buffers */

typedef struct sdata {
    fz_tensor t[7]; /* q k v g lambda beta o */
    lla_inputs x;
} sdata;

static void make_inputs(const scase *c, sdata *d, fz_rng *r) {
    const lla_problem *p = &c->p;
    int i;
    int64_t bt = p->seq_offsets ? 1 : p->batch, b, t, h, e;
    for (i = 0; i < 7; ++i) {
        int64_t ext[4];
        double lo = -1.0, hi = 1.0;
        ext[0] = bt;
        ext[1] = p->seqlen;
        ext[2] = i < 2 ? p->qk_heads : p->heads;
        ext[3] = i < 2 ? p->dk : i == 2 || i == 6 ? p->dv : i == 4 ? p->levels : 1;
        if (!tensor_make(&d->t[i], c->dtype, ext, 0, 0, 0, 0, 0, (size_t)1 << 24)) abort();
        if (i == 6) continue;
        if (i == 1 && p->variant == LLA_VARIANT_GDN) { hi = 1.0 / sqrt((double)p->dk); lo = -hi; }
        if (i == 3) { lo = -0.5; hi = 0.0; }
        if (i == 4) { lo = 0.5; hi = 1.5; }
        if (i == 5) { lo = 0.1; hi = 0.9; }
        for (b = 0; b < ext[0]; ++b)
            for (t = 0; t < ext[1]; ++t)
                for (h = 0; h < ext[2]; ++h)
                    for (e = 0; e < ext[3]; ++e) tensor_set(&d->t[i], b, t, h, e, rng_real(r, lo, hi));
    }
    d->x.q = d->t[0].t;
    d->x.k = d->t[1].t;
    d->x.v = d->t[2].t;
    d->x.g = d->t[3].t;
    d->x.lambda = d->t[4].t;
    d->x.beta = d->t[5].t;
}

static void free_inputs(sdata *d) {
    int i;
    for (i = 0; i < 7; ++i) tensor_free(&d->t[i]);
}

static void snapshot_inputs(sdata *d) {
    int i;
    for (i = 0; i < 7; ++i) buf_snapshot(&d->t[i].buf);
}

static void inputs_unchanged(sdata *d, const char *call) {
    int i;
    for (i = 0; i < 6; ++i) FUZZ_CHECK(buf_unchanged(&d->t[i].buf), "%s changed input %d", call, i);
}

static lla_tensor at_token(const fz_tensor *x, int64_t t) {
    lla_tensor v = x->t;
    v.data = (char *)v.data + t * v.strides[1] * (int64_t)x->elem;
    return v;
}

typedef struct sblock {
    fz_buf buf;
    lla_state s;
} sblock;

static lla_dtype state_dtype(lla_dtype d) { return d == LLA_DTYPE_F64 ? LLA_DTYPE_F64 : LLA_DTYPE_F32; }

static void block_new(sblock *blk, const lla_problem *p, lla_dtype dtype) {
    size_t bytes = 0;
    FUZZ_CHECK(lla_state_bytes(p, state_dtype(dtype), &bytes) == LLA_OK, "state bytes: %s",
               lla_last_error());
    buf_alloc(&blk->buf, bytes, 0x77);
    FUZZ_CHECK(lla_state_init(fuzz_scalar(), p, state_dtype(dtype), blk->buf.mem, bytes, &blk->s) ==
                   LLA_OK,
               "state init: %s", lla_last_error());
}

static void block_copy(sblock *dst, const sblock *src) {
    buf_alloc(&dst->buf, src->buf.bytes, 0);
    memcpy(dst->buf.mem, src->buf.mem, src->buf.bytes);
    dst->s = src->s;
    dst->s.memory = dst->buf.mem;
}

/* Positions of the block as allocated (the descriptor's memory may be corrupted on
 * purpose), and as they were at the last snapshot. */
static int64_t *positions(const sblock *blk) { return (int64_t *)(void *)blk->buf.mem; }
static const int64_t *old_positions(const sblock *blk) {
    return (const int64_t *)(const void *)blk->buf.copy;
}

static size_t value_count(const lla_state *s) {
    return (size_t)(s->batch * s->heads * s->levels * s->dk * s->dv);
}

static double get_value(const lla_state *s, size_t i) {
    const char *v = (const char *)s->memory + lla_state_values_offset(s->batch);
    if (s->dtype == LLA_DTYPE_F64) {
        double d;
        memcpy(&d, v + i * 8, 8);
        return d;
    } else {
        float f;
        memcpy(&f, v + i * 4, 4);
        return (double)f;
    }
}

static void set_value(const lla_state *s, size_t i, double x) {
    char *v = (char *)s->memory + lla_state_values_offset(s->batch);
    if (s->dtype == LLA_DTYPE_F64) {
        memcpy(v + i * 8, &x, 8);
    } else {
        float f = (float)x;
        memcpy(v + i * 4, &f, 4);
    }
}

/* Level l of a state whose sequence has consumed p tokens holds a non-empty source set. */
static int level_live(lla_hierarchy h, int64_t p, int64_t l) {
    if (p <= 0) return 0;
    if (l == 0) return 1;
    return lla_level_start(h, l, p - 1) < lla_level_start(h, l - 1, p - 1);
}

/* Positions from the case, values per the values mode. */
static void fill_state(const scase *c, sblock *blk, fz_rng *r) {
    const lla_problem *p = &c->p;
    int64_t b, h, l, kv = p->dk * p->dv, i;
    for (b = 0; b < p->batch; ++b) positions(blk)[b] = c->pos[b];
    for (b = 0; b < p->batch; ++b)
        for (h = 0; h < p->heads; ++h)
            for (l = 0; l < p->levels; ++l) {
                size_t base = (size_t)(((b * p->heads + h) * p->levels + l) * kv);
                int live = c->pos[b] >= 0 && level_live(p->hierarchy, c->pos[b], l);
                for (i = 0; i < kv; ++i) {
                    double v = c->values == V_GARBAGE      ? rng_garbage(r, blk->s.dtype)
                               : c->values == V_FINITE || live ? rng_real(r, -1.0, 1.0)
                                                            : 0.0;
                    set_value(&blk->s, base + (size_t)i, v);
                }
            }
}

/* Does a sequence at position pos have room for len more tokens?  The position after them
 * must fit the levels, also for len == 0 (a stored position past the capacity is a state
 * no decoder can have produced). */
static int fits(int64_t pos, int64_t len, int64_t levels) {
    if (pos < 0) return 0;
    if (pos > INT64_MAX - len) return 0;
    return ref_num_levels(pos + len) <= levels;
}

static int64_t seq_len(const scase *c, int64_t b) {
    return c->p.seq_offsets ? c->offsets[b + 1] - c->offsets[b] : c->ntok;
}

/* ------------------------------------------------------------------ calls */

/* Decodes up to ntok tokens from blk, into o at time index t; returns the tokens done. */
static int64_t run_decode(const scase *c, sdata *d, sblock *blk, expect extra) {
    lla_problem one = c->p;
    int64_t t, b;
    one.seq_offsets = NULL;
    one.seqlen = 1;
    for (t = 0; t < c->ntok; ++t) {
        lla_inputs x;
        expect e = extra;
        lla_status st;
        int ok = 1;
        x.q = at_token(&d->t[0], t);
        x.k = at_token(&d->t[1], t);
        x.v = at_token(&d->t[2], t);
        x.g = at_token(&d->t[3], t);
        x.lambda = at_token(&d->t[4], t);
        x.beta = at_token(&d->t[5], t);
        for (b = 0; b < one.batch; ++b) ok = ok && fits(positions(blk)[b], 1, one.levels);
        if (!ok) e.must |= ST(LLA_ERR_STATE);
        snapshot_inputs(d);
        buf_snapshot(&blk->buf);
        st = check_status("lla_decode_step", lla_decode_step(fuzz_scalar(), &one, &blk->s, &x,
                                                              at_token(&d->t[6], t)), e);
        inputs_unchanged(d, "decode");
        if (st != LLA_OK) {
            FUZZ_CHECK(buf_unchanged(&blk->buf), "rejected decode (%s) changed the state",
                       lla_status_str(st));
            FUZZ_CHECK(buf_unchanged(&d->t[6].buf), "rejected decode changed the output");
            return t;
        }
        for (b = 0; b < one.batch; ++b)
            FUZZ_CHECK(positions(blk)[b] == old_positions(blk)[b] + 1,
                       "decode moved sequence %lld from %lld to %lld", (long long)b,
                       (long long)old_positions(blk)[b], (long long)positions(blk)[b]);
        FUZZ_CHECK(tensor_padding_unchanged(&d->t[6]), "decode wrote outside o");
    }
    return c->ntok;
}

/* Forward from blk (initial) into final (NULL, a separate block, or blk itself). */
static lla_status run_forward(const scase *c, sdata *d, sblock *blk, sblock *final, expect extra) {
    const lla_problem *p = &c->p;
    size_t ws_bytes = 0;
    fz_buf ws;
    expect e = extra;
    lla_status st;
    int64_t b, before[3];
    int ok = 1;
    FUZZ_CHECK(lla_forward_workspace(fuzz_scalar(), p, c->dtype, &ws_bytes) == LLA_OK,
               "workspace: %s", lla_last_error());
    buf_alloc(&ws, ws_bytes + (c->misc & 63) + 1, 0xc3);
    for (b = 0; b < p->batch; ++b) {
        before[b] = positions(blk)[b];
        ok = ok && fits(before[b], seq_len(c, b), p->levels);
    }
    if (!ok) e.must |= ST(LLA_ERR_STATE);
    snapshot_inputs(d);
    buf_snapshot(&blk->buf);
    buf_snapshot(&ws);
    if (final && final != blk) buf_snapshot(&final->buf);
    st = check_status("lla_forward", lla_forward(fuzz_scalar(), p, &d->x, d->t[6].t, &blk->s,
                                                 final ? &final->s : NULL, ws.mem + (c->misc & 63),
                                                 ws_bytes),
                      e);
    inputs_unchanged(d, "forward");
    if (st != LLA_OK) {
        FUZZ_CHECK(buf_unchanged(&blk->buf), "rejected forward (%s) changed the initial state",
                   lla_status_str(st));
        FUZZ_CHECK(buf_unchanged(&d->t[6].buf), "rejected forward changed the output");
        FUZZ_CHECK(buf_unchanged(&ws), "rejected forward changed the workspace");
        if (final && final != blk)
            FUZZ_CHECK(buf_unchanged(&final->buf), "rejected forward changed the final state");
    } else {
        FUZZ_CHECK(tensor_padding_unchanged(&d->t[6]), "forward wrote outside o");
        if (final != blk) FUZZ_CHECK(buf_unchanged(&blk->buf), "forward changed its initial state");
        if (final)
            for (b = 0; b < p->batch; ++b)
                FUZZ_CHECK(positions(final)[b] == before[b] + seq_len(c, b),
                           "final position of sequence %lld is %lld, expected %lld + %lld",
                           (long long)b, (long long)positions(final)[b], (long long)before[b],
                           (long long)seq_len(c, b));
    }
    buf_free(&ws);
    return st;
}

/* Breaks one descriptor field; returns the statuses that must come back. */
static unsigned corrupt(lla_state *s, uint8_t how) {
    switch (how % 11) {
    case 0: s->dtype = s->dtype == LLA_DTYPE_F64 ? LLA_DTYPE_F32 : LLA_DTYPE_F64; return ST(LLA_ERR_DTYPE);
    case 1: s->dtype = (lla_dtype)(how | 0x40); return ST(LLA_ERR_DTYPE);
    case 2: s->variant = (lla_variant)(1 - (int)s->variant); return ST(LLA_ERR_STATE);
    case 3: s->hierarchy = (lla_hierarchy)(1 - (int)s->hierarchy); return ST(LLA_ERR_STATE);
    case 4: s->batch += 1; return ST(LLA_ERR_STATE);
    case 5: s->heads = -s->heads; return ST(LLA_ERR_STATE);
    case 6: s->levels = s->levels == 62 ? 61 : s->levels + 1; return ST(LLA_ERR_STATE);
    case 7: s->dk += (int64_t)1 << 40; return ST(LLA_ERR_STATE);
    case 8: s->bytes -= 1 + how / 11; return ST(LLA_ERR_WORKSPACE);
    case 9: s->memory = NULL; return ST(LLA_ERR_ARG);
    default: s->memory = (char *)s->memory + 4; return ST(LLA_ERR_WORKSPACE); /* misaligned */
    }
}

/* Backward from blk: d_final from the same generator, d_initial per c->final_mode
 * (0: NULL, 1: separate, 2: blk itself) or d_final itself (misc bit 7). */
static void run_backward(const scase *c, sdata *d, sblock *blk, fz_rng *r) {
    const lla_problem *p = &c->p;
    sblock d_final, d_init;
    fz_tensor gt[6], d_o;
    lla_grads g;
    lla_state *d_initial;
    size_t ws_bytes = 0;
    fz_buf ws;
    expect e = {0, 0};
    lla_status st;
    int64_t b, before[3];
    int i, ok = 1, shares_final = c->final_mode != 0 && (c->misc & 0x80);
    int64_t bt = p->seq_offsets ? 1 : p->batch;
    scase garbage_kind = *c;

    block_new(&d_final, p, c->dtype);
    fill_state(&garbage_kind, &d_final, r);
    memset(&d_init, 0, sizeof d_init);
    if (c->final_mode == 1 && !shares_final) block_new(&d_init, p, c->dtype);
    d_initial = c->final_mode == 0 ? NULL
                : shares_final     ? &d_final.s
                : c->final_mode == 1 ? &d_init.s
                                     : &blk->s;
    for (i = 0; i < 6; ++i) {
        int64_t ext[4];
        ext[0] = bt;
        ext[1] = p->seqlen;
        ext[2] = i < 2 ? p->qk_heads : p->heads;
        ext[3] = i < 2 ? p->dk : i == 2 ? p->dv : i == 4 ? p->levels : 1;
        if (!tensor_make(&gt[i], c->dtype, ext, 0, 0, 0, 0, 0, (size_t)1 << 24)) abort();
    }
    {
        int64_t ext[4];
        int64_t bb, t, h, e2;
        ext[0] = bt;
        ext[1] = p->seqlen;
        ext[2] = p->heads;
        ext[3] = p->dv;
        if (!tensor_make(&d_o, c->dtype, ext, 0, 0, 0, 0, 0, (size_t)1 << 24)) abort();
        for (bb = 0; bb < ext[0]; ++bb)
            for (t = 0; t < ext[1]; ++t)
                for (h = 0; h < ext[2]; ++h)
                    for (e2 = 0; e2 < ext[3]; ++e2) tensor_set(&d_o, bb, t, h, e2, rng_real(r, -1, 1));
    }
    g.dq = gt[0].t;
    g.dk = gt[1].t;
    g.dv = gt[2].t;
    g.dg = gt[3].t;
    g.dlambda = gt[4].t;
    g.dbeta = gt[5].t;
    FUZZ_CHECK(lla_backward_workspace(fuzz_scalar(), p, c->dtype, &ws_bytes) == LLA_OK,
               "backward workspace: %s", lla_last_error());
    buf_alloc(&ws, ws_bytes + (c->misc & 63) + 1, 0xc3);
    for (b = 0; b < p->batch; ++b) {
        before[b] = positions(blk)[b];
        ok = ok && fits(before[b], seq_len(c, b), p->levels);
    }
    if (!ok) e.must |= ST(LLA_ERR_STATE);
    snapshot_inputs(d);
    for (i = 0; i < 6; ++i) buf_snapshot(&gt[i].buf);
    buf_snapshot(&d_o.buf);
    buf_snapshot(&blk->buf);
    buf_snapshot(&d_final.buf);
    if (d_init.buf.mem) buf_snapshot(&d_init.buf);
    buf_snapshot(&ws);
    st = check_status("lla_backward", lla_backward(fuzz_scalar(), p, &d->x, d_o.t, &blk->s, &d_final.s,
                                                   &g, d_initial, ws.mem + (c->misc & 63), ws_bytes),
                      e);
    inputs_unchanged(d, "backward");
    FUZZ_CHECK(buf_unchanged(&d_o.buf), "backward changed d_o");
    if (st != LLA_OK) {
        for (i = 0; i < 6; ++i)
            FUZZ_CHECK(buf_unchanged(&gt[i].buf), "rejected backward (%s) changed gradient %d",
                       lla_status_str(st), i);
        FUZZ_CHECK(buf_unchanged(&blk->buf) && buf_unchanged(&d_final.buf) && buf_unchanged(&ws) &&
                       (!d_init.buf.mem || buf_unchanged(&d_init.buf)),
                   "rejected backward (%s) changed a state or the workspace", lla_status_str(st));
    } else {
        for (i = 0; i < 6; ++i)
            FUZZ_CHECK(tensor_padding_unchanged(&gt[i]), "backward wrote gradient %d outside it", i);
        if (d_initial != &blk->s) FUZZ_CHECK(buf_unchanged(&blk->buf), "backward changed its initial state");
        if (d_initial != &d_final.s) FUZZ_CHECK(buf_unchanged(&d_final.buf), "backward changed d_final");
        if (d_initial) {
            const int64_t *pos = (const int64_t *)d_initial->memory;
            for (b = 0; b < p->batch; ++b)
                FUZZ_CHECK(pos[b] == before[b], "d_initial position %lld is %lld, initial had %lld",
                           (long long)b, (long long)pos[b], (long long)before[b]);
        }
    }
    for (i = 0; i < 6; ++i) tensor_free(&gt[i]);
    tensor_free(&d_o);
    buf_free(&ws);
    buf_free(&d_final.buf);
    buf_free(&d_init.buf);
}

/* ------------------------------------------------------------------ differential */

static void compare_outputs(const scase *c, const fz_tensor *a, const fz_tensor *ref, int64_t T,
                            const char *what) {
    const lla_problem *p = &c->p;
    size_t n = (size_t)(p->batch * T * p->heads * p->dv), i = 0;
    double *x = (double *)malloc(n * sizeof *x), *y = (double *)malloc(n * sizeof *y), err;
    int64_t b, t, h, d;
    if (!x || !y) abort();
    for (b = 0; b < p->batch; ++b)
        for (t = 0; t < T; ++t)
            for (h = 0; h < p->heads; ++h)
                for (d = 0; d < p->dv; ++d, ++i) {
                    x[i] = tensor_get(a, b, t, h, d);
                    y[i] = tensor_get(ref, b, t, h, d);
                }
    err = rel_norm_err(x, y, n, 1e-6 * sqrt((double)n));
    FUZZ_CHECK(err <= (c->dtype == LLA_DTYPE_F64 ? 1e-10 : 1e-4),
               "%s: relative error %g (%s, positions %lld %lld %lld, levels %lld)", what, err,
               c->dtype == LLA_DTYPE_F64 ? "f64" : "f32", (long long)c->pos[0], (long long)c->pos[1],
               (long long)c->pos[2], (long long)p->levels);
    free(x);
    free(y);
}

static void compare_states(const scase *c, const sblock *a, const sblock *ref) {
    size_t n = value_count(&a->s), i;
    double *x = (double *)malloc(n * sizeof *x), *y = (double *)malloc(n * sizeof *y), err;
    int64_t b;
    if (!x || !y) abort();
    for (b = 0; b < c->p.batch; ++b)
        FUZZ_CHECK(positions(a)[b] == positions(ref)[b], "positions differ: %lld vs %lld",
                   (long long)positions(a)[b], (long long)positions(ref)[b]);
    for (i = 0; i < n; ++i) {
        x[i] = get_value(&a->s, i);
        y[i] = get_value(&ref->s, i);
    }
    err = rel_norm_err(x, y, n, 1e-6 * sqrt((double)n));
    FUZZ_CHECK(err <= (c->dtype == LLA_DTYPE_F64 ? 1e-10 : 1e-4),
               "decode state vs forward final state: relative error %g", err);
    free(x);
    free(y);
}

/* ------------------------------------------------------------------ entry */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz f;
    scase c;
    sdata d;
    sblock blk, other, final;
    fz_rng r;
    expect none = {0, 0};

    f.data = data;
    f.size = size;
    f.at = 0;
    parse(&f, &c);
    r.s = c.seed;
    make_inputs(&c, &d, &r);
    block_new(&blk, &c.p, c.dtype);
    fill_state(&c, &blk, &r);
    memset(&final, 0, sizeof final);
    memset(&other, 0, sizeof other);

    switch (c.op) {
    case OP_DECODE:
        run_decode(&c, &d, &blk, none);
        break;
    case OP_FORWARD:
    case OP_VARLEN:
        if (c.final_mode == 1) block_new(&final, &c.p, c.dtype);
        run_forward(&c, &d, &blk, c.final_mode == 0 ? NULL : c.final_mode == 1 ? &final : &blk, none);
        break;
    case OP_BOTH: {
        /* the same state through the chunkwise forward and through decode steps */
        fz_tensor o_forward;
        lla_status st;
        int64_t done;
        block_copy(&other, &blk);
        block_new(&final, &c.p, c.dtype);
        st = run_forward(&c, &d, &blk, &final, none);
        o_forward = d.t[6];
        o_forward.buf.mem = NULL;
        buf_alloc(&o_forward.buf, d.t[6].buf.bytes, 0);
        memcpy(o_forward.buf.mem, d.t[6].buf.mem, d.t[6].buf.bytes);
        o_forward.t.data = o_forward.buf.mem + ((char *)d.t[6].t.data - (char *)d.t[6].buf.mem);
        done = run_decode(&c, &d, &other, none);
        FUZZ_CHECK((st == LLA_OK) == (done == c.ntok),
                   "forward %s but decode ran %lld of %lld tokens", lla_status_str(st),
                   (long long)done, (long long)c.ntok);
        if (st == LLA_OK && c.values != V_GARBAGE) {
            compare_outputs(&c, &d.t[6], &o_forward, c.ntok, "decode vs forward from a state");
            if (c.values == V_WELL_FORMED) compare_states(&c, &other, &final);
        }
        buf_free(&o_forward.buf);
        break;
    }
    case OP_BACKWARD:
        run_backward(&c, &d, &blk, &r);
        break;
    default: {
        /* a corrupted descriptor: refused before anything is read or written */
        lla_state saved = blk.s;
        expect e = {0, 0};
        e.must = corrupt(&blk.s, c.corrupt);
        if (c.op == OP_CORRUPT_DECODE) {
            int64_t t_save = c.ntok;
            c.ntok = 1;
            run_decode(&c, &d, &blk, e);
            c.ntok = t_save;
        } else {
            run_forward(&c, &d, &blk, (c.misc & 0x80) ? &blk : NULL, e);
        }
        blk.s = saved;
        break;
    }
    }

    buf_free(&blk.buf);
    buf_free(&other.buf);
    buf_free(&final.buf);
    free_inputs(&d);
    return 0;
}
