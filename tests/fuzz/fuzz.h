/*
 * fuzz.h - shared pieces of the fuzz targets (tests/fuzz/README.md).
 *
 * Every target defines LLVMFuzzerTestOneInput.  The same source builds two ways:
 *   - with clang -fsanitize=fuzzer,address,undefined (.ci/fuzz.sh, -DLLA_FUZZ_LIBFUZZER):
 *     a violated property prints a message and aborts, so libFuzzer saves the input;
 *   - with the project's compiler as a plain replay test (replay_main.c, cmocka): the
 *     committed corpus and regression inputs run under `meson test`, and a violated
 *     property fails the cmocka test.
 * The harnesses use the public API only, plus their own independent model of which
 * inputs are valid (written from lla.h and docs/design.md, not from src/check.c).
 */
#ifndef LLA_FUZZ_H
#define LLA_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "lla.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A violated property: never returns. */
void fuzz_fail(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
#define FUZZ_CHECK(cond, ...)                                                                  \
    do {                                                                                       \
        if (!(cond)) fuzz_fail(__FILE__, __LINE__, __VA_ARGS__);                               \
    } while (0)

/* ------------------------------------------------------------------ input bytes */

/* Reads the fuzzer's bytes front to back; past the end every read gives zeros. */
typedef struct fz {
    const uint8_t *data;
    size_t size, at;
} fz;

uint8_t fz_u8(fz *f);
uint64_t fz_u64(fz *f);
/* Mostly lo..hi (inclusive, hi - lo < 192), sometimes an edge value (0, -1, 2^31, 2^62,
 * INT64_MIN/MAX, ...), sometimes 8 raw bytes. */
int64_t fz_int(fz *f, int64_t lo, int64_t hi);
/* An enum value: mostly 0 or 1, sometimes out of range (-1, 2, INT_MAX, ...). */
int fz_enum(fz *f);
/* A tensor dtype: mostly F64 or F32, sometimes BF16/F16 or an unknown value. */
lla_dtype fz_dtype(fz *f);
/* A chunk length: mostly 0 or a power of two <= 1024, sometimes invalid. */
int64_t fz_chunk(fz *f);
/* A scale: mostly in [-3, 3], sometimes NaN, +-inf, 1e300, denormal, raw bits. */
double fz_scale(fz *f);

/* ------------------------------------------------------------------ arithmetic */

/* Saturating unsigned arithmetic: UINT64_MAX stands for "does not fit". */
uint64_t sat_mul(uint64_t a, uint64_t b);
uint64_t sat_add(uint64_t a, uint64_t b);
/* Levels needed by positions 0..T-1 (1 + ceil(log2 T), 0 for T < 1), by bit counting. */
int64_t ref_num_levels(int64_t T);
/* Levels a position p needs to be decoded: ref_num_levels(p + 1), 64 when p + 1 overflows. */
int64_t ref_levels_for_position(int64_t p);

/* ------------------------------------------------------------------ statuses */

#define ST(s) (1u << (unsigned)(s))
/* A call's expected outcome: `must` non-zero: it has to fail with a status in
 * must | maybe; must zero: it may fail only with a status in `maybe`. */
typedef struct expect {
    unsigned must, maybe;
} expect;
/* Checks st against e (and that a failure left a message); returns st. */
lla_status check_status(const char *call, lla_status st, expect e);

/* ------------------------------------------------------------------ buffers */

/* A caller-owned buffer with a snapshot, to prove a call left it alone. */
typedef struct fz_buf {
    unsigned char *mem;
    size_t bytes;
    unsigned char *copy;
} fz_buf;

void buf_alloc(fz_buf *b, size_t bytes, unsigned char fill);
void buf_snapshot(fz_buf *b);
int buf_unchanged(const fz_buf *b);
void buf_free(fz_buf *b);

/* A strided [B, T, H, D] tensor in its own tightly sized allocation (ASan sees any
 * access outside it).  `logical` marks the bytes that belong to logical elements. */
typedef struct fz_tensor {
    lla_tensor t;
    int64_t ext[4];     /* logical extents; a dimension with extent 1 may have any stride */
    size_t elem;        /* element size used for the allocation                           */
    fz_buf buf;
    unsigned char *logical;
    int runnable;       /* strides address only this allocation                           */
} fz_tensor;

/* Layout from three fuzz bytes: layout % 24 = dimension order (0: row-major), pad = 2 bits
 * of padding per dimension, flip = low nibble: reversed (negative-stride) dimensions, high
 * nibble: zero-stride (broadcast) dimensions when allow_broadcast.  Dimensions of extent 1
 * get the stride `garbage` when it is non-zero: the library must not use it.  Logical
 * elements are NaN, the rest 0xa5.  Returns 0 (and makes a non-runnable 64-byte dummy)
 * when the allocation would pass max_bytes. */
int tensor_make(fz_tensor *x, lla_dtype dtype, const int64_t ext[4], uint8_t layout,
                uint8_t pad, uint8_t flip, int allow_broadcast, int64_t garbage,
                size_t max_bytes);
/* A non-runnable 64-byte tensor (for calls that must be rejected before any access). */
void tensor_dummy(fz_tensor *x, lla_dtype dtype, const int64_t ext[4]);
void tensor_free(fz_tensor *x);
/* Byte offset of logical element (b, t, h, d) from x->t.data. */
int64_t tensor_offset(const fz_tensor *x, int64_t b, int64_t t, int64_t h, int64_t d);
double tensor_get(const fz_tensor *x, int64_t b, int64_t t, int64_t h, int64_t d);
void tensor_set(const fz_tensor *x, int64_t b, int64_t t, int64_t h, int64_t d, double v);
/* Bytes outside the logical elements equal the snapshot. */
int tensor_padding_unchanged(const fz_tensor *x);
/* Span in bytes of the element offsets of x's logical extents under its strides,
 * saturating (the model of "strides that cannot address memory"). */
uint64_t tensor_span_bytes(const lla_tensor *t, const int64_t ext[4]);

/* ------------------------------------------------------------------ values */

typedef struct fz_rng {
    uint64_t s;
} fz_rng;
uint64_t rng_u64(fz_rng *r);
double rng_real(fz_rng *r, double lo, double hi);
/* Any bit pattern of the dtype (NaN, inf, denormals, huge values included). */
double rng_garbage(fz_rng *r, lla_dtype dtype);

/* ------------------------------------------------------------------ comparison */

/* ||a - ref|| / max(||ref||, floor) over n values; +inf when any value is NaN. */
double rel_norm_err(const double *a, const double *ref, size_t n, double floor);

/* The scalar backend, opened once per process. */
lla_backend *fuzz_scalar(void);

#endif
