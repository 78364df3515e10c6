/* ocl_testutil.h - helpers of the opencl test suites: opening the backend (or skipping
 * with exit 77 when no OpenCL device exists), and mirroring host test data on the device. */
#ifndef LLA_OCL_TESTUTIL_H
#define LLA_OCL_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "lla.h"
#include "testutil.h"

/* Opens LLA_TEST_OPENCL_SPEC (default "opencl").  If the opencl backend is not usable
 * here, prints why and exits 77 (meson's "skipped"), unless LLA_REQUIRE_OPENCL=1, in which
 * case it prints why and exits 1.  Any other open failure exits 1. */
lla_backend *ocl_open_or_skip(const char *suite);
/* Index of "opencl" in lla_backend_info_get order, or -1. */
int ocl_backend_index(void);

/* One device allocation that tensors are carved from at deliberately unaligned (4-byte)
 * offsets, so every test also exercises pointers inside an allocation. */
typedef struct dev_arena {
    lla_backend *be;
    char *base;  /* device handle of the allocation */
    size_t used, cap;
} dev_arena;

void arena_init(dev_arena *a, lla_backend *be, size_t cap);
void arena_free(dev_arena *a);
/* Copies bytes of host memory to the next free spot (offset 4 mod 64); returns its device
 * pointer. */
void *arena_put(dev_arena *a, const void *host, size_t bytes);
/* The same at an offset 8 mod 64 (state blocks must be 8-byte aligned). */
void *arena_put8(dev_arena *a, const void *host, size_t bytes);

/* Bytes of a td-style tensor buffer: bt * strides[0] elements (what td_tensor allocates;
 * for contiguous tensors exactly the data). */
size_t tensor_bytes(const lla_tensor *t, int64_t bt);
/* Device copy of a host tensor (same strides). */
lla_tensor dev_copy(dev_arena *a, const lla_tensor *host, int64_t bt);
/* Copies a device tensor made by dev_copy back over its host original. */
void dev_fetch(dev_arena *a, const lla_tensor *dev, const lla_tensor *host, int64_t bt);
/* Device copies of every input of td (beta only for GDN). */
lla_inputs dev_inputs(dev_arena *a, const test_data *td);

/* Every non-logical element of a td-style tensor still holds the 0xff fill of td_tensor
 * (a guard check: the kernels wrote nothing outside the view). */
int guards_intact(const lla_tensor *t, int64_t bt, int64_t T, int64_t heads, int64_t dim);

/* ||a - ref|| / ||ref|| of float32 values against float64 ones; +inf on NaN. */
double rel_err_f32(const float *a, const double *ref, size_t n);

#endif
