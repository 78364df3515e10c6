/*
 * decode_impl.h - the decode step's state arithmetic, written once for both state types.
 *
 * decode.c includes this file twice, with
 *     REAL     float or double: the element type of the state and of the tensors (the
 *              scalar backend pairs F32 tensors with an F32 state, F64 with F64);
 *     EXP      expf or exp.  The float instance calls nothing else from libm and does
 *              all arithmetic in float, so it stays on a single-precision FPU (Cortex-M4);
 *     NAME(n)  n ## _f32 or n ## _f64.
 *
 * Per (sequence, head) and token p (docs/algorithms.md, "Decode step"):
 *   1. cascade: every non-empty level set of target p-1 moves whole to its level for
 *      target p (sets are contiguous source ranges that nest, so a set never splits and
 *      sets only move up; going from the top level down never overwrites a set that has
 *      not moved yet);
 *   2. decay every non-empty level by P_p: Mamba-2 S *= a_p, GDN S = a_p (S - beta k (k^T S));
 *   3. write c_p k_p v_p^T into level 0;
 *   4. y = scale * sum_l lambda[p, l] S_l^T q_p.
 * No scratch memory: the head's output vector (V entries, written last anyway) holds k^T S
 * during the GDN decay and then accumulates y, so every pass over S is row-major.  The
 * output must therefore not overlap the inputs or the state (the API never promises that).
 */

/* dst = src (dst_live == 0) or dst += src, then src = 0 (its set has moved away). */
static void NAME(move_level)(REAL *dst, REAL *src, int64_t n, int dst_live) {
    int64_t i;
    for (i = 0; i < n; ++i) {
        dst[i] = dst_live ? dst[i] + src[i] : src[i];
        src[i] = (REAL)0;
    }
}

/* S: this head's levels x dk x dv state, relative to target pos-1 (empty when pos == 0). */
static void NAME(decode_head)(const decode_shape *sh, REAL *S, int64_t pos,
                              const decode_token *tok, REAL *out, int64_t out_step) {
    const int64_t K = sh->dk, V = sh->dv, KV = sh->dk * sh->dv;
    const REAL *q = (const REAL *)tok->q, *k = (const REAL *)tok->k;
    const REAL *v = (const REAL *)tok->v, *lam = (const REAL *)tok->lambda;
    const REAL a = EXP(*(const REAL *)tok->g);
    const REAL c = sh->gdn ? *(const REAL *)tok->beta : (REAL)1;
    const REAL scale = (REAL)sh->scale;
    uint64_t live = 0; /* bit l: level l holds a non-empty set */
    int l;
    int64_t i, j;

    /* 1. cascade from target pos-1 to target pos */
    if (pos > 0) {
        for (l = sh->levels - 1; l >= 0; --l) {
            int64_t first = lla__level_start(sh->hierarchy, l, pos - 1);
            int64_t end = l == 0 ? pos : lla__level_start(sh->hierarchy, l - 1, pos - 1);
            int to;
            if (first >= end) continue; /* empty set */
            to = lla__level(sh->hierarchy, pos, first);
            if (to != l) NAME(move_level)(S + to * KV, S + l * KV, KV, (int)((live >> to) & 1u));
            live |= (uint64_t)1 << to;
        }
    }

    /* 2. decay by P_pos */
    for (l = 1; l < sh->levels; ++l) {
        REAL *Sl = S + l * KV;
        if (!((live >> l) & 1u)) continue;
        if (!sh->gdn) {
            for (i = 0; i < KV; ++i) Sl[i] *= a;
            continue;
        }
        /* S = a (S - beta k (k^T S)); out holds k^T S for now (row-major passes) */
        for (j = 0; j < V; ++j) out[j * out_step] = (REAL)0;
        for (i = 0; i < K; ++i) {
            const REAL ki = k[i * tok->k_step];
            for (j = 0; j < V; ++j) out[j * out_step] += ki * Sl[i * V + j];
        }
        for (i = 0; i < K; ++i) {
            const REAL cki = c * k[i * tok->k_step];
            for (j = 0; j < V; ++j) Sl[i * V + j] = a * (Sl[i * V + j] - cki * out[j * out_step]);
        }
    }

    /* 3. the token itself at level 0 */
    for (i = 0; i < K; ++i) {
        REAL ck = c * k[i * tok->k_step];
        for (j = 0; j < V; ++j) S[i * V + j] = ck * v[j * tok->v_step];
    }
    live |= 1u;

    /* 4. output, accumulated in place */
    for (j = 0; j < V; ++j) out[j * out_step] = (REAL)0;
    for (l = 0; l < sh->levels; ++l) {
        const REAL *Sl = S + l * KV;
        if (!((live >> l) & 1u)) continue;
        for (i = 0; i < K; ++i) {
            const REAL w = scale * lam[l * tok->lambda_step] * q[i * tok->q_step];
            for (j = 0; j < V; ++j) out[j * out_step] += w * Sl[i * V + j];
        }
    }
}

static void NAME(decode_all)(const lla_problem *p, lla_state *state, const lla_inputs *x,
                             lla_tensor o) {
    decode_shape sh;
    int64_t *positions = lla__state_positions(state);
    REAL *values = (REAL *)lla__state_values(state);
    int64_t b, h, head_size;
    sh.hierarchy = p->hierarchy;
    sh.gdn = p->variant == LLA_VARIANT_GDN;
    sh.levels = (int)p->levels;
    sh.dk = p->dk;
    sh.dv = p->dv;
    sh.scale = p->scale;
    head_size = p->levels * p->dk * p->dv;
    for (b = 0; b < p->batch; ++b) {
        for (h = 0; h < p->heads; ++h) {
            int64_t hq = lla__qk_head(p, h);
            decode_token tok;
            tok.q = (const REAL *)x->q.data + lla__offset(&x->q, b, 0, hq, 0);
            tok.k = (const REAL *)x->k.data + lla__offset(&x->k, b, 0, hq, 0);
            tok.v = (const REAL *)x->v.data + lla__offset(&x->v, b, 0, h, 0);
            tok.lambda = (const REAL *)x->lambda.data + lla__offset(&x->lambda, b, 0, h, 0);
            tok.g = (const REAL *)x->g.data + lla__offset(&x->g, b, 0, h, 0);
            tok.beta = sh.gdn ? (const REAL *)x->beta.data + lla__offset(&x->beta, b, 0, h, 0)
                              : NULL;
            tok.q_step = x->q.strides[3];
            tok.k_step = x->k.strides[3];
            tok.v_step = x->v.strides[3];
            tok.lambda_step = x->lambda.strides[3];
            NAME(decode_head)(&sh, values + (b * p->heads + h) * head_size, positions[b], &tok,
                              (REAL *)o.data + lla__offset(&o, b, 0, h, 0), o.strides[3]);
        }
        positions[b] += 1; /* after all heads: every head read the same position */
    }
}
