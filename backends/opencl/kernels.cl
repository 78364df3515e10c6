/*
 * kernels.cl - OpenCL C 1.2 kernels of the opencl backend (embedded into the library by
 * embed_cl.py at build time; opencl.c builds them once per backend handle).
 *
 * Forward (lla_forward): the chunkwise sweep of docs/algorithms.md, ported from the scalar
 * backend.  One work-group per (sequence, head, block of value columns); each work-item
 * owns 16 value columns.  Everything the sweep does is separable in the value columns
 * (transitions act on the key side), so a work-item touches only its own columns of the
 * carried state and of the outputs: no global-memory races, and the only barriers guard
 * the chunk data shared through local memory.  Per chunk:
 *   (a) intra: the L x L coefficient block (GDN through the UT/WY form, SPEC 4.4);
 *   (b) inter: target t reads lambda[t, level(t, first source of set l)] q~_t^T W_l;
 *   (c) advance: regroup the level sets to the next target, apply the chunk's transition,
 *       add the chunk's tokens at their levels for that target.
 * The carried state W lives in the caller's workspace, [B][H][levels][dk][dv rounded up
 * to 16] float.  Decode (lla_decode, lla_positions) follows; the backward is in
 * backward.cl, appended to this file at build time.
 *
 * All arithmetic is float32.  Tensors are strided views: element (b,t,h,d) of a tensor
 * with element offset off and strides s is at off + b*s.s0 + t*s.s1 + h*s.s2 + d*s.s3
 * (the host checked that every element it can address lies inside its buffer).
 */

#ifdef LLA_OPENCL_TEST_BUILD_ERROR /* test hook: tests/opencl/test_opencl_errors.c */
#error "LLA_OPENCL_TEST_BUILD_ERROR is defined: this build fails on purpose"
#endif

#define LLA_WEAK 0
#define LLA_GDN 1

/* ------------------------------------------------------------------ levels */

int lla_bit_length(long x) { return x == 0 ? 0 : 64 - (int)clz(x); }

/* Level of (t, s), 0 <= s <= t (SPEC 1.2 closed forms). */
int lla_level(int hier, long t, long s) {
    int j = 0;
    if (s == t) return 0;
    if (hier == LLA_WEAK) return lla_bit_length(t ^ s);
    while ((t >> j) - (s >> j) > 1) ++j;
    return j + 1;
}

/* lo_l(t): first source of level l >= 1; level l = [lo_l(t), lo_{l-1}(t)). */
long lla_level_start(int hier, int l, long t) {
    long a;
    if (l <= 0) return t;
    if (hier == LLA_WEAK) return l >= 63 ? 0 : (t >> l) << l;
    if (l - 1 >= 62) return 0;
    a = (t >> (l - 1)) - 1;
    return a <= 0 ? 0 : a << (l - 1);
}

/* Non-empty levels of a decoder state relative to target t (level 0 = {t}). */
ulong lla_levels_of_target(int hier, int nl, long t) {
    ulong live = 1;
    int l;
    for (l = 1; l < nl; ++l)
        if (lla_level_start(hier, l, t) < lla_level_start(hier, l - 1, t)) live |= (ulong)1 << l;
    return live;
}

int lla_is_live(ulong live, int l) { return (int)((live >> l) & 1); }

#define AT(s, b, t, h, d) ((b) * (s).s0 + (t) * (s).s1 + (h) * (s).s2 + (d) * (s).s3)

/* ------------------------------------------------------------------ forward */

/* Vector layout.  Work-item lid owns the 16 value columns col0 .. col0+15, held as two
 * float8 halves (col0 = (block * gvec + lid) * 16; float8 rather than float16 because a
 * float16 does not fit one AVX2 register, and PoCL then warns about the vector ABI of its
 * vload16/vstore16).  Every heavy loop is a micro-kernel of four scalar broadcasts from
 * local memory times one 16-column row: 64 multiply-adds per 4 + 2 loads.  The carried
 * state W of a (sequence, head) is [levels][K][Vp] with Vp = V rounded up to 16, so whole
 * 16-column rows are always in bounds; columns >= V hold values that are never stored to
 * the caller (columns never mix).  Local rows of q, k and the derived K-vectors have
 * stride Kp = K rounded up to 8, zero-padded. */

