/* scalar_util.h - helpers of the scalar backend's test suites (public API only). */
#ifndef LLA_SCALAR_UTIL_H
#define LLA_SCALAR_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "lla.h"

/* The scalar backend; fails the test if it cannot be opened. */
lla_backend *su_open_scalar(void);

/* A view of the same tensor starting at time index t (for per-token decode inputs). */
lla_tensor su_tensor_at(lla_tensor x, int64_t t);
lla_inputs su_inputs_at(const lla_inputs *x, int64_t t);

/* A zeroed state for p in dtype (F32 or F64), memory from malloc; free with su_state_free. */
lla_state su_state_new(lla_backend *be, const lla_problem *p, lla_dtype dtype);
void su_state_free(lla_state *s);
/* The values of one state as doubles, [batch][heads][levels][dk][dv]; malloc'ed. */
double *su_state_values(const lla_state *s);
size_t su_state_count(const lla_state *s);
const int64_t *su_state_positions(const lla_state *s);

/* lla_forward with a workspace of exactly the queried size (poisoned with 0xff). */
lla_status su_forward(lla_backend *be, const lla_problem *p, const lla_inputs *x,
                      lla_tensor o, const lla_state *initial, lla_state *final);

/* Element access of [B,T,H,D] views (F32 or F64). */
double su_load(const lla_tensor *x, int64_t b, int64_t t, int64_t h, int64_t d);
void su_store(const lla_tensor *x, int64_t b, int64_t t, int64_t h, int64_t d, double v);

/* Packed inputs gathered from src: sequence i gets tokens [first[i], first[i]+len[i]) of
 * src's sequence i (tensor batch index src_b[i], time index from first[i]).  Contiguous
 * buffers of `dtype`, owned by the returned object. */
typedef struct su_packed {
    lla_problem p;       /* varlen problem (seq_offsets -> offsets)                 */
    int64_t offsets[65];
    lla_inputs x;
    lla_tensor o;        /* output buffer, NaN-filled                               */
    void *mem[8];
} su_packed;
su_packed *su_pack(const lla_problem *base, const lla_inputs *src, const int64_t *src_b,
                   const int64_t *first, const int64_t *len, lla_dtype dtype);
void su_packed_free(su_packed *pk);


/* Dense [B,1,H,D] step inputs from a packed one-token-per-sequence su_packed. */
lla_inputs su_packed_as_step(const su_packed *pk);
lla_tensor su_packed_out_as_step(const su_packed *pk);

/* Asserts positions equal and values within tol (relative norm); prints the error. */
void su_check_states(const lla_state *a, const lla_state *ref, double tol, const char *label);
/* Copies sequence b's position and values from src into dst (same shape and dtype). */
void su_copy_sequence(lla_state *dst, const lla_state *src, int64_t b);
#endif
