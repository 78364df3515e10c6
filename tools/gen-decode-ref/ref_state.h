/* ref_state.h - float64 decoder state straight from its definition (host only). */
#ifndef LLA_REF_STATE_H
#define LLA_REF_STATE_H

#include "lla.h"

/* The decoder state after every sequence of the dense batch p has consumed all its
 * p->seqlen tokens (positions from 0), computed in float64 from the definition
 *     S_l = sum over s with level(T-1, s) == l of Phi(T-1, s) c_s k_s v_s^T
 * (Mamba-2: Phi = exp(G_{T-1} - G_s), c = 1; GDN: Phi = P_{T-1} ... P_{s+1}, c = beta_s),
 * one source at a time, with no recurrence shared with any decoder.
 * out: [batch][heads][levels][dk][dv], zeroed here.  scratch: dk doubles.
 * Returns 0, or -1 for a problem it does not handle (packed varlen, T < 1). */
int ref_final_state(const lla_problem *p, const lla_inputs *x, double *out, double *scratch);

#endif