#define VW 16

float lla_hsum8(float8 v) {
    float4 a = v.lo + v.hi;
    float2 b = a.lo + a.hi;
    return b.x + b.y;
}

/* u . w over Kp (a multiple of 8) elements of two local rows. */
float lla_dot_local(__local const float *u, __local const float *w, int Kp) {
    float8 acc = 0.0f;
    int d;
    for (d = 0; d < Kp; d += 8) acc += vload8(0, u + d) * vload8(0, w + d);
    return lla_hsum8(acc);
}

/* Moves every live level set of target `from` whole to its level for target `to` (sets
 * are nested source ranges: they never split and only move up, so going from the top
 * level down never overwrites a set that has not moved yet).  W points at this
 * work-item's columns; the returned mask is the same in every work-item. */
ulong lla_regroup16(__global float *W, ulong live, long from, long to, int hier, int nl, int K,
                    long KVp, int Vp, int active) {
    ulong out = 0;
    int l, d;
    for (l = nl - 1; l >= 0; --l) {
        int dst;
        if (!lla_is_live(live, l)) continue;
        dst = lla_level(hier, to, lla_level_start(hier, l, from));
        if (dst != l && active) {
            __global float *wd = W + dst * KVp;
            __global const float *ws = W + l * KVp;
            const int add = lla_is_live(out, dst);
            for (d = 0; d < K; ++d) {
                float8 x0 = vload8(0, ws + (long)d * Vp), x1 = vload8(1, ws + (long)d * Vp);
                if (add) {
                    x0 += vload8(0, wd + (long)d * Vp);
                    x1 += vload8(1, wd + (long)d * Vp);
                }
                vstore8(x0, 0, wd + (long)d * Vp);
                vstore8(x1, 1, wd + (long)d * Vp);
            }
        }
        out |= (ulong)1 << dst;
    }
    return out;
}

/* The micro-kernel of the forward: out[i] = (accumulate ? out[i] : 0) + sum_j a[i][j] x[j]
 * for rows i < rows, j < n (+ i * nstep: nstep 1 walks a lower triangle including the
 * diagonal).  a lives in local memory, element (i, j) at a[i * as + j * aj]; x and out
 * are 16-column rows of this work-item's columns with row strides xs, os.  Four rows at
 * a time: per j, one row (two float8) and four scalar broadcasts feed 64 multiply-adds.  Rows
 * past `rows` in the last group repeat row rows-1 (same value, stored twice).
 * OpenCL C 1.2 has no generic address space, so the memory spaces of out and x are
 * spelled out: LLA_MM(name, out space, x space).  noinline: six call sites, and PoCL's
 * work-group compilation of the kernel takes a quarter less time with one copy each. */
