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

/* Moves every live level set of target `from` whole to its level for target `to` (sets
 * are nested source ranges: they never split and only move up, so going from the top
 * level down never overwrites a set that has not moved yet).  Only column v of W is
 * moved (when vok); the returned mask is the same in every work-item. */
ulong lla_regroup(__global float *W, ulong live, long from, long to, int hier, int nl,
                  int K, int V, int v, int vok) {
    const long KV = (long)K * V;
    ulong out = 0;
    int l, d;
    for (l = nl - 1; l >= 0; --l) {
        int dst;
        if (!lla_is_live(live, l)) continue;
        dst = lla_level(hier, to, lla_level_start(hier, l, from));
        if (dst != l && vok) {
            __global float *wd = W + dst * KV + v;
            __global const float *ws = W + l * KV + v;
            if (lla_is_live(out, dst))
                for (d = 0; d < K; ++d) wd[(long)d * V] += ws[(long)d * V];
            else
                for (d = 0; d < K; ++d) wd[(long)d * V] = ws[(long)d * V];
        }
        out |= (ulong)1 << dst;
    }
    return out;
}

#define AT(s, b, t, h, d) ((b) * (s).s0 + (t) * (s).s1 + (h) * (s).s2 + (d) * (s).s3)

/* Adds the chunk tokens [a, e) (all at level dst of the target) to column v of W_dst:
 * sum_{s in [a,e)} Phi(last, s) c_s k_s v_s.  Mamba-2: Phi = exp(gc_last - gc_s).  GDN:
 * the chunk's delta rule from a zero state with values outside [a, e) zero, in the UT form
 * u = (I + A o Gamma)^-1 (beta v) restricted to rows >= a, then sum_i exp(gc_last - gc_i)
 * k_i u_i.  u is kept in this work-item's column of tmp. */
void lla_add_tokens(__global float *Wd, int dst_live, int gdn, int L, int a, int e, int K,
                    int V, int C, int VB, int lid, __local const float *lk,
                    __local const float *lv, __local const float *lgc,
                    __local const float *lbeta, __local const float *lgram,
                    __local float *tmp) {
    const float glast = lgc[L - 1];
    int i, j, d;
    if (!gdn) {
        for (d = 0; d < K; ++d) {
            float s = dst_live ? Wd[(long)d * V] : 0.0f;
            for (i = a; i < e; ++i) s += exp(glast - lgc[i]) * lk[i * K + d] * lv[i * VB + lid];
            Wd[(long)d * V] = s;
        }
        return;
    }
    for (i = a; i < L; ++i) {
        float u = i < e ? lbeta[i] * lv[i * VB + lid] : 0.0f;
        for (j = a; j < i; ++j)
            u -= lbeta[i] * lgram[i * C + j] * exp(lgc[i] - lgc[j]) * tmp[j * VB + lid];
        tmp[i * VB + lid] = u;
    }
    for (d = 0; d < K; ++d) {
        float s = dst_live ? Wd[(long)d * V] : 0.0f;
        for (i = a; i < L; ++i) s += exp(glast - lgc[i]) * lk[i * K + d] * tmp[i * VB + lid];
        Wd[(long)d * V] = s;
    }
}

/* ------------------------------------------------------------------ forward */

