/*
 * kernels.cl - OpenCL C 1.2 kernels of the opencl backend (embedded into the library by
 * embed_cl.py at build time; opencl.c builds them once per backend handle).
 *
 * Forward (lla_forward): the chunkwise sweep of docs/algorithms.md, ported from the scalar
 * backend.  One work-group per (sequence, head, block of VB value columns); work-item
 * `lid` owns value column v = block * VB + lid.  Everything the sweep does is separable
 * in the value columns (transitions act on the key side), so a work-item touches only its
 * own column of the carried state and of the outputs: no global-memory races, and the
 * only barriers guard the chunk data shared through local memory.  Per chunk:
 *   (a) intra: the L x L coefficient block (GDN through the UT/WY form, SPEC 4.4);
 *   (b) inter: target t reads lambda[t, level(t, first source of set l)] q~_t^T W_l;
 *   (c) advance: regroup the level sets to the next target, apply the chunk's transition,
 *       add the chunk's tokens at their levels for that target.
 * The carried state W lives in the caller's workspace, [B][H][levels][dk][dv] float.
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

/* Vector layout.  Work-item lid owns the 8 value columns col0 .. col0+7 as one float8
 * (col0 = (block * gvec + lid) * 8), so the heavy loops are float8 multiply-adds with a
 * scalar broadcast from local memory.  The carried state W of a (sequence, head) is
 * [levels][K][Vp] with Vp = V rounded up to 8: whole float8 rows are always in bounds.
 * Columns >= V hold values that are never stored to the caller (columns never mix).
 * Local rows of q, k, q~ and w have stride Kp = K rounded up to 8, zero-padded. */

float lla_hsum8(float8 v) {
    float4 a = v.lo + v.hi;
    float2 b = a.lo + a.hi;
    return b.x + b.y;
}

/* Moves every live level set of target `from` whole to its level for target `to` (sets
 * are nested source ranges: they never split and only move up, so going from the top
 * level down never overwrites a set that has not moved yet).  W points at this
 * work-item's columns; the returned mask is the same in every work-item. */
ulong lla_regroup8(__global float *W, ulong live, long from, long to, int hier, int nl, int K,
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
            int add = lla_is_live(out, dst);
            for (d = 0; d < K; ++d) {
                float8 x = vload8(0, ws + (long)d * Vp);
                if (add) x += vload8(0, wd + (long)d * Vp);
                vstore8(x, 0, wd + (long)d * Vp);
            }
        }
        out |= (ulong)1 << dst;
    }
    return out;
}

/* Wd = (keep ? Wd : 0) + sum_{i in [a, e)} c[i] k_i x_i^T for this work-item's columns:
 * k rows in local memory (stride Kp), x_i float8 rows (stride xs). */
void lla_rank_update8(__global float *Wd, int Vp, int keep, int a, int e, int K, int Kp,
                      __local const float *lk, __local const float *c, __local const float *x,
                      int xs) {
    int d, i;
    for (d = 0; d + 4 <= K; d += 4) {
        __global float *w = Wd + (long)d * Vp;
        float8 w0 = 0.0f, w1 = 0.0f, w2 = 0.0f, w3 = 0.0f;
        if (keep) {
            w0 = vload8(0, w);
            w1 = vload8(0, w + Vp);
            w2 = vload8(0, w + 2 * (long)Vp);
            w3 = vload8(0, w + 3 * (long)Vp);
        }
        for (i = a; i < e; ++i) {
            const float8 xi = vload8(0, x + i * xs);
            __local const float *kr = lk + i * Kp + d;
            const float ci = c[i];
            w0 += (ci * kr[0]) * xi;
            w1 += (ci * kr[1]) * xi;
            w2 += (ci * kr[2]) * xi;
            w3 += (ci * kr[3]) * xi;
        }
        vstore8(w0, 0, w);
        vstore8(w1, 0, w + Vp);
        vstore8(w2, 0, w + 2 * (long)Vp);
        vstore8(w3, 0, w + 3 * (long)Vp);
    }
    for (; d < K; ++d) {
        __global float *w = Wd + (long)d * Vp;
        float8 w0 = keep ? vload8(0, w) : (float8)0.0f;
        for (i = a; i < e; ++i) w0 += (c[i] * lk[i * Kp + d]) * vload8(0, x + i * xs);
        vstore8(w0, 0, w);
    }
}

/* GDN chunk transition on one level: W = decay (W - sum_j k_j (w_j^T W)), with the L
 * products w_j^T W kept in tmp (float8 rows, stride xs). */
