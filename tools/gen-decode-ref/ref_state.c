/* ref_state.c - see ref_state.h.  O(T^2 K) per head for GDN, O(T K V) for Mamba-2. */
#include "ref_state.h"

#include <math.h>
#include <string.h>

#include "internal.h"

int ref_final_state(const lla_problem *p, const lla_inputs *x, double *out, double *scratch) {
    const int64_t T = p->seqlen, last = p->seqlen - 1;
    const int64_t per_level = p->dk * p->dv;
    int64_t b, h, s, r, i, j;
    if (p->seq_offsets || T < 1) return -1;
    memset(out, 0, (size_t)(p->batch * p->heads * p->levels * per_level) * sizeof *out);
    for (b = 0; b < p->batch; ++b)
        for (h = 0; h < p->heads; ++h) {
            int64_t hq = lla__qk_head(p, h);
            double *head_state = out + (b * p->heads + h) * p->levels * per_level;
            for (s = 0; s <= last; ++s) {
                /* scratch = c_s Phi(T-1, s) k_s, applying P_{s+1} first. */
                double *w = scratch, c = 1.0;
                double *level_state = head_state + lla__level(p->hierarchy, last, s) * per_level;
                for (i = 0; i < p->dk; ++i) w[i] = lla__load(&x->k, b, s, hq, i);
                if (p->variant == LLA_VARIANT_MAMBA2) {
                    double log_decay = 0.0;
                    for (r = s + 1; r <= last; ++r) log_decay += lla__load(&x->g, b, r, h, 0);
                    c = exp(log_decay);
                } else {
                    for (r = s + 1; r <= last; ++r) {
                        double a = exp(lla__load(&x->g, b, r, h, 0));
                        double beta = lla__load(&x->beta, b, r, h, 0), dot = 0.0;
                        for (i = 0; i < p->dk; ++i) dot += lla__load(&x->k, b, r, hq, i) * w[i];
                        for (i = 0; i < p->dk; ++i)
                            w[i] = a * (w[i] - beta * lla__load(&x->k, b, r, hq, i) * dot);
                    }
                    c = lla__load(&x->beta, b, s, h, 0);
                }
                for (i = 0; i < p->dk; ++i)
                    for (j = 0; j < p->dv; ++j)
                        level_state[i * p->dv + j] += c * w[i] * lla__load(&x->v, b, s, h, j);
            }
        }
    return 0;
}