/* Local arena (floats), in this order: q, k, q~ (L x K each, rows of stride K), GDN: w
 * (L x K); coef (C x C); GDN: gram (C x C); v, tmp (C x VB); gc, beta (C); lam, lamw
 * (C x levels).  opencl.c computes the same size (arena_floats). */
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
    int variant, int hier, int nl, int H, int group, int K, int V, int C, int VB, int nvb,
    long seqlen, float scale, __local float *arena) {
    const int lid = (int)get_local_id(0), nloc = (int)get_local_size(0);
    const long grp = (long)get_group_id(0);
    const int vblk = (int)(grp % nvb), h = (int)((grp / nvb) % H);
    const long b = grp / nvb / H;
    const int v = vblk * VB + lid, vok = v < V, hq = h / group, gdn = variant == LLA_GDN;
    const long KV = (long)K * V, head = (b * H + h) * (long)nl * KV;
    __global const float *q = qb + qo, *k = kb + ko, *vv = vb + vo, *g = gb + go,
                         *lam = lb + lo, *beta = bb + bo;
    __global float *o = ob + oo, *W = wsb + wso + head;
    __local float *lq = arena, *lk = lq + C * K, *lqt = lk + C * K, *lw = lqt + C * K;
    __local float *lcoef = lw + (gdn ? C * K : 0), *lgram = lcoef + C * C;
    __local float *lv = lgram + (gdn ? C * C : 0), *ltmp = lv + C * VB;
    __local float *lgc = ltmp + C * VB, *lbeta = lgc + C, *llam = lbeta + C;
    __local float *llamw = llam + C * nl;
    long tb, start, end, p0, stop, c0, c1;
    ulong live = 0;
    int l, d, i, j, e;

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
        if (vok)
            for (l = 0; l < nl; ++l) {
                if (!lla_is_live(live, l)) continue;
                for (d = 0; d < K; ++d) {
                    long at = l * KV + (long)d * V + v;
                    W[at] = ival[ivalo + head + at];
                }
            }
        live = lla_regroup(W, live, p0 - 1, p0, hier, nl, K, V, v, vok);
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
        for (e = lid; e < L * K; e += nloc) {
            long t = tok0 + e / K;
            d = e % K;
            lq[e] = q[AT(qs, tb, t, hq, d)];
            lk[e] = k[AT(ks, tb, t, hq, d)];
        }
        for (e = lid; e < L * nl; e += nloc) llam[e] = lam[AT(ls, tb, tok0 + e / nl, h, e % nl)];
        if (vok)
            for (i = 0; i < L; ++i) lv[i * VB + lid] = vv[AT(vs, tb, tok0 + i, h, v)];
        if (lid == 0) {
            float s = 0.0f;
            for (i = 0; i < L; ++i) {
                s += g[AT(gs, tb, tok0 + i, h, 0)];
                lgc[i] = s;
                lbeta[i] = gdn ? beta[AT(bs, tb, tok0 + i, h, 0)] : 1.0f;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* (a) intra coefficients and the carried-back queries q~.
         * Mamba-2: coef[i][j] = lambda scale (q_i.k_j) exp(gc_i - gc_j), q~ = scale exp(gc) q.
         * GDN: gram[i][j] = k_i.k_j (j < i) and QK[i][j] = q_i.k_j (j <= i, in coef). */
        for (e = lid; e < L * L; e += nloc) {
            float sq = 0.0f, sk = 0.0f;
            i = e / L;
            j = e % L;
            if (j > i) continue;
            for (d = 0; d < K; ++d) {
                sq += lq[i * K + d] * lk[j * K + d];
                if (gdn) sk += lk[i * K + d] * lk[j * K + d];
            }
            if (gdn) {
                lcoef[i * C + j] = sq;
                if (j < i) lgram[i * C + j] = sk;
            } else {
                lcoef[i * C + j] = llam[i * nl + lla_level(hier, c0 + i, c0 + j)] * scale * sq *
                                   exp(lgc[i] - lgc[j]);
            }
        }
        if (!gdn)
            for (e = lid; e < L * K; e += nloc) lqt[e] = scale * exp(lgc[e / K]) * lq[e];
        barrier(CLK_LOCAL_MEM_FENCE);
        /* GDN: WY vectors w_i = beta_i (k_i - sum_{j<i} gram[i][j] w_j); columns independent */
        if (gdn)
            for (d = lid; d < K; d += nloc)
                for (i = 0; i < L; ++i) {
                    float s = lk[i * K + d];
                    for (j = 0; j < i; ++j) s -= lgram[i * C + j] * lw[j * K + d];
                    lw[i * K + d] = lbeta[i] * s;
                }
        barrier(CLK_LOCAL_MEM_FENCE);
        /* GDN: q~_i = scale exp(gc_i) (q_i - sum_{j<=i} (q_i.k_j) w_j) */
        if (gdn)
            for (e = lid; e < L * K; e += nloc) {
                float s = lq[e];
                i = e / K;
                d = e % K;
                for (j = 0; j <= i; ++j) s -= lcoef[i * C + j] * lw[j * K + d];
                lqt[e] = scale * exp(lgc[i]) * s;
            }
        barrier(CLK_LOCAL_MEM_FENCE);
        /* GDN: row i of X = tril(QK^T) (I + A)^-1, A[m][j] = beta_m gram[m][j]:
         * x_j = QK[i][j] - sum_{m=j+1..i} x_m A[m][j]; x_j is the ungated
         * q_i^T (I - b_i k_i k_i^T) ... (I - b_{j+1} k_{j+1} k_{j+1}^T) k_j */
        if (gdn)
            for (i = lid; i < L; i += nloc) {
                __local float *x = lcoef + i * C;
                int m;
                for (j = i; j >= 0; --j) {
                    float s = x[j];
                    for (m = j + 1; m <= i; ++m) s -= x[m] * lbeta[m] * lgram[m * C + j];
                    x[j] = s;
                }
                for (j = 0; j <= i; ++j)
                    x[j] *= llam[i * nl + lla_level(hier, c0 + i, c0 + j)] * scale *
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

        /* (a) + (b): outputs of column v */
        if (vok)
            for (i = 0; i < L; ++i) {
                float acc = 0.0f;
                for (j = 0; j <= i; ++j) acc += lcoef[i * C + j] * lv[j * VB + lid];
                for (l = 1; l < nl; ++l) {
                    __global const float *wl = W + l * KV + v;
                    float part = 0.0f;
                    if (!lla_is_live(live, l)) continue;
                    for (d = 0; d < K; ++d) part += lqt[i * K + d] * wl[(long)d * V];
                    acc += llamw[i * nl + l] * part;
                }
                o[AT(os, tb, tok0 + i, h, v)] = acc;
            }

        /* (c) advance to the next chunk's first target, or to the last token for a
         * final state (the decoder layout).  Column-private: no barrier needed. */
        if (c1 < stop || has_final) {
            const long target = c1 < stop ? c1 : c1 - 1;
            const float decay = exp(lgc[L - 1]);
            live = lla_regroup(W, live, c0, target, hier, nl, K, V, v, vok);
            if (vok)
                for (l = 0; l < nl; ++l) {
                    __global float *wl = W + l * KV + v;
                    if (!lla_is_live(live, l)) continue;
                    if (gdn) { /* W = exp(gc_last) (W - sum_j k_j (w_j^T W)) */
                        for (j = 0; j < L; ++j) {
                            float s = 0.0f;
                            for (d = 0; d < K; ++d) s += lw[j * K + d] * wl[(long)d * V];
                            ltmp[j * VB + lid] = s;
                        }
                        for (d = 0; d < K; ++d) {
                            float s = wl[(long)d * V];
                            for (j = 0; j < L; ++j) s -= lk[j * K + d] * ltmp[j * VB + lid];
                            wl[(long)d * V] = decay * s;
                        }
                    } else {
                        for (d = 0; d < K; ++d) wl[(long)d * V] *= decay;
                    }
                }
            /* the chunk's tokens, in runs that share a level for the target */
            for (i = 0; i < L;) {
                int dst = lla_level(hier, target, c0 + i), end_run = i + 1;
                while (end_run < L && lla_level(hier, target, c0 + end_run) == dst) ++end_run;
                if (vok)
                    lla_add_tokens(W + dst * KV + v, lla_is_live(live, dst), gdn, L, i, end_run,
                                   K, V, C, VB, lid, lk, lv, lgc, lbeta, lgram, ltmp);
                live |= (ulong)1 << dst;
                i = end_run;
            }
        }
    }

    if (has_final && vok)
        for (l = 0; l < nl; ++l) {
            int on = lla_is_live(live, l);
            for (d = 0; d < K; ++d) {
                long at = l * KV + (long)d * V + v;
                if (stop == p0) /* nothing consumed: the initial state (or an empty one) */
                    fval[fvalo + head + at] = has_init ? ival[ivalo + head + at] : 0.0f;
                else
                    fval[fvalo + head + at] = on ? W[at] : 0.0f;
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