void lla_gdn_transition8(__global float *Wl, int Vp, int L, int K, int Kp, float decay,
                         __local const float *lk, __local const float *lw, __local float *tmp,
                         int xs) {
    int d, j;
    for (j = 0; j + 4 <= L; j += 4) {
        float8 s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        for (d = 0; d < K; ++d) {
            const float8 w = vload8(0, Wl + (long)d * Vp);
            s0 += lw[j * Kp + d] * w;
            s1 += lw[(j + 1) * Kp + d] * w;
            s2 += lw[(j + 2) * Kp + d] * w;
            s3 += lw[(j + 3) * Kp + d] * w;
        }
        vstore8(s0, 0, tmp + j * xs);
        vstore8(s1, 0, tmp + (j + 1) * xs);
        vstore8(s2, 0, tmp + (j + 2) * xs);
        vstore8(s3, 0, tmp + (j + 3) * xs);
    }
    for (; j < L; ++j) {
        float8 s0 = 0.0f;
        for (d = 0; d < K; ++d) s0 += lw[j * Kp + d] * vload8(0, Wl + (long)d * Vp);
        vstore8(s0, 0, tmp + j * xs);
    }
    for (d = 0; d < K; ++d) {
        __global float *w = Wl + (long)d * Vp;
        float8 acc = vload8(0, w);
        for (j = 0; j < L; ++j) acc -= lk[j * Kp + d] * vload8(0, tmp + j * xs);
        vstore8(decay * acc, 0, w);
    }
}

