/*
 * omp_decode.c - the openmp backend's decode step (float32), parallel over
 * (sequence, head).
 *
 * Same arithmetic as the scalar decoder (SPEC 3, docs/algorithms.md "Decode step"):
 * cascade every non-empty set of target p-1 to its level for target p, decay the
 * non-empty levels by P_p, write c_p k_p v_p^T into level 0, read
 * y = scale sum_l lambda[p, l] S_l^T q_p.  Only non-empty levels are touched, so a step
 * costs O(K V (1 + live levels)), not O(K V levels): at positions with few set bits the
 * cost does not grow with the number of levels the state was sized for.
 * The decay and the read are one pass over each level (two for GDN: k^T S first).
 * Columns are processed in blocks of DECODE_BLOCK so the scratch vectors live on the
 * stack (the decode step has no workspace).
 */
#include "omp_internal.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define DECODE_BLOCK 512

typedef struct dec_ctx {
    const lla_problem *p;
    const lla_inputs *x;
    lla_tensor o;
    lla_state *state;
    const lla_omp_kernels *kern;
    int hier, gdn;
    int64_t K, V, NL;
    float scale;
} dec_ctx;

static float element(const lla_tensor *x, int64_t b, int64_t h, int64_t d) {
    return ((const float *)x->data)[lla__offset(x, b, 0, h, d)];
}

/* dst = src (dst empty) or dst += src; src becomes zero (its set moved away). */
static void move_level(const dec_ctx *cx, float *dst, float *src, int dst_live) {
    const int64_t n = cx->K * cx->V;
    if (dst_live)
        cx->kern->axpby(n, 1.0f, dst, 1.0f, src);
    else
        memcpy(dst, src, (size_t)n * sizeof(float));
    memset(src, 0, (size_t)n * sizeof(float));
}

static void decode_head(const dec_ctx *cx, int64_t b, int64_t h, int64_t pos) {
    const lla_omp_kernels *kn = cx->kern;
    const lla_inputs *x = cx->x;
    const int64_t K = cx->K, V = cx->V, KV = cx->K * cx->V;
    const int64_t hq = lla__qk_head(cx->p, h);
    float *S = (float *)lla__state_values(cx->state) + (b * cx->p->heads + h) * cx->NL * KV;
    const float a = (float)exp((double)element(&x->g, b, h, 0));
    const float c = cx->gdn ? element(&x->beta, b, h, 0) : 1.0f;
    float y[DECODE_BLOCK], r[DECODE_BLOCK];
    uint64_t live = 0;
    float qk = 0.0f;
    int64_t i, j, v0;
    int l;

    /* 1. cascade from target pos-1 to target pos */
    if (pos > 0)
        for (l = (int)cx->NL - 1; l >= 0; --l) {
            const int64_t first = lla__omp_level_start(cx->hier, l, pos - 1);
            const int64_t end = l == 0 ? pos : lla__omp_level_start(cx->hier, l - 1, pos - 1);
            int to;
            if (first >= end) continue;
            to = lla__omp_level(cx->hier, pos, first);
            if (to != l) move_level(cx, S + to * KV, S + l * KV, (int)((live >> to) & 1u));
            live |= (uint64_t)1 << to;
        }

    /* 3. level 0 = c k v^T (the old level 0 has moved up) */
    for (i = 0; i < K; ++i) {
        const float ck = c * element(&x->k, b, hq, i);
        float *row = S + i * V;
        qk += element(&x->q, b, hq, i) * element(&x->k, b, hq, i);
        for (j = 0; j < V; ++j) row[j] = ck * element(&x->v, b, h, j);
    }

    /* 2 + 4. decay the older levels and read all of them, a block of columns at a time */
    for (v0 = 0; v0 < V; v0 += DECODE_BLOCK) {
        const int64_t nb = V - v0 < DECODE_BLOCK ? V - v0 : DECODE_BLOCK;
        for (j = 0; j < nb; ++j) y[j] = 0.0f;
        for (l = 1; l < (int)cx->NL; ++l) {
            float *Sl = S + l * KV + v0;
            const float wl = cx->scale * element(&x->lambda, b, h, l);
            if (!((live >> l) & 1u)) continue;
            if (!cx->gdn) {
                for (i = 0; i < K; ++i)
                    kn->decay_acc(nb, Sl + i * V, a, wl * element(&x->q, b, hq, i), y);
                continue;
            }
            for (j = 0; j < nb; ++j) r[j] = 0.0f; /* r = k^T S */
            for (i = 0; i < K; ++i) kn->axpby(nb, 1.0f, r, element(&x->k, b, hq, i), Sl + i * V);
            for (i = 0; i < K; ++i)
                kn->delta_acc(nb, Sl + i * V, a, c * element(&x->k, b, hq, i), r,
                              wl * element(&x->q, b, hq, i), y);
        }
        {
            const float w0 = cx->scale * element(&x->lambda, b, h, 0) * c * qk;
            float *dst = (float *)cx->o.data + lla__offset(&cx->o, b, 0, h, 0);
            for (j = 0; j < nb; ++j)
                dst[(v0 + j) * cx->o.strides[3]] = y[j] + w0 * element(&x->v, b, h, v0 + j);
        }
    }
}

lla_status lla__omp_decode_step(lla_backend *self, const lla_problem *p, lla_state *state,
                                const lla_inputs *x, lla_tensor o) {
    dec_ctx cx;
    const lla_omp_impl *impl = (const lla_omp_impl *)self->impl;
    int64_t *positions = lla__state_positions(state);
    int64_t bh, b;
    const int64_t nbh = p->batch * p->heads;
    cx.p = p;
    cx.x = x;
    cx.o = o;
    cx.state = state;
    cx.kern = impl->kern;
    cx.hier = (int)p->hierarchy;
    cx.gdn = p->variant == LLA_VARIANT_GDN;
    cx.K = p->dk;
    cx.V = p->dv;
    cx.NL = p->levels;
    cx.scale = (float)p->scale;
#pragma omp parallel for schedule(static) num_threads(lla__omp_threads(self)) if (nbh > 1)
    for (bh = 0; bh < nbh; ++bh)
        decode_head(&cx, bh / p->heads, bh % p->heads, positions[bh / p->heads]);
    /* after all heads: every head read the same position */
    for (b = 0; b < p->batch; ++b) positions[b] += 1;
    return LLA_OK;
}