#define LLA_MM(NAME, OUT_SPACE, X_SPACE)                                                     \
    __attribute__((noinline)) void NAME(OUT_SPACE float *out, int os, int accumulate, __local const float *a, int as,  \
              int aj, X_SPACE const float *x, int xs, int rows, int n, int nstep) {          \
        int i, j;                                                                            \
        for (i = 0; i < rows; i += 4) {                                                      \
            const int r1 = min(i + 1, rows - 1), r2 = min(i + 2, rows - 1),                  \
                      r3 = min(i + 3, rows - 1), jn = n + r3 * nstep;                        \
            __local const float *p0 = a + i * as, *p1 = a + r1 * as, *p2 = a + r2 * as,      \
                                *p3 = a + r3 * as;                                           \
            OUT_SPACE float *o0 = out + (long)i * os, *o1 = out + (long)r1 * os,             \
                            *o2 = out + (long)r2 * os, *o3 = out + (long)r3 * os;            \
            float8 a0 = 0.0f, b0 = 0.0f, a1 = 0.0f, b1 = 0.0f, a2 = 0.0f, b2 = 0.0f,         \
                   a3 = 0.0f, b3 = 0.0f;                                                     \
            if (accumulate) {                                                                \
                a0 = vload8(0, o0); b0 = vload8(1, o0);                                      \
                a1 = vload8(0, o1); b1 = vload8(1, o1);                                      \
                a2 = vload8(0, o2); b2 = vload8(1, o2);                                      \
                a3 = vload8(0, o3); b3 = vload8(1, o3);                                      \
            }                                                                                \
            for (j = 0; j < jn; ++j) {                                                       \
                X_SPACE const float *xr = x + (long)j * xs;                                  \
                const float8 x0 = vload8(0, xr), x1 = vload8(1, xr);                         \
                const float s0 = p0[j * aj], s1 = p1[j * aj], s2 = p2[j * aj],               \
                            s3 = p3[j * aj];                                                 \
                a0 += s0 * x0; b0 += s0 * x1;                                                \
                a1 += s1 * x0; b1 += s1 * x1;                                                \
                a2 += s2 * x0; b2 += s2 * x1;                                                \
                a3 += s3 * x0; b3 += s3 * x1;                                                \
            }                                                                                \
            vstore8(a3, 0, o3); vstore8(b3, 1, o3);                                          \
            vstore8(a2, 0, o2); vstore8(b2, 1, o2);                                          \
            vstore8(a1, 0, o1); vstore8(b1, 1, o1);                                          \
            vstore8(a0, 0, o0); vstore8(b0, 1, o0);                                          \
        }                                                                                    \
    }
LLA_MM(lla_mm_ll, __local, __local)   /* local out, local x  */
LLA_MM(lla_mm_lg, __local, __global)  /* local out, global x */
LLA_MM(lla_mm_gl, __global, __local)  /* global out, local x */

/* Local arena (floats), in this order: q, k, ks (k scaled to the chunk end), q~, qs
 * (q~ scaled by one level's lambda) (C x Kp each), GDN: w (C x Kp); coef (C x C); GDN:
 * gram, agam (C x C each); v, out (C x VB each), GDN: tmp (C x VB); gc, beta, kd, eg,
 * 1/eg (C each); lam, lamw (C x levels); one flag.  opencl.c computes the same size
 * (arena_floats). */