/* Local arena (floats), in this order: q, k, q~ (C x Kp each), GDN: w (C x Kp); coef
 * (C x C); GDN: gram, agam (C x C each); v (C x VB); GDN: tmp (C x VB); gc, beta, kd, eg
 * (C each); lam, lamw (C x levels).  opencl.c computes the same size (arena_floats). */
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
    const int VB = 8 * nloc, Vp = (V + 7) & ~7, Kp = (K + 7) & ~7;
    const long grp = (long)get_group_id(0);
    const int vblk = (int)(grp % nvb), h = (int)((grp / nvb) % H);
    const long b = grp / nvb / H;
    /* the group's columns: gvec float8 vectors (the other work-items only help with the
     * shared loads; the local size stays fixed so that PoCL compiles the kernel once) */
    const int col0 = (vblk * gvec + lid) * 8, active = lid < gvec && col0 < V, hq = h / group;
    const int gdn = variant == LLA_GDN;
    const long KV = (long)K * V, KVp = (long)K * Vp;
    const long user_head = (b * H + h) * (long)nl * KV; /* caller's state layout */
    __global const float *q = qb + qo, *k = kb + ko, *vv = vb + vo, *g = gb + go,
                         *lam = lb + lo, *beta = bb + bo;
    __global float *o = ob + oo;
    __global float *W = wsb + wso + (b * H + h) * (long)nl * KVp + col0;
    __local float *lq = arena, *lk = lq + C * Kp, *lqt = lk + C * Kp, *lw = lqt + C * Kp;
    __local float *lcoef = lw + (gdn ? C * Kp : 0), *lgram = lcoef + C * C;
    __local float *lagam = lgram + (gdn ? C * C : 0), *lv = lagam + (gdn ? C * C : 0);
    __local float *ltmp = lv + C * VB, *lgc = ltmp + (gdn ? C * VB : 0), *lbeta = lgc + C;
    __local float *lkd = lbeta + C, *leg = lkd + C, *llam = leg + C, *llamw = llam + C * nl;
    __local float *myv = lv + 8 * lid, *mytmp = ltmp + 8 * lid;
    long tb, start, end, p0, stop, c0, c1;
    ulong live = 0;
    int l, d, i, j, e, x;

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
                    for (x = 0; x < 8; ++x)
                        W[l * KVp + (long)d * Vp + x] =
                            col0 + x < V ? ival[ivalo + user_head + l * KV + (long)d * V + col0 + x]
                                         : 0.0f;
            }
        live = lla_regroup8(W, live, p0 - 1, p0, hier, nl, K, KVp, Vp, active);
    }

    /* Every barrier below sits at the top level of the chunk loop, whose trip count is the
     * same for the whole work-group: no barrier inside a branch (some implementations,
     * PoCL 3.1 among them, mis-schedule those even when the branch is uniform). */
    for (c0 = p0; c0 < stop; c0 = c1) {
        const long tok0 = start + (c0 - p0);
        int L;
        c1 = (c0 / C + 1) * C;
        if (c1 > stop) c1 = stop;
        L = (int)(c1 - c0);

        barrier(CLK_LOCAL_MEM_FENCE); /* the previous chunk is done with local memory */
        for (e = lid; e < L * Kp; e += nloc) {
            long t = tok0 + e / Kp;
            d = e % Kp;
            lq[e] = d < K ? q[AT(qs, tb, t, hq, d)] : 0.0f;
            lk[e] = d < K ? k[AT(ks, tb, t, hq, d)] : 0.0f;
        }
        for (e = lid; e < L * nl; e += nloc) llam[e] = lam[AT(ls, tb, tok0 + e / nl, h, e % nl)];
        for (i = 0; i < L; ++i)
            for (x = 0; x < 8; ++x)
                myv[i * VB + x] = col0 + x < V ? vv[AT(vs, tb, tok0 + i, h, col0 + x)] : 0.0f;
        if (lid == 0) {
            float s = 0.0f;
            for (i = 0; i < L; ++i) {
                s += g[AT(gs, tb, tok0 + i, h, 0)];
                lgc[i] = s; /* chunk-local cumulative gate: every exponent below is <= 0 */
                lbeta[i] = gdn ? beta[AT(bs, tb, tok0 + i, h, 0)] : 1.0f;
            }
            for (i = 0; i < L; ++i) {
                lkd[i] = exp(s - lgc[i]); /* decay from token i to the chunk's end */
                leg[i] = exp(lgc[i]);     /* decay from the chunk's start to token i */
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* (a) intra coefficients, zero above the diagonal.
         * Mamba-2: coef[i][j] = lambda scale (q_i.k_j) exp(gc_i - gc_j), q~ = scale exp(gc) q.
         * GDN: coef[i][j] = q_i.k_j (j <= i) and gram[i][j] = k_i.k_j (j < i). */
        for (e = lid; e < L * L; e += nloc) {
            float sq = 0.0f, sk = 0.0f;
            i = e / L;
            j = e % L;
            if (j <= i) {
                float8 aq = 0.0f, ak = 0.0f;
                for (d = 0; d < Kp; d += 8) {
                    const float8 kj = vload8(0, lk + j * Kp + d);
                    aq += vload8(0, lq + i * Kp + d) * kj;
                    if (gdn) ak += vload8(0, lk + i * Kp + d) * kj;
                }
                sq = lla_hsum8(aq);
                sk = lla_hsum8(ak);
            }
            if (gdn) {
                lcoef[i * C + j] = sq;
                lgram[i * C + j] = j < i ? sk : 0.0f;
            } else {
                lcoef[i * C + j] = j <= i ? llam[i * nl + lla_level(hier, c0 + i, c0 + j)] *
                                                scale * sq * exp(lgc[i] - lgc[j])
                                          : 0.0f;
            }
        }
        if (!gdn)
            for (e = lid; e < L * Kp; e += nloc) lqt[e] = scale * leg[e / Kp] * lq[e];
        barrier(CLK_LOCAL_MEM_FENCE);
        /* GDN: WY vectors w_i = beta_i (k_i - sum_{j<i} gram[i][j] w_j) (columns d are
         * independent), and the gated A: agam[i][j] = beta_i gram[i][j] exp(gc_i - gc_j) */
        if (gdn) {
            for (d = lid; d < Kp; d += nloc)
                for (i = 0; i < L; ++i) {
                    float s = lk[i * Kp + d];
                    for (j = 0; j < i; ++j) s -= lgram[i * C + j] * lw[j * Kp + d];
                    lw[i * Kp + d] = d < K ? lbeta[i] * s : 0.0f;
                }
            for (e = lid; e < L * L; e += nloc) {
                i = e / L;
                j = e % L;
                lagam[i * C + j] =
                    j < i ? lbeta[i] * lgram[i * C + j] * exp(lgc[i] - lgc[j]) : 0.0f;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        /* GDN: q~_i = scale exp(gc_i) (q_i - sum_{j<=i} (q_i.k_j) w_j) */
        if (gdn)
            for (e = lid; e < L * Kp; e += nloc) {
                float s = lq[e];
                i = e / Kp;
                d = e % Kp;
                for (j = 0; j <= i; ++j) s -= lcoef[i * C + j] * lw[j * Kp + d];
                lqt[e] = scale * leg[i] * s;
            }
        barrier(CLK_LOCAL_MEM_FENCE);
        /* GDN: row i of X = tril(QK^T) (I + A)^-1, A[m][j] = beta_m gram[m][j]:
         * x_j = QK[i][j] - sum_{m=j+1..i} x_m A[m][j]; x_j is the ungated
         * q_i^T (I - b_i k_i k_i^T) ... (I - b_{j+1} k_{j+1} k_{j+1}^T) k_j */
        if (gdn)
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
                             exp(lgc[i] - lgc[j]) * lbeta[j];
            }
        /* lambda weight of every live set of W for every target of the chunk */
        for (e = lid; e < L * nl; e += nloc) {
            float w = 0.0f;
            i = e / nl;
            l = e % nl;
            if (l >= 1 && lla_is_live(live, l))
                w = llam[i * nl + lla_level(hier, c0 + i, lla_level_start(hier, l, c0))];
            llamw[e] = w;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* (a) + (b): outputs of this work-item's columns, four targets at a time; rows
         * past L repeat row L-1 and are not stored */
        if (active)
            for (i = 0; i < L; i += 4) {
                const int r0 = i, r1 = min(i + 1, L - 1), r2 = min(i + 2, L - 1),
                          r3 = min(i + 3, L - 1);
                float8 a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
                float out[8];
                int r;
                for (j = 0; j <= r3; ++j) {
                    const float8 vj = vload8(0, myv + j * VB);
                    a0 += lcoef[r0 * C + j] * vj;
                    a1 += lcoef[r1 * C + j] * vj;
                    a2 += lcoef[r2 * C + j] * vj;
                    a3 += lcoef[r3 * C + j] * vj;
                }
                for (l = 1; l < nl; ++l) {
                    __global const float *wl = W + l * KVp;
                    float8 p0v = 0.0f, p1v = 0.0f, p2v = 0.0f, p3v = 0.0f;
                    if (!lla_is_live(live, l)) continue;
                    for (d = 0; d < K; ++d) {
                        const float8 w = vload8(0, wl + (long)d * Vp);
                        p0v += lqt[r0 * Kp + d] * w;
                        p1v += lqt[r1 * Kp + d] * w;
                        p2v += lqt[r2 * Kp + d] * w;
                        p3v += lqt[r3 * Kp + d] * w;
                    }
                    a0 += llamw[r0 * nl + l] * p0v;
                    a1 += llamw[r1 * nl + l] * p1v;
                    a2 += llamw[r2 * nl + l] * p2v;
                    a3 += llamw[r3 * nl + l] * p3v;
                }
                for (r = 0; r < 4 && i + r < L; ++r) {
                    vstore8(r == 0 ? a0 : r == 1 ? a1 : r == 2 ? a2 : a3, 0, out);
                    for (x = 0; x < 8 && col0 + x < V; ++x)
                        o[AT(os, tb, tok0 + i + r, h, col0 + x)] = out[x];
                }
            }

        /* (c) advance to the next chunk's first target, or to the last token for a
         * final state (the decoder layout).  Column-private: no barrier needed. */
        if (c1 < stop || has_final) {
            const long target = c1 < stop ? c1 : c1 - 1;
            const float decay = leg[L - 1];
            live = lla_regroup8(W, live, c0, target, hier, nl, K, KVp, Vp, active);
            if (active)
                for (l = 0; l < nl; ++l) {
                    __global float *wl = W + l * KVp;
                    if (!lla_is_live(live, l)) continue;
                    if (gdn) {
                        lla_gdn_transition8(wl, Vp, L, K, Kp, decay, lk, lw, mytmp, VB);
                    } else {
                        for (d = 0; d < K; ++d)
                            vstore8(decay * vload8(0, wl + (long)d * Vp), 0, wl + (long)d * Vp);
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
                        lla_rank_update8(wd, Vp, keep, i, end_run, K, Kp, lk, lkd, myv, VB);
                    } else {
                        /* the chunk's delta rule from a zero state with values outside
                         * the run zero, in the UT form: u = (I + A o Gamma)^-1 (beta v)
                         * on rows >= i, then sum_r exp(gc_last - gc_r) k_r u_r */
                        int r, m;
                        for (r = i; r < L; ++r) {
                            float8 u = r < end_run ? lbeta[r] * vload8(0, myv + r * VB)
                                                   : (float8)0.0f;
                            for (m = i; m < r; ++m)
                                u -= lagam[r * C + m] * vload8(0, mytmp + m * VB);
                            vstore8(u, 0, mytmp + r * VB);
                        }
                        lla_rank_update8(wd, Vp, keep, i, L, K, Kp, lk, lkd, mytmp, VB);
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
                for (x = 0; x < 8 && col0 + x < V; ++x) {
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
