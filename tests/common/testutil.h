/* testutil.h - shared test helpers: random problems, strided tensors, error norms. */
#ifndef LLA_TESTUTIL_H
#define LLA_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "lla.h"

/* splitmix64: reproducible across platforms. */
typedef struct test_rng { uint64_t s; } test_rng;
uint64_t rng_next(test_rng *r);
double rng_uniform(test_rng *r, double lo, double hi);
int64_t rng_int(test_rng *r, int64_t lo, int64_t hi); /* inclusive */

#define TD_MAX_TENSORS 32
#define TD_MAX_BATCH 64

/* Random inputs of one problem, in one dtype, contiguous or strided (padded H and D,
 * so every stride differs from the contiguous one).  p.seq_offsets points into offsets. */
typedef struct test_data {
    lla_problem p;
    int64_t offsets[TD_MAX_BATCH + 1];
    lla_dtype dtype;
    int strided;
    lla_inputs x;
    void *bufs[TD_MAX_TENSORS];
    int nbufs;
} test_data;

/* Inputs: q, k uniform (unit-norm rows for GDN, as the models feed them), v uniform in
 * [-1,1], g in [-0.3, -0.01], lambda in [0.5, 1.5], beta in [0.1, 0.9].
 * If offsets is non-NULL, p must have p->seq_offsets == NULL and offsets has
 * p->batch+1 entries: a packed varlen problem is made (tensor batch dimension 1). */
test_data *td_create(const lla_problem *p, const int64_t *offsets, lla_dtype dtype,
                     int strided, uint64_t seed);
void td_free(test_data *td);
/* A [Bt, T, heads, dim] tensor in td's layout style, owned by td, filled with NaN. */
lla_tensor td_tensor(test_data *td, int64_t heads, int64_t dim, lla_dtype dtype);
/* Memory owned by td (freed by td_free), filled with byte `fill`. */
void *td_alloc(test_data *td, size_t bytes, int fill);
/* Batch extent of tensors (1 for varlen). */
int64_t td_tensor_batch(const lla_problem *p);

/* ||a - ref|| / ||ref|| over the logical [Bt, T, heads, dim] elements; +inf if any NaN
 * (or if ref is zero while a is not). */
double rel_err(const lla_problem *p, const lla_tensor *a, const lla_tensor *ref,
               int64_t heads, int64_t dim);
/* Same against a contiguous float64 array [Bt, T, heads, dim]. */
double rel_err_array(const lla_problem *p, const lla_tensor *a, const double *ref,
                     int64_t heads, int64_t dim);
/* ||a - ref|| / ||ref|| of two plain arrays; +inf on NaN. */
double rel_err_plain(const double *a, const double *ref, size_t n);

/* Runs the float64 oracle into a fresh F64 contiguous tensor owned by td. */
lla_tensor td_oracle(test_data *td);

#endif
