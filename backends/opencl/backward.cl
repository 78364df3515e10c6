/*
 * backward.cl - the opencl backend's backward (appended to kernels.cl at build time, so
 * the level helpers and AT() of that file are in scope).
 *
 * A direct port of the scalar backend's chunkwise backward (backends/scalar/backward.c,
 * docs/algorithms.md section 7), in float32: one work-item per (sequence, head) runs the
 * whole checkpointed reverse sweep of that pair, with every buffer in its own slice of
 * the workspace.  dv, dg, dlambda and dbeta belong to the value head and are stored
 * directly; dq and dk are per value head partials in the workspace, summed over the heads
 * of each q/k group by lla_backward_group_sum afterwards (work-items never write the same
 * element).  Sequential per pair: this is the correct, simple version, not a fast one.
 */

/* Chunk buffers of one work-item (all in its workspace slice; see lla_bw_carve). */
typedef struct lla_bw_chunk {
    int n;      /* tokens in the chunk */
    long begin; /* absolute position of its first token */
    __global float *q, *k, *v, *dout, *lam, *gam, *coef, *u, *kap;
    __global float *dq, *dk, *dv, *dlam, *dgam, *dbeta, *du, *dkap;
    __global float *pi, *e, *f, *ds, *walk, *tk, *tv, *tv2;
} lla_bw_chunk;

/* One strided input tensor. */
typedef struct lla_bw_tensor {
    __global const float *p;
    long4 s;
} lla_bw_tensor;

/* What one (sequence, head) works on. */
typedef struct lla_bw_seq {
    lla_bw_tensor q, k, v, g, lam, beta, dout;
    int hier, gdn, K, V, NL, C;
    long tb, t0, pos0, len;
    int h, hq;
    float scale;
} lla_bw_seq;

/* First source of level L of the sets at target `target` (level 0: the target itself
 * when with_self), or -1 if that set is empty. */
long lla_bw_set_first(int hier, long target, int L, int with_self) {
    long lo, hi;
    if (L == 0) return with_self ? target : -1;
    lo = lla_level_start(hier, L, target);
    hi = lla_level_start(hier, L - 1, target);
    return lo < hi ? lo : -1;
}