__kernel void lla_forward(
    __global const float *qb, long qo, long4 qs,
    __global const float *kb, long ko, long4 ks,
    __global const float *vb, long vo, long4 vs,
    __global const float *gb, long go, long4 gs,
    __global const float *lb, long lo, long4 ls,
    __global const float *bb, long bo, long4 bs,
    __global float *ob, long oo, long4 os,
    __global const long *seq, long seqo, int has_seq,
    __global const long *ipos, long iposo, __global const float *ival, long ivalo,
    int has_init,
    __global float *fval, long fvalo, int has_final,
    __global float *wsb, long wso,
    int variant, int hier, int nl, int H, int group, int K, int V, int C, int nvb, int gvec,
    long seqlen, float scale, __local float *arena) {
    const int lid = (int)get_local_id(0), nloc = (int)get_local_size(0);
    const int VB = VW * nloc, Vp = (V + VW - 1) / VW * VW, Kp = (K + 7) & ~7;
    const long grp = (long)get_group_id(0);
    const int vblk = (int)(grp % nvb), h = (int)((grp / nvb) % H);
    const long b = grp / nvb / H;
    /* the group's columns: gvec 16-column vectors (the other work-items only help with the
     * shared work; the local size stays fixed so that PoCL compiles the kernel once) */
    const int col0 = (vblk * gvec + lid) * VW, active = lid < gvec && col0 < V, hq = h / group;
    const int gdn = variant == LLA_GDN;
    const long KV = (long)K * V, KVp = (long)K * Vp;
    const long user_head = (b * H + h) * (long)nl * KV; /* caller's state layout */
    __global const float *q = qb + qo, *k = kb + ko, *vv = vb + vo, *g = gb + go,
                         *lam = lb + lo, *beta = bb + bo;
    __global float *o = ob + oo;
    __global float *W = wsb + wso + (b * H + h) * (long)nl * KVp + col0;
    __local float *lq = arena, *lk = lq + C * Kp, *lks = lk + C * Kp, *lqt = lks + C * Kp;
    __local float *lqs = lqt + C * Kp, *lw = lqs + C * Kp;
    __local float *lcoef = lw + (gdn ? C * Kp : 0), *lgram = lcoef + C * C;
    __local float *lagam = lgram + (gdn ? C * C : 0), *lv = lagam + (gdn ? C * C : 0);
    __local float *lout = lv + C * VB, *ltmp = lout + C * VB;
    __local float *lgc = ltmp + (gdn ? C * VB : 0), *lbeta = lgc + C, *lkd = lbeta + C;
    __local float *leg = lkd + C, *lieg = leg + C, *llam = lieg + C;
    __local float *llamw = llam + C * nl, *lratio = llamw + C * nl;
    __local float *myv = lv + VW * lid, *myout = lout + VW * lid, *mytmp = ltmp + VW * lid;
    long tb, start, end, p0, stop, c0, c1;
    ulong live = 0;
    int l, d, i, j, x;

    if (has_seq) {
        tb = 0;
        start = seq[seqo + b];
        end = seq[seqo + b + 1];
    } else {
        tb = b;
        start = 0;
        end = seqlen;
    }
    p0 = has_init ? ipos[iposo + b] : 0;
    stop = p0 + (end - start);

    /* The state relative to target p0 - 1, regrouped to p0.  (With no token to consume,
     * the final state is the initial one: copied at the end instead.) */
    if (has_init && p0 > 0 && stop > p0) {
        live = lla_levels_of_target(hier, nl, p0 - 1);
        if (active)
            for (l = 0; l < nl; ++l) {
                if (!lla_is_live(live, l)) continue;
                for (d = 0; d < K; ++d)
                    for (x = 0; x < VW; ++x)
                        W[l * KVp + (long)d * Vp + x] =
                            col0 + x < V ? ival[ivalo + user_head + l * KV + (long)d * V + col0 + x]
                                         : 0.0f;
            }
        live = lla_regroup16(W, live, p0 - 1, p0, hier, nl, K, KVp, Vp, active);
    }

    /* Every barrier below sits at the top level of the chunk loop (or of the level loop
     * inside it), whose trip counts are the same for the whole work-group: no barrier
     * inside a branch (some implementations, PoCL 3.1 among them, mis-schedule those even
     * when the branch is uniform). */
    for (c0 = p0; c0 < stop; c0 = c1) {
        const long tok0 = start + (c0 - p0);
        int L;
        c1 = (c0 / C + 1) * C;
        if (c1 > stop) c1 = stop;
        L = (int)(c1 - c0);

        barrier(CLK_LOCAL_MEM_FENCE); /* the previous chunk is done with local memory */
        for (i = 0; i < L; ++i) { /* row pointers once per token: no index math per element */
            __global const float *qr = q + AT(qs, tb, tok0 + i, hq, 0);
            __global const float *kr = k + AT(ks, tb, tok0 + i, hq, 0);
            __global const float *lr = lam + AT(ls, tb, tok0 + i, h, 0);
            __global const float *vr = vv + AT(vs, tb, tok0 + i, h, 0);
            for (d = lid; d < Kp; d += nloc) {
                lq[i * Kp + d] = d < K ? qr[d * qs.s3] : 0.0f;
                lk[i * Kp + d] = d < K ? kr[d * ks.s3] : 0.0f;
            }
            for (l = lid; l < nl; l += nloc) llam[i * nl + l] = lr[l * ls.s3];
            for (x = 0; x < VW; ++x)
                myv[i * VB + x] = col0 + x < V ? vr[(col0 + x) * vs.s3] : 0.0f;
        }
        if (lid == 0) {
            float s = 0.0f, lo_eg = 1.0f, hi_eg = 1.0f;
            for (i = 0; i < L; ++i) {
                s += g[AT(gs, tb, tok0 + i, h, 0)];
                lgc[i] = s; /* chunk-local cumulative gate: every exponent below is <= 0 */
                lbeta[i] = gdn ? beta[AT(bs, tb, tok0 + i, h, 0)] : 1.0f;
            }
            for (i = 0; i < L; ++i) {
                lkd[i] = exp(s - lgc[i]); /* decay from token i to the chunk's end */
                leg[i] = exp(lgc[i]);     /* decay from the chunk's start to token i */
                lo_eg = fmin(lo_eg, leg[i]);
                hi_eg = fmax(hi_eg, leg[i]);
            }
            /* exp(gc_i - gc_j) = eg_i / eg_j to a few ulp while no eg under- or overflows
             * (one exp per token instead of one per pair); else exp per pair */
            lratio[0] = lo_eg > 1e-30f && hi_eg < 1e30f ? 1.0f : 0.0f;
            for (i = 0; i < L; ++i) lieg[i] = 1.0f / leg[i];
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* (a) intra coefficients, zero above the diagonal, one row per work-item; keys
         * scaled to the chunk end (ks) for the summaries.
         * Mamba-2: coef[i][j] = lambda scale (q_i.k_j) exp(gc_i - gc_j), q~ = scale exp(gc) q.
         * GDN: coef[i][j] = q_i.k_j (j <= i) and gram[i][j] = k_i.k_j (j < i). */
        {
            const int by_ratio = lratio[0] != 0.0f;
            for (i = lid; i < L; i += nloc) {
                __local const float *qi = lq + i * Kp, *ki = lk + i * Kp;
                const float eg = leg[i];
                for (j = 0; j <= i; ++j) {
                    const float qk = lla_dot_local(qi, lk + j * Kp, Kp);
                    if (gdn) {
                        lcoef[i * C + j] = qk;
                        lgram[i * C + j] = j < i ? lla_dot_local(ki, lk + j * Kp, Kp) : 0.0f;
                    } else {
                        const float decay = by_ratio ? eg * lieg[j] : exp(lgc[i] - lgc[j]);
                        lcoef[i * C + j] =
                            llam[i * nl + lla_level(hier, c0 + i, c0 + j)] * scale * qk * decay;
                    }
                }
                for (; j < L; ++j) lcoef[i * C + j] = 0.0f;
                for (d = 0; d < Kp; d += 8) {
                    vstore8(lkd[i] * vload8(0, ki + d), 0, lks + i * Kp + d);
                    if (!gdn) vstore8((scale * eg) * vload8(0, qi + d), 0, lqt + i * Kp + d);
                }
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        /* GDN: WY vectors w_i = beta_i (k_i - sum_{j<i} gram[i][j] w_j) (columns d are
         * independent), and the gated A: agam[i][j] = beta_i gram[i][j] exp(gc_i - gc_j) */
        if (gdn) {
            const int by_ratio = lratio[0] != 0.0f;
            for (d = 8 * lid; d < Kp; d += 8 * nloc) /* 8 columns d at a time */
                for (i = 0; i < L; ++i) {
                    float8 s8 = vload8(0, lk + i * Kp + d);
                    for (j = 0; j < i; ++j) s8 -= lgram[i * C + j] * vload8(0, lw + j * Kp + d);
                    vstore8(lbeta[i] * s8, 0, lw + i * Kp + d); /* padding: k is 0 there */
                }
            for (i = lid; i < L; i += nloc)
                for (j = 0; j < L; ++j)
                    lagam[i * C + j] =
                        j < i ? lbeta[i] * lgram[i * C + j] *
                                    (by_ratio ? leg[i] * lieg[j] : exp(lgc[i] - lgc[j]))
                              : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        /* GDN: q~_i = scale exp(gc_i) (q_i - sum_{j<=i} (q_i.k_j) w_j) */
        if (gdn)
            for (i = lid; i < L; i += nloc)
                for (d = 0; d < Kp; d += 8) {
                    float8 s8 = vload8(0, lq + i * Kp + d);
                    for (j = 0; j <= i; ++j) s8 -= lcoef[i * C + j] * vload8(0, lw + j * Kp + d);
                    vstore8((scale * leg[i]) * s8, 0, lqt + i * Kp + d);
                }
        barrier(CLK_LOCAL_MEM_FENCE);
        /* GDN: row i of X = tril(QK^T) (I + A)^-1, A[m][j] = beta_m gram[m][j]:
         * x_j = QK[i][j] - sum_{m=j+1..i} x_m A[m][j]; x_j is the ungated
         * q_i^T (I - b_i k_i k_i^T) ... (I - b_{j+1} k_{j+1} k_{j+1}^T) k_j */
        if (gdn) {
            const int by_ratio = lratio[0] != 0.0f;
            for (i = lid; i < L; i += nloc) {
                __local float *xr = lcoef + i * C;
                int m;
                for (j = i; j >= 0; --j) {
                    float s = xr[j];
                    for (m = j + 1; m <= i; ++m) s -= xr[m] * lbeta[m] * lgram[m * C + j];
                    xr[j] = s;
                }
                for (j = 0; j <= i; ++j)
                    xr[j] *= llam[i * nl + lla_level(hier, c0 + i, c0 + j)] * scale *
                             (by_ratio ? leg[i] * lieg[j] : exp(lgc[i] - lgc[j])) * lbeta[j];
            }
        }
        /* lambda weight of every live set of W for every target of the chunk */
        for (i = lid; i < L; i += nloc)
            for (l = 0; l < nl; ++l)
                llamw[i * nl + l] =
                    l >= 1 && lla_is_live(live, l)
                        ? llam[i * nl + lla_level(hier, c0 + i, lla_level_start(hier, l, c0))]
                        : 0.0f;
        barrier(CLK_LOCAL_MEM_FENCE);

        /* (a) intra outputs of this work-item's columns: out = coef V (lower triangle) */
        if (active) lla_mm_ll(myout, VB, 0, lcoef, C, 1, myv, VB, L, 1, 1);
        /* (b) inter: out += sum over live sets l of diag(lamw[:, l]) q~ W_l, with the
         * level's weights folded into the queries (qs) so the tile accumulates across
         * levels in local memory */
        for (l = 1; l < nl; ++l) {
            if (!lla_is_live(live, l)) continue; /* uniform: live is the same everywhere */
            barrier(CLK_LOCAL_MEM_FENCE);
            for (i = lid; i < L; i += nloc) {
                const float w = llamw[i * nl + l];
                for (d = 0; d < Kp; d += 8)
                    vstore8(w * vload8(0, lqt + i * Kp + d), 0, lqs + i * Kp + d);
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            if (active) lla_mm_lg(myout, VB, 1, lqs, Kp, 1, W + l * KVp, Vp, L, K, 0);
        }
        if (active)
            for (i = 0; i < L; ++i) {
                __global float *orow = o + AT(os, tb, tok0 + i, h, 0);
                for (x = 0; x < VW && col0 + x < V; ++x) orow[(col0 + x) * os.s3] = myout[i * VB + x];
            }

        /* (c) advance to the next chunk's first target, or to the last token for a
         * final state (the decoder layout).  Column-private: no barrier needed. */
        if (c1 < stop || has_final) {
            const long target = c1 < stop ? c1 : c1 - 1;
            const float decay = leg[L - 1];
            live = lla_regroup16(W, live, c0, target, hier, nl, K, KVp, Vp, active);
            if (active)
                for (l = 0; l < nl; ++l) {
                    __global float *wl = W + l * KVp;
                    if (!lla_is_live(live, l)) continue;
                    if (gdn) {
                        /* W = exp(gc_last) (W - sum_j k_j (w_j^T W)): tmp = -w W,
                         * W += k^T tmp */
                        lla_mm_lg(mytmp, VB, 0, lw, Kp, 1, wl, Vp, L, K, 0);
                        for (j = 0; j < L; ++j) {
                            vstore8(-vload8(0, mytmp + j * VB), 0, mytmp + j * VB);
                            vstore8(-vload8(1, mytmp + j * VB), 1, mytmp + j * VB);
                        }
                        lla_mm_gl(wl, Vp, 1, lk, 1, Kp, mytmp, VB, K, L, 0);
                    }
                    for (d = 0; d < K; ++d) {
                        __global float *wr = wl + (long)d * Vp;
                        vstore8(decay * vload8(0, wr), 0, wr);
                        vstore8(decay * vload8(1, wr), 1, wr);
                    }
                }
            /* the chunk's tokens, in runs that share a level for the target */
            for (i = 0; i < L;) {
                int dst = lla_level(hier, target, c0 + i), end_run = i + 1;
                while (end_run < L && lla_level(hier, target, c0 + end_run) == dst) ++end_run;
                if (active) {
                    __global float *wd = W + dst * KVp;
                    const int keep = lla_is_live(live, dst);
                    if (!gdn) {
                        /* W_dst (+)= sum_{r in run} exp(gc_last - gc_r) k_r v_r^T */
                        lla_mm_gl(wd, Vp, keep, lks + i * Kp, 1, Kp, myv + i * VB, VB, K,
                                  end_run - i, 0);
                    } else {
                        /* the chunk's delta rule from a zero state with values outside
                         * the run zero, in the UT form: u = (I + A o Gamma)^-1 (beta v)
                         * on rows >= i, then sum_r exp(gc_last - gc_r) k_r u_r */
                        int r, m;
                        for (r = i; r < L; ++r) {
                            const float br = r < end_run ? lbeta[r] : 0.0f;
                            float8 u0 = br * vload8(0, myv + r * VB);
                            float8 u1 = br * vload8(1, myv + r * VB);
                            for (m = i; m < r; ++m) {
                                const float am = lagam[r * C + m];
                                u0 -= am * vload8(0, mytmp + m * VB);
                                u1 -= am * vload8(1, mytmp + m * VB);
                            }
                            vstore8(u0, 0, mytmp + r * VB);
                            vstore8(u1, 1, mytmp + r * VB);
                        }
                        lla_mm_gl(wd, Vp, keep, lks + i * Kp, 1, Kp, mytmp + i * VB, VB, K,
                                  L - i, 0);
                    }
                }
                live |= (ulong)1 << dst;
                i = end_run;
            }
        }
    }

    if (has_final && active)
        for (l = 0; l < nl; ++l) {
            const int on = lla_is_live(live, l);
            for (d = 0; d < K; ++d)
                for (x = 0; x < VW && col0 + x < V; ++x) {
                    const long at = user_head + l * KV + (long)d * V + col0 + x;
                    if (stop == p0) /* nothing consumed: the initial state (or an empty one) */
                        fval[fvalo + at] = has_init ? ival[ivalo + at] : 0.0f;
                    else
                        fval[fvalo + at] = on ? W[l * KVp + (long)d * Vp + x] : 0.0f;
                }
        }
}

/* ------------------------------------------------------------------ decode */

/* One token per sequence; work-item = (sequence, head, value column).  The state of
 * (b, h) is relative to target p-1 where p = positions[b]:
 *   1. cascade every non-empty level set to its level for target p;
 *   2. decay by P_p (Mamba-2 S *= a_p; GDN S = a_p (S - beta k (k^T S)), per column);
 *   3. level 0 = c_p k_p v_p^T;  4. y = scale sum_l lambda[p, l] S_l^T q_p.
 * Positions are advanced afterwards by lla_positions (every head reads the same p). */
__kernel void lla_decode(
    __global const float *qb, long qo, long4 qs,
    __global const float *kb, long ko, long4 ks,
    __global const float *vb, long vo, long4 vs,
    __global const float *gb, long go, long4 gs,
    __global const float *lb, long lo, long4 ls,
    __global const float *bb, long bo, long4 bs,
    __global float *ob, long oo, long4 os,
    __global const long *pos, long poso, __global float *sb, long so,
    int variant, int hier, int nl, int H, int group, int K, int V, int VB, int nvb,
    float scale) {
    const int lid = (int)get_local_id(0);
    const long grp = (long)get_group_id(0);
    const int vblk = (int)(grp % nvb), h = (int)((grp / nvb) % H);
    const long b = grp / nvb / H;
    const int v = vblk * VB + lid, hq = h / group, gdn = variant == LLA_GDN;
    const long KV = (long)K * V;
    __global const float *q = qb + qo, *k = kb + ko;
    __global float *S = sb + so + (b * H + h) * (long)nl * KV + v;
    const long p = pos[poso + b];
    ulong live = 0;
    float a, c, vt, y = 0.0f;
    int l, d;
    if (v >= V) return;
    a = exp(gb[go + AT(gs, b, 0, h, 0)]);
    c = gdn ? bb[bo + AT(bs, b, 0, h, 0)] : 1.0f;
    vt = vb[vo + AT(vs, b, 0, h, v)];

    if (p > 0) /* 1. cascade from target p-1 to target p */
        for (l = nl - 1; l >= 0; --l) {
            long first = lla_level_start(hier, l, p - 1);
            long last = l == 0 ? p : lla_level_start(hier, l - 1, p - 1);
            int to;
            if (first >= last) continue;
            to = lla_level(hier, p, first);
            if (to != l) {
                __global float *dst = S + to * KV, *src = S + l * KV;
                int dst_live = lla_is_live(live, to);
                for (d = 0; d < K; ++d) {
                    dst[(long)d * V] = dst_live ? dst[(long)d * V] + src[(long)d * V]
                                                : src[(long)d * V];
                    src[(long)d * V] = 0.0f;
                }
            }
            live |= (ulong)1 << to;
        }
    for (l = 1; l < nl; ++l) { /* 2. decay */
        __global float *sl = S + l * KV;
        if (!lla_is_live(live, l)) continue;
        if (gdn) {
            float kts = 0.0f;
            for (d = 0; d < K; ++d) kts += k[AT(ks, b, 0, hq, d)] * sl[(long)d * V];
            kts *= c;
            for (d = 0; d < K; ++d)
                sl[(long)d * V] = a * (sl[(long)d * V] - kts * k[AT(ks, b, 0, hq, d)]);
        } else {
            for (d = 0; d < K; ++d) sl[(long)d * V] *= a;
        }
    }
    for (d = 0; d < K; ++d) S[(long)d * V] = c * k[AT(ks, b, 0, hq, d)] * vt; /* 3. */
    live |= 1;
    for (l = 0; l < nl; ++l) { /* 4. output */
        __global const float *sl = S + l * KV;
        float part = 0.0f;
        if (!lla_is_live(live, l)) continue;
        for (d = 0; d < K; ++d) part += q[AT(qs, b, 0, hq, d)] * sl[(long)d * V];
        y += lb[lo + AT(ls, b, 0, h, l)] * part;
    }
    ob[oo + AT(os, b, 0, h, v)] = scale * y;
}

/* dst[b] = (has_src ? src[b] : 0) + tokens of sequence b (seq offsets, or `count`). */
__kernel void lla_positions(__global long *dst, long dsto, __global const long *src, long srco,
                            int has_src, __global const long *seq, long seqo, int has_seq,
                            long count, long batch) {
    const long b = (long)get_global_id(0);
    long n;
    if (b >= batch) return;
    n = has_seq ? seq[seqo + b + 1] - seq[seqo + b] : count;
    dst[dsto + b] = (has_src ? src[srco + b] : 0) + n;
}