float lla_bw_dot(__global const float *a, __global const float *b, int n) {
    float s = 0.0f;
    int i;
    for (i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

/* vec <- R_r vec = vec - beta_r k_r (k_r . vec) */
void lla_bw_apply_r_vec(const lla_bw_chunk *cb, int K, int r, __global float *vec) {
    __global const float *kr = cb->k + (long)r * K;
    const float c = cb->coef[r] * lla_bw_dot(kr, vec, K);
    int d;
    for (d = 0; d < K; ++d) vec[d] -= c * kr[d];
}

/* M (K x V) <- R_r M */
void lla_bw_apply_r_mat(const lla_bw_chunk *cb, int K, int V, int r, __global float *m) {
    __global const float *kr = cb->k + (long)r * K;
    int a, b;
    for (b = 0; b < V; ++b) cb->tv[b] = 0.0f;
    for (a = 0; a < K; ++a)
        for (b = 0; b < V; ++b) cb->tv[b] += kr[a] * m[(long)a * V + b];
    for (a = 0; a < K; ++a) {
        const float c = cb->coef[r] * kr[a];
        for (b = 0; b < V; ++b) m[(long)a * V + b] -= c * cb->tv[b];
    }
}

/* Gradients of y = R_r x w.r.t. beta_r and k_r for incoming dy. */
void lla_bw_r_grads(const lla_bw_chunk *cb, int K, int r, __global const float *x,
                    __global const float *dy) {
    __global const float *kr = cb->k + (long)r * K;
    __global float *dkr = cb->dk + (long)r * K;
    const float kx = lla_bw_dot(kr, x, K), kd = lla_bw_dot(kr, dy, K);
    int d;
    cb->dbeta[r] -= kx * kd;
    for (d = 0; d < K; ++d) dkr[d] -= cb->coef[r] * (kx * dy[d] + kd * x[d]);
}

void lla_bw_copy(__global float *dst, __global const float *src, long n) {
    long i;
    for (i = 0; i < n; ++i) dst[i] = src[i];
}

void lla_bw_zero(__global float *dst, long n) {
    long i;
    for (i = 0; i < n; ++i) dst[i] = 0.0f;
}

long lla_bw_chunk_count(const lla_bw_seq *s) {
    return (s->pos0 + s->len - 1) / s->C - s->pos0 / s->C + 1;
}

/* Absolute [begin, end) of chunk c, and the target the state after it is aimed at: the
 * next chunk's first token, or after the last chunk the last token itself. */
void lla_bw_chunk_span(const lla_bw_seq *s, long c, long *begin, long *end, long *next) {
    const long first = s->pos0 / s->C, last = s->pos0 + s->len;
    *begin = c == 0 ? s->pos0 : (first + c) * s->C;
    *end = (first + c + 1) * s->C;
    if (*end > last) *end = last;
    *next = *end == last ? last - 1 : *end;
}

/* Loads chunk [begin, end) (and d_o, q, lambda when backward); gam = chunk-local cumsum
 * of g; kap_j = R_{n-1} ... R_{j+1} k_j. */
void lla_bw_load_chunk(const lla_bw_seq *s, lla_bw_chunk *cb, long begin, long end,
                       int backward) {
    const int K = s->K, V = s->V, n = (int)(end - begin);
    float g_sum = 0.0f;
    int i, d, r;
    cb->n = n;
    cb->begin = begin;
    for (i = 0; i < n; ++i) {
        const long t = s->t0 + (begin - s->pos0) + i;
        for (d = 0; d < K; ++d) cb->k[(long)i * K + d] = s->k.p[AT(s->k.s, s->tb, t, s->hq, d)];
        for (d = 0; d < V; ++d) cb->v[(long)i * V + d] = s->v.p[AT(s->v.s, s->tb, t, s->h, d)];
        g_sum += s->g.p[AT(s->g.s, s->tb, t, s->h, 0)];
        cb->gam[i] = g_sum;
        cb->coef[i] = s->gdn ? s->beta.p[AT(s->beta.s, s->tb, t, s->h, 0)] : 1.0f;
        if (backward) {
            for (d = 0; d < K; ++d)
                cb->q[(long)i * K + d] = s->q.p[AT(s->q.s, s->tb, t, s->hq, d)];
            for (d = 0; d < V; ++d)
                cb->dout[(long)i * V + d] = s->dout.p[AT(s->dout.s, s->tb, t, s->h, d)];
            for (d = 0; d < s->NL; ++d)
                cb->lam[(long)i * s->NL + d] = s->lam.p[AT(s->lam.s, s->tb, t, s->h, d)];
        }
    }
    for (i = 0; i < n; ++i) {
        __global float *kap = cb->kap + (long)i * K;
        lla_bw_copy(kap, cb->k + (long)i * K, K);
        if (s->gdn)
            for (r = i + 1; r < n; ++r) lla_bw_apply_r_vec(cb, K, r, kap);
    }
}

/* State entering the chunk -> state after it, aimed at next. */
void lla_bw_advance(const lla_bw_seq *s, lla_bw_chunk *cb, __global float *E, long next) {
    const int K = s->K, V = s->V, n = cb->n;
    const long KV = (long)K * V;
    const float decay = exp(cb->gam[n - 1]);
    long a;
    int L, j, r, b;
    for (L = 0; L < s->NL; ++L) {
        __global float *m = E + L * KV;
        if (lla_bw_set_first(s->hier, cb->begin, L, 0) < 0) continue;
        if (s->gdn)
            for (r = 0; r < n; ++r) lla_bw_apply_r_mat(cb, K, V, r, m);
        for (a = 0; a < KV; ++a) m[a] *= decay;
    }
    for (L = s->NL - 1; L >= 0; --L) { /* cascade; sets only move up, so go downwards */
        const long first = lla_bw_set_first(s->hier, cb->begin, L, 0);
        int to;
        if (first < 0) continue;
        to = lla_level(s->hier, next, first);
        if (to != L) {
            __global float *src = E + L * KV, *dst = E + to * KV;
            for (a = 0; a < KV; ++a) {
                dst[a] += src[a];
                src[a] = 0.0f;
            }
        }
    }
    for (j = 0; j < n; ++j) {
        const int to = lla_level(s->hier, next, cb->begin + j);
        const float c = cb->coef[j] * exp(cb->gam[n - 1] - cb->gam[j]);
        __global float *dst = E + to * KV;
        for (a = 0; a < K; ++a) {
            const float ka = c * cb->kap[(long)j * K + a];
            for (b = 0; b < V; ++b) dst[(long)a * V + b] += ka * cb->v[(long)j * V + b];
        }
    }
}

/* Backward of one chunk.  E: state entering the chunk.  dE: on entry the gradient w.r.t.
 * the state after the chunk (aimed at next), on exit the gradient w.r.t. E. */
void lla_bw_chunk_backward(const lla_bw_seq *s, lla_bw_chunk *cb, __global const float *E,
                           __global float *dE, long next) {
    const int K = s->K, V = s->V, NL = s->NL, n = cb->n;
    const long KV = (long)K * V, B = cb->begin;
    const float gam_last = cb->gam[n - 1], decay = exp(gam_last), scale = s->scale;
    int i, j, L, r, a, b;
    long x;

    lla_bw_zero(cb->dq, (long)n * K);
    lla_bw_zero(cb->dk, (long)n * K);
    lla_bw_zero(cb->du, (long)n * K);
    lla_bw_zero(cb->dv, (long)n * V);
    lla_bw_zero(cb->dlam, (long)n * NL);
    lla_bw_zero(cb->dgam, n);
    lla_bw_zero(cb->dbeta, n);

    /* 1. Writes of the chunk's tokens: E'[L_j] += c_j exp(gam_last - gam_j) kap_j v_j^T. */
    for (j = 0; j < n; ++j) {
        __global const float *D = dE + lla_level(s->hier, next, B + j) * KV;
        __global const float *kap = cb->kap + (long)j * K, *vj = cb->v + (long)j * V;
        const float e = exp(gam_last - cb->gam[j]);
        float t;
        for (b = 0; b < V; ++b) cb->tv[b] = 0.0f; /* D^T k~_j */
        for (a = 0; a < K; ++a) {
            const float ka = e * kap[a];
            float acc = 0.0f;
            for (b = 0; b < V; ++b) {
                cb->tv[b] += D[(long)a * V + b] * ka;
                acc += D[(long)a * V + b] * vj[b];
            }
            cb->tk[a] = cb->coef[j] * acc; /* d k~_j = c_j D v_j */
        }
        for (b = 0; b < V; ++b) cb->dv[(long)j * V + b] += cb->coef[j] * cb->tv[b];
        if (s->gdn) cb->dbeta[j] += lla_bw_dot(vj, cb->tv, V);
        t = e * lla_bw_dot(cb->tk, kap, K); /* d k~ . k~ */
        if (j != n - 1) { /* the last token's term cancels exactly: skip it, because with
                           * fma contraction the two updates would leave a residual */
            cb->dgam[n - 1] += t;
            cb->dgam[j] -= t;
        }
        for (a = 0; a < K; ++a) cb->dkap[(long)j * K + a] = e * cb->tk[a];
    }
    /* 2. kap_j = R_{n-1} ... R_{j+1} k_j, backwards. */
    for (j = 0; j < n; ++j) {
        __global float *d = cb->tk;
        lla_bw_copy(d, cb->dkap + (long)j * K, K);
        if (s->gdn && j + 1 < n) {
            __global float *z = cb->walk; /* z[m] = R_{j+m} ... R_{j+1} k_j, z[0] = k_j */
            lla_bw_copy(z, cb->k + (long)j * K, K);
            for (r = j + 1; r < n; ++r) {
                lla_bw_copy(z + (long)(r - j) * K, z + (long)(r - j - 1) * K, K);
                lla_bw_apply_r_vec(cb, K, r, z + (long)(r - j) * K);
            }
            for (r = n - 1; r > j; --r) {
                lla_bw_r_grads(cb, K, r, z + (long)(r - j - 1) * K, d);
                lla_bw_apply_r_vec(cb, K, r, d);
            }
        }
        for (a = 0; a < K; ++a) cb->dk[(long)j * K + a] += d[a];
    }
    /* 3. Cascade, transposed: each old set takes the gradient of the set it moved into,
     * times the chunk decay (new levels are >= old ones, so ascending order is safe). */
    for (L = 0; L < NL; ++L) {
        const long first = lla_bw_set_first(s->hier, B, L, 0);
        __global float *dst = dE + L * KV;
        if (first < 0) {
            lla_bw_zero(dst, KV);
        } else {
            __global const float *src = dE + lla_level(s->hier, next, first) * KV;
            for (x = 0; x < KV; ++x) dst[x] = decay * src[x];
        }
    }
    /* 4. GDN: the transition R_{n-1} ... R_0 applied to every set. */
    if (s->gdn) {
        for (r = 0; r < n; ++r) { /* pi_r = R_0 ... R_{r-1} k_r */
            __global float *pr = cb->pi + (long)r * K;
            lla_bw_copy(pr, cb->k + (long)r * K, K);
            for (i = r - 1; i >= 0; --i) lla_bw_apply_r_vec(cb, K, i, pr);
        }
        lla_bw_zero(cb->e, (long)n * K);
        lla_bw_zero(cb->f, (long)n * K);
        for (L = 0; L < NL; ++L) {
            __global const float *EL = E + L * KV, *dY = dE + L * KV;
            if (lla_bw_set_first(s->hier, B, L, 0) < 0) continue;
            for (r = 0; r < n; ++r) {
                /* alpha = E_L^T pi_r (input side), delta = dY_L^T kap_r (output side) */
                __global const float *pr = cb->pi + (long)r * K, *kr = cb->kap + (long)r * K;
                __global float *er = cb->e + (long)r * K, *fr = cb->f + (long)r * K;
                for (b = 0; b < V; ++b) cb->tv[b] = cb->tv2[b] = 0.0f;
                for (a = 0; a < K; ++a)
                    for (b = 0; b < V; ++b) {
                        cb->tv[b] += EL[(long)a * V + b] * pr[a];
                        cb->tv2[b] += dY[(long)a * V + b] * kr[a];
                    }
                cb->dbeta[r] -= lla_bw_dot(cb->tv, cb->tv2, V);
                for (a = 0; a < K; ++a) {
                    er[a] += lla_bw_dot(EL + (long)a * V, cb->tv2, V);
                    fr[a] += lla_bw_dot(dY + (long)a * V, cb->tv, V);
                }
            }
        }
        for (r = 0; r < n; ++r) {
            /* dk_r -= beta_r (R_{r-1}..R_0 e_r + R_{r+1}..R_{n-1} f_r) */
            __global float *er = cb->e + (long)r * K, *fr = cb->f + (long)r * K;
            for (i = 0; i < r; ++i) lla_bw_apply_r_vec(cb, K, i, er);
            for (i = n - 1; i > r; --i) lla_bw_apply_r_vec(cb, K, i, fr);
            for (a = 0; a < K; ++a) cb->dk[(long)r * K + a] -= cb->coef[r] * (er[a] + fr[a]);
        }
        for (L = 0; L < NL; ++L) {
            if (lla_bw_set_first(s->hier, B, L, 0) < 0) continue;
            for (r = n - 1; r >= 0; --r) lla_bw_apply_r_mat(cb, K, V, r, dE + L * KV);
        }
    }
    /* 5. The chunk decay's gate: d gam_last += <dE_chain, E>. */
    for (L = 0; L < NL; ++L)
        if (lla_bw_set_first(s->hier, B, L, 0) >= 0) {
            float acc = 0.0f;
            for (x = 0; x < KV; ++x) acc += dE[L * KV + x] * E[L * KV + x];
            cb->dgam[n - 1] += acc;
        }
    /* 6. u_i = scale exp(gam_i) R_0 ... R_i q_i. */
    for (i = 0; i < n; ++i) {
        __global float *ui = cb->u + (long)i * K;
        const float e = exp(cb->gam[i]);
        for (a = 0; a < K; ++a) ui[a] = scale * cb->q[(long)i * K + a];
        if (s->gdn)
            for (j = i; j >= 0; --j) lla_bw_apply_r_vec(cb, K, j, ui);
        for (a = 0; a < K; ++a) ui[a] *= e;
    }
    /* 7. Reads of the entering state. */
    for (L = 0; L < NL; ++L) {
        const long first = lla_bw_set_first(s->hier, B, L, 0);
        __global const float *EL = E + L * KV;
        __global float *dEL = dE + L * KV;
        if (first < 0) continue;
        for (i = 0; i < n; ++i) {
            const int lv = lla_level(s->hier, B + i, first);
            const float lam = cb->lam[(long)i * NL + lv];
            __global const float *ui = cb->u + (long)i * K, *doi = cb->dout + (long)i * V;
            for (a = 0; a < K; ++a) cb->tk[a] = lla_bw_dot(EL + (long)a * V, doi, V);
            cb->dlam[(long)i * NL + lv] += lla_bw_dot(ui, cb->tk, K);
            for (a = 0; a < K; ++a) {
                const float c = lam * ui[a];
                cb->du[(long)i * K + a] += lam * cb->tk[a];
                for (b = 0; b < V; ++b) dEL[(long)a * V + b] += c * doi[b];
            }
        }
    }
    /* 8. Intra-chunk pairs and u, by reverse mode through the walk
     * w_i = scale q_i, w_{j-1} = R_j w_j (walk[j+1] = w_j, walk[0] = w_{-1}). */
    for (i = 0; i < n; ++i) {
        __global float *w = cb->walk, *d = cb->tk;
        __global const float *doi = cb->dout + (long)i * V;
        const float ei = exp(cb->gam[i]);
        for (a = 0; a < K; ++a) w[(long)(i + 1) * K + a] = scale * cb->q[(long)i * K + a];
        for (j = i; j >= 0 && s->gdn; --j) { /* Mamba-2: every w_j is scale q_i */
            lla_bw_copy(w + (long)j * K, w + (long)(j + 1) * K, K);
            lla_bw_apply_r_vec(cb, K, j, w + (long)j * K);
        }
        for (j = 0; j <= i; ++j) {
            __global const float *wj = w + (long)(s->gdn ? j + 1 : i + 1) * K;
            __global const float *vj = cb->v + (long)j * V;
            const int lv = lla_level(s->hier, B + i, B + j);
            const float lam = cb->lam[(long)i * NL + lv], e = exp(cb->gam[i] - cb->gam[j]);
            const float sij = lla_bw_dot(wj, cb->k + (long)j * K, K);
            const float A = lam * cb->coef[j] * e * sij, dA = lla_bw_dot(doi, vj, V);
            for (b = 0; b < V; ++b) cb->dv[(long)j * V + b] += A * doi[b];
            cb->dlam[(long)i * NL + lv] += dA * cb->coef[j] * e * sij;
            if (s->gdn) cb->dbeta[j] += dA * lam * e * sij;
            if (i != j) {
                /* the diagonal term cancels exactly; skipped because compilers that contract
                 * across statements (NVIDIA's OpenCL) would leave an fma residual */
                const float dAA = dA * A;
                cb->dgam[i] += dAA;
                cb->dgam[j] -= dAA;
            }
            cb->ds[j] = dA * lam * cb->coef[j] * e;
        }
        for (a = 0; a < K; ++a) d[a] = ei * cb->du[(long)i * K + a];
        cb->dgam[i] += lla_bw_dot(cb->du + (long)i * K, cb->u + (long)i * K, K);
        for (j = 0; j <= i; ++j) {
            __global const float *wj = w + (long)(s->gdn ? j + 1 : i + 1) * K;
            if (s->gdn) {
                lla_bw_r_grads(cb, K, j, wj, d);
                lla_bw_apply_r_vec(cb, K, j, d);
            }
            for (a = 0; a < K; ++a) {
                d[a] += cb->ds[j] * cb->k[(long)j * K + a];
                cb->dk[(long)j * K + a] += cb->ds[j] * wj[a];
            }
        }
        for (a = 0; a < K; ++a) cb->dq[(long)i * K + a] += scale * d[a];
    }
    /* 9. dg_r = sum_{i >= r} d gam_i inside the chunk. */
    for (i = n - 2; i >= 0; --i) cb->dgam[i] += cb->dgam[i + 1];
}

/* Chunk buffers: C*(11K + 3V + 2NL + 5) + (C+2)*K + 2V floats from m (the scalar
 * backend's layout). */
void lla_bw_carve(__global float *m, int C, int K, int V, int NL, lla_bw_chunk *cb) {
    const long CK = (long)C * K, CV = (long)C * V;
    cb->q = m; m += CK;
    cb->k = m; m += CK;
    cb->u = m; m += CK;
    cb->kap = m; m += CK;
    cb->dq = m; m += CK;
    cb->dk = m; m += CK;
    cb->du = m; m += CK;
    cb->dkap = m; m += CK;
    cb->pi = m; m += CK;
    cb->e = m; m += CK;
    cb->f = m; m += CK;
    cb->v = m; m += CV;
    cb->dout = m; m += CV;
    cb->dv = m; m += CV;
    cb->lam = m; m += (long)C * NL;
    cb->dlam = m; m += (long)C * NL;
    cb->gam = m; m += C;
    cb->coef = m; m += C;
    cb->dgam = m; m += C;
    cb->dbeta = m; m += C;
    cb->ds = m; m += C;
    cb->walk = m; m += (long)(C + 1) * K;
    cb->tk = m; m += K;
    cb->tv = m; m += V;
    cb->tv2 = m;
}

/* One work-item per (sequence b, value head h): global id = b * H + h.  Workspace slice
 * of the pair at ws + (b * H + h) * slice: n_ckpt + S states (NL*K*V each: checkpoints,
 * re-run states, dE) then the chunk buffers.  dq/dk partials go to pq/pk, laid out
 * [tensor batch][T][H][K]; lla_backward_group_sum adds them up per q/k head. */
__kernel void lla_backward(
    __global const float *qb, long qo, long4 qs,
    __global const float *kb, long ko, long4 ks,
    __global const float *vb, long vo, long4 vs,
    __global const float *gb, long go, long4 gs,
    __global const float *lb, long lo, long4 ls,
    __global const float *bb, long bo, long4 bs,
    __global const float *db, long dob, long4 dos,
    __global float *dvb, long dvo, long4 dvs,
    __global float *dgb, long dgo, long4 dgs,
    __global float *dlb, long dlo, long4 dls,
    __global float *dbb, long dbo, long4 dbs,
    __global const long *seq, long seqo, int has_seq,
    __global const long *ipos, long iposo, __global const float *ival, long ivalo,
    int has_init,
    __global const float *dfval, long dfvalo, int has_dfinal,
    __global float *dival, long divalo, int has_dinit,
    __global float *wsb, long wso, long slice, long n_ckpt, long spacing,
    __global float *pq, long pqo, __global float *pk, long pko,
    int variant, int hier, int NL, int H, int group, int K, int V, int C, long batch,
    long seqlen, float scale) {
    const long id = (long)get_global_id(0);
    lla_bw_seq s;
    lla_bw_chunk cb;
    long KV, state, start, end, c, nc, n_seg, seg, b;
    int L, h, S;
    __global float *ws, *ckpt, *seg_states, *dE;
    if (id >= batch * H) return; /* no barriers in this kernel */
    b = id / H;
    h = (int)(id % H);
    KV = (long)K * V;
    state = (long)NL * KV;
    S = (int)spacing;
    ws = wsb + wso + id * slice;
    ckpt = ws;
    seg_states = ckpt + n_ckpt * state;
    dE = seg_states + (S - 1) * state;
    lla_bw_carve(dE + state, C, K, V, NL, &cb);

    s.q.p = qb + qo; s.q.s = qs;
    s.k.p = kb + ko; s.k.s = ks;
    s.v.p = vb + vo; s.v.s = vs;
    s.g.p = gb + go; s.g.s = gs;
    s.lam.p = lb + lo; s.lam.s = ls;
    s.beta.p = bb + bo; s.beta.s = bs;
    s.dout.p = db + dob; s.dout.s = dos;
    s.hier = hier;
    s.gdn = variant == LLA_GDN;
    s.K = K;
    s.V = V;
    s.NL = NL;
    s.C = C;
    s.h = h;
    s.hq = h / group;
    s.scale = scale;
    if (has_seq) {
        s.tb = 0;
        start = seq[seqo + b];
        end = seq[seqo + b + 1];
    } else {
        s.tb = b;
        start = 0;
        end = seqlen;
    }
    s.t0 = start;
    s.len = end - start;
    s.pos0 = has_init ? ipos[iposo + b] : 0;

    /* dE starts as d_final (the state after the last token, decoder layout). */
    for (L = 0; L < NL; ++L) {
        if (has_dfinal)
            lla_bw_copy(dE + L * KV, dfval + dfvalo + (id * NL + L) * KV, KV);
        else
            lla_bw_zero(dE + L * KV, KV);
    }
    if (s.len == 0) { /* no tokens: the forward copies the initial slice to the final one */
        if (has_dinit)
            for (L = 0; L < NL; ++L) lla_bw_copy(dival + divalo + (id * NL + L) * KV, dE + L * KV, KV);
        return;
    }
    /* E^0: the initial state's sets (decoder layout at pos0 - 1) moved to target pos0. */
    lla_bw_zero(ckpt, state);
    if (has_init && s.pos0 > 0)
        for (L = 0; L < NL; ++L) {
            const long first = lla_bw_set_first(hier, s.pos0 - 1, L, 1);
            __global float *dst;
            __global const float *src = ival + ivalo + (id * NL + L) * KV;
            long x;
            if (first < 0) continue; /* empty level: its content is not part of the state */
            dst = ckpt + lla_level(hier, s.pos0, first) * KV;
            for (x = 0; x < KV; ++x) dst[x] += src[x];
        }
    /* Forward sweep: checkpoints every S chunks. */
    nc = lla_bw_chunk_count(&s);
    n_seg = (nc + S - 1) / S;
    for (seg = 1; seg < n_seg; ++seg) {
        __global float *E = ckpt + seg * state;
        lla_bw_copy(E, E - state, state);
        for (c = (seg - 1) * S; c < seg * S; ++c) {
            long begin, cend, next;
            lla_bw_chunk_span(&s, c, &begin, &cend, &next);
            lla_bw_load_chunk(&s, &cb, begin, cend, 0);
            lla_bw_advance(&s, &cb, E, next);
        }
    }
    /* Reverse sweep, one segment at a time: re-run its states, then go backwards. */
    for (seg = n_seg - 1; seg >= 0; --seg) {
        const long c0 = seg * S, c1 = c0 + S < nc ? c0 + S : nc;
        for (c = c0 + 1; c < c1; ++c) {
            __global float *E = seg_states + (c - c0 - 1) * state;
            __global const float *prev = c == c0 + 1 ? ckpt + seg * state : E - state;
            long begin, cend, next;
            lla_bw_copy(E, prev, state);
            lla_bw_chunk_span(&s, c - 1, &begin, &cend, &next);
            lla_bw_load_chunk(&s, &cb, begin, cend, 0);
            lla_bw_advance(&s, &cb, E, next);
        }
        for (c = c1 - 1; c >= c0; --c) {
            __global const float *E =
                c == c0 ? ckpt + seg * state : seg_states + (c - c0 - 1) * state;
            long begin, cend, next;
            int i, d;
            lla_bw_chunk_span(&s, c, &begin, &cend, &next);
            lla_bw_load_chunk(&s, &cb, begin, cend, 1);
            lla_bw_chunk_backward(&s, &cb, E, dE, next);
            for (i = 0; i < cb.n; ++i) { /* store the chunk's gradients */
                const long t = s.t0 + (cb.begin - s.pos0) + i;
                const long prow = ((s.tb * seqlen + t) * H + h) * (long)K;
                for (d = 0; d < K; ++d) {
                    pq[pqo + prow + d] = cb.dq[(long)i * K + d];
                    pk[pko + prow + d] = cb.dk[(long)i * K + d];
                }
                for (d = 0; d < V; ++d)
                    dvb[dvo + AT(dvs, s.tb, t, h, d)] = cb.dv[(long)i * V + d];
                for (d = 0; d < NL; ++d)
                    dlb[dlo + AT(dls, s.tb, t, h, d)] = cb.dlam[(long)i * NL + d];
                dgb[dgo + AT(dgs, s.tb, t, h, 0)] = cb.dgam[i];
                if (s.gdn) dbb[dbo + AT(dbs, s.tb, t, h, 0)] = cb.dbeta[i];
            }
        }
    }
    /* d_initial: the transpose of the initial move to target pos0. */
    if (has_dinit)
        for (L = 0; L < NL; ++L) {
            const long first = s.pos0 > 0 ? lla_bw_set_first(hier, s.pos0 - 1, L, 1) : -1;
            __global float *dst = dival + divalo + (id * NL + L) * KV;
            if (first < 0)
                lla_bw_zero(dst, KV);
            else
                lla_bw_copy(dst, dE + lla_level(hier, s.pos0, first) * KV, KV);
        }
}

/* dq / dk of q/k head g at (tensor batch tb, token t) = the sum of the partials of the
 * value heads of group g.  One work-item per (tb, t, g). */
__kernel void lla_backward_group_sum(__global const float *pq, long pqo,
                                     __global const float *pk, long pko, __global float *dqb,
                                     long dqo, long4 dqs, __global float *dkb, long dko,
                                     long4 dks, long bt, long seqlen, int H, int G, int K) {
    const long id = (long)get_global_id(0);
    const int group = H / G;
    long tb, t;
    int g, h, d;
    if (id >= bt * seqlen * G) return;
    g = (int)(id % G);
    t = (id / G) % seqlen;
    tb = id / G / seqlen;
    for (d = 0; d < K; ++d) {
        float sq = 0.0f, sk = 0.0f;
        for (h = g * group; h < (g + 1) * group; ++h) {
            const long at = ((tb * seqlen + t) * H + h) * (long)K + d;
            sq += pq[pqo + at];
            sk += pk[pko + at];
        }
        dqb[dqo + AT(dqs, tb, t, g, d)] = sq;
        dkb[dko + AT(dks, tb, t, g, d)] = sk;
    }
}
